//! Files: who may write data_dir, the database, webroot_base and the clubs' folders; free
//! disk for two more releases.

use super::*;

/// Checks that only the service user (or root) may change `path`; `what` names it.
pub(super) fn writable_only_by_us(report: &mut Report, path: &Path, what: &str) -> bool {
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

pub(super) fn files(settings: &Settings, webroots: &[ClubApp], report: &mut Report) {
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

/// Free disk against `largest`, the largest release's (size, PHP files).
pub(super) fn disk(settings: &Settings, largest: (u64, u64), report: &mut Report) {
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
    let mb = crate::service::opcache::mb;
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
