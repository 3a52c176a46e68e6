//! Settings: a TOML file (`clubdeploy.toml` by default) with every key overridable by an
//! environment variable `CLUBDEPLOY_<KEY>` (nested keys joined by `__`). Passed by value.

use anyhow::Context;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use crate::domain::{AppName, InvalidInput, ReloadPolicy, RepoUrl};

/// Environment variables with the `CLUBDEPLOY_` prefix that are not settings.
const NOT_SETTINGS: &[&str] = &["crash_at", "config"];

/// Everything clubdeploy is configured with.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Where the database, the git mirrors and the releases live.
    pub data_dir: PathBuf,
    /// Path or URL of the git repository of the application named `main` (a password in it is
    /// never shown). Optional when the applications are configured as `[apps.<name>]`.
    pub repo_url: Option<RepoUrl>,
    /// Every club webroot must lie under this directory.
    pub webroot_base: PathBuf,
    /// Address the web panel listens on.
    pub listen: String,
    /// How many of the newest releases that no club runs are kept for rollback.
    pub keep_releases: usize,
    /// Seconds to wait after the reload before deleting releases, for requests in flight.
    pub prune_grace_secs: u64,
    /// Mark the session cookie `Secure` (set when the panel is served over TLS).
    pub cookie_secure: bool,
    /// A session unused this long ends.
    pub session_idle_secs: u64,
    /// A session ends this long after sign-in, used or not.
    pub session_absolute_secs: u64,
    /// How a release of the application `main` (the top-level `repo_url`) is built.
    pub build: Option<BuildSettings>,
    /// How repositories are fetched, and what a deploy preview warns about (an application's
    /// own `[apps.<name>.git]` replaces it for that application).
    pub git: GitSettings,
    /// The applications, each deployed from its own repository to its own webroot of a club.
    #[serde(default)]
    pub apps: BTreeMap<String, AppSettings>,
    /// The panel behind a proxy, and what one member of staff may queue.
    pub web: WebSettings,
    /// Where the audit chain is anchored.
    pub audit: AuditSettings,
    /// How Apache is checked and reloaded.
    pub reload: ReloadSettings,
    /// The health probe written into every release.
    pub probe: ProbeSettings,
    /// How clubs are checked after a switch, and what happens to those that fail.
    pub health: HealthSettings,
    /// Deploying to many clubs in waves.
    pub rollout: RolloutSettings,
    /// How long jobs' logs are kept.
    pub jobs: JobsSettings,
    /// Every application, resolved: `main` (from the top-level `repo_url`) and `[apps.*]`.
    #[serde(skip)]
    resolved_apps: Vec<App>,
}

/// One application as configured in `[apps.<name>]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppSettings {
    /// Path or URL of the application's git repository.
    pub repo_url: RepoUrl,
    /// How a release of it is built.
    #[serde(default)]
    pub build: BuildSettings,
    /// How its repository is fetched (default: the top-level `[git]`).
    pub git: Option<GitSettings>,
}

/// An application with everything a job needs to build and deploy it: its repository, build,
/// and its own directories, so that its releases, mirror and kept legacy copies never mix
/// with another application's.
#[derive(Debug, Clone)]
pub struct App {
    pub name: AppName,
    pub repo_url: RepoUrl,
    pub build: BuildSettings,
    pub git: GitSettings,
    /// Its releases: `<data_dir>/releases` for `main` (where an installation made before
    /// applications existed has them), `<data_dir>/apps/<name>/releases` for the others.
    pub releases_dir: PathBuf,
    /// Its bare git mirror: `<data_dir>/repo.git` for `main`, `<data_dir>/apps/<name>/repo.git`.
    pub mirror_dir: PathBuf,
    /// Its adopted legacy copies: `<data_dir>/legacy` for `main`, `<data_dir>/apps/<name>/legacy`.
    pub legacy_dir: PathBuf,
}

impl App {
    fn new(
        data_dir: &Path,
        name: AppName,
        repo_url: RepoUrl,
        build: BuildSettings,
        git: GitSettings,
    ) -> App {
        let home = if name.as_str() == AppName::MAIN {
            data_dir.to_path_buf()
        } else {
            data_dir.join("apps").join(name.as_str())
        };
        App {
            releases_dir: home.join("releases"),
            mirror_dir: home.join("repo.git"),
            legacy_dir: home.join("legacy"),
            name,
            repo_url,
            build,
            git,
        }
    }
}

