//! Clearing what an interrupted job left half-done: build directories, trash, and temporary
//! links. Only called while holding the deploy lock, so none of these is in use.

use std::path::{Path, PathBuf};

use super::build_user::BuildUser;
use super::fsops::{
    BUILD_PREFIX, TEMP_LINK_INFIX, TEMPLATE_PREFIX, TRASH_PREFIX, delete_via_trash,
};
use super::{legacy, webroot_dir};

/// What recovery cleared.
#[derive(Debug, Default)]
pub struct Leftovers {
    /// Build and trash directories and temporary links, removed.
    pub removed: Vec<PathBuf>,
    /// Legacy copies found beside their webroots, moved to the kept copies.
    pub kept: Vec<PathBuf>,
}

/// Removes `.build-*` and `.trash-*` in `releases_dir`, `.trash-*` in `legacy_dir` (an
/// interrupted purge), the switch template in `webroot_base` and the temporary links
/// (`<name>.tmp-*`) next to each club's webroot; a directory found there instead is a legacy
/// copy caught between its exchange and its move, and goes to `legacy_dir` as a kept copy of
/// that club (`webroots` are `(slug, webroot)`). What a build user made in a build folder
/// it is asked to hand over first, when the service cannot delete it alone.
pub fn clean_leftovers(
    releases_dir: &Path,
    legacy_dir: &Path,
    webroots: &[(String, PathBuf)],
    webroot_base: &Path,
    build_user: Option<&BuildUser>,
) -> std::io::Result<Leftovers> {
    let mut found = Leftovers::default();
    for entry in read_dir_or_empty(releases_dir)? {
        if entry.to_string_lossy().starts_with(BUILD_PREFIX) {
            let path = releases_dir.join(&entry);
            match build_user {
                Some(user) => user.delete(releases_dir, &path)?,
                None => delete_via_trash(releases_dir, &path)?,
            }
            found.removed.push(path);
        }
    }
    for dir in [releases_dir, legacy_dir] {
        remove_trash_in(dir, build_user, &mut found.removed)?;
    }
    // Temporary links are removed through directory descriptors opened from the base down
    // without following links, as the switch made them (see `webroot_dir`).
    let Ok(base_fd) = webroot_dir::open_base(webroot_base) else {
        return Ok(found);
    };
    let template = format!("{TEMPLATE_PREFIX}{TEMP_LINK_INFIX}");
    for name in webroot_dir::names(&base_fd)? {
        if name.to_string_lossy().starts_with(&template) && webroot_dir::is_link(&base_fd, &name)? {
            rustix::fs::unlinkat(&base_fd, name.as_os_str(), rustix::fs::AtFlags::empty())?;
            found.removed.push(webroot_base.join(&name));
        }
    }
    for (slug, webroot) in webroots {
        let dir = match webroot_dir::open_parent(webroot_base, &base_fd, webroot, false) {
            Ok(Some(dir)) => dir,
            // Missing, or a link or foreign directory on the way: nothing of ours is there.
            Ok(None) | Err(_) => continue,
        };
        let prefix = format!("{}{TEMP_LINK_INFIX}", dir.name.to_string_lossy());
        for name in webroot_dir::names(&dir.fd)? {
            if !name.to_string_lossy().starts_with(&prefix) {
                continue;
            }
            if webroot_dir::is_link(&dir.fd, &name)? {
                rustix::fs::unlinkat(&dir.fd, name.as_os_str(), rustix::fs::AtFlags::empty())?;
                found.removed.push(dir.path.join(&name));
            } else if webroot_dir::is_dir(&dir.fd, &name)? {
                // If it cannot be moved, it stays where it is: never lost either way.
                if let Ok(kept) = legacy::keep_leftover(&dir, &name, legacy_dir, slug) {
                    found.kept.push(kept);
                }
            }
        }
    }
    Ok(found)
}

fn remove_trash_in(
    dir: &Path,
    build_user: Option<&BuildUser>,
    removed: &mut Vec<PathBuf>,
) -> std::io::Result<()> {
    for entry in read_dir_or_empty(dir)? {
        if entry.to_string_lossy().starts_with(TRASH_PREFIX) {
            let path = dir.join(&entry);
            if let Err(e) = std::fs::remove_dir_all(&path) {
                let Some(user) = build_user else {
                    return Err(e);
                };
                user.hand_over(&path)?;
                std::fs::remove_dir_all(&path)?;
            }
            removed.push(path);
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
