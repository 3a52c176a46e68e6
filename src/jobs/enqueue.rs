//! Queuing a job: the job row and its audit row are written in one transaction.

use anyhow::Context;
use diesel::SqliteConnection;

use crate::db::{self, audit, clubs, jobs};
use crate::domain::{ClubSlug, JobSpec, JobStatus, Refusal, Targets};

/// Queues `spec` on behalf of `actor` (from `address`, where there is one); returns its id.
/// A job naming a club that does not exist is refused before anything is written.
pub fn enqueue(
    conn: &mut SqliteConnection,
    spec: &JobSpec,
    actor: &str,
    address: Option<&str>,
) -> anyhow::Result<i32> {
    let named: Vec<&ClubSlug> = match spec {
        JobSpec::Deploy {
            targets: Targets::Clubs(slugs),
            ..
        } => slugs.iter().collect(),
        JobSpec::Rollback { club, .. } => vec![club],
        _ => Vec::new(),
    };
    let mut unknown = Vec::new();
    for slug in named {
        if clubs::by_slug(conn, slug.as_str())?.is_none() {
            unknown.push(slug.as_str());
        }
    }
    if !unknown.is_empty() {
        return Err(Refusal::NotFound(format!(
            "no such club: {}; nothing was queued",
            unknown.join(", ")
        ))
        .into());
    }
    let params = spec.to_json();
    conn.immediate_transaction(|conn| {
        let job = jobs::insert(
            conn,
            &jobs::NewJob {
                kind: spec.kind(),
                params: &params,
                requested_by: actor,
                status: JobStatus::Queued.as_str(),
                created_at: db::now(),
            },
        )?;
        let (target, details) = (job.id.to_string(), spec.to_string());
        let entry = audit::Entry::new(actor, "job.queued", "job", &target, &details);
        audit::append(conn, &audit::Entry { address, ..entry })?;
        Ok::<_, diesel::result::Error>(job.id)
    })
    .context("cannot queue the job")
}

/// Cancels a job that has not started; a running or finished job is refused with its status.
pub fn cancel(
    conn: &mut SqliteConnection,
    id: i32,
    actor: &str,
    address: Option<&str>,
) -> anyhow::Result<()> {
    let cancelled = conn.immediate_transaction(|conn| {
        if !jobs::cancel_queued(conn, id, db::now())? {
            return Ok(false);
        }
        let target = id.to_string();
        let details = "cancelled before it started";
        let entry = audit::Entry::new(actor, "job.cancelled", "job", &target, details);
        audit::append(conn, &audit::Entry { address, ..entry })?;
        Ok::<_, diesel::result::Error>(true)
    })?;
    if cancelled {
        return Ok(());
    }
    Err(match jobs::by_id(conn, id)? {
        None => Refusal::NotFound(format!("there is no job #{id}")),
        Some(job) => Refusal::Conflict(format!(
            "job #{id} is {}; only a queued job can be cancelled",
            job.status
        )),
    }
    .into())
}
