//! Queuing a job: the job row and its audit row are written in one transaction.

use anyhow::Context;

use crate::db::Conn;
use crate::db::{self, audit, clubs, jobs};
use crate::domain::{ClubSlug, JobSpec, JobStatus, Refusal, Targets};

/// Queues `spec` on behalf of `actor` (from `address`, where there is one); returns its id.
/// A job naming a club that does not exist is refused before anything is written.
pub fn enqueue(
    conn: &mut Conn,
    spec: &JobSpec,
    actor: &str,
    address: Option<&str>,
) -> anyhow::Result<i32> {
    enqueue_limited(conn, spec, actor, address, None)
}

/// [`enqueue_limited`] for a form carrying the one-time token `once`: the first submission
/// queues the job; any later one (a double click, Back and resend) queues nothing and gets
/// the job the first one queued. Returns the job's id and whether it was queued now.
pub fn enqueue_once(
    conn: &mut Conn,
    spec: &JobSpec,
    actor: &str,
    address: Option<&str>,
    max_queued: Option<usize>,
    once: &str,
) -> anyhow::Result<(i32, bool)> {
    if let Some(id) = jobs::job_of_token(conn, once)? {
        return Ok((id, false));
    }
    match enqueue_inner(conn, spec, actor, address, max_queued, Some(once)) {
        Ok(id) => Ok((id, true)),
        // Two submissions at once: the other one's insert of the token won.
        Err(e) => match jobs::job_of_token(conn, once)? {
            Some(id) => Ok((id, false)),
            None => Err(e),
        },
    }
}

/// [`enqueue`] for a member of staff, who may have at most `max_queued` jobs waiting (the
/// count and the insert are one transaction, so a burst of requests cannot pass it).
pub fn enqueue_limited(
    conn: &mut Conn,
    spec: &JobSpec,
    actor: &str,
    address: Option<&str>,
    max_queued: Option<usize>,
) -> anyhow::Result<i32> {
    enqueue_inner(conn, spec, actor, address, max_queued, None)
}

fn enqueue_inner(
    conn: &mut Conn,
    spec: &JobSpec,
    actor: &str,
    address: Option<&str>,
    max_queued: Option<usize>,
    once: Option<&str>,
) -> anyhow::Result<i32> {
    let named: Vec<&ClubSlug> = match spec {
        JobSpec::Deploy {
            targets: Targets::Clubs(slugs),
            ..
        } => slugs.iter().collect(),
        JobSpec::Rollback { club, .. }
        | JobSpec::Adopt { club, .. }
        | JobSpec::UndoAdopt { club, .. }
        | JobSpec::PurgeLegacy { club, .. } => vec![club],
        _ => Vec::new(),
    };
    let mut unknown = Vec::new();
    let mut without_app = Vec::new();
    for slug in named {
        if clubs::by_slug(conn, slug.as_str())?.is_none() {
            unknown.push(slug.as_str());
        } else if let Some(app) = spec.app()
            && clubs::webroot(conn, slug.as_str(), app.as_str())?.is_none()
        {
            without_app.push(slug.as_str());
        }
    }
    if !unknown.is_empty() {
        return Err(Refusal::NotFound(format!(
            "no such club: {}; nothing was queued",
            unknown.join(", ")
        ))
        .into());
    }
    if !without_app.is_empty() {
        let app = spec.app().map(|a| a.as_str()).unwrap_or_default();
        return Err(Refusal::NotFound(format!(
            "{} {} not run the application {app} (it has no webroot for it; add one with \
             `clubdeploy club webroot <slug> {app} <path>`); nothing was queued",
            without_app.join(", "),
            if without_app.len() == 1 { "does" } else { "do" }
        ))
        .into());
    }
    let params = spec.to_json();
    conn.immediate_transaction(|conn| {
        if let Some(max) = max_queued
            && jobs::queued_by(conn, actor)?.len() >= max
        {
            return Err(anyhow::Error::from(Refusal::Conflict(format!(
                "you already have {max} jobs waiting to run; wait for them or cancel one, \
                 then try again (nothing was queued)"
            ))));
        }
        let job = jobs::insert(
            conn,
            &jobs::NewJob {
                kind: spec.kind(),
                params: &params,
                requested_by: actor,
                status: JobStatus::Queued,
                created_at: db::now(),
                app: spec.app().map(|a| a.as_str()),
            },
        )?;
        let names = crate::db::clubs::names(conn)?;
        let (target, details) = (job.id.to_string(), spec.title(&names));
        let entry = audit::Entry::new(actor, "job.queued", "job", &target, &details);
        let entry = audit::Entry {
            address,
            app: spec.app().map(|a| a.as_str()),
            ..entry
        };
        audit::append(conn, &entry).context("cannot queue the job")?;
        if let Some(once) = once {
            jobs::use_token(conn, once, job.id)?;
        }
        Ok(job.id)
    })
}

/// Cancels every job `user` has waiting (their account was disabled, their rights changed:
/// `why`), auditing each; call inside the transaction that makes the change. Returns how many.
pub fn cancel_all_of(
    conn: &mut Conn,
    user: &str,
    why: &str,
    actor: &str,
    address: Option<&str>,
) -> diesel::QueryResult<usize> {
    let queued = jobs::queued_by(conn, user)?;
    for id in &queued {
        if jobs::cancel_queued(conn, *id, db::now())? {
            let target = id.to_string();
            let details = format!("cancelled before it started: {why}");
            let entry = audit::Entry::new(actor, "job.cancelled", "job", &target, &details);
            audit::append(conn, &audit::Entry { address, ..entry })?;
        }
    }
    Ok(queued.len())
}

/// What cancelling a job did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancelled {
    /// It had not started: it will not run.
    Queued,
    /// It is running: it stops at its next safe point (before any club is switched, or
    /// between waves), leaving nothing half-done.
    WillStop,
}

/// Cancels a job that has not started; a running one is asked to stop at its next safe point
/// when `may_stop` (administrators, the command line); anything else is refused with its
/// status.
pub fn cancel(
    conn: &mut Conn,
    id: i32,
    actor: &str,
    address: Option<&str>,
    may_stop: bool,
) -> anyhow::Result<Cancelled> {
    let done = conn.immediate_transaction(|conn| {
        let (done, details) = if jobs::cancel_queued(conn, id, db::now())? {
            (Cancelled::Queued, "cancelled before it started")
        } else if may_stop && jobs::request_stop(conn, id, actor)? {
            (
                Cancelled::WillStop,
                "asked to stop at its next safe point (before any club is switched, or between \
                 waves)",
            )
        } else {
            return Ok(None);
        };
        let target = id.to_string();
        let entry = audit::Entry::new(actor, "job.cancelled", "job", &target, details);
        audit::append(conn, &audit::Entry { address, ..entry })?;
        Ok::<_, diesel::result::Error>(Some(done))
    })?;
    if let Some(done) = done {
        return Ok(done);
    }
    Err(match jobs::by_id(conn, id)? {
        None => Refusal::NotFound(format!("there is no job #{id}")),
        Some(job) if job.status == JobStatus::Running && job.stop_requested_by.is_some() => {
            Refusal::Conflict(format!(
                "job #{id} was asked to stop already (by {}); it stops at its next safe point",
                job.stop_requested_by.unwrap_or_default()
            ))
        }
        Some(job) if job.status == JobStatus::Running => Refusal::Conflict(format!(
            "job #{id} is running; only an administrator can stop a running job"
        )),
        Some(job) => Refusal::Conflict(format!(
            "job #{id} is {}; only a queued or running job can be cancelled",
            job.status
        )),
    }
    .into())
}
