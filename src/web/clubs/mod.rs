//! The clubs page: each club's release as read from disk (drift flagged), since when and by
//! whom, its Rollback button; and, for admins, adding and forgetting clubs.

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::{HttpResponse, web};
use askama::Template;
use askama_web::WebTemplate;
use serde::Deserialize;

use super::ui::{
    app_names, club_or_404, newest_first_tags, see_other, size_in_words, webroot_or_404,
};
use super::{Admin, AppQuery, AppState, CsrfForm, Nav, NoFields, Staff};
use crate::config::Settings;
use crate::db::Conn;
use crate::db::{clubs, switches};
use crate::domain::{ClubScope, ClubSlug, JobSpec, ReleaseName, Role};
use crate::pipeline::switch::{self, Webroot};
use crate::service::inventory::{self, AddClub};
use crate::web::error::AppError;

mod club;
mod edit;
mod import;
mod rollback;

pub use club::{club_page, edit as edit_club};
pub use edit::{add, change_group, remove, remove_confirm};
pub use import::{export, import, import_preview, import_template};
pub use rollback::{rollback, rollback_confirm};

/// One club's webroot of one application: a cell of the clubs matrix.
#[derive(Clone)]
pub struct Cell {
    pub app: String,
    /// The address of the club's site of this application.
    pub url: Option<String>,
    pub release: Option<String>,
    /// The release's tag and commit id, shown apart.
    pub version: Option<(String, String)>,
    pub problem: Option<String>,
    pub drift: Option<String>,
    pub since: Option<chrono::NaiveDateTime>,
    pub by: Option<String>,
    pub rollback_to: Option<String>,
    /// The webroot is a legacy copy waiting to be adopted.
    pub legacy: bool,
    /// Nothing is at the webroot yet: the club awaits its first deploy.
    pub waiting: bool,
    /// The kept legacy copies of this webroot: directory name and size in words.
    pub kept: Vec<(String, String)>,
    /// The last health check after a switch, if any.
    pub health: Option<clubs::Health>,
}

impl Cell {
    /// The last health check's verdict: `healthy`, `failed`, `unchecked`, or `never`.
    pub fn health_word(&self) -> &str {
        self.health.as_ref().map_or("never", |h| h.health.as_str())
    }
}

/// One row of the clubs matrix: a club, and a cell per configured application (`None`
/// where the club does not run it).
#[derive(Clone)]
pub struct Row {
    pub slug: String,
    pub name: String,
    pub cells: Vec<Option<Cell>>,
    /// The groups the club is in.
    pub groups: Vec<String>,
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
    /// The columns an import of this installation takes.
    import_columns: Vec<String>,
    /// The filters as asked.
    query: ClubsQuery,
    /// The rows the filters let through, this page's only (indices into `rows`).
    shown: Vec<usize>,
    /// How many rows the filters let through in all.
    matching: usize,
    /// The first shown row's number (1-based) and the links to the pages around.
    first: usize,
    previous: Option<String>,
    next: Option<String>,
    /// The choices of the release and group filters.
    releases: Vec<String>,
    groups: Vec<(String, usize)>,
}

/// How many clubs a page of the clubs list shows.
pub const CLUBS_PER_PAGE: usize = 50;

/// The release filter's value for clubs that run no release (no tag can be written so).
pub const NO_RELEASE: &str = "(none)";

/// The clubs list showing the clubs whose webroot of `app` runs `release`.
pub fn release_link(app: &str, release: &str) -> String {
    format!(
        "/clubs?app={}&release={}",
        crate::web::error::urlencode(app),
        crate::web::error::urlencode(release)
    )
}

/// The clubs list's filters and page (`/clubs?q=zer&app=mobile&release=v2&health=failed
/// &group=canary&page=2`): every filter is part of the address, so a view can be shared.
#[derive(Deserialize, Default, Clone)]
#[serde(default)]
pub struct ClubsQuery {
    /// Part of the club's name or slug.
    pub q: String,
    pub app: String,
    /// A tag or release name run by the club (of `app`, when given).
    pub release: String,
    /// `healthy`, `failed`, `unchecked` or `never` (of `app`, when given).
    pub health: String,
    pub group: String,
    /// 1-based.
    pub page: usize,
}

impl ClubsQuery {
    /// Whether `row` passes every filter.
    pub fn admits(&self, row: &Row, apps: &[String]) -> bool {
        if !crate::domain::search_finds(&self.q, &row.name, &row.slug) {
            return false;
        }
        let group = self.group.trim();
        if !group.is_empty() && !row.groups.iter().any(|g| g == group) {
            return false;
        }
        let app = self.app.trim();
        let cells = row
            .cells
            .iter()
            .zip(apps)
            .filter(|(_, a)| app.is_empty() || a.as_str() == app)
            .filter_map(|(cell, _)| cell.as_ref());
        let (release, health) = (self.release.trim(), self.health.trim());
        let mut any = false;
        for cell in cells {
            let runs = release.is_empty()
                || (release == NO_RELEASE && cell.release.is_none())
                || cell.release.as_deref() == Some(release)
                || cell.version.as_ref().is_some_and(|(tag, _)| tag == release);
            if runs && (health.is_empty() || cell.health_word() == health) {
                any = true;
            }
        }
        any
    }

