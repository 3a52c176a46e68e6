//! What staff see before a deploy: tags in version order with their annotation, and for each
//! group of clubs the commits a deploy brings in or undoes, the files it changes and a warning
//! for changes under the watched paths, from `deploy --dry-run` and the panel's confirmation.

use std::process::Stdio;

use git2::{Repository, Signature, Time};

use crate::helpers::{TestEnv, commit_all};
use crate::web::TestApp;

/// Replaces the fixture repository by one with a history worth previewing:
/// - `v1.9`: index.php;
/// - `v1.10`: two commits: "Add booking tables" (two files under database/migrations/) and
///   "Show the new booking page" (index.php changed);
/// - `v2.0-rc.1`: one commit "Tidy the footer";
/// - `v2.0`: the same commit as `v2.0-rc.1`, tagged later;
/// - `hotfix-ski` (not a version, tagged last) and `alpha` (not a version, tagged first): on
///   `v1.9`, lightweight.
fn history_repo(env: &mut TestEnv) {
    let path = env.root.path().canonicalize().unwrap().join("history");
    let repo = Repository::init(&path).unwrap();
    let at = |minutes: i64| {
        Signature::new(
            "Anna Admin",
            "anna@example.invalid",
            &Time::new(1_767_225_600 + minutes * 60, 0),
        )
        .unwrap()
    };
    let write = |name: &str, body: &str| {
        let file = path.join(name);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, body).unwrap();
    };
    let commit = |message: &str, sig: &Signature<'_>, parent: Option<git2::Oid>| {
        commit_all(&repo, sig, parent, message)
    };
    let tag = |name: &str, id: git2::Oid, sig: &Signature<'_>, message: &str| {
        let object = repo.find_object(id, None).unwrap();
        repo.tag(name, &object, sig, message, false).unwrap();
    };
    write("index.php", "<?php echo 'one';\n");
    let one = commit("First release", &at(0), None);
    tag("v1.9", one, &at(1), "Season opening");
    let light = repo.find_object(one, None).unwrap();
    repo.tag_lightweight("alpha", &light, false).unwrap();
    write(
        "database/migrations/001_bookings.sql",
        "CREATE TABLE bookings (id INT);\n",
    );
    write(
        "database/migrations/002_rooms.sql",
        "CREATE TABLE rooms (id INT);\n",
    );
    let two = commit("Add booking tables", &at(10), Some(one));
    write("index.php", "<?php echo 'two';\n");
    let three = commit("Show the new booking page", &at(20), Some(two));
    tag(
        "v1.10",
        three,
        &at(21),
        "Bookings\n\nClubs can now take bookings.",
    );
    write("footer.php", "<?php echo 'footer';\n");
    let four = commit("Tidy the footer", &at(30), Some(three));
    tag("v2.0-rc.1", four, &at(31), "Release candidate");
    tag("v2.0", four, &at(40), "Winter release");
    repo.tag_lightweight("hotfix-ski", &light, false).unwrap();
    env.config.repo_url = path.display().to_string();
    env.app = path;
    env.configure();
}

#[test]
fn tags_are_listed_in_version_order_with_their_annotation() {
    let mut env = TestEnv::new();
    history_repo(&mut env);
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&env.ok(&["releases", "--fetch", "--json"])).unwrap();
    let tags: Vec<&str> = rows.iter().map(|r| r["tag"].as_str().unwrap()).collect();
    // Lightweight tags carry their commit's time: alpha and hotfix-ski tie and sort by name.
    assert_eq!(
        tags,
        ["v1.9", "v1.10", "v2.0-rc.1", "v2.0", "alpha", "hotfix-ski"]
    );
    let v110 = &rows[1];
    assert_eq!(v110["message"], "Bookings\n\nClubs can now take bookings.");
    assert_eq!(v110["tagger"], "Anna Admin");
    assert_eq!(v110["tagged_at"], "2026-01-01T00:21:00+00:00");
    assert_eq!(rows[4]["message"], serde_json::Value::Null);
    assert_eq!(rows[4]["tagged_at"], "2026-01-01T00:00:00+00:00");
    // The table lists them in the same order.
    let listed = env.ok(&["releases"]);
    let v2 = listed.find("v2.0-").unwrap();
    let v19 = listed.find("v1.9-").unwrap();
    assert!(v19 < v2, "{listed}");
}

