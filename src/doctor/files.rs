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
    // A folder not made yet is no problem: the club's first deploy makes it (only this user
    // may write it then), and the folder above it, which exists, is checked.
    for (dir, slug) in folders.iter().filter(|(dir, _)| {
        !matches!(std::fs::symlink_metadata(dir), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
    }) {
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

/// "room for 12 more releases of 84.0 MB"; past a thousand, "room for more than 1,000 …".
fn room_for(free: u64, release: u64) -> String {
    let n = free / release.max(1);
    let size = crate::domain::size_in_words(release);
    match n {
        1 => format!("room for 1 more release of {size}"),
        n if n > 1000 => format!("room for more than 1,000 more releases of {size}"),
        n => format!("room for {n} more releases of {size}"),
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
    let size = crate::domain::size_in_words;
    if release == 0 {
        report.ok(
            "files",
            format!("{} free for releases (none built yet)", size(free)),
        );
    } else if free < 2 * release {
        report.add(
            "files",
            Level::Problem,
            format!(
                "{} free at {}, but a release takes up to {}: the next two deploys may not fit",
                size(free),
                dir.display(),
                size(release)
            ),
            "free disk space there, or prune unused releases (clubdeploy prune)",
        );
    } else {
        report.ok(
            "files",
            format!("{} free: {}", size(free), room_for(free, release)),
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn room_on_the_disk_is_said_in_sane_units_and_numbers() {
        assert_eq!(
            super::room_for(31_530_179 * 17, 17),
            "room for more than 1,000 more releases of 17 bytes"
        );
        assert_eq!(
            super::room_for(50_000_000_000, 84_000_000),
            "room for 595 more releases of 84.0 MB"
        );
        assert_eq!(
            super::room_for(5_000, 3_000),
            "room for 1 more release of 3 KB"
        );
        assert_eq!(crate::domain::size_in_words(3_200_000_000), "3.2 GB");
    }
}
