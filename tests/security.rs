//! The security review's findings (issue 9), each tried as an attacker would: through the
//! panel on a real server, the real binary, and repositories made by the test.

use std::os::unix::fs::{PermissionsExt, symlink};

use clubdeploy::db::audit;
use clubdeploy::domain::JobStatus;
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
        let page = app.page(&client, "/login").await;
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
    let csv = app.page(&admin, "/audit.csv").await;
    let row = csv.lines().find(|l| l.contains("HYPERLINK")).unwrap();
    assert!(row.contains(",'=cmd,'-192.0.2.7,"), "{row}");
    assert!(
        row.contains(",club,'@a,,\"'+HYPERLINK(\"\"x\"\")\","),
        "{row}"
    );
    // Staff addresses: admins see them, others do not.
    let audit_page = app.page(&admin, "/audit").await;
    assert!(audit_page.contains("127.0.0.1"), "{audit_page}");
    let viewer = app.login("viewer").await;
    let audit_page = app.page(&viewer, "/audit").await;
    assert!(!audit_page.contains("127.0.0.1"), "{audit_page}");
    let csv = app.page(&viewer, "/audit.csv").await;
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

/// Every file under `dir` named `name`, not following links.
fn files_named(dir: &std::path::Path, name: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                pending.push(entry.path());
            } else if entry.file_name() == name {
                found.push(entry.path());
            }
        }
    }
    found
}

#[test]
fn a_link_through_another_link_or_out_by_its_written_path_is_refused_and_nothing_written_out() {
    // The attack: `l` leads to the release's top, the manifest's name leads through it and up
    // out of the release (into `outside`, which exists); a dangling link, later served, leads
    // out the same way.
    for (links, named) in [
        (
            vec![
                ("d1/d2/d3/l", "../../.."),
                (
                    ".clubdeploy-release.json",
                    "d1/d2/d3/l/../../../outside/written-out",
                ),
            ],
            ".clubdeploy-release.json -> d1/d2/d3/l/../../../outside/written-out (through d1/d2/d3/l)",
        ),
        (
            vec![
                ("d1/d2/d3/l", "../../.."),
                ("out.txt", "d1/d2/d3/l/../../../outside/served"),
            ],
            "out.txt -> d1/d2/d3/l/../../../outside/served (through d1/d2/d3/l)",
        ),
        (
            vec![("out.txt", "missing/../../outside/served")],
            "out.txt -> missing/../../outside/served",
        ),
    ] {
        let env = TestEnv::new();
        env.add_clubs(&["a"]);
        env.ok(&["deploy", "v1", "--all"]);
        std::fs::create_dir_all(env.app.join("d1/d2/d3")).unwrap();
        let root = env.app.parent().unwrap();
        // Where `../../..` from the release's top lands (releases, data, the test's root).
        std::fs::create_dir_all(root.join("outside")).unwrap();
        tag_with_links(&env, &links);
        let error = env.fails(&["deploy", "v9", "--all"]);
        assert!(error.contains(named), "{error}");
        assert!(error.contains("no club was changed"), "{error}");
        assert_eq!(env.release_of("a"), env.release_name("v1"));
        assert_eq!(
            files_named(root, "written-out"),
            Vec::<std::path::PathBuf>::new()
        );
    }
}

#[test]
fn a_tree_may_not_hold_the_names_clubdeploy_writes_into_a_release() {
    for name in [".clubdeploy-release.json", ".clubdeploy"] {
        let env = TestEnv::new();
        env.add_clubs(&["a"]);
        env.ok(&["deploy", "v1", "--all"]);
        tag_with_links(&env, &[(name, "index.php")]);
        let error = env.fails(&["deploy", "v9", "--all"]);
        assert!(
            error.contains(&format!(
                "the release holds {name}, a name clubdeploy keeps"
            )),
            "{error}"
        );
        assert_eq!(env.release_of("a"), env.release_name("v1"));
    }
}

