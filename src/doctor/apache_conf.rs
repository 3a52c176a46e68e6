//! Reading Apache's configuration files for what the doctor checks: the `<Directory>` blocks
//! and what they set, and the paths Apache (as root) reads or writes: the files it includes
//! and its logs.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The most files an `Include` chain is followed through, and how deep.
const MOST_FILES: usize = 1000;
const DEEPEST: usize = 8;

/// The `<Directory path>` blocks of `files` with the value each gives `directive` (lower
/// case): (path, value).
pub fn directory_settings(files: &[PathBuf], directive: &str) -> Vec<(String, String)> {
    let directive = format!("{} ", directive.to_ascii_lowercase());
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
            } else if lower.starts_with(&directive)
                && let Some(dir) = &current
            {
                found.push((dir.clone(), line[directive.len()..].trim().to_owned()));
            }
        }
    }
    found
}

/// The blocks that apply to `path`, the most specific first.
pub fn applying<'a>(path: &str, blocks: &'a [(String, String)]) -> Vec<&'a (String, String)> {
    let mut applying: Vec<&(String, String)> = blocks
        .iter()
        .filter(|(dir, _)| {
            let dir = if dir.is_empty() { "/" } else { dir.as_str() };
            dir == "/" || path == dir || path.starts_with(&format!("{dir}/"))
        })
        .collect();
    applying.sort_by_key(|(dir, _)| std::cmp::Reverse(dir.len()));
    applying
}

/// Whether a release's `.htaccess` under `webroot` may set PHP's settings (`php_value
/// auto_prepend_file`, which runs a file of the release's choosing before every script,
/// the probe's too) or `Options`, by the most specific `AllowOverride` for it (`blocks`, from
/// [`directory_settings`]): `All`, or any `Options`. Apache 2.4's default is `None`.
pub fn htaccess_may_set_php(webroot: &str, blocks: &[(String, String)]) -> Option<String> {
    let (_, value) = applying(webroot, blocks).into_iter().next()?;
    value
        .split_whitespace()
        .map(|w| w.to_ascii_lowercase())
        .any(|w| w == "all" || w.starts_with("options"))
        .then(|| value.clone())
}

/// A path Apache's configuration names, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    pub path: PathBuf,
    /// `Include`, `ErrorLog`, …, as written.
    pub directive: String,
    pub file: PathBuf,
    pub line: usize,
}

/// Every configuration file reachable from `main` through `Include`/`IncludeOptional` (with
/// `*` and `?` in the last part of a path, or a folder: every file in it), and every path
/// named by those and by `ErrorLog`/`CustomLog`/`TransferLog` (pipes and syslog left out).
/// Relative paths are taken from `ServerRoot` (else `main`'s folder).
pub fn named_paths(main: &Path) -> (Vec<PathBuf>, Vec<Named>) {
    let root = server_root(main);
    let mut files = vec![main.to_path_buf()];
    let mut named = Vec::new();
    let mut next = 0;
    let mut depth = vec![0usize];
    while next < files.len() && files.len() < MOST_FILES {
        let (file, level) = (files[next].clone(), depth[next]);
        next += 1;
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            let mut words = line.split_whitespace();
            let (Some(directive), Some(value)) = (words.next(), words.next()) else {
                continue;
            };
            let lower = directive.to_ascii_lowercase();
            let value = value.trim_matches('"');
            let is_include = matches!(lower.as_str(), "include" | "includeoptional");
            let is_log = matches!(lower.as_str(), "errorlog" | "customlog" | "transferlog");
            if !(is_include || is_log) || value.starts_with('|') || value.starts_with("syslog") {
                continue;
            }
            let path = root.join(value);
            named.push(Named {
                path: path.clone(),
                directive: directive.to_owned(),
                file: file.clone(),
                line: n + 1,
            });
            if is_include && level < DEEPEST {
                for included in expand(&path) {
                    if !files.contains(&included) {
                        files.push(included);
                        depth.push(level + 1);
                    }
                }
            }
        }
    }
    (files, named)
}

/// `ServerRoot` as `main` sets it, else `main`'s folder.
fn server_root(main: &Path) -> PathBuf {
    let text = std::fs::read_to_string(main).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()?.eq_ignore_ascii_case("serverroot"))
                .then(|| words.next().map(|w| PathBuf::from(w.trim_matches('"'))))?
        })
        .next()
        .unwrap_or_else(|| main.parent().unwrap_or(Path::new("/")).to_path_buf())
}

/// The files an `Include` of `path` reads.
fn expand(path: &Path) -> Vec<PathBuf> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (dir, pattern) = if name.contains(['*', '?']) {
        (path.parent().unwrap_or(Path::new("/")), name.as_str())
    } else if path.is_dir() {
        (path, "*")
    } else {
        return vec![path.to_path_buf()];
    };
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| wildcard(pattern, &e.file_name().to_string_lossy()))
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found
}

