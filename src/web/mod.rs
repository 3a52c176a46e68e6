//! The web panel: the route table, the state handlers share, and the helpers every page
//! uses. Handlers are thin: they check who asks, read or queue, and render; they never run
//! pipeline steps themselves.

mod account;
mod audit;
mod auth;
mod clubs;
mod dashboard;
mod deploy;
pub mod error;
mod extract;
mod jobs;
mod legacy;
pub mod origin;
mod queue;
mod staff;
mod statics;
pub mod ui;

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::middleware::DefaultHeaders;
use actix_web::web;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

pub use auth::{Nav, Staff};
pub use extract::{Admin, CsrfForm, Deployer, NoFields};

use crate::config::Settings;
use crate::db::Conn;
use crate::db::DbPool;
use crate::web::error::AppError;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub pool: DbPool,
    /// Wakes the worker when a job is queued.
    pub wake: Arc<Notify>,
    /// The newest job event's id, whoever wrote it (see [`crate::jobs::watch`]): live job
    /// pages wait on it.
    pub events: tokio::sync::watch::Receiver<i32>,
    /// The clubs as last read from disk, shared by concurrent page views.
    pub clubs: Arc<tokio::sync::Mutex<Option<ClubsSnapshot>>>,
    /// Bounds the password checks sign-ins may run at once, fairly.
    pub sign_ins: Arc<crate::auth::gate::SignInGate>,
    /// What the proxy in front sends in `X-Clubdeploy-Proxy` (`[web] proxy_secret_file`).
    pub proxy_secret: Option<Arc<str>>,
    /// The trusted proxy's address a request came from with `X-Forwarded-For` but without
    /// the proxy's secret, the first time it happened (a proxy configuration without the
    /// header, or something else on that machine): the doctor's reading says so.
    pub unvouched_proxy: Arc<std::sync::OnceLock<std::net::IpAddr>>,
    /// Live job streams open per session.
    pub streams: Arc<std::sync::Mutex<std::collections::HashMap<i32, usize>>>,
    /// OPcache's figures as last read, and when (pages share a reading for a few seconds,
    /// and serve the last one while a fresh one is read in the background).
    pub opcache: Arc<std::sync::Mutex<OpcacheCache>>,
    /// Told when a reading of OPcache's figures ends.
    pub opcache_read: Arc<Notify>,
    /// The doctor's last report (at start, then hourly, or when an admin asks), and when.
    pub doctor: Arc<std::sync::Mutex<Option<DoctorReading>>>,
}

/// A report of `clubdeploy doctor`, or why it could not be made, and when.
#[derive(Clone)]
pub struct DoctorReading {
    pub at: chrono::NaiveDateTime,
    pub report: Result<crate::doctor::Report, String>,
}

/// OPcache's figures, or why they could not be read.
pub type OpcacheReading = Result<crate::service::opcache::Insight, String>;

/// The last reading of OPcache's figures, and whether a fresh one is being made.
#[derive(Default)]
pub struct OpcacheCache {
    reading: Option<(Instant, OpcacheReading)>,
    refreshing: bool,
}

/// How long a page view waits for the very first reading of OPcache's figures; later ones
/// never wait (they show the last reading while a fresh one is made).
const OPCACHE_FIRST_WAIT: Duration = Duration::from_secs(1);

/// Every club's row as read from disk and the database, and when.
pub struct ClubsSnapshot {
    read_at: Instant,
    /// The newest audit row then: any change clubdeploy makes writes a newer one.
    audit_head: Option<i32>,
    rows: Arc<Vec<clubs::Row>>,
    /// A fresh reading is being made in the background.
    refreshing: bool,
}

/// The largest import (a CSV of clubs) accepted.
pub const IMPORT_BODY_LIMIT: usize = 16 << 20;

/// The largest sign-in request body accepted.
pub const LOGIN_BODY_LIMIT: usize = 4096;

/// How long a reading of the clubs' links serves other page views when clubdeploy itself
/// changed nothing (a link edited by hand shows up after at most this long).
const CLUBS_SNAPSHOT_TTL: Duration = Duration::from_secs(1);

/// How old a reading of the clubs' links may be and still serve a page view (while a fresh
/// one is made) when clubdeploy itself changed nothing.
const CLUBS_SNAPSHOT_STALE: Duration = Duration::from_secs(10);