/// Commands run while building a release, and the bounds of a build.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BuildSettings {
    /// Commands (argv lists) run in the build directory, in order.
    pub commands: Vec<Vec<String>>,
    /// A command run in the built tree before it is published; failure stops the deploy.
    pub check: Option<Vec<String>>,
    /// Variables of the service's environment passed on to the build commands and check
    /// (which otherwise get only PATH, HOME, LANG and the CLUBDEPLOY_* facts of the build).
    pub env: Vec<String>,
    /// Each build command and the check is stopped (with all it started) after this long.
    pub timeout_secs: u64,
    /// The most bytes a release may hold (its files' sizes, counted as written).
    pub max_bytes: u64,
    /// The most files a release may hold.
    pub max_files: u64,
}

impl Default for BuildSettings {
    fn default() -> Self {
        BuildSettings {
            commands: Vec::new(),
            check: None,
            env: Vec::new(),
            timeout_secs: 30 * 60,
            max_bytes: 4 << 30,
            max_files: 500_000,
        }
    }
}

/// Fetching from the repository (through the system `git`, so `~/.ssh/config`, ssh-agent,
/// credential helpers and `GIT_SSL_CAINFO` work as for the operators' own `git fetch`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GitSettings {
    /// An SSH private key (a deploy key) used alone for `ssh://` and `user@host:path` URLs.
    pub ssh_key: Option<PathBuf>,
    /// The known_hosts file that vouches for the SSH server's host key (default: the user's).
    pub known_hosts: Option<PathBuf>,
    /// A fetch that has not finished after this long is stopped, changing nothing.
    pub timeout_secs: u64,
    /// Changes under these paths get a warning before a deploy ("the database may need
    /// migrating").
    pub watch_paths: Vec<String>,
}

impl Default for GitSettings {
    fn default() -> Self {
        GitSettings {
            ssh_key: None,
            known_hosts: None,
            timeout_secs: 120,
            watch_paths: vec!["database/migrations/".into(), "migrations/".into()],
        }
    }
}

/// How long the log lines of ended jobs are kept (the jobs, their outcome and the audit log
/// are kept for good).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsSettings {
    /// Days after a job ends that its log lines are kept.
    pub keep_days: u32,
}

impl Default for JobsSettings {
    fn default() -> Self {
        JobsSettings { keep_days: 365 }
    }
}

/// Anchors of the audit chain outside the database.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    /// The file anchors are appended to (default `<data_dir>/audit-anchors.log`).
    pub anchor_file: Option<PathBuf>,
    /// Also send each anchor to the local syslog.
    pub syslog: bool,
}

/// The web panel's limits and its place behind a reverse proxy.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebSettings {
    /// Addresses of reverse proxies whose `X-Forwarded-For` is believed; without any, the
    /// header is ignored and the client is the connection's peer.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// A file holding a secret the proxy sends in `X-Clubdeploy-Proxy` (the package makes
    /// one and the Apache configuration it includes): with it, `X-Forwarded-For` is believed
    /// only from a request that carries it. Anything on this machine can connect to a panel
    /// on loopback (every club's PHP under mod_php), and without the secret could claim any
    /// address.
    pub proxy_secret_file: Option<PathBuf>,
    /// Roles whose members must sign in with a sign-in code (TOTP) too (`["admin"]`): until
    /// they set one up on their account page, that page is all the panel shows them.
    pub require_totp_for: Vec<crate::domain::Role>,
    /// How many jobs one member of staff may have waiting in the queue.
    pub max_queued_jobs_per_user: usize,
    /// How many live job pages (event streams) one session may keep open.
    pub max_streams_per_session: usize,
    /// How often the panel runs `doctor` by itself (at start, then every so many seconds) to
    /// show its problems on the dashboard; 0: only when an admin asks.
    pub doctor_every_secs: u64,
}

