//! Several applications per club: each club has a webroot per application it runs; deploys,
//! history, bad marks, prune and `keep_releases` are per application; the panel shows a
//! club × application matrix. Real repositories, links and SQLite, through the binary.

use std::path::{Path, PathBuf};

use reqwest::StatusCode;

use crate::helpers::{TestEnv, entries};

/// Clubs a (main and mobile), b (main only) and c (mobile only), in an environment with the
/// applications main (tags v1..v3) and mobile (tags v1, v2).
fn two_apps() -> TestEnv {
    let mut env = TestEnv::new();
    env.add_app("mobile");
    let w = |club: &str, dir: &str| env.www.join(club).join(dir).display().to_string();
    env.ok(&[
        "club",
        "add",
        "a",
        "--webroot",
        &format!("main={}", w("a", "htdocs")),
        "--webroot",
        &format!("mobile={}", w("a", "mobile")),
    ]);
    env.ok(&[
        "club",
        "add",
        "b",
        "--webroot",
        &format!("main={}", w("b", "htdocs")),
    ]);
    env.ok(&[
        "club",
        "add",
        "c",
        "--webroot",
        &format!("mobile={}", w("c", "mobile")),
    ]);
    env
}

fn mobile_webroot(env: &TestEnv, club: &str) -> PathBuf {
    env.www.join(club).join("mobile")
}

fn link(path: &Path) -> PathBuf {
    std::fs::read_link(path).unwrap()
}

