//! Importing clubs from CSV: all rows or none, every bad row named, existing clubs updated,
//! a webroot never moved.

use crate::helpers::TestEnv;

fn write(env: &TestEnv, text: &str) -> String {
    let n = std::fs::read_dir(env.root.path()).unwrap().count();
    let path = env.root.path().join(format!("clubs-{n}.csv"));
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn an_import_adds_and_updates_clubs_in_one_go_and_a_bad_file_changes_nothing() {
    let env = TestEnv::new();
    env.add_clubs(&["a"]);
    let www = env.www.display().to_string();
    let good = write(
        &env,
        &format!(
            "slug,name,url,webroot\n\
             a,Club A,https://a.example/,{www}/a/htdocs\n\
             b,Club B,,{www}/b/htdocs\n\
             c,,https://c.example/,{www}/c/htdocs\n"
        ),
    );
    let out = env.ok(&["club", "import", &good, "--dry-run"]);
    assert!(out.contains("add b: main at"), "{out}");
    assert!(
        out.contains("update a: name: \"a\" → \"Club A\", main address → https://a.example/"),
        "{out}"
    );
    assert!(
        out.contains("2 clubs added, 1 updated, 0 unchanged; nothing was changed"),
        "{out}"
    );
    assert_eq!(env.clubs_json().as_array().unwrap().len(), 1);

    let before = env.ok(&["audit", "--json", "--limit", "1000"]);
    let bad = write(
        &env,
        &format!(
            "slug,name,url,webroot\n\
             b,Club B,,{www}/b/htdocs\n\
             Bad/Slug,x,,{www}/x/htdocs\n\
             d,D,ftp://d,{www}/d/htdocs\n\
             e,E,,/etc/e\n\
             b,Again,,{www}/b2/htdocs\n\
             a,A,,{www}/elsewhere/htdocs\n\
             f,{},,{www}/f/htdocs\n",
            "x".repeat(101)
        ),
    );
    let error = env.fails(&["club", "import", &bad]);
    for expected in [
        "6 bad rows; nothing was imported",
        "line 3: \"Bad/Slug\" is not a valid short name for a club",
        "line 4: address \"ftp://d\" must start with http",
        "line 5: /etc/e is outside the folder that holds the clubs' sites",
        "line 6: club b appears twice",
        "line 7: a's webroot of main is",
        "line 8: f: the club's display name is longer than 100 characters",
    ] {
        assert!(error.contains(expected), "{expected} missing: {error}");
    }
    assert_eq!(env.clubs_json().as_array().unwrap().len(), 1);
    assert_eq!(env.ok(&["audit", "--json", "--limit", "1000"]), before);

    let out = env.ok(&["club", "import", &good]);
    assert!(
        out.contains("2 clubs added, 1 updated, 0 unchanged"),
        "{out}"
    );
    let clubs = env.clubs_json();
    let rows: Vec<(&str, &str, Option<&str>)> = clubs
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["slug"].as_str().unwrap(),
                c["name"].as_str().unwrap(),
                c["url"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("a", "Club A", Some("https://a.example/")),
            ("b", "Club B", None),
            ("c", "c", Some("https://c.example/")),
        ]
    );
    // The same file again changes nothing.
    let out = env.ok(&["club", "import", &good]);
    assert!(
        out.contains("0 clubs added, 0 updated, 3 unchanged"),
        "{out}"
    );
    let audit = env.ok(&["audit", "--limit", "1000"]);
    assert!(audit.contains("club.updated"), "{audit}");
    env.ok(&["audit", "verify"]);
}

#[test]
fn with_several_applications_each_has_its_own_columns() {
    let mut env = TestEnv::new();
    env.add_app("mobile");
    let www = env.www.display().to_string();
    let ambiguous = write(&env, &format!("slug,webroot\na,{www}/a/htdocs\n"));
    let error = env.fails(&["club", "import", &ambiguous]);
    assert!(error.contains("name one as webroot:<app>"), "{error}");
    let file = write(
        &env,
        &format!(
            "slug,webroot:main,webroot:mobile,url:mobile\n\
             a,{www}/a/htdocs,{www}/a/mobile,https://m.a.example/\n\
             b,{www}/b/htdocs,,\n"
        ),
    );
    env.ok(&["club", "import", &file]);
    let status: serde_json::Value = serde_json::from_str(&env.ok(&["status", "--json"])).unwrap();
    let rows: Vec<(&str, &str, Option<&str>)> = status
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["slug"].as_str().unwrap(),
                r["app"].as_str().unwrap(),
                r["url"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("a", "main", None),
            ("a", "mobile", Some("https://m.a.example/")),
            ("b", "main", None),
        ]
    );
}