impl WebSettings {
    /// Whether `address` (a client address as the panel records it) is one of the trusted
    /// proxies: that is what a request looks like that came through no proxy from this
    /// machine, so it never counts as an address staff signed in from.
    pub fn is_proxy(&self, address: &str) -> bool {
        address
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| self.trusted_proxies.contains(&ip))
    }

    /// Whether members of staff with `role` must sign in with a code too
    /// (`require_totp_for`).
    pub fn requires_code(&self, role: crate::domain::Role) -> bool {
        self.require_totp_for.contains(&role)
    }

    /// The secret the proxy sends (see [`WebSettings::proxy_secret_file`]), if one is set.
    pub fn proxy_secret(&self) -> anyhow::Result<Option<String>> {
        let Some(file) = &self.proxy_secret_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(file).with_context(|| {
            format!(
                "cannot read [web] proxy_secret_file {} (the package makes it when it is \
                 configured: dpkg-reconfigure clubdeploy)",
                file.display()
            )
        })?;
        let secret = text.trim();
        if secret.len() < 32 || !secret.chars().all(|c| c.is_ascii_alphanumeric()) {
            anyhow::bail!(
                "[web] proxy_secret_file {} must hold at least 32 letters and digits",
                file.display()
            );
        }
        Ok(Some(secret.to_owned()))
    }
}

impl Default for WebSettings {
    fn default() -> Self {
        WebSettings {
            trusted_proxies: Vec::new(),
            proxy_secret_file: None,
            require_totp_for: Vec::new(),
            max_queued_jobs_per_user: 5,
            max_streams_per_session: 4,
            doctor_every_secs: 3600,
        }
    }
}

/// Commands that check and reload the web server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReloadSettings {
    /// Checks the web server's configuration before any club is switched.
    pub configtest: Vec<String>,
    /// Gracefully reloads the web server (which also empties OPcache).
    pub command: Vec<String>,
    /// Lists the web server's virtual hosts (`apachectl -S`), for `clubdeploy doctor`.
    pub vhosts: Vec<String>,
    /// When to reload.
    pub policy: ReloadPolicy,
    /// PHP's `realpath_cache_ttl`: how long a release may still be used after a switch that
    /// was not followed by a reload.
    pub realpath_cache_ttl_secs: u64,
    /// How long to wait after the reload command returns: a graceful restart replaces the
    /// server's children asynchronously (measured: new code everywhere within 0.07 s).
    pub settle_ms: u64,
}

/// The command that lists the virtual hosts of the Apache that `configtest` checks: when
/// that names its configuration (`-f FILE`), the same program and file with `-S`.
pub fn vhosts_of(configtest: &[String]) -> Option<Vec<String>> {
    let at = configtest.iter().position(|a| a == "-f")?;
    let file = configtest.get(at + 1)?;
    let mut argv: Vec<String> = configtest[..at].to_vec();
    argv.extend(["-f".to_owned(), file.clone(), "-S".to_owned()]);
    Some(argv)
}

impl Default for ReloadSettings {
    fn default() -> Self {
        ReloadSettings {
            configtest: vec!["apachectl".into(), "configtest".into()],
            command: vec!["apachectl".into(), "-k".into(), "graceful".into()],
            vhosts: vec!["apachectl".into(), "-S".into()],
            policy: ReloadPolicy::Always,
            realpath_cache_ttl_secs: 120,
            settle_ms: 500,
        }
    }
}

/// The probe clubdeploy writes into every release (`.clubdeploy/probe.php`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProbeSettings {
    /// Write the probe, and prove each club runs the new release through it; off, health
    /// checks only the application's own page.
    pub enabled: bool,
}

impl Default for ProbeSettings {
    fn default() -> Self {
        ProbeSettings { enabled: true }
    }
}

/// What happens to the clubs that fail their health check after a switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Put them back on the release they ran before, at once, with one reload, and mark the
    /// release bad for them.
    #[default]
    Rollback,
    /// Leave them as they are; the job fails.
    Stop,
    /// Report the failure; the job succeeds.
    Ignore,
}

