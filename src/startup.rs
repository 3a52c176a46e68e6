//! Building the running application: the pool (with migrations), the panel's HTTP server on
//! a listener the caller bound (port 0 in tests), and the queue worker beside it.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use actix_web::{App, HttpServer, web};
use anyhow::Context;

use crate::config::Settings;
use crate::db;
use crate::jobs::worker;
use crate::web::{AppState, routes, security_headers};

/// How soon after a job ends the panel's doctor checks again.
const DOCTOR_AFTER_JOB: Duration = Duration::from_secs(5);

/// How many jobs have ended (`None` when the database cannot say).
async fn ended_jobs(state: &AppState) -> Option<i64> {
    state
        .db(|_, conn| Ok(crate::db::jobs::ended_count(conn)?))
        .await
        .ok()
}

/// Refuses a `data_dir` that already holds files but none of clubdeploy's, before anything is
/// written or changed there: clubdeploy sets the modes of its data directory and what it keeps
/// there, and a typo (`data_dir = "/srv"`) must not change someone else's folder. A new or
/// empty folder (a mount's `lost+found` aside), or one holding anything clubdeploy keeps at
/// its top (or a temporary file of one), is clubdeploy's.
pub fn check_data_dir_is_ours(settings: &Settings) -> anyhow::Result<()> {
    let dir = &settings.data_dir;
    let name_of = |path: std::path::PathBuf| {
        path.strip_prefix(dir)
            .ok()
            .and_then(|p| p.iter().next())
            .map(|n| n.to_string_lossy().into_owned())
    };
    let ours: Vec<String> = [
        settings.database_path(),
        db::migrate_lock_path(&settings.database_path()),
        settings.lock_path(),
        settings.anchor_file(),
        dir.join(crate::db::audit_key::KEY_FILE),
        dir.join(crate::pipeline::probe::KEY_FILE),
    ]
    .into_iter()
    .chain(
        settings
            .apps()
            .iter()
            .flat_map(|app| [app.releases_dir.clone(), app.mirror_dir.clone()]),
    )
    .filter_map(name_of)
    .collect();
    let mut other = None;
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if ours.iter().any(|kept| name.starts_with(kept.as_str())) {
            return Ok(());
        }
        if name != "lost+found" && other.is_none() {
            other = Some(name);
        }
    }
    match other {
        None => Ok(()),
        Some(name) => anyhow::bail!(
            "data_dir {} already holds other files ({name} …) and nothing of clubdeploy's: \
             clubdeploy would change its modes and write there; give clubdeploy a folder of its \
             own, new or empty (setting `data_dir`); nothing was changed",
            dir.display()
        ),
    }
}

/// Refuses a `data_dir` or database that others may write to, and sets what clubdeploy keeps
/// there to what it should be: `data_dir` 0711 (Apache may pass through to `releases/`, and
/// list nothing), the database with its WAL and SHM, the locks, the audit key and anchors
/// 0600, each git mirror 0700, each `releases/` 0755 (and `apps/<name>/` on the way to one
/// 0711). An installation made before these rules
/// (0.1 left the database world-readable) is tightened the first time it runs.
pub fn secure_data_dir(settings: &Settings) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    check_data_dir_is_ours(settings)?;
    let mode = |path: &std::path::Path| {
        std::fs::symlink_metadata(path)
            .ok()
            .map(|m| m.permissions().mode() & 0o7777)
    };
    let database = settings.database_path();
    for path in [settings.data_dir.as_path(), database.as_path()] {
        if let Some(found) = mode(path)
            && found & 0o022 != 0
        {
            anyhow::bail!(
                "refusing to start: {} may be written by others (mode {found:o}); anyone who \
                 can write it can take over every club. Make it writable by the service user \
                 only (chmod go-w) and start again",
                path.display()
            );
        }
    }
    let set = |path: &std::path::Path, wanted: u32| -> anyhow::Result<()> {
        match mode(path) {
            Some(found) if found != wanted => {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(wanted))
                    .with_context(|| format!("cannot set the mode of {}", path.display()))
            }
            _ => Ok(()),
        }
    };
    set(&settings.data_dir, 0o711)?;
    // The probe secret exists from the start, private (health checks send it).
    if settings.probe.enabled {
        crate::pipeline::probe::ProbeKey::load_or_create(&settings.data_dir)?;
    }
    let file = |name: &str| settings.data_dir.join(name);
    for secret in [
        database.clone(),
        database.with_extension("sqlite3-wal"),
        database.with_extension("sqlite3-shm"),
        db::migrate_lock_path(&database),
        settings.lock_path(),
        file(crate::db::audit_key::KEY_FILE),
        file(crate::pipeline::probe::KEY_FILE),
        settings.anchor_file(),
    ] {
        // The anchor file may live elsewhere on purpose (another host's mount): only ours.
        if secret.starts_with(&settings.data_dir) {
            set(&secret, 0o600)?;
        }
    }
    for app in settings.apps() {
        // Apache passes through each application's directory to its releases (0711: it may
        // list nothing there); the mirror is the service's alone.
        if let Some(home) = app.releases_dir.parent()
            && home != settings.data_dir
        {
            std::fs::create_dir_all(&app.releases_dir)
                .with_context(|| format!("cannot create {}", app.releases_dir.display()))?;
            if let Some(apps) = home.parent() {
                set(apps, 0o711)?;
            }
            set(home, 0o711)?;
        }
        set(&app.mirror_dir, 0o700)?;
        set(&app.releases_dir, 0o755)?;
    }
    Ok(())
}

