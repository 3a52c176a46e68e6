//! The clubs page: each club's release as read from disk (drift flagged), since when and by
//! whom, its Rollback button; and, for admins, adding and forgetting clubs.

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::{HttpResponse, web};
use askama::Template;
use askama_web::WebTemplate;
use diesel::SqliteConnection;
use serde::Deserialize;

use super::{AppQuery, AppState, CsrfForm, Nav, Staff, form};
use crate::config::Settings;
use crate::db::{clubs, switches};
use crate::domain::{ClubScope, ClubSlug, JobSpec, ReleaseName, Role};
use crate::error::AppError;
use crate::inventory::{self, AddClub};
use crate::pipeline::switch::{self, Webroot};

/// One club's webroot of one application: a cell of the clubs matrix.
pub struct Cell {
    pub app: String,
    /// The address of the club's site of this application.
    pub url: Option<String>,
    pub release: Option<String>,
    /// The release's tag and commit id, shown apart.
    pub version: Option<(String, String)>,
    pub problem: Option<String>,
    pub drift: Option<String>,
    pub since: Option<String>,
    pub by: Option<String>,
    pub rollback_to: Option<String>,
    /// The webroot is a legacy copy waiting to be adopted.
    pub legacy: bool,
    /// The kept legacy copies of this webroot: directory name and size in words.
    pub kept: Vec<(String, String)>,
}

/// One row of the clubs matrix: a club, and a cell per configured application (`None`
/// where the club does not run it).
pub struct Row {
    pub slug: String,
    pub name: String,
    pub cells: Vec<Option<Cell>>,
}

impl Row {
    /// The club's cells of the applications it runs.
    pub fn runs(&self) -> impl Iterator<Item = &Cell> {
        self.cells.iter().flatten()
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "clubs.html")]
pub struct ClubsPage {
    nav: Nav,
    apps: Vec<String>,
    rows: Arc<Vec<Row>>,
    scope: Option<ClubScope>,
}

impl ClubsPage {
    /// Whether the viewer may roll back or deploy to this club.
    fn may_change(&self, slug: &str) -> bool {
        self.scope.as_ref().is_some_and(|scope| scope.allows(slug))
    }

    /// Whether application names are worth showing (there is more than one).
    fn several(&self) -> bool {
        self.apps.len() > 1
    }
}

/// Every club's row: each webroot's link read from disk, its newest switch, its rollback
/// target, its kept legacy copies.
pub fn read_rows(settings: &Settings, conn: &mut SqliteConnection) -> anyhow::Result<Vec<Row>> {
    let ids: HashMap<String, i32> = clubs::all(conn)?
        .into_iter()
        .map(|c| (c.slug, c.id))
        .collect();
    let latest = switches::latest_per_club(conn)?;
    let targets = switches::rollback_targets(conn)?;
    let statuses = inventory::status(settings, conn, None)?;
    let mut kept: HashMap<(String, String), Vec<(String, String)>> = HashMap::new();
    for app in settings.apps() {
        for copy in crate::pipeline::legacy::kept_copies(&app.legacy_dir, None)? {
            let name = copy
                .backup
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            kept.entry((copy.slug, app.name.to_string()))
                .or_default()
                .push((name, size_in_words(copy.bytes)));
        }
    }
    let apps: Vec<&str> = settings.apps().iter().map(|a| a.name.as_str()).collect();
    let mut rows: Vec<Row> = Vec::new();
    for club in statuses {
        let Some(column) = apps.iter().position(|a| *a == club.app) else {
            continue;
        };
        let key = ids.get(&club.slug).map(|id| (*id, club.app.clone()));
        let last = key.as_ref().and_then(|k| latest.get(k));
        let drift = club.drift.then(|| {
            club.recorded_release
                .clone()
                .unwrap_or_else(|| "no release".into())
        });
        let cell = Cell {
            since: last.map(|s| s.switched_at.format("%Y-%m-%d %H:%M UTC").to_string()),
            by: last.map(|s| s.actor.clone()),
            rollback_to: key
                .as_ref()
                .and_then(|k| targets.get(k))
                .map(|r| super::tag_and_commit(r).0),
            version: club.release.as_deref().map(super::tag_and_commit),
            url: club.url.clone(),
            legacy: club.legacy,
            kept: kept
                .remove(&(club.slug.clone(), club.app.clone()))
                .unwrap_or_default(),
            release: club.release,
            problem: club.problem,
            drift,
            app: club.app,
        };
        // Statuses come by slug, then application: a club's cells are consecutive.
        if rows.last().is_none_or(|row| row.slug != club.slug) {
            rows.push(Row {
                slug: club.slug,
                name: club.name,
                cells: apps.iter().map(|_| None).collect(),
            });
        }
        let row = rows.last_mut().expect("just pushed");
        row.cells[column] = Some(cell);
    }
    Ok(rows)
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
        apps: app_names(&state.settings),
        rows,
        scope,
    })
}

