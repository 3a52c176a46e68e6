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

/// The panel and its worker, ready to run.
pub struct Application {
    addr: SocketAddr,
    server: actix_web::dev::Server,
    state: AppState,
    poll: Duration,
}

impl Application {
    /// Opens the database and binds the panel to `listener`; the worker polls every `poll`.
    pub fn build(
        settings: Settings,
        listener: TcpListener,
        poll: Duration,
    ) -> anyhow::Result<Application> {
        let pool = db::open(&settings.database_path())?;
        let state = AppState::new(settings, pool);
        let addr = listener.local_addr()?;
        let data = web::Data::new(state.clone());
        let secure = state.settings.cookie_secure;
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .wrap(security_headers(secure))
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
        })
    }

    /// Where the panel listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Runs the panel and the worker until the server stops (Ctrl-C or SIGTERM).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let worker = tokio::spawn(worker::run(
            self.state.settings.clone(),
            self.state.pool.clone(),
            self.state.wake.clone(),
            self.poll,
        ));
        let result = self.server.await;
        worker.abort();
        result
    }
}
