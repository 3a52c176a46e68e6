//! What a release holds and which releases are kept: `export-ignore`, the build recipe,
//! hard links across build commands, and prune keeping what a rollback needs.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use crate::helpers::{TestEnv, succeeded};

/// Every file and link under `root`, relative, sorted (directories not listed).
fn files_under(root: &Path) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                pending.push(path);
            } else {
                let relative = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                found.insert(relative);
            }
        }
    }
    found
}

/// The files `git archive <tag>` gives for the fixture repository (directories not listed).
fn archived(repo: &Path, tag: &str) -> BTreeSet<String> {
    let out = succeeded(Command::new("sh").arg("-c").arg(format!(
        "git -C '{}' archive {tag} | tar -t",
        repo.display()
    )));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.ends_with('/'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_release_holds_exactly_what_git_archive_gives() {
    let env = TestEnv::new();
    env.add_clubs(&["a"]);
    env.tag(
        "v4",
        &[
            (
                ".gitattributes",
                "/_test export-ignore\n/tests/ export-ignore\ncomposer.lock export-ignore\n\
                 lib/plugins/testing export-ignore\n.gitattributes export-ignore\n\
                 *.dist export-ignore\nkeep.dist -export-ignore\nsubst.php export-subst\n",
            ),
            ("_test/fetchphpunit.php", "<?php echo 'test code';\n"),
            ("_test/deep/case.php", "<?php\n"),
            ("tests/unit/a.php", "<?php\n"),
            ("composer.lock", "{}\n"),
            ("composer.json", "{}\n"),
            ("lib/plugins/testing/plugin.php", "<?php\n"),
            ("lib/plugins/real/plugin.php", "<?php\n"),
            ("lib/_test/kept.php", "<?php\n"),
            ("phpunit.xml.dist", "<x/>\n"),
            ("keep.dist", "kept\n"),
            ("docs/.gitattributes", "draft.md export-ignore\n"),
            ("docs/draft.md", "draft\n"),
            ("docs/guide.md", "guide\n"),
            ("subst.php", "<?php // $Format:%H$\n"),
        ],
    );
    env.ok(&["deploy", "v4", "--all"]);
    let release = env.releases_dir().join(env.release_name("v4"));
    let mut published = files_under(&release);
    // clubdeploy's own files.
    published.remove(".clubdeploy-release.json");
    published.retain(|p| !p.starts_with(".clubdeploy"));
    assert_eq!(published, archived(&env.app, "v4"));
    for gone in [
        "_test/fetchphpunit.php",
        "tests/unit/a.php",
        "composer.lock",
        "lib/plugins/testing/plugin.php",
        "docs/draft.md",
        ".gitattributes",
        "phpunit.xml.dist",
    ] {
        assert!(!published.contains(gone), "{gone} was published");
    }
    for kept in [
        "lib/_test/kept.php",
        "lib/plugins/real/plugin.php",
        "keep.dist",
        "docs/guide.md",
    ] {
        assert!(published.contains(kept), "{kept} is missing");
    }
    // export-subst is left alone: the file is the blob as committed.
    assert_eq!(
        std::fs::read_to_string(release.join("subst.php")).unwrap(),
        "<?php // $Format:%H$\n"
    );
}

#[test]
fn the_doctor_warns_of_development_files_a_release_publishes() {
    let env = TestEnv::new();
    env.add_clubs(&["a"]);
    // No .gitattributes: the test suite and the lock file are published.
    env.tag(
        "v4",
        &[
            ("tests/unit/a.php", "<?php\n"),
            ("composer.lock", "{}\n"),
            (".env.example", "X=1\n"),
        ],
    );
    env.ok(&["deploy", "v4", "--all"]);
    let out = env.command(&["doctor"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("publishes development files"))
        .unwrap_or_else(|| panic!("no warning:\n{text}"));
    assert!(line.contains(&env.release_name("v4")), "{line}");
    for name in [".env.example", "composer.lock", "tests/"] {
        assert!(line.contains(name), "{name} not named: {line}");
    }
    assert!(text.contains("export-ignore"), "{text}");
    // v3 has none of them: it is not named.
    env.ok(&["deploy", "v3", "--all"]);
    let out = env.command(&["doctor"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text
            .lines()
            .any(|l| l.contains("publishes development files")
                && l.contains(&env.release_name("v3"))),
        "{text}"
    );
}

#[test]
fn prune_keeps_what_a_rollback_needs_and_never_counts_bad_or_unused_builds() {
    let mut env = TestEnv::new();
    env.config.keep_releases = 1;
    env.configure();
    env.more_tags(&["v4", "v5"]);
    env.add_clubs(&["a", "b"]);
    env.ok(&["deploy", "v1", "--all"]);
    env.ok(&["deploy", "v2", "--all"]);
    // A failed try: v3 on a, rolled back (marked bad for a).
    env.ok(&["deploy", "v3", "--club", "a"]);
    env.ok(&["rollback", "a"]);
    assert_eq!(env.release_of("a"), env.release_name("v2"));
    // A build no club ever ran: the configtest stops the deploy after it.
    let configtest = env.config.configtest.clone();
    env.config.configtest = crate::helpers::sh("exit 1");
    env.configure();
    env.fails(&["deploy", "v4", "--all"]);
    assert!(env.releases_dir().join(env.release_name("v4")).is_dir());
    env.config.configtest = configtest;
    env.configure();

    // v5 to all: v2 (what every club ran a moment ago, their rollback target) stays; of the
    // others, the one a club ran last (v1) is the one kept; the bad v3 and the unused v4 go,
    // though both were built after v1 and v2.
    env.ok(&["deploy", "v5", "--all"]);
    let mut expected: Vec<String> = ["v1", "v2", "v5"]
        .iter()
        .map(|t| env.release_name(t))
        .collect();
    expected.sort();
    assert_eq!(env.release_entries(), expected);
    // The rollback finds its release built.
    let out = env.ok(&["rollback", "b"]);
    assert!(out.contains("already built"), "{out}");
    assert_eq!(env.release_of("b"), env.release_name("v2"));
    // The doctor counts what prune would delete by the same rule: nothing now.
    let doctor = env.command(&["doctor"]).output().unwrap();
    let text = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        !text.contains("no club runs or would roll back to"),
        "{text}"
    );
}

#[test]
fn a_changed_build_recipe_builds_the_release_anew_and_rebuild_forces_it() {
    let mut env = TestEnv::new();
    env.config.build_commands = vec![crate::helpers::sh("echo one > built.txt")];
    env.configure();
    env.add_clubs(&["a"]);
    env.ok(&["deploy", "v1", "--all"]);
    let first = env.release_name("v1");
    assert_eq!(env.release_of("a"), first);
    let built_file = env.webroot("a").join("built.txt");
    let built = || std::fs::read_to_string(&built_file).unwrap();
    assert_eq!(built(), "one\n");
    // The same recipe: reused.
    let out = env.ok(&["deploy", "v1", "--all"]);
    assert!(out.contains("already built"), "{out}");

    env.config.build_commands = vec![crate::helpers::sh("echo two > built.txt")];
    env.configure();
    let out = env.ok(&["deploy", "v1", "--all"]);
    assert!(out.contains("building anew"), "{out}");
    let second = format!("{first}-b2");
    assert_eq!(env.release_of("a"), second);
    assert_eq!(built(), "two\n");
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            env.releases_dir()
                .join(&second)
                .join(".clubdeploy-release.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert!(
        manifest["recipe"].as_str().is_some_and(|r| r.len() == 16),
        "{manifest}"
    );
    assert_eq!(manifest["tag"], "v1");

    // --rebuild builds anew with the same recipe.
    let out = env.ok(&["deploy", "v1", "--all", "--rebuild"]);
    assert!(out.contains("--rebuild"), "{out}");
    assert_eq!(env.release_of("a"), format!("{first}-b3"));
    // A rollback goes to exactly the build the club ran before, not to a new one.
    env.ok(&["rollback", "a"]);
    assert_eq!(env.release_of("a"), second);
}

#[test]
fn files_a_build_command_left_alone_stay_linked_to_the_previous_release() {
    use std::os::unix::fs::MetadataExt;
    let mut env = TestEnv::new();
    env.config.build_commands = vec![crate::helpers::sh(
        "cp index.php copy.php && echo same > generated.txt",
    )];
    env.configure();
    env.add_clubs(&["a"]);
    env.ok(&["deploy", "v1", "--all"]);
    let out = env.ok(&["deploy", "v2", "--all"]);
    assert!(out.contains("share its copy"), "{out}");
    let file = |tag: &str, path: &str| env.releases_dir().join(env.release_name(tag)).join(path);
    let inode = |tag: &str, path: &str| std::fs::metadata(file(tag, path)).unwrap().ino();
    // Unchanged by git and by the build: one inode for both releases.
    assert_eq!(inode("v1", "bin/tool"), inode("v2", "bin/tool"));
    assert_eq!(inode("v1", "generated.txt"), inode("v2", "generated.txt"));
    // Changed: each its own, with its own content.
    assert_ne!(inode("v1", "index.php"), inode("v2", "index.php"));
    assert_ne!(inode("v1", "copy.php"), inode("v2", "copy.php"));
    assert_eq!(
        std::fs::read_to_string(file("v2", "copy.php")).unwrap(),
        "<?php echo 'version v2';\n"
    );
    assert_eq!(
        std::fs::metadata(file("v2", "bin/tool")).unwrap().mode() & 0o777,
        0o755
    );
}

#[tokio::test]
async fn a_tag_with_slashes_deploys_and_tags_that_cannot_be_are_named_with_what_to_do() {
    let env = TestEnv::new();
    env.add_clubs(&["a"]);
    env.tag(
        "release/2.4",
        &[("index.php", "<?php echo 'release 2.4';\n")],
    );
    // A tag git allows and clubdeploy cannot use (a comma).
    {
        let repo = git2::Repository::open(&env.app).unwrap();
        let head = repo.head().unwrap().peel(git2::ObjectType::Commit).unwrap();
        repo.tag_lightweight("v2,4", &head, false).unwrap();
    }
    let out = env.ok(&["releases", "--fetch"]);
    assert!(out.contains("1 tag cannot be deployed: \"v2,4\""), "{out}");
    assert!(out.contains("1 skipped (see the log)"), "{out}");

    env.ok(&["deploy", "release/2.4", "--all"]);
    let name = format!("release~2.4-{}", &env.commit_of("release/2.4")[..8]);
    assert_eq!(env.release_of("a"), name);
    assert_eq!(env.served("a"), "<?php echo 'release 2.4';\n");

    let listed = env.ok(&["releases"]);
    assert!(listed.contains(&name), "{listed}");
    assert!(listed.contains("\"v2,4\""), "{listed}");
    assert!(listed.contains("git tag v1.2.3"), "{listed}");
    // --limit: only the newest versions.
    let limited = env.ok(&["releases", "--limit", "2"]);
    let rows = limited.lines().filter(|l| l.starts_with("main ")).count();
    assert_eq!(rows, 2, "{limited}");

    let doctor = env.command(&["doctor"]).output().unwrap();
    let report = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        report.contains("1 tag cannot be deployed: \"v2,4\""),
        "{report}"
    );

    let panel = crate::web::TestApp::spawn_on(&env).await;
    let client = panel.login("deployer").await;
    let page = panel.page(&client, "/releases").await;
    assert!(page.contains("id=\"skipped-tags\""), "{page}");
    assert!(page.contains("release/2.4"), "{page}");
    let form = panel.page(&client, "/deploy?tag=v2%2C4").await;
    assert!(form.contains("Version v2,4 cannot be deployed"), "{form}");
    assert!(!form.contains("There is no version"), "{form}");
}

#[test]
fn the_doctor_says_once_which_clubs_await_their_first_deploy() {
    let env = TestEnv::new();
    env.add_clubs(&["a", "b", "c"]);
    let out = env.command(&["doctor"]).output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = report.lines().filter(|l| l.contains("no link")).collect();
    assert_eq!(lines.len(), 1, "{report}");
    assert!(
        lines[0].contains("3 clubs have no link yet (a, b, c): they await their first deploy"),
        "{report}"
    );
    assert!(
        report.contains("fix: clubdeploy deploy <tag> --all"),
        "{report}"
    );
    env.ok(&["deploy", "v1", "--all"]);
    let out = env.command(&["doctor"]).output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(!report.contains("no link"), "{report}");
}

#[test]
fn the_dry_run_shows_the_waves_and_warns_of_a_tag_with_no_shared_history() {
    let mut env = TestEnv::new();
    env.config.tables.push((
        "rollout".into(),
        vec!["canary = [\"c\"]".into(), "batch_size = 2".into()],
    ));
    env.configure();
    env.add_clubs(&["a", "b", "c", "d", "e"]);
    env.ok(&["deploy", "v1", "--all"]);
    let out = env.ok(&["deploy", "v2", "--all", "--dry-run"]);
    assert!(out.contains("First on c: the other clubs follow"), "{out}");
    for wave in [
        "wave 1 of 3 (canary): c",
        "wave 2 of 3: a, b",
        "wave 3 of 3: d, e",
    ] {
        assert!(out.contains(wave), "{wave} missing:\n{out}");
    }
    // The job goes in the same waves.
    let run = env.ok(&["deploy", "v2", "--all"]);
    for wave in [
        "wave 1 of 3 (canary): c",
        "wave 2 of 3: a, b",
        "wave 3 of 3: d, e",
    ] {
        assert!(run.contains(wave), "{wave} missing:\n{run}");
    }
    // A tag on a history of its own (another application's, say).
    {
        let repo = git2::Repository::open(&env.app).unwrap();
        let sig = git2::Signature::now("Test", "test@example.invalid").unwrap();
        let mut index = git2::Index::new().unwrap();
        let tree = repo.find_tree(index.write_tree_to(&repo).unwrap()).unwrap();
        let orphan = repo
            .commit(None, &sig, &sig, "other app", &tree, &[])
            .unwrap();
        repo.tag_lightweight("other-1", &repo.find_object(orphan, None).unwrap(), false)
            .unwrap();
    }
    env.ok(&["releases", "--fetch"]);
    let out = env.ok(&["deploy", "other-1", "--club", "a", "--dry-run"]);
    assert!(out.contains("WARNING: other-1-"), "{out}");
    assert!(out.contains("shares no history with"), "{out}");
}

#[tokio::test]
async fn under_drift_the_clubs_page_the_rollback_page_and_the_job_name_one_previous_release() {
    let env = TestEnv::new();
    env.add_clubs(&["a"]);
    for tag in ["v1", "v2", "v3"] {
        env.ok(&["deploy", tag, "--club", "a"]);
    }
    // Someone points a's link at v1 by hand: the database still says v3.
    let webroot = env.webroot("a");
    let temp = webroot.with_extension("by-hand");
    std::os::unix::fs::symlink(env.releases_dir().join(env.release_name("v1")), &temp).unwrap();
    std::fs::rename(&temp, &webroot).unwrap();
    // From what the link runs (v1), the previous release is v3.
    let panel = crate::web::TestApp::spawn_on(&env).await;
    let client = panel.login("deployer").await;
    let clubs = panel.page(&client, "/clubs").await;
    assert!(clubs.contains("Roll back to v3"), "{clubs}");
    let confirm = panel.page(&client, "/clubs/a/rollback?app=main").await;
    assert!(confirm.contains("v3"), "{confirm}");
    let out = env.ok(&["rollback", "a"]);
    assert!(
        out.contains(&format!(
            "rolled back from {} to {}",
            env.release_name("v1"),
            env.release_name("v3")
        )),
        "{out}"
    );
}