#[test]
fn a_dry_run_says_what_each_group_of_clubs_gets_and_changes_nothing() {
    let mut env = TestEnv::new();
    history_repo(&mut env);
    env.add_clubs(&["a", "b", "c"]);
    env.ok(&["deploy", "v1.9", "--club", "a", "--club", "b"]);
    env.ok(&["deploy", "v2.0", "--club", "c"]);
    let jobs_before = env.ok(&["jobs", "--json"]);
    let audit_before = env.ok(&["audit", "--json", "--limit", "1000"]);
    let links_before: Vec<_> = ["a", "b", "c"].map(|s| env.release_of(s)).to_vec();

    let out = env.ok(&["deploy", "v1.10", "--all", "--dry-run"]);
    let v19 = env.release_name("v1.9");
    let v110 = env.release_name("v1.10");
    let v20 = env.release_name("v2.0");
    // Forwards: a and b get two commits, three files, and a migrations warning.
    assert!(out.contains("3 clubs will move to"), "{out}");
    assert!(
        out.contains(&format!("2 clubs will move from {v19} to {v110}: a, b")),
        "{out}"
    );
    assert!(
        out.contains("brings in 2 commits; 3 files changed"),
        "{out}"
    );
    assert!(
        out.contains(
            "WARNING: contains 2 changed files under database/migrations/: the database may \
             need migrating"
        ),
        "{out}"
    );
    let page = out.find("Show the new booking page").unwrap();
    let tables = out.find("Add booking tables").unwrap();
    assert!(page < tables, "newest first: {out}");
    assert!(out.contains("(Anna Admin, 2026-01-01)"), "{out}");
    // Backwards: c undoes one commit.
    assert!(
        out.contains(&format!("1 club will move from {v20} to {v110}: c")),
        "{out}"
    );
    assert!(
        out.contains("undoes 1 commit (moving back to an older version); 1 file changed"),
        "{out}"
    );
    assert!(out.contains("newest commits undone:"), "{out}");
    assert!(out.contains("Tidy the footer"), "{out}");
    assert!(
        out.contains("nothing was changed and no job was queued"),
        "{out}"
    );

    assert_eq!(env.ok(&["jobs", "--json"]), jobs_before);
    assert_eq!(
        env.ok(&["audit", "--json", "--limit", "1000"]),
        audit_before
    );
    let links_after: Vec<_> = ["a", "b", "c"].map(|s| env.release_of(s)).to_vec();
    assert_eq!(links_after, links_before);

    // An unknown club or tag is refused, still changing nothing.
    let error = env.fails(&["deploy", "v1.10", "--club", "zz", "--dry-run"]);
    assert!(
        error.contains("no such club: zz; nothing was queued"),
        "{error}"
    );
    let error = env.fails(&["deploy", "v9", "--all", "--dry-run"]);
    assert!(error.contains("tag v9 is not in the repository"), "{error}");
    assert_eq!(env.ok(&["jobs", "--json"]), jobs_before);
}

#[tokio::test]
async fn the_confirmation_page_shows_commits_files_and_warnings_before_queuing() {
    let mut env = TestEnv::new();
    history_repo(&mut env);
    env.add_clubs(&["a", "b"]);
    env.ok(&["deploy", "v1.9", "--club", "a"]);
    env.ok(&["deploy", "v2.0", "--club", "b"]);
    let app = TestApp::spawn(env).await;
    let deployer = app.login("deployer").await;
    let confirm = app
        .confirm(&deployer, &[("tag", "v1.10"), ("target", "all")])
        .await;
    assert_eq!(confirm.status().as_u16(), 200);
    let page = confirm.text().await.unwrap();
    for expected in [
        "brings in 2 commits; 3 files changed",
        "<strong>Warning:</strong> contains 2 changed files under database/migrations/: the \
         database may need migrating",
        "Newest commits this brings in:",
        "Show the new booking page",
        "undoes 1 commit (moving back to an older version)",
        "Newest commits this undoes:",
        "Tidy the footer",
    ] {
        assert!(page.contains(expected), "{expected:?} missing:\n{page}");
    }
    // Nothing was queued by looking.
    let jobs = app.page(&deployer, "/jobs").await;
    assert!(!jobs.contains("deploy v1.10"), "{jobs}");
    // The releases page: newest version first, non-versions after, with the annotation.
    let releases = app.page(&deployer, "/releases").await;
    let at = |tag: &str| {
        releases
            .find(&format!("<strong>{tag}</strong>"))
            .unwrap_or_else(|| panic!("{tag} missing:\n{releases}"))
    };
    assert!(at("v2.0") < at("v2.0-rc.1") && at("v2.0-rc.1") < at("v1.10"));
    assert!(at("v1.10") < at("v1.9") && at("v1.9") < at("hotfix-ski"));
    assert!(at("hotfix-ski") < at("alpha"), "non-versions newest first");
    assert!(
        releases.contains("Clubs can now take bookings."),
        "{releases}"
    );
    assert!(
        releases.contains(
            "<span class=\"id\">2026-01-01</span><br><span class=\"muted\">by Anna Admin"
        ),
        "{releases}"
    );
}

#[test]
fn output_to_a_closed_pipe_is_not_an_error() {
    let env = TestEnv::new();
    env.add_clubs(&["a", "b", "c"]);
    let mut child = env
        .command(&["club", "list"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before the command writes (as `| head -0` would).
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test]
async fn the_confirmation_collapses_long_club_lists_and_warns_of_moving_back() {
    let env = TestEnv::new();
    let slugs: Vec<String> = (0..21).map(|n| format!("c{n:02}")).collect();
    let refs: Vec<&str> = slugs.iter().map(String::as_str).collect();
    env.add_clubs(&refs);
    env.ok(&["deploy", "v2", "--all"]);
    let app = crate::web::TestApp::spawn(env).await;
    let admin = app.login("admin").await;
    let confirm = app
        .confirm_text(&admin, &[("tag", "v1"), ("target", "all")])
        .await;
    assert!(
        confirm.contains("<details><summary>21 clubs</summary>"),
        "{confirm}"
    );
    assert!(
        confirm.contains("these clubs move to an older version"),
        "{confirm}"
    );
    let forward = app
        .confirm_text(&admin, &[("tag", "v3"), ("target", "all")])
        .await;
    assert!(!forward.contains("older version"), "{forward}");
}
