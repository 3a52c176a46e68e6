//! Taking over a legacy webroot (the copy-per-club directory of the method before symlinks)
//! without a moment where the webroot is missing, and without losing the copy: a new link is
//! exchanged with the directory in one `renameat2(RENAME_EXCHANGE)`, then the directory is
//! moved, whole, into a backup directory on the same filesystem; undo does the reverse. Every
//! step is relative to directory descriptors opened without following links (see
//! [`webroot_dir`]). Also: what differs between the legacy copy and the release replacing it.
//!

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags};
use rustix::io::Errno;

use super::fsops::{TEMP_LINK_INFIX, random_suffix};
use super::release::MANIFEST;
use super::tree_diff::TreeDiff;
use super::webroot_dir;

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

/// Compares the legacy `copy` with `release` (its manifest and health probe left out: they
/// are clubdeploy's), file by file and byte by byte.
pub fn compare_trees(copy: &Path, release: &Path) -> std::io::Result<TreeDiff> {
    let copy_leaves = leaves(copy)?;
    let mut release_leaves = leaves(release)?;
    release_leaves.remove(MANIFEST);
    release_leaves.remove(super::probe::PROBE_PATH);
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

/// The name of a club's backup taken at `at`: `<slug>.<UTC time>` (a slug holds no `.`, so
/// the backups of `a` and `a-b` never mix).
pub fn backup_name(slug: &str, at: chrono::DateTime<chrono::Utc>) -> String {
    format!("{slug}.{}", at.format("%Y%m%dT%H%M%S%.6fZ"))
}

/// A kept legacy copy, for listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptCopy {
    pub slug: String,
    pub backup: Backup,
    /// The bytes of its regular files.
    pub bytes: u64,
}

/// The legacy copies kept in `backups_dir` (of club `slug`, or all), oldest first.
pub fn kept_copies(backups_dir: &Path, slug: Option<&str>) -> std::io::Result<Vec<KeptCopy>> {
    let entries = match std::fs::read_dir(backups_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut kept = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // `<slug>.<time>`; a `.trash-*` left by an interrupted purge has no slug.
        let Some((owner, _)) = name.split_once('.').filter(|(owner, _)| !owner.is_empty()) else {
            continue;
        };
        if !entry.file_type()?.is_dir() || slug.is_some_and(|s| s != owner) {
            continue;
        }
        let bytes = leaves(&entry.path())?
            .values()
            .filter_map(|leaf| match leaf {
                Leaf::File(path) => std::fs::metadata(path).ok().map(|m| m.len()),
                Leaf::Link(_) => None,
            })
            .sum();
        kept.push(KeptCopy {
            slug: owner.to_owned(),
            backup: Backup { path: entry.path() },
            bytes,
        });
    }
    kept.sort_by(|a, b| a.backup.path.cmp(&b.backup.path));
    Ok(kept)
}

/// Deletes a kept legacy copy: renamed into a `.trash-*` directory first (recovery finishes
/// the job if the process dies), then removed.
pub fn purge(backups_dir: &Path, backup: &Backup) -> std::io::Result<()> {
    super::fsops::delete_via_trash(backups_dir, &backup.path)
}

/// Files a legacy copy that a crash between its exchange and its move (adopt or undo) left
/// beside its webroot, as `<name>.tmp-*` in `dir`, into `backups_dir` as a copy of `slug`, so
/// it is listed and never lost. Returns where it went. Recovery calls this for each such
/// directory it finds while it clears temporary links.
pub fn keep_leftover(
    dir: &webroot_dir::WebrootDir,
    name: &std::ffi::OsStr,
    backups_dir: &Path,
    slug: &str,
) -> anyhow::Result<PathBuf> {
    let backups = open_dir(backups_dir, true)?;
    let target = backup_name(slug, chrono::Utc::now());
    rustix::fs::renameat_with(
        &dir.fd,
        name,
        &backups,
        target.as_str(),
        RenameFlags::NOREPLACE,
    )
    .with_context(|| format!("cannot keep {}", dir.path.join(name).display()))?;
    Ok(backups_dir.join(target))
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
    crate::crash::point("adopt:after-exchange");
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
