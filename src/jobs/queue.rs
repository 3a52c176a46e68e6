//! The queue, worked under the deploy lock: claiming the oldest queued job, running it, and
//! recording how it ended (see [`super::recover`] for jobs a dead process left `running`).

use anyhow::Context;

use super::log::JobLog;
use super::run::{self, Job};
use crate::config::Settings;
use crate::db::Conn;
use crate::db::{self, DbPool, audit, audit_anchor, jobs};
use crate::domain::{JobSpec, JobStatus};
use crate::pipeline::lock::DeployLock;

/// How a job that this process ran ended.
#[derive(Debug, Clone)]
pub struct Finished {
    pub id: i32,
    pub status: JobStatus,
}

/// This process, as recorded on the jobs it claims: `<pid>@<host>`.
pub fn worker_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned());
    format!("{}@{host}", std::process::id())
}

/// Claims the oldest queued job and runs it to the end; `None` when none is queued.
/// `on_claim` is told of the job first and says whether to echo its log to the terminal.
pub fn run_next(
    settings: &Settings,
    pool: &DbPool,
    _lock: &DeployLock,
    on_claim: &mut dyn FnMut(&jobs::Job) -> bool,
) -> anyhow::Result<Option<Finished>> {
    let worker = worker_name();
    // The connection that claims the job is given back before the job runs.
    let claimed = pool
        .get()?
        .immediate_transaction(|conn| {
            let job = jobs::claim_oldest(conn, &worker, db::now())?;
            if let Some(job) = &job {
                let details = format!("started by worker {worker}");
                let id = job.id.to_string();
                let entry =
                    audit::Entry::new(&job.requested_by, "job.started", "job", &id, &details);
                let entry = audit::Entry {
                    app: job.app.as_deref(),
                    ..entry
                };
                audit::append(conn, &entry)?;
            }
            Ok::<_, diesel::result::Error>(job)
        })
        .context("cannot claim a job")?;
    let Some(job) = claimed else {
        return Ok(None);
    };
    let echo = on_claim(&job);
    let mut log = JobLog::new(pool, job.id, echo);
    let result = match JobSpec::from_json(&job.params) {
        Ok(spec) if let Err(why) = hosts_allow(settings, &spec) => Err(anyhow::anyhow!(why)),
        Ok(spec) if let Err(why) = requester_may_still_ask(&mut *pool.get()?, &job, &spec)? => {
            Err(anyhow::anyhow!(
                "{} may no longer ask for this job ({why}), so it did not run; nothing was \
                 changed",
                job.requested_by
            ))
        }
        Ok(spec) => {
            let mut run_job = Job::here(settings, pool, &job, &mut log);
            // A job names its application; the configuration may have dropped it since.
            match spec
                .app()
                .map(|name| settings.app(Some(name.as_str())))
                .transpose()
            {
                Err(e) => Err(anyhow::anyhow!("{e}; nothing was changed")),
                Ok(app) => match (&spec, app) {
                    (
                        JobSpec::Deploy {
                            tag,
                            targets,
                            canary,
                            rebuild,
                            ..
                        },
                        Some(app),
                    ) => run::deploy(&mut run_job, app, tag, targets, canary.as_deref(), *rebuild),
                    (JobSpec::Rollback { club, to, .. }, Some(app)) => {
                        run::rollback(&mut run_job, app, club, to.as_deref())
                    }
                    (JobSpec::Prune { .. }, app) => run::prune(&mut run_job, app),
                    (JobSpec::Fetch { .. }, app) => run::fetch(&mut run_job, app),
                    (JobSpec::Adopt { club, tag, .. }, Some(app)) => {
                        run::adopt(&mut run_job, app, club, tag)
                    }
                    (JobSpec::UndoAdopt { club, .. }, Some(app)) => {
                        run::undo_adopt(&mut run_job, app, club)
                    }
                    (JobSpec::PurgeLegacy { club, copy, .. }, Some(app)) => {
                        run::purge_legacy(&mut run_job, app, club, copy)
                    }
                    (JobSpec::PutBack { job, clubs, .. }, Some(app)) => {
                        run::put_back_job(&mut run_job, app, *job, clubs.as_deref())
                    }
                    (_, None) => unreachable!("every other job names its application"),
                },
            }
        }
        Err(e) => Err(e.into()),
    };
    let (status, outcome, error) = match result {
        Ok(summary) => (JobStatus::Succeeded, Some(summary), None),
        Err(e) if e.downcast_ref::<run::Stopped>().is_some() => {
            (JobStatus::Cancelled, None, Some(e.to_string()))
        }
        Err(e) => (
            JobStatus::Failed,
            None,
            Some(format!("{e:#}").replace('\n', " ")),
        ),
    };
    match (&outcome, &error) {
        (Some(summary), _) => {
            log.end_step();
            log.write("outcome", summary, None);
        }
        (_, Some(error)) => log.write("error", error, None),
        _ => {}
    }
    let details = format!(
        "{status}: {}",
        outcome.as_ref().or(error.as_ref()).map_or("", |t| t)
    );
    record_end(
        &mut *pool.get()?,
        &job,
        status,
        outcome.as_deref(),
        error.as_deref(),
        "job.finished",
        &details,
    )?;
    anchor_audit(settings, pool);
    Ok(Some(Finished { id: job.id, status }))
}

