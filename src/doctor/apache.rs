//! Apache: the virtual hosts (`apachectl -S` and the files it names), each webroot served
//! under its address, links followed, the manifest and probe not public, sudo's rule.

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
