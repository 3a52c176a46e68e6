//! `clubdeploy doctor`: checks that the installation can do what it is for, and says in
//! plain words, with the fix, what would make deploys fail or the method not work. Each
//! finding is ok, a warning or a problem:
//!
//! - files: who may write `data_dir`, the database, `webroot_base` and the clubs' folders;
//!   free disk for two more releases;
//! - Apache: every club's webroot is some virtual host's DocumentRoot (named by the club's
//!   address), symbolic links are followed there, the release manifest and the probe are not
//!   served to the public, the configuration test passes, sudo allows the reload;
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
use crate::inventory::{self, ClubStatus};
use crate::pipeline::command;

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
    /// `files`, `apache`, `php`, `git` or `clubs`.
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
    Ok(report)
}

/// Who the service runs as.
fn me() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// A user id as a name, when it has one.
fn user_name(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                let fields: Vec<&str> = line.split(':').collect();
                (fields.get(2) == Some(&uid.to_string().as_str())).then(|| fields[0].to_owned())
            })
        })
        .unwrap_or_else(|| format!("user {uid}"))
}

/// Checks that only the service user (or root) may change `path`; `what` names it.
fn writable_only_by_us(report: &mut Report, path: &Path, what: &str) -> bool {
    let Ok(meta) = std::fs::metadata(path) else {
        report.add(
            "files",
            Level::Problem,
            format!("{what} {} does not exist or cannot be read", path.display()),
            format!("create it, owned by {}", user_name(me())),
        );
        return false;
    };
    let mode = meta.permissions().mode() & 0o7777;
    let sticky = mode & 0o1000 != 0;
    if mode & 0o002 != 0 && !sticky || mode & 0o020 != 0 && meta.gid() != 0 {
        report.add(
            "files",
            Level::Problem,
            format!(
                "{what} {} may be written by others (mode {mode:o}): anyone who can write \
                 there can replace a club's site",
                path.display()
            ),
            format!("chmod go-w {}", path.display()),
        );
        return false;
    }
    if meta.uid() != me() && meta.uid() != 0 {
        report.add(
            "files",
            Level::Problem,
            format!(
                "{what} {} belongs to {}, so {} cannot be sure nobody else changes it",
                path.display(),
                user_name(meta.uid()),
                user_name(me())
            ),
            format!("chown {} {}", user_name(me()), path.display()),
        );
        return false;
    }
    true
}

fn files(settings: &Settings, webroots: &[ClubApp], report: &mut Report) {
    let mut fine = true;
    fine &= writable_only_by_us(report, &settings.data_dir, "data_dir");
    let database = settings.database_path();
    if let Ok(meta) = std::fs::metadata(&database) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            fine = false;
            report.add(
                "files",
                Level::Problem,
                format!(
                    "the database {} may be read by others (mode {mode:o}): it holds the staff's \
                     password hashes and sessions",
                    database.display()
                ),
                format!("chmod 600 {}", database.display()),
            );
        }
        if meta.uid() != me() {
            fine = false;
            report.add(
                "files",
                Level::Problem,
                format!(
                    "the database {} belongs to {}, not to {}",
                    database.display(),
                    user_name(meta.uid()),
                    user_name(me())
                ),
                format!("chown {} {}", user_name(me()), database.display()),
            );
        }
    }
    fine &= writable_only_by_us(report, &settings.webroot_base, "webroot_base");
    // Every folder between webroot_base and a club's webroot link.
    let mut folders = BTreeSet::new();
    for club in webroots {
        let mut up = Path::new(&club.webroot).parent();
        while let Some(dir) = up {
            if !dir.starts_with(&settings.webroot_base) || dir == settings.webroot_base {
                break;
            }
            folders.insert((dir.to_path_buf(), club.slug.clone()));
            up = dir.parent();
        }
    }
    for (dir, slug) in &folders {
        fine &= writable_only_by_us(report, dir, &format!("club {slug}'s folder"));
    }
    if fine {
        let who = if me() == 0 {
            "root".to_owned()
        } else {
            format!("{} and root", user_name(me()))
        };
        report.ok(
            "files",
            format!(
                "data_dir, the database, webroot_base and {} club folder{} may be changed by \
                 {who} only",
                folders.len(),
                if folders.len() == 1 { "" } else { "s" },
            ),
        );
    }
}