/// `status --json` as (slug, app, release) rows.
fn rows(env: &TestEnv) -> Vec<(String, String, Option<String>)> {
    let status: serde_json::Value = serde_json::from_str(&env.ok(&["status", "--json"])).unwrap();
    status
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["slug"].as_str().unwrap().to_owned(),
                r["app"].as_str().unwrap().to_owned(),
                r["release"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

#[test]
fn each_application_deploys_to_its_own_webroots_from_one_shared_release() {
    let env = two_apps();
    // With two applications, which one must be said.
    let error = env.fails(&["deploy", "v1", "--all"]);
    assert!(
        error.contains("there are several applications (main, mobile): name one with --app"),
        "{error}"
    );
    let error = env.fails(&[
        "club",
        "add",
        "d",
        "--webroot",
        env.www.join("d/htdocs").to_str().unwrap(),
    ]);
    assert!(
        error.contains("write the webroot as <app>=<path>"),
        "{error}"
    );
    let error = env.fails(&["club", "add", "d", "--webroot", "shop=/x"]);
    assert!(
        error.contains("there is no application \"shop\""),
        "{error}"
    );
    assert!(!env.ok(&["club", "list"]).contains("\nd "));

    let out = env.ok(&["deploy", "v1", "--app", "main", "--all"]);
    assert!(out.contains("2 of 2 clubs on v1"), "{out}");
    assert!(!mobile_webroot(&env, "a").exists());
    let out = env.ok(&["deploy", "v1", "--app", "mobile", "--all"]);
    assert!(out.contains("2 of 2 clubs on v1"), "{out}");
    // Without an address a club is "not checked", never healthy.
    assert!(
        out.contains("club c's mobile was not checked: it has no site address"),
        "{out}"
    );
    assert!(out.contains("; 2 clubs not checked (no address)"), "{out}");
    assert!(
        out.contains(&format!(
            "club c's mobile now runs {}",
            rows(&env)[3].2.as_ref().unwrap()
        )),
        "{out}"
    );

    // One release per application, shared by every club running it (OPcache caches it once).
    assert_eq!(env.realpath("a"), env.realpath("b"));
    let mobile = mobile_webroot(&env, "a").canonicalize().unwrap();
    assert_eq!(mobile, mobile_webroot(&env, "c").canonicalize().unwrap());
    assert_eq!(mobile.parent().unwrap(), env.app_releases_dir("mobile"));
    assert_eq!(env.served("a"), "<?php echo 'version v1';\n");
    assert_eq!(
        std::fs::read_to_string(mobile_webroot(&env, "c").join("index.php")).unwrap(),
        "<?php echo 'mobile v1';\n"
    );
    let main_v1 = env.release_name("v1");
    let found = rows(&env);
    let mobile_v1 = found[1].2.clone().unwrap();
    assert_ne!(
        main_v1, mobile_v1,
        "the same tag of two applications is two releases"
    );
    assert_eq!(
        found,
        [
            ("a".into(), "main".into(), Some(main_v1.clone())),
            ("a".into(), "mobile".into(), Some(mobile_v1.clone())),
            ("b".into(), "main".into(), Some(main_v1.clone())),
            ("c".into(), "mobile".into(), Some(mobile_v1.clone())),
        ]
    );

    // A club that does not run an application is refused before anything is queued.
    let error = env.fails(&["deploy", "v2", "--app", "mobile", "--club", "b"]);
    assert!(
        error.contains("b does not run the application mobile"),
        "{error}"
    );
    let jobs: serde_json::Value = serde_json::from_str(&env.ok(&["jobs", "--json"])).unwrap();
    assert_eq!(jobs.as_array().unwrap().len(), 2);
    assert_eq!(jobs[0]["app"], "mobile");
    assert_eq!(jobs[1]["app"], "main");

    // Deploying one application leaves the other's links alone.
    let (a_main, b_main) = (link(&env.webroot("a")), link(&env.webroot("b")));
    let out = env.ok(&["deploy", "v2", "--app", "mobile", "--club", "a"]);
    assert!(out.contains("(1 of 1 club on v2)"), "{out}");
    assert_eq!(link(&env.webroot("a")), a_main);
    assert_eq!(link(&env.webroot("b")), b_main);
    assert_eq!(
        std::fs::read_to_string(mobile_webroot(&env, "a").join("index.php")).unwrap(),
        "<?php echo 'mobile v2';\n"
    );
    let out = env.ok(&["club", "list"]);
    assert!(out.contains("APP"), "{out}");
}

#[test]
fn prune_and_keep_releases_count_per_application() {
    let mut env = two_apps();
    env.config.keep_releases = 1;
    env.configure();
    env.ok(&["deploy", "v1", "--app", "main", "--all"]);
    env.ok(&["deploy", "v1", "--app", "mobile", "--all"]);
    env.ok(&["deploy", "v2", "--app", "main", "--all"]);
    // main: v1 and v2 unused: v2 is every club's rollback target, v1 the one kept.
    env.ok(&["deploy", "v3", "--app", "main", "--all"]);
    let main_releases = |env: &TestEnv| {
        entries(&env.releases_dir())
            .into_iter()
            .filter(|e| e.starts_with('v'))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        main_releases(&env),
        [
            env.release_name("v1"),
            env.release_name("v2"),
            env.release_name("v3")
        ]
    );
    // mobile's unused v1 is mobile's rollback target: main's are not counted against it.
    env.ok(&["deploy", "v2", "--app", "mobile", "--all"]);
    assert_eq!(entries(&env.app_releases_dir("mobile")).len(), 2);
    assert_eq!(main_releases(&env).len(), 3);
    // A prune of every application deletes nothing more; with keep_releases = 0, a prune of
    // main deletes main's v1 (no club's rollback target) and nothing of mobile's.
    let out = env.ok(&["prune"]);
    assert!(
        out.contains("main: 0 releases deleted; mobile: 0 releases deleted"),
        "{out}"
    );
    env.config.keep_releases = 0;
    env.configure();
    env.ok(&["prune", "--app", "main"]);
    assert_eq!(entries(&env.app_releases_dir("mobile")).len(), 2);
    assert_eq!(
        main_releases(&env),
        [env.release_name("v2"), env.release_name("v3")]
    );
    let served = mobile_webroot(&env, "c").join("index.php");
    assert_eq!(
        std::fs::read_to_string(served).unwrap(),
        "<?php echo 'mobile v2';\n"
    );
}

#[test]
fn rollback_history_and_bad_marks_are_per_application() {
    let env = two_apps();
    for tag in ["v1", "v2"] {
        env.ok(&["deploy", tag, "--app", "main", "--club", "a"]);
        env.ok(&["deploy", tag, "--app", "mobile", "--club", "a"]);
    }
    let error = env.fails(&["rollback", "a"]);
    assert!(error.contains("name one with --app"), "{error}");
    let main_before = link(&env.webroot("a"));
    let out = env.ok(&["rollback", "a", "--app", "mobile"]);
    assert!(out.contains("rolled back from"), "{out}");
    assert_eq!(link(&env.webroot("a")), main_before);
    assert!(
        std::fs::read_to_string(mobile_webroot(&env, "a").join("index.php"))
            .unwrap()
            .contains("mobile v1")
    );
    // mobile's v2 is marked bad for a: mobile has nothing left to go back to; main still
    // goes back to its own previous release.
    let error = env.fails(&["rollback", "a", "--app", "mobile"]);
    assert!(error.contains("no earlier release of mobile"), "{error}");
    env.ok(&["rollback", "a", "--app", "main"]);
    assert_eq!(env.release_of("a"), env.release_name("v1"));

    // The audit log names the application, and filters by it.
    let rows: serde_json::Value =
        serde_json::from_str(&env.ok(&["audit", "--json", "--app", "mobile"])).unwrap();
    let rows = rows.as_array().unwrap();
    assert!(!rows.is_empty());
    assert!(rows.iter().all(|r| r["app"] == "mobile"), "{rows:?}");
    assert!(
        rows.iter()
            .any(|r| r["action"] == "club.switched" && r["target"] == "a")
    );
}

#[test]
fn a_club_gets_a_webroot_for_another_application_later_and_adopts_its_legacy_copy() {
    let env = two_apps();
    let b_mobile = mobile_webroot(&env, "b");
    // The mobile site of b is still an rsync'd copy: a real directory.
    std::fs::create_dir_all(b_mobile.join("img")).unwrap();
    std::fs::write(b_mobile.join("index.php"), "<?php echo 'old copy';\n").unwrap();
    std::fs::write(b_mobile.join("img/logo.png"), [0u8, 1, 2, 3]).unwrap();
    let out = env.ok(&["club", "webroot", "b", "mobile", b_mobile.to_str().unwrap()]);
    assert!(out.contains("club b runs mobile at"), "{out}");
    let error = env.fails(&["club", "webroot", "b", "mobile", b_mobile.to_str().unwrap()]);
    assert!(
        error.contains("already has a webroot for mobile"),
        "{error}"
    );
    let error = env.fails(&["club", "webroot", "b", "shop", "/tmp/x"]);
    assert!(
        error.contains("there is no application \"shop\""),
        "{error}"
    );
    let error = env.fails(&["club", "webroot", "b", "mobile", "/etc/passwd"]);
    assert!(
        error.contains("outside the folder that holds the clubs' sites"),
        "{error}"
    );

    let error = env.fails(&["deploy", "v1", "--app", "mobile", "--club", "b"]);
    assert!(
        error.contains("adopt it first (clubdeploy adopt b --app mobile --tag <tag>"),
        "{error}"
    );
    env.ok(&["adopt", "b", "--app", "mobile", "--tag", "v1"]);
    assert!(
        std::fs::read_to_string(b_mobile.join("index.php"))
            .unwrap()
            .contains("mobile v1")
    );
    let kept = entries(&env.data.join("apps/mobile/legacy"));
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(env.ok(&["legacy", "list"]).contains("mobile"));
    // b's main webroot was never touched; its mobile copy comes back whole.
    env.ok(&["adopt", "b", "--app", "mobile", "--undo"]);
    assert!(std::fs::symlink_metadata(&b_mobile).unwrap().is_dir());
    assert_eq!(
        std::fs::read(b_mobile.join("img/logo.png")).unwrap(),
        [0u8, 1, 2, 3]
    );
    assert_eq!(
        std::fs::read_to_string(b_mobile.join("index.php")).unwrap(),
        "<?php echo 'old copy';\n"
    );
}

#[tokio::test]
async fn the_panel_shows_clubs_by_application_and_deploys_the_one_chosen() {
    let env = two_apps();
    env.ok(&["deploy", "v1", "--app", "main", "--all"]);
    env.ok(&["deploy", "v1", "--app", "mobile", "--all"]);
    let mobile_v1 = rows(&env)[1].2.clone().unwrap();
    let app = crate::web::TestApp::spawn_driven(env).await;
    let admin = app.login("admin").await;

    let clubs = app.page(&admin, "/clubs").await;
    assert!(clubs.contains("<th>main</th><th>mobile</th>"), "{clubs}");
    assert!(clubs.contains("does not run mobile"), "{clubs}");
    assert!(clubs.contains("does not run main"), "{clubs}");
    assert!(
        clubs.contains("href=\"/deploy?app=mobile&amp;club=a\""),
        "{clubs}"
    );
    let dashboard = app.page(&admin, "/").await;
    assert!(
        dashboard.contains("mobile <span class=\"muted\">(2 running it)"),
        "{dashboard}"
    );
    assert!(dashboard.contains(&mobile_v1), "{dashboard}");

    // The deploy form offers the clubs running the chosen application only.
    let form = app.page(&admin, "/deploy?app=mobile").await;
    assert!(form.contains("name=\"app\" value=\"mobile\""), "{form}");
    assert!(form.contains("value=\"c\""), "{form}");
    assert!(!form.contains("value=\"b\""), "{form}");
    let confirm = app
        .confirm(
            &admin,
            &[("app", "mobile"), ("tag", "v2"), ("target", "all")],
        )
        .await;
    assert_eq!(confirm.status(), StatusCode::OK);
    let confirm = confirm.text().await.unwrap();
    assert!(confirm.contains("Deploy mobile v2?"), "{confirm}");
    assert!(confirm.contains("2 clubs will move"), "{confirm}");
    // A form without the application, when there are two, is refused plainly.
    let refused = app
        .post(&admin, "/deploy", &[("tag", "v2"), ("target", "all")])
        .await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let queued = app
        .post(
            &admin,
            "/deploy",
            &[("app", "mobile"), ("tag", "v2"), ("target", "all")],
        )
        .await;
    let id = crate::web::job_id(&queued);
    assert_eq!(app.run_job(id).await, "succeeded");
    let job = app.page(&admin, &format!("/jobs/{id}")).await;
    assert!(job.contains("deploy v2 to all clubs (mobile)"), "{job}");
    assert!(
        std::fs::read_to_string(mobile_webroot(&app.env, "c").join("index.php"))
            .unwrap()
            .contains("mobile v2")
    );
    assert_eq!(app.env.served("b"), "<?php echo 'version v1';\n");

    // A refusal in the panel's words, not the command line's.
    let refused = admin
        .get(app.url("/clubs/a/rollback"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let text = refused.text().await.unwrap();
    assert!(
        text.contains("Choose an application: main, mobile."),
        "{text}"
    );

    // Adding a club in the panel: a webroot per application, empty where it does not run it.
    let d_mobile = mobile_webroot(&app.env, "d");
    let added = app
        .post(
            &admin,
            "/clubs",
            &[
                ("slug", "d"),
                ("app", "main"),
                ("webroot", ""),
                ("app", "mobile"),
                ("webroot", d_mobile.to_str().unwrap()),
            ],
        )
        .await;
    assert_eq!(added.status(), StatusCode::SEE_OTHER);
    let d: Vec<_> = rows(&app.env).into_iter().filter(|r| r.0 == "d").collect();
    assert_eq!(d, [("d".into(), "mobile".into(), None)]);

    let jobs = app.page(&admin, "/jobs?app=main").await;
    assert!(
        jobs.contains("(main)") && !jobs.contains("(mobile)"),
        "{jobs}"
    );
    let audit = app.page(&admin, "/audit?app=mobile").await;
    assert!(audit.contains("club.switched"), "{audit}");
    assert!(!audit.contains("(main)"), "{audit}");
    let releases = app.page(&admin, "/releases?app=mobile").await;
    assert!(
        releases.contains("action=\"/releases/refresh?app=mobile\""),
        "{releases}"
    );
    let rollback = app.page(&admin, "/clubs/a/rollback?app=mobile").await;
    assert!(rollback.contains(&mobile_v1), "{rollback}");
}

#[test]
fn recovery_reads_back_each_application_s_links_and_keeps_its_legacy_copies() {
    let env = two_apps();
    env.ok(&["deploy", "v1", "--app", "main", "--all"]);
    env.ok(&["deploy", "v1", "--app", "mobile", "--all"]);
    let main_links = [link(&env.webroot("a")), link(&env.webroot("b"))];
    env.crash_at(
        &["deploy", "v2", "--app", "mobile", "--all"],
        "switch:after-1",
    );
    // a's mobile webroot was switched, c's not yet; the next command records what it finds.
    let found = rows(&env);
    let mobile_v1 = found[3].2.clone().unwrap();
    assert_ne!(found[1].2.as_deref(), Some(mobile_v1.as_str()));
    let status: serde_json::Value = serde_json::from_str(&env.ok(&["status", "--json"])).unwrap();
    assert!(
        status
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["drift"] == false),
        "{status}"
    );
    let audit = env.ok(&["audit", "--app", "mobile", "--limit", "1000"]);
    assert!(
        audit.contains("found on disk after job #3 stopped"),
        "{audit}"
    );
    let job: serde_json::Value = serde_json::from_str(&env.ok(&["job", "3", "--json"])).unwrap();
    assert_eq!(job["status"], "interrupted");
    assert_eq!(
        [link(&env.webroot("a")), link(&env.webroot("b"))],
        main_links
    );

    // An adopt of b's mobile copy interrupted between its exchange and the move of the copy:
    // the copy is kept with mobile's legacy copies, whole.
    let b_mobile = mobile_webroot(&env, "b");
    std::fs::create_dir_all(&b_mobile).unwrap();
    std::fs::write(b_mobile.join("index.php"), "<?php echo 'b copy';\n").unwrap();
    env.ok(&["club", "webroot", "b", "mobile", b_mobile.to_str().unwrap()]);
    env.crash_at(
        &["adopt", "b", "--app", "mobile", "--tag", "v2"],
        "adopt:after-exchange",
    );
    env.ok(&["status"]);
    let kept = entries(&env.data.join("apps/mobile/legacy"));
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(
        std::fs::read_to_string(
            env.data
                .join("apps/mobile/legacy")
                .join(&kept[0])
                .join("index.php")
        )
        .unwrap(),
        "<?php echo 'b copy';\n"
    );
    assert!(!env.data.join("legacy").exists() || entries(&env.data.join("legacy")).is_empty());
    assert_eq!(entries(&env.www.join("b")), ["htdocs", "mobile"]);
}

#[test]
fn each_webroot_has_the_address_of_its_own_site() {
    let env = two_apps();
    let w = |dir: &str| format!("{dir}={}", env.www.join("e").join(dir).display());
    let add = |extra: &[&str]| {
        let mut args = vec!["club", "add", "e"];
        let (main, mobile) = (w("main"), w("mobile"));
        args.extend(["--webroot", &main, "--webroot", &mobile]);
        args.extend(extra);
        env.run(&args)
    };
    for (extra, expected) in [
        (
            &["--url", "https://e.example"][..],
            "write the address as <app>=<url>",
        ),
        (
            &["--url", "shop=https://e.example"][..],
            "there is no application \"shop\"",
        ),
        (
            &["--url", "main=ftp://e.example"][..],
            "must start with http:// or https://",
        ),
        (
            &[
                "--url",
                "main=https://a.example",
                "--url",
                "main=https://b.example",
            ][..],
            "two addresses for the application main",
        ),
    ] {
        let out = add(extra);
        assert!(!out.status.success());
        let error = String::from_utf8_lossy(&out.stderr);
        assert!(error.contains(expected), "{extra:?}: {error}");
    }
    let out = add(&[
        "--url",
        "main=https://e.example/",
        "--url",
        "mobile=https://m.e.example/?a=b",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_str(&env.ok(&["status", "--json"])).unwrap();
    let urls: Vec<(&str, &str)> = status
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["slug"] == "e")
        .map(|r| (r["app"].as_str().unwrap(), r["url"].as_str().unwrap()))
        .collect();
    assert_eq!(
        urls,
        [
            ("main", "https://e.example/"),
            ("mobile", "https://m.e.example/?a=b")
        ]
    );
}
