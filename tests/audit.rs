//! The audit log: every change is recorded, filters work, and `audit verify` names the first
//! row that was edited, deleted or inserted behind clubdeploy's back.

use std::path::{Path, PathBuf};

use diesel::{Connection, RunQueryDsl, SqliteConnection};

use crate::helpers::TestEnv;

fn sql(db: &Path, statement: &str) {
    let mut conn = SqliteConnection::establish(db.to_str().unwrap()).unwrap();
    diesel::sql_query(statement).execute(&mut conn).unwrap();
}

/// An environment with a few dozen audit rows, and a pristine copy of its database.
fn audited_env() -> (TestEnv, PathBuf, PathBuf) {
    let env = TestEnv::new();
    env.add_clubs(&["a", "b"]);
    env.ok(&["deploy", "v1", "--all"]);
    env.ok(&["deploy", "v2", "--club", "a"]);
    env.ok(&["rollback", "a"]);
    let db = env.data.join("clubdeploy.sqlite3");
    sql(&db, "PRAGMA wal_checkpoint(TRUNCATE)");
    let pristine = env.root.path().join("pristine.sqlite3");
    std::fs::copy(&db, &pristine).unwrap();
    (env, db, pristine)
}

#[test]
fn every_change_is_in_the_audit_log() {
    let (env, _, _) = audited_env();
    let rows: serde_json::Value =
        serde_json::from_str(&env.ok(&["audit", "--json", "--limit", "1000"])).unwrap();
    let actions: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    for expected in [
        "club.added",
        "job.queued",
        "job.started",
        "release.built",
        "club.switched",
        "server.reloaded",
        "job.finished",
    ] {
        assert!(
            actions.contains(&expected),
            "{expected} missing from {actions:?}"
        );
    }
    // The user of the process's uid, whatever $USER says.
    let actor = format!(
        "cli:{}",
        clubdeploy::unix_user::name_of(rustix::process::getuid().as_raw()).unwrap()
    );
    assert!(rows.as_array().unwrap().iter().all(|r| r["actor"] == actor));

    let a: serde_json::Value =
        serde_json::from_str(&env.ok(&["audit", "--json", "--club", "a"])).unwrap();
    let details: Vec<&str> = a
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["details"].as_str().unwrap())
        .collect();
    let (v1, v2) = (env.release_name("v1"), env.release_name("v2"));
    assert_eq!(details.len(), 4, "{details:?}");
    assert!(
        details[0].starts_with(&format!("rollback: from {v2} to {v1}")),
        "{details:?}"
    );
    assert!(
        details[1].starts_with(&format!("deploy: from {v1} to {v2}")),
        "{details:?}"
    );
    assert!(
        details[2].starts_with(&format!("deploy: from no release to {v1}")),
        "{details:?}"
    );
    assert!(details[3].starts_with("added"), "{details:?}");

    let none: serde_json::Value =
        serde_json::from_str(&env.ok(&["audit", "--json", "--actor", "nobody"])).unwrap();
    assert_eq!(none.as_array().unwrap().len(), 0);
    let future: serde_json::Value =
        serde_json::from_str(&env.ok(&["audit", "--json", "--since", "2999-01-01"])).unwrap();
    assert_eq!(future.as_array().unwrap().len(), 0);
    let error = env.fails(&["audit", "--since", "yesterday"]);
    assert!(error.contains("not a date"), "{error}");
}

#[test]
fn audit_verify_passes_on_an_untouched_log() {
    let (env, _, _) = audited_env();
    let out = env.ok(&["audit", "verify"]);
    assert!(out.starts_with("audit log intact: "), "{out}");
}