/// What walking one built release found.
struct Walked {
    app: String,
    name: String,
    /// Its size in bytes and its PHP files.
    size: (u64, u64),
    /// Development files in it (see [`development_file`]), a matching directory once.
    development: Vec<String>,
}

/// Whether a file or directory of a release is development material the web server would
/// serve to anyone: test suites (`tests/`, `_test/`), git's files (`.git*`), `composer.lock`
/// (exact versions for an attacker), `.env*` (secrets).
pub fn development_file(name: &str, is_dir: bool) -> bool {
    (is_dir && matches!(name, "tests" | "_test"))
        || name.starts_with(".git")
        || name.starts_with(".env")
        || (!is_dir && name == "composer.lock")
}

/// Walks every built release of every application once.
fn walk_releases(settings: &Settings) -> Vec<Walked> {
    fn walk(root: &Path, dir: &Path, found: &mut Walked) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let name = entry.file_name().to_string_lossy().into_owned();
            if development_file(&name, kind.is_dir()) {
                let path = entry.path();
                let shown = path
                    .strip_prefix(root)
                    .unwrap_or(&path)
                    .display()
                    .to_string();
                found.development.push(if kind.is_dir() {
                    format!("{shown}/")
                } else {
                    shown
                });
            }
            if kind.is_dir() {
                walk(root, &entry.path(), found);
            } else if kind.is_file() {
                found.size.0 += entry.metadata().map_or(0, |m| m.len());
                if entry.path().extension().is_some_and(|e| e == "php") {
                    found.size.1 += 1;
                }
            }
        }
    }
    let mut walked = Vec::new();
    for app in settings.apps() {
        let Ok(entries) = std::fs::read_dir(&app.releases_dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            if crate::domain::ReleaseName::parse(&name).is_err() {
                continue;
            }
            let mut found = Walked {
                app: app.name.to_string(),
                name,
                size: (0, 0),
                development: Vec::new(),
            };
            walk(&entry.path(), &entry.path(), &mut found);
            found.development.sort();
            walked.push(found);
        }
    }
    walked
}

/// Development files published in releases: a warning per release, naming the first few.
fn development_files(walked: &[Walked], report: &mut Report) {
    for release in walked.iter().filter(|r| !r.development.is_empty()) {
        let shown: Vec<&str> = release
            .development
            .iter()
            .take(5)
            .map(String::as_str)
            .collect();
        let more = release.development.len() - shown.len();
        report.add(
            "releases",
            Level::Warning,
            format!(
                "release {} of {} publishes development files the web server would serve: {}{}",
                release.name,
                release.app,
                shown.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ),
            "mark them `export-ignore` in the application's .gitattributes (e.g. \
             `/tests export-ignore`), or remove them in a [build] command, then deploy a new tag",
        );
    }
}

/// Free disk against `largest`, the largest release's (size, PHP files).
fn disk(settings: &Settings, largest: (u64, u64), report: &mut Report) {
    let releases = &settings.apps()[0].releases_dir;
    let dir = if releases.exists() {
        releases.as_path()
    } else {
        settings.data_dir.as_path()
    };
    let free = match rustix::fs::statvfs(dir) {
        Ok(stat) => stat.f_bavail * stat.f_frsize,
        Err(e) => {
            report.add(
                "files",
                Level::Warning,
                format!(
                    "the free disk space at {} cannot be read: {e}",
                    dir.display()
                ),
                "",
            );
            return;
        }
    };
    let (release, _) = largest;
    let mb = crate::opcache::mb;
    if release == 0 {
        report.ok(
            "files",
            format!("{} free for releases (none built yet)", mb(free)),
        );
    } else if free < 2 * release {
        report.add(
            "files",
            Level::Problem,
            format!(
                "{} free at {}, but a release takes up to {}: the next two deploys may not fit",
                mb(free),
                dir.display(),
                mb(release)
            ),
            "free disk space there, or prune unused releases (clubdeploy prune)",
        );
    } else {
        report.ok(
            "files",
            format!(
                "{} free: room for {} more releases of {}",
                mb(free),
                free / release,
                mb(release)
            ),
        );
    }
}

/// A `<VirtualHost>` as Apache's configuration declares it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VirtualHost {
    pub names: Vec<String>,
    pub document_root: Option<String>,
    pub file: PathBuf,
    pub line: usize,
}

