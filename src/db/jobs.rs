//! The `jobs` queue and the `job_events` each job writes as it runs.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::{form_tokens, job_events, jobs};
use crate::domain::{JobKind, JobStatus, Tally};

/// A job as stored.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = jobs)]
pub struct Job {
    pub id: i32,
    pub kind: JobKind,
    pub params: String,
    pub requested_by: String,
    pub status: JobStatus,
    pub created_at: NaiveDateTime,
    pub started_at: Option<NaiveDateTime>,
    pub finished_at: Option<NaiveDateTime>,
    pub worker: Option<String>,
    pub outcome: Option<String>,
    pub error: Option<String>,
    /// The application the job concerns; `None` for every application.
    pub app: Option<String>,
    /// Who asked this running job to stop at its next safe point, if anyone did.
    pub stop_requested_by: Option<String>,
}

impl Job {
    /// The job in words ([`crate::domain::JobSpec::title`]), clubs named by `names`; its
    /// kind when its parameters cannot be read.
    pub fn title(&self, names: &crate::domain::ClubNames) -> String {
        crate::domain::JobSpec::from_json(&self.params)
            .map_or_else(|_| self.kind.to_string(), |spec| spec.title(names))
    }
}

/// A job to queue.
#[derive(Debug, Insertable)]
#[diesel(table_name = jobs)]
pub struct NewJob<'a> {
    pub kind: JobKind,
    pub params: &'a str,
    pub requested_by: &'a str,
    pub status: JobStatus,
    pub created_at: NaiveDateTime,
    pub app: Option<&'a str>,
}

/// One line of a job's log.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = job_events)]
pub struct JobEvent {
    pub id: i32,
    pub job_id: i32,
    pub at: NaiveDateTime,
    pub step: Option<String>,
    pub kind: String,
    pub message: String,
    pub output: Option<String>,
    /// How far the whole job is, when the event counts: `done` of `total`, `already` of
    /// them on the release before (`None` from before versions said it).
    pub done: Option<i32>,
    pub total: Option<i32>,
    pub already: Option<i32>,
}

impl JobEvent {
    /// The job's count this event says, if it counts.
    pub fn tally(&self) -> Option<Tally> {
        tally(self.done, self.total, self.already)
    }
}

/// A count as stored, if whole: no part may be negative.
fn tally(done: Option<i32>, total: Option<i32>, already: Option<i32>) -> Option<Tally> {
    let n = |v: i32| usize::try_from(v).ok();
    Some(Tally {
        done: n(done?)?,
        total: n(total?)?,
        already: n(already.unwrap_or(0))?,
    })
}

/// A line to add to a job's log.
#[derive(Debug, Insertable)]
#[diesel(table_name = job_events)]
pub struct NewJobEvent<'a> {
    pub job_id: i32,
    pub at: NaiveDateTime,
    pub step: Option<&'a str>,
    pub kind: &'a str,
    pub message: &'a str,
    pub output: Option<&'a str>,
    pub done: Option<i32>,
    pub total: Option<i32>,
    pub already: Option<i32>,
}

/// Queues a job (the caller's transaction also writes its audit event).
pub fn insert(conn: &mut SqliteConnection, job: &NewJob<'_>) -> QueryResult<Job> {
    diesel::insert_into(jobs::table)
        .values(job)
        .returning(Job::as_returning())
        .get_result(conn)
}

/// Claims the oldest queued job for `worker`: the update only matches while the job is still
/// queued, so of two workers racing for it exactly one changes a row. Must run inside an
/// immediate transaction.
pub fn claim_oldest(
    conn: &mut SqliteConnection,
    worker: &str,
    now: NaiveDateTime,
) -> QueryResult<Option<Job>> {
    let oldest: Option<i32> = jobs::table
        .filter(jobs::status.eq(JobStatus::Queued))
        .order(jobs::id)
        .select(jobs::id)
        .first(conn)
        .optional()?;
    let Some(id) = oldest else {
        return Ok(None);
    };
    let changed = diesel::update(
        jobs::table
            .find(id)
            .filter(jobs::status.eq(JobStatus::Queued)),
    )
    .set((
        jobs::status.eq(JobStatus::Running),
        jobs::started_at.eq(now),
        jobs::worker.eq(worker),
    ))
    .execute(conn)?;
    if changed != 1 {
        return Ok(None);
    }
    by_id(conn, id)
}

