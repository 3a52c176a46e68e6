//! `clubdeploy doctor`: checks that the installation can do what it is for, and says in
//! plain words, with the fix, what would make deploys fail or the method not work. Each
//! finding is ok, a warning or a problem:
//!
//! - files: who may write `data_dir`, the database, `webroot_base` and the clubs' folders;
//!   free disk for two more releases;
//! - Apache: every club's webroot is some virtual host's DocumentRoot (named by the club's
//!   address), symbolic links are followed there, the release manifest and the probe are not
//!   served to the public, the configuration test passes, sudo allows the reload, no
//!   `.htaccess` may set PHP's settings, nothing Apache reads or writes as root lies in a
//!   folder of clubdeploy's user;
//! - PHP and OPcache, as the PHP that serves the clubs reports them through the probe: on,
//!   room for at least two releases, enough keys, `realpath_cache_ttl` against the waits;
//! - git: each application's repository answers;
//! - clubs: links changed by hand, legacy copies not adopted, releases no club runs beyond
//!   `keep_releases`.
//!
//! It changes nothing. The database connection is held only to read the clubs.

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::Settings;
use crate::db::DbPool;
use crate::db::clubs::ClubApp;
use crate::pipeline::command;
use crate::service::inventory::{self, ClubStatus};

mod apache;
mod apache_conf;
mod build;
mod clubs;
mod files;
mod git;
mod php;
mod releases;

use apache::*;
pub use apache::{VirtualHost, directory_options, follows_links, virtual_hosts};
use clubs::*;
use files::*;
use git::*;
use php::*;
pub use releases::development_file;
use releases::*;

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warning,
    Problem,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warning => "warning",
            Level::Problem => "problem",
        }
    }
}

/// One thing the doctor found.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// `files`, `apache`, `php`, `git`, `clubs` or `panel`.
    pub area: &'static str,
    pub level: Level,
    /// What was found, in plain words.
    pub what: String,
    /// How to fix it (empty when there is nothing to fix).
    pub fix: String,
}

/// Everything the doctor found, in the order checked.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub findings: Vec<Finding>,
}

impl Report {
    fn add(&mut self, area: &'static str, level: Level, what: String, fix: impl Into<String>) {
        self.findings.push(Finding {
            area,
            level,
            what,
            fix: fix.into(),
        });
    }

    fn ok(&mut self, area: &'static str, what: String) {
        self.add(area, Level::Ok, what, "");
    }

    /// The problem the running panel saw for itself: requests from the trusted proxy at
    /// `peer` carried `X-Forwarded-For` without the proxy's secret.
    pub fn proxy_without_secret(&mut self, peer: std::net::IpAddr) {
        self.add(
            "panel",
            Level::Problem,
            format!(
                "requests from the proxy at {peer} carry X-Forwarded-For but not the proxy's \
                 secret: the panel takes every client to be {peer}, so sign-in limits lump all \
                 staff together"
            ),
            "add `Include /etc/clubdeploy/apache-proxy-header.conf` to the panel's Apache \
             virtual host (see apache-panel.conf), then reload Apache",
        );
    }

    /// How many findings are at `level`.
    pub fn count(&self, level: Level) -> usize {
        self.findings.iter().filter(|f| f.level == level).count()
    }

    /// The report as lines for a terminal: each finding, then its fix indented.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for finding in &self.findings {
            out.push_str(&format!(
                "{:<8} {:<6} {}\n",
                finding.level.as_str(),
                finding.area,
                finding.what
            ));
            if !finding.fix.is_empty() {
                out.push_str(&format!("{:16}fix: {}\n", "", finding.fix));
            }
        }
        out.push_str(&format!(
            "{} problem{}, {} warning{}\n",
            self.count(Level::Problem),
            if self.count(Level::Problem) == 1 {
                ""
            } else {
                "s"
            },
            self.count(Level::Warning),
            if self.count(Level::Warning) == 1 {
                ""
            } else {
                "s"
            },
        ));
        out
    }
}

/// Per application, the built releases prune would delete: name and size in bytes.
type Unused = Vec<(String, Vec<(String, Option<u64>)>)>;

/// Runs every check.
pub fn examine(settings: &Settings, pool: &DbPool) -> anyhow::Result<Report> {
    let (webroots, statuses, unused) = {
        let mut conn = pool.get()?;
        let webroots = crate::db::clubs::webroots(&mut conn, None)?;
        let statuses = inventory::status(settings, &mut conn, None)?;
        let mut unused = Vec::new();
        for app in settings.apps() {
            // What prune would delete, by prune's own rule.
            let releases = crate::pipeline::release::list(&app.releases_dir)?;
            let facts = inventory::prune_facts(settings, app, &mut conn)?;
            let idle: Vec<(String, Option<u64>)> =
                crate::pipeline::release::prunable(&releases, &facts, settings.keep_releases)
                    .into_iter()
                    .map(|r| (r.name.to_string(), Some(r.manifest.bytes)))
                    .collect();
            unused.push((app.name.to_string(), idle));
        }
        (webroots, statuses, unused)
    };
    let walked = walk_releases(settings);
    let largest = walked.iter().map(|r| r.size).max().unwrap_or((0, 0));
    let mut report = Report::default();
    files(settings, &webroots, &mut report);
    disk(settings, largest, &mut report);
    apache(settings, &webroots, &mut report);
    php(settings, &webroots, largest, &mut report);
    git(settings, &mut report);
    clubs(settings, &statuses, &unused, &mut report);
    development_files(&walked, &mut report);
    panel(settings, &mut report);
    build::build_user(settings, &mut report);
    Ok(report)
}

