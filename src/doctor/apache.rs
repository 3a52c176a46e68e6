//! Apache: the virtual hosts (`apachectl -S` and the files it names), each webroot served
//! under its address, links followed, no `.htaccess` that may set PHP's settings, the
//! manifest and probe not public, sudo's rule, nothing Apache reads or writes as root in a
//! folder clubdeploy's user owns.

use super::apache_conf::{
    applying, directory_settings, htaccess_may_set_php, named_paths, owned_by,
};
use super::*;

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
    directory_settings(files, "options")
}

/// Whether Apache follows the symbolic link at `webroot`, by the most specific `<Directory>`
/// blocks that set Options for it (Apache's own default follows links).
pub fn follows_links(webroot: &str, blocks: &[(String, String)]) -> bool {
    // Most specific first (the link's parent decides: Apache checks the link where it is).
    for (_, options) in applying(webroot, blocks) {
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

pub(super) fn apache(settings: &Settings, webroots: &[ClubApp], report: &mut Report) {
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
    // The files to read <Directory> blocks from: the vhosts', the main configuration and
    // every file it includes.
    let mut files: Vec<PathBuf> = hosts.iter().map(|h| h.file.clone()).collect();
    let argv = &settings.reload.vhosts;
    let main = match argv.iter().position(|a| a == "-f") {
        Some(i) => argv.get(i + 1).map(PathBuf::from),
        None => Some(PathBuf::from("/etc/apache2/apache2.conf")),
    };
    let (included, named) = main.as_deref().map(named_paths).unwrap_or_default();
    files.extend(included);
    files.sort();
    files.dedup();
    root_paths(&named, report);
    let blocks = directory_options(&files);
    let overrides = directory_settings(&files, "allowoverride");
    let mut served = 0;
    let mut overridable: Vec<(String, String)> = Vec::new();
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
            && let Some(host) = crate::domain::url_host(url)
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
        if let Some(value) = htaccess_may_set_php(webroot, &overrides) {
            overridable.push((label.clone(), value));
        }
        served += 1;
    }
    if let Some((first, value)) = overridable.first() {
        let more = match overridable.len() {
            1 => String::new(),
            n => format!(" and {} more", n - 1),
        };
        report.add(
            "apache",
            Level::Warning,
            format!(
                "{first}{more}: Apache lets a release's .htaccess change PHP's settings there \
                 (AllowOverride {value}), so a release could run code of its choosing before \
                 every script (php_value auto_prepend_file), the probe's too"
            ),
            "set AllowOverride None (or one without All and Options) in the <Directory> block \
             for the clubs' webroots; then apachectl configtest and reload",
        );
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

/// What Apache reads or writes as root (its included files and logs) must not lie in a
/// folder clubdeploy's user owns: that user could put a configuration there, or a link where
/// a log goes, and have root follow it. Nothing to say when clubdeploy runs as root.
fn root_paths(named: &[super::apache_conf::Named], report: &mut Report) {
    let uid = me();
    if uid == 0 {
        return;
    }
    let mut bad = 0;
    for found in named {
        if let Some(owned) = owned_by(&found.path, uid) {
            bad += 1;
            report.add(
                "apache",
                Level::Problem,
                format!(
                    "Apache, as root, uses {} ({} in {}:{}){}, which {} owns: clubdeploy's user \
                     could make root read or write what it likes there",
                    found.path.display(),
                    found.directive,
                    found.file.display(),
                    found.line,
                    match owned == found.path {
                        true => String::new(),
                        false => format!(", in {}", owned.display()),
                    },
                    user_name(uid)
                ),
                "move it to a folder root owns (/etc/apache2 for configuration, \
                 /var/log/apache2 for logs) and change the directive",
            );
        }
    }
    if bad == 0 && !named.is_empty() {
        report.ok(
            "apache",
            format!(
                "the {} files and logs Apache's configuration names lie outside {}'s folders",
                named.len(),
                user_name(uid)
            ),
        );
    }
}
