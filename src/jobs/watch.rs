//! Wakes whoever waits on the database, whichever process wrote to it: the worker when a job
//! is queued (by the panel or by the command line: picked up within a tick, not a poll of
//! seconds), and every open job page when a job event is written (the pages wait on a
//! channel instead of each querying the database four times a second).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::db::{Watcher, jobs};

/// How often the database's change counter is read: one read of shared memory, no query
/// unless something changed.
pub const TICK: Duration = Duration::from_millis(20);

/// Starts watching the database at `path`: `wake` is notified whenever a change leaves a job
/// queued; the returned channel holds the newest job event's id. The watch ends when every
/// receiver of the channel is gone.
pub fn spawn(path: &Path, wake: Arc<Notify>) -> anyhow::Result<watch::Receiver<i32>> {
    let mut watcher = Watcher::open(path)?;
    let (events, receiver) = watch::channel(jobs::last_event_id(watcher.conn())?);
    let mut seen = watcher.version()?;
    std::thread::Builder::new()
        .name("clubdeploy-watch".into())
        .spawn(move || {
            while !events.is_closed() {
                std::thread::sleep(TICK);
                match watcher.version() {
                    Ok(version) if version != seen => seen = version,
                    _ => continue,
                }
                if jobs::any_queued(watcher.conn()).unwrap_or(false) {
                    wake.notify_one();
                }
                if let Ok(last) = jobs::last_event_id(watcher.conn()) {
                    events.send_if_modified(|newest| {
                        let changed = *newest != last;
                        *newest = last;
                        changed
                    });
                }
            }
        })?;
    Ok(receiver)
}
