//! Jobs: the list with filters, a job's page (steps, progress, log, outcome), its live
//! event stream, and cancelling a queued job.

use std::time::{Duration, Instant};

use actix_web::{HttpResponse, web};
use askama::Template;
use askama_web::WebTemplate;
use chrono::NaiveDateTime;
use serde::Deserialize;

use super::clubs::see_other;
use super::dashboard::{Running, counted};
use super::{AppState, CsrfForm, Nav, Staff, count, form};
use crate::auth::session;
use crate::db;
use crate::db::jobs::{self, Job, JobEvent};
use crate::domain::{JobKind, JobSpec, JobStatus, Role, SwitchKind};
use crate::error::{AppError, urlencode};
use crate::jobs::enqueue;

/// A job in words: "deploy v2 to all clubs".
pub fn describe(job: &Job) -> String {
    JobSpec::from_json(&job.params).map_or_else(|_| job.kind.clone(), |spec| spec.to_string())
}

/// A row of the jobs list.
pub struct Row {
    pub id: i32,
    pub what: String,
    pub status: String,
    pub by: String,
    pub queued: NaiveDateTime,
    pub result: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "jobs.html")]
pub struct JobsPage {
    nav: Nav,
    rows: Vec<Row>,
    status: String,
    kind: String,
    /// Every kind of job (stored name, words) and every status, for the filters.
    kinds: Vec<(&'static str, &'static str)>,
    statuses: Vec<&'static str>,
    app: String,
    apps: Vec<String>,
    next: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ListQuery {
    status: String,
    kind: String,
    app: String,
    before: Option<i32>,
}

const PAGE: i64 = 50;

/// `GET /jobs`.
pub async fn list(
    staff: Staff,
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<JobsPage, AppError> {
    let status = Some(query.status.clone()).filter(|s| !s.is_empty());
    if let Some(status) = &status {
        JobStatus::parse(status)?;
    }
    let kind = Some(query.kind.clone()).filter(|k| !k.is_empty());
    let app = Some(query.app.clone()).filter(|a| !a.is_empty());
    let before = query.before;
    let found = state
        .db(move |_, conn| {
            Ok(jobs::filtered(
                conn,
                status.as_deref(),
                kind.as_deref(),
                app.as_deref(),
                before,
                PAGE,
            )?)
        })
        .await?;
    let next = (found.len() as i64 == PAGE).then(|| {
        let last = found.last().map_or(0, |j| j.id);
        format!(
            "/jobs?status={}&kind={}&app={}&before={last}",
            urlencode(&query.status),
            urlencode(&query.kind),
            urlencode(&query.app)
        )
    });
    let rows = found
        .iter()
        .map(|job| Row {
            id: job.id,
            what: describe(job),
            status: job.status.clone(),
            by: job.requested_by.clone(),
            queued: job.created_at,
            result: job
                .outcome
                .clone()
                .or(job.error.clone())
                .unwrap_or_default(),
        })
        .collect();
    Ok(JobsPage {
        nav: staff.nav("jobs"),
        rows,
        status: query.status.clone(),
        kind: query.kind.clone(),
        kinds: JobKind::ALL
            .iter()
            .map(|k| (k.as_str(), k.in_words()))
            .collect(),
        statuses: JobStatus::ALL.iter().map(|s| s.as_str()).collect(),
        app: query.app.clone(),
        apps: super::clubs::app_names(&state.settings),
        next,
    })
}

/// A log line as the job page shows it.
pub struct Line {
    pub kind: String,
    pub text: String,
    pub output: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "job.html")]
pub struct JobPage {
    nav: Nav,
    job: Job,
    running: Running,
    finished: bool,
    steps: Vec<StepRow>,
    lines: Vec<Line>,
    last_event: i32,
    can_cancel: bool,
    /// What a queued job waits for, in words.
    waiting_for: Option<String>,
    /// How many clubs this finished deploy switched, for "Put these clubs back" (0: none, or
    /// not a finished deploy, or the viewer may not).
    switched: usize,
}

/// One step of a job as its page lists it: every step the job's kind goes through is listed
/// from the start, waiting until it begins.
pub struct StepRow {
    pub name: String,
    /// `waiting`, `running`, `done`, `failed` or `skipped` (the job ended without it).
    pub state: &'static str,
    pub start: Option<NaiveDateTime>,
    pub end: Option<NaiveDateTime>,
}

impl StepRow {
    /// What the step does, for staff.
    pub fn words(&self) -> &str {
        match self.name.as_str() {
            "fetch" => "Fetch the version from the repository",
            "build" => "Build the release",
            "compare" => "Compare the old copy with the release",
            "preflight" => "Check Apache's configuration",
            "switch" => "Switch the clubs",
            "reload" => "Reload Apache",
            "health" => "Check each club's site",
            "prune" => "Delete what is no longer needed",
            other => other,
        }
    }

