//! The server's worker: works the queue whenever a job is queued in this process (woken by a
//! `Notify`) and every few seconds for jobs queued by another process (the command line).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::queue;
use crate::config::Settings;
use crate::db::DbPool;

/// How often the worker looks for jobs queued by another process.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// How often the server anchors the audit chain even when no job ends (a change made in the
/// panel, a sign-in): an anchor is written only when the log grew since the last one.
pub const ANCHOR_INTERVAL: Duration = Duration::from_secs(60);

/// How often the server removes expired sessions, old form tokens and old jobs' log lines.
pub const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(3600);

/// One pass of housekeeping (`db::housekeeping::prune`); a failure is reported, never fatal.
pub fn housekeeping(settings: &Settings, pool: &DbPool) {
    let pruned = pool
        .get()
        .map_err(anyhow::Error::from)
        .and_then(|mut conn| {
            Ok(crate::db::housekeeping::prune(
                &mut conn,
                crate::db::now(),
                settings.session_timeouts(),
                settings.jobs.keep_days,
            )?)
        });
    match pruned {
        Ok(pruned) if pruned.is_empty() => {}
        Ok(pruned) => eprintln!(
            "housekeeping: removed {} expired sessions, {} old form tokens, {} log lines of \
             jobs ended over {} days ago",
            pruned.sessions, pruned.form_tokens, pruned.job_events, settings.jobs.keep_days
        ),
        Err(e) => eprintln!("warning: housekeeping failed: {e:#}"),
    }
}

/// Something the server does now and then besides jobs.
type Chore = fn(&Settings, &DbPool);

/// Works the queue forever: right away (which also recovers an interrupted job), then each
/// time `wake` is notified or `poll` has passed. Jobs run on the blocking thread pool.
pub async fn run(settings: Arc<Settings>, pool: DbPool, wake: Arc<Notify>, poll: Duration) {
    // What the server does now and then besides jobs: each when it has not for its interval.
    let chores: [(Duration, Chore); 2] = [
        (HOUSEKEEPING_INTERVAL, housekeeping),
        (ANCHOR_INTERVAL, queue::anchor_audit),
    ];
    let mut done_at: [Option<std::time::Instant>; 2] = [None; 2];
    loop {
        for ((every, chore), at) in chores.iter().zip(&mut done_at) {
            if at.is_none_or(|at| at.elapsed() >= *every) {
                let (settings, pool, chore) = (settings.clone(), pool.clone(), *chore);
                let _ = tokio::task::spawn_blocking(move || chore(&settings, &pool)).await;
                *at = Some(std::time::Instant::now());
            }
        }
        let (settings, pool) = (settings.clone(), pool.clone());
        match tokio::task::spawn_blocking(move || queue::drain(&settings, &pool)).await {
            Ok(Ok(finished)) => {
                for job in finished {
                    eprintln!("job #{} {}", job.id, job.status);
                }
            }
            Ok(Err(e)) => eprintln!("worker: {e:#}"),
            Err(e) => eprintln!("worker: a job panicked: {e}"),
        }
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(poll) => {}
        }
    }
}
