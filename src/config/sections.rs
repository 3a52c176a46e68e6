//! The tables of the configuration below the top level (`[build]`, `[git]`, `[jobs]`,
//! `[audit]`, `[web]`, `[reload]`, `[probe]`, `[health]`, `[rollout]`): each one's keys, their
//! defaults and the rules that read them.

use std::path::PathBuf;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::domain::ReloadPolicy;

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