    /// How long the step took (or has taken so far), in words.
    pub fn took(&self) -> Option<String> {
        let (start, end) = (self.start?, self.end?);
        let ms = (end - start).num_milliseconds().max(0);
        Some(if ms < 10_000 {
            format!("{:.1} s", ms as f64 / 1000.0)
        } else if ms < 120_000 {
            format!("{} s", ms / 1000)
        } else {
            format!("{} min {} s", ms / 60_000, ms / 1000 % 60)
        })
    }
}

/// The steps a job of `kind` goes through, in order (a step may be left out by a particular
/// run: a deploy to some clubs prunes nothing).
fn planned(kind: Option<JobKind>) -> &'static [&'static str] {
    let Some(kind) = kind else {
        return &[];
    };
    match kind {
        JobKind::Deploy => &[
            "fetch",
            "build",
            "preflight",
            "switch",
            "reload",
            "health",
            "prune",
        ],
        JobKind::Rollback => &["fetch", "build", "preflight", "switch", "reload", "health"],
        JobKind::PutBack => &["preflight", "switch", "reload", "health"],
        JobKind::Adopt => &["fetch", "build", "compare", "preflight", "switch", "reload"],
        JobKind::UndoAdopt => &["preflight", "switch", "reload"],
        JobKind::Fetch => &["fetch"],
        JobKind::Prune | JobKind::PurgeLegacy => &["prune"],
    }
}

/// Every step of `job`: the planned ones and any other it ran, each with its state and its
/// times as its events tell (a step begun again, as in each wave of a deploy, keeps its first
/// start and its last end).
fn steps_of(job: &Job, events: &[JobEvent]) -> Vec<StepRow> {
    let mut steps: Vec<StepRow> = planned(JobKind::parse(&job.kind).ok())
        .iter()
        .map(|name| StepRow {
            name: (*name).to_owned(),
            state: "waiting",
            start: None,
            end: None,
        })
        .collect();
    let mut current: Option<usize> = None;
    for event in events {
        let Some(step) = &event.step else { continue };
        let index = match steps.iter().position(|s| &s.name == step) {
            Some(i) => i,
            None => {
                steps.push(StepRow {
                    name: step.clone(),
                    state: "waiting",
                    start: None,
                    end: None,
                });
                steps.len() - 1
            }
        };
        match event.kind.as_str() {
            "step" => {
                // A step begins: the one before it has ended.
                if let Some(before) = current.filter(|b| *b != index) {
                    let before = &mut steps[before];
                    if before.state == "running" {
                        before.state = "done";
                        before.end = Some(event.at);
                    }
                }
                let row = &mut steps[index];
                row.state = "running";
                row.start.get_or_insert(event.at);
                row.end = None;
                current = Some(index);
            }
            "done" => {
                let row = &mut steps[index];
                row.state = "done";
                row.end = Some(event.at);
            }
            _ => {}
        }
    }
    let status = JobStatus::parse(&job.status).unwrap_or(JobStatus::Queued);
    if status.is_finished() {
        for row in &mut steps {
            match row.state {
                "running" => {
                    row.state = if status == JobStatus::Succeeded {
                        "done"
                    } else {
                        "failed"
                    };
                    row.end = row.end.or(job.finished_at);
                }
                "waiting" => row.state = "skipped",
                _ => {}
            }
        }
    }
    steps
}