/// Ends a job with its status, one-line outcome, and error if any.
pub fn finish(
    conn: &mut SqliteConnection,
    id: i32,
    status: JobStatus,
    outcome: Option<&str>,
    error: Option<&str>,
    now: NaiveDateTime,
) -> QueryResult<()> {
    diesel::update(jobs::table.find(id))
        .set((
            jobs::status.eq(status),
            jobs::outcome.eq(outcome),
            jobs::error.eq(error),
            jobs::finished_at.eq(now),
        ))
        .execute(conn)?;
    Ok(())
}

/// Asks running job `id` to stop at its next safe point, on behalf of `actor`; false when
/// it is not running or was asked already.
pub fn request_stop(conn: &mut SqliteConnection, id: i32, actor: &str) -> QueryResult<bool> {
    let changed = diesel::update(
        jobs::table
            .find(id)
            .filter(jobs::status.eq(JobStatus::Running))
            .filter(jobs::stop_requested_by.is_null()),
    )
    .set(jobs::stop_requested_by.eq(actor))
    .execute(conn)?;
    Ok(changed == 1)
}

/// Who asked job `id` to stop, if anyone did.
pub fn stop_requested(conn: &mut SqliteConnection, id: i32) -> QueryResult<Option<String>> {
    Ok(jobs::table
        .find(id)
        .select(jobs::stop_requested_by)
        .first::<Option<String>>(conn)
        .optional()?
        .flatten())
}

/// Cancels a job if it is still queued; says whether it was.
pub fn cancel_queued(
    conn: &mut SqliteConnection,
    id: i32,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    let changed = diesel::update(
        jobs::table
            .find(id)
            .filter(jobs::status.eq(JobStatus::Queued)),
    )
    .set((
        jobs::status.eq(JobStatus::Cancelled),
        jobs::finished_at.eq(now),
    ))
    .execute(conn)?;
    Ok(changed == 1)
}

/// The ids of the jobs `actor` has waiting in the queue, oldest first.
pub fn queued_by(conn: &mut SqliteConnection, actor: &str) -> QueryResult<Vec<i32>> {
    jobs::table
        .filter(jobs::status.eq(JobStatus::Queued))
        .filter(jobs::requested_by.eq(actor))
        .order(jobs::id)
        .select(jobs::id)
        .load(conn)
}

/// A job by id.
pub fn by_id(conn: &mut SqliteConnection, id: i32) -> QueryResult<Option<Job>> {
    jobs::table
        .find(id)
        .select(Job::as_select())
        .first(conn)
        .optional()
}

/// Jobs with this status, oldest first.
pub fn with_status(conn: &mut SqliteConnection, status: JobStatus) -> QueryResult<Vec<Job>> {
    jobs::table
        .filter(jobs::status.eq(status))
        .order(jobs::id)
        .select(Job::as_select())
        .load(conn)
}

/// The newest job that failed or was interrupted, unless a job of its kind and application
/// succeeded after it (then it is dealt with): what the dashboard shows first.
pub fn standing_failure(conn: &mut SqliteConnection) -> QueryResult<Option<Job>> {
    let Some(failed) = jobs::table
        .filter(jobs::status.eq_any([JobStatus::Failed, JobStatus::Interrupted]))
        .order(jobs::id.desc())
        .select(Job::as_select())
        .first(conn)
        .optional()?
    else {
        return Ok(None);
    };
    let later = jobs::table
        .filter(jobs::id.gt(failed.id))
        .filter(jobs::kind.eq(failed.kind))
        .filter(jobs::status.eq(JobStatus::Succeeded))
        .into_boxed();
    let later = match &failed.app {
        Some(app) => later.filter(jobs::app.eq(app.clone())),
        None => later.filter(jobs::app.is_null()),
    };
    let succeeded_since: i64 = later.count().get_result(conn)?;
    Ok((succeeded_since == 0).then_some(failed))
}

/// The newest jobs, newest first.
pub fn recent(conn: &mut SqliteConnection, limit: i64) -> QueryResult<Vec<Job>> {
    jobs::table
        .order(jobs::id.desc())
        .limit(limit)
        .select(Job::as_select())
        .load(conn)
}