#[test]
fn audit_verify_names_the_row_that_was_edited_deleted_or_inserted() {
    let (env, db, pristine) = audited_env();
    let middle = 5;
    let last: i64 = {
        let rows: serde_json::Value =
            serde_json::from_str(&env.ok(&["audit", "--json", "--limit", "1"])).unwrap();
        rows[0]["id"].as_i64().unwrap()
    };
    let cases: Vec<(String, String)> = [
        ("at", "'2020-01-01 00:00:00'"),
        ("actor", "'mallory'"),
        ("action", "'club.added'"),
        ("target_kind", "'user'"),
        ("target", "'zzz'"),
        ("details", "'nothing happened'"),
        ("address", "'203.0.113.9'"),
        ("prev_hash", "'00'"),
        ("hash", "'00'"),
    ]
    .iter()
    .map(|(column, value)| {
        (
            format!("UPDATE audit_events SET {column} = {value} WHERE id = {middle}"),
            format!("audit row {middle} does not match its hash"),
        )
    })
    .chain([
        (
            format!("DELETE FROM audit_events WHERE id = {middle}"),
            format!("audit row {middle} is missing"),
        ),
        (
            format!("DELETE FROM audit_events WHERE id = {last}"),
            format!("row {last} was written: the newest rows were deleted"),
        ),
        (
            format!(
                "INSERT INTO audit_events (id, at, actor, action, target_kind, target, details, \
                 prev_hash, hash) VALUES ({}, '2026-01-01 00:00:00', 'mallory', 'club.added', \
                 'club', 'x', 'forged', 'abc', 'def')",
                last + 1
            ),
            format!("audit row {} does not match its hash", last + 1),
        ),
    ])
    .collect();
    for (statement, expected) in cases {
        std::fs::copy(&pristine, &db).unwrap();
        sql(&db, &statement);
        let error = env.fails(&["audit", "verify"]);
        assert!(
            error.contains(&expected),
            "{statement}: expected {expected:?} in {error:?}"
        );
    }
    std::fs::copy(&pristine, &db).unwrap();
    env.ok(&["audit", "verify"]);
}

#[test]
fn the_command_line_is_recorded_as_the_unix_user_of_its_uid_not_user() {
    let env = crate::helpers::TestEnv::new();
    let me = clubdeploy::unix_user::name_of(rustix::process::getuid().as_raw()).unwrap();
    // Adds club `slug` with `set` variables set and `unset` removed.
    let add = |slug: &str, set: &[(&str, &str)], unset: &[&str]| {
        let webroot = env.webroot(slug);
        let mut command =
            env.command(&["club", "add", slug, "--webroot", webroot.to_str().unwrap()]);
        command.envs(set.iter().copied());
        for name in unset {
            command.env_remove(name);
        }
        let out = command.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    add(
        "a",
        &[("USER", "maria"), ("LOGNAME", "maria")],
        &["SUDO_USER"],
    );
    // Under sudo (only root's SUDO_USER counts), the one who ran sudo is named beside it.
    add("b", &[("SUDO_USER", "alice")], &["USER"]);
    let rows: serde_json::Value = serde_json::from_str(&env.ok(&["audit", "--json"])).unwrap();
    let actor_of = |club: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["action"] == "club.added" && r["target"] == club)
            .map(|r| r["actor"].as_str().unwrap().to_owned())
            .unwrap()
    };
    assert_eq!(actor_of("a"), format!("cli:{me}"));
    let expected = if rustix::process::getuid().is_root() {
        "cli:root (sudo by alice)".to_owned()
    } else {
        format!("cli:{me}")
    };
    assert_eq!(actor_of("b"), expected);
}

#[test]
fn audit_verify_fails_when_no_anchor_vouches_for_the_log_or_the_log_was_emptied() {
    let (env, db, pristine) = audited_env();
    let anchors = env.data.join("audit-anchors.log");
    let out = env.ok(&["audit", "verify"]);
    assert!(out.contains("vouches for every row"), "{out}");

    std::fs::remove_file(&anchors).unwrap();
    let error = env.fails(&["audit", "verify"]);
    assert!(
        error.contains("no anchor vouches for any of them"),
        "{error}"
    );
    // A command that writes nothing does not anchor the log again behind verify's back.
    env.ok(&["status"]);
    let error = env.fails(&["audit", "verify"]);
    assert!(
        error.contains("no anchor vouches for any of them"),
        "{error}"
    );

    // Every row and the head gone, and the anchors with them: the jobs still tell.
    std::fs::copy(&pristine, &db).unwrap();
    sql(&db, "DELETE FROM audit_events");
    sql(&db, "DELETE FROM audit_head");
    let error = env.fails(&["audit", "verify"]);
    assert!(error.contains("the audit log is empty, but"), "{error}");
    assert!(error.contains("0 staff and 3 jobs exist"), "{error}");
}
