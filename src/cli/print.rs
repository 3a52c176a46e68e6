//! What the command line prints: job progress on the terminal, tables, and JSON.

use std::time::Duration;

use anyhow::Context;
use serde::Serialize;

use crate::config::Settings;
use crate::db::{DbPool, jobs};
use crate::domain::JobStatus;
use crate::jobs::log::format_event;
use crate::jobs::queue;
use crate::pipeline::lock::DeployLock;
use crate::service::inventory::{ClubStatus, ReleaseRow};

/// Writes to standard output. A reader that went away (`clubdeploy club list | head`) is not
/// an error: the rest of the output is dropped and the command still finishes its work, as a
/// deploy must once it has started.
///
/// Control characters other than newline and tab (a stored club name, a job's command output
/// or an audit row holding `\x1b[2J`) are written as visible escapes, never raw, so nothing
/// stored can drive the operator's terminal.
pub fn write_out(text: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let text = text.to_string();
    let text = visible(&text);
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush())
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("warning: cannot write to standard output: {e}");
    }
}

/// `text` with control characters other than `\n` and `\t` escaped (`\x1b`, `\r`, `\u{9b}`).
pub fn visible(text: &str) -> std::borrow::Cow<'_, str> {
    if !text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' | '\t' => shown.push(c),
            '\r' => shown.push_str("\\r"),
            c if c.is_control() && (c as u32) < 0x80 => {
                shown.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => shown.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => shown.push(c),
        }
    }
    std::borrow::Cow::Owned(shown)
}

