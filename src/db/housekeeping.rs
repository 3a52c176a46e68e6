//! What the database keeps only for a while: sessions past their timeouts, the one-time
//! tokens of forms sent long ago, and the log lines of jobs that ended more than `[jobs]
//! keep_days` ago. The jobs themselves, the switches and the audit log are kept for good.

use chrono::{Duration, NaiveDateTime};
use diesel::prelude::*;

use super::Conn;
use super::schema::{form_tokens, job_events, jobs, sessions};
use crate::config::SessionTimeouts;

/// How long a form's one-time token stands for the job it queued: a form sent again later
/// than this (Back and resend after a week) is a new request.
pub const FORM_TOKEN_DAYS: i64 = 7;

/// Rows deleted in one statement, so a long backlog never holds the write lock for long.
const BATCH: i64 = 5_000;

/// What one pass removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub sessions: usize,
    pub form_tokens: usize,
    pub job_events: usize,
}

impl Pruned {
    /// Whether nothing was removed.
    pub fn is_empty(&self) -> bool {
        *self == Pruned::default()
    }
}

/// Removes, as of `now`: sessions idle or older than `timeouts` allow (they could not be
/// used any more), form tokens older than [`FORM_TOKEN_DAYS`], and the log lines of jobs
/// that finished more than `keep_days` days ago.
pub fn prune(
    conn: &mut Conn,
    now: NaiveDateTime,
    timeouts: SessionTimeouts,
    keep_days: u32,
) -> QueryResult<Pruned> {
    let seconds = |s: u64| Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX / 1000));
    let sessions = diesel::delete(
        sessions::table.filter(
            sessions::last_seen_at
                .lt(now - seconds(timeouts.idle_secs))
                .or(sessions::created_at.lt(now - seconds(timeouts.absolute_secs))),
        ),
    )
    .execute(conn)?;
    let form_tokens = diesel::delete(
        form_tokens::table
            .filter(form_tokens::created_at.lt(now - Duration::days(FORM_TOKEN_DAYS))),
    )
    .execute(conn)?;
    let ended_before = now - Duration::days(i64::from(keep_days));
    let mut job_events = 0;
    loop {
        let old = job_events::table
            .inner_join(jobs::table)
            .filter(jobs::finished_at.lt(ended_before))
            .select(job_events::id)
            .limit(BATCH)
            .load::<i32>(conn)?;
        if old.is_empty() {
            break;
        }
        job_events +=
            diesel::delete(job_events::table.filter(job_events::id.eq_any(&old))).execute(conn)?;
    }
    Ok(Pruned {
        sessions,
        form_tokens,
        job_events,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(days_ago: i64, now: NaiveDateTime) -> String {
        (now - Duration::days(days_ago))
            .format("%Y-%m-%d %H:%M:%S")
            .to_string()
    }

    #[test]
    fn only_what_can_no_longer_be_used_or_is_past_keeping_goes() {
        let dir = tempfile::tempdir().unwrap();
        let pool = super::super::open(&dir.path().join("clubdeploy.sqlite3")).unwrap();
        let conn = &mut pool.get().unwrap();
        let now = super::super::now();
        let sql = |conn: &mut Conn, statement: String| {
            diesel::sql_query(statement).execute(conn).unwrap();
        };
        sql(
            conn,
            format!(
                "INSERT INTO users (id, name, password_hash, role, created_at) VALUES (1, 'ana', '', 'admin', '{}')",
                at(0, now)
            ),
        );
        // Sessions: fresh; idle for two days; signed in a week ago but used just now.
        for (id, created, seen) in [(1, 0, 0), (2, 2, 2), (3, 7, 0)] {
            sql(
                conn,
                format!(
                    "INSERT INTO sessions (id, token_hash, user_id, csrf_token, created_at, last_seen_at) \
                 VALUES ({id}, 'h{id}', 1, 'c', '{}', '{}')",
                    at(created, now),
                    at(seen, now)
                ),
            );
        }
        sql(
            conn,
            "INSERT INTO flashes (session_id, message) VALUES (2, 'hi')".into(),
        );
        // Jobs: ended 400 days ago, 300 days ago, and one still queued from long ago.
        for (id, finished) in [(1, Some(400)), (2, Some(300)), (3, None)] {
            let finished = finished.map_or("NULL".into(), |d| format!("'{}'", at(d, now)));
            sql(
                conn,
                format!(
                    "INSERT INTO jobs (id, kind, params, requested_by, status, created_at, finished_at) \
                 VALUES ({id}, 'deploy', '{{}}', 'ana', 'succeeded', '{}', {finished})",
                    at(500, now)
                ),
            );
            for _ in 0..3 {
                sql(
                    conn,
                    format!(
                        "INSERT INTO job_events (job_id, at, kind, message) VALUES ({id}, '{}', 'step', 'fetch')",
                        at(500, now)
                    ),
                );
            }
            sql(
                conn,
                format!(
                    "INSERT INTO form_tokens (token, job_id, created_at) VALUES ('t{id}', {id}, '{}')",
                    at(if id == 1 { 8 } else { 1 }, now)
                ),
            );
        }
        let timeouts = SessionTimeouts {
            idle_secs: 24 * 3600,
            absolute_secs: 30 * 24 * 3600,
        };
        let pruned = prune(conn, now, timeouts, 365).unwrap();
        assert_eq!(
            pruned,
            Pruned {
                sessions: 1,
                form_tokens: 1,
                job_events: 3
            }
        );
        let left: Vec<i32> = sessions::table
            .select(sessions::id)
            .order(sessions::id)
            .load(conn)
            .unwrap();
        assert_eq!(left, [1, 3]);
        let events: Vec<i32> = job_events::table
            .select(job_events::job_id)
            .distinct()
            .order(job_events::job_id)
            .load(conn)
            .unwrap();
        assert_eq!(events, [2, 3]);
        let jobs_left: i64 = jobs::table.count().get_result(conn).unwrap();
        assert_eq!(jobs_left, 3, "jobs are history: kept");
        // A shorter absolute limit ends the week-old session too; a second pass finds nothing.
        let shorter = SessionTimeouts {
            absolute_secs: 3 * 24 * 3600,
            ..timeouts
        };
        assert_eq!(prune(conn, now, shorter, 365).unwrap().sessions, 1);
        assert!(prune(conn, now, shorter, 365).unwrap().is_empty());
    }
}
