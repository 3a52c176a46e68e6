//! The security review's findings (issue 9), each tried as an attacker would: through the
//! panel on a real server, the real binary, and repositories made by the test.

use std::os::unix::fs::symlink;

use clubdeploy::db::audit;
use reqwest::StatusCode;
use reqwest::header::LOCATION;

use crate::helpers::{TestEnv, commit_all_and_tag};
use crate::web::{PASSWORD, TestApp, csrf_of};

#[tokio::test]
async fn sign_in_never_sends_the_browser_to_another_site() {
    let app = TestApp::spawn(TestEnv::new()).await;
    for next in [
        "/\t/evil.example",
        "//evil.example",
        "/\\evil.example",
        "https://evil.example",
    ] {
        let client = app.client();
        let page = client
            .get(app.url("/login"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let response = client
            .post(app.url("/login"))
            .form(&[
                ("name", "admin"),
                ("password", PASSWORD),
                ("next", next),
                ("csrf", &csrf_of(&page)),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{next:?}");
        assert_eq!(response.headers()[LOCATION], "/", "{next:?}");
    }
}

#[tokio::test]
async fn the_csv_export_neutralises_formulas_and_shows_addresses_to_admins_only() {
    let env = TestEnv::new();
    let app = TestApp::spawn(env).await;
    {
        let conn = &mut app.pool.get().unwrap();
        let entry = audit::Entry {
            address: Some("-192.0.2.7"),
            ..audit::Entry::new("=cmd", "club.added", "club", "@a", "+HYPERLINK(\"x\")")
        };
        audit::record(conn, &entry).unwrap();
    }
    let admin = app.login("admin").await;
    let csv = admin
        .get(app.url("/audit.csv"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let row = csv.lines().find(|l| l.contains("HYPERLINK")).unwrap();
    assert!(row.contains(",'=cmd,'-192.0.2.7,"), "{row}");
    assert!(
        row.contains(",club,'@a,\"'+HYPERLINK(\"\"x\"\")\","),
        "{row}"
    );
    // Staff addresses: admins see them, others do not.
    let audit_page = app.page(&admin, "/audit").await;
    assert!(audit_page.contains("127.0.0.1"), "{audit_page}");
    let viewer = app.login("viewer").await;
    let audit_page = app.page(&viewer, "/audit").await;
    assert!(!audit_page.contains("127.0.0.1"), "{audit_page}");
    let csv = viewer
        .get(app.url("/audit.csv"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !csv.contains("127.0.0.1") && !csv.contains("192.0.2.7"),
        "{csv}"
    );
}

#[test]
fn the_command_line_shows_control_characters_as_escapes() {
    let mut env = TestEnv::new();
    // Output from a build (think of a repository's composer scripts) that would clear the
    // operator's screen and retitle the terminal.
    env.config.build_commands = vec![crate::helpers::sh(
        "printf 'Club \\033[2J\\033]0;owned\\007A\\n'",
    )];
    env.configure();
    env.add_clubs(&["a"]);
    for args in [&["deploy", "v1", "--all"][..], &["job", "1"][..]] {
        let out = env.run(args);
        assert!(out.status.success());
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert!(
            !stdout.contains('\u{1b}') && !stdout.contains('\u{7}'),
            "{args:?}: {stdout:?}"
        );
        assert!(
            stdout.contains("Club \\x1b[2J\\x1b]0;owned\\x07A"),
            "{args:?}: {stdout}"
        );
    }
}

/// Adds a tag `v9` to the fixture repository whose tree also holds `links`.
fn tag_with_links(env: &TestEnv, links: &[(&str, &str)]) {
    let repo = git2::Repository::open(&env.app).unwrap();
    let work = repo.workdir().unwrap().to_path_buf();
    for (name, target) in links {
        symlink(target, work.join(name)).unwrap();
    }
    let sig = git2::Signature::now("Test", "test@example.invalid").unwrap();
    let head = repo.head().unwrap().peel_to_commit().unwrap().id();
    commit_all_and_tag(&repo, &sig, Some(head), "v9", "links");
}

#[test]
fn a_release_with_a_symlink_out_of_it_is_refused_naming_the_entry() {
    for (name, target) in [
        ("passwd.txt", "/etc/passwd"),
        ("db.sqlite3", "../../../../data/clubdeploy.sqlite3"),
    ] {
        let env = TestEnv::new();
        env.add_clubs(&["a"]);
        env.ok(&["deploy", "v1", "--all"]);
        tag_with_links(&env, &[(name, target)]);
        let error = env.fails(&["deploy", "v9", "--all"]);
        assert!(error.contains(&format!("{name} -> {target}")), "{error}");
        assert!(error.contains("no club was changed"), "{error}");
        assert_eq!(env.release_of("a"), env.release_name("v1"));
        let published: Vec<String> = env
            .release_entries()
            .into_iter()
            .filter(|e| e.starts_with("v9"))
            .collect();
        assert_eq!(published, Vec::<String>::new());
    }
}

#[test]
fn build_commands_get_a_minimal_environment() {
    let mut env = TestEnv::new();
    env.config.build_commands = vec![crate::helpers::sh("env | sort > build-env.txt")];
    env.config.build_env = vec!["PASS_ME".into()];
    env.configure();
    env.add_clubs(&["a"]);
    env.vars.push(("SECRET_TOKEN".into(), "hunter2".into()));
    env.vars.push(("PASS_ME".into(), "yes".into()));
    env.ok(&["deploy", "v1", "--all"]);
    let seen = std::fs::read_to_string(env.webroot("a").join("build-env.txt")).unwrap();
    let names: Vec<&str> = seen
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .filter(|k| !matches!(*k, "PWD" | "SHLVL" | "_" | "OLDPWD"))
        .collect();
    assert_eq!(
        names,
        [
            "CLUBDEPLOY_BUILD_DIR",
            "CLUBDEPLOY_COMMIT",
            "CLUBDEPLOY_RELEASE",
            "CLUBDEPLOY_TAG",
            "HOME",
            "LANG",
            "PASS_ME",
            "PATH"
        ],
        "{seen}"
    );
    assert!(seen.contains("CLUBDEPLOY_TAG=v1\n"), "{seen}");
    assert!(
        seen.contains(&format!("CLUBDEPLOY_COMMIT={}\n", env.commit_of("v1"))),
        "{seen}"
    );
    assert!(!seen.contains("hunter2"), "{seen}");
}

#[test]
fn a_release_is_reused_only_when_its_full_commit_matches() {
    let env = TestEnv::new();
    env.add_clubs(&["a"]);
    // A directory with v1's name but another commit that shares its first 8 digits.
    let commit = env.commit_of("v1");
    let impostor = format!("{}{}", &commit[..8], "0".repeat(32));
    assert_ne!(impostor, commit);
    let dir = env.releases_dir().join(env.release_name("v1"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.php"), "<?php echo 'not v1';").unwrap();
    std::fs::write(
        dir.join(".clubdeploy-release.json"),
        format!(
            "{{\"tag\":\"v1\",\"commit\":\"{impostor}\",\"built_at\":\"2026-01-01T00:00:00Z\",\
             \"files\":1,\"bytes\":20}}"
        ),
    )
    .unwrap();
    let error = env.fails(&["deploy", "v1", "--all"]);
    assert!(
        error.contains(&format!("was built from commit {impostor}, not {commit}")),
        "{error}"
    );
    assert!(!env.webroot("a").exists());
}
