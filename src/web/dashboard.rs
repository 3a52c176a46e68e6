//! The dashboard: clubs grouped by application, then by the release they run; the running
//! job; recent activity.

use std::collections::BTreeMap;

use actix_web::web;
use askama::Template;
use askama_web::WebTemplate;

use super::ui::RunningNow;
use super::{Admin, AppState, CsrfForm, Nav, NoFields, Staff, count};
use crate::db::audit;
use crate::web::error::AppError;

/// Clubs on one release: how many, and the clubs list showing them.
pub struct Group {
    /// The release's tag and commit id, shown apart.
    pub version: (String, String),
    pub clubs: usize,
    pub link: String,
}

/// One application's clubs, by release, and those awaiting their first deploy.
pub struct AppGroups {
    pub app: String,
    pub clubs: usize,
    pub groups: Vec<Group>,
    pub waiting: usize,
    /// Clubs on no release that do not merely await their first deploy (a legacy copy, a
    /// link changed by hand).
    pub elsewhere: usize,
}

/// A club whose last health check failed, for the dashboard's first lines.
pub struct Unhealthy {
    pub slug: String,
    pub name: String,
    pub app: String,
    pub why: String,
}

/// The last job that failed and is not dealt with yet ([`crate::db::jobs::standing_failure`]).
pub struct Failure {
    pub id: i32,
    pub what: String,
    pub why: String,
    /// A deploy: clubs it switched can be put back from its page.
    pub deploy: bool,
}

/// How many rows of recent activity the dashboard shows.
const RECENT: usize = 10;

/// How many unhealthy clubs the dashboard names before it links to the rest.
const UNHEALTHY_NAMED: usize = 10;

#[derive(Template, WebTemplate)]
#[template(path = "dashboard.html")]
pub struct DashboardPage {
    nav: Nav,
    apps: Vec<AppGroups>,
    several: bool,
    clubs_total: String,
    running: RunningNow,
    /// The newest audit rows, a job's switches folded into one.
    recent: Vec<super::audit::Shown>,
    failure: Option<Failure>,
    /// The first unhealthy clubs, and how many there are.
    unhealthy: Vec<Unhealthy>,
    unhealthy_total: usize,
    /// OPcache warnings staff must see.
    warnings: Vec<String>,
    /// The doctor's problems standing now (the first few), and how many there are.
    doctor: Vec<crate::doctor::Finding>,
    doctor_problems: usize,
}

impl DashboardPage {
    /// "1 club", "3 clubs".
    fn n_clubs(&self, n: &usize) -> String {
        count(*n, "club")
    }
}