/// `GET /jobs/{id}`.
pub async fn page(
    staff: Staff,
    state: web::Data<AppState>,
    id: web::Path<i32>,
) -> Result<JobPage, AppError> {
    let id = id.into_inner();
    let (job, events, waiting_for, switched) = state
        .db(move |_, conn| {
            let job = jobs::by_id(conn, id)?
                .ok_or_else(|| AppError::NotFound(format!("There is no job #{id}.")))?;
            // A queued job waits for the one running, and for those queued before it.
            let waiting_for = if job.status == JobStatus::Queued.as_str() {
                let running = jobs::with_status(conn, JobStatus::Running.as_str())?;
                let ahead = jobs::with_status(conn, JobStatus::Queued.as_str())?
                    .iter()
                    .filter(|j| j.id < id)
                    .count();
                Some(match (running.first(), ahead) {
                    (Some(r), 0) => {
                        format!("It waits for job #{} ({}), running now.", r.id, describe(r))
                    }
                    (Some(r), n) => format!(
                        "It waits for job #{} ({}), running now, and {} queued before it.",
                        r.id,
                        describe(r),
                        count(n, "job")
                    ),
                    (None, 0) => "It starts as soon as the worker takes it.".to_owned(),
                    (None, n) => format!(
                        "{} queued before it {} first.",
                        count(n, "job"),
                        if n == 1 { "runs" } else { "run" }
                    ),
                })
            } else {
                None
            };
            let switched = db::switches::of_job(conn, id)?
                .iter()
                .filter(|s| SwitchKind::parse(&s.kind).is_ok_and(SwitchKind::made_by_the_deploy))
                .count();
            Ok((job, jobs::events_after(conn, id, 0)?, waiting_for, switched))
        })
        .await?;
    let status = JobStatus::parse(&job.status)?;
    let progress = events
        .iter()
        .rev()
        .find_map(|e| counted(e.done.zip(e.total)));
    let can_cancel = status == JobStatus::Queued && may_cancel(&staff, &job);
    Ok(JobPage {
        nav: staff.nav("jobs"),
        running: Running {
            id: job.id,
            what: describe(&job),
            progress,
        },
        finished: status.is_finished(),
        steps: steps_of(&job, &events),
        last_event: events.last().map_or(0, |e| e.id),
        lines: events
            .into_iter()
            .map(|e| Line {
                kind: e.kind,
                text: e.message,
                output: e.output,
            })
            .collect(),
        can_cancel,
        waiting_for,
        switched: if JobKind::parse(&job.kind).ok() == Some(JobKind::Deploy)
            && status.is_finished()
            && staff.role != Role::Viewer
        {
            switched
        } else {
            0
        },
        job,
    })
}

fn may_cancel(staff: &Staff, job: &Job) -> bool {
    staff.role == Role::Admin
        || (staff.role == Role::Deployer
            && (staff.may_change_all() || job.requested_by == staff.user.name))
}

/// One of a session's live streams; dropping it frees the place.
struct StreamSlot {
    streams: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<i32, usize>>>,
    session_id: i32,
}