/// A job that changes what a club's site serves cannot run while a `[[hosts]]` host is
/// reached over SSH: this version switches links on this machine only. Says so, naming the
/// hosts and what to do; a fetch or a legacy copy's deletion runs as ever.
pub fn hosts_allow(settings: &Settings, spec: &JobSpec) -> Result<(), String> {
    let remote = settings.remote_hosts();
    if remote.is_empty() || spec.switch_scope() == crate::domain::SwitchScope::Nothing {
        return Ok(());
    }
    let names: Vec<&str> = remote.iter().map(|h| h.name.as_str()).collect();
    Err(format!(
        "this version deploys to this machine only, and [[hosts]] names {} reached over SSH: \
         no club was changed on any host; deploying to several web servers is not built yet \
         (remove those hosts, or give them ssh = \"local\", to deploy here)",
        crate::domain::named(&names, 3)
    ))
}

/// Whether the member of staff who queued `job` may still ask for `spec`, by their role and
/// clubs now (`domain::may_ask`); a disabled one may not. A job not queued by a member of
/// staff (the command line's `cli:<user>`, the demo) is not staff's to re-check.
fn requester_may_still_ask(
    conn: &mut db::Conn,
    job: &jobs::Job,
    spec: &JobSpec,
) -> anyhow::Result<Result<(), String>> {
    let Some(user) = crate::db::users::by_name(conn, &job.requested_by)? else {
        return Ok(Ok(()));
    };
    if user.disabled {
        return Ok(Err("their account is disabled".into()));
    }
    let scope = crate::auth::staff::scope_of(&user)?;
    Ok(crate::domain::may_ask(user.role, &scope, spec))
}

/// Anchors the audit chain's head outside the database (at every job end, and every minute from
/// the server). A failure is reported, never fatal: the job has already ended.
pub fn anchor_audit(settings: &Settings, pool: &DbPool) {
    let written = pool
        .get()
        .map_err(anyhow::Error::from)
        .and_then(|mut conn| {
            audit_anchor::write(&mut conn, &settings.anchor_file(), settings.audit.syslog)
        });
    if let Err(e) = written {
        eprintln!("warning: cannot anchor the audit log: {e:#}");
    }
}

/// Ends a job and writes its audit row, in one transaction.
pub(super) fn record_end(
    conn: &mut Conn,
    job: &jobs::Job,
    status: JobStatus,
    outcome: Option<&str>,
    error: Option<&str>,
    action: &str,
    details: &str,
) -> anyhow::Result<()> {
    let id = job.id.to_string();
    conn.immediate_transaction(|conn| {
        jobs::finish(conn, job.id, status, outcome, error, db::now())?;
        let entry = audit::Entry::new(&job.requested_by, action, "job", &id, details);
        let entry = audit::Entry {
            app: job.app.as_deref(),
            ..entry
        };
        audit::append(conn, &entry)
    })
    .context("cannot record how the job ended")
}

/// Takes the deploy lock if it is free, recovers, and runs every queued job. Returns without
/// doing anything when another process holds the lock (it is working the queue).
pub fn drain(settings: &Settings, pool: &DbPool) -> anyhow::Result<Vec<Finished>> {
    let Some(lock) = DeployLock::try_acquire(&settings.lock_path())? else {
        return Ok(Vec::new());
    };
    for message in super::recover::recover(settings, pool, &lock)? {
        eprintln!("recovery: {message}");
    }
    let mut finished = Vec::new();
    while let Some(done) = run_next(settings, pool, &lock, &mut |_| false)? {
        finished.push(done);
    }
    Ok(finished)
}