/// Health checks after a switch, through each webroot's address.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthSettings {
    /// A club not proven on the new release within this long has failed.
    pub timeout_secs: u64,
    /// The application's own page that must answer.
    pub path: String,
    /// The status it must answer with.
    pub expect_status: u16,
    /// Text its body must contain, if any.
    pub expect_text: Option<String>,
    pub on_failure: OnFailure,
    /// How long one request may take.
    pub request_timeout_ms: u64,
    /// How many clubs are checked at once.
    pub concurrency: usize,
    /// Connect to this address (a host name or IP) instead of each site's own, keeping the
    /// site's name for the Host header and TLS: `127.0.0.1` checks the local Apache directly,
    /// bypassing a load balancer or CDN.
    pub connect_to: Option<String>,
}

impl Default for HealthSettings {
    fn default() -> Self {
        HealthSettings {
            timeout_secs: 30,
            path: "/".into(),
            expect_status: 200,
            expect_text: None,
            on_failure: OnFailure::Rollback,
            request_timeout_ms: 5000,
            concurrency: 8,
            connect_to: None,
        }
    }
}

/// Deploying to many clubs in waves: the canaries first, then batches.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RolloutSettings {
    /// Clubs that get a deploy to several clubs first (unless the deploy names its own).
    pub canary: Vec<String>,
    /// How many clubs switch together after the canaries; 0: all the rest at once.
    pub batch_size: usize,
}

/// The defaults of every key that has one.
#[derive(Serialize)]
struct Defaults {
    listen: &'static str,
    keep_releases: usize,
    prune_grace_secs: u64,
    cookie_secure: bool,
    session_idle_secs: u64,
    session_absolute_secs: u64,
    git: GitSettings,
    web: WebSettings,
    audit: AuditSettings,
    reload: ReloadSettings,
    probe: ProbeSettings,
    health: HealthSettings,
    rollout: RolloutSettings,
    jobs: JobsSettings,
}

/// A configuration problem, naming the key where there is one.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(String);

/// The database's file name in `data_dir`.
pub const DATABASE_FILE: &str = "clubdeploy.sqlite3";

/// The longest a session lasts, whatever it is set to: ten years. Far longer made the time it
/// ends overflow the clock (every page a 500).
pub const MAX_SESSION_SECS: u64 = 10 * 365 * 24 * 60 * 60;

/// How long staff sessions last (`session_idle_secs`, `session_absolute_secs`).
#[derive(Debug, Clone, Copy)]
pub struct SessionTimeouts {
    pub idle_secs: u64,
    pub absolute_secs: u64,
}

impl Settings {
    /// Reads `file` (a missing file provides no keys: they may all come from the environment),
    /// applies `CLUBDEPLOY_*` overrides, then checks and resolves the paths.
    pub fn load(file: &Path) -> Result<Settings, ConfigError> {
        let defaults = Defaults {
            listen: "127.0.0.1:8080",
            keep_releases: 2,
            prune_grace_secs: 10,
            cookie_secure: false,
            session_idle_secs: 30 * 60,
            session_absolute_secs: 12 * 60 * 60,
            git: GitSettings::default(),
            web: WebSettings::default(),
            audit: AuditSettings::default(),
            reload: ReloadSettings::default(),
            probe: ProbeSettings::default(),
            health: HealthSettings::default(),
            rollout: RolloutSettings::default(),
            jobs: JobsSettings::default(),
        };
        let figment = Figment::from(Serialized::defaults(defaults))
            .merge(Toml::file_exact(file))
            .merge(
                Env::prefixed("CLUBDEPLOY_")
                    .ignore(NOT_SETTINGS)
                    .split("__"),
            );
        let settings: Settings = figment.extract().map_err(|e| describe(e, file))?;
        settings.resolve()
    }

