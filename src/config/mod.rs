//! Settings: a TOML file (`clubdeploy.toml` by default) with every key overridable by an
//! environment variable `CLUBDEPLOY_<KEY>` (nested keys joined by `__`). Passed by value.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use crate::domain::{AppName, InvalidInput, ReloadPolicy, RepoUrl};

mod hosts;
mod sections;
pub use hosts::{Host, HostHealth, HostReload, HostSettings};
pub use sections::*;

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
    /// The Unix user every application's build commands and checks run as, through sudo
    /// (the package makes `clubdeploy-build`); unset, they run as the service and can read
    /// its database and keys. It must be a user for builds alone: clubdeploy stops every
    /// process of it after each command.
    #[serde(default)]
    pub build_user: Option<String>,
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
    /// The web hosts that serve the clubs (`[[hosts]]`); none: this machine.
    #[serde(default)]
    pub hosts: Vec<HostSettings>,
    /// Every application, resolved: `main` (from the top-level `repo_url`) and `[apps.*]`.
    #[serde(skip)]
    resolved_apps: Vec<App>,
    /// The `[[hosts]]`, checked, defaults filled in.
    #[serde(skip)]
    resolved_hosts: Vec<Host>,
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
        if let Some(user) = &self.build_user
            && (!crate::unix_user::plain_name(user) || user == "root")
        {
            return Err(ConfigError(format!(
                "`build_user` {user:?} must be the name of an unprivileged user of its own \
                 (the package's clubdeploy-build)"
            )));
        }
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
        self.resolved_hosts = hosts::resolve(&self.hosts, &self)?;
        Ok(self)
    }

    /// The `[[hosts]]`; empty when this machine alone serves the clubs.
    pub fn hosts(&self) -> &[Host] {
        &self.resolved_hosts
    }

    /// The hosts reached over SSH, which this version cannot deploy to yet (issue 21): a job
    /// that would change a club's link refuses while there is one, changing nothing.
    pub fn remote_hosts(&self) -> Vec<&Host> {
        self.resolved_hosts
            .iter()
            .filter(|h| !h.is_local())
            .collect()
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
