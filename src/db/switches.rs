//! The `switches` history and the `bad_releases` marks, per club and application.

use std::collections::{HashMap, HashSet};

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::{bad_releases, switches, webroots};

/// One club's webroot switched from one release to another.
#[derive(Debug, Clone, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = switches)]
pub struct Switch {
    pub id: i32,
    pub club_id: i32,
    pub app: String,
    pub from_release: Option<String>,
    pub to_release: String,
    pub commit_id: String,
    pub kind: String,
    pub actor: String,
    pub switched_at: NaiveDateTime,
}

/// A switch to record.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = switches)]
pub struct NewSwitch {
    pub club_id: i32,
    pub app: String,
    pub from_release: Option<String>,
    pub to_release: String,
    pub commit_id: String,
    pub kind: String,
    pub actor: String,
    pub switched_at: NaiveDateTime,
    /// The job that made the switch.
    pub job_id: Option<i32>,
}

/// The switches job `job_id` made, oldest first.
pub fn of_job(conn: &mut SqliteConnection, job_id: i32) -> QueryResult<Vec<Switch>> {
    switches::table
        .filter(switches::job_id.eq(job_id))
        .order(switches::id)
        .select(Switch::as_select())
        .load(conn)
}

/// A release a rollback left: marked bad for that club and application.
#[derive(Debug, Clone)]
pub struct BadMark {
    pub club_id: i32,
    pub app: String,
    pub release: String,
}

/// A club and application: the key of everything per webroot.
pub type ClubAppKey = (i32, String);

/// Records switches, the webroots' new current release, the releases a rollback left (marked
/// bad for that club and application) and the audit rows telling of it, all in one
/// transaction.
pub fn record(
    conn: &mut SqliteConnection,
    done: &[NewSwitch],
    rolled_back_from: &[BadMark],
    audit_entries: &[super::audit::Entry<'_>],
) -> QueryResult<()> {
    conn.immediate_transaction(|conn| {
        for entry in audit_entries {
            super::audit::append(conn, entry)?;
        }
        let now = super::now();
        for mark in rolled_back_from {
            mark_bad(conn, mark, now)?;
        }
        for switch in done {
            diesel::insert_into(switches::table)
                .values(switch)
                .execute(conn)?;
            diesel::update(
                webroots::table
                    .filter(webroots::club_id.eq(switch.club_id))
                    .filter(webroots::app.eq(&switch.app)),
            )
            .set(webroots::current_release.eq(&switch.to_release))
            .execute(conn)?;
            // Deploying a release to a club on purpose lifts its "bad" mark there.
            diesel::delete(
                bad_releases::table
                    .filter(bad_releases::club_id.eq(switch.club_id))
                    .filter(bad_releases::app.eq(&switch.app))
                    .filter(bad_releases::release.eq(&switch.to_release)),
            )
            .execute(conn)?;
        }
        Ok(())
    })
}

/// A club's switches of one application, newest first.
pub fn history(conn: &mut SqliteConnection, club_id: i32, app: &str) -> QueryResult<Vec<Switch>> {
    switches::table
        .filter(switches::club_id.eq(club_id))
        .filter(switches::app.eq(app))
        .order(switches::id.desc())
        .select(Switch::as_select())
        .load(conn)
}

/// The switch to the release a club's webroot of `app` would roll back to: the newest in its
/// history that is not `current` and was not rolled back from (marked bad).
pub fn previous(
    conn: &mut SqliteConnection,
    club_id: i32,
    app: &str,
    current: &str,
) -> QueryResult<Option<Switch>> {
    let bad = bad_for(conn, club_id, app)?;
    Ok(history(conn, club_id, app)?
        .into_iter()
        .find(|s| s.to_release != current && !bad.contains(&s.to_release)))
}

/// The commit a release of `app` was built from, from any club's history.
pub fn commit_of(
    conn: &mut SqliteConnection,
    app: &str,
    release: &str,
) -> QueryResult<Option<String>> {
    switches::table
        .filter(switches::app.eq(app))
        .filter(switches::to_release.eq(release))
        .select(switches::commit_id)
        .first(conn)
        .optional()
}

/// When any club's webroot of `app` was last switched.
pub fn last_switched_at(
    conn: &mut SqliteConnection,
    app: &str,
) -> QueryResult<Option<NaiveDateTime>> {
    switches::table
        .filter(switches::app.eq(app))
        .select(diesel::dsl::max(switches::switched_at))
        .first(conn)
}

/// Marks a release as bad for a club's application, so "previous" skips it.
fn mark_bad(conn: &mut SqliteConnection, mark: &BadMark, at: NaiveDateTime) -> QueryResult<()> {
    diesel::insert_into(bad_releases::table)
        .values((
            bad_releases::club_id.eq(mark.club_id),
            bad_releases::app.eq(&mark.app),
            bad_releases::release.eq(&mark.release),
            bad_releases::marked_at.eq(at),
        ))
        .on_conflict_do_nothing()
        .execute(conn)?;
    Ok(())
}

/// The releases of `app` marked bad for a club.
pub fn bad_for(
    conn: &mut SqliteConnection,
    club_id: i32,
    app: &str,
) -> QueryResult<HashSet<String>> {
    Ok(bad_releases::table
        .filter(bad_releases::club_id.eq(club_id))
        .filter(bad_releases::app.eq(app))
        .select(bad_releases::release)
        .load::<String>(conn)?
        .into_iter()
        .collect())
}

/// Each club's newest switch per application (when it got its current release, and from
/// whom).
pub fn latest_per_club(conn: &mut SqliteConnection) -> QueryResult<HashMap<ClubAppKey, Switch>> {
    let rows: Vec<Switch> = diesel::sql_query(
        "SELECT * FROM switches WHERE id IN \
         (SELECT MAX(id) FROM switches GROUP BY club_id, app)",
    )
    .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|s| ((s.club_id, s.app.clone()), s))
        .collect())
}

/// Each club's rollback target per application as the database knows it: the newest release
/// in its history that it does not run now and was not rolled back from. (A rollback job
/// checks the disk.)
pub fn rollback_targets(conn: &mut SqliteConnection) -> QueryResult<HashMap<ClubAppKey, String>> {
    let rows: Vec<Switch> = diesel::sql_query(
        "SELECT * FROM switches WHERE id IN ( \
           SELECT MAX(s.id) FROM switches s \
           JOIN webroots w ON w.club_id = s.club_id AND w.app = s.app \
           WHERE (w.current_release IS NULL OR s.to_release <> w.current_release) \
             AND NOT EXISTS (SELECT 1 FROM bad_releases b \
                             WHERE b.club_id = s.club_id AND b.app = s.app \
                               AND b.release = s.to_release) \
           GROUP BY s.club_id, s.app)",
    )
    .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|s| ((s.club_id, s.app), s.to_release))
        .collect())
}