/// `println!` for the command line's output, through [`write_out`].
#[macro_export]
macro_rules! say {
    () => {
        $crate::cli::write_out(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::write_out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` for the command line's output, through [`write_out`].
#[macro_export]
macro_rules! say_part {
    ($($arg:tt)*) => {
        $crate::cli::write_out(format_args!($($arg)*))
    };
}

/// The actor recorded for the command line: `cli:<unix user>`, the user of the process's
/// real uid as the system names it (not `$USER`, which anyone can set and systemd does not);
/// under sudo, `cli:root (sudo by <SUDO_USER>)`, the one who ran sudo beside it.
pub fn actor() -> String {
    let uid = rustix::process::getuid().as_raw();
    let name = crate::unix_user::name_of(uid).unwrap_or_else(|| format!("uid {uid}"));
    let by = std::env::var("SUDO_USER")
        .ok()
        .filter(|s| crate::unix_user::plain_name(s) && uid == 0);
    match by {
        Some(by) => format!("cli:{name} (sudo by {by})"),
        None => format!("cli:{name}"),
    }
}

/// Prints `value` as pretty JSON.
pub fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    crate::say!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Prints clubs as a table: slug (and application, when `apps`), release on disk, and what
/// is wrong, if anything.
pub fn print_clubs(clubs: &[ClubStatus], apps: bool) {
    if clubs.is_empty() {
        crate::say!("no clubs yet; add one with `clubdeploy club add`");
        return;
    }
    let width = clubs.iter().map(|c| c.slug.len()).max().unwrap_or(4).max(4);
    let app_width = if apps {
        clubs.iter().map(|c| c.app.len()).max().unwrap_or(3).max(3) + 2
    } else {
        0
    };
    let app_of = |club: &ClubStatus| {
        if apps {
            club.app.clone()
        } else {
            String::new()
        }
    };
    let app_heading = if apps { "APP" } else { "" };
    crate::say!(
        "{:width$}  {app_heading:app_width$}{:28}  WEBROOT",
        "CLUB",
        "RELEASE (ON DISK)"
    );
    for club in clubs {
        let release = club.release.as_deref().unwrap_or("-");
        let mut notes = Vec::new();
        if let Some(problem) = &club.problem {
            notes.push(problem.clone());
        }
        if club.drift {
            notes.push(format!(
                "DRIFT: the database recorded {}",
                club.recorded_release.as_deref().unwrap_or("no release")
            ));
        }
        let notes = if notes.is_empty() {
            String::new()
        } else {
            format!("  ({})", notes.join("; "))
        };
        crate::say!(
            "{:width$}  {:app_width$}{release:28}  {}{notes}",
            club.slug,
            app_of(club),
            club.webroot
        );
    }
}

/// Prints OPcache's figures, the cached scripts per release and the warnings.
pub fn print_opcache(insight: &crate::service::opcache::Insight) {
    use crate::service::opcache::mb;
    crate::say!(
        "memory: {} used, {} free, {} wasted",
        mb(insight.used_memory),
        mb(insight.free_memory),
        mb(insight.wasted_memory)
    );
    crate::say!(
        "scripts: {} cached of at most {}; hit rate {:.1} %; restarts: {} out of memory, {} \
         hash table full",
        insight.cached_scripts,
        insight.max_cached_keys,
        insight.hit_rate,
        insight.oom_restarts,
        insight.hash_restarts
    );
    let name_of = |release: &crate::service::opcache::CachedRelease| {
        if release.dir.is_empty() {
            "(outside any release)".to_owned()
        } else {
            release.name.clone()
        }
    };
    // Columns as wide as their longest entry: long tag names stay aligned.
    let width = insight
        .releases
        .iter()
        .map(|r| name_of(r).len())
        .max()
        .unwrap_or(0)
        .max(7);
    let app_width = insight
        .releases
        .iter()
        .map(|r| r.app.len())
        .max()
        .unwrap_or(0)
        .max(3);
    crate::say!(
        "{:app_width$}  {:width$}  {:>8}  {:>9}  CLUB RUNS IT",
        "APP",
        "RELEASE",
        "SCRIPTS",
        "MEMORY"
    );
    for release in &insight.releases {
        let runs = match (release.dir.is_empty(), release.in_use) {
            (true, _) => "",
            (false, true) => "yes",
            (false, false) => "no (dead until a reload)",
        };
        crate::say!(
            "{:app_width$}  {:width$}  {:>8}  {:>9}  {runs}",
            release.app,
            visible(&name_of(release)),
            release.scripts,
            mb(release.memory)
        );
    }
    for warning in &insight.warnings {
        crate::say!("warning: {warning}");
    }
}

/// Prints releases as a table: name, built or not, and the clubs that run each.
pub fn print_releases(
    rows: &[ReleaseRow],
    app: &str,
    skipped: &[crate::pipeline::git::SkippedTag],
) {
    if rows.is_empty() {
        crate::say!("no tags known yet; fetch them with `clubdeploy releases --fetch`");
    } else {
        // Columns as wide as their longest entry: long tag names stay aligned.
        let name = rows.iter().map(|r| r.name.len()).max().unwrap_or(0).max(7);
        let app_width = app.len().max(3);
        crate::say!(
            "{:app_width$}  {:name$}  {:9}  CLUBS",
            "APP",
            "RELEASE",
            "BUILT"
        );
        for row in rows {
            let built = if row.built { "built" } else { "not built" };
            crate::say!(
                "{app:app_width$}  {:name$}  {built:9}  {}",
                row.name,
                row.clubs.join(", ")
            );
        }
    }
    if let Some(words) = crate::pipeline::git::skipped_in_words(skipped) {
        crate::say!("{}", visible(&words));
    }
}

/// A deploy's waves as the dry run says them, like the panel's confirmation: the canaries
/// first, then each batch; nothing when the clubs go at once.
pub fn waves_in_words(waves: &[crate::domain::rollout::Wave<&ClubStatus>]) -> String {
    let slugs = |w: &crate::domain::rollout::Wave<&ClubStatus>| {
        w.clubs
            .iter()
            .map(|c| c.slug.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut text = String::new();
    if let Some(first) = waves.first().filter(|w| w.canary) {
        text.push_str(&format!(
            "\nFirst on {}: the other clubs follow only once these are proven healthy on the \
             new release.\n",
            slugs(first)
        ));
    }
    if waves.len() > 1 {
        text.push('\n');
        for (n, wave) in waves.iter().enumerate() {
            text.push_str(&format!(
                "wave {} of {}{}: {}\n",
                n + 1,
                waves.len(),
                if wave.canary { " (canary)" } else { "" },
                slugs(wave)
            ));
        }
    }
    text
}

/// The job that holds the deploy lock, in words: what it does and who asked; `None` while
/// the process holding the lock has not started one.
fn holder(conn: &mut crate::db::Conn) -> anyhow::Result<Option<String>> {
    let running = jobs::with_status(conn, JobStatus::Running)?;
    let names = crate::db::clubs::names(conn)?;
    Ok(running.first().map(|job| {
        format!(
            "job #{} is running ({}, asked by {})",
            job.id,
            job.title(&names),
            job.requested_by
        )
    }))
}

/// Works the queue (under the deploy lock, when free) until job `job_id` has finished,
/// printing (when `echo`) that job's log as it is written, whoever runs it. Jobs queued
/// before it run first. Returns the finished job.
pub fn work_until_finished(
    settings: &Settings,
    pool: &DbPool,
    job_id: i32,
    echo: bool,
) -> anyhow::Result<jobs::Job> {
    let mut printed = 0;
    let mut said_waiting = false;
    let mut waiting_since = None;
    loop {
        let conn = &mut pool.get()?;
        for event in jobs::events_after(conn, job_id, printed)? {
            if echo {
                crate::say_part!(
                    "{}",
                    format_event(&event.kind, &event.message, event.output.as_deref())
                );
            }
            printed = event.id;
        }
        let job =
            jobs::by_id(conn, job_id)?.with_context(|| format!("job #{job_id} has disappeared"))?;
        if job.status.is_finished() {
            return Ok(job);
        }
        let Some(lock) = DeployLock::try_acquire(&settings.lock_path())? else {
            if !said_waiting && echo {
                // The holder marks its job running a moment after it takes the lock: name it
                // once it does (or say who holds the lock after a while).
                let held = holder(conn)?;
                let waited = *waiting_since.get_or_insert_with(std::time::Instant::now);
                if held.is_some() || waited.elapsed() > Duration::from_secs(2) {
                    let who = held.unwrap_or_else(|| {
                        "another clubdeploy process holds the deploy lock".to_owned()
                    });
                    crate::say!("{}; waiting for it to finish…", visible(&who));
                    said_waiting = true;
                }
            }
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        for message in crate::jobs::recover::recover(settings, pool, &lock)? {
            crate::say!("recovery: {message}");
        }
        let mut own = |job: &jobs::Job| {
            if job.id != job_id && echo {
                crate::say!(
                    "running job #{} first ({} by {})",
                    job.id,
                    job.kind,
                    job.requested_by
                );
            }
            job.id == job_id && echo
        };
        while let Some(done) = queue::run_next(settings, pool, &lock, &mut own)? {
            if done.id == job_id {
                // Its log was echoed as it was written.
                if let Some(last) = jobs::events_after(conn, job_id, printed)?.last() {
                    printed = last.id;
                }
                break;
            }
        }
    }
}

/// Recovers an interrupted job when no other process holds the deploy lock (so every
/// command, not only those that deploy, leaves a crashed deploy cleaned up).
pub fn recover_if_idle(settings: &Settings, pool: &DbPool) -> anyhow::Result<()> {
    if let Some(lock) = DeployLock::try_acquire(&settings.lock_path())? {
        for message in crate::jobs::recover::recover(settings, pool, &lock)? {
            eprintln!("recovery: {message}");
        }
    }
    Ok(())
}

/// A job as `jobs --json` and `job --json` print it.
#[derive(Debug, Serialize)]
pub struct JobView<'a> {
    pub id: i32,
    pub kind: &'a str,
    pub params: serde_json::Value,
    pub requested_by: &'a str,
    pub status: &'a str,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub worker: Option<&'a str>,
    pub outcome: Option<&'a str>,
    pub error: Option<&'a str>,
    /// The application the job concerns (`None`: every application).
    pub app: Option<&'a str>,
}

impl<'a> From<&'a jobs::Job> for JobView<'a> {
    fn from(job: &'a jobs::Job) -> Self {
        JobView {
            id: job.id,
            kind: job.kind.as_str(),
            params: serde_json::from_str(&job.params).unwrap_or(serde_json::Value::Null),
            requested_by: &job.requested_by,
            status: job.status.as_str(),
            created_at: time(job.created_at),
            started_at: job.started_at.map(time),
            finished_at: job.finished_at.map(time),
            worker: job.worker.as_deref(),
            outcome: job.outcome.as_deref(),
            error: job.error.as_deref(),
            app: job.app.as_deref(),
        }
    }
}

/// A job with its log, for `job <id> --json`.
#[derive(Debug, Serialize)]
pub struct JobDetail<'a> {
    #[serde(flatten)]
    pub job: JobView<'a>,
    pub events: Vec<EventView<'a>>,
}

/// One log line of a job.
#[derive(Debug, Serialize)]
pub struct EventView<'a> {
    pub at: String,
    pub step: Option<&'a str>,
    pub kind: &'a str,
    pub message: &'a str,
    pub output: Option<&'a str>,
}

impl<'a> JobDetail<'a> {
    /// The job and its events.
    pub fn new(job: &'a jobs::Job, events: &'a [jobs::JobEvent]) -> JobDetail<'a> {
        JobDetail {
            job: JobView::from(job),
            events: events
                .iter()
                .map(|e| EventView {
                    at: time(e.at),
                    step: e.step.as_deref(),
                    kind: &e.kind,
                    message: &e.message,
                    output: e.output.as_deref(),
                })
                .collect(),
        }
    }
}

fn time(at: chrono::NaiveDateTime) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// Prints jobs as a table, newest first.
pub fn print_jobs(list: &[jobs::Job]) {
    if list.is_empty() {
        crate::say!("no jobs yet");
        return;
    }
    crate::say!(
        "{:>5}  {:11}  {:23}  {:16}  WHAT",
        "JOB",
        "STATUS",
        "QUEUED",
        "BY"
    );
    for job in list {
        let what = job
            .outcome
            .as_deref()
            .or(job.error.as_deref())
            .map_or_else(|| describe(job), str::to_owned);
        crate::say!(
            "{:>5}  {:11}  {:23}  {:16}  {what}",
            format!("#{}", job.id),
            job.status,
            time(job.created_at),
            job.requested_by
        );
    }
}

/// A job in words, clubs by short name (as the command line takes them).
fn describe(job: &jobs::Job) -> String {
    job.title(&crate::domain::ClubNames::default())
}

/// Prints one job and its log.
pub fn print_job(job: &jobs::Job, events: &[jobs::JobEvent]) {
    crate::say!("job #{}: {}", job.id, describe(job));
    crate::say!("  status:       {}", job.status);
    crate::say!("  requested by: {}", job.requested_by);
    crate::say!("  queued:       {}", time(job.created_at));
    if let Some(at) = job.started_at {
        crate::say!("  started:      {}", time(at));
    }
    if let Some(at) = job.finished_at {
        crate::say!("  finished:     {}", time(at));
    }
    if let Some(outcome) = &job.outcome {
        crate::say!("  outcome:      {outcome}");
    }
    if let Some(error) = &job.error {
        crate::say!("  error:        {error}");
    }
    crate::say!();
    for event in events {
        crate::say_part!(
            "{}",
            format_event(&event.kind, &event.message, event.output.as_deref())
        );
    }
}

/// Prints audit rows, newest first.
pub fn print_audit(rows: &[crate::db::audit::AuditEvent]) {
    if rows.is_empty() {
        crate::say!("no audit events match");
        return;
    }
    for row in rows {
        let address = row
            .address
            .as_deref()
            .map(|a| format!(" from {a}"))
            .unwrap_or_default();
        crate::say!(
            "#{:<6} {}  {}{address}  {}  {} {}: {}",
            row.id,
            time(row.at),
            row.actor,
            row.action,
            row.target_kind,
            row.target,
            row.details
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_are_shown_not_sent_to_the_terminal() {
        assert_eq!(super::visible("plain\ttext\n"), "plain\ttext\n");
        assert_eq!(
            super::visible("a\u{1b}[2Jb\rc\u{9b}d\u{7}"),
            "a\\x1b[2Jb\\rc\\u{9b}d\\x07"
        );
    }
}