/// How long a reading of OPcache's figures serves other page views.
const OPCACHE_TTL: Duration = Duration::from_secs(5);

/// Lets the addresses staff signed in from lately (the audit log's `login.succeeded` rows)
/// through the sign-in gate first after a restart too.
fn remember_recent_sign_ins(
    settings: &Settings,
    pool: &DbPool,
    gate: &crate::auth::gate::SignInGate,
) -> anyhow::Result<()> {
    use crate::auth::gate::{RECENT_SUCCESS, REMEMBERED_SENDERS};
    let now = crate::db::now();
    let mut conn = pool.get()?;
    let rows = crate::db::audit::list(
        &mut conn,
        &crate::db::audit::Filter {
            action: Some("login.succeeded".into()),
            since: Some(now - chrono::Duration::from_std(RECENT_SUCCESS)?),
            limit: REMEMBERED_SENDERS as i64,
            ..Default::default()
        },
    )?;
    drop(conn);
    let started = std::time::Instant::now();
    for row in rows {
        let age = (now - row.at).to_std().unwrap_or_default();
        let address = row.address.filter(|a| !settings.web.is_proxy(a));
        if let (Some(address), Some(at)) = (address, started.checked_sub(age)) {
            gate.remember(&crate::domain::sign_in_key(&address), at);
        }
    }
    Ok(())
}

impl AppState {
    /// A new state for `settings` on `pool`, watching its database for queued jobs (waking
    /// the worker) and new job events.
    pub fn new(settings: Settings, pool: DbPool) -> anyhow::Result<AppState> {
        let wake = Arc::new(Notify::new());
        let events = crate::jobs::watch::spawn(&settings.database_path(), wake.clone())?;
        let proxy_secret = settings.web.proxy_secret()?.map(Arc::from);
        let sign_ins = crate::auth::gate::SignInGate::new();
        if let Err(e) = remember_recent_sign_ins(&settings, &pool, &sign_ins) {
            eprintln!("warning: cannot read the recent sign-ins from the audit log: {e:#}");
        }
        Ok(AppState {
            settings: Arc::new(settings),
            pool,
            wake,
            events,
            clubs: Arc::new(tokio::sync::Mutex::new(None)),
            sign_ins: Arc::new(sign_ins),
            proxy_secret,
            unvouched_proxy: Arc::default(),
            streams: Arc::default(),
            opcache: Arc::default(),
            opcache_read: Arc::new(Notify::new()),
            doctor: Arc::default(),
        })
    }

