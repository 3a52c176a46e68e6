//! Clearing what an interrupted job left half-done: build directories, trash, and temporary
//! links. Only called while holding the deploy lock, so none of these is in use.

use std::path::{Path, PathBuf};

use super::fsops::{
    BUILD_PREFIX, TEMP_LINK_INFIX, TEMPLATE_PREFIX, TRASH_PREFIX, delete_via_trash,
};
use super::webroot_dir;

/// Removes what an interrupted purge of a legacy copy left in `legacy_dir` (`.trash-*`).
pub fn clean_legacy_trash(legacy_dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    for entry in read_dir_or_empty(legacy_dir)? {
        if entry.to_string_lossy().starts_with(TRASH_PREFIX) {
            let path = legacy_dir.join(&entry);
            std::fs::remove_dir_all(&path)?;
            removed.push(path);
        }
    }
    Ok(removed)
}

/// Removes `.build-*` and `.trash-*` in `releases_dir`, and temporary links (`<name>.tmp-*`)
/// next to each webroot and the switch template in `webroot_base`. Returns what it removed.
pub fn clean_leftovers(
    releases_dir: &Path,
    webroots: &[PathBuf],
    webroot_base: &Path,
) -> std::io::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    for entry in read_dir_or_empty(releases_dir)? {
        let name = entry.to_string_lossy();
        let path = releases_dir.join(&entry);
        if name.starts_with(TRASH_PREFIX) {
            std::fs::remove_dir_all(&path)?;
            removed.push(path);
        } else if name.starts_with(BUILD_PREFIX) {
            delete_via_trash(releases_dir, &path)?;
            removed.push(path);
        }
    }
    // Temporary links are removed through directory descriptors opened from the base down
    // without following links, as the switch made them (see `webroot_dir`).
    let Ok(base_fd) = webroot_dir::open_base(webroot_base) else {
        return Ok(removed);
    };
    let template = format!("{TEMPLATE_PREFIX}{TEMP_LINK_INFIX}");
    remove_links_named(&base_fd, webroot_base, &template, &mut removed)?;
    for webroot in webroots {
        let dir = match webroot_dir::open_parent(webroot_base, &base_fd, webroot, false) {
            Ok(Some(dir)) => dir,
            // Missing, or a link or foreign directory on the way: nothing of ours is there.
            Ok(None) | Err(_) => continue,
        };
        let prefix = format!("{}{TEMP_LINK_INFIX}", dir.name.to_string_lossy());
        remove_links_named(&dir.fd, &dir.path, &prefix, &mut removed)?;
    }
    Ok(removed)
}

/// Removes the symbolic links in the open directory `dir` whose names start with `prefix`.
fn remove_links_named(
    dir: &std::os::fd::OwnedFd,
    shown: &Path,
    prefix: &str,
    removed: &mut Vec<PathBuf>,
) -> std::io::Result<()> {
    for name in webroot_dir::names(dir)? {
        if name.to_string_lossy().starts_with(prefix) && webroot_dir::is_link(dir, &name)? {
            rustix::fs::unlinkat(dir, name.as_os_str(), rustix::fs::AtFlags::empty())?;
            removed.push(shown.join(&name));
        }
    }
    Ok(())
}

fn read_dir_or_empty(dir: &Path) -> std::io::Result<Vec<std::ffi::OsString>> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries.map(|e| e.map(|e| e.file_name())).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}
