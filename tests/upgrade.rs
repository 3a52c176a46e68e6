//! Upgrading an installation made by an older binary (`tests/fixtures/<version>/`, made by
//! `scripts/make-upgrade-fixture.sh` with that version's binary): nothing is lost, and the
//! audit chain keeps verifying across the switch to the keyed chain; the attacks the plain
//! chain could not stop now fail.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use diesel::{Connection, RunQueryDsl, SqliteConnection};
use sha2::{Digest, Sha256};

use crate::helpers::TestEnv;

/// A test environment whose database is the one v0.1.0 wrote (29 audit rows, 5 jobs, clubs
/// a and b, staff admin and deployer).
fn upgraded_from_v010() -> TestEnv {
    let env = TestEnv::new();
    std::fs::create_dir_all(&env.data).unwrap();
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v0.1.0/clubdeploy.sqlite3");
    std::fs::copy(fixture, env.data.join("clubdeploy.sqlite3")).unwrap();
    env
}

fn sql(env: &TestEnv, statement: &str) {
    let db = env.data.join("clubdeploy.sqlite3");
    let mut conn = SqliteConnection::establish(db.to_str().unwrap()).unwrap();
    diesel::sql_query(statement).execute(&mut conn).unwrap();
}

#[test]
fn an_installation_made_by_v010_keeps_its_clubs_staff_jobs_and_audit_chain() {
    let env = upgraded_from_v010();
    let db = env.data.join("clubdeploy.sqlite3");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = env.ok(&["audit", "verify"]);
    assert!(out.starts_with("audit log intact: 29 rows"), "{out}");
    // 0.1 left the database (password hashes) world-readable: the first run closes it.
    assert_eq!(
        std::fs::metadata(&db).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let users = env.ok(&["user", "list"]);
    assert!(
        users.contains("admin") && users.contains("deployer"),
        "{users}"
    );
    let jobs: serde_json::Value = serde_json::from_str(&env.ok(&["jobs", "--json"])).unwrap();
    assert_eq!(jobs.as_array().unwrap().len(), 5);
    assert!(
        jobs.as_array()
            .unwrap()
            .iter()
            .all(|j| j["status"] == "succeeded")
    );
    let clubs: serde_json::Value =
        serde_json::from_str(&env.ok(&["club", "list", "--json"])).unwrap();
    let slugs: Vec<&str> = clubs
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["slug"].as_str().unwrap())
        .collect();
    assert_eq!(slugs, ["a", "b"]);

    // The first change after the upgrade starts the keyed chain, onto the last old hash.
    env.add_clubs(&["c"]);
    let key = env.data.join("audit.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(
        std::fs::read_to_string(&key)
            .unwrap()
            .contains("keyed_from=30\n")
    );
    env.ok(&["deploy", "v1", "--club", "c"]);
    let out = env.ok(&["audit", "verify"]);
    assert!(
        out.contains("rows 1 to 29 by the plain SHA-256 chain"),
        "{out}"
    );
    assert!(out.contains("rows 30 to"), "{out}");
    assert!(out.contains("vouches for every row"), "{out}");
    let rows: serde_json::Value =
        serde_json::from_str(&env.ok(&["audit", "--json", "--limit", "1000"])).unwrap();
    let by_id = |id: i64| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(by_id(30)["prev_hash"], by_id(29)["hash"]);
}

