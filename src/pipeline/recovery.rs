//! Clearing what an interrupted job left half-done: build directories, trash, and temporary
//! links. Only called while holding the deploy lock, so none of these is in use.

use std::path::{Path, PathBuf};

use super::fsops::{
    BUILD_PREFIX, TEMP_LINK_INFIX, TEMPLATE_PREFIX, TRASH_PREFIX, delete_via_trash,
};

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
    let template = format!("{TEMPLATE_PREFIX}{TEMP_LINK_INFIX}");
    for entry in read_dir_or_empty(webroot_base)? {
        if entry.to_string_lossy().starts_with(&template) {
            let path = webroot_base.join(&entry);
            remove_if_link(&path, &mut removed)?;
        }
    }
    for webroot in webroots {
        let (Some(dir), Some(name)) = (webroot.parent(), webroot.file_name()) else {
            continue;
        };
        let prefix = format!("{}{TEMP_LINK_INFIX}", name.to_string_lossy());
        for entry in read_dir_or_empty(dir)? {
            if entry.to_string_lossy().starts_with(&prefix) {
                remove_if_link(&dir.join(&entry), &mut removed)?;
            }
        }
    }
    Ok(removed)
}

fn remove_if_link(path: &Path, removed: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if std::fs::symlink_metadata(path)?.file_type().is_symlink() {
        std::fs::remove_file(path)?;
        removed.push(path.to_path_buf());
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
