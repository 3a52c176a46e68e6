//! Serving the panel: `serve` for an installation, `demo` for a newcomer's sample one.

use std::path::Path;

use crate::config::Settings;
use crate::jobs::worker;
use crate::say;
use crate::startup::Application;

pub(super) fn demo(dir: &Path, listen: Option<&str>) -> anyhow::Result<()> {
    let demo = crate::demo::prepare(dir, listen.unwrap_or(crate::demo::LISTEN))?;
    let mut settings = Settings::load(&demo.config)?;
    // An address given now wins over the one the demo was created with (that port may be
    // taken today).
    if let Some(listen) = listen {
        settings.listen = listen.to_owned();
    }
    say!("clubdeploy demo in {}", dir.display());
    match &demo.admin_password {
        Some(password) => say!(
            "sign in as admin with password {password} (shown only now; reset it with \
             `clubdeploy --config {} user passwd admin`)",
            demo.config.display()
        ),
        None => say!(
            "reusing the demo created earlier (its admin password was shown then; reset it \
             with `clubdeploy --config {} user passwd admin`)",
            demo.config.display()
        ),
    }
    // The clubs' sites, served here when PHP is, so deploys are health-checked.
    let sites = if crate::demo::sites::php_installed() {
        settings.health.connect_to = Some("127.0.0.1".into());
        let pool = crate::startup::open_database(&settings)?;
        let sites = crate::demo::sites::serve(dir, &settings, &mut *pool.get()?)?;
        say!(
            "each club's site is served here by php -S (e.g. {}), so every deploy is \
             health-checked and the OPcache page has figures",
            sites.served.first().map_or("", |s| s.2.as_str())
        );
        Some(sites)
    } else {
        say!(
            "PHP is not installed here, so the demo serves no club sites: health checks are \
             off and the OPcache page stays empty (install php-cli and run the demo again to \
             see them)"
        );
        None
    };
    say!(
        "try first: sign in; on Deploy choose {} and tick Club Zermatt, check what will \
         change, deploy and watch the job; then roll Club Zermatt back on Clubs, and find \
         both in the Audit log",
        crate::demo::NEXT_TAG
    );
    let served = serve_panel(settings, Serving::Demo);
    drop(sites);
    served
}

/// What `serve` serves: an installation, or the demo (which runs as whoever tries it, and
/// whose port may be taken by an earlier demo).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Serving {
    Installation,
    Demo,
}

pub(super) fn serve(settings: Settings) -> anyhow::Result<()> {
    serve_panel(settings, Serving::Installation)
}

fn serve_panel(settings: Settings, serving: Serving) -> anyhow::Result<()> {
    tame_malloc();
    if serving == Serving::Installation && rustix::process::geteuid().is_root() {
        eprintln!(
            "warning: clubdeploy is running as root. It needs no privilege beyond owning \
             webroot_base and data_dir; run it as its own user (the Debian package's service \
             runs as `clubdeploy` and reloads Apache through a sudoers rule), see \
             docs/installing.md (/usr/share/doc/clubdeploy/docs/installing.md)."
        );
    }
    actix_web::rt::System::new().block_on(async move {
        let listener = std::net::TcpListener::bind(&settings.listen).map_err(|e| {
            let busy = e.kind() == std::io::ErrorKind::AddrInUse;
            match (serving, busy) {
                (Serving::Demo, true) => anyhow::anyhow!(
                    "cannot listen on {}: another program (an earlier demo?) uses that port; \
                     choose another address with --listen, e.g. --listen 127.0.0.1:8081",
                    settings.listen
                ),
                (Serving::Installation, true) => anyhow::anyhow!(
                    "cannot listen on {}: another program uses that port; stop it or set \
                     another address in `listen`",
                    settings.listen
                ),
                _ => anyhow::Error::from(e).context(format!(
                    "cannot listen on {} (setting `listen`)",
                    settings.listen
                )),
            }
        })?;
        let app = Application::build(settings, listener, worker::POLL_INTERVAL)?;
        say!("clubdeploy panel on http://{}/ (Ctrl-C stops)", app.addr());
        app.run_until_stopped().await?;
        Ok(())
    })
}

/// Caps glibc's malloc at two arenas before the server starts its threads. By default each
/// thread that allocates may get an arena of its own (up to eight per core), and the panel's
/// blocking-pool threads each keep theirs: `cargo bench --bench panel` at 1,000 clubs measured
/// 57 MB resident after its load with the default, 31 MB with two, at the same throughput.
/// `MALLOC_ARENA_MAX` in the environment still decides where it is set.
///
/// It also fixes the size above which memory comes straight from the kernel (and goes back
/// to it when freed) at 1 MiB. glibc raises that bound to the largest block freed so far, so
/// after the first password check each check's 19 MiB (argon2) came from the arenas and
/// stayed there: after `cargo bench --bench signin`'s flood the server stayed at 150 MB
/// resident that way, and at 36 MB (34 MB idle before it) with the fixed bound. `MALLOC_MMAP_THRESHOLD_` in
/// the environment still decides where it is set.
fn tame_malloc() {
    #[cfg(target_env = "gnu")]
    {
        if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
            // SAFETY: mallopt only sets a tunable of the allocator, under the allocator's own
            // lock; arenas already made by the few threads before the server's stay as they
            // are.
            unsafe {
                libc::mallopt(libc::M_ARENA_MAX, 2);
            }
        }
        if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
            // SAFETY: as above; it changes where later large blocks come from, nothing else.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
            }
        }
    }
}
