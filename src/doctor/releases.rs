//! Releases: every built release walked once, for its size, its PHP files and the
//! development files it would publish.

use super::*;

/// What walking one built release found.
pub(super) struct Walked {
    pub(super) app: String,
    pub(super) name: String,
    /// Its size in bytes and its PHP files.
    pub(super) size: (u64, u64),
    /// Development files in it (see [`development_file`]), a matching directory once.
    pub(super) development: Vec<String>,
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
pub(super) fn walk_releases(settings: &Settings) -> Vec<Walked> {
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
pub(super) fn development_files(walked: &[Walked], report: &mut Report) {
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