impl StreamSlot {
    /// A place for a stream of `session_id`, unless it has `[web] max_streams_per_session`.
    fn take(state: &AppState, session_id: i32) -> Option<StreamSlot> {
        let mut open = state.streams.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(session_id).or_default();
        if *count >= state.settings.web.max_streams_per_session {
            return None;
        }
        *count += 1;
        Some(StreamSlot {
            streams: state.streams.clone(),
            session_id,
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.session_id) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.session_id);
            }
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct EventsQuery {
    after: i32,
}

/// How often an idle live job page's stream writes a keep-alive (which is also how a closed
/// page is noticed and its place freed); it reads nothing for it.
const STREAM_KEEPALIVE: Duration = Duration::from_millis(250);

/// How often an idle stream reads the database anyway: whether its session still holds.
const STREAM_RECHECK: Duration = Duration::from_secs(1);

/// `GET /jobs/{id}/events`: server-sent events, one `log` event per job event after
/// `?after=` (or the `Last-Event-ID` a reconnecting browser sends), then one `end` event when
/// the job has finished. The stream reads the database when a job event was written
/// (whichever process wrote it), not on a timer.
pub async fn events(
    staff: Staff,
    state: web::Data<AppState>,
    id: web::Path<i32>,
    query: web::Query<EventsQuery>,
    request: actix_web::HttpRequest,
) -> Result<HttpResponse, AppError> {
    let id = id.into_inner();
    // A browser that reconnects says the last event it had.
    let resumed = request
        .headers()
        .get("Last-Event-ID")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i32>().ok())
        .unwrap_or(0);
    let exists = state
        .db(move |_, conn| Ok(jobs::by_id(conn, id)?.is_some()))
        .await?;
    if !exists {
        return Err(AppError::NotFound(format!("There is no job #{id}.")));
    }
    let slot = StreamSlot::take(&state, staff.session_id).ok_or_else(|| {
        AppError::TooManyRequests(
            "Too many live job pages are open in this session; close some and reload.".into(),
        )
    })?;
    struct Cursor {
        state: web::Data<AppState>,
        after: i32,
        done: bool,
        started: Instant,
        first: bool,
        // Held while the stream lives; frees the session's place when it ends.
        slot: StreamSlot,
        events: tokio::sync::watch::Receiver<i32>,
        read_at: Instant,
    }
    let cursor = Cursor {
        events: state.events.clone(),
        state,
        after: query.after.max(resumed),
        done: false,
        started: Instant::now(),
        first: true,
        slot,
        read_at: Instant::now(),
    };
    // A stream woken by new job events; bounded to an hour (the browser reconnects).
    let stream = futures_util::stream::unfold(cursor, move |mut cursor| async move {
        if cursor.done || cursor.started.elapsed() > Duration::from_secs(3600) {
            return None;
        }
        if !cursor.first {
            match tokio::time::timeout(STREAM_KEEPALIVE, cursor.events.changed()).await {
                // The watch ended: the server is stopping.
                Ok(Err(_)) => return None,
                Ok(Ok(())) => {}
                Err(_) if cursor.read_at.elapsed() < STREAM_RECHECK => {
                    let alive = web::Bytes::from_static(b": waiting\n\n");
                    return Some((Ok::<_, actix_web::Error>(alive), cursor));
                }
                Err(_) => {}
            }
        }
        cursor.first = false;
        cursor.read_at = Instant::now();
        // Seen before reading: an event written while the database is read wakes the next wait.
        cursor.events.borrow_and_update();
        let (after, session_id) = (cursor.after, cursor.slot.session_id);
        let read = cursor
            .state
            .db(move |settings, conn| {
                let live =
                    session::still_live(conn, session_id, db::now(), settings.session_timeouts())?;
                let events = jobs::events_after(conn, id, after)?;
                let job = jobs::by_id(conn, id)?;
                Ok((live, events, job))
            })
            .await;
        // The stream ends with its session (sign-out, disabled, new password, timeout).
        let (events, job) = match read {
            Ok((true, events, job)) => (events, job),
            Ok((false, _, _)) | Err(_) => return None,
        };
        let mut chunk = String::new();
        for event in &events {
            let data = serde_json::json!({
                "id": event.id,
                "kind": event.kind,
                "step": event.step,
                "message": event.message,
                "output": event.output,
                "done": event.done,
                "total": event.total,
                "at": event.at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
            });
            chunk.push_str(&format!("id: {}\nevent: log\ndata: {data}\n\n", event.id));
            cursor.after = event.id;
        }
        if let Some(job) = job
            && JobStatus::parse(&job.status).is_ok_and(JobStatus::is_finished)
        {
            let data = serde_json::json!({
                "status": job.status,
                "outcome": job.outcome,
                "error": job.error,
                "at": job.finished_at.map(|at| at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()),
            });
            chunk.push_str(&format!("event: end\ndata: {data}\n\n"));
            cursor.done = true;
        }
        if chunk.is_empty() {
            chunk.push_str(": waiting\n\n");
        }
        Some((Ok::<_, actix_web::Error>(web::Bytes::from(chunk)), cursor))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .streaming(stream))
}

/// Job `id`, if `staff` may cancel it (a deployer their own, an admin any).
async fn cancellable(staff: &Staff, state: &web::Data<AppState>, id: i32) -> Result<Job, AppError> {
    staff.require(Role::Deployer, "cancel jobs")?;
    let job = state
        .db(move |_, conn| {
            jobs::by_id(conn, id)?
                .ok_or_else(|| AppError::NotFound(format!("There is no job #{id}.")).into())
        })
        .await?;
    if !may_cancel(staff, &job) {
        return Err(AppError::not_allowed("cancel other people's jobs"));
    }
    Ok(job)
}

/// `GET /jobs/{id}/cancel`: asks before cancelling a job that has not started.
pub async fn cancel_confirm(
    staff: Staff,
    state: web::Data<AppState>,
    id: web::Path<i32>,
) -> Result<super::legacy::ConfirmPage, AppError> {
    let id = id.into_inner();
    let job = cancellable(&staff, &state, id).await?;
    if job.status != JobStatus::Queued.as_str() {
        return Err(AppError::Conflict(format!(
            "Job #{id} is {}; only a job that has not started can be cancelled.",
            job.status
        )));
    }
    Ok(super::legacy::ConfirmPage::ask(
        staff.nav("jobs"),
        format!("Cancel job #{id}?"),
        format!(
            "Job #{id} ({}) has not started; cancelled, it will not run.",
            describe(&job)
        ),
        format!("/jobs/{id}/cancel"),
        "Yes, cancel it".into(),
        format!("/jobs/{id}"),
    ))
}

/// `POST /jobs/{id}/cancel`.
pub async fn cancel(
    staff: Staff,
    state: web::Data<AppState>,
    id: web::Path<i32>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    let posted: CsrfForm = form(&body)?;
    staff.check_csrf(&posted.csrf)?;
    let id = id.into_inner();
    cancellable(&staff, &state, id).await?;
    let (actor, address) = (staff.user.name.clone(), staff.address.clone());
    state
        .db(move |_, conn| enqueue::cancel(conn, id, &actor, Some(&address)))
        .await?;
    staff
        .tell(&state, format!("Job #{id} was cancelled; it will not run."))
        .await;
    Ok(see_other(&format!("/jobs/{id}")))
}

/// A club a finished deploy switched that can go back: its name, the version it runs (the
/// deploy's) and the version it would go back to.
struct Back {
    slug: String,
    name: String,
    from: String,
    to: String,
}

/// What "Put these clubs back" would do for deploy job `id`: its application and the clubs
/// still on the release it gave them, each with the version it ran before. Refuses a job
/// that is no finished deploy, one with nothing to put back, and clubs the user may not
/// change.
async fn put_back_plan(
    staff: &Staff,
    state: &web::Data<AppState>,
    id: i32,
) -> Result<(String, Vec<Back>), AppError> {
    staff.require(Role::Deployer, "put clubs back")?;
    let (job, switched, clubs) = state
        .db(move |_, conn| {
            let job = jobs::by_id(conn, id)?
                .ok_or_else(|| AppError::NotFound(format!("There is no job #{id}.")))?;
            let app = job.app.clone().unwrap_or_else(|| "main".into());
            Ok((
                job,
                db::switches::of_job(conn, id)?,
                db::clubs::webroots(conn, Some(&app))?,
            ))
        })
        .await?;
    let finished = JobStatus::parse(&job.status).is_ok_and(JobStatus::is_finished);
    if JobKind::parse(&job.kind).ok() != Some(JobKind::Deploy) || !finished {
        return Err(AppError::Conflict(format!(
            "Job #{id} is not a finished deploy, so there are no clubs of it to put back."
        )));
    }
    let app = job.app.clone().unwrap_or_else(|| "main".into());
    let name = app.clone();
    // Reading the links takes no database connection.
    let backs = state
        .blocking(move |settings| {
            let app = settings.app(Some(&name))?;
            let (still, _) = crate::jobs::run::still_switched(app, &switched, &clubs)?;
            let backs: Vec<Back> = still
                .into_iter()
                .filter_map(|(club, switch)| {
                    Some(Back {
                        to: super::tag_and_commit(switch.from_release.as_deref()?).0,
                        from: super::tag_and_commit(&switch.to_release).0,
                        slug: club.slug,
                        name: club.name,
                    })
                })
                .collect();
            Ok(backs)
        })
        .await?;
    if backs.is_empty() {
        return Err(AppError::Conflict(format!(
            "None of the clubs job #{id} switched still runs what it gave them (or ran anything \
             before it), so there is nothing to put back."
        )));
    }
    if let Some(denied) = backs.iter().find(|b| !staff.may_change(&b.slug)) {
        return Err(AppError::not_allowed(&format!(
            "roll back club {}",
            denied.slug
        )));
    }
    Ok((app, backs))
}

/// `GET /jobs/{id}/put-back`: names the clubs a finished deploy switched that would go back,
/// and to what, and asks.
pub async fn put_back_confirm(
    staff: Staff,
    state: web::Data<AppState>,
    id: web::Path<i32>,
) -> Result<super::legacy::ConfirmPage, AppError> {
    let id = id.into_inner();
    let (_, backs) = put_back_plan(&staff, &state, id).await?;
    const NAMED: usize = 20;
    let mut named: Vec<String> = backs
        .iter()
        .take(NAMED)
        .map(|b| format!("{} ({} → {})", b.name, b.from, b.to))
        .collect();
    if backs.len() > NAMED {
        named.push(format!("and {} more", backs.len() - NAMED));
    }
    let message = format!(
        "{} will go back to the version each ran before job #{id}: {}. The version they leave \
         is marked bad for them, as with a rollback.",
        count(backs.len(), "club"),
        named.join(", ")
    );
    Ok(super::legacy::ConfirmPage::ask(
        staff.nav("jobs"),
        format!("Put the clubs of job #{id} back?"),
        message,
        format!("/jobs/{id}/put-back"),
        format!("Yes, put {} back", count(backs.len(), "club")),
        format!("/jobs/{id}"),
    ))
}

/// `POST /jobs/{id}/put-back`: queues the rollback of exactly the clubs the deploy switched.
pub async fn put_back(
    staff: Staff,
    state: web::Data<AppState>,
    id: web::Path<i32>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    let posted: CsrfForm = form(&body)?;
    staff.check_csrf(&posted.csrf)?;
    let id = id.into_inner();
    let (app, _) = put_back_plan(&staff, &state, id).await?;
    let app = crate::domain::AppName::parse(&app)?;
    super::deploy::queue(
        &staff,
        &state,
        JobSpec::PutBack { app, job: id },
        &posted.once,
    )
    .await
}