#[tokio::test]
async fn a_put_back_moves_only_the_clubs_its_deployer_confirmed() {
    let env = TestEnv::new();
    env.add_clubs(&["a", "b"]);
    env.ok(&["deploy", "v1", "--all"]);
    env.ok(&["deploy", "v2", "--all"]);
    // b leaves job #2's release, so the put-back offered to a deployer of club a alone
    // names a alone...
    env.ok(&["rollback", "b"]);
    let app = crate::web::TestApp::spawn_driven(env).await;
    let limited = app.login("limited").await;
    let confirm = app.page(&limited, "/jobs/2/put-back").await;
    assert!(confirm.contains("1 club will go back"), "{confirm}");
    let queued = app.post(&limited, "/jobs/2/put-back", &[]).await;
    assert_eq!(queued.status(), reqwest::StatusCode::SEE_OTHER);
    // ... and b runs job #2's release again before the put-back runs (its link set by hand:
    // a command would work the queue first): it is still not the deployer's to move.
    let v2 = app
        .env
        .data
        .join("releases")
        .join(app.env.release_name("v2"));
    let webroot = app.env.webroot("b");
    let temp = webroot.with_extension("by-hand");
    symlink(&v2, &temp).unwrap();
    std::fs::rename(&temp, &webroot).unwrap();
    assert_eq!(app.run_job(crate::web::job_id(&queued)).await, "succeeded");
    assert_eq!(app.env.release_of("a"), app.env.release_name("v1"));
    assert_eq!(app.env.release_of("b"), app.env.release_name("v2"));
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

/// A cookie-keeping client whose connections come from `address` (any of 127.0.0.0/8).
fn client_from(address: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .local_address(address.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap()
}

/// Whether sign-ins are counted as failures for `name`.
fn failures_of(app: &TestApp, name: &str) -> i64 {
    use diesel::prelude::*;
    let conn = &mut app.pool.get().unwrap();
    diesel::sql_query(format!(
        "SELECT COUNT(*) AS n FROM login_attempts WHERE account = '{name}' AND NOT succeeded"
    ))
    .get_result::<Count>(conn)
    .unwrap()
    .n
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

#[tokio::test]
async fn failed_sign_ins_slow_that_address_down_but_never_lock_the_owner_out() {
    let app = TestApp::spawn(TestEnv::new()).await;
    let stranger = client_from("127.0.0.2");
    for _ in 0..3 {
        let wrong = app
            .try_login(&stranger, "deployer", "not the password!")
            .await;
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    }
    // The next attempt from there waits, even with the right password…
    let refused = app.try_login(&stranger, "deployer", PASSWORD).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    // …attempts refused meanwhile are not counted and do not extend the wait…
    let counted = failures_of(&app, "deployer");
    for _ in 0..5 {
        let refused = app.try_login(&stranger, "deployer", "guess").await;
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    }
    assert_eq!(failures_of(&app, "deployer"), counted);
    // …while the owner, elsewhere, signs in at once.
    let owner = client_from("127.0.0.1");
    let ok = app.try_login(&owner, "deployer", PASSWORD).await;
    assert_eq!(ok.status(), StatusCode::SEE_OTHER);
    // After the wait, the right password works from there too.
    tokio::time::sleep(std::time::Duration::from_secs(wait + 1)).await;
    let ok = app.try_login(&stranger, "deployer", PASSWORD).await;
    assert_eq!(ok.status(), StatusCode::SEE_OTHER);

    // Ten failures from one address, over any names, slow that address down for all names.
    let prober = client_from("127.0.0.3");
    for n in 0..10 {
        let wrong = app
            .try_login(&prober, &format!("nobody{n}"), "whatever")
            .await;
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED, "attempt {n}");
    }
    let refused = app.try_login(&prober, "admin", PASSWORD).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    app.login("admin").await;

    // The audit log: failures under unknown names hide what was typed; each throttle once.
    let conn = &mut app.pool.get().unwrap();
    let rows = audit::list(
        conn,
        &audit::Filter {
            limit: 1000,
            ..Default::default()
        },
    )
    .unwrap();
    let count = |action: &str| rows.iter().filter(|r| r.action == action).count();
    assert_eq!(count("login.failed"), 13);
    assert_eq!(count("login.throttled"), 2);
    // The stranger's right password after the wait ended that throttle, once.
    assert_eq!(count("login.throttle_ended"), 1);
    assert!(
        !rows.iter().any(|r| r.target.starts_with("nobody")),
        "typed names leaked"
    );
    assert_eq!(
        rows.iter()
            .filter(|r| r.target == clubdeploy::auth::staff::UNKNOWN_ACCOUNT)
            .count(),
        11
    );
}

#[tokio::test]
async fn parallel_guesses_cannot_exceed_the_limit() {
    let app = TestApp::spawn(TestEnv::new()).await;
    let client = client_from("127.0.0.4");
    let page = app.page(&client, "/login").await;
    let csrf = csrf_of(&page);
    let guesses = (0..20).map(|n| {
        let client = client.clone();
        let (url, csrf) = (app.url("/login"), csrf.clone());
        async move {
            client
                .post(url)
                .form(&[
                    ("name", "admin"),
                    ("password", format!("guess number {n}").as_str()),
                    ("csrf", &csrf),
                ])
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    let statuses = futures_util::future::join_all(guesses).await;
    let checked = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    assert!(
        (1..=clubdeploy::auth::staff::FREE_FAILURES_PER_ACCOUNT as usize).contains(&checked),
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| [
            StatusCode::UNAUTHORIZED,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::SERVICE_UNAVAILABLE
        ]
        .contains(s)),
        "{statuses:?}"
    );
    assert_eq!(failures_of(&app, "admin"), checked as i64);
}

/// The database file and its write-ahead log, in bytes.
fn database_bytes(app: &TestApp) -> u64 {
    let path = app.settings.database_path();
    let wal = path.with_extension("sqlite3-wal");
    [path, wal]
        .iter()
        .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
        .sum()
}

#[tokio::test]
async fn a_flood_of_bogus_sign_ins_writes_almost_nothing() {
    let app = TestApp::spawn(TestEnv::new()).await;
    let client = client_from("127.0.0.5");
    let page = app.page(&client, "/login").await;
    let csrf = csrf_of(&page);
    let before = database_bytes(&app);
    let long_name = "x".repeat(3000);
    // 10,000 attempts, 16 at a time: names that cannot be user names, unknown names, and
    // a body too big to read.
    let flood = futures_util::stream::iter(0..10_000).map(|n| {
        let client = client.clone();
        let (url, csrf, long_name) = (app.url("/login"), csrf.clone(), long_name.clone());
        async move {
            let name = match n % 3 {
                0 => long_name,
                1 => format!("stranger{n}"),
                _ => format!("<b>{n}</b>"),
            };
            let mut form = vec![("name", name), ("password", "x".into()), ("csrf", csrf)];
            if n % 100 == 0 {
                form.push(("padding", "p".repeat(8000)));
            }
            client.post(url).form(&form).send().await.unwrap().status()
        }
    });
    use futures_util::StreamExt;
    let statuses: Vec<StatusCode> = flood.buffer_unordered(16).collect().await;
    assert!(
        statuses
            .iter()
            .all(|s| s.is_client_error() || s.is_server_error())
    );
    assert!(
        statuses.contains(&StatusCode::PAYLOAD_TOO_LARGE),
        "big bodies are refused"
    );
    let grown = database_bytes(&app).saturating_sub(before);
    assert!(grown < 1024 * 1024, "the database grew by {grown} bytes");
    // Nobody was locked out by it.
    app.login("admin").await;
}

#[tokio::test]
async fn the_csv_export_and_the_chain_check_walk_a_long_log_page_by_page() {
    let app = TestApp::spawn(TestEnv::new()).await;
    {
        let conn = &mut app.pool.get().unwrap();
        for n in 0..2_500 {
            let details = format!("row {n}");
            let entry = audit::Entry::new("setup", "test.row", "club", "a", &details);
            audit::record(conn, &entry).unwrap();
        }
    }
    let total = {
        let conn = &mut app.pool.get().unwrap();
        clubdeploy::db::audit_anchor::write(conn, &app.settings.anchor_file(), false).unwrap();
        audit::verify(conn, &app.settings.anchor_file())
            .unwrap()
            .unwrap()
            .rows
    };
    assert!(total > 2_500, "{total}");
    let admin = app.login("admin").await;
    let csv = app.page(&admin, "/audit.csv").await;
    let ids: Vec<i64> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    // Every row once, newest first (the sign-in above added rows after `total`).
    assert!(ids.len() > total, "{} rows of {total}", ids.len());
    assert!(
        ids.windows(2).all(|w| w[0] == w[1] + 1),
        "rows missing or repeated"
    );
    assert_eq!(*ids.last().unwrap(), 1);
    let page = app.page(&admin, "/audit/verify").await;
    assert!(page.contains(&format!("all {} rows", ids.len())), "{page}");
}

#[test]
fn a_running_job_keeps_no_database_connection_while_it_builds() {
    let mut env = TestEnv::new();
    let started = env.root.path().join("build-started");
    env.config.build_commands = vec![crate::helpers::sh(&format!(
        "touch {}; sleep 3",
        started.display()
    ))];
    env.configure();
    env.add_clubs(&["a"]);
    let settings = clubdeploy::config::Settings::load(&env.config_path).unwrap();
    let pool = clubdeploy::db::open(&settings.database_path()).unwrap();
    let spec = clubdeploy::domain::JobSpec::Deploy {
        app: clubdeploy::domain::AppName::main(),
        tag: clubdeploy::domain::ReleaseTag::parse("v1").unwrap(),
        targets: clubdeploy::domain::Targets::All,
        canary: None,
        rebuild: false,
        group: None,
    };
    clubdeploy::jobs::enqueue::enqueue(&mut pool.get().unwrap(), &spec, "test", None).unwrap();
    let worker = {
        let (settings, pool) = (settings.clone(), pool.clone());
        std::thread::spawn(move || clubdeploy::jobs::queue::drain(&settings, &pool).unwrap())
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !started.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the build never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // While the build runs, every one of the pool's connections can be had.
    let held: Vec<_> = (0..pool.max_size())
        .map(|n| {
            pool.get_timeout(std::time::Duration::from_millis(500))
                .unwrap_or_else(|e| panic!("connection {n} of {}: {e}", pool.max_size()))
        })
        .collect();
    drop(held);
    let finished = worker.join().unwrap();
    assert_eq!(finished.len(), 1);
    assert_eq!(env.release_of("a"), env.release_name("v1"));
}

/// Reads a live stream until it ends (bounded); returns whether it ended within `limit`.
async fn ends_within(mut stream: reqwest::Response, limit: std::time::Duration) -> bool {
    tokio::time::timeout(limit, async {
        while let Ok(Some(_)) = stream.chunk().await {}
    })
    .await
    .is_ok()
}

#[tokio::test]
async fn live_job_streams_end_with_their_session_and_are_capped() {
    let env = TestEnv::new();
    env.add_clubs(&["a"]);
    let app = TestApp::spawn(env).await;
    // The job stays queued: the stream would run for an hour.
    let _hold = app.hold_worker().await;
    app.queue_a_job();
    let viewer = app.login("viewer").await;
    let open = || viewer.get(app.url("/jobs/1/events?after=0")).send();
    let mut streams = Vec::new();
    for _ in 0..4 {
        let stream = open().await.unwrap();
        assert_eq!(stream.status(), StatusCode::OK);
        streams.push(stream);
    }
    let fifth = open().await.unwrap();
    assert_eq!(fifth.status(), StatusCode::TOO_MANY_REQUESTS);
    // Closing one frees its place.
    drop(streams.pop());
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let again = open().await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    streams.push(again);
    // Signing out ends every stream of the session within a moment.
    assert_eq!(
        app.post(&viewer, "/logout", &[]).await.status(),
        StatusCode::SEE_OTHER
    );
    for stream in streams {
        assert!(ends_within(stream, std::time::Duration::from_secs(5)).await);
    }
    // So does disabling the user.
    let deployer = app.login("deployer").await;
    let stream = deployer
        .get(app.url("/jobs/1/events?after=0"))
        .send()
        .await
        .unwrap();
    let admin = app.login("admin").await;
    let disabled = app.post(&admin, "/staff/deployer/disable", &[]).await;
    assert_eq!(disabled.status(), StatusCode::SEE_OTHER);
    assert!(ends_within(stream, std::time::Duration::from_secs(5)).await);
}

#[tokio::test]
async fn staff_queue_a_few_jobs_at_most_and_a_disabled_users_jobs_are_cancelled() {
    let env = TestEnv::new();
    env.add_clubs(&["a"]);
    let app = TestApp::spawn(env).await;
    let _hold = app.hold_worker().await;
    let deployer = app.login("deployer").await;
    let mut queued = Vec::new();
    for _ in 0..5 {
        let response = app
            .post(&deployer, "/deploy", &[("tag", "v1"), ("target", "all")])
            .await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        queued.push(crate::web::job_id(&response));
    }
    let sixth = app
        .post(&deployer, "/deploy", &[("tag", "v1"), ("target", "all")])
        .await;
    assert_eq!(sixth.status(), StatusCode::CONFLICT);
    assert!(
        sixth
            .text()
            .await
            .unwrap()
            .contains("you already have 5 jobs waiting to run")
    );
    // Others are not limited by it.
    let admin = app.login("admin").await;
    let response = app
        .post(&admin, "/deploy", &[("tag", "v1"), ("target", "all")])
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let admins = crate::web::job_id(&response);
    // Disabling the deployer cancels their waiting jobs (audited), not the admin's.
    let disabled = app.post(&admin, "/staff/deployer/disable", &[]).await;
    assert_eq!(disabled.status(), StatusCode::SEE_OTHER);
    let conn = &mut app.pool.get().unwrap();
    for id in &queued {
        let job = clubdeploy::db::jobs::by_id(conn, *id).unwrap().unwrap();
        assert_eq!(job.status, JobStatus::Cancelled, "job #{id}");
    }
    let job = clubdeploy::db::jobs::by_id(conn, admins).unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Queued);
    let rows = audit::list(
        conn,
        &audit::Filter {
            action: Some("job.cancelled".into()),
            limit: 100,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(rows.len(), 5);
    assert!(
        rows.iter()
            .all(|r| r.details.contains("deployer was disabled"))
    );
}

#[tokio::test]
async fn a_change_of_role_or_clubs_cancels_the_jobs_asked_for_under_the_old_rights() {
    let env = TestEnv::new();
    env.add_clubs(&["a", "b"]);
    let app = crate::web::TestApp::spawn_driven(env).await;
    let limited = app.login("limited").await;
    let admin = app.login("admin").await;
    app.refresh(&admin).await;
    let deploy = |client| {
        app.post(
            client,
            "/deploy",
            &[("tag", "v1"), ("target", "some"), ("clubs", "a")],
        )
    };
    let first = crate::web::job_id(&deploy(&limited).await);
    let status = |id| {
        let conn = &mut app.pool.get().unwrap();
        clubdeploy::db::jobs::by_id(conn, id)
            .unwrap()
            .unwrap()
            .status
    };
    // Setting the same role and clubs again changes nothing, so nothing is cancelled.
    let same = [("role", "deployer"), ("clubs", "a")];
    let response = app.post(&admin, "/staff/limited/role", &same).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(status(first), JobStatus::Queued);
    // Club a taken away: the deploy to a, asked for while a was theirs, does not run.
    let other = [("role", "deployer"), ("clubs", "b")];
    let response = app.post(&admin, "/staff/limited/role", &other).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(status(first), JobStatus::Cancelled);
    let rows = audit::list(
        &mut app.pool.get().unwrap(),
        &audit::Filter {
            action: Some("job.cancelled".into()),
            limit: 10,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(rows.len(), 1);
    assert!(
        rows[0].details.contains("limited's role or clubs changed"),
        "{}",
        rows[0].details
    );
    assert_eq!(app.run_pending_jobs().await, []);
}

#[tokio::test]
async fn a_group_change_whose_way_back_holds_a_line_break_is_refused_changing_nothing() {
    let env = TestEnv::new();
    env.add_clubs(&["a"]);
    let app = TestApp::spawn(env).await;
    let admin = app.login("admin").await;
    for back in ["/clubs?q=a\r\nSet-Cookie: x=1", "/clubs?q=\u{0}"] {
        let response = app
            .post(
                &admin,
                "/groups",
                &[
                    ("group", "canary"),
                    ("clubs", "a"),
                    ("action", "join"),
                    ("back", back),
                ],
            )
            .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{back:?}");
        let text = response.text().await.unwrap();
        assert!(text.contains("nothing was changed"), "{text}");
    }
    let conn = &mut app.pool.get().unwrap();
    assert_eq!(
        clubdeploy::db::groups::members(conn, "canary").unwrap(),
        Vec::<String>::new()
    );
}

#[test]
fn a_data_dir_holding_someone_elses_files_is_refused_and_left_as_it_was() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new();
    // A typo: `data_dir` names a folder of someone else's.
    if env.data.exists() {
        std::fs::remove_dir_all(&env.data).unwrap();
    }
    std::fs::create_dir(&env.data).unwrap();
    std::fs::write(env.data.join("their-file"), "theirs").unwrap();
    std::fs::set_permissions(&env.data, std::fs::Permissions::from_mode(0o755)).unwrap();
    for command in [&["migrate"][..], &["club", "list"]] {
        let error = env.fails(command);
        assert!(
            error.contains("already holds other files (their-file …) and nothing of clubdeploy's"),
            "{error}"
        );
    }
    let left: Vec<String> = std::fs::read_dir(&env.data)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["their-file"]);
    let mode = std::fs::metadata(&env.data).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o755);
    // Emptied, it is clubdeploy's.
    std::fs::remove_file(env.data.join("their-file")).unwrap();
    env.ok(&["migrate"]);
}

#[tokio::test]
async fn signing_in_ends_the_previous_session_of_that_browser() {
    let app = TestApp::spawn(TestEnv::new()).await;
    let client = app.client();
    let first = app.try_login(&client, "viewer", PASSWORD).await;
    let old = first
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .find(|c| c.starts_with("clubdeploy_session="))
        .unwrap();
    // The same browser signs in again (as someone else): the old session is gone.
    let second = app.try_login(&client, "admin", PASSWORD).await;
    assert_eq!(second.status(), StatusCode::SEE_OTHER);
    let raw = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let with_old = raw
        .get(app.url("/"))
        .header("Cookie", old)
        .send()
        .await
        .unwrap();
    assert_eq!(with_old.status(), StatusCode::SEE_OTHER);
    assert!(app.page(&client, "/staff").await.contains("Staff"));
}

#[tokio::test]
async fn forwarded_for_counts_only_from_a_trusted_proxy() {
    for (trusted, expected) in [(false, "127.0.0.1"), (true, "203.0.113.5")] {
        let mut env = TestEnv::new();
        if trusted {
            env.config.web = vec!["trusted_proxies = [\"127.0.0.1\"]".into()];
            env.configure();
        }
        let app = TestApp::spawn(env).await;
        let client = app.client();
        let page = app.page(&client, "/login").await;
        let response = client
            .post(app.url("/login"))
            .header("X-Forwarded-For", "198.51.100.1, 203.0.113.5")
            .form(&[
                ("name", "admin"),
                ("password", PASSWORD),
                ("csrf", &csrf_of(&page)),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let conn = &mut app.pool.get().unwrap();
        let rows = audit::list(
            conn,
            &audit::Filter {
                action: Some("login.succeeded".into()),
                limit: 1,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            rows[0].address.as_deref(),
            Some(expected),
            "trusted: {trusted}"
        );
    }
}

#[test]
fn a_club_directory_swapped_for_a_link_mid_deploy_is_refused_and_nothing_is_written_outside() {
    let mut env = TestEnv::new();
    env.add_clubs(&["a", "b"]);
    env.ok(&["deploy", "v1", "--all"]);
    let outside = env.root.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    // A temporary-link name recovery would clean up, if it followed the link.
    std::os::unix::fs::symlink("/etc", outside.join("htdocs.tmp-bait")).unwrap();
    // While v2 builds (after the webroots were checked), club a's directory becomes a link
    // to a directory outside the folder that holds the clubs' sites, as a local user who can write it could do.
    let a = env.www.join("a");
    env.config.build_commands = vec![crate::helpers::sh(&format!(
        "mv {a} {a}-was && ln -s {outside} {a}",
        a = a.display(),
        outside = outside.display()
    ))];
    env.configure();
    let error = env.fails(&["deploy", "v2", "--all"]);
    assert!(
        error.contains(&format!("{} is a symbolic link", a.display())),
        "{error}"
    );
    let mut left = crate::helpers::entries(&outside);
    left.sort();
    assert_eq!(
        left,
        ["htdocs.tmp-bait"],
        "something was written outside the folder that holds the clubs' sites"
    );
    // Recovery and every later command leave the outside alone too.
    env.config.build_commands = Vec::new();
    env.configure();
    env.ok(&["status"]);
    assert_eq!(crate::helpers::entries(&outside), ["htdocs.tmp-bait"]);
}

#[test]
fn a_webroot_whose_directory_others_may_write_is_refused() {
    let env = TestEnv::new();
    env.add_clubs(&["a"]);
    let dir = env.www.join("a");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let error = env.fails(&["deploy", "v1", "--all"]);
    assert!(
        error.contains("may be written by others (mode 777)"),
        "{error}"
    );
    assert!(!env.webroot("a").exists());
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    env.ok(&["deploy", "v1", "--all"]);
    assert_eq!(env.release_of("a"), env.release_name("v1"));
}

fn mode_of(path: &std::path::Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn the_data_directory_is_private_and_only_releases_are_readable_by_others() {
    let mut env = TestEnv::new();
    // A build command writes files under the service's umask (077).
    env.config.build_commands = vec![crate::helpers::sh(
        "mkdir -p vendor/acme && touch built.txt vendor/acme/lib.php",
    )];
    env.configure();
    env.add_clubs(&["a"]);
    env.ok(&["deploy", "v1", "--all"]);
    let release = env.releases_dir().join(env.release_name("v1"));
    for (path, expected) in [
        (env.data.clone(), 0o711),
        (env.data.join("clubdeploy.sqlite3"), 0o600),
        (env.data.join("deploy.lock"), 0o600),
        (env.data.join("audit.key"), 0o600),
        (env.data.join("audit-anchors.log"), 0o600),
        (env.data.join("repo.git"), 0o700),
        (env.releases_dir(), 0o755),
        (release.clone(), 0o755),
        (release.join("index.php"), 0o644),
        (release.join("bin/tool"), 0o755),
        (release.join("built.txt"), 0o644),
        (release.join("vendor/acme"), 0o755),
        (release.join("vendor/acme/lib.php"), 0o644),
        (env.www.join("a"), 0o755),
    ] {
        assert_eq!(
            mode_of(&path),
            expected,
            "{}: {:o}",
            path.display(),
            mode_of(&path)
        );
    }
    let wal = env.data.join("clubdeploy.sqlite3-wal");
    if wal.exists() {
        assert_eq!(mode_of(&wal), 0o600);
    }

    // A data directory others may write is refused before anything is done.
    std::fs::set_permissions(&env.data, std::fs::Permissions::from_mode(0o777)).unwrap();
    let error = env.fails(&["status"]);
    assert!(error.contains("refusing to start"), "{error}");
    assert!(error.contains("mode 777"), "{error}");
    std::fs::set_permissions(&env.data, std::fs::Permissions::from_mode(0o711)).unwrap();
    // So is a database others may write.
    let db = env.data.join("clubdeploy.sqlite3");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o666)).unwrap();
    let error = env.fails(&["status"]);
    assert!(
        error.contains("clubdeploy.sqlite3 may be written by others"),
        "{error}"
    );
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o600)).unwrap();
    env.ok(&["status"]);
}

#[tokio::test]
async fn a_sign_in_flood_is_turned_away_while_pages_keep_answering() {
    let app = TestApp::spawn(TestEnv::new()).await;
    let viewer = app.login("viewer").await;
    // 48 sign-ins at once, each from its own address and for a name of its own (so none is
    // throttled or waits for another's turn): each costs a password check.
    let attempts = (0..48).map(|n| {
        let client = client_from(&format!("127.0.1.{}", n + 1));
        let url = app.url("/login");
        async move {
            let page = client.get(&url).send().await.unwrap().text().await.unwrap();
            let response = client
                .post(&url)
                .form(&[
                    ("name", format!("someone{n}").as_str()),
                    ("password", "not the password at all"),
                    ("csrf", &csrf_of(&page)),
                ])
                .send()
                .await
                .unwrap();
            let retry = response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            (response.status(), retry)
        }
    });
    let page = async {
        // Meanwhile a member of staff browses: pages hold no connection hostage to hashing.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        viewer.get(app.url("/jobs")).send().await.unwrap().status()
    };
    let (results, page) = tokio::join!(futures_util::future::join_all(attempts), page);
    assert_eq!(page, StatusCode::OK);
    let busy: Vec<_> = results
        .iter()
        .filter(|(status, _)| *status == StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    assert!(!busy.is_empty(), "no sign-in was turned away: {results:?}");
    assert!(busy.iter().all(|(_, retry)| retry.as_deref() == Some("5")));
    assert!(
        results
            .iter()
            .all(|(s, _)| [StatusCode::UNAUTHORIZED, StatusCode::SERVICE_UNAVAILABLE].contains(s)),
        "{results:?}"
    );
}

#[tokio::test]
async fn a_change_posted_from_another_website_is_refused_even_with_a_valid_token() {
    let env = TestEnv::new();
    let webroot = env.webroot("x");
    let app = TestApp::spawn(env).await;
    let admin = app.login("admin").await;
    let csrf = app.csrf(&admin).await;
    // A text/plain body needs no CORS preflight: any site can make a browser send it.
    let body = format!("slug=x&name=X&webroot={}&csrf={csrf}", webroot.display());
    let send = |headers: &'static [(&'static str, &'static str)]| {
        let mut request = admin
            .post(app.url("/clubs"))
            .header("content-type", "text/plain")
            .body(body.clone());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send()
    };
    for headers in [
        &[("origin", "http://evil.example")][..],
        &[("sec-fetch-site", "cross-site")],
        &[
            ("sec-fetch-site", "same-site"),
            ("origin", "http://127.0.0.1"),
        ],
    ] {
        let response = send(headers).await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{headers:?}");
        let text = response.text().await.unwrap();
        assert!(text.contains("another website"), "{text}");
        assert!(!app.page(&admin, "/clubs").await.contains("/clubs/x/"));
    }
    // The same body from the panel's own page goes through: the refusal was the origin's.
    let response = send(&[("sec-fetch-site", "same-origin")]).await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(app.page(&admin, "/clubs").await.contains("/clubs/x/"));
}

#[tokio::test]
async fn a_deploy_of_a_tag_the_repository_lacks_queues_nothing_and_fetches_nothing() {
    let env = TestEnv::new();
    env.add_clubs(&["a"]);
    env.ok(&["deploy", "v1", "--all"]);
    let app = TestApp::spawn_driven(env).await;
    let admin = app.login("admin").await;
    let jobs_before = app.env.ok(&["jobs", "--json"]);
    for n in 0..8 {
        let tag = format!("v9.{n}");
        let response = app
            .post(&admin, "/deploy", &[("tag", &tag), ("target", "all")])
            .await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{tag}");
        let text = response.text().await.unwrap();
        assert!(
            text.contains(&format!("has no tag {tag} as last fetched")),
            "{text}"
        );
        assert!(text.contains("nothing was queued"), "{text}");
    }
    assert_eq!(app.env.ok(&["jobs", "--json"]), jobs_before);
    assert_eq!(app.run_pending_jobs().await, []);
    // A tag the mirror has goes through.
    let queued = app
        .post(&admin, "/deploy", &[("tag", "v2"), ("target", "all")])
        .await;
    assert_eq!(queued.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn build_output_is_shown_to_deployers_and_admins_and_withheld_from_viewers() {
    let mut env = TestEnv::new();
    // The output differs from the command line, which everyone sees.
    env.config.build_commands = vec![crate::helpers::sh("echo build-said-k3y-$((6*7))")];
    env.configure();
    env.add_clubs(&["a"]);
    env.ok(&["deploy", "v1", "--all"]);
    let app = TestApp::spawn_driven(env).await;
    for (who, sees) in [("viewer", false), ("deployer", true), ("admin", true)] {
        let client = app.login(who).await;
        let page = app.page(&client, "/jobs/1").await;
        assert_eq!(page.contains("build-said-k3y-42"), sees, "{who}: {page}");
        assert_eq!(
            page.contains("shown to deployers and administrators only"),
            !sees,
            "{who}"
        );
        // The live stream of the finished job says the same.
        let stream = app.page(&client, "/jobs/1/events").await;
        assert!(stream.contains("event: log"), "{who}: {stream}");
        assert_eq!(
            stream.contains("build-said-k3y-42"),
            sees,
            "{who}: {stream}"
        );
    }
}

#[tokio::test]
async fn the_server_prunes_old_job_logs_and_keeps_the_jobs_and_the_audit_log() {
    use diesel::{Connection, RunQueryDsl};
    let env = TestEnv::new();
    env.add_clubs(&["a"]);
    env.ok(&["deploy", "v1", "--all"]);
    env.ok(&["deploy", "v2", "--all"]);
    let db = env.data.join("clubdeploy.sqlite3");
    let events_of = |job: i32| -> i64 {
        let mut conn = diesel::SqliteConnection::establish(db.to_str().unwrap()).unwrap();
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        diesel::sql_query(format!(
            "SELECT COUNT(*) AS n FROM job_events WHERE job_id = {job}"
        ))
        .get_result::<Count>(&mut conn)
        .unwrap()
        .n
    };
    assert!(events_of(1) > 0 && events_of(2) > 0);
    {
        let mut conn = diesel::SqliteConnection::establish(db.to_str().unwrap()).unwrap();
        diesel::sql_query(
            "UPDATE jobs SET finished_at = datetime('now', '-400 days') WHERE id = 1",
        )
        .execute(&mut conn)
        .unwrap();
    }
    // The server's worker tidies up when it starts, then hourly.
    let app = TestApp::spawn(env).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while events_of(1) > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "job #1's log was not pruned"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        events_of(2) > 0,
        "a job that ended within keep_days keeps its log"
    );
    let jobs: serde_json::Value = serde_json::from_str(&app.env.ok(&["jobs", "--json"])).unwrap();
    assert_eq!(jobs.as_array().unwrap().len(), 2, "{jobs}");
    app.env.ok(&["audit", "verify"]);
}

#[tokio::test]
async fn every_job_checks_its_requesters_role_and_clubs_again_when_it_starts() {
    use diesel::RunQueryDsl;
    let env = TestEnv::new();
    env.add_clubs(&["a", "b"]);
    env.ok(&["deploy", "v1", "--all"]);
    let app = crate::web::TestApp::spawn_driven(env).await;
    let limited = app.login("limited").await;
    let deploy = || {
        app.post(
            &limited,
            "/deploy",
            &[("tag", "v2"), ("target", "some"), ("clubs", "a")],
        )
    };
    // Asking for a club outside their clubs is refused when queued, by the same rule.
    let outside = app
        .post(
            &limited,
            "/deploy",
            &[("tag", "v2"), ("target", "some"), ("clubs", "b")],
        )
        .await;
    assert_eq!(outside.status(), StatusCode::FORBIDDEN);
    for (change, why) in [
        // Rights changed behind the panel's back (no cancel ran): the start still refuses.
        (
            "UPDATE users SET clubs = 'b' WHERE name = 'limited'",
            "may not change club a",
        ),
        (
            "UPDATE users SET clubs = 'a', role = 'viewer' WHERE name = 'limited'",
            "needs a deployer",
        ),
    ] {
        diesel::sql_query("UPDATE users SET clubs = 'a', role = 'deployer' WHERE name = 'limited'")
            .execute(&mut app.pool.get().unwrap())
            .unwrap();
        let id = crate::web::job_id(&deploy().await);
        diesel::sql_query(change)
            .execute(&mut app.pool.get().unwrap())
            .unwrap();
        assert_eq!(app.run_job(id).await, "failed");
        let conn = &mut app.pool.get().unwrap();
        let job = clubdeploy::db::jobs::by_id(conn, id).unwrap().unwrap();
        let error = job.error.unwrap();
        assert!(
            error.contains("limited may no longer ask for this job"),
            "{error}"
        );
        assert!(error.contains(why), "{error}");
        assert!(error.contains("nothing was changed"), "{error}");
        assert_eq!(app.env.release_of("a"), app.env.release_name("v1"));
    }
}

#[tokio::test]
async fn staff_change_their_own_password_and_sign_out_their_other_sessions() {
    let app = TestApp::spawn_driven(TestEnv::new()).await;
    let here = app.login("deployer").await;
    let elsewhere = app.login("deployer").await;
    let signed_in = |client: &reqwest::Client| {
        let request = client.get(app.url("/jobs"));
        async move { request.send().await.unwrap().status() == StatusCode::OK }
    };
    let account = app.page(&here, "/account").await;
    assert!(account.contains("in 1 other session"), "{account}");
    let new = "a new and long password";
    for (current, password, repeat, status, why) in [
        (
            "wrong password!",
            new,
            new,
            StatusCode::FORBIDDEN,
            "current password is not right",
        ),
        (
            PASSWORD,
            new,
            "a new and long passwort",
            StatusCode::BAD_REQUEST,
            "differ",
        ),
        (
            PASSWORD,
            "short",
            "short",
            StatusCode::BAD_REQUEST,
            "too short",
        ),
    ] {
        let fields = [
            ("current", current),
            ("password", password),
            ("repeat", repeat),
        ];
        let response = app.post(&here, "/account/password", &fields).await;
        assert_eq!(response.status(), status, "{why}");
        let text = response.text().await.unwrap();
        assert!(
            text.contains(why) && text.contains("othing was changed"),
            "{text}"
        );
        assert!(
            signed_in(&elsewhere).await,
            "a refused change ended a session"
        );
    }
    let fields = [("current", PASSWORD), ("password", new), ("repeat", new)];
    let response = app.post(&here, "/account/password", &fields).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    // The page the change leads to says what it did (and proves this session stays).
    let account = app.page(&here, "/account").await;
    assert!(
        account.contains("1 other session was signed out"),
        "{account}"
    );
    assert!(!signed_in(&elsewhere).await, "the other session ended");
    let old = app.try_login(&app.client(), "deployer", PASSWORD).await;
    assert_ne!(
        old.status(),
        StatusCode::SEE_OTHER,
        "the old password still works"
    );
    let third = app.client();
    assert_eq!(
        app.try_login(&third, "deployer", new).await.status(),
        StatusCode::SEE_OTHER
    );
    let response = app.post(&here, "/account/sign-out-others", &[]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(signed_in(&here).await && !signed_in(&third).await);
    let audit = app.env.ok(&["audit", "--actor", "deployer"]);
    assert!(audit.contains("user.password_changed"), "{audit}");
    assert!(audit.contains("signed out 1 other sessions"), "{audit}");
}

#[tokio::test]
async fn a_site_that_never_answers_does_not_hold_up_the_panels_pages() {
    // Three clubs whose site accepts a connection and never answers (a tarpit).
    let tarpit = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = tarpit.local_addr().unwrap().port();
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = held.clone();
    std::thread::spawn(move || {
        for stream in tarpit.incoming().flatten() {
            keep.lock().unwrap().push(stream);
        }
    });
    let mut env = TestEnv::new();
    env.config.tables.push((
        "health".into(),
        vec![format!("connect_to = \"127.0.0.1:{port}\"")],
    ));
    env.configure();
    env.add_clubs(&["a", "b", "c"]);
    env.ok(&["deploy", "v1", "--all"]);
    for slug in ["a", "b", "c"] {
        env.ok(&["club", "url", slug, &format!("http://{slug}.test/")]);
    }
    let app = TestApp::spawn_driven(env).await;
    let viewer = app.login("viewer").await;
    // The first view waits a moment, then says the figures are on their way; every page
    // meanwhile answers at once from what is known.
    let page = app.page(&viewer, "/opcache").await;
    assert!(page.contains("still being read"), "{page}");
    let dashboard = app.page(&viewer, "/").await;
    assert!(dashboard.contains("Dashboard"), "{dashboard}");
    // The reading in the background ends (a second per site) with why it failed.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let page = app.page(&viewer, "/opcache").await;
        if !page.contains("still being read") {
            assert!(page.contains("did not answer"), "{page}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the reading never ended"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(held.lock().unwrap().len() >= 3, "the sites were asked");
}

#[test]
fn a_build_is_bounded_in_time_files_and_bytes_and_what_it_leaves_running_is_stopped() {
    let mut env = TestEnv::new();
    env.add_clubs(&["a"]);
    // A daemon left holding the build's output no longer keeps the step (and the deploy
    // lock) for its 45 s.
    env.config.build_commands = vec![crate::helpers::sh("sleep 45 & echo built")];
    env.configure();
    let started = std::time::Instant::now();
    env.ok(&["deploy", "v1", "--all"]);
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    // A command past [build] timeout_secs is stopped and the deploy changes nothing.
    env.config.build_commands = vec![crate::helpers::sh("sleep 60")];
    env.config.build_limits = vec!["timeout_secs = 1".into()];
    env.configure();
    let error = env.fails(&["deploy", "v2", "--all"]);
    assert!(error.contains("stopped after 1 s"), "{error}");
    assert_eq!(env.release_of("a"), env.release_name("v1"));
    // A tree with more files, or more bytes, than allowed is refused before it is published.
    env.config.build_commands = Vec::new();
    for (limit, says) in [
        ("max_files = 1", "more than 1 files ([build] max_files)"),
        ("max_bytes = 10", "more than 10 bytes ([build] max_bytes)"),
    ] {
        env.config.build_limits = vec![limit.into()];
        env.configure();
        let error = env.fails(&["deploy", "v2", "--all", "--rebuild"]);
        assert!(error.contains(says), "{limit}: {error}");
        assert_eq!(env.release_of("a"), env.release_name("v1"));
    }
    assert!(
        !env.release_entries()
            .iter()
            .any(|e| e.starts_with(&env.release_name("v2"))),
        "{:?}",
        env.release_entries()
    );
}

#[tokio::test]
async fn comparing_a_legacy_copy_never_reads_a_huge_file_the_release_cannot_match() {
    let env = TestEnv::new();
    let webroot = env.webroot("a");
    std::fs::create_dir_all(&webroot).unwrap();
    // 30 GB each, sparse: reading them would take minutes.
    for name in ["index.php", "dump.sql"] {
        let file = std::fs::File::create(webroot.join(name)).unwrap();
        file.set_len(30 << 30).unwrap();
    }
    env.add_clubs(&["a"]);
    let app = TestApp::spawn_driven(env).await;
    let admin = app.login("admin").await;
    let compare = app.page(&admin, "/clubs/a/adopt?tag=v2").await;
    for expected in [
        "<code>dump.sql</code>",
        "1 file(s) changed in the copy",
        "<code>index.php</code>",
    ] {
        assert!(
            compare.contains(expected),
            "{expected:?} missing:\n{compare}"
        );
    }
}

#[tokio::test]
async fn only_an_admin_stops_a_running_job_and_it_stops_at_a_safe_point() {
    let mut env = TestEnv::new();
    env.add_clubs(&["a"]);
    env.ok(&["deploy", "v1", "--all"]);
    env.config.build_commands = vec![crate::helpers::sh("sleep 3")];
    env.configure();
    let app = TestApp::spawn(env).await;
    let deployer = app.login("deployer").await;
    let admin = app.login("admin").await;
    let id = crate::web::job_id(
        &app.post(&deployer, "/deploy", &[("tag", "v2"), ("target", "all")])
            .await,
    );
    let status = || {
        let conn = &mut app.pool.get().unwrap();
        clubdeploy::db::jobs::by_id(conn, id)
            .unwrap()
            .unwrap()
            .status
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while status() != JobStatus::Running {
        assert!(
            std::time::Instant::now() < deadline,
            "the job never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Its deployer may not stop it once it runs; an administrator may.
    let refused = app
        .post(&deployer, &format!("/jobs/{id}/cancel"), &[])
        .await;
    assert_eq!(refused.status(), StatusCode::CONFLICT);
    let text = refused.text().await.unwrap();
    assert!(
        text.contains("only an administrator can stop a running job"),
        "{text}"
    );
    let page = app.page(&admin, &format!("/jobs/{id}")).await;
    assert!(page.contains("Stop after this wave…"), "{page}");
    let confirm = app.page(&admin, &format!("/jobs/{id}/cancel")).await;
    assert!(confirm.contains("Yes, stop it"), "{confirm}");
    let asked = app.post(&admin, &format!("/jobs/{id}/cancel"), &[]).await;
    assert_eq!(asked.status(), StatusCode::SEE_OTHER);
    while !status().is_finished() {
        assert!(std::time::Instant::now() < deadline, "the job never ended");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status(), JobStatus::Cancelled);
    assert_eq!(app.env.release_of("a"), app.env.release_name("v1"));
    let page = app.page(&admin, &format!("/jobs/{id}")).await;
    assert!(
        page.contains("stopped at admin&#39;s request before any club was switched"),
        "{page}"
    );
}

#[tokio::test]
async fn failed_sign_ins_spread_over_many_addresses_are_audited_once_past_a_hundred() {
    let app = TestApp::spawn_driven(TestEnv::new()).await;
    // 75 addresses, two wrong guesses each at a name of their own (under every throttle, and
    // under the slow-down of an account failing from everywhere): 150 failures.
    for n in 0..75 {
        let client = client_from(&format!("127.0.{}.{}", 10 + n / 200, 1 + n % 200));
        for _ in 0..2 {
            let response = app
                .try_login(&client, &format!("guess{n}"), "a wrong password!")
                .await;
            assert_eq!(
                response.status(),
                StatusCode::UNAUTHORIZED,
                "refused, not throttled"
            );
        }
    }
    let rows_of = |actor: &str, action: &str| {
        let out = app
            .env
            .ok(&["audit", "--json", "--limit", "10000", "--actor", actor]);
        let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
        rows.as_array()
            .unwrap()
            .iter()
            .filter(|r| r["action"] == action)
            .count()
    };
    let stranger = clubdeploy::auth::staff::UNKNOWN_ACCOUNT;
    assert_eq!(rows_of(stranger, "login.failed"), 100);
    assert_eq!(rows_of(stranger, "login.flood"), 1);
    let counted: i64 = (0..75)
        .map(|n| failures_of(&app, &format!("guess{n}")))
        .sum();
    assert_eq!(counted, 150, "every failure still counts");
    // The owner still gets in, and that is audited.
    app.login("admin").await;
    assert_eq!(rows_of("admin", "login.succeeded"), 1);
}
