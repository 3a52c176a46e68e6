//! Taking over a legacy webroot (the copy-per-club directory of the method before symlinks)
//! without a moment where the webroot is missing, and without losing the copy: a new link is
//! exchanged with the directory in one `renameat2(RENAME_EXCHANGE)`, then the directory is
//! moved, whole, into a backup directory on the same filesystem; undo does the reverse. Every
//! step is relative to directory descriptors opened without following links (see
//! [`webroot_dir`]). Also: what differs between the legacy copy and the release replacing it.
//!
//! The building blocks of adopting (issue 10); the job, command and panel around them come
//! with the multi-application data model.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags};
use rustix::io::Errno;

use super::fsops::{TEMP_LINK_INFIX, random_suffix};
use super::release::MANIFEST;
use super::webroot_dir;

/// What differs between a legacy copy and a release, by path relative to their roots.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeDiff {
    /// Files (or links) only the legacy copy has: local additions, uploads, caches.
    pub only_in_copy: Vec<String>,
    /// Files only the release has.
    pub only_in_release: Vec<String>,
    /// Files both have, with other content (or one a link, the other a file).
    pub differing: Vec<String>,
}

impl TreeDiff {
    /// Whether the copy is exactly the release.
    pub fn is_empty(&self) -> bool {
        self.only_in_copy.is_empty() && self.only_in_release.is_empty() && self.differing.is_empty()
    }
}

/// A file's content for comparing: bytes of a regular file, target of a link.
#[derive(PartialEq, Eq)]
enum Leaf {
    File(PathBuf),
    Link(PathBuf),
}

fn leaves(root: &Path) -> std::io::Result<BTreeMap<String, Leaf>> {
    let mut found = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            let path = entry.path();
            let relative = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_symlink() {
                found.insert(relative, Leaf::Link(std::fs::read_link(&path)?));
            } else if kind.is_file() {
                found.insert(relative, Leaf::File(path));
            }
        }
    }
    Ok(found)
}

/// Compares the legacy `copy` with `release` (its manifest left out), file by file and byte
/// by byte.
pub fn compare_trees(copy: &Path, release: &Path) -> std::io::Result<TreeDiff> {
    let copy_leaves = leaves(copy)?;
    let mut release_leaves = leaves(release)?;
    release_leaves.remove(MANIFEST);
    let mut diff = TreeDiff::default();
    for (path, leaf) in &copy_leaves {
        match (leaf, release_leaves.get(path)) {
            (_, None) => diff.only_in_copy.push(path.clone()),
            (Leaf::Link(a), Some(Leaf::Link(b))) if a == b => {}
            (Leaf::File(a), Some(Leaf::File(b))) if same_bytes(a, b)? => {}
            _ => diff.differing.push(path.clone()),
        }
    }
    diff.only_in_release = release_leaves
        .keys()
        .filter(|path| !copy_leaves.contains_key(*path))
        .cloned()
        .collect();
    Ok(diff)
}

fn same_bytes(a: &Path, b: &Path) -> std::io::Result<bool> {
    if std::fs::metadata(a)?.len() != std::fs::metadata(b)?.len() {
        return Ok(false);
    }
    Ok(std::fs::read(a)? == std::fs::read(b)?)
}

/// Where a legacy copy went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backup {
    /// The directory holding the copy, whole, as it was.
    pub path: PathBuf,
}

fn open_dir(path: &Path, create: bool) -> anyhow::Result<OwnedFd> {
    if create {
        match rustix::fs::mkdir(path, Mode::from_raw_mode(0o700)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", path.display())),
        }
    }
    rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("cannot open {}", path.display()))
}

fn device_of(fd: &OwnedFd) -> anyhow::Result<u64> {
    Ok(rustix::fs::fstat(fd)?.st_dev)
}