/// The virtual hosts `apachectl -S` lists (each line ending `(file:line)`), read from their
/// files for their names and DocumentRoot.
pub fn virtual_hosts(listing: &str) -> Vec<VirtualHost> {
    let mut seen = BTreeSet::new();
    let mut hosts = Vec::new();
    for line in listing.lines() {
        let Some(open) = line.rfind('(') else {
            continue;
        };
        let Some(place) = line[open + 1..].strip_suffix(')') else {
            continue;
        };
        let Some((file, number)) = place.rsplit_once(':') else {
            continue;
        };
        let Ok(number) = number.parse::<usize>() else {
            continue;
        };
        if !seen.insert((file.to_owned(), number)) {
            continue;
        }
        let mut host = VirtualHost {
            file: PathBuf::from(file),
            line: number,
            ..VirtualHost::default()
        };
        if let Ok(text) = std::fs::read_to_string(file) {
            for directive in text.lines().skip(number.saturating_sub(1)).skip(1) {
                let directive = directive.trim();
                if directive.to_ascii_lowercase().starts_with("</virtualhost") {
                    break;
                }
                let mut words = directive.split_whitespace();
                let key = words.next().unwrap_or_default().to_ascii_lowercase();
                let unquote = |w: &str| w.trim_matches('"').trim_end_matches('/').to_owned();
                match key.as_str() {
                    "servername" | "serveralias" => host
                        .names
                        .extend(words.map(|w| unquote(w).to_ascii_lowercase())),
                    "documentroot" => host.document_root = words.next().map(unquote),
                    _ => {}
                }
            }
        }
        hosts.push(host);
    }
    hosts
}

/// The `<Directory path>` blocks of `files` with the Options they set: (path, options).
pub fn directory_options(files: &[PathBuf]) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for file in files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        let mut current: Option<String> = None;
        for line in text.lines() {
            let line = line.trim();
            let lower = line.to_ascii_lowercase();
            if lower.starts_with("<directory ") {
                current = Some(
                    line["<directory ".len()..]
                        .trim_end_matches('>')
                        .trim()
                        .trim_matches('"')
                        .trim_end_matches('/')
                        .to_owned(),
                );
            } else if lower.starts_with("</directory") {
                current = None;
            } else if lower.starts_with("options ")
                && let Some(dir) = &current
            {
                found.push((dir.clone(), line["options ".len()..].trim().to_owned()));
            }
        }
    }
    found
}