/// The configured applications' names, in order.
pub fn app_names(settings: &Settings) -> Vec<String> {
    settings.apps().iter().map(|a| a.name.to_string()).collect()
}

#[derive(Template, WebTemplate)]
#[template(path = "rollback.html")]
pub struct RollbackPage {
    nav: Nav,
    app: String,
    slug: String,
    name: String,
    current: String,
    target: String,
    reload: bool,
}

/// `GET /clubs/{slug}/rollback?app=…`: names the release the club's webroot of the
/// application would go back to, and asks.
pub async fn rollback_confirm(
    staff: Staff,
    state: web::Data<AppState>,
    slug: web::Path<String>,
    app: web::Query<AppQuery>,
) -> Result<RollbackPage, AppError> {
    let slug = ClubSlug::parse(&slug)?;
    if !staff.may_change(slug.as_str()) {
        return Err(AppError::not_allowed(&format!("roll back club {slug}")));
    }
    let app = app.resolve(&state.settings)?.name.clone();
    let wanted = slug.clone();
    let app_name = app.clone();
    let (name, current, target) = state
        .db(move |settings, conn| {
            let club = webroot_or_404(conn, &wanted, app_name.as_str())?;
            let app = settings.app(Some(app_name.as_str()))?;
            let on_disk = switch::inspect(club.webroot.as_ref(), &app.releases_dir)?;
            let Webroot::Release(current) = on_disk else {
                return Err(AppError::BadRequest(format!(
                    "{} does not run a release now, so there is nothing to roll back.",
                    club.name
                ))
                .into());
            };
            let target = previous(conn, &club, &current)?.ok_or_else(|| {
                AppError::BadRequest(format!(
                    "{} has no earlier release to go back to.",
                    club.name
                ))
            })?;
            Ok((club.name, current.to_string(), target))
        })
        .await?;
    Ok(RollbackPage {
        nav: staff.nav("clubs"),
        app: app.to_string(),
        slug: slug.to_string(),
        name,
        current,
        target,
        reload: state.settings.reload.policy.reloads_after(false),
    })
}

