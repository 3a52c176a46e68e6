//! Taking over a legacy copy-per-club webroot (issue 10's building blocks): the exchange with
//! a link never leaves the webroot missing, the copy is kept whole and comes back byte for
//! byte, a backup on another filesystem is refused before anything changes, and the
//! differences between the copy and the release are listed.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use clubdeploy::pipeline::legacy::{self, Backup};

/// Every file under `root` with its bytes (links as their targets), for byte-for-byte checks.
fn snapshot(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            let name = entry
                .path()
                .strip_prefix(root)
                .unwrap()
                .display()
                .to_string();
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_symlink() {
                let target = std::fs::read_link(entry.path()).unwrap();
                files.push((name, target.display().to_string().into_bytes()));
            } else {
                files.push((name, std::fs::read(entry.path()).unwrap()));
            }
        }
    }
    files.sort();
    files
}

/// A thread reading a page through a webroot without pause, counting reads and misses
/// (bounded: two minutes at most).
struct Reader {
    stop: Arc<AtomicBool>,
    reads: Arc<AtomicUsize>,
    misses: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<()>,
}

impl Reader {
    fn start(page: PathBuf) -> Reader {
        let stop = Arc::new(AtomicBool::new(false));
        let (reads, misses) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let thread = {
            let (stop, reads, misses) = (stop.clone(), reads.clone(), misses.clone());
            std::thread::spawn(move || {
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
                while !stop.load(Ordering::Relaxed) && std::time::Instant::now() < deadline {
                    match std::fs::read(&page) {
                        Ok(_) => reads.fetch_add(1, Ordering::Relaxed),
                        Err(_) => misses.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        };
        Reader {
            stop,
            reads,
            misses,
            thread,
        }
    }

    /// Waits until the reader has read a few more times, so steps interleave with reads.
    fn let_run(&self) {
        let mark = self.reads.load(Ordering::Relaxed);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while self.reads.load(Ordering::Relaxed) < mark + 5 {
            assert!(
                std::time::Instant::now() < deadline,
                "the reader does not run"
            );
            std::thread::yield_now();
        }
    }

    /// Stops it; asserts it ran and never missed the page.
    fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        assert_eq!(
            self.misses.load(Ordering::Relaxed),
            0,
            "the page went missing"
        );
        assert!(
            self.reads.load(Ordering::Relaxed) > 100,
            "the reader barely ran"
        );
    }
}

struct World {
    _root: tempfile::TempDir,
    base: PathBuf,
    webroot: PathBuf,
    release: PathBuf,
    backups: PathBuf,
}

/// A webroot base with club `a`'s legacy copy (an old version, an upload, a local link) and a
/// release directory of the new version.
fn world() -> World {
    let root = tempfile::tempdir().unwrap();
    let top = root.path().canonicalize().unwrap();
    let base = top.join("www");
    let webroot = base.join("a/htdocs");
    std::fs::create_dir_all(webroot.join("uploads")).unwrap();
    std::fs::write(webroot.join("index.php"), "<?php echo 'legacy';\n").unwrap();
    std::fs::write(webroot.join("config.php"), "<?php $club = 'a';\n").unwrap();
    std::fs::write(webroot.join("uploads/logo.png"), [0u8, 1, 2, 255]).unwrap();
    symlink("index.php", webroot.join("home.php")).unwrap();
    let release = top.join("data/releases/v2-0000000b");
    std::fs::create_dir_all(&release).unwrap();
    std::fs::write(release.join("index.php"), "<?php echo 'v2';\n").unwrap();
    std::fs::write(release.join("config.php"), "<?php $club = 'a';\n").unwrap();
    std::fs::write(release.join("new.php"), "<?php\n").unwrap();
    std::fs::write(release.join(".clubdeploy-release.json"), "{}").unwrap();
    symlink("index.php", release.join("home.php")).unwrap();
    World {
        backups: top.join("data/legacy"),
        _root: root,
        base,
        webroot,
        release,
    }
}

#[test]
fn the_differences_between_a_legacy_copy_and_a_release_are_listed() {
    let w = world();
    let diff = legacy::compare_trees(&w.webroot, &w.release).unwrap();
    assert_eq!(diff.only_in_copy, ["uploads/logo.png"]);
    assert_eq!(diff.only_in_release, ["new.php"]);
    assert_eq!(diff.differing, ["index.php"]);
    assert!(!diff.is_empty());
}

#[test]
fn adopting_and_undoing_never_leave_the_webroot_missing_and_keep_the_copy_byte_for_byte() {
    let w = world();
    let before = snapshot(&w.webroot);
    let reader = Reader::start(w.webroot.join("index.php"));
    for round in 0..20 {
        reader.let_run();
        let backup = legacy::adopt(
            &w.base,
            &w.webroot,
            &w.release,
            &w.backups,
            &format!("a-htdocs-{round}"),
        )
        .unwrap();
        assert_eq!(std::fs::read_link(&w.webroot).unwrap(), w.release);
        assert_eq!(
            snapshot(&backup.path),
            before,
            "the backup is the whole copy"
        );
        reader.let_run();
        legacy::undo(&w.base, &w.webroot, &backup).unwrap();
        assert!(!backup.path.exists());
    }
    reader.finish();
    assert!(std::fs::symlink_metadata(&w.webroot).unwrap().is_dir());
    assert_eq!(
        snapshot(&w.webroot),
        before,
        "the copy came back byte for byte"
    );
    // Nothing was left beside the webroot.
    let left: Vec<_> = std::fs::read_dir(w.webroot.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["htdocs"]);
}

#[test]
fn a_backup_on_another_filesystem_is_refused_before_anything_changes() {
    let w = world();
    let shm = Path::new("/dev/shm");
    let other_device = std::fs::metadata(shm).ok().map(|m| {
        use std::os::unix::fs::MetadataExt;
        m.dev() != std::fs::metadata(&w.base).unwrap().dev()
    });
    if other_device != Some(true) {
        crate::helpers::skip(
            "LEGACY CROSS-FILESYSTEM TEST SKIPPED: /dev/shm is missing or on the same \
             filesystem as the temporary directory",
        );
        return;
    }
    let backups = tempfile::tempdir_in(shm).unwrap();
    let before = snapshot(&w.webroot);
    let error = legacy::adopt(&w.base, &w.webroot, &w.release, backups.path(), "a")
        .unwrap_err()
        .to_string();
    assert!(error.contains("different filesystems"), "{error}");
    assert!(error.contains("nothing was changed"), "{error}");
    assert!(std::fs::symlink_metadata(&w.webroot).unwrap().is_dir());
    assert_eq!(snapshot(&w.webroot), before);
    assert_eq!(std::fs::read_dir(backups.path()).unwrap().count(), 0);
}

#[test]
fn only_a_real_directory_is_adopted_and_only_a_link_is_undone() {
    let w = world();
    let link_root = w.base.join("b/htdocs");
    std::fs::create_dir_all(link_root.parent().unwrap()).unwrap();
    symlink(&w.release, &link_root).unwrap();
    let error = legacy::adopt(&w.base, &link_root, &w.release, &w.backups, "b")
        .unwrap_err()
        .to_string();
    assert!(error.contains("is not a real directory"), "{error}");
    let error = legacy::undo(
        &w.base,
        &w.webroot,
        &Backup {
            path: w.backups.join("nothing"),
        },
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("is not a link now"), "{error}");
    assert!(std::fs::symlink_metadata(&w.webroot).unwrap().is_dir());
}

/// A test environment whose club `a` has a legacy copy (v1's index.php changed by hand, an
/// upload) as its webroot; returns it with a snapshot of the copy.
fn env_with_legacy_copy() -> (crate::helpers::TestEnv, Vec<(String, Vec<u8>)>) {
    let env = crate::helpers::TestEnv::new();
    let webroot = env.webroot("a");
    std::fs::create_dir_all(webroot.join("uploads")).unwrap();
    std::fs::write(webroot.join("index.php"), "<?php echo 'hand-edited';\n").unwrap();
    std::fs::write(webroot.join("uploads/logo.png"), [1u8, 2, 3]).unwrap();
    env.add_clubs(&["a"]);
    let before = snapshot(&webroot);
    (env, before)
}

#[test]
fn a_legacy_copy_is_kept_refused_by_deploy_adopted_without_a_gap_and_put_back() {
    let (env, before) = env_with_legacy_copy();
    let status = env.ok(&["status"]);
    assert!(
        status.contains("a legacy copy (a real directory): adopt it to deploy"),
        "{status}"
    );
    let error = env.fails(&["deploy", "v1", "--club", "a"]);
    assert!(
        error.contains("is a legacy copy (a real directory); adopt it first"),
        "{error}"
    );
    let error = env.fails(&["deploy", "v1", "--all"]);
    assert!(
        error.contains("every club's webroot of main is a legacy copy: adopt them first"),
        "{error}"
    );
    assert_eq!(snapshot(&env.webroot("a")), before);

    // Adopt and undo while a reader keeps reading the club's page.
    let reader = Reader::start(env.webroot("a").join("index.php"));
    let out = env.ok(&["adopt", "a", "--tag", "v2"]);
    assert!(out.contains("1 file only in the legacy copy"), "{out}");
    assert!(out.contains("uploads/logo.png"), "{out}");
    assert!(
        out.contains("different in the legacy copy (local changes?): index.php"),
        "{out}"
    );
    assert_eq!(env.release_of("a"), env.release_name("v2"));
    let kept = env.ok(&["legacy", "list"]);
    assert!(
        kept.contains(&format!("{}/legacy/a.", env.data.display())),
        "{kept}"
    );
    // Now an ordinary club: it deploys and rolls back.
    env.ok(&["deploy", "v3", "--club", "a"]);
    env.ok(&["rollback", "a"]);
    assert_eq!(env.release_of("a"), env.release_name("v2"));
    env.ok(&["adopt", "a", "--undo"]);
    reader.finish();
    assert!(
        std::fs::symlink_metadata(env.webroot("a"))
            .unwrap()
            .is_dir()
    );
    assert_eq!(
        snapshot(&env.webroot("a")),
        before,
        "the copy came back byte for byte"
    );
    assert!(
        env.ok(&["legacy", "list"])
            .contains("no legacy copy is kept")
    );

    // Adopt again, then delete the kept copy on purpose.
    env.ok(&["adopt", "a", "--tag", "v2"]);
    let purged = env.ok(&["legacy", "purge", "a"]);
    assert!(purged.contains("deleted the kept legacy copy"), "{purged}");
    assert!(
        env.ok(&["legacy", "list"])
            .contains("no legacy copy is kept")
    );
    let audit = env.ok(&["audit", "--limit", "1000"]);
    for action in ["club.adopted", "club.adoption_undone", "legacy.purged"] {
        assert!(audit.contains(action), "{action} missing:\n{audit}");
    }
}

#[test]
fn an_adopt_interrupted_after_the_exchange_keeps_the_copy_and_is_recovered() {
    let (env, before) = env_with_legacy_copy();
    env.crash_at(&["adopt", "a", "--tag", "v2"], "adopt:after-exchange");
    // The webroot is the release already; the copy waits beside it.
    assert_eq!(env.release_of("a"), env.release_name("v2"));
    let beside: Vec<String> = crate::helpers::entries(&env.www.join("a"))
        .into_iter()
        .filter(|n| n.starts_with("htdocs.tmp-"))
        .collect();
    assert_eq!(beside.len(), 1, "{beside:?}");
    // Any command recovers: the copy joins the kept ones, whole.
    env.ok(&["status"]);
    let kept = std::fs::read_dir(env.data.join("legacy"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect::<Vec<_>>();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(snapshot(&kept[0]), before);
    assert_eq!(
        crate::helpers::entries(&env.www.join("a")),
        ["htdocs"],
        "nothing is left beside the webroot"
    );
    let job: serde_json::Value = serde_json::from_str(&env.ok(&["job", "1", "--json"])).unwrap();
    assert_eq!(job["status"], "interrupted");
    // And it can be put back.
    env.ok(&["adopt", "a", "--undo"]);
    assert_eq!(snapshot(&env.webroot("a")), before);
}

#[tokio::test]
async fn admins_adopt_put_back_and_delete_legacy_copies_from_the_panel() {
    use reqwest::StatusCode;
    let (env, before) = env_with_legacy_copy();
    env.ok(&["releases", "--fetch"]);
    let app = crate::web::TestApp::spawn_driven(env).await;
    let admin = app.login("admin").await;
    let clubs = app.page(&admin, "/clubs").await;
    assert!(
        clubs.contains("href=\"/clubs/a/adopt?app=main\""),
        "{clubs}"
    );
    assert!(
        clubs.contains("a legacy copy (a real directory)"),
        "{clubs}"
    );
    for who in ["viewer", "deployer"] {
        let client = app.login(who).await;
        let refused = client.get(app.url("/clubs/a/adopt")).send().await.unwrap();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{who}");
    }

    // What differs is shown before anything changes.
    let compare = app.page(&admin, "/clubs/a/adopt?tag=v2").await;
    for expected in [
        "1 file(s) only in the copy",
        "<code>uploads/logo.png</code>",
        "1 file(s) changed in the copy",
        "<code>index.php</code>",
        "Yes, adopt the copy with v2",
    ] {
        assert!(
            compare.contains(expected),
            "{expected:?} missing:\n{compare}"
        );
    }
    assert_eq!(snapshot(&app.env.webroot("a")), before);

    let queued = app.post(&admin, "/clubs/a/adopt", &[("tag", "v2")]).await;
    assert_eq!(queued.status(), StatusCode::SEE_OTHER);
    let id = crate::web::job_id(&queued);
    assert_eq!(app.run_job(id).await, "succeeded");
    assert_eq!(app.env.release_of("a"), app.env.release_name("v2"));
    let clubs = app.page(&admin, "/clubs").await;
    assert!(clubs.contains("Kept legacy copy a."), "{clubs}");
    assert!(
        clubs.contains("href=\"/clubs/a/undo-adopt?app=main\""),
        "{clubs}"
    );

    // Put it back.
    let confirm = app.page(&admin, "/clubs/a/undo-adopt").await;
    assert!(
        confirm.contains("becomes club a&#39;s webroot again"),
        "{confirm}"
    );
    let queued = app.post(&admin, "/clubs/a/undo-adopt", &[]).await;
    assert_eq!(app.run_job(crate::web::job_id(&queued)).await, "succeeded");
    assert_eq!(snapshot(&app.env.webroot("a")), before);

    // Adopt again, then delete the kept copy.
    let queued = app.post(&admin, "/clubs/a/adopt", &[("tag", "v2")]).await;
    assert_eq!(app.run_job(crate::web::job_id(&queued)).await, "succeeded");
    let name = std::fs::read_dir(app.env.data.join("legacy"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .next()
        .unwrap();
    let confirm = app
        .page(&admin, &format!("/clubs/a/legacy/{name}/purge"))
        .await;
    assert!(confirm.contains("will be deleted for good"), "{confirm}");
    let queued = app
        .post(&admin, &format!("/clubs/a/legacy/{name}/purge"), &[])
        .await;
    assert_eq!(app.run_job(crate::web::job_id(&queued)).await, "succeeded");
    assert_eq!(
        std::fs::read_dir(app.env.data.join("legacy"))
            .unwrap()
            .count(),
        0
    );
    // A name that is not one of the club's copies is refused.
    let bad = admin
        .get(app.url("/clubs/a/legacy/b.20260101T000000Z/purge"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_deploy_to_all_clubs_leaves_legacy_copies_out_and_says_so_first() {
    let (env, before) = env_with_legacy_copy();
    env.add_clubs(&["b"]);
    env.ok(&["releases", "--fetch"]);
    let dry = env.ok(&["deploy", "v1", "--all", "--dry-run"]);
    assert!(
        dry.contains("left out (a legacy copy, adopt it first): a"),
        "{dry}"
    );
    let app = crate::web::TestApp::spawn_driven(env).await;
    let admin = app.login("admin").await;
    let confirm = app
        .confirm_text(&admin, &[("tag", "v1"), ("target", "all")])
        .await;
    assert!(
        confirm.contains("<strong>Left out</strong> (1): a:"),
        "{confirm}"
    );
    // Named on purpose, it is refused with the reason before anything is queued.
    let refused = app
        .confirm(&admin, &[("tag", "v1"), ("target", "some"), ("clubs", "a")])
        .await;
    assert_eq!(refused.status(), reqwest::StatusCode::BAD_REQUEST);
    let text = refused.text().await.unwrap();
    assert!(
        text.contains("legacy copy (a real directory): adopt it first"),
        "{text}"
    );
    let queued = app
        .post(&admin, "/deploy", &[("tag", "v1"), ("target", "all")])
        .await;
    let id = crate::web::job_id(&queued);
    assert_eq!(app.run_job(id).await, "succeeded");
    assert_eq!(app.env.release_of("b"), app.env.release_name("v1"));
    assert_eq!(snapshot(&app.env.webroot("a")), before);
    let log = app.env.ok(&["job", &id.to_string()]);
    assert!(
        log.contains("left out: club a's webroot is a legacy copy"),
        "{log}"
    );
}