    /// Runs the doctor (on the blocking pool: it runs commands and asks the sites; it takes a
    /// database connection only to read the clubs) and keeps its report.
    pub async fn run_doctor(&self) -> DoctorReading {
        let (settings, pool) = (self.settings.clone(), self.pool.clone());
        let unvouched = self.unvouched_proxy.get().copied();
        let report = web::block(move || crate::doctor::examine(&settings, &pool))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| format!("{e:#}")))
            .map(|mut report| {
                if let Some(peer) = unvouched {
                    report.proxy_without_secret(peer);
                }
                report
            });
        let reading = DoctorReading {
            at: crate::db::now(),
            report,
        };
        *self.doctor.lock().unwrap_or_else(|e| e.into_inner()) = Some(reading.clone());
        reading
    }

    /// The doctor's last reading, if it has run.
    pub fn doctor_reading(&self) -> Option<DoctorReading> {
        self.doctor
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Every club's row, read from disk unless a reading made less than a second ago, with
    /// no change by clubdeploy since, can serve. With 1,000 clubs a reading costs ~1,000
    /// `readlink`s and three queries; many staff viewing at once then share one. A reading
    /// up to [`CLUBS_SNAPSHOT_STALE`] old with no change by clubdeploy since serves while a
    /// fresh one is made in the background, so no view waits for a reading only the clock
    /// asked for.
    pub async fn club_rows(&self) -> Result<Arc<Vec<clubs::Row>>, AppError> {
        let head = self
            .db(|_, conn| Ok(crate::db::audit::last_id(conn)?))
            .await?;
        let mut snapshot = self.clubs.lock().await;
        if let Some(found) = snapshot.as_mut()
            && found.audit_head == head
        {
            let age = found.read_at.elapsed();
            if age < CLUBS_SNAPSHOT_TTL {
                return Ok(found.rows.clone());
            }
            if age < CLUBS_SNAPSHOT_STALE {
                if !found.refreshing {
                    found.refreshing = true;
                    let state = self.clone();
                    actix_web::rt::spawn(async move {
                        let read_at = Instant::now();
                        let rows = state.db(clubs::read_rows).await;
                        let mut snapshot = state.clubs.lock().await;
                        match (rows, snapshot.as_mut()) {
                            (Ok(rows), Some(found)) if found.audit_head == head => {
                                found.rows = Arc::new(rows);
                                found.read_at = read_at;
                                found.refreshing = false;
                            }
                            (Err(e), Some(found)) => {
                                found.refreshing = false;
                                eprintln!("warning: cannot read the clubs: {e}");
                            }
                            _ => {}
                        }
                    });
                }
                return Ok(found.rows.clone());
            }
        }
        let read_at = Instant::now();
        let rows = Arc::new(self.db(clubs::read_rows).await?);
        *snapshot = Some(ClubsSnapshot {
            read_at,
            audit_head: head,
            rows: rows.clone(),
            refreshing: false,
        });
        Ok(rows)
    }

    /// OPcache's figures through a live release's probe, read at most every few seconds, in
    /// the background: a page is never held up by a slow site. It gets the last reading (a
    /// fresh one is started when that is older than a few seconds); only the very first
    /// waits, at most a second, and then says the figures are on their way.
    pub async fn opcache(&self) -> Result<OpcacheReading, AppError> {
        let notified = self.opcache_read.notified();
        tokio::pin!(notified);
        // Listening before looking: a reading that ends meanwhile still wakes this view.
        notified.as_mut().enable();
        if let Some(found) = self.opcache_or_refresh() {
            return Ok(found);
        }
        let _ = tokio::time::timeout(OPCACHE_FIRST_WAIT, notified).await;
        Ok(self.opcache_or_refresh().unwrap_or_else(|| {
            Err(
                "OPcache's figures are still being read (a club's site is slow to answer); \
                 they show on the next page view"
                    .into(),
            )
        }))
    }

    /// The last reading of OPcache's figures, if any; starts a fresh one in the background
    /// when there is none or it is older than [`OPCACHE_TTL`] and none is being made.
    fn opcache_or_refresh(&self) -> Option<OpcacheReading> {
        let mut cache = self.opcache.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = cache
            .reading
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < OPCACHE_TTL);
        if !fresh && !cache.refreshing {
            cache.refreshing = true;
            let state = self.clone();
            actix_web::rt::spawn(async move {
                let found = state
                    .read_opcache()
                    .await
                    .unwrap_or_else(|e| Err(e.to_string()));
                let mut cache = state.opcache.lock().unwrap_or_else(|e| e.into_inner());
                cache.reading = Some((Instant::now(), found));
                cache.refreshing = false;
                drop(cache);
                state.opcache_read.notify_waiters();
            });
        }
        cache.reading.as_ref().map(|(_, found)| found.clone())
    }

    /// Reads OPcache's figures now; the request to the probe holds no database connection.
    async fn read_opcache(&self) -> Result<OpcacheReading, AppError> {
        let webroots = self
            .db(|_, conn| Ok(crate::db::clubs::webroots(conn, None)?))
            .await?;
        Ok(self
            .blocking(move |settings| {
                let (urls, in_use) = crate::service::opcache::sites(settings, &webroots)?;
                Ok(crate::service::opcache::read(settings, &urls, &in_use))
            })
            .await?
            .map_err(|e| format!("{e:#}")))
    }

    /// Runs `f` on the blocking thread pool with no database connection, for work that reads
    /// git or the disk and must not keep a pooled connection waiting.
    pub async fn blocking<T, F>(&self, f: F) -> Result<T, AppError>
    where
        T: Send + 'static,
        F: FnOnce(&Settings) -> anyhow::Result<T> + Send + 'static,
    {
        let settings = self.settings.clone();
        web::block(move || f(&settings))
            .await?
            .map_err(AppError::from_anyhow)
    }

    /// Runs `f` with a database connection on the blocking thread pool.
    pub async fn db<T, F>(&self, f: F) -> Result<T, AppError>
    where
        T: Send + 'static,
        F: FnOnce(&Settings, &mut Conn) -> anyhow::Result<T> + Send + 'static,
    {
        let (settings, pool) = (self.settings.clone(), self.pool.clone());
        web::block(move || {
            let mut conn = pool.get()?;
            f(&settings, &mut conn)
        })
        .await?
        .map_err(AppError::from_anyhow)
    }
}

