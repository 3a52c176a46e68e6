//! Runs one job from start to end: the pipeline steps in order, recording every club switched
//! and auditing every change. The caller holds the deploy lock; the steps live in `pipeline`.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::config::{App, OnFailure, Settings};
use crate::db::Conn;
use crate::db::clubs::ClubApp;
use crate::db::{self, DbConn, DbPool, audit, clubs, switches};
use crate::domain::{
    ClubSlug, JobKind, JobStatus, ReleaseName, ReleaseTag, SwitchKind, SwitchScope, Tally, Targets,
};
use crate::pipeline::git::{self, Mirror};
use crate::pipeline::host::Host;
use crate::pipeline::release::{self, BuildSpec, Built, Release};
use crate::pipeline::switch::{self, Webroot};
use crate::pipeline::{Progress, Step, health};
use crate::service::inventory;

mod deploy;
mod fetch;
mod legacy;
mod prune;
mod put_back;
mod rollback;
mod steps;
mod switching;

pub use deploy::deploy;
pub use fetch::fetch;
pub use legacy::{adopt, purge_legacy, undo_adopt};
pub use prune::prune;
use prune::prune_releases;
pub use put_back::{put_back_job, put_back_unproven};
pub use rollback::rollback;
pub use steps::reload_after_interruption;
use steps::*;
use switching::*;

/// Everything a job needs to run.
pub struct Job<'a> {
    pub settings: &'a Settings,
    /// Where the job takes a connection for each piece of database work (never across slow
    /// work: building, fetching, reloading, waiting).
    pub pool: &'a DbPool,
    /// The job's id in the queue.
    pub id: i32,
    /// Who asked: a staff user name, or `cli:<unix user>`.
    pub actor: &'a str,
    pub progress: &'a mut dyn Progress,
    /// The web host the clubs' links, reload and health checks are on.
    pub host: &'a dyn Host,
}

impl<'a> Job<'a> {
    /// The queued job `row`, run on this machine's web server, telling `progress`.
    pub fn here(
        settings: &'a Settings,
        pool: &'a DbPool,
        row: &'a db::jobs::Job,
        progress: &'a mut dyn Progress,
    ) -> Job<'a> {
        Job {
            settings,
            pool,
            id: row.id,
            actor: &row.requested_by,
            progress,
            host: &crate::pipeline::host::LocalHost,
        }
    }
}

/// A job that stopped at a safe point because an administrator asked it to: it ends
/// `cancelled`, saying who asked and what it had done.
#[derive(Debug, thiserror::Error)]
#[error("stopped at {who}'s request {when}")]
pub struct Stopped {
    pub who: String,
    pub when: String,
}

impl Job<'_> {
    /// A connection for one piece of database work; give it back (drop it) before slow work.
    fn conn(&self) -> anyhow::Result<DbConn> {
        self.pool.get().context("cannot connect to the database")
    }

    /// A safe point (nothing half-done): if an administrator asked this job to stop, it
    /// stops here, `when` saying what that leaves ("before any club was switched; nothing
    /// was changed").
    fn stop_point(&mut self, when: impl FnOnce() -> String) -> anyhow::Result<()> {
        match db::jobs::stop_requested(&mut *self.conn()?, self.id)? {
            Some(who) => {
                let when = when();
                self.progress
                    .progress(&format!("stopping here at {who}'s request: {when}"));
                Err(Stopped { who, when }.into())
            }
            None => Ok(()),
        }
    }

    /// Appends an audit row in the job's name, about `app` where there is one.
    fn audit(
        &mut self,
        app: Option<&App>,
        action: &str,
        target_kind: &str,
        target: &str,
        details: &str,
    ) -> anyhow::Result<()> {
        let details = format!("{details} (job #{})", self.id);
        let entry = audit::Entry::new(self.actor, action, target_kind, target, &details);
        let entry = audit::Entry {
            app: app.map(|a| a.name.as_str()),
            ..entry
        };
        let mut conn = self.conn()?;
        audit::record(&mut conn, &entry).context("cannot write the audit log")
    }
}

/// Club `slug`'s webroot of `app`.
fn club_named(job: &Job<'_>, app: &App, slug: &ClubSlug) -> anyhow::Result<ClubApp> {
    let conn = &mut *job.conn()?;
    if let Some(found) = clubs::webroot(conn, slug.as_str(), app.name.as_str())? {
        return Ok(found);
    }
    let message = match clubs::by_slug(conn, slug.as_str())? {
        None => format!("there is no club {slug}"),
        Some(_) => format!("club {slug} does not run the application {}", app.name),
    };
    Err(crate::domain::Refusal::NotFound(message).into())
}

/// A club's webroot, checked to lie under `webroot_base` as recorded.
fn webroot_of(settings: &Settings, club: &ClubApp) -> anyhow::Result<std::path::PathBuf> {
    let resolved = switch::resolve_under(&settings.webroot_base, club.webroot.as_ref())
        .with_context(|| format!("club {}: nothing was changed", club.slug))?;
    if resolved.as_os_str() != club.webroot.as_str() {
        bail!(
            "club {}: webroot {} now resolves to {}; nothing was changed",
            club.slug,
            club.webroot,
            resolved.display()
        );
    }
    Ok(resolved)
}

/// `app` alone, or every application when `None`.
fn one_or_every<'s>(settings: &'s Settings, app: Option<&'s App>) -> &'s [App] {
    match app {
        Some(app) => std::slice::from_ref(app),
        None => settings.apps(),
    }
}

/// The clubs by id: one look-up per club, not a search of the list (10,000 clubs).
fn by_id(clubs: &[ClubApp]) -> std::collections::HashMap<i32, &ClubApp> {
    clubs.iter().map(|c| (c.club_id, c)).collect()
}

/// "club zermatt", or with several applications "club zermatt's mobile": how progress lines
/// name a webroot.
fn label(settings: &Settings, club: &ClubApp) -> String {
    if settings.several_apps() {
        format!("club {}'s {}", club.slug, club.app)
    } else {
        format!("club {}", club.slug)
    }
}

/// How many clubs a summary names before "and 5 more".
const NAMED: usize = 3;

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
