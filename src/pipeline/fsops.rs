//! The few filesystem moves every step is made of: random sibling names, fsync of a
//! directory, and delete-by-renaming-to-trash-first.

use std::fs::File;
use std::path::{Path, PathBuf};

use rand::Rng;
use rand::distr::Alphanumeric;

/// Prefix of a build in progress inside the releases directory.
pub const BUILD_PREFIX: &str = ".build-";
/// Prefix of a directory being deleted inside the releases directory.
pub const TRASH_PREFIX: &str = ".trash-";
/// Infix of a temporary link next to a webroot, before it is renamed over the webroot.
pub const TEMP_LINK_INFIX: &str = ".tmp-";
/// Name of the template link a switch hard-links from, in the webroot base (then
/// [`TEMP_LINK_INFIX`] and a random suffix).
pub const TEMPLATE_PREFIX: &str = ".clubdeploy-link";

/// Ten random letters and digits, for names that must not collide.
pub fn random_suffix() -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(10)
        .map(char::from)
        .collect()
}

/// Makes a rename or a new entry in `dir` durable.
pub fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Deletes a directory inside `releases_dir` by first renaming it to a `.trash-*` sibling, so
/// that a half-deleted tree never stands under a release's name; a crash leaves only trash.
pub fn delete_via_trash(releases_dir: &Path, dir: &Path) -> std::io::Result<()> {
    let trash = trash_path(releases_dir);
    std::fs::rename(dir, &trash)?;
    std::fs::remove_dir_all(&trash)
}

/// A fresh `.trash-*` path inside `releases_dir`.
pub fn trash_path(releases_dir: &Path) -> PathBuf {
    releases_dir.join(format!("{TRASH_PREFIX}{}", random_suffix()))
}