/// Whether the panel can tell its proxy from anything else on this machine: a loopback
/// proxy's `X-Forwarded-For` is believed only with the proxy's secret.
fn panel(settings: &Settings, report: &mut Report) {
    let web = &settings.web;
    if !web.trusted_proxies.iter().any(|ip| ip.is_loopback()) {
        return;
    }
    match (web.proxy_secret_file.is_some(), web.proxy_secret()) {
        (false, _) => report.add(
            "panel",
            Level::Warning,
            "the panel believes X-Forwarded-For from loopback without a secret: anything on \
             this machine (every club's PHP under mod_php) can connect to it and claim any \
             address, past the sign-in limits per address"
                .into(),
            "set [web] proxy_secret_file to a file of 32 or more random letters and digits and \
             have the proxy send it (RequestHeader set X-Clubdeploy-Proxy \"...\"): the package \
             makes /etc/clubdeploy/proxy-secret and /etc/clubdeploy/apache-proxy-header.conf",
        ),
        (true, Err(e)) => report.add("panel", Level::Problem, format!("{e:#}"), ""),
        (true, Ok(_)) => report.ok(
            "panel",
            "the panel believes X-Forwarded-For only from a proxy that sends its secret".into(),
        ),
    }
}

/// Who the service runs as.
fn me() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// A user id as a name, when it has one.
fn user_name(uid: u32) -> String {
    crate::unix_user::name_of(uid).unwrap_or_else(|| format!("user {uid}"))
}

/// Runs `argv`; its output, or why it failed.
fn output_of(argv: &[String]) -> Result<String, String> {
    match command::run(argv, None) {
        Ok(ran) if ran.success => Ok(ran.output),
        Ok(ran) => Err(format!(
            "{} ({}): {}",
            ran.shown,
            ran.status,
            ran.output.trim()
        )),
        Err(e) => Err(format!("{} could not run: {e}", argv.join(" "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn php_settings_read_as_off() {
        for off in ["0", "", "Off", "false", " no "] {
            assert!(ini_off(off), "{off:?}");
        }
        for on in ["1", "On", "yes", "true"] {
            assert!(!ini_off(on), "{on:?}");
        }
    }

    #[test]
    fn test_suites_git_files_lock_files_and_env_files_are_development_files() {
        for (name, dir) in [
            ("tests", true),
            ("_test", true),
            (".git", true),
            (".github", true),
            (".gitignore", false),
            (".env", false),
            (".env.local", false),
            ("composer.lock", false),
        ] {
            assert!(development_file(name, dir), "{name}");
        }
        for (name, dir) in [
            ("tests", false),
            ("index.php", false),
            ("composer.json", false),
            ("environment.php", false),
            ("lib", true),
            ("composer.lock", true),
        ] {
            assert!(!development_file(name, dir), "{name}");
        }
    }

    #[test]
    fn reads_virtual_hosts_from_apachectl_s_and_their_files() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("sites.conf");
        std::fs::write(
            &conf,
            "<VirtualHost *:80>\n  ServerName zermatt.example\n  ServerAlias www.zermatt.example\n  \
             DocumentRoot \"/srv/www/zermatt/htdocs/\"\n</VirtualHost>\n\
             <VirtualHost *:80>\n  ServerName davos.example\n</VirtualHost>\n",
        )
        .unwrap();
        let listing = format!(
            "VirtualHost configuration:\n*:80                   is a NameVirtualHost\n\
             \x20        default server zermatt.example ({0}:1)\n\
             \x20        port 80 namevhost zermatt.example ({0}:1)\n\
             \x20        port 80 namevhost davos.example ({0}:6)\n\
             ServerRoot: \"/etc/apache2\"\nMain DocumentRoot: \"/var/www/html\"\n",
            conf.display()
        );
        let hosts = virtual_hosts(&listing);
        assert_eq!(hosts.len(), 2, "{hosts:?}");
        assert_eq!(hosts[0].names, ["zermatt.example", "www.zermatt.example"]);
        assert_eq!(
            hosts[0].document_root.as_deref(),
            Some("/srv/www/zermatt/htdocs")
        );
        assert_eq!(hosts[1].names, ["davos.example"]);
        assert_eq!(hosts[1].document_root, None);
    }

    #[test]
    fn follows_links_by_the_most_specific_directory_block() {
        let debian = vec![
            ("".to_owned(), "FollowSymLinks".to_owned()),
            ("/var/www".to_owned(), "Indexes FollowSymLinks".to_owned()),
        ];
        assert!(follows_links("/var/www/zermatt/htdocs", &debian));
        let mut strict = debian.clone();
        strict.push(("/var/www/zermatt".into(), "None".into()));
        assert!(!follows_links("/var/www/zermatt/htdocs", &strict));
        assert!(follows_links("/var/www/davos/htdocs", &strict));
        let mut owner = strict.clone();
        owner.push((
            "/var/www/zermatt/htdocs".into(),
            "+SymLinksIfOwnerMatch".into(),
        ));
        assert!(follows_links("/var/www/zermatt/htdocs", &owner));
        let off = vec![("/var/www".to_owned(), "-FollowSymLinks".to_owned())];
        assert!(!follows_links("/var/www/a/htdocs", &off));
        // Nothing said: Apache 2.4 follows links.
        assert!(follows_links("/srv/a/htdocs", &[]));
    }
}