impl AppError {
    /// Turns a library error into the right response: bad input and refusals keep their
    /// plain message, anything else is internal.
    pub fn from_anyhow(e: anyhow::Error) -> AppError {
        match e.downcast::<AppError>() {
            Ok(app) => app,
            Err(e) => match e.downcast::<crate::domain::InvalidInput>() {
                Ok(invalid) => AppError::BadRequest(invalid.0),
                Err(e) => match e.downcast::<crate::domain::Refusal>() {
                    Ok(crate::domain::Refusal::NotFound(why)) => AppError::NotFound(why),
                    Ok(crate::domain::Refusal::Conflict(why)) => AppError::Conflict(why),
                    Err(e) => match e.downcast::<crate::auth::staff::StaffError>() {
                        Ok(staff) => staff.into(),
                        Err(e) => AppError::Internal(e),
                    },
                },
            },
        }
    }
}

/// The `?app=` of a page or action about one application; empty means the only one.
#[derive(serde::Deserialize, Default, Clone)]
#[serde(default)]
pub struct AppQuery {
    pub app: String,
}

impl AppQuery {
    /// The application named, or the only one (a 400 naming the choices when there are
    /// several, or none by that name).
    pub fn resolve<'s>(&self, settings: &'s Settings) -> Result<&'s crate::config::App, AppError> {
        let name = Some(self.app.trim()).filter(|a| !a.is_empty());
        settings.app(name).map_err(|_| {
            let names: Vec<&str> = settings.apps().iter().map(|a| a.name.as_str()).collect();
            AppError::BadRequest(match name {
                None => format!("Choose an application: {}.", names.join(", ")),
                Some(name) => format!(
                    "There is no application {name:?}; the applications are {}.",
                    names.join(", ")
                ),
            })
        })
    }
}

/// Parses a form body, repeated fields included (`clubs=a&clubs=b`). Missing fields take
/// their defaults so that the CSRF check always runs first and answers 403.
pub fn form<T: DeserializeOwned>(body: &[u8]) -> Result<T, AppError> {
    serde_html_form::from_bytes(body)
        .map_err(|e| AppError::BadRequest(format!("the form could not be read: {e}")))
}

/// Security headers on every response; behind TLS (`secure`) also HSTS, so browsers never
/// try the panel over plain HTTP again.
pub fn security_headers(secure: bool) -> DefaultHeaders {
    let headers = if secure {
        DefaultHeaders::new().add(("Strict-Transport-Security", "max-age=31536000"))
    } else {
        DefaultHeaders::new()
    };
    headers
        .add((
            "Content-Security-Policy",
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; base-uri 'none'; object-src 'none'; \
             frame-ancestors 'none'",
        ))
        .add(("X-Content-Type-Options", "nosniff"))
        .add(("Referrer-Policy", "same-origin"))
        .add(("X-Frame-Options", "DENY"))
        .add(("Cache-Control", "no-store"))
}

