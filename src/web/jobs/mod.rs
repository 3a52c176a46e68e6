//! Jobs: the list with filters, a job's page (steps, progress, log, outcome), its live
//! event stream, and cancelling a queued job.

use std::time::{Duration, Instant};

use actix_web::{HttpResponse, web};
use askama::Template;
use askama_web::WebTemplate;
use chrono::NaiveDateTime;
use serde::Deserialize;

use super::ui::see_other;
use super::ui::{CountOf, Running};
use super::{AppState, CsrfForm, Deployer, Nav, NoFields, Staff, count};
use crate::auth::session;
use crate::db;
use crate::db::jobs::{self, Job, JobEvent};
use crate::domain::{JobKind, JobSpec, JobStatus, Role, Tally};
use crate::jobs::enqueue;
use crate::web::error::{AppError, urlencode};

mod actions;
mod stream;

pub use actions::{cancel, cancel_confirm, put_back, put_back_confirm};
pub use stream::events;

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
    let status = Some(query.status.as_str())
        .filter(|s| !s.is_empty())
        .map(JobStatus::parse)
        .transpose()?;
    let kind = Some(query.kind.as_str())
        .filter(|k| !k.is_empty())
        .map(JobKind::parse)
        .transpose()?;
    let app = Some(query.app.clone()).filter(|a| !a.is_empty());
    let before = query.before;
    let (found, names) = state
        .db(move |_, conn| {
            let found = jobs::filtered(conn, status, kind, app.as_deref(), before, PAGE)?;
            Ok((found, db::clubs::names(conn)?))
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
            what: job.title(&names),
            status: job.status.as_str().to_owned(),
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
        apps: super::ui::app_names(&state.settings),
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
    /// An administrator may ask this running job to stop at its next safe point.
    can_stop: bool,
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
        step_words(&self.name)
    }

    /// How long the step took (or has taken so far), in words.
    pub fn took(&self) -> Option<String> {
        let (start, end) = (self.start?, self.end?);
        Some(crate::domain::duration_in_words(
            (end - start).num_milliseconds(),
        ))
    }
}

/// A step's name as the job page says it.
pub(in crate::web) fn step_words(name: &str) -> &str {
    match name {
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

/// The steps a job of `kind` goes through, in order (a step may be left out by a particular
/// run: a deploy to some clubs prunes nothing).
pub(in crate::web) fn planned(kind: JobKind) -> &'static [&'static str] {
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
    let mut steps: Vec<StepRow> = planned(job.kind)
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
    let status = job.status;
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
    let (job, events, waiting_for, switched, names) = state
        .db(move |_, conn| {
            let job = jobs::by_id(conn, id)?
                .ok_or_else(|| AppError::NotFound(format!("There is no job #{id}.")))?;
            let names = db::clubs::names(conn)?;
            // A queued job waits for the one running, and for those queued before it.
            let waiting_for = if job.status == JobStatus::Queued {
                let running = jobs::with_status(conn, JobStatus::Running)?;
                let ahead = jobs::with_status(conn, JobStatus::Queued)?
                    .iter()
                    .filter(|j| j.id < id)
                    .count();
                Some(match (running.first(), ahead) {
                    (Some(r), 0) => {
                        format!(
                            "It waits for job #{} ({}), running now.",
                            r.id,
                            r.title(&names)
                        )
                    }
                    (Some(r), n) => format!(
                        "It waits for job #{} ({}), running now, and {} queued before it.",
                        r.id,
                        r.title(&names),
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
                .filter(|s| s.kind.made_by_the_deploy())
                .count();
            let events = jobs::events_after(conn, id, 0)?;
            Ok((job, events, waiting_for, switched, names))
        })
        .await?;
    let status = job.status;
    let progress = events.iter().rev().find_map(JobEvent::tally);
    let can_cancel = status == JobStatus::Queued && may_cancel(&staff, &job);
    let can_stop = status == JobStatus::Running
        && staff.role == Role::Admin
        && job.stop_requested_by.is_none();
    Ok(JobPage {
        nav: staff.nav("jobs"),
        running: Running::of(
            &job,
            progress,
            events
                .iter()
                .rev()
                .find(|e| e.kind == "step")
                .and_then(|e| e.step.as_deref()),
            &names,
        ),
        finished: status.is_finished(),
        steps: steps_of(&job, &events),
        last_event: events.last().map_or(0, |e| e.id),
        lines: events
            .into_iter()
            .map(|e| Line {
                kind: e.kind,
                text: e.message,
                output: staff.role.sees_output(e.output),
            })
            .collect(),
        can_cancel,
        can_stop,
        waiting_for,
        switched: if job.kind == JobKind::Deploy
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