/// Whether `name` matches `pattern` (`*`: any run of characters, `?`: one).
fn wildcard(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    fn go(p: &[char], n: &[char]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some('*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some('?'), Some(_)) => go(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    go(&p, &n)
}

/// The nearest of `path` and the folders above it that `uid` owns, if any: who owns a folder
/// may replace anything in it, so what Apache reads or writes there as root, that user
/// decides.
pub fn owned_by(path: &Path, uid: u32) -> Option<PathBuf> {
    path.ancestors()
        .find(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.uid() == uid))
        .map(Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_release_may_set_php_values_only_where_allowoverride_lets_it() {
        let blocks = vec![
            ("".to_owned(), "None".to_owned()),
            ("/var/www".to_owned(), "FileInfo AuthConfig".to_owned()),
            ("/srv/clubs".to_owned(), "All".to_owned()),
            (
                "/srv/clubs/zermatt".to_owned(),
                "Options=Indexes".to_owned(),
            ),
            ("/srv/clubs/davos".to_owned(), "None".to_owned()),
        ];
        assert_eq!(htaccess_may_set_php("/var/www/a/htdocs", &blocks), None);
        assert_eq!(
            htaccess_may_set_php("/srv/clubs/a/htdocs", &blocks).as_deref(),
            Some("All")
        );
        assert!(htaccess_may_set_php("/srv/clubs/zermatt/htdocs", &blocks).is_some());
        assert_eq!(
            htaccess_may_set_php("/srv/clubs/davos/htdocs", &blocks),
            None
        );
        // Nothing said: Apache 2.4 allows no overrides.
        assert_eq!(htaccess_may_set_php("/srv/a", &[]), None);
    }

    #[test]
    fn includes_are_followed_and_log_and_include_paths_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("conf-enabled")).unwrap();
        std::fs::create_dir_all(root.join("extra")).unwrap();
        std::fs::write(
            root.join("main.conf"),
            format!(
                "ServerRoot {root:?}\nErrorLog logs/error.log\nIncludeOptional conf-enabled/*.conf\n\
                 Include extra\nCustomLog \"|/usr/bin/rotatelogs x\" combined\n",
                root = root
            ),
        )
        .unwrap();
        std::fs::write(
            root.join("conf-enabled/a.conf"),
            "CustomLog /var/log/a.log combined\n",
        )
        .unwrap();
        std::fs::write(root.join("conf-enabled/b.txt"), "ErrorLog /never/read\n").unwrap();
        std::fs::write(root.join("extra/x"), "Include /etc/elsewhere.conf\n").unwrap();
        let (files, named) = named_paths(&root.join("main.conf"));
        assert_eq!(
            files,
            [
                root.join("main.conf"),
                root.join("conf-enabled/a.conf"),
                root.join("extra/x"),
                PathBuf::from("/etc/elsewhere.conf"),
            ]
        );
        let paths: Vec<(String, PathBuf, usize)> = named
            .iter()
            .map(|n| (n.directive.clone(), n.path.clone(), n.line))
            .collect();
        assert_eq!(
            paths,
            [
                ("ErrorLog".into(), root.join("logs/error.log"), 2),
                (
                    "IncludeOptional".into(),
                    root.join("conf-enabled/*.conf"),
                    3
                ),
                ("Include".into(), root.join("extra"), 4),
                ("CustomLog".into(), PathBuf::from("/var/log/a.log"), 1),
                ("Include".into(), PathBuf::from("/etc/elsewhere.conf"), 1),
            ]
        );
        assert!(wildcard("*.conf", "a.conf") && !wildcard("*.conf", "a.conf~"));
        assert!(wildcard("a?c", "abc") && !wildcard("a?c", "ac"));
    }

    #[test]
    fn a_path_is_owned_by_whoever_owns_it_or_a_folder_above_it() {
        let dir = tempfile::tempdir().unwrap();
        let theirs = dir.path().join("theirs");
        std::fs::create_dir_all(theirs.join("logs")).unwrap();
        // Someone who is not the owner of the folders above: nobody, if we may give it away.
        let me = rustix::process::geteuid().as_raw();
        let uid = if me == 0 {
            std::os::unix::fs::chown(&theirs, Some(65534), None).unwrap();
            65534
        } else {
            me
        };
        let log = theirs.join("logs/error.log");
        assert_eq!(owned_by(&log, uid).as_deref(), Some(theirs.as_path()));
        assert_eq!(
            owned_by(&theirs.join("not/yet/made"), uid),
            Some(theirs.clone())
        );
        if me == 0 {
            assert_eq!(owned_by(dir.path(), uid), None);
            assert_eq!(owned_by(Path::new("/etc/apache2/apache2.conf"), uid), None);
        }
    }
}