/// Every route of the panel.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/login")
            // A sign-in form is a few hundred bytes; refuse big bodies unread.
            .app_data(web::PayloadConfig::new(LOGIN_BODY_LIMIT))
            .route(web::get().to(auth::login_page))
            .route(web::post().to(auth::login)),
    )
    .route("/logout", web::post().to(auth::logout))
    .route("/account", web::get().to(account::page))
    .route("/account/code", web::post().to(account::set_up_code))
    .route("/account/code/remove", web::post().to(account::remove_code))
    .route(
        "/account/password",
        web::post().to(account::change_password),
    )
    .route(
        "/account/sign-out-others",
        web::post().to(account::sign_out_others),
    )
    .route("/", web::get().to(dashboard::page))
    .route("/clubs", web::get().to(clubs::page))
    .route("/clubs", web::post().to(clubs::add))
    .route("/groups", web::post().to(clubs::change_group))
    .route(
        "/clubs/import/template.csv",
        web::get().to(clubs::import_template),
    )
    .route("/clubs/export.csv", web::get().to(clubs::export))
    .service(
        web::resource("/clubs/import/preview")
            // A CSV of 10,000 clubs is about a megabyte.
            .app_data(web::PayloadConfig::new(IMPORT_BODY_LIMIT))
            .route(web::post().to(clubs::import_preview)),
    )
    .service(
        web::resource("/clubs/import")
            .app_data(web::PayloadConfig::new(IMPORT_BODY_LIMIT))
            .route(web::post().to(clubs::import)),
    )
    .route(
        "/clubs/{slug}/rollback",
        web::get().to(clubs::rollback_confirm),
    )
    .route("/clubs/{slug}/rollback", web::post().to(clubs::rollback))
    .route("/clubs/{slug}", web::get().to(clubs::club_page))
    .route("/clubs/{slug}", web::post().to(clubs::edit_club))
    .route("/clubs/{slug}/adopt", web::get().to(legacy::adopt_page))
    .route("/clubs/{slug}/adopt", web::post().to(legacy::adopt))
    .route("/clubs/{slug}/undo-adopt", web::get().to(legacy::undo_page))
    .route("/clubs/{slug}/undo-adopt", web::post().to(legacy::undo))
    .route(
        "/clubs/{slug}/legacy/{copy}/purge",
        web::get().to(legacy::purge_page),
    )
    .route(
        "/clubs/{slug}/legacy/{copy}/purge",
        web::post().to(legacy::purge),
    )
    .route("/clubs/{slug}/remove", web::get().to(clubs::remove_confirm))
    .route("/clubs/{slug}/remove", web::post().to(clubs::remove))
    .route("/releases", web::get().to(deploy::releases_page))
    .route("/releases/refresh", web::post().to(deploy::refresh))
    .route("/deploy", web::get().to(deploy::form_page))
    .route("/deploy/confirm", web::get().to(deploy::confirm))
    .route("/deploy/confirm", web::post().to(deploy::confirm_post))
    .route("/deploy", web::post().to(deploy::deploy))
    .route("/jobs", web::get().to(jobs::list))
    .route("/jobs/{id}", web::get().to(jobs::page))
    .route("/jobs/{id}/events", web::get().to(jobs::events))
    .route("/jobs/{id}/cancel", web::get().to(jobs::cancel_confirm))
    .route("/jobs/{id}/cancel", web::post().to(jobs::cancel))
    .route("/jobs/{id}/put-back", web::get().to(jobs::put_back_confirm))
    .route("/jobs/{id}/put-back", web::post().to(jobs::put_back))
    .route("/opcache", web::get().to(dashboard::opcache_page))
    .route("/doctor", web::get().to(dashboard::doctor_page))
    .route("/doctor", web::post().to(dashboard::doctor_again))
    .route("/audit", web::get().to(audit::page))
    .route("/audit.csv", web::get().to(audit::csv))
    .route("/audit/verify", web::get().to(audit::verify))
    .route("/staff", web::get().to(staff::page))
    .route("/staff", web::post().to(staff::add))
    .route("/staff/{name}/role", web::post().to(staff::set_role))
    .route(
        "/staff/{name}/disable",
        web::get().to(staff::disable_confirm),
    )
    .route("/staff/{name}/disable", web::post().to(staff::disable))
    .route("/staff/{name}/enable", web::post().to(staff::enable))
    .route(
        "/staff/{name}/password",
        web::post().to(staff::reset_password),
    )
    .route("/static/{file}", web::get().to(statics::file))
    .default_service(web::to(not_found));
}

async fn not_found() -> Result<actix_web::HttpResponse, AppError> {
    Err(AppError::NotFound("There is no such page.".into()))
}

/// A release name as staff read it: the tag first, the commit id apart ("v2.4.1",
/// "3f2a9c1d"); a name that is not a release's stays whole.
pub fn tag_and_commit(release: &str) -> (String, String) {
    match crate::domain::ReleaseName::parse(release) {
        Ok(name) => {
            let tag = name.tag().to_string();
            let commit = release[tag.len()..].trim_start_matches('-').to_owned();
            (tag, commit)
        }
        Err(_) => (release.to_owned(), String::new()),
    }
}

/// "1 club" / "3 clubs".
pub use crate::domain::count;