/// Replaces the legacy directory at `webroot` (under `base`) with a link to `release_dir`, in
/// one atomic exchange, then moves the directory into `backups_dir` as `backup_name`. Refuses,
/// changing nothing, when the webroot is not a real directory or the backups directory is on
/// another filesystem (a move there would be a copy, not a rename).
pub fn adopt(
    base: &Path,
    webroot: &Path,
    release_dir: &Path,
    backups_dir: &Path,
    backup_name: &str,
) -> anyhow::Result<Backup> {
    let base_fd = webroot_dir::open_base(base)?;
    let dir = webroot_dir::open_parent(base, &base_fd, webroot, false)?
        .with_context(|| format!("webroot {} does not exist", webroot.display()))?;
    let stat = rustix::fs::statat(&dir.fd, dir.name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW)
        .with_context(|| format!("cannot read {}", webroot.display()))?;
    if stat.st_mode & 0o170000 != 0o040000 {
        bail!(
            "webroot {} is not a real directory, so there is no legacy copy to adopt",
            webroot.display()
        );
    }
    let backups = open_dir(backups_dir, true)?;
    if device_of(&backups)? != device_of(&dir.fd)? {
        bail!(
            "the legacy copy {} cannot be kept in {}: they are on different filesystems, so \
             it would be copied instead of moved in one step; put data_dir on the filesystem \
             of the webroots; nothing was changed",
            webroot.display(),
            backups_dir.display()
        );
    }
    let temp = temp_name(&dir.name);
    rustix::fs::symlinkat(release_dir, &dir.fd, temp.as_os_str())
        .with_context(|| format!("cannot create a link in {}", dir.path.display()))?;
    // The instant of the switch: the webroot is the copy before it and the link after it.
    if let Err(e) = rustix::fs::renameat_with(
        &dir.fd,
        temp.as_os_str(),
        &dir.fd,
        dir.name.as_os_str(),
        RenameFlags::EXCHANGE,
    ) {
        let _ = rustix::fs::unlinkat(&dir.fd, temp.as_os_str(), AtFlags::empty());
        return Err(e).with_context(|| format!("cannot switch {}", webroot.display()));
    }
    // `temp` is now the legacy copy, whole; keep it beside the other backups.
    rustix::fs::renameat_with(
        &dir.fd,
        temp.as_os_str(),
        &backups,
        backup_name,
        RenameFlags::NOREPLACE,
    )
    .with_context(|| {
        format!(
            "the webroot {} now links to the release, but its legacy copy stays at {} (it \
             could not be moved to {})",
            webroot.display(),
            dir.path.join(&temp).display(),
            backups_dir.join(backup_name).display()
        )
    })?;
    Ok(Backup {
        path: backups_dir.join(backup_name),
    })
}

/// Puts the legacy copy `backup` back at `webroot` (which must be a link now), in one atomic
/// exchange; the link is removed afterwards.
pub fn undo(base: &Path, webroot: &Path, backup: &Backup) -> anyhow::Result<()> {
    let base_fd = webroot_dir::open_base(base)?;
    let dir = webroot_dir::open_parent(base, &base_fd, webroot, false)?
        .with_context(|| format!("webroot {} does not exist", webroot.display()))?;
    if !webroot_dir::is_link(&dir.fd, &dir.name)? {
        bail!(
            "webroot {} is not a link now, so the legacy copy cannot be put back over it",
            webroot.display()
        );
    }
    let (Some(backups_dir), Some(backup_name)) = (backup.path.parent(), backup.path.file_name())
    else {
        bail!("{} is not a backup", backup.path.display());
    };
    let backups = open_dir(backups_dir, false)?;
    let temp = temp_name(&dir.name);
    rustix::fs::renameat_with(
        &backups,
        backup_name,
        &dir.fd,
        temp.as_os_str(),
        RenameFlags::NOREPLACE,
    )
    .with_context(|| format!("cannot bring back {}", backup.path.display()))?;
    rustix::fs::renameat_with(
        &dir.fd,
        temp.as_os_str(),
        &dir.fd,
        dir.name.as_os_str(),
        RenameFlags::EXCHANGE,
    )
    .with_context(|| format!("cannot switch {} back", webroot.display()))?;
    // `temp` is now the link that served the release.
    rustix::fs::unlinkat(&dir.fd, temp.as_os_str(), AtFlags::empty())
        .with_context(|| format!("cannot remove {}", dir.path.join(&temp).display()))?;
    Ok(())
}

fn temp_name(name: &OsString) -> OsString {
    let mut temp = name.clone();
    temp.push(format!("{TEMP_LINK_INFIX}{}", random_suffix()));
    temp
}
