//! Recovery of a deploy interrupted while it checked a wave's health: that wave never was
//! proven, so it is put back (or, where failures stay, marked unproven with Put back offered),
//! the release is marked bad for it, and the web server is reloaded after any job that
//! switched a club.

use diesel::prelude::*;
use diesel::sql_types::Text;

use crate::helpers::TestEnv;

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = Text)]
    value: String,
}

/// The releases marked bad for `slug`, and its recorded health and note.
fn bad_and_health(env: &TestEnv, slug: &str) -> (Vec<String>, String) {
    let mut conn =
        SqliteConnection::establish(env.data.join("clubdeploy.sqlite3").to_str().unwrap()).unwrap();
    let bad: Vec<Row> = diesel::sql_query(
        "SELECT b.release AS value FROM bad_releases b JOIN clubs c ON c.id = b.club_id \
         WHERE c.slug = ? ORDER BY 1",
    )
    .bind::<Text, _>(slug)
    .load(&mut conn)
    .unwrap();
    let health: Vec<Row> = diesel::sql_query(
        "SELECT COALESCE(w.health, '') || ': ' || COALESCE(w.health_note, '') AS value \
         FROM webroots w JOIN clubs c ON c.id = w.club_id WHERE c.slug = ?",
    )
    .bind::<Text, _>(slug)
    .load(&mut conn)
    .unwrap();
    (
        bad.into_iter().map(|r| r.value).collect(),
        health
            .into_iter()
            .next()
            .map(|r| r.value)
            .unwrap_or_default(),
    )
}

/// Four clubs on v1; v2 to all with the canary `a` first, then waves of two: the process dies
/// as the second wave (b, c)'s health check starts. Then any command recovers.
fn interrupted_in_the_second_wave(on_failure: &str) -> TestEnv {
    let mut env = TestEnv::new();
    env.config.tables.push((
        "health".into(),
        vec![format!("on_failure = {on_failure:?}")],
    ));
    env.config
        .tables
        .push(("rollout".into(), vec!["batch_size = 2".into()]));
    env.configure();
    env.add_clubs(&["a", "b", "c", "d"]);
    env.ok(&["deploy", "v1", "--all"]);
    env.crash_at(
        &["deploy", "v2", "--all", "--canary", "a"],
        "health:check-2",
    );
    for slug in ["a", "b", "c"] {
        assert_eq!(env.release_of(slug), env.release_name("v2"), "{slug}");
    }
    let reloads_before = env.events().iter().filter(|e| *e == "reload").count();
    env.ok(&["status"]);
    let reloads = env.events().iter().filter(|e| *e == "reload").count();
    assert!(
        reloads > reloads_before,
        "recovery reloaded after the job that switched clubs: {:?}",
        env.events()
    );
    env
}

#[test]
fn a_wave_interrupted_in_its_health_check_is_put_back_and_the_release_marked_bad_for_it() {
    let env = interrupted_in_the_second_wave("rollback");
    let (v1, v2) = (env.release_name("v1"), env.release_name("v2"));
    // The canary was proven before the crash: it stays. The wave under test goes back; the
    // wave not reached was never touched.
    assert_eq!(env.release_of("a"), v2);
    for slug in ["b", "c", "d"] {
        assert_eq!(env.release_of(slug), v1, "{slug}");
    }
    for slug in ["b", "c"] {
        assert_eq!(bad_and_health(&env, slug).0, [v2.as_str()], "{slug}");
    }
    assert!(bad_and_health(&env, "a").0.is_empty());
    assert!(bad_and_health(&env, "d").0.is_empty());
    let job: serde_json::Value = serde_json::from_str(&env.ok(&["job", "2", "--json"])).unwrap();
    assert_eq!(job["status"], "interrupted", "{job}");
    let error = job["error"].as_str().unwrap();
    assert!(
        error.contains(&format!(
            "b, c were switched to {v2} and never proven (the process stopped during the \
             health check) and were put back on {v1}"
        )),
        "{error}"
    );
    assert!(error.contains("1 of 4 clubs was switched to v2"), "{error}");
}

#[test]
fn where_failures_stay_an_interrupted_wave_is_marked_unproven_and_offered_to_put_back() {
    let env = interrupted_in_the_second_wave("stop");
    let (v1, v2) = (env.release_name("v1"), env.release_name("v2"));
    for slug in ["a", "b", "c"] {
        assert_eq!(env.release_of(slug), v2, "{slug}");
    }
    assert_eq!(env.release_of("d"), v1);
    for slug in ["b", "c"] {
        let (bad, health) = bad_and_health(&env, slug);
        assert_eq!(bad, [v2.as_str()], "{slug}");
        assert!(
            health.starts_with(&format!(
                "unchecked: switched to {v2}, never proven: job #2"
            )),
            "{slug}: {health}"
        );
    }
    assert!(bad_and_health(&env, "a").0.is_empty());
    let job: serde_json::Value = serde_json::from_str(&env.ok(&["job", "2", "--json"])).unwrap();
    let error = job["error"].as_str().unwrap();
    assert!(
        error.contains(
            "left on it, marked unproven and the release bad for them; Put back undoes it"
        ),
        "{error}"
    );
    let audit = env.ok(&["audit", "--json"]);
    assert_eq!(audit.matches("club.unproven").count(), 2, "{audit}");
}
