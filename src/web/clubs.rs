//! The clubs page: each club's release as read from disk (drift flagged), since when and by
//! whom, its Rollback button; and, for admins, adding and forgetting clubs.

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::{HttpResponse, web};
use askama::Template;
use askama_web::WebTemplate;
use diesel::SqliteConnection;
use serde::Deserialize;

use super::{AppState, CsrfForm, Nav, Staff, form};
use crate::config::Settings;
use crate::db::{clubs, switches};
use crate::domain::{ClubScope, ClubSlug, JobSpec, ReleaseName, Role};
use crate::error::AppError;
use crate::inventory::{self, AddClub};
use crate::pipeline::switch::{self, Webroot};

/// One row of the clubs table.
pub struct Row {
    pub slug: String,
    pub name: String,
    pub release: Option<String>,
    pub problem: Option<String>,
    pub drift: Option<String>,
    pub since: Option<String>,
    pub by: Option<String>,
    pub rollback_to: Option<String>,
    /// The webroot is a legacy copy waiting to be adopted.
    pub legacy: bool,
    /// The club's kept legacy copies: directory name and size in words.
    pub kept: Vec<(String, String)>,
}

#[derive(Template, WebTemplate)]
#[template(path = "clubs.html")]
pub struct ClubsPage {
    nav: Nav,
    rows: Arc<Vec<Row>>,
    scope: Option<ClubScope>,
}

impl ClubsPage {
    /// Whether the viewer may roll back or deploy to this club.
    fn may_change(&self, slug: &str) -> bool {
        self.scope.as_ref().is_some_and(|scope| scope.allows(slug))
    }
}

/// Every club's row: its link read from disk, its newest switch, its rollback target.
pub fn read_rows(settings: &Settings, conn: &mut SqliteConnection) -> anyhow::Result<Vec<Row>> {
    let ids: HashMap<String, i32> = clubs::all(conn)?
        .into_iter()
        .map(|c| (c.slug, c.id))
        .collect();
    let latest = switches::latest_per_club(conn)?;
    let targets = switches::rollback_targets(conn)?;
    let statuses = inventory::status(settings, conn)?;
    let mut kept: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for copy in crate::pipeline::legacy::kept_copies(&settings.legacy_dir(), None)? {
        let name = copy
            .backup
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        kept.entry(copy.slug)
            .or_default()
            .push((name, size_in_words(copy.bytes)));
    }
    Ok(statuses
        .into_iter()
        .map(|club| {
            let id = ids.get(&club.slug).copied();
            let last = id.and_then(|id| latest.get(&id));
            let drift = club.drift.then(|| {
                club.recorded_release
                    .clone()
                    .unwrap_or_else(|| "no release".into())
            });
            Row {
                since: last.map(|s| s.switched_at.format("%Y-%m-%d %H:%M UTC").to_string()),
                by: last.map(|s| s.actor.clone()),
                rollback_to: id.and_then(|id| targets.get(&id).cloned()),
                legacy: club.legacy,
                kept: kept.remove(&club.slug).unwrap_or_default(),
                slug: club.slug,
                name: club.name,
                release: club.release,
                problem: club.problem,
                drift,
            }
        })
        .collect())
}

/// "12.3 MB", "840 KB", "17 bytes".
pub fn size_in_words(bytes: u64) -> String {
    match bytes {
        b if b >= 1_000_000 => format!("{:.1} MB", b as f64 / 1e6),
        b if b >= 1_000 => format!("{:.0} KB", b as f64 / 1e3),
        b => format!("{b} bytes"),
    }
}

/// `GET /clubs`.
pub async fn page(staff: Staff, state: web::Data<AppState>) -> Result<ClubsPage, AppError> {
    let rows = state.club_rows().await?;
    let scope = match staff.role {
        Role::Admin => Some(ClubScope::All),
        Role::Deployer => Some(staff.scope.clone()),
        Role::Viewer => None,
    };
    Ok(ClubsPage {
        nav: staff.nav("clubs"),
        rows,
        scope,
    })
}

#[derive(Template, WebTemplate)]
#[template(path = "rollback.html")]
pub struct RollbackPage {
    nav: Nav,
    slug: String,
    name: String,
    current: String,
    target: String,
    reload: bool,
}