#[tokio::test]
async fn admins_import_from_the_clubs_page_after_a_preview() {
    use reqwest::StatusCode;
    let env = TestEnv::new();
    let www = env.www.display().to_string();
    let app = crate::web::TestApp::spawn(env).await;
    let admin = app.login("admin").await;
    let page = app.page(&admin, "/clubs").await;
    assert!(page.contains("action=\"/clubs/import/preview\""), "{page}");

    let bad = format!("slug,webroot\nok,{www}/ok/htdocs\nNo!,{www}/x/htdocs\n");
    let preview = app
        .post(&admin, "/clubs/import/preview", &[("csv", &bad)])
        .await;
    assert_eq!(preview.status(), StatusCode::OK);
    let preview = preview.text().await.unwrap();
    assert!(
        preview.contains("Nothing can be imported from this file"),
        "{preview}"
    );
    assert!(
        preview.contains("Line 3: &#34;No!&#34; is not a valid short name for a club"),
        "{preview}"
    );
    assert!(!preview.contains("Yes, import"), "{preview}");
    let header = app
        .post_text(&admin, "/clubs/import/preview", &[("csv", "nonsense\n1\n")])
        .await;
    assert!(header.contains("Line 1: unknown column"), "{header}");

    let good = format!("slug,name,webroot\nzermatt,Club Zermatt,{www}/zermatt/htdocs\n");
    let preview = app
        .post_text(&admin, "/clubs/import/preview", &[("csv", &good)])
        .await;
    assert!(
        preview.contains("1 club added, 0 updated, 0 unchanged"),
        "{preview}"
    );
    assert!(
        preview
            .contains("Add <strong>Club Zermatt</strong> <span class=\"muted\">(zermatt)</span>"),
        "{preview}"
    );
    // Nothing is written by the preview; the confirmation writes it and shows the clubs.
    assert!(app.env.clubs_json().as_array().unwrap().is_empty());
    for who in ["viewer", "deployer"] {
        let other = app.login(who).await;
        let refused = app.post(&other, "/clubs/import", &[("csv", &good)]).await;
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{who}");
    }
    let done = app.post(&admin, "/clubs/import", &[("csv", &good)]).await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    assert_eq!(done.headers()["location"], "/clubs");
    let clubs = app.page(&admin, "/clubs").await;
    assert!(clubs.contains("Club Zermatt"), "{clubs}");
}

#[test]
fn a_list_too_large_to_import_at_once_is_refused_plainly_and_changes_nothing() {
    let env = TestEnv::new();
    let www = env.www.display().to_string();
    let rows = |n: usize| {
        let mut text = String::from("slug,name,url,webroot\n");
        for k in 0..n {
            text.push_str(&format!("c{k},,,{www}/c{k}/htdocs\n"));
        }
        text
    };
    // 20,000 clubs are checked (a dry run), one more is refused, and so is a file over 5 MB.
    let most = write(&env, &rows(20_000));
    let out = env.ok(&["club", "import", &most, "--dry-run"]);
    assert!(out.contains("20000 clubs added"), "{out}");
    let padding = "x".repeat(100);
    let large = format!("slug,name,url,webroot\n{}", {
        let mut text = String::new();
        for k in 0..60_000 {
            text.push_str(&format!("d{k},{padding},,{www}/d{k}/htdocs\n"));
            if text.len() > 5 << 20 {
                break;
            }
        }
        text
    });
    for list in [write(&env, &rows(20_001)), write(&env, &large)] {
        let error = env.fails(&["club", "import", &list]);
        assert!(
            error.contains("larger than clubdeploy imports at once (5 MB or 20000 clubs)"),
            "{error}"
        );
    }
    assert_eq!(env.clubs_json().as_array().unwrap().len(), 0);
}
