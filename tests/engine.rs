//! The deploy engine through its command line: build, switch, preflight and reload, prune,
//! rollback, bad input, and serialization of concurrent deploys.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::helpers::{TestEnv, entries, sh};

#[test]
fn build_publishes_a_complete_release_and_reuses_it() {
    let mut env = TestEnv::new();
    let builds = env.root.path().join("builds.log");
    env.config.build_commands = vec![sh(&format!(
        "pwd >> {0}; echo vendor > vendor.txt; ls -a .. >> {0}",
        builds.display()
    ))];
    env.configure();
    env.add_clubs(&["zermatt"]);
    env.ok(&["deploy", "v1", "--club", "zermatt"]);

    let name = env.release_name("v1");
    let log = std::fs::read_to_string(&builds).unwrap();
    let pwd = log.lines().next().unwrap();
    assert!(
        pwd.starts_with(&format!("{}/.build-{name}-", env.releases_dir().display())),
        "build command ran in {pwd}"
    );
    assert!(
        !log.contains(&format!("\n{name}\n")),
        "published before the build finished"
    );

    let dir = env.releases_dir().join(&name);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(".clubdeploy-release.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["tag"], "v1");
    assert_eq!(manifest["commit"], env.commit_of("v1"));
    assert!(manifest["built_at"].as_str().unwrap().starts_with("20"));
    // index.php, lib/Util.php, lib/only-in-v1.php, bin/tool, and vendor.txt from the build.
    assert_eq!(manifest["files"], 5);
    let bytes: u64 = [
        "index.php",
        "lib/Util.php",
        "lib/only-in-v1.php",
        "bin/tool",
        "vendor.txt",
    ]
    .iter()
    .map(|f| std::fs::metadata(dir.join(f)).unwrap().len())
    .sum();
    assert_eq!(manifest["bytes"], bytes);
    assert_eq!(
        std::fs::read_link(dir.join("current")).unwrap(),
        PathBuf::from("index.php")
    );
    let mode = std::fs::metadata(dir.join("bin/tool"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
    assert_eq!(env.release_entries(), vec![name.clone()]);

    let again = env.ok(&["deploy", "v1", "--all"]);
    assert!(
        again.contains(&format!("release {name} is already built")),
        "{again}"
    );
    assert_eq!(
        std::fs::read_to_string(&builds).unwrap(),
        log,
        "the build ran again"
    );
}

#[test]
fn a_failing_build_or_missing_tag_leaves_nothing_behind_and_no_club_changed() {
    let mut env = TestEnv::new();
    env.add_clubs(&["zermatt", "davos"]);
    env.ok(&["deploy", "v1", "--all"]);
    let v1 = env.release_name("v1");

    env.config.build_commands = vec![sh(
        "echo compiling; echo 'composer: out of memory' >&2; exit 7",
    )];
    env.configure();
    let error = env.fails(&["deploy", "v2", "--all"]);
    assert!(
        error.contains("building v2 failed; no club was changed"),
        "{error}"
    );
    assert!(error.contains("composer: out of memory"), "{error}");
    assert_eq!(env.release_entries(), vec![v1.clone()]);
    assert_eq!(env.release_of("zermatt"), v1);
    assert_eq!(env.release_of("davos"), v1);

    env.config.check = Some(sh("echo 'syntax error in index.php'; exit 1"));
    env.config.build_commands = Vec::new();
    env.configure();
    let error = env.fails(&["deploy", "v2", "--all"]);
    assert!(
        error.contains("check failed") && error.contains("syntax error"),
        "{error}"
    );
    assert_eq!(env.release_entries(), vec![v1.clone()]);

    env.config.check = None;
    env.configure();
    let error = env.fails(&["deploy", "v9", "--all"]);
    assert!(error.contains("tag v9 does not exist"), "{error}");
    assert_eq!(env.release_entries(), vec![v1.clone()]);
    assert_eq!(env.release_of("zermatt"), v1);
}

#[test]
fn deploy_all_points_every_club_at_the_same_release_directory() {
    let env = TestEnv::new();
    let slugs = ["a", "b", "c", "d", "e"];
    env.add_clubs(&slugs);
    env.ok(&["deploy", "v2", "--all"]);
    let expected = env.releases_dir().join(env.release_name("v2"));
    for slug in slugs {
        let meta = std::fs::symlink_metadata(env.webroot(slug)).unwrap();
        assert!(
            meta.file_type().is_symlink(),
            "{slug}'s webroot is not a link"
        );
        assert_eq!(env.realpath(slug), expected);
        assert_eq!(env.served(slug), "<?php echo 'version v2';\n");
        // No temporary link is left next to the webroot.
        assert_eq!(entries(&env.www.join(slug)), vec!["htdocs"]);
    }
    // The template link the switch hard-linked from is gone too.
    let base: Vec<String> = entries(&env.www);
    assert_eq!(base, slugs.map(String::from).to_vec());
    let listed = env.clubs_json();
    for club in listed.as_array().unwrap() {
        assert_eq!(club["release"], env.release_name("v2"));
        assert_eq!(club["tag"], "v2");
    }
}

#[test]
fn the_webroot_never_disappears_while_clubs_are_switched() {
    // A reader sees the webroot during many switches; unlink-then-symlink would show a gap.
    let env = TestEnv::new();
    env.add_clubs(&["zermatt"]);
    env.ok(&["deploy", "v1", "--all"]);
    let webroot = env.webroot("zermatt");
    let stop = Arc::new(AtomicBool::new(false));
    let (reads, gaps) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let reader = {
        let (stop, reads, gaps) = (stop.clone(), reads.clone(), gaps.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if std::fs::read_link(&webroot).is_err() {
                    gaps.fetch_add(1, Ordering::Relaxed);
                }
                reads.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    for round in 0..10 {
        let tag = if round % 2 == 0 { "v2" } else { "v1" };
        env.ok(&["deploy", tag, "--club", "zermatt"]);
    }
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    assert!(
        reads.load(Ordering::Relaxed) > 1000,
        "the reader barely ran"
    );
    assert_eq!(
        gaps.load(Ordering::Relaxed),
        0,
        "the webroot was missing during a switch"
    );
    assert_eq!(env.release_of("zermatt"), env.release_name("v1"));
}

#[test]
fn deploying_to_some_clubs_leaves_every_other_link_untouched() {
    let env = TestEnv::new();
    env.add_clubs(&["a", "b", "c", "d"]);
    env.ok(&["deploy", "v1", "--all"]);
    let inode = |slug: &str| std::fs::symlink_metadata(env.webroot(slug)).unwrap().ino();
    let (c_before, d_before) = (inode("c"), inode("d"));

    let out = env.ok(&["deploy", "v2", "--club", "a", "--club", "b"]);
    assert!(out.contains("2 of 2 clubs on v2"), "{out}");
    assert_eq!(env.release_of("a"), env.release_name("v2"));
    assert_eq!(env.release_of("b"), env.release_name("v2"));
    assert_eq!(env.release_of("c"), env.release_name("v1"));
    assert_eq!(env.release_of("d"), env.release_name("v1"));
    assert_eq!(
        (inode("c"), inode("d")),
        (c_before, d_before),
        "an untargeted link was rewritten"
    );
    // A single-club deploy does not prune: v1 is still needed, and is kept in any case.
    assert!(env.releases_dir().join(env.release_name("v1")).is_dir());
}

#[test]
fn configtest_runs_before_any_club_is_switched_and_its_failure_changes_nothing() {
    let mut env = TestEnv::new();
    env.add_clubs(&["zermatt"]);
    env.ok(&["deploy", "v1", "--all"]);
    let webroot = env.webroot("zermatt");
    env.config.configtest = sh(&format!(
        "echo configtest $(readlink {}) >> {}",
        webroot.display(),
        env.events.display()
    ));
    env.config.reload = sh(&format!(
        "echo reload $(readlink {}) >> {}",
        webroot.display(),
        env.events.display()
    ));
    env.configure();
    env.ok(&["deploy", "v2", "--all"]);
    let v1 = env.releases_dir().join(env.release_name("v1"));
    let v2 = env.releases_dir().join(env.release_name("v2"));
    let events = env.events();
    assert_eq!(
        events[events.len() - 2..],
        [
            format!("configtest {}", v1.display()),
            format!("reload {}", v2.display())
        ]
    );

    env.config.configtest = sh("echo 'AH00526: Syntax error on line 3' >&2; exit 1");
    env.configure();
    let error = env.fails(&["deploy", "v3", "--all"]);
    assert!(
        error.contains("configuration test failed; no club was changed"),
        "{error}"
    );
    assert!(error.contains("AH00526"), "{error}");
    assert_eq!(env.release_of("zermatt"), env.release_name("v2"));
}

#[test]
fn reload_follows_the_policy() {
    let mut env = TestEnv::new();
    env.add_clubs(&["a", "b"]);
    let reloads = |env: &TestEnv| env.events().iter().filter(|l| *l == "reload").count();

    // always: after every deploy that switched a club, one club or all.
    env.ok(&["deploy", "v1", "--club", "a"]);
    assert_eq!(reloads(&env), 1);
    env.ok(&["deploy", "v1", "--club", "a"]);
    assert_eq!(
        env.events(),
        ["configtest", "reload"],
        "ran though no club was switched"
    );

    env.config.policy = "after_all";
    env.configure();
    env.ok(&["deploy", "v2", "--club", "a"]);
    assert_eq!(
        reloads(&env),
        1,
        "after_all reloaded after a single-club deploy"
    );
    env.ok(&["deploy", "v2", "--all"]);
    assert_eq!(reloads(&env), 2);

    env.config.policy = "never";
    env.configure();
    let before = env.events().len();
    env.ok(&["deploy", "v3", "--all"]);
    assert_eq!(
        env.events().len(),
        before,
        "policy never ran configtest or reload"
    );
}

#[test]
fn a_failing_reload_is_reported_and_nothing_is_pruned() {
    let mut env = TestEnv::new();
    env.config.keep_releases = 0;
    env.add_clubs(&["a", "b"]);
    env.ok(&["deploy", "v1", "--all"]);
    env.config.reload = sh("echo 'apache2: could not bind' >&2; exit 1");
    env.configure();
    let error = env.fails(&["deploy", "v2", "--all"]);
    assert!(error.contains("reload failed"), "{error}");
    assert!(error.contains("could not bind"), "{error}");
    assert_eq!(env.release_of("a"), env.release_name("v2"));
    assert!(
        env.releases_dir().join(env.release_name("v1")).is_dir(),
        "pruned without a reload"
    );
}

#[test]
fn prune_after_deploy_all_with_keep_zero_leaves_the_running_release_and_the_rollback_target() {
    let mut env = TestEnv::new();
    env.config.keep_releases = 0;
    env.configure();
    env.add_clubs(&["a", "b", "c"]);
    for tag in ["v1", "v2", "v3"] {
        env.ok(&["deploy", tag, "--all"]);
    }
    assert_eq!(
        env.release_entries(),
        vec![env.release_name("v2"), env.release_name("v3")]
    );
}

#[test]
fn prune_keeps_every_linked_release_and_every_clubs_rollback_target() {
    let mut env = TestEnv::new();
    env.config.keep_releases = 1;
    env.configure();
    env.add_clubs(&["a", "b", "c"]);
    env.ok(&["deploy", "v1", "--all"]);
    env.ok(&["deploy", "v2", "--club", "c"]);
    env.ok(&["deploy", "v3", "--club", "b"]);
    env.ok(&["deploy", "v3", "--all"]);
    // v3 runs everywhere; v1 is what a and b ran before it, v2 what c did: both stay,
    // whatever keep_releases says.
    assert_eq!(
        env.release_entries(),
        vec![
            env.release_name("v1"),
            env.release_name("v2"),
            env.release_name("v3")
        ]
    );
}

#[test]
fn prune_reads_links_on_disk_not_the_database() {
    let mut env = TestEnv::new();
    env.config.keep_releases = 0;
    env.configure();
    env.add_clubs(&["a", "b", "forgotten"]);
    env.ok(&["deploy", "v1", "--all"]);
    env.ok(&["deploy", "v2", "--club", "b"]);
    // The database is told b runs v1, and "forgotten" is removed from it but keeps its link.
    let db = diesel_sqlite(&env);
    db.execute(
        "UPDATE webroots SET current_release = 'v3-00000000' \
         WHERE club_id = (SELECT id FROM clubs WHERE slug = 'b')",
    );
    env.ok(&["club", "remove", "forgotten"]);
    assert!(
        env.webroot("forgotten").exists(),
        "club remove touched the webroot"
    );
    env.ok(&["deploy", "v3", "--club", "a"]);
    let out = env.ok(&["prune"]);
    assert!(out.contains("0 releases deleted"), "{out}");
    // v2 is linked by b, v1 by the forgotten club, v3 by a: all stay.
    assert_eq!(
        env.release_entries(),
        vec![
            env.release_name("v1"),
            env.release_name("v2"),
            env.release_name("v3")
        ]
    );
    let status: serde_json::Value = serde_json::from_str(&env.ok(&["status", "--json"])).unwrap();
    let b = &status.as_array().unwrap()[1];
    assert_eq!(b["slug"], "b");
    assert_eq!(b["release"], env.release_name("v2"));
    assert_eq!(b["drift"], true);
}

#[test]
fn prune_waits_for_the_reload_and_the_grace_period() {
    let mut env = TestEnv::new();
    env.config.keep_releases = 0;
    env.config.prune_grace_secs = 1;
    let v1_dir = env.releases_dir().join(env.release_name("v1"));
    env.config.reload = sh(&format!(
        "if test -d {}; then echo reload-while-v1-exists; else echo reload; fi >> {}",
        v1_dir.display(),
        env.events.display()
    ));
    env.configure();
    env.add_clubs(&["a", "b"]);
    env.more_tags(&["v4"]);
    env.ok(&["deploy", "v1", "--all"]);
    // v1 is the clubs' rollback target until v3.
    env.ok(&["deploy", "v2", "--all"]);
    let started = Instant::now();
    let out = env.ok(&["deploy", "v3", "--all"]);
    let took = started.elapsed();
    assert!(env.events().contains(&"reload-while-v1-exists".to_owned()));
    let (reload, prune) = (out.find("reload:").unwrap(), out.find("prune:").unwrap());
    assert!(reload < prune, "{out}");
    assert!(
        out.contains("waiting 1 s for requests still running"),
        "{out}"
    );
    assert!(took >= Duration::from_secs(1), "no grace period: {took:?}");
    assert!(!v1_dir.exists());
    assert_eq!(
        env.release_entries(),
        vec![env.release_name("v2"), env.release_name("v3")],
        "trash left behind"
    );

    // `clubdeploy prune` alone reloads first (policy always), then waits, then deletes.
    env.ok(&["deploy", "v4", "--club", "a"]);
    env.ok(&["deploy", "v4", "--club", "b"]);
    let out = env.ok(&["prune"]);
    let (reload, prune) = (
        out.find("reload:").unwrap(),
        out.find("deleted release").unwrap(),
    );
    assert!(reload < prune, "{out}");
    assert_eq!(
        env.release_entries(),
        vec![env.release_name("v3"), env.release_name("v4")]
    );
}

#[test]
fn rollback_returns_to_the_previous_release_rebuilding_it_when_pruned() {
    let mut env = TestEnv::new();
    env.config.keep_releases = 0;
    env.configure();
    env.add_clubs(&["zermatt", "davos"]);
    for tag in ["v1", "v2", "v3"] {
        env.ok(&["deploy", tag, "--all"]);
    }
    // The rollback target stays; v1 was pruned.
    assert_eq!(
        env.release_entries(),
        vec![env.release_name("v2"), env.release_name("v3")]
    );

    let out = env.ok(&["rollback", "zermatt"]);
    assert!(out.contains("rolled back from"), "{out}");
    assert!(out.contains("already built"), "{out}");
    assert_eq!(env.release_of("zermatt"), env.release_name("v2"));
    assert_eq!(env.served("zermatt"), "<?php echo 'version v2';\n");
    assert_eq!(env.release_of("davos"), env.release_name("v3"));

    // v3 is now bad for zermatt, so the next rollback goes one further back: to v1, which
    // prune deleted, rebuilt from its tag.
    let out = env.ok(&["rollback", "zermatt"]);
    assert!(out.contains("built v1-"), "{out}");
    assert_eq!(env.release_of("zermatt"), env.release_name("v1"));
    assert_eq!(env.served("zermatt"), "<?php echo 'version v1';\n");
    let error = env.fails(&["rollback", "zermatt"]);
    assert!(error.contains("no earlier release"), "{error}");

    // --to picks any release or tag.
    env.ok(&["rollback", "zermatt", "--to", &env.release_name("v3")]);
    assert_eq!(env.release_of("zermatt"), env.release_name("v3"));
    env.ok(&["rollback", "zermatt", "--to", "v2"]);
    assert_eq!(env.release_of("zermatt"), env.release_name("v2"));
    let error = env.fails(&["rollback", "zermatt", "--to", "../v1"]);
    assert!(error.contains("neither a release"), "{error}");
}

#[test]
fn bad_input_is_refused_with_a_reason_and_changes_nothing() {
    let env = TestEnv::new();
    env.add_clubs(&["zermatt"]);
    env.ok(&["deploy", "v1", "--all"]);
    let before = (env.release_entries(), env.clubs_json(), entries(&env.www));
    let outside = env.root.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, env.www.join("sneaky")).unwrap();
    let legacy = env.www.join("legacy/htdocs");
    std::fs::create_dir_all(&legacy).unwrap();
    std::fs::write(legacy.join("index.php"), "legacy copy").unwrap();
    let www = env.www.display().to_string();

    let cases: Vec<(Vec<String>, &str)> = vec![
        (args(&["deploy", "../../etc", "--all"]), "not a usable tag"),
        (args(&["deploy", "v1/../../x", "--all"]), "not a usable tag"),
        (args(&["deploy", "v1..", "--all"]), "not a usable tag"),
        (args(&["deploy", "v1.lock", "--all"]), "not a usable tag"),
        (args(&["deploy", "v9", "--all"]), "tag v9 does not exist"),
        (
            args(&["deploy", "v2", "--club", "nope"]),
            "no such club: nope",
        ),
        (
            args(&["deploy", "v2", "--club", "a/b"]),
            "not a valid short name for a club",
        ),
        (
            args(&[
                "club",
                "add",
                "Zermatt",
                "--webroot",
                &format!("{www}/x/htdocs"),
            ]),
            "not a valid short name for a club",
        ),
        (
            args(&[
                "club",
                "add",
                "a/b",
                "--webroot",
                &format!("{www}/x/htdocs"),
            ]),
            "not a valid short name for a club",
        ),
        (
            args(&[
                "club",
                "add",
                "x",
                "--webroot",
                &format!("{www}/../x/htdocs"),
            ]),
            "outside the folder that holds the clubs' sites",
        ),
        (
            args(&[
                "club",
                "add",
                "x",
                "--webroot",
                &format!("{www}/sneaky/htdocs"),
            ]),
            "outside the folder that holds the clubs' sites",
        ),
        (
            args(&[
                "club",
                "add",
                "x",
                "--webroot",
                &format!("{www}/new/../../x"),
            ]),
            "'..'",
        ),
        (
            args(&["club", "add", "x", "--webroot", "/etc/htdocs"]),
            "outside the folder that holds the clubs' sites",
        ),
        (
            args(&["club", "add", "x", "--webroot", &www]),
            "outside the folder that holds the clubs' sites",
        ),
        (
            args(&[
                "club",
                "add",
                "zermatt",
                "--webroot",
                &format!("{www}/y/htdocs"),
            ]),
            "already exists",
        ),
        (
            args(&[
                "club",
                "add",
                "x",
                "--webroot",
                &format!("{www}/x/htdocs"),
                "--url",
                "ftp://x",
            ]),
            "http",
        ),
        (
            args(&["rollback", "zermatt", "--to", "v1/../x"]),
            "neither a release",
        ),
    ];
    for (argv, expected) in &cases {
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let error = env.fails(&argv);
        assert!(
            error.contains(expected),
            "{argv:?}: expected {expected:?} in {error:?}"
        );
        assert_eq!(
            (env.release_entries(), env.clubs_json(), entries(&env.www)),
            (before.0.clone(), before.1.clone(), before_www(&before.2)),
            "{argv:?} changed something"
        );
    }
    assert_eq!(
        std::fs::read_to_string(legacy.join("index.php")).unwrap(),
        "legacy copy"
    );
    assert_eq!(entries(&outside), Vec::<String>::new());

    // A webroot that became a real directory after it was added (a legacy copy) is refused at
    // deploy time, untouched: it must be adopted (tests/legacy.rs).
    std::fs::remove_file(env.webroot("zermatt")).unwrap();
    std::fs::create_dir(env.webroot("zermatt")).unwrap();
    std::fs::write(env.webroot("zermatt").join("index.php"), "hand-copied").unwrap();
    let error = env.fails(&["deploy", "v2", "--club", "zermatt"]);
    assert!(error.contains("real directory"), "{error}");
    let error = env.fails(&["deploy", "v2", "--all"]);
    assert!(error.contains("legacy copy: adopt them first"), "{error}");
    assert_eq!(env.served("zermatt"), "hand-copied");
}

/// The webroot base as it was, plus the two directories the test itself added.
fn before_www(before: &[String]) -> Vec<String> {
    let mut names = before.to_vec();
    names.extend(["legacy".to_owned(), "sneaky".to_owned()]);
    names.sort();
    names
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_repo_url_that_is_not_a_git_repository_is_refused() {
    let mut env = TestEnv::new();
    env.add_clubs(&["zermatt"]);
    let not_git = env.root.path().join("not-git");
    std::fs::create_dir(&not_git).unwrap();
    env.config.repo_url = not_git.display().to_string();
    env.configure();
    let error = env.fails(&["deploy", "v1", "--all"]);
    assert!(error.contains("is not a git repository"), "{error}");
    assert!(error.contains("repo_url"), "{error}");
    assert!(!env.webroot("zermatt").exists());
    assert_eq!(env.release_entries(), Vec::<String>::new());
}

#[test]
fn a_config_error_names_the_key() {
    let env = TestEnv::new();
    std::fs::write(&env.config_path, "repo_url = 'x'\nwebroot_base = '/tmp'\n").unwrap();
    let error = env.fails(&["status"]);
    assert!(error.contains("`data_dir` is missing"), "{error}");
    std::fs::write(
        &env.config_path,
        "data_dir = 'd'\nrepo_url = 'x'\nwebroot_base = '/tmp'\nkeep_releases = 'many'\n",
    )
    .unwrap();
    let error = env.fails(&["status"]);
    assert!(error.contains("`keep_releases`"), "{error}");
    env.configure();
    let out = env
        .command(&["status"])
        .env("CLUBDEPLOY_RELOAD__POLICY", "sometimes")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("`reload.policy`: unknown variant"),
        "{stderr}"
    );
}

#[test]
fn environment_variables_override_the_file() {
    let env = TestEnv::new();
    env.add_clubs(&["zermatt"]);
    let out = env
        .command(&["deploy", "v1", "--all"])
        .env("CLUBDEPLOY_RELOAD__POLICY", "never")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        env.events().is_empty(),
        "policy from the environment was ignored"
    );
}

#[test]
fn two_deploys_started_at_once_run_one_after_the_other() {
    let mut env = TestEnv::new();
    let log = env.root.path().join("builds.log");
    env.config.build_commands = vec![sh(&format!(
        "echo start $$ >> {0}; sleep 1; echo end $$ >> {0}",
        log.display()
    ))];
    env.configure();
    env.add_clubs(&["a", "b"]);
    env.ok(&["deploy", "v1", "--all"]);
    let (first, second) = std::thread::scope(|s| {
        let a = s.spawn(|| env.command(&["deploy", "v2", "--all"]).output().unwrap());
        let b = s.spawn(|| env.command(&["deploy", "v3", "--all"]).output().unwrap());
        (a.join().unwrap(), b.join().unwrap())
    });
    assert!(first.status.success() && second.status.success());
    let lines: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    // v1, then v2 and v3 in some order: each build's start is followed by its own end.
    assert_eq!(lines.len(), 6, "{lines:?}");
    for pair in lines.chunks(2) {
        let (start, end) = (&pair[0], &pair[1]);
        assert!(
            start.starts_with("start ") && end.starts_with("end "),
            "{lines:?}"
        );
        assert_eq!(start[6..], end[4..], "builds interleaved: {lines:?}");
    }
    // The one that waited named the job it waited for, what it does and who asked.
    let waited: Vec<String> = [&first, &second]
        .iter()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .filter(|out| out.contains("waiting for it to finish"))
        .collect();
    assert_eq!(waited.len(), 1, "exactly one of the two should have waited");
    let line = waited[0]
        .lines()
        .find(|l| l.contains("waiting for it to finish"))
        .unwrap();
    assert!(
        line.starts_with("job #")
            && line.contains(" is running (deploy v")
            && line.contains("to all clubs (main), asked by cli:"),
        "{line}"
    );
}

/// Raw SQL on the test's database file, to play a database that disagrees with the disk.
fn diesel_sqlite(env: &TestEnv) -> RawDb {
    RawDb(env.data.join("clubdeploy.sqlite3"))
}

struct RawDb(PathBuf);

impl RawDb {
    fn execute(&self, sql: &str) {
        use diesel::{Connection, RunQueryDsl, SqliteConnection};
        let mut conn = SqliteConnection::establish(self.0.to_str().unwrap()).unwrap();
        diesel::sql_query(sql).execute(&mut conn).unwrap();
    }
}

#[test]
fn commands_started_together_on_a_new_database_all_succeed() {
    let env = TestEnv::new();
    let handles: Vec<_> = (0..6)
        .map(|_| {
            env.command(&["migrate"])
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut child in handles {
        assert!(
            child.wait().unwrap().success(),
            "a concurrent migrate failed"
        );
    }
}

#[test]
fn a_release_links_the_unchanged_files_of_the_one_before_and_never_a_changed_one() {
    use std::os::unix::fs::MetadataExt;
    let env = TestEnv::new();
    env.add_clubs(&["a"]);
    env.ok(&["deploy", "v1", "--all"]);
    env.ok(&["deploy", "v2", "--all"]);
    let file = |tag: &str, path: &str| env.releases_dir().join(env.release_name(tag)).join(path);
    let inode = |tag: &str, path: &str| std::fs::metadata(file(tag, path)).unwrap().ino();
    // bin/tool is the same in v1 and v2: one inode; index.php changed: its own.
    assert_eq!(inode("v1", "bin/tool"), inode("v2", "bin/tool"));
    assert_ne!(inode("v1", "index.php"), inode("v2", "index.php"));
    assert_eq!(
        std::fs::read_to_string(file("v2", "index.php")).unwrap(),
        "<?php echo 'version v2';\n"
    );
    // A file changed in the newest release (by hand) is not taken for v3: it is written anew.
    let tool = file("v2", "bin/tool");
    let mut perms = std::fs::metadata(&tool).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&tool, perms).unwrap();
    std::fs::write(&tool, "#!/bin/sh\necho tampered\n").unwrap();
    env.ok(&["deploy", "v3", "--all"]);
    assert_eq!(
        std::fs::read_to_string(file("v3", "bin/tool")).unwrap(),
        "#!/bin/sh\necho tool\n"
    );
    assert_ne!(inode("v3", "bin/tool"), inode("v2", "bin/tool"));
    // Executable bits are kept for a linked file as for a written one.
    assert_eq!(
        std::fs::metadata(file("v3", "bin/tool")).unwrap().mode() & 0o777,
        0o755
    );
}

#[test]
fn a_deploy_goes_in_waves_canaries_first_then_batches_with_a_reload_each() {
    let mut env = TestEnv::new();
    env.config.tables.push((
        "rollout".into(),
        vec!["canary = [\"c\"]".into(), "batch_size = 2".into()],
    ));
    env.configure();
    env.add_clubs(&["a", "b", "c", "d", "e"]);
    // A canary the deploy names must be among its clubs; nothing changes otherwise.
    let error = env.fails(&["deploy", "v1", "--club", "a", "--canary", "b"]);
    assert!(error.contains("canary b is not among the clubs"), "{error}");
    assert!(env.events().is_empty());
    let out = env.ok(&["deploy", "v1", "--all"]);
    for wave in [
        "wave 1 of 3 (canary): c",
        "wave 2 of 3: a, b",
        "wave 3 of 3: d, e",
    ] {
        assert!(out.contains(wave), "{wave} missing:\n{out}");
    }
    // One configtest, then one reload per wave (and none for the prune: nothing to delete).
    assert_eq!(env.events(), ["configtest", "reload", "reload", "reload"]);
    // --canary none: no canary, the batches still; the configured canary alone is one wave.
    let out = env.ok(&["deploy", "v2", "--all", "--canary", "none"]);
    assert!(out.contains("wave 1 of 3: a, b\n"), "{out}");
    let out = env.ok(&["deploy", "v3", "--club", "c"]);
    assert!(!out.contains("wave 1"), "{out}");
}

#[test]
fn a_group_can_be_the_canary_wave_in_the_configuration_and_on_the_command_line() {
    let mut env = TestEnv::new();
    env.config.tables.push((
        "rollout".into(),
        vec!["canary = [\"early-adopters\"]".into()],
    ));
    env.configure();
    env.add_clubs(&["a", "b", "c", "d", "e"]);
    let out = env.ok(&["club", "group", "early-adopters", "e", "b"]);
    assert!(out.contains("put e, b in group early-adopters"), "{out}");
    // Again: nothing changes.
    assert!(
        env.ok(&["club", "group", "early-adopters", "b"])
            .contains("nothing changed")
    );
    let out = env.ok(&["deploy", "v1", "--all"]);
    assert!(out.contains("wave 1 of 2 (canary): b, e"), "{out}");
    assert!(out.contains("wave 2 of 2: a, c, d"), "{out}");
    // Named on the command line, a group stands for its clubs among those deployed to.
    env.ok(&["club", "group", "region-east", "a", "d"]);
    let out = env.ok(&[
        "deploy",
        "v2",
        "--club",
        "a",
        "--club",
        "b",
        "--club",
        "c",
        "--canary",
        "region-east",
    ]);
    assert!(out.contains("wave 1 of 2 (canary): a"), "{out}");
    assert!(out.contains("wave 2 of 2: b, c"), "{out}");
    // Taken out of the group, a club no longer goes first.
    env.ok(&["club", "group", "early-adopters", "e", "--remove"]);
    let groups: serde_json::Value =
        serde_json::from_str(&env.ok(&["club", "groups", "--json"])).unwrap();
    assert_eq!(
        groups,
        serde_json::json!({"early-adopters": ["b"], "region-east": ["a", "d"]})
    );
    let out = env.ok(&["deploy", "v3", "--all"]);
    assert!(out.contains("wave 1 of 2 (canary): b\n"), "{out}");
    // An unknown club is refused, naming it; nothing changes.
    let error = env.fails(&["club", "group", "early-adopters", "zz"]);
    assert!(error.contains("There is no club zz."), "{error}");
}

/// Every command and subcommand explains itself with `--help`: what it does (a sentence),
/// its usage and options; the top level also its files, environment and exit status.
#[test]
fn every_command_has_a_help_page() {
    let env = TestEnv::new();
    let commands = |help: &str| -> Vec<String> {
        help.lines()
            .skip_while(|l| !l.starts_with("Commands:"))
            .skip(1)
            .take_while(|l| l.starts_with("  "))
            .filter_map(|l| l.split_whitespace().next())
            .filter(|c| *c != "help")
            .map(str::to_owned)
            .collect()
    };
    let top = env.ok(&["--help"]);
    for section in ["FILES:", "ENVIRONMENT:", "EXIT STATUS:", "SEE ALSO:"] {
        assert!(top.contains(section), "{section} missing:\n{top}");
    }
    let mut pages = 0;
    for command in commands(&top) {
        let help = env.ok(&[&command, "--help"]);
        let subcommands = commands(&help);
        let mut paths = vec![vec![command.clone()]];
        paths.extend(subcommands.iter().map(|s| vec![command.clone(), s.clone()]));
        for path in paths {
            let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
            args.push("--help");
            let help = env.ok(&args);
            let first = help.lines().next().unwrap_or_default();
            assert!(
                first.len() > 10 && !first.starts_with("Usage"),
                "`clubdeploy {}` says nothing about itself:\n{help}",
                path.join(" ")
            );
            assert!(help.contains("Usage: clubdeploy"), "{help}");
            pages += 1;
        }
    }
    assert!(pages > 30, "only {pages} help pages");
}

/// Adds club `slug` whose site is at `url`.
fn add_club_at(env: &TestEnv, slug: &str, url: &str) {
    env.add_club(slug, &["--url", url]);
}

/// A site on a loopback port whose health probe says it runs from `dir` (what it holds),
/// and whose every other page answers 200. Stops when the returned sender is dropped.
fn fake_site(dir: std::sync::Arc<std::sync::Mutex<String>>) -> (u16, std::sync::mpsc::Sender<()>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        loop {
            if !matches!(
                stopped.try_recv(),
                Err(std::sync::mpsc::TryRecvError::Empty)
            ) {
                return;
            }
            let Ok((stream, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            stream.set_nonblocking(false).unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            reader.read_line(&mut request).unwrap();
            // The rest of the head.
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let body = if request.contains(".clubdeploy/probe.php") {
                serde_json::json!({ "release_dir": *dir.lock().unwrap() }).to_string()
            } else {
                "ok".to_owned()
            };
            let mut stream = stream;
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, stop)
}

/// Points every club's health check at a [`fake_site`] (`[health] connect_to`, with `more`
/// lines of that table) and configures `env`; what the site says it serves, and its stop.
pub fn checks_go_to_a_fake_site(
    env: &mut TestEnv,
    more: &[&str],
) -> (
    std::sync::Arc<std::sync::Mutex<String>>,
    std::sync::mpsc::Sender<()>,
) {
    let serving = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let (port, stop) = fake_site(serving.clone());
    let mut table = vec![format!("connect_to = \"127.0.0.1:{port}\"")];
    table.extend(more.iter().map(|l| (*l).to_owned()));
    env.config.tables.push(("health".into(), table));
    env.configure();
    (serving, stop)
}

/// Has the fake site say it serves the release of `tag`.
pub fn serve(serving: &std::sync::Mutex<String>, env: &TestEnv, tag: &str) {
    *serving.lock().unwrap() = env
        .releases_dir()
        .join(env.release_name(tag))
        .display()
        .to_string();
}

#[test]
fn without_a_reload_a_club_still_on_its_old_release_is_switched_not_live_not_healthy() {
    let mut env = TestEnv::new();
    env.config.policy = "never";
    let (serving, _stop) = checks_go_to_a_fake_site(&mut env, &[]);
    add_club_at(&env, "a", "http://club-a.test/");
    // The releases' paths as PHP reports them (the test's directories are canonical).
    serve(&serving, &env, "v1");
    env.ok(&["deploy", "v1", "--all"]);
    // v2 without a reload, and PHP still serves v1: not healthy, not failed: not live yet.
    let out = env.ok(&["deploy", "v2", "--all"]);
    assert!(
        out.contains("club a: switched, not live yet (no reload)"),
        "{out}"
    );
    assert!(
        out.contains("1 club switched, not live yet (no reload)"),
        "{out}"
    );
    assert!(!out.contains("club a is live on"), "{out}");
    assert_eq!(env.release_of("a"), env.release_name("v2"));
    let status: serde_json::Value =
        serde_json::from_str(&env.ok(&["club", "list", "--json"])).unwrap();
    assert_ne!(status[0]["health"], "healthy", "{status}");
    // A site that shows the new release at once is proven live, reload or not.
    serve(&serving, &env, "v3");
    let out = env.ok(&["deploy", "v3", "--all"]);
    assert!(out.contains("club a is live on"), "{out}");
    assert!(!out.contains("switched, not live yet"), "{out}");
}

#[test]
fn health_checks_never_ask_this_machine_or_its_link_unless_told_where_to_connect() {
    let mut env = TestEnv::new();
    env.config
        .tables
        .push(("health".into(), vec!["timeout_secs = 2".into()]));
    env.configure();
    let serving = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let (port, _stop) = fake_site(serving.clone());
    serve(&serving, &env, "v1");
    env.add_clubs(&["a"]);
    for url in [
        format!("http://127.0.0.1:{port}/"),
        format!("http://localhost:{port}/"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        format!("http://[::1]:{port}/"),
    ] {
        let error = env.fails(&["club", "url", "a", &url]);
        assert!(
            error.contains("this machine or a link-local address"),
            "{url}: {error}"
        );
    }
    assert_eq!(env.clubs_json()[0]["url"], serde_json::Value::Null);
    // A number the address parser reads as 127.0.0.1 passes the text check; the checks'
    // resolver still never connects to it.
    let sneaky = format!("http://2130706433:{port}/");
    add_club_at(&env, "b", &sneaky);
    let error = env.fails(&["deploy", "v1", "--club", "b"]);
    assert!(
        error.contains("its address is this machine, which health checks never ask"),
        "{error}"
    );
    let out = env.ok(&["job", "1"]);
    assert!(out.contains("resolves to this machine"), "{out}");
    assert!(!out.contains("club b is live on"), "{out}");
}

#[test]
fn health_checks_connect_to_an_address_and_port_keeping_the_sites_name() {
    let mut env = TestEnv::new();
    // The site's own address names no reachable host (port 80 of a .test name): the checks
    // must go to the loopback port instead.
    let (serving, _stop) = checks_go_to_a_fake_site(&mut env, &["timeout_secs = 5"]);
    add_club_at(&env, "a", "http://club-a.test/");
    serve(&serving, &env, "v1");
    let out = env.ok(&["deploy", "v1", "--all"]);
    assert!(out.contains("club a is live on"), "{out}");
    // A port that is not a number is refused naming the key.
    env.config.tables.pop();
    env.config.tables.push((
        "health".into(),
        vec!["connect_to = \"127.0.0.1:http\"".into()],
    ));
    env.configure();
    let error = env.fails(&["status"]);
    assert!(error.contains("health.connect_to"), "{error}");
}

/// Issue 20, point 6 (its count): a failed deploy's summary counts the clubs of the job that
/// run the release, not every club that does ("1 run v2" counted a club outside the job).
#[test]
fn a_failed_deploys_summary_counts_only_its_own_clubs() {
    let mut env = TestEnv::new();
    let (serving, _stop) = checks_go_to_a_fake_site(&mut env, &["timeout_secs = 2"]);
    add_club_at(&env, "a", "http://club-a.test/");
    add_club_at(&env, "b", "http://club-b.test/");
    env.add_clubs(&["c"]);
    serve(&serving, &env, "v1");
    env.ok(&["deploy", "v1", "--all"]);
    // c (no site to check) goes to v2 alone; then a and b, whose sites keep serving v1.
    env.ok(&["deploy", "v2", "--club", "c"]);
    let error = env.fails(&[
        "deploy", "v2", "--club", "a", "--club", "b", "--canary", "none",
    ]);
    let (v1, v2) = (env.release_name("v1"), env.release_name("v2"));
    assert!(
        error.contains(&format!(
            "the sites of a and b still ran the version before, so they were put back on {v1}"
        )),
        "{error}"
    );
    // c runs v2 but was not the job's: the summary does not count it.
    assert!(!error.contains(" c "), "{error}");
    assert!(!error.contains(&format!("run {v2}")), "{error}");
    assert_eq!(env.release_of("c"), v2);
}