/// `GET /clubs/{slug}/rollback`: names the release the club would go back to, and asks.
pub async fn rollback_confirm(
    staff: Staff,
    state: web::Data<AppState>,
    slug: web::Path<String>,
) -> Result<RollbackPage, AppError> {
    let slug = ClubSlug::parse(&slug)?;
    if !staff.may_change(slug.as_str()) {
        return Err(AppError::not_allowed(&format!("roll back club {slug}")));
    }
    let wanted = slug.clone();
    let (name, current, target) = state
        .db(move |settings, conn| {
            let club = club_or_404(conn, &wanted)?;
            let on_disk = switch::inspect(club.webroot.as_ref(), &settings.releases_dir())?;
            let Webroot::Release(current) = on_disk else {
                return Err(AppError::BadRequest(format!(
                    "Club {} does not run a release now, so there is nothing to roll back.",
                    club.name
                ))
                .into());
            };
            let target = previous(conn, club.id, &current)?.ok_or_else(|| {
                AppError::BadRequest(format!(
                    "Club {} has no earlier release to go back to.",
                    club.name
                ))
            })?;
            Ok((club.name, current.to_string(), target))
        })
        .await?;
    Ok(RollbackPage {
        nav: staff.nav("clubs"),
        slug: slug.to_string(),
        name,
        current,
        target,
        reload: state.settings.reload.policy.reloads_after(false),
    })
}

/// The newest release in a club's history it does not run and was not rolled back from.
fn previous(
    conn: &mut diesel::SqliteConnection,
    club_id: i32,
    current: &ReleaseName,
) -> anyhow::Result<Option<String>> {
    let bad = switches::bad_for(conn, club_id)?;
    Ok(switches::history(conn, club_id)?
        .into_iter()
        .map(|s| s.to_release)
        .find(|r| r != current.as_str() && !bad.contains(r)))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RollbackForm {
    csrf: String,
    /// The release the confirmation page named: the job goes exactly there.
    to: String,
}

/// `POST /clubs/{slug}/rollback`: queues the rollback and shows its job.
pub async fn rollback(
    staff: Staff,
    state: web::Data<AppState>,
    slug: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    let posted: RollbackForm = form(&body)?;
    staff.check_csrf(&posted.csrf)?;
    let club = ClubSlug::parse(&slug)?;
    if !staff.may_change(club.as_str()) {
        return Err(AppError::not_allowed(&format!("roll back club {club}")));
    }
    let to = if posted.to.is_empty() {
        None
    } else {
        Some(ReleaseName::parse(&posted.to)?.to_string())
    };
    super::deploy::queue(&staff, &state, JobSpec::Rollback { club, to }).await
}

/// The club `slug`, or a 404 saying there is none.
pub fn club_or_404(conn: &mut SqliteConnection, slug: &ClubSlug) -> anyhow::Result<clubs::Club> {
    clubs::by_slug(conn, slug.as_str())?
        .ok_or_else(|| AppError::NotFound(format!("There is no club {slug}.")).into())
}

/// A 303 redirect.
pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header(("Location", location))
        .finish()
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AddClubForm {
    csrf: String,
    slug: String,
    name: String,
    webroot: String,
    url: String,
}

/// `POST /clubs` (admins): adds a club.
pub async fn add(
    staff: Staff,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    let posted: AddClubForm = form(&body)?;
    staff.check_csrf(&posted.csrf)?;
    staff.require(Role::Admin, "add clubs")?;
    let actor = staff.user.name.clone();
    state
        .db(move |settings, conn| {
            let name = Some(posted.name.trim()).filter(|n| !n.is_empty());
            let url = Some(posted.url.trim()).filter(|u| !u.is_empty());
            inventory::add_club(
                settings,
                conn,
                &actor,
                &AddClub {
                    slug: posted.slug.trim(),
                    webroot: posted.webroot.trim().as_ref(),
                    name,
                    url,
                },
            )
        })
        .await?;
    Ok(see_other("/clubs"))
}

#[derive(Template, WebTemplate)]
#[template(path = "remove_club.html")]
pub struct RemovePage {
    nav: Nav,
    slug: String,
    name: String,
    webroot: String,
}

/// `GET /clubs/{slug}/remove` (admins): asks before forgetting a club.
pub async fn remove_confirm(
    staff: Staff,
    state: web::Data<AppState>,
    slug: web::Path<String>,
) -> Result<RemovePage, AppError> {
    staff.require(Role::Admin, "remove clubs")?;
    let slug = ClubSlug::parse(&slug)?;
    let club = state.db(move |_, conn| club_or_404(conn, &slug)).await?;
    Ok(RemovePage {
        nav: staff.nav("clubs"),
        slug: club.slug,
        name: club.name,
        webroot: club.webroot,
    })
}

/// `POST /clubs/{slug}/remove` (admins): forgets the club; its webroot is left alone.
pub async fn remove(
    staff: Staff,
    state: web::Data<AppState>,
    slug: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    let posted: CsrfForm = form(&body)?;
    staff.check_csrf(&posted.csrf)?;
    staff.require(Role::Admin, "remove clubs")?;
    let slug = slug.into_inner();
    let actor = staff.user.name.clone();
    state
        .db(move |_, conn| inventory::remove_club(conn, &actor, &slug))
        .await?;
    Ok(see_other("/clubs"))
}