/// Whether Apache follows the symbolic link at `webroot`, by the most specific `<Directory>`
/// blocks that set Options for it (Apache's own default follows links).
pub fn follows_links(webroot: &str, blocks: &[(String, String)]) -> bool {
    let mut applying: Vec<&(String, String)> = blocks
        .iter()
        .filter(|(dir, _)| {
            let dir = if dir.is_empty() { "/" } else { dir.as_str() };
            dir == "/" || webroot == dir || webroot.starts_with(&format!("{dir}/"))
        })
        .collect();
    // Most specific first (the link's parent decides: Apache checks the link where it is).
    applying.sort_by_key(|(dir, _)| std::cmp::Reverse(dir.len()));
    for (_, options) in applying {
        let words: Vec<String> = options
            .split_whitespace()
            .map(|w| w.to_ascii_lowercase())
            .collect();
        let follows =
            |w: &str| w.ends_with("followsymlinks") || w.ends_with("symlinksifownermatch");
        if words.iter().any(|w| w.starts_with('-') && follows(w)) {
            return false;
        }
        if words.iter().any(|w| w.starts_with('+') && follows(w)) {
            return true;
        }
        if words
            .iter()
            .all(|w| w.starts_with('+') || w.starts_with('-'))
        {
            continue;
        }
        return words.iter().any(|w| follows(w) || w == "all");
    }
    true
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

fn apache(settings: &Settings, webroots: &[ClubApp], report: &mut Report) {
    // The configuration test every deploy runs first.
    match output_of(&settings.reload.configtest) {
        Ok(_) => report.ok(
            "apache",
            format!(
                "the configuration test passes ({})",
                settings.reload.configtest.join(" ")
            ),
        ),
        Err(why) => report.add(
            "apache",
            Level::Problem,
            format!("the configuration test fails, so every deploy would stop: {why}"),
            "fix Apache's configuration until `apachectl configtest` passes",
        ),
    }
    // Through sudo: the rule must allow each command without a password.
    for (key, argv) in [
        ("reload.configtest", &settings.reload.configtest),
        ("reload.command", &settings.reload.command),
        ("reload.vhosts", &settings.reload.vhosts),
    ] {
        if argv.first().map(String::as_str) != Some("sudo") {
            continue;
        }
        let command: Vec<String> = argv
            .iter()
            .skip(1)
            .skip_while(|a| a.starts_with('-'))
            .cloned()
            .collect();
        let mut check = vec!["sudo".to_owned(), "-n".into(), "-l".into()];
        check.extend(command.iter().cloned());
        if let Err(why) = output_of(&check) {
            report.add(
                "apache",
                Level::Problem,
                format!(
                    "sudo does not let {} run `{}` ({key}) without a password: {why}",
                    user_name(me()),
                    command.join(" ")
                ),
                "install the package's /etc/sudoers.d/clubdeploy (visudo -cf checks it)",
            );
        }
    }
    if settings.reload.vhosts.is_empty() {
        report.add(
            "apache",
            Level::Warning,
            "the virtual hosts were not checked: reload.vhosts is empty".into(),
            "set reload.vhosts to the command that lists them (apachectl -S)",
        );
        return;
    }
    let asked = settings.reload.vhosts.join(" ");
    let listing = match output_of(&settings.reload.vhosts) {
        Ok(listing) => listing,
        Err(why) => {
            report.add(
                "apache",
                Level::Problem,
                format!("Apache's virtual hosts cannot be listed by `{asked}`: {why}"),
                "make reload.vhosts list them (apachectl -S)",
            );
            return;
        }
    };
    let hosts = virtual_hosts(&listing);
    report.ok(
        "apache",
        format!(
            "`{asked}` lists {} virtual host{}",
            hosts.len(),
            if hosts.len() == 1 { "" } else { "s" }
        ),
    );
    // The files to read <Directory> blocks from: the vhosts', and the main configuration.
    let mut files: Vec<PathBuf> = hosts.iter().map(|h| h.file.clone()).collect();
    let argv = &settings.reload.vhosts;
    if let Some(i) = argv.iter().position(|a| a == "-f") {
        if let Some(main) = argv.get(i + 1) {
            files.push(PathBuf::from(main));
        }
    } else {
        files.push(PathBuf::from("/etc/apache2/apache2.conf"));
    }
    files.sort();
    files.dedup();
    let blocks = directory_options(&files);
    let mut served = 0;
    for club in webroots {
        let webroot = club.webroot.trim_end_matches('/');
        let serving: Vec<&VirtualHost> = hosts
            .iter()
            .filter(|h| h.document_root.as_deref() == Some(webroot))
            .collect();
        let label = format!("club {}'s webroot {webroot}", club.slug);
        if serving.is_empty() {
            report.add(
                "apache",
                Level::Problem,
                format!(
                    "{label} is the DocumentRoot of no virtual host `{asked}` lists: Apache \
                     does not serve it"
                ),
                format!(
                    "in the club's <VirtualHost>, set DocumentRoot {webroot}; then apachectl \
                     configtest and reload"
                ),
            );
            continue;
        }
        if let Some(url) = &club.url
            && let Some(host) = host_of(url)
            && !serving.iter().any(|h| h.names.contains(&host))
        {
            report.add(
                "apache",
                Level::Problem,
                format!(
                    "club {}'s address {url} names {host}, but the virtual host serving {webroot} \
                     answers to {}",
                    club.slug,
                    serving[0].names.join(", ")
                ),
                "make the club's address name its virtual host (clubdeploy club url), or add \
                 the name to the virtual host's ServerAlias",
            );
            continue;
        }
        if !follows_links(webroot, &blocks) {
            report.add(
                "apache",
                Level::Problem,
                format!(
                    "{label} is a symbolic link, but Apache does not follow links there \
                     (no FollowSymLinks): it would refuse the club's site"
                ),
                format!(
                    "allow them for its folder: <Directory {}> Options +SymLinksIfOwnerMatch \
                     </Directory>",
                    Path::new(webroot)
                        .parent()
                        .map_or_else(|| "/".into(), |p| p.display().to_string())
                ),
            );
            continue;
        }
        served += 1;
    }
    if served > 0 {
        report.ok(
            "apache",
            format!(
                "{served} webroot{} served by a virtual host that follows the link{}",
                if served == 1 { " is" } else { "s are" },
                if served == 1 { "" } else { "s" }
            ),
        );
    }
    // What a release holds for clubdeploy must not be served to the public.
    let urls: Vec<&String> = webroots
        .iter()
        .filter(|c| c.current_release.is_some())
        .filter_map(|c| c.url.as_ref())
        .take(3)
        .collect();
    for url in urls {
        let base = url.trim_end_matches('/');
        for (path, what) in [
            (crate::pipeline::release::MANIFEST, "the release manifest"),
            (crate::pipeline::probe::PROBE_PATH, "the probe"),
        ] {
            let address = format!("{base}/{path}");
            match crate::pipeline::health::status_of(&settings.health, &address) {
                Ok(200) => report.add(
                    "apache",
                    Level::Problem,
                    format!(
                        "{what} is served to anyone at {address}: it tells which commit and \
                         files each club runs"
                    ),
                    "deny it in Apache's configuration: <FilesMatch \
                     \"^\\.clubdeploy-release\\.json$\"> Require all denied </FilesMatch>",
                ),
                Ok(_) => {}
                Err(e) => report.add(
                    "apache",
                    Level::Warning,
                    format!("{address} could not be asked: {e}"),
                    "",
                ),
            }
        }
    }
}

/// The host an address names, lower case.
fn host_of(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host.starts_with('[') {
        host.split(']').next()?.trim_start_matches('[')
    } else {
        host.split(':').next()?
    };
    Some(host.to_ascii_lowercase())
}

/// PHP and OPcache through the probe; `largest`: the largest release's (size, PHP files).
fn php(settings: &Settings, webroots: &[ClubApp], largest: (u64, u64), report: &mut Report) {
    let insight = crate::opcache::sites(settings, webroots).and_then(|(urls, in_use)| {
        // One visit to the sites asked, so that OPcache holds their release (after a reload
        // it holds nothing until someone visits) and a release's footprint can be measured.
        for url in urls.iter().take(3) {
            let _ = crate::pipeline::health::status_of(&settings.health, url);
        }
        crate::opcache::read(settings, &urls, &in_use)
    });
    let insight = match insight {
        Ok(insight) => insight,
        Err(e) => {
            report.add(
                "php",
                Level::Warning,
                format!("PHP and OPcache were not checked: {e:#}"),
                "give the clubs their address (clubdeploy club url) and deploy once with \
                 probes on",
            );
            return;
        }
    };
    let mb = crate::opcache::mb;
    if !insight.enabled {
        report.add(
            "php",
            Level::Problem,
            format!(
                "OPcache is off in the PHP that serves {}: every request compiles every script",
                insight.asked
            ),
            "set opcache.enable=1 in PHP's configuration for Apache and reload Apache",
        );
        return;
    }
    let total = insight.used_memory + insight.free_memory + insight.wasted_memory;
    if insight.cache_full {
        report.add(
            "php",
            Level::Problem,
            format!(
                "OPcache is full ({} in all): it caches no more scripts, so the clubs' PHP is \
                 compiled on every request, and a deploy needs room for two releases at once",
                mb(total)
            ),
            "raise opcache.memory_consumption (and opcache.max_accelerated_files) and reload \
             Apache",
        );
    }
    let footprint = insight.footprint();
    if let Some(fit) = total.checked_div(footprint) {
        if fit < 2 {
            report.add(
                "php",
                Level::Problem,
                format!(
                    "OPcache has {} in all and a release takes {}: {} fit{}. During a deploy \
                     the old and the new release are both cached, so OPcache runs full and PHP \
                     slows down without an error",
                    mb(total),
                    mb(footprint),
                    if fit == 0 {
                        "not even one".to_owned()
                    } else {
                        fit.to_string()
                    },
                    if fit == 1 { "s" } else { "" }
                ),
                format!(
                    "raise opcache.memory_consumption to at least {} (MB) and reload Apache",
                    (3 * footprint).div_ceil(1 << 20)
                ),
            );
        } else {
            report.ok(
                "php",
                format!(
                    "OPcache has room for {fit} releases ({} in all, {} per release)",
                    mb(total),
                    mb(footprint)
                ),
            );
        }
    }
    // PHP files per release: as built on disk (every one may be cached), or as cached.
    let (_, on_disk) = largest;
    let cached = insight
        .releases
        .iter()
        .filter(|r| !r.dir.is_empty())
        .map(|r| r.scripts)
        .max()
        .unwrap_or(0);
    let scripts = on_disk.max(cached);
    if scripts > 0 && insight.max_cached_keys < 2 * scripts {
        report.add(
            "php",
            Level::Problem,
            format!(
                "OPcache may hold {} scripts (opcache.max_accelerated_files) and a release has \
                 {scripts} PHP files: two releases do not fit",
                insight.max_cached_keys
            ),
            format!(
                "raise opcache.max_accelerated_files to at least {} and reload Apache",
                4 * scripts
            ),
        );
    } else if scripts > 0 {
        report.ok(
            "php",
            format!(
                "OPcache may hold {} scripts; a release has {scripts} PHP files",
                insight.max_cached_keys
            ),
        );
    }
    if insight.ini.is_empty() {
        report.add(
            "php",
            Level::Warning,
            "PHP's settings were not read: the release asked was built before its probe \
             reported them"
                .into(),
            "deploy a release built by this version",
        );
        return;
    }
    let ini = |name: &str| insight.ini.get(name).cloned().unwrap_or_default();
    let ttl: u64 = ini("realpath_cache_ttl").parse().unwrap_or(0);
    let policy = settings.reload.policy;
    if policy != crate::domain::ReloadPolicy::Always
        && ttl > settings.reload.realpath_cache_ttl_secs
    {
        report.add(
            "php",
            Level::Problem,
            format!(
                "PHP remembers where a path leads for {ttl} s (realpath_cache_ttl), but \
                 clubdeploy counts on {} s (reload.realpath_cache_ttl_secs): without a reload, \
                 a release could be deleted while a club still reads from it",
                settings.reload.realpath_cache_ttl_secs
            ),
            format!("set reload.realpath_cache_ttl_secs = {ttl} (or more)"),
        );
    } else {
        report.ok(
            "php",
            format!(
                "realpath_cache_ttl is {ttl} s; {}",
                if policy == crate::domain::ReloadPolicy::Always {
                    "every switch reloads Apache, which empties it"
                } else {
                    "clubdeploy waits at least that long before pruning"
                }
            ),
        );
    }
    let never_revalidates = insight
        .ini
        .get("opcache.validate_timestamps")
        .is_some_and(|v| ini_off(v));
    if never_revalidates && policy != crate::domain::ReloadPolicy::Always {
        report.add(
            "php",
            Level::Problem,
            format!(
                "OPcache never looks at a file again once cached (opcache.validate_timestamps \
                 = 0), and reload.policy is \"{}\": a club switched without a reload keeps \
                 serving its old release until the web server restarts",
                match policy {
                    crate::domain::ReloadPolicy::AfterAll => "after_all",
                    _ => "never",
                }
            ),
            "set [reload] policy = \"always\" (or opcache.validate_timestamps = 1)",
        );
    }
    report.ok(
        "php",
        format!(
            "opcache.memory_consumption {} MB, max_accelerated_files {}, validate_timestamps {}",
            ini("opcache.memory_consumption"),
            ini("opcache.max_accelerated_files"),
            ini("opcache.validate_timestamps")
        ),
    );
}

/// Whether PHP's `ini_get` value of a boolean setting says off (`0`, `""`, `off` …).
fn ini_off(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "" | "0" | "off" | "false" | "no"
    )
}

