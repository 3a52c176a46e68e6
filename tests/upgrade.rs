//! Upgrading an installation made by an older binary (`tests/fixtures/<version>/`, made by
//! `scripts/make-upgrade-fixture.sh` with that version's binary): nothing is lost, and the
//! audit chain keeps verifying across the switch to the keyed chain; the attacks the plain
//! chain could not stop now fail.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use diesel::{Connection, RunQueryDsl, SqliteConnection};
use sha2::{Digest, Sha256};

use crate::helpers::TestEnv;

/// A test environment whose database is the one v0.1.0 wrote (19 audit rows, 3 jobs, clubs
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
    assert!(out.starts_with("audit log intact: 19 rows"), "{out}");
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
    assert_eq!(jobs.as_array().unwrap().len(), 3);
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
            .contains("keyed_from=20\n")
    );
    env.ok(&["deploy", "v1", "--club", "c"]);
    let out = env.ok(&["audit", "verify"]);
    assert!(
        out.contains("rows 1 to 19 by the plain SHA-256 chain"),
        "{out}"
    );
    assert!(out.contains("rows 20 to"), "{out}");
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
    assert_eq!(by_id(20)["prev_hash"], by_id(19)["hash"]);
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
    for row in &rows[..19] {
        assert_eq!(
            plain_hash(row, row["prev_hash"].as_str().unwrap()),
            row["hash"].as_str().unwrap()
        );
    }
    assert_eq!(rows[23]["id"], 24);
    // 1. Edit a keyed row and re-chain everything after it the old way: the MAC catches it.
    let mut prev = rows[23]["prev_hash"].as_str().unwrap().to_owned();
    for row in rows.iter_mut().skip(23) {
        if row["id"] == 24 {
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
        error.contains("audit row 24 does not match its hash"),
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
fn verify_says_which_rows_no_anchor_covers_yet() {
    let env = upgraded_from_v010();
    env.add_clubs(&["c"]);
    env.ok(&["deploy", "v1", "--club", "c"]);
    // A change that ends no job writes no anchor until the next job or the hourly one.
    env.add_clubs(&["d"]);
    let out = env.ok(&["audit", "verify"]);
    assert!(
        out.contains("rows after it are unverified by any anchor"),
        "{out}"
    );
    let anchors = std::fs::read_to_string(env.data.join("audit-anchors.log")).unwrap();
    assert_eq!(anchors.lines().count(), 1, "{anchors}");
}