/// The newest release in a club's history of an application it does not run and was not
/// rolled back from.
fn previous(
    conn: &mut diesel::SqliteConnection,
    club: &clubs::ClubApp,
    current: &ReleaseName,
) -> anyhow::Result<Option<String>> {
    Ok(switches::previous(conn, club.club_id, &club.app, current.as_str())?.map(|s| s.to_release))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RollbackForm {
    csrf: String,
    once: String,
    /// The release the confirmation page named: the job goes exactly there.
    to: String,
}

/// `POST /clubs/{slug}/rollback?app=…`: queues the rollback and shows its job.
pub async fn rollback(
    staff: Staff,
    state: web::Data<AppState>,
    slug: web::Path<String>,
    app: web::Query<AppQuery>,
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
    let app = app.resolve(&state.settings)?.name.clone();
    super::deploy::queue(
        &staff,
        &state,
        JobSpec::Rollback { app, club, to },
        &posted.once,
    )
    .await
}

/// The club `slug`, or a 404 saying there is none.
pub fn club_or_404(conn: &mut SqliteConnection, slug: &ClubSlug) -> anyhow::Result<clubs::Club> {
    clubs::by_slug(conn, slug.as_str())?
        .ok_or_else(|| AppError::NotFound(format!("There is no club {slug}.")).into())
}

/// Club `slug`'s webroot of `app`, or a 404 saying there is no such club or it does not run
/// the application.
pub fn webroot_or_404(
    conn: &mut SqliteConnection,
    slug: &ClubSlug,
    app: &str,
) -> anyhow::Result<clubs::ClubApp> {
    if let Some(found) = clubs::webroot(conn, slug.as_str(), app)? {
        return Ok(found);
    }
    let club = club_or_404(conn, slug)?;
    Err(AppError::NotFound(format!("{} does not run {app}.", club.name)).into())
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
    /// One per application, in the order of `app` (an empty webroot: the club does not run
    /// that application), with the address of the club's site of it.
    app: Vec<String>,
    webroot: Vec<String>,
    url: Vec<String>,
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
    let added = state
        .db(move |settings, conn| {
            let name = Some(posted.name.trim()).filter(|n| !n.is_empty());
            let webroots: Vec<(Option<&str>, &std::path::Path)> = posted
                .webroot
                .iter()
                .enumerate()
                .filter(|(_, w)| !w.trim().is_empty())
                .map(|(i, w)| (posted.app.get(i).map(String::as_str), w.trim().as_ref()))
                .collect();
            let urls: Vec<(Option<&str>, &str)> = posted
                .url
                .iter()
                .enumerate()
                .filter(|(_, u)| !u.trim().is_empty())
                .map(|(i, u)| (posted.app.get(i).map(String::as_str), u.trim()))
                .collect();
            if webroots.is_empty() {
                return Err(AppError::BadRequest(
                    "Give the club a webroot for at least one application.".into(),
                )
                .into());
            }
            inventory::add_club(
                settings,
                conn,
                &actor,
                &AddClub {
                    slug: posted.slug.trim(),
                    webroots: &webroots,
                    name,
                    urls: &urls,
                },
            )
        })
        .await?;
    let name = added.first().map_or_else(String::new, |c| c.name.clone());
    staff.tell(&state, format!("{name} was added.")).await;
    Ok(see_other("/clubs"))
}

#[derive(Template, WebTemplate)]
#[template(path = "remove_club.html")]
pub struct RemovePage {
    nav: Nav,
    slug: String,
    name: String,
    webroots: Vec<String>,
}

/// `GET /clubs/{slug}/remove` (admins): asks before forgetting a club.
pub async fn remove_confirm(
    staff: Staff,
    state: web::Data<AppState>,
    slug: web::Path<String>,
) -> Result<RemovePage, AppError> {
    staff.require(Role::Admin, "remove clubs")?;
    let slug = ClubSlug::parse(&slug)?;
    let (club, webroots) = state
        .db(move |_, conn| {
            let club = club_or_404(conn, &slug)?;
            let webroots = clubs::webroots_of(conn, slug.as_str())?;
            Ok((club, webroots))
        })
        .await?;
    Ok(RemovePage {
        nav: staff.nav("clubs"),
        slug: club.slug,
        name: club.name,
        webroots: webroots.into_iter().map(|w| w.webroot).collect(),
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
    let forgotten = slug.clone();
    state
        .db(move |_, conn| inventory::remove_club(conn, &actor, &slug))
        .await?;
    staff
        .tell(
            &state,
            format!("Club {forgotten} was forgotten; its webroot was left as it was."),
        )
        .await;
    Ok(see_other("/clubs"))
}

/// How many clubs of each kind an import preview lists.
const SHOWN: usize = 50;

#[derive(Template, WebTemplate)]
#[template(path = "import_preview.html")]
pub struct ImportPreview {
    nav: Nav,
    csv: String,
    outcome: Result<crate::import::Plan, Vec<crate::import::BadRow>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ImportForm {
    csrf: String,
    csv: String,
}

/// Reads the posted CSV as an import plan, or its bad rows (a header that cannot be read is
/// line 1).
async fn import_plan(
    state: &web::Data<AppState>,
    csv: String,
) -> Result<Result<crate::import::Plan, Vec<crate::import::BadRow>>, AppError> {
    state
        .db(
            move |settings, conn| match crate::import::plan(settings, conn, csv.as_bytes()) {
                Ok(plan) => Ok(Ok(plan)),
                Err(e) => match e.downcast::<crate::import::BadRows>() {
                    Ok(bad) => Ok(Err(bad.0)),
                    Err(e) => match e.downcast::<crate::domain::InvalidInput>() {
                        Ok(header) => Ok(Err(vec![crate::import::BadRow {
                            line: 1,
                            reason: header.0,
                        }])),
                        Err(e) => Err(e),
                    },
                },
            },
        )
        .await
}

/// `POST /clubs/import/preview` (admins): what importing the CSV would do, or every bad row.
pub async fn import_preview(
    staff: Staff,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<ImportPreview, AppError> {
    let posted: ImportForm = form(&body)?;
    staff.check_csrf(&posted.csrf)?;
    staff.require(Role::Admin, "import clubs")?;
    let outcome = import_plan(&state, posted.csv.clone()).await?;
    Ok(ImportPreview {
        nav: staff.nav("clubs"),
        csv: posted.csv,
        outcome,
    })
}

/// `POST /clubs/import` (admins): imports the CSV the preview showed, all or nothing.
pub async fn import(
    staff: Staff,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    let posted: ImportForm = form(&body)?;
    staff.check_csrf(&posted.csrf)?;
    staff.require(Role::Admin, "import clubs")?;
    let actor = staff.user.name.clone();
    // Checked again: the clubs may have changed since the preview.
    let summary = state
        .db(move |settings, conn| {
            let plan = crate::import::plan(settings, conn, posted.csv.as_bytes())?;
            crate::import::apply(conn, &actor, &plan)?;
            Ok(plan.summary())
        })
        .await?;
    staff.tell(&state, format!("Imported: {summary}.")).await;
    Ok(see_other("/clubs"))
}