/// `GET /`.
pub async fn page(staff: Staff, state: web::Data<AppState>) -> Result<DashboardPage, AppError> {
    let clubs = state.club_rows().await?;
    let mut unhealthy = Vec::new();
    let apps = super::ui::app_names(&state.settings)
        .into_iter()
        .enumerate()
        .map(|(column, app)| {
            let mut by_release: BTreeMap<&str, usize> = BTreeMap::new();
            let (mut waiting, mut elsewhere) = (0, 0);
            for club in clubs.iter() {
                let Some(Some(cell)) = club.cells.get(column) else {
                    continue;
                };
                match &cell.release {
                    Some(release) => *by_release.entry(release).or_default() += 1,
                    None if cell.waiting => waiting += 1,
                    None => elsewhere += 1,
                }
                if let Some(health) = cell.health.as_ref().filter(|h| h.health == "failed") {
                    unhealthy.push(Unhealthy {
                        slug: club.slug.clone(),
                        name: club.name.clone(),
                        app: app.clone(),
                        why: health.note.clone().unwrap_or_default(),
                    });
                }
            }
            AppGroups {
                clubs: by_release.values().sum::<usize>() + waiting + elsewhere,
                groups: by_release
                    .into_iter()
                    .map(|(release, clubs)| Group {
                        version: super::tag_and_commit(release),
                        clubs,
                        link: super::clubs::release_link(&app, release),
                    })
                    .collect(),
                app,
                waiting,
                elsewhere,
            }
        })
        .collect::<Vec<_>>();
    let unhealthy_total = unhealthy.len();
    unhealthy.truncate(UNHEALTHY_NAMED);
    // The clubs' display names, from the rows read already.
    let names = crate::domain::ClubNames::new(
        clubs
            .iter()
            .map(|row| (row.slug.clone(), row.name.clone()))
            .collect(),
    );
    let (running, recent, failure) = state
        .db(move |_, conn| {
            let running = RunningNow::load(conn, &names)?;
            let failure = match crate::db::jobs::standing_failure(conn)? {
                Some(job) => Some(Failure {
                    id: job.id,
                    what: job.title(&names),
                    why: job
                        .error
                        .clone()
                        .or(job.outcome.clone())
                        .unwrap_or_default(),
                    deploy: job.kind == crate::domain::JobKind::Deploy,
                }),
                None => None,
            };
            let (recent, _) = super::audit::read_shown(
                conn,
                audit::Filter {
                    limit: RECENT as i64,
                    ..Default::default()
                },
                RECENT,
            )?;
            let mut recent = super::audit::fold(recent, &names);
            recent.truncate(RECENT);
            Ok((running, recent, failure))
        })
        .await?;
    let warnings = state
        .opcache()
        .await?
        .map(|i| i.warnings)
        .unwrap_or_default();
    let problems: Vec<crate::doctor::Finding> = state
        .doctor_reading()
        .and_then(|r| r.report.ok())
        .map(|report| {
            report
                .findings
                .into_iter()
                .filter(|f| f.level == crate::doctor::Level::Problem)
                .collect()
        })
        .unwrap_or_default();
    Ok(DashboardPage {
        nav: staff.nav("dashboard"),
        doctor_problems: problems.len(),
        doctor: problems.into_iter().take(3).collect(),
        warnings,
        several: apps.len() > 1,
        apps,
        clubs_total: count(clubs.len(), "club"),
        running,
        recent,
        failure,
        unhealthy,
        unhealthy_total,
    })
}

#[derive(Template, WebTemplate)]
#[template(path = "opcache.html")]
pub struct OpcachePage {
    nav: Nav,
    found: Result<crate::service::opcache::Insight, String>,
}

impl OpcachePage {
    fn mb(&self, bytes: &u64) -> String {
        crate::service::opcache::mb(*bytes)
    }
}

/// `GET /opcache`: what OPcache holds, per release, with its warnings.
pub async fn opcache_page(
    staff: Staff,
    state: web::Data<AppState>,
) -> Result<OpcachePage, AppError> {
    Ok(OpcachePage {
        nav: staff.nav("opcache"),
        found: state.opcache().await?,
    })
}

#[derive(Template, WebTemplate)]
#[template(path = "doctor.html")]
pub struct DoctorPage {
    nav: Nav,
    reading: Option<super::DoctorReading>,
}

impl DoctorPage {
    /// The findings worth attention first, then the rest.
    fn ordered(report: &crate::doctor::Report) -> Vec<&crate::doctor::Finding> {
        let mut findings: Vec<&crate::doctor::Finding> = report.findings.iter().collect();
        findings.sort_by_key(|f| std::cmp::Reverse(f.level));
        findings
    }

    fn counted(report: &crate::doctor::Report) -> String {
        use crate::doctor::Level;
        format!(
            "{}, {}",
            count(report.count(Level::Problem), "problem"),
            count(report.count(Level::Warning), "warning")
        )
    }
}

/// `GET /doctor` (admins): the doctor's last report, each finding with its fix.
pub async fn doctor_page(staff: Admin, state: web::Data<AppState>) -> Result<DoctorPage, AppError> {
    Ok(DoctorPage {
        nav: staff.nav("doctor"),
        reading: state.doctor_reading(),
    })
}

/// `POST /doctor` (admins): checks again now, and shows the report.
pub async fn doctor_again(
    CsrfForm { staff, .. }: CsrfForm<NoFields, Admin>,
    state: web::Data<AppState>,
) -> Result<actix_web::HttpResponse, AppError> {
    let reading = state.run_doctor().await;
    let message = match &reading.report {
        Ok(report) => format!("Checked again: {}.", DoctorPage::counted(report)),
        Err(why) => format!("The check could not be made: {why}"),
    };
    staff.tell(&state, message).await;
    Ok(super::ui::see_other("/doctor"))
}