/// Field-by-field the plain SHA-256 row hash the first version used, as someone who can
/// write the database (but not read the key) would recompute it.
fn plain_hash(row: &serde_json::Value, prev_hash: &str) -> String {
    let at =
        chrono::NaiveDateTime::parse_from_str(row["at"].as_str().unwrap(), "%Y-%m-%dT%H:%M:%S%.f")
            .unwrap()
            .format("%Y-%m-%dT%H:%M:%S%.f")
            .to_string();
    let id = row["id"].to_string();
    let fields = [
        id.as_str(),
        at.as_str(),
        row["actor"].as_str().unwrap(),
        row["action"].as_str().unwrap(),
        row["target_kind"].as_str().unwrap(),
        row["target"].as_str().unwrap(),
        row["details"].as_str().unwrap(),
        row["address"].as_str().unwrap_or("\u{0}none"),
        prev_hash,
    ];
    let mut hasher = Sha256::new();
    for field in fields {
        hasher.update((field.len() as u64).to_le_bytes());
        hasher.update(field.as_bytes());
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn edits_re_chained_without_the_key_and_deleted_rows_are_caught() {
    let env = upgraded_from_v010();
    env.add_clubs(&["c"]);
    env.ok(&["deploy", "v1", "--club", "c"]);
    let pristine = env.root.path().join("pristine.sqlite3");
    sql(&env, "PRAGMA wal_checkpoint(TRUNCATE)");
    std::fs::copy(env.data.join("clubdeploy.sqlite3"), &pristine).unwrap();
    let rows: serde_json::Value =
        serde_json::from_str(&env.ok(&["audit", "--json", "--limit", "1000"])).unwrap();
    let mut rows: Vec<serde_json::Value> = rows.as_array().unwrap().clone();
    rows.reverse();
    let last = rows.len();

    // The recomputation is the old one: it reproduces every row written before the key.
    for row in &rows[..29] {
        assert_eq!(
            plain_hash(row, row["prev_hash"].as_str().unwrap()),
            row["hash"].as_str().unwrap()
        );
    }
    assert_eq!(rows[33]["id"], 34);
    // 1. Edit a keyed row and re-chain everything after it the old way: the MAC catches it.
    let mut prev = rows[33]["prev_hash"].as_str().unwrap().to_owned();
    for row in rows.iter_mut().skip(33) {
        if row["id"] == 34 {
            row["details"] = "nothing happened".into();
        }
        let hash = plain_hash(row, &prev);
        sql(
            &env,
            &format!(
                "UPDATE audit_events SET details = '{}', prev_hash = '{prev}', hash = '{hash}' WHERE id = {}",
                row["details"].as_str().unwrap().replace('\'', "''"),
                row["id"]
            ),
        );
        prev = hash;
    }
    sql(
        &env,
        &format!("UPDATE audit_head SET hash = '{prev}' WHERE id = 1"),
    );
    let error = env.fails(&["audit", "verify"]);
    assert!(
        error.contains("audit row 34 does not match its hash"),
        "{error}"
    );

    // 2. Drop the newest rows and point the head at what is left: the anchor catches it.
    std::fs::copy(&pristine, env.data.join("clubdeploy.sqlite3")).unwrap();
    let keep = &rows[last - 6];
    sql(
        &env,
        &format!("DELETE FROM audit_events WHERE id > {}", keep["id"]),
    );
    sql(
        &env,
        &format!(
            "UPDATE audit_head SET last_id = {}, hash = '{}' WHERE id = 1",
            keep["id"],
            keep["hash"].as_str().unwrap()
        ),
    );
    let error = env.fails(&["audit", "verify"]);
    assert!(error.contains("an anchor written"), "{error}");
    assert!(error.contains("rows were deleted"), "{error}");

    // 3. Delete every row: never "intact".
    std::fs::copy(&pristine, env.data.join("clubdeploy.sqlite3")).unwrap();
    sql(&env, "DELETE FROM audit_events");
    sql(&env, "DELETE FROM audit_head");
    let error = env.fails(&["audit", "verify"]);
    assert!(error.contains("the audit log ends at row 0"), "{error}");

    // The untouched log still verifies.
    std::fs::copy(&pristine, env.data.join("clubdeploy.sqlite3")).unwrap();
    env.ok(&["audit", "verify"]);
}

#[test]
fn the_old_log_is_anchored_once_and_every_command_that_writes_anchors_what_it_wrote() {
    let env = upgraded_from_v010();
    let anchors = env.data.join("audit-anchors.log");
    let lines = || std::fs::read_to_string(&anchors).unwrap().lines().count();
    // Opening 0.1's database anchored its 29 rows as found, before writing anything.
    env.ok(&["status"]);
    assert_eq!(lines(), 1);
    env.add_clubs(&["c"]);
    env.ok(&["deploy", "v1", "--club", "c"]);
    env.add_clubs(&["d"]);
    let out = env.ok(&["audit", "verify"]);
    assert!(out.contains("vouches for every row"), "{out}");
    let anchored = lines();
    assert!(anchored >= 3, "{anchored} anchors");
    // A command that writes nothing anchors nothing.
    env.ok(&["status"]);
    env.ok(&["audit", "verify"]);
    assert_eq!(lines(), anchored);
}

/// The version the first upgrade test starts from.
const V010: &str = "v0.1.0";

/// The version that landed before this one (the fixture made by its binary, at 2478952).
const LANDED: &str = "landed-2478952";

/// The whole installation an older version made (configuration, repository, data_dir with
/// mirror and releases, webroots with live links), unpacked where
/// `scripts/make-upgrade-fixture.sh` made it (`/tmp/clubdeploy-upgrade-<version>`: its links
/// and its database name that absolute path). Holds a lock, so test runs sharing a machine
/// take turns; removed when dropped.
struct Installation {
    root: std::path::PathBuf,
    version: &'static str,
    _lock: std::fs::File,
}

impl Installation {
    fn unpack(version: &'static str) -> Installation {
        let install = format!("/tmp/clubdeploy-upgrade-{version}");
        let lock = std::fs::File::create(format!("{install}.lock")).unwrap();
        lock.lock().unwrap();
        let root = std::path::PathBuf::from(&install);
        if root.exists() {
            std::fs::remove_dir_all(&root).unwrap();
        }
        std::fs::create_dir_all(&root).unwrap();
        let archive = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("tests/fixtures/{version}/install.tar.gz"));
        let status = std::process::Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-xzf")
            .arg(archive)
            .status()
            .unwrap();
        assert!(status.success(), "tar failed");
        Installation {
            root,
            version,
            _lock: lock,
        }
    }

    /// Runs the new binary on the installation's own configuration; stdout, or a panic with
    /// its error.
    fn run(&self, args: &[&str]) -> Result<String, String> {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_clubdeploy"))
            .arg("--config")
            .arg(self.root.join("clubdeploy.toml"))
            .args(args)
            .env_remove("CLUBDEPLOY_CONFIG")
            .env("USER", "upgrader")
            .current_dir(&self.root)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if out.status.success() {
            Ok(stdout)
        } else {
            Err(format!("{stdout}{stderr}"))
        }
    }

    fn ok(&self, args: &[&str]) -> String {
        self.run(args)
            .unwrap_or_else(|e| panic!("clubdeploy {args:?} failed: {e}"))
    }

    fn webroot(&self, club: &str) -> std::path::PathBuf {
        self.root.join("www").join(club).join("htdocs")
    }

    /// A link as it is on disk: where it points and the inode it is (a link rewritten, even
    /// to the same target, is a new inode).
    fn link(&self, club: &str) -> (std::path::PathBuf, u64) {
        use std::os::unix::fs::MetadataExt;
        let path = self.webroot(club);
        let inode = std::fs::symlink_metadata(&path).unwrap().ino();
        (std::fs::read_link(&path).unwrap(), inode)
    }
}

impl Installation {
    /// The session admin started in the v0.1.0 panel still signs admin in to the new one
    /// (its timeouts set long: the fixture was made long before the test runs).
    fn signed_in_admin_still_is(&self) {
        let config = self.root.join("clubdeploy.toml");
        let text = std::fs::read_to_string(&config).unwrap();
        // Longer than the ten years a session may last: read as ten years.
        let longer = "session_idle_secs = 3000000000\nsession_absolute_secs = 3000000000\n";
        std::fs::write(&config, format!("{longer}{text}")).unwrap();
        let token = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(format!("tests/fixtures/{}/admin-session.txt", self.version)),
        )
        .unwrap();
        let settings = clubdeploy::config::Settings::load(&config).unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let (status, page) = runtime.block_on(async move {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let app = clubdeploy::startup::Application::build(
                settings,
                listener,
                std::time::Duration::from_secs(3600),
            )
            .unwrap();
            let url = format!("http://{}/clubs", app.addr());
            let server = tokio::spawn(app.run_until_stopped());
            let response = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap()
                .get(url)
                .header("Cookie", format!("clubdeploy_session={}", token.trim()))
                .send()
                .await
                .unwrap();
            let status = response.status();
            let page = response.text().await.unwrap();
            server.abort();
            (status, page)
        });
        assert_eq!(status, reqwest::StatusCode::OK, "{page}");
        assert!(page.contains("admin (admin)"), "{page}");
        assert!(page.contains("Club A") && page.contains("Club B"), "{page}");
    }
}