    /// Checks values that serde cannot and makes the paths absolute and canonical, so the
    /// links written to webroots are absolute and comparable.
    fn resolve(mut self) -> Result<Settings, ConfigError> {
        for (key, argv) in [
            ("reload.configtest", &self.reload.configtest),
            ("reload.command", &self.reload.command),
        ] {
            if self.reload.policy != ReloadPolicy::Never && argv.is_empty() {
                return Err(ConfigError(format!(
                    "`{key}` is empty but reload.policy is not \"never\""
                )));
            }
        }
        // Left at its default, `reload.vhosts` asks the Apache the configtest checks.
        if self.reload.vhosts == ReloadSettings::default().vhosts
            && let Some(derived) = vhosts_of(&self.reload.configtest)
        {
            self.reload.vhosts = derived;
        }
        check_git("git", &self.git)?;
        for (key, secs) in [
            ("session_idle_secs", self.session_idle_secs),
            ("session_absolute_secs", self.session_absolute_secs),
        ] {
            if secs == 0 {
                return Err(ConfigError(format!(
                    "`{key}` must be at least 1 (seconds; at most ten years are used)"
                )));
            }
        }
        if self.jobs.keep_days == 0 {
            return Err(ConfigError(
                "`jobs.keep_days` must be at least 1 (days a job's log is kept after it ends)"
                    .into(),
            ));
        }
        // Longer reads as ten years: an installation set longer keeps working as it did.
        self.session_idle_secs = self.session_idle_secs.min(MAX_SESSION_SECS);
        self.session_absolute_secs = self.session_absolute_secs.min(MAX_SESSION_SECS);
        if self.health.timeout_secs == 0
            || self.health.request_timeout_ms == 0
            || self.health.concurrency == 0
        {
            return Err(ConfigError(
                "`health.timeout_secs`, `health.request_timeout_ms` and `health.concurrency` \
                 must be at least 1"
                    .into(),
            ));
        }
        if let Some(address) = &self.health.connect_to {
            crate::domain::parse_connect_to(address)
                .map_err(|e| ConfigError(format!("`health.connect_to`: {e}")))?;
        }
        if !self.health.path.starts_with('/') {
            return Err(ConfigError(format!(
                "`health.path` {:?} must start with /",
                self.health.path
            )));
        }
        for slug in &self.rollout.canary {
            crate::domain::ClubSlug::parse(slug)
                .map_err(|e| ConfigError(format!("`rollout.canary`: {e}")))?;
        }
        let mut apps: Vec<(String, AppName, RepoUrl, BuildSettings, GitSettings)> = Vec::new();
        match (&self.repo_url, &self.build) {
            (Some(url), build) => apps.push((
                String::new(),
                AppName::main(),
                url.clone(),
                build.clone().unwrap_or_default(),
                self.git.clone(),
            )),
            (None, Some(_)) => {
                return Err(ConfigError(
                    "`build` belongs to the application of the top-level `repo_url`, which is \
                     not set: move it to [apps.<name>.build]"
                        .into(),
                ));
            }
            (None, None) => {}
        }
        for (key, app) in &self.apps {
            let name =
                AppName::parse(key).map_err(|e| ConfigError(format!("`apps.{key}`: {e}")))?;
            if name.as_str() == AppName::MAIN && self.repo_url.is_some() {
                return Err(ConfigError(format!(
                    "`apps.{key}` and the top-level `repo_url` both configure the application \
                     {key}: keep one"
                )));
            }
            let prefix = format!("apps.{key}.");
            if let Some(git) = &app.git {
                check_git(&format!("{prefix}git"), git)?;
            }
            apps.push((
                prefix,
                name,
                app.repo_url.clone(),
                app.build.clone(),
                app.git.clone().unwrap_or_else(|| self.git.clone()),
            ));
        }
        if apps.is_empty() {
            return Err(ConfigError(
                "`repo_url` is missing: set it (or CLUBDEPLOY_REPO_URL) for one application, or \
                 configure each application as [apps.<name>] with its own repo_url"
                    .into(),
            ));
        }
        for (prefix, _, _, build, _) in &apps {
            if build.timeout_secs == 0 || build.max_bytes == 0 || build.max_files == 0 {
                return Err(ConfigError(format!(
                    "`{prefix}build.timeout_secs`, `{prefix}build.max_bytes` and \
                     `{prefix}build.max_files` must each be at least 1"
                )));
            }
            if build.commands.iter().any(Vec::is_empty)
                || build.check.as_ref().is_some_and(Vec::is_empty)
            {
                return Err(ConfigError(format!(
                    "`{prefix}build.commands` and `{prefix}build.check` must not hold an empty \
                     command"
                )));
            }
        }
        std::fs::create_dir_all(&self.data_dir).map_err(|e| {
            ConfigError(format!(
                "`data_dir` {}: cannot create it: {e}",
                self.data_dir.display()
            ))
        })?;
        self.data_dir = self
            .data_dir
            .canonicalize()
            .map_err(|e| ConfigError(format!("`data_dir` {}: {e}", self.data_dir.display())))?;
        self.webroot_base = self.webroot_base.canonicalize().map_err(|e| {
            ConfigError(format!(
                "`webroot_base` {}: {e} (it must be an existing directory)",
                self.webroot_base.display()
            ))
        })?;
        if !self.webroot_base.is_dir() {
            return Err(ConfigError(format!(
                "`webroot_base` {} is not a directory",
                self.webroot_base.display()
            )));
        }
        self.resolved_apps = apps
            .into_iter()
            .map(|(_, name, url, build, git)| App::new(&self.data_dir, name, url, build, git))
            .collect();
        Ok(self)
    }

