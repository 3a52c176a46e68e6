//! Issue 20, point 16: the README is a front door. Its links and the reference's stay inside
//! the repository, and its screenshots are of the panel as it is (`scripts/screenshots.sh`
//! makes them again into `docs/screenshots/`).

use std::path::{Path, PathBuf};

use crate::browser::{Browser, Screen, available, each_page};
use crate::web::TestApp;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every `](target)` of a Markdown text.
fn links(text: &str) -> Vec<String> {
    text.split("](")
        .skip(1)
        .filter_map(|rest| rest.split_once(')').map(|(target, _)| target.to_owned()))
        .collect()
}

/// The README and every page under `docs/`.
fn documents() -> Vec<PathBuf> {
    let mut found = vec![root().join("README.md")];
    for entry in std::fs::read_dir(root().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            found.push(path);
        }
    }
    found.sort();
    found
}

#[test]
fn the_readme_and_the_reference_link_only_to_files_in_the_repository() {
    let root = root().canonicalize().unwrap();
    let docs = documents();
    assert!(docs.len() > 5, "the reference moved to docs/: {docs:?}");
    for doc in &docs {
        let text = std::fs::read_to_string(doc).unwrap();
        for link in links(&text) {
            let target = link.split('#').next().unwrap();
            assert!(
                !target.contains("://") && !target.starts_with("mailto:"),
                "{}: {link} points outside the repository",
                doc.display()
            );
            if target.is_empty() {
                continue;
            }
            let file = doc.parent().unwrap().join(target);
            let file = file
                .canonicalize()
                .unwrap_or_else(|e| panic!("{}: {link}: {e}", doc.display()));
            assert!(
                file.starts_with(&root),
                "{}: {link} leaves the repository",
                doc.display()
            );
        }
        assert!(
            !text.contains("../shared"),
            "{} names a file outside the repository",
            doc.display()
        );
    }
    // The README is the front door, not the manual: each reference page is linked from it.
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    for doc in docs.iter().filter(|d| !d.ends_with("README.md")) {
        let name = format!("docs/{}", doc.file_name().unwrap().to_string_lossy());
        assert!(
            readme.contains(&format!("]({name})")),
            "{name} is not linked"
        );
    }
    assert!(
        readme.lines().count() < 200,
        "the README grew into a manual again"
    );
}

/// The README's four pages, as `(name, path)`.
const PAGES: [(&str, &str); 4] = [
    ("dashboard", "/"),
    ("clubs", "/clubs"),
    (
        "confirm",
        "/deploy/confirm?app=main&tag=v3&target=all&canary_field=1&canary=early-adopters",
    ),
    ("job", "/jobs/2"),
];

/// Takes the README's screenshots of a panel with realistic clubs (desktop and phone), checks
/// each shows something, and that the README shows each; with `UPDATE_README_SCREENSHOTS=1`
/// (`scripts/screenshots.sh`) copies them into `docs/screenshots/`.
#[tokio::test]
async fn the_readme_shows_the_panel_at_desktop_and_phone_width() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let shown = || {
        for (name, _) in PAGES {
            for width in ["desktop", "phone"] {
                let file = format!("docs/screenshots/{name}-{width}.png");
                assert!(readme.contains(&format!("]({file})")), "{file} not shown");
                assert!(root().join(&file).is_file(), "{file} is missing");
            }
        }
    };
    if !available() {
        shown();
        return;
    }
    let env = crate::panel_names::a_club_office();
    let app = TestApp::spawn(env).await;
    let update = std::env::var("UPDATE_README_SCREENSHOTS").is_ok_and(|v| v == "1");
    for (screen, width) in [(Screen::DESKTOP, "desktop"), (Screen::PHONE, "phone")] {
        let browser = Browser::open(&screen).await;
        let result = async {
            browser.sign_in(&app, "admin").await?;
            each_page(&browser, &app, &screen, &PAGES, "readme", async |_, _| {
                Ok(())
            })
            .await
        }
        .await;
        browser.close().await;
        result.unwrap();
        if update {
            for (name, _) in PAGES {
                let made = root().join(format!(
                    "target/e2e-screenshots/readme-{}-{name}.png",
                    screen.width
                ));
                let kept = root().join(format!("docs/screenshots/{name}-{width}.png"));
                std::fs::copy(&made, &kept).unwrap();
            }
        }
    }
    shown();
}