impl Drop for Installation {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

#[test]
fn a_live_v010_installation_upgrades_in_place_with_links_history_bad_marks_and_sessions() {
    let install = Installation::unpack(V010);
    let releases =
        |install: &Installation| crate::helpers::entries(&install.root.join("data/releases"));
    let before_links = [install.link("a"), install.link("b")];
    let before_releases = releases(&install);
    assert_eq!(before_releases.len(), 3, "{before_releases:?}");

    // The first command of the new version migrates; it reads the links, never writes them.
    let status: serde_json::Value =
        serde_json::from_str(&install.ok(&["status", "--json"])).unwrap();
    let status = status.as_array().unwrap();
    assert_eq!(status.len(), 2);
    let v2 = before_links[0]
        .0
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    for (row, slug) in status.iter().zip(["a", "b"]) {
        assert_eq!(row["slug"], slug);
        assert_eq!(row["app"], "main");
        assert_eq!(row["release"], v2.as_str());
        assert_eq!(row["drift"], false, "{row}");
    }
    assert_eq!([install.link("a"), install.link("b")], before_links);
    assert_eq!(releases(&install), before_releases);
    let out = install.ok(&["audit", "verify"]);
    assert!(out.starts_with("audit log intact: 29 rows"), "{out}");
    let jobs: serde_json::Value = serde_json::from_str(&install.ok(&["jobs", "--json"])).unwrap();
    let jobs = jobs.as_array().unwrap();
    assert_eq!(jobs.len(), 5);
    assert!(
        jobs.iter()
            .all(|j| j["status"] == "succeeded" && j["app"] == "main")
    );
    let users = install.ok(&["user", "list"]);
    assert!(
        users.contains("admin") && users.contains("deployer"),
        "{users}"
    );
    install.signed_in_admin_still_is();

    // History and bad marks survived: a went v1, v2, v3 and was rolled back to v2 (v3 marked
    // bad for it), so its previous release is v1, not v3; b's (v1, v2) is v1.
    let v1 = before_releases
        .iter()
        .find(|r| r.starts_with("v1-"))
        .unwrap();
    let out = install.ok(&["rollback", "a"]);
    assert!(
        out.contains(&format!("rolled back from {v2} to {v1}")),
        "{out}"
    );
    let out = install.ok(&["rollback", "b"]);
    assert!(
        out.contains(&format!("rolled back from {v2} to {v1}")),
        "{out}"
    );
    for club in ["a", "b"] {
        assert_eq!(
            install.webroot(club).canonicalize().unwrap(),
            install.root.join("data/releases").join(v1)
        );
    }
    let out = install.ok(&["audit", "verify"]);
    assert!(
        out.contains("rows 1 to 29 by the plain SHA-256 chain"),
        "{out}"
    );

    // The upgraded installation takes a second application beside the first.
    let mobile = install.root.join("mobile-app");
    let repo = git2::Repository::init(&mobile).unwrap();
    std::fs::write(mobile.join("index.php"), "<?php echo 'mobile';\n").unwrap();
    let sig = git2::Signature::now("Test", "test@example.invalid").unwrap();
    crate::helpers::commit_all_and_tag(&repo, &sig, None, "m1", "mobile m1");
    let mut config = std::fs::read_to_string(install.root.join("clubdeploy.toml")).unwrap();
    config.push_str(&format!(
        "[apps.mobile]\nrepo_url = {:?}\n",
        mobile.display().to_string()
    ));
    std::fs::write(install.root.join("clubdeploy.toml"), config).unwrap();
    let a_main = install.link("a");
    let mobile_webroot = install.root.join("www/a/mobile");
    install.ok(&[
        "club",
        "webroot",
        "a",
        "mobile",
        mobile_webroot.to_str().unwrap(),
    ]);
    install.ok(&["deploy", "m1", "--app", "mobile", "--club", "a"]);
    assert_eq!(install.link("a"), a_main);
    assert_eq!(
        std::fs::read_to_string(mobile_webroot.join("index.php")).unwrap(),
        "<?php echo 'mobile';\n"
    );
    install.ok(&["audit", "verify"]);
}

#[test]
fn a_live_installation_of_the_last_landed_version_upgrades_in_place_with_nothing_lost() {
    let install = Installation::unpack(LANDED);
    let releases =
        |install: &Installation| crate::helpers::entries(&install.root.join("data/releases"));
    let before_links = [install.link("a"), install.link("b")];
    let before_releases = releases(&install);
    assert_eq!(before_releases.len(), 3, "{before_releases:?}");
    let before_audit = install.ok(&["audit", "--json", "--limit", "1000"]);

    // The first command of the new version migrates (progress columns on job events); it
    // reads the links, never writes them.
    let status: serde_json::Value =
        serde_json::from_str(&install.ok(&["status", "--json"])).unwrap();
    let v2 = before_links[0]
        .0
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    for (row, slug) in status.as_array().unwrap().iter().zip(["a", "b"]) {
        assert_eq!(row["slug"], slug);
        assert_eq!(row["release"], v2.as_str());
        assert_eq!(row["drift"], false, "{row}");
    }
    assert_eq!([install.link("a"), install.link("b")], before_links);
    assert_eq!(releases(&install), before_releases);
    // The keyed audit chain the landed version wrote verifies, every row as it was.
    let out = install.ok(&["audit", "verify"]);
    assert!(out.starts_with("audit log intact: 29 rows"), "{out}");
    assert_eq!(
        install.ok(&["audit", "--json", "--limit", "1000"]),
        before_audit
    );
    // Its jobs read as they were (stored before `rebuild` existed), its events too.
    let jobs: serde_json::Value = serde_json::from_str(&install.ok(&["jobs", "--json"])).unwrap();
    let jobs = jobs.as_array().unwrap();
    assert_eq!(jobs.len(), 5);
    assert!(jobs.iter().all(|j| j["status"] == "succeeded"), "{jobs:?}");
    let log = install.ok(&["job", "1"]);
    assert!(log.contains("switch"), "{log}");
    let users = install.ok(&["user", "list"]);
    assert!(
        users.contains("admin") && users.contains("deployer"),
        "{users}"
    );
    install.signed_in_admin_still_is();

    // History and bad marks survived (a: v1, v2, v3, rolled back to v2, so its previous is
    // v1); and a deploy to all clubs prunes by the new rule, keeping every rollback target.
    let v1 = before_releases
        .iter()
        .find(|r| r.starts_with("v1-"))
        .unwrap()
        .clone();
    let v3 = before_releases
        .iter()
        .find(|r| r.starts_with("v3-"))
        .unwrap()
        .clone();
    let out = install.ok(&["rollback", "a"]);
    assert!(
        out.contains(&format!("rolled back from {v2} to {v1}")),
        "{out}"
    );
    // The old installation's put-back of v3 from a still counts: bringing v3 back to a needs
    // asking on purpose.
    let refused = install
        .run(&["deploy", "v3", "--all"])
        .expect_err("v3 went back to a club it was put back on");
    assert!(refused.contains("v3 was put back on Club A"), "{refused}");
    install.ok(&["deploy", "v3", "--all", "--again"]);
    // b ran v2 before v3 (its rollback target); a ran v1 (its own). v3 runs.
    let mut kept = vec![v1.clone(), v2.clone(), v3.clone()];
    kept.sort();
    assert_eq!(releases(&install), kept);
    let out = install.ok(&["audit", "verify"]);
    assert!(out.contains("audit log intact"), "{out}");
}
