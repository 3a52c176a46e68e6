//! `[[hosts]]`: the web hosts that serve the clubs. Without any, this machine serves them
//! (nothing changes); with them, each is named, reached over SSH (or `local`) and may keep
//! its releases and webroots under paths of its own.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::ConfigError;
use crate::domain::{HostName, SshTarget};

/// One `[[hosts]]` table as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSettings {
    /// 1 to 32 of a-z, 0-9 and `-`.
    pub name: String,
    /// `local`, `ssh://user@host:port`, or a Host alias of `~/.ssh/config`.
    pub ssh: String,
    /// The SSH private key to reach it with (like `[git] ssh_key`).
    #[serde(default)]
    pub ssh_key: Option<PathBuf>,
    /// The known_hosts file that vouches for its host key (its key is always checked).
    #[serde(default)]
    pub known_hosts: Option<PathBuf>,
    /// Where it keeps releases (default: ours).
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// Where its clubs' webroots lie (default: ours); a club's webroot keeps its path
    /// relative to it.
    #[serde(default)]
    pub webroot_base: Option<PathBuf>,
    /// The configtest and reload run on it (default: the top-level `[reload]`).
    #[serde(default)]
    pub reload: Option<HostReload>,
    /// Where its health checks connect (e.g. its private address).
    #[serde(default)]
    pub health: Option<HostHealth>,
}

/// `[hosts.reload]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostReload {
    #[serde(default)]
    pub configtest: Option<Vec<String>>,
    #[serde(default)]
    pub command: Option<Vec<String>>,
}

/// `[hosts.health]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostHealth {
    #[serde(default)]
    pub connect_to: Option<String>,
}

/// A web host, checked and with its defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub name: HostName,
    pub ssh: SshTarget,
    pub ssh_key: Option<PathBuf>,
    pub known_hosts: Option<PathBuf>,
    pub data_dir: PathBuf,
    pub webroot_base: PathBuf,
    pub configtest: Vec<String>,
    pub reload: Vec<String>,
    pub connect_to: Option<String>,
}

impl Host {
    /// Whether this host is the machine clubdeploy runs on (no SSH).
    pub fn is_local(&self) -> bool {
        self.ssh == SshTarget::Local
    }
}

/// Checks every `[[hosts]]` table and fills in its defaults from `settings` (this machine's
/// paths and `[reload]`); a bad value is refused naming its key (`hosts.web2.ssh`).
pub(super) fn resolve(
    written: &[HostSettings],
    settings: &super::Settings,
) -> Result<Vec<Host>, ConfigError> {
    let mut hosts: Vec<Host> = Vec::new();
    for (n, host) in written.iter().enumerate() {
        let name = HostName::parse(host.name.trim())
            .map_err(|e| ConfigError(format!("`hosts[{n}].name`: {e}")))?;
        let key = |field: &str| format!("`hosts.{name}.{field}`");
        if hosts.iter().any(|h| h.name == name) {
            return Err(ConfigError(format!(
                "`hosts`: two hosts are named {name}: give each its own name"
            )));
        }
        let ssh = SshTarget::parse(host.ssh.trim())
            .map_err(|e| ConfigError(format!("{}: {e}", key("ssh"))))?;
        for (field, path) in [
            ("ssh_key", &host.ssh_key),
            ("known_hosts", &host.known_hosts),
            ("data_dir", &host.data_dir),
            ("webroot_base", &host.webroot_base),
        ] {
            if let Some(path) = path
                && !path.is_absolute()
            {
                return Err(ConfigError(format!(
                    "{} {}: give an absolute path",
                    key(field),
                    path.display()
                )));
            }
        }
        for (field, path) in [
            ("ssh_key", &host.ssh_key),
            ("known_hosts", &host.known_hosts),
        ] {
            if let Some(path) = path
                && !path.is_file()
            {
                return Err(ConfigError(format!(
                    "{} {}: no such file",
                    key(field),
                    path.display()
                )));
            }
        }
        let reload = host.reload.as_ref();
        let (configtest, command) = (
            reload
                .and_then(|r| r.configtest.clone())
                .unwrap_or_else(|| settings.reload.configtest.clone()),
            reload
                .and_then(|r| r.command.clone())
                .unwrap_or_else(|| settings.reload.command.clone()),
        );
        for (field, argv) in [
            ("reload.configtest", &configtest),
            ("reload.command", &command),
        ] {
            if settings.reload.policy != crate::domain::ReloadPolicy::Never && argv.is_empty() {
                return Err(ConfigError(format!(
                    "{} is empty but reload.policy is not \"never\"",
                    key(field)
                )));
            }
        }
        let connect_to = host.health.as_ref().and_then(|h| h.connect_to.clone());
        if let Some(address) = &connect_to {
            crate::domain::parse_connect_to(address)
                .map_err(|e| ConfigError(format!("{}: {e}", key("health.connect_to"))))?;
        }
        hosts.push(Host {
            ssh,
            ssh_key: host.ssh_key.clone(),
            known_hosts: host.known_hosts.clone(),
            data_dir: host
                .data_dir
                .clone()
                .unwrap_or_else(|| settings.data_dir.clone()),
            webroot_base: host
                .webroot_base
                .clone()
                .unwrap_or_else(|| settings.webroot_base.clone()),
            configtest,
            reload: command,
            connect_to: connect_to.or_else(|| settings.health.connect_to.clone()),
            name,
        });
    }
    Ok(hosts)
}