/// Opens `settings`' database as every command and the server do: refuses a `data_dir` that
/// is not clubdeploy's or that others may write before anything is written, brings the
/// schema up to date, secures what it holds again (the database may be new) and anchors an
/// old installation's audit log the first time (`audit_anchor::adopt`).
pub fn open_database(settings: &Settings) -> anyhow::Result<db::DbPool> {
    secure_data_dir(settings)?;
    let pool = db::open(&settings.database_path())?;
    secure_data_dir(settings)?;
    crate::db::audit_anchor::adopt(
        &mut *pool.get()?,
        &settings.anchor_file(),
        settings.audit.syslog,
    )
    .context("cannot anchor the audit log")?;
    Ok(pool)
}

/// The panel and its worker, ready to run.
pub struct Application {
    addr: SocketAddr,
    server: actix_web::dev::Server,
    state: AppState,
    poll: Duration,
    worker: bool,
}

impl Application {
    /// Opens the database and binds the panel to `listener`; the worker polls every `poll`.
    pub fn build(
        settings: Settings,
        listener: TcpListener,
        poll: Duration,
    ) -> anyhow::Result<Application> {
        let pool = open_database(&settings)?;
        let state = AppState::new(settings, pool)?;
        let addr = listener.local_addr()?;
        let data = web::Data::new(state.clone());
        let secure = state.settings.cookie_secure;
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                // A path or query the routes cannot read (`/jobs/abc`) gets the panel's own
                // page, never the framework's message.
                .app_data(web::PathConfig::default().error_handler(|_, _| {
                    crate::web::error::AppError::NotFound("There is no such page.".into()).into()
                }))
                .app_data(web::QueryConfig::default().error_handler(|e, _| {
                    crate::web::error::AppError::BadRequest(format!(
                        "The address holds something that cannot be read ({e})."
                    ))
                    .into()
                }))
                .wrap(actix_web::middleware::from_fn(
                    crate::web::origin::refuse_cross_site,
                ))
                .wrap(security_headers(secure))
                // Pages of a thousand clubs shrink to a tenth. Compression leaks nothing of a
                // page to a cross-site request (BREACH): the session cookie is SameSite=Strict,
                // so no other site's request gets a signed-in page at all.
                .wrap(actix_web::middleware::Compress::default())
                .configure(routes)
        })
        .workers(2)
        .listen(listener)
        .context("cannot listen")?
        .run();
        Ok(Application {
            addr,
            server,
            state,
            poll,
            worker: true,
        })
    }

    /// The panel alone: queued jobs wait until something else works the queue (the tests'
    /// `run_pending_jobs`, which runs them to the end on the test's own thread).
    pub fn without_worker(self) -> Application {
        Application {
            worker: false,
            ..self
        }
    }

    /// Where the panel listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Runs the panel and the worker until the server stops (Ctrl-C or SIGTERM).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let worker = self.worker.then(|| {
            tokio::spawn(worker::run(
                self.state.settings.clone(),
                self.state.pool.clone(),
                self.state.wake.clone(),
                self.poll,
            ))
        });
        // The doctor at start, then hourly ([web] doctor_every_secs) and soon after each job
        // ends (a job changes what it finds): its problems show on the dashboard.
        let state = self.state.clone();
        let every = state.settings.web.doctor_every_secs;
        let doctor = tokio::spawn(async move {
            if every == 0 {
                return;
            }
            loop {
                let seen = ended_jobs(&state).await;
                state.run_doctor().await;
                let until = tokio::time::Instant::now() + Duration::from_secs(every);
                while tokio::time::Instant::now() < until {
                    tokio::time::sleep_until(
                        until.min(tokio::time::Instant::now() + DOCTOR_AFTER_JOB),
                    )
                    .await;
                    if ended_jobs(&state).await != seen {
                        break;
                    }
                }
            }
        });
        let result = self.server.await;
        if let Some(worker) = worker {
            worker.abort();
        }
        doctor.abort();
        result
    }
}