    /// This view's address with `page` instead of its own.
    pub fn link(&self, page: usize) -> String {
        let mut parts = Vec::new();
        for (key, value) in [
            ("q", &self.q),
            ("app", &self.app),
            ("release", &self.release),
            ("health", &self.health),
            ("group", &self.group),
        ] {
            if !value.trim().is_empty() {
                parts.push(format!(
                    "{key}={}",
                    crate::web::error::urlencode(value.trim())
                ));
            }
        }
        if page > 1 {
            parts.push(format!("page={page}"));
        }
        if parts.is_empty() {
            "/clubs".to_owned()
        } else {
            format!("/clubs?{}", parts.join("&"))
        }
    }

    /// Whether any filter is set.
    pub fn filtering(&self) -> bool {
        [&self.q, &self.app, &self.release, &self.health, &self.group]
            .iter()
            .any(|v| !v.trim().is_empty())
    }
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

    /// The import's header for this installation's applications.
    fn import_header(&self) -> String {
        self.import_columns.join(",")
    }

    /// The rows this page shows.
    fn shown_rows(&self) -> impl Iterator<Item = &Row> {
        self.shown.iter().map(|i| &self.rows[*i])
    }

    /// This view's own address.
    fn here(&self) -> String {
        self.query.link(self.query.page)
    }

    /// "Clubs 51 to 100 of 1,000" / "3 clubs".
    fn counted(&self) -> String {
        let what = if self.query.filtering() {
            format!(
                "{} of {} match",
                self.matching,
                crate::domain::count(self.rows.len(), "club")
            )
        } else {
            crate::domain::count(self.rows.len(), "club")
        };
        if self.matching > self.shown.len() {
            format!(
                "{what}; showing {} to {}",
                self.first,
                self.first + self.shown.len() - 1
            )
        } else {
            what
        }
    }
}

/// Every club's row: each webroot's link read from disk, its newest switch, its rollback
/// target, its kept legacy copies.
pub fn read_rows(settings: &Settings, conn: &mut Conn) -> anyhow::Result<Vec<Row>> {
    let ids: HashMap<String, i32> = clubs::all(conn)?
        .into_iter()
        .map(|c| (c.slug, c.id))
        .collect();
    let latest = switches::latest_per_club(conn)?;
    let mut groups = crate::db::groups::by_slug(conn)?;
    let mut health: HashMap<(i32, String), clubs::Health> = clubs::health(conn)?
        .into_iter()
        .map(|h| ((h.club_id, h.app.clone()), h))
        .collect();
    let statuses = inventory::status(settings, conn, None)?;
    // Rollback targets from what each webroot runs on disk, as the rollback job reads it.
    let running: HashMap<(i32, String), String> = statuses
        .iter()
        .filter_map(|club| {
            let id = ids.get(&club.slug)?;
            Some(((*id, club.app.clone()), club.release.clone()?))
        })
        .collect();
    let targets = switches::rollback_targets(conn, None, &running)?;
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
            since: last.map(|s| s.switched_at),
            by: last.map(|s| s.actor.clone()),
            rollback_to: key
                .as_ref()
                .and_then(|k| targets.get(k))
                .map(|r| super::tag_and_commit(r).0),
            version: club.release.as_deref().map(super::tag_and_commit),
            url: club.url.clone(),
            legacy: club.legacy,
            waiting: club.no_link_yet,
            kept: kept
                .remove(&(club.slug.clone(), club.app.clone()))
                .unwrap_or_default(),
            health: key.as_ref().and_then(|k| health.remove(k)),
            release: club.release,
            problem: club.problem,
            drift,
            app: club.app,
        };
        // Statuses come by slug, then application: a club's cells are consecutive.
        if rows.last().is_none_or(|row| row.slug != club.slug) {
            rows.push(Row {
                groups: groups.remove(&club.slug).unwrap_or_default(),
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

/// `GET /clubs[?q=…&app=…&release=…&health=…&group=…&page=…]`.
pub async fn page(
    staff: Staff,
    state: web::Data<AppState>,
    query: web::Query<ClubsQuery>,
) -> Result<ClubsPage, AppError> {
    let rows = state.club_rows().await?;
    let scope = match staff.role {
        Role::Admin => Some(ClubScope::All),
        Role::Deployer => Some(staff.scope.clone()),
        Role::Viewer => None,
    };
    let query = query.into_inner();
    let apps = app_names(&state.settings);
    let matching: Vec<usize> = (0..rows.len())
        .filter(|i| query.admits(&rows[*i], &apps))
        .collect();
    let pages = matching.len().div_ceil(CLUBS_PER_PAGE).max(1);
    let page = query.page.clamp(1, pages);
    let start = (page - 1) * CLUBS_PER_PAGE;
    let shown: Vec<usize> = matching
        .iter()
        .skip(start)
        .take(CLUBS_PER_PAGE)
        .copied()
        .collect();
    let releases = newest_first_tags(
        rows.iter()
            .flat_map(|r| r.runs())
            .filter_map(|c| c.version.as_ref().map(|(tag, _)| tag.as_str())),
    );
    let mut groups: std::collections::BTreeMap<String, usize> = Default::default();
    for group in rows.iter().flat_map(|r| &r.groups) {
        *groups.entry(group.clone()).or_default() += 1;
    }
    Ok(ClubsPage {
        nav: staff.nav("clubs"),
        apps,
        previous: (page > 1).then(|| query.link(page - 1)),
        next: (page < pages).then(|| query.link(page + 1)),
        first: start + 1,
        matching: matching.len(),
        shown,
        rows,
        scope,
        import_columns: crate::service::import::header(&state.settings),
        query,
        releases,
        groups: groups.into_iter().collect(),
    })
}