    /// Every application, `main` first when configured, then the others by name.
    pub fn apps(&self) -> &[App] {
        &self.resolved_apps
    }

    /// The application named `name`; without a name, the only one (an installation with
    /// several must be told which: `--app`).
    pub fn app(&self, name: Option<&str>) -> Result<&App, InvalidInput> {
        let names = || {
            self.resolved_apps
                .iter()
                .map(|a| a.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match (name, self.resolved_apps.as_slice()) {
            (None, [only]) => Ok(only),
            (None, _) => Err(InvalidInput(format!(
                "there are several applications ({}): name one with --app",
                names()
            ))),
            (Some(name), apps) => apps
                .iter()
                .find(|a| a.name.as_str() == name)
                .ok_or_else(|| {
                    InvalidInput(format!(
                        "there is no application {name:?}; the applications are: {}",
                        names()
                    ))
                }),
        }
    }

    /// Whether there is more than one application (names of applications are then shown).
    pub fn several_apps(&self) -> bool {
        self.resolved_apps.len() > 1
    }

    /// The session timeouts.
    pub fn session_timeouts(&self) -> SessionTimeouts {
        SessionTimeouts {
            idle_secs: self.session_idle_secs,
            absolute_secs: self.session_absolute_secs,
        }
    }

    /// `<data_dir>/clubdeploy.sqlite3`.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join(DATABASE_FILE)
    }

    /// The audit anchor file: `[audit] anchor_file`, or `<data_dir>/audit-anchors.log`.
    pub fn anchor_file(&self) -> PathBuf {
        self.audit
            .anchor_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("audit-anchors.log"))
    }

    /// `<data_dir>/deploy.lock`, held by whichever process changes the filesystem.
    pub fn lock_path(&self) -> PathBuf {
        self.data_dir.join("deploy.lock")
    }
}

/// Checks a `[git]` table (`key`: where it is).
fn check_git(key: &str, git: &GitSettings) -> Result<(), ConfigError> {
    if git.timeout_secs == 0 {
        return Err(ConfigError(format!(
            "`{key}.timeout_secs` must be at least 1"
        )));
    }
    for (name, path) in [("ssh_key", &git.ssh_key), ("known_hosts", &git.known_hosts)] {
        if let Some(path) = path
            && !path.is_file()
        {
            return Err(ConfigError(format!(
                "`{key}.{name}` {}: no such file",
                path.display()
            )));
        }
    }
    Ok(())
}

fn describe(e: figment::Error, file: &Path) -> ConfigError {
    let key = e.path.join(".");
    let source = match e.metadata.as_ref() {
        Some(m) => match &m.source {
            Some(source) => format!("{} {source}", m.name),
            None => m.name.to_string(),
        },
        None => file.display().to_string(),
    };
    let what = match &e.kind {
        figment::error::Kind::MissingField(field) => {
            let full = if key.is_empty() {
                field.to_string()
            } else {
                format!("{key}.{field}")
            };
            return ConfigError(format!(
                "`{full}` is missing (set it in {} or as CLUBDEPLOY_{})",
                file.display(),
                full.replace('.', "__").to_uppercase()
            ));
        }
        kind => kind.to_string(),
    };
    if key.is_empty() {
        ConfigError(format!("{what} (in {source})"))
    } else {
        ConfigError(format!("`{key}`: {what} (in {source})"))
    }
}

#[cfg(test)]
mod tests;