fn git(settings: &Settings, report: &mut Report) {
    for app in settings.apps() {
        let skipped = crate::pipeline::git::open_mirror(app)
            .and_then(|mirror| mirror.skipped_tags())
            .unwrap_or_default();
        if let Some(words) = crate::pipeline::git::skipped_in_words(&skipped) {
            report.add(
                "git",
                Level::Warning,
                format!(
                    "{}: {}",
                    app.name,
                    words.split(". To deploy").next().unwrap_or(&words)
                ),
                "give each commit to deploy a tag clubdeploy can use (git tag NEW OLD; git push \
                 origin NEW), then fetch the tags",
            );
        }
        match crate::pipeline::fetch::ls_remote(&app.repo_url, &app.git) {
            Ok(tags) => report.ok(
                "git",
                format!(
                    "the repository of {} answers ({} tag{})",
                    app.name,
                    tags,
                    if tags == 1 { "" } else { "s" }
                ),
            ),
            Err(e) => report.add(
                "git",
                Level::Problem,
                format!(
                    "the repository of {} ({}) cannot be read: {e:#}",
                    app.name,
                    app.repo_url.redacted()
                ),
                "check the address, the deploy key and known_hosts ([git]) as the service user",
            ),
        }
    }
}

fn clubs(settings: &Settings, statuses: &[ClubStatus], unused: &Unused, report: &mut Report) {
    let mut fine = true;
    // Clubs that await their first deploy: one line per application, not one per club.
    for app in settings.apps() {
        let waiting: Vec<&str> = statuses
            .iter()
            .filter(|c| c.no_link_yet && c.app == app.name.as_str())
            .map(|c| c.slug.as_str())
            .collect();
        if waiting.is_empty() {
            continue;
        }
        fine = false;
        let shown: Vec<&str> = waiting.iter().take(5).copied().collect();
        let more = waiting.len() - shown.len();
        report.add(
            "clubs",
            Level::Warning,
            format!(
                "{} club{} {} no link{} yet ({}{}): {} their first deploy",
                waiting.len(),
                if waiting.len() == 1 { "" } else { "s" },
                if waiting.len() == 1 { "has" } else { "have" },
                if settings.several_apps() {
                    format!(" of {}", app.name)
                } else {
                    String::new()
                },
                shown.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                },
                if waiting.len() == 1 {
                    "it awaits"
                } else {
                    "they await"
                }
            ),
            if settings.several_apps() {
                format!("clubdeploy deploy <tag> --app {} --all", app.name)
            } else {
                "clubdeploy deploy <tag> --all".to_owned()
            },
        );
    }
    for club in statuses.iter().filter(|c| !c.no_link_yet) {
        let label = if settings.several_apps() {
            format!("club {}'s {}", club.slug, club.app)
        } else {
            format!("club {}", club.slug)
        };
        if club.legacy {
            fine = false;
            report.add(
                "clubs",
                Level::Warning,
                format!(
                    "{label} still runs its own copy of the site ({}), which deploys cannot switch",
                    club.webroot
                ),
                format!("adopt it: clubdeploy adopt {} <tag>", club.slug),
            );
        } else if let Some(problem) = &club.problem {
            fine = false;
            report.add(
                "clubs",
                Level::Problem,
                format!("{label}: {problem}"),
                format!("deploy to it: clubdeploy deploy <tag> --club {}", club.slug),
            );
        } else if club.drift {
            fine = false;
            report.add(
                "clubs",
                Level::Warning,
                format!(
                    "{label}'s link was changed by hand: it runs {}, clubdeploy last put {} there",
                    club.release.as_deref().unwrap_or("nothing"),
                    club.recorded_release.as_deref().unwrap_or("nothing")
                ),
                "deploy to it again, or leave it if that was meant",
            );
        }
    }
    for (app, idle) in unused {
        if !idle.is_empty() {
            fine = false;
            let bytes: u64 = idle.iter().filter_map(|(_, b)| *b).sum();
            report.add(
                "clubs",
                Level::Warning,
                format!(
                    "{} built release{} of {app} ({}) no club runs or would roll back to, \
                     beyond the keep_releases = {} kept",
                    idle.len(),
                    if idle.len() == 1 { "" } else { "s" },
                    crate::opcache::mb(bytes),
                    settings.keep_releases
                ),
                "clubdeploy prune",
            );
        }
    }
    if fine {
        report.ok(
            "clubs",
            format!(
                "{} webroot{} as clubdeploy left {}",
                statuses.len(),
                if statuses.len() == 1 { "" } else { "s" },
                if statuses.len() == 1 { "it" } else { "them" }
            ),
        );
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

    #[test]
    fn the_host_of_an_address() {
        assert_eq!(
            host_of("https://Zermatt.example:8443/x").as_deref(),
            Some("zermatt.example")
        );
        assert_eq!(
            host_of("http://u:p@davos.example/").as_deref(),
            Some("davos.example")
        );
        assert_eq!(host_of("http://[::1]:80/").as_deref(), Some("::1"));
        assert_eq!(host_of("no address"), None);
    }
}