/// Adds a line to a job's log.
pub fn add_event(conn: &mut SqliteConnection, event: &NewJobEvent<'_>) -> QueryResult<()> {
    diesel::insert_into(job_events::table)
        .values(event)
        .execute(conn)?;
    Ok(())
}

/// A job's log lines after `after_id`, oldest first.
pub fn events_after(
    conn: &mut SqliteConnection,
    job_id: i32,
    after_id: i32,
) -> QueryResult<Vec<JobEvent>> {
    job_events::table
        .filter(job_events::job_id.eq(job_id))
        .filter(job_events::id.gt(after_id))
        .order(job_events::id)
        .select(JobEvent::as_select())
        .load(conn)
}

/// How far a job is by its newest event that counts, if any counted.
pub fn last_count(conn: &mut SqliteConnection, job_id: i32) -> QueryResult<Option<Tally>> {
    type Stored = (Option<i32>, Option<i32>, Option<i32>);
    let found: Option<Stored> = job_events::table
        .filter(job_events::job_id.eq(job_id))
        .filter(job_events::done.is_not_null())
        .order(job_events::id.desc())
        .select((job_events::done, job_events::total, job_events::already))
        .first(conn)
        .optional()?;
    Ok(found.and_then(|(done, total, already)| tally(done, total, already)))
}

/// The step a job began last, if it began one.
pub fn current_step(conn: &mut SqliteConnection, job_id: i32) -> QueryResult<Option<String>> {
    job_events::table
        .filter(job_events::job_id.eq(job_id))
        .filter(job_events::kind.eq("step"))
        .filter(job_events::step.is_not_null())
        .order(job_events::id.desc())
        .select(job_events::step.assume_not_null())
        .first(conn)
        .optional()
}

/// How many jobs have ended: it grows whenever one ends, whichever process ran it.
pub fn ended_count(conn: &mut SqliteConnection) -> QueryResult<i64> {
    jobs::table
        .filter(jobs::finished_at.is_not_null())
        .count()
        .get_result(conn)
}

/// Whether any job waits in the queue.
pub fn any_queued(conn: &mut SqliteConnection) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        jobs::table.filter(jobs::status.eq(JobStatus::Queued)),
    ))
    .get_result(conn)
}

/// The newest event's id of any job (0 when there is none).
pub fn last_event_id(conn: &mut SqliteConnection) -> QueryResult<i32> {
    Ok(job_events::table
        .select(diesel::dsl::max(job_events::id))
        .first::<Option<i32>>(conn)?
        .unwrap_or(0))
}

/// Jobs newest first, optionally only those with `status` and `kind`, before id `before`.
pub fn filtered(
    conn: &mut SqliteConnection,
    status: Option<JobStatus>,
    kind: Option<JobKind>,
    app: Option<&str>,
    before: Option<i32>,
    limit: i64,
) -> QueryResult<Vec<Job>> {
    let mut query = jobs::table
        .order(jobs::id.desc())
        .limit(limit)
        .select(Job::as_select())
        .into_boxed();
    if let Some(status) = status {
        query = query.filter(jobs::status.eq(status));
    }
    if let Some(kind) = kind {
        query = query.filter(jobs::kind.eq(kind));
    }
    if let Some(app) = app {
        query = query.filter(jobs::app.eq(app));
    }
    if let Some(before) = before {
        query = query.filter(jobs::id.lt(before));
    }
    query.load(conn)
}

/// The job a one-time form token queued, if it was used.
pub fn job_of_token(conn: &mut SqliteConnection, token: &str) -> QueryResult<Option<i32>> {
    form_tokens::table
        .find(token)
        .select(form_tokens::job_id)
        .first(conn)
        .optional()
}

/// Records that `token` queued `job_id` (inside the transaction that queues it: a second use
/// fails on the key).
pub fn use_token(conn: &mut SqliteConnection, token: &str, job_id: i32) -> QueryResult<()> {
    diesel::insert_into(form_tokens::table)
        .values((
            form_tokens::token.eq(token),
            form_tokens::job_id.eq(job_id),
            form_tokens::created_at.eq(super::now()),
        ))
        .execute(conn)?;
    Ok(())
}
