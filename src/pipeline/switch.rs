//! Club webroots: where one may lie, what it links to, and the atomic swap of its link.

use std::collections::HashSet;
use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, bail};

use super::fsops::{TEMP_LINK_INFIX, random_suffix};
use super::release::MANIFEST;
use crate::domain::ReleaseName;

/// What a webroot is on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Webroot {
    /// Nothing there yet.
    Missing,
    /// A link that resolves to a published release.
    Release(ReleaseName),
    /// A link that resolves elsewhere, or nowhere (dangling).
    OtherLink(PathBuf),
    /// A real directory or file: a legacy copy that clubdeploy must never replace or delete.
    NotALink,
}

impl Webroot {
    /// The release, when the webroot runs one.
    pub fn release(&self) -> Option<&ReleaseName> {
        match self {
            Webroot::Release(name) => Some(name),
            _ => None,
        }
    }
}

/// Checks that `path` lies strictly under `base` (canonical) once `..` and symlinked parent
/// directories are resolved, and returns it absolute, with its own last component unresolved
/// (that one is the link clubdeploy manages).
pub fn resolve_under(base: &Path, path: &Path) -> anyhow::Result<PathBuf> {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()?.join(path)
    };
    let (parent, last) = match (absolute.parent(), absolute.file_name()) {
        (Some(parent), Some(last)) if !matches!(last.to_str(), Some(".." | ".")) => (parent, last),
        _ => bail!("{} cannot be a webroot", path.display()),
    };
    if absolute.components().next_back() != Some(Component::Normal(last)) {
        bail!("{} cannot be a webroot", path.display());
    }
    // Resolve the longest existing ancestor; the rest must be plain names.
    let mut existing = parent.to_path_buf();
    let mut rest = Vec::new();
    while existing.symlink_metadata().is_err() {
        match existing.components().next_back() {
            Some(Component::Normal(name)) => rest.push(name.to_owned()),
            Some(Component::ParentDir | Component::CurDir) => bail!(
                "webroot {} holds '..' or '.' below a directory that does not exist",
                path.display()
            ),
            _ => bail!("{} cannot be a webroot", path.display()),
        }
        existing.pop();
    }
    let mut resolved = existing
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", existing.display()))?;
    for name in rest.iter().rev() {
        resolved.push(name);
    }
    resolved.push(last);
    if !resolved.starts_with(base) || resolved == base {
        bail!(
            "webroot {} is outside webroot_base {} (it resolves to {})",
            path.display(),
            base.display(),
            resolved.display()
        );
    }
    Ok(resolved)
}

/// Reads what `webroot` is, resolving its link fully (as Apache and OPcache do).
pub fn inspect(webroot: &Path, releases_dir: &Path) -> std::io::Result<Webroot> {
    match std::fs::symlink_metadata(webroot) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Webroot::Missing),
        Err(e) => return Err(e),
        Ok(meta) if !meta.file_type().is_symlink() => return Ok(Webroot::NotALink),
        Ok(_) => {}
    }
    let target = match webroot.canonicalize() {
        Ok(target) => target,
        Err(_) => return Ok(Webroot::OtherLink(std::fs::read_link(webroot)?)),
    };
    let release = (target.parent() == Some(releases_dir))
        .then(|| target.file_name()?.to_str())
        .flatten()
        .and_then(|name| ReleaseName::parse(name).ok())
        .filter(|_| target.join(MANIFEST).is_file());
    Ok(match release {
        Some(name) => Webroot::Release(name),
        None => Webroot::OtherLink(target),
    })
}

/// Points `webroot` at `target` atomically: a temporary link next to it is renamed over it,
/// so at every instant the webroot is either the old link or the new one. Refuses to replace
/// anything that is not a link. Creates the webroot's parent directories when missing.
pub fn swap_link(webroot: &Path, target: &Path) -> anyhow::Result<()> {
    match std::fs::read_link(webroot) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {
            if let Some(parent) = webroot.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
        }
        Err(e) if e.kind() == ErrorKind::InvalidInput => bail!(not_a_link(webroot)),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", webroot.display())),
    }
    let temp = temp_link_path(webroot)?;
    std::os::unix::fs::symlink(target, &temp)
        .with_context(|| format!("cannot create {}", temp.display()))?;
    if let Err(e) = std::fs::rename(&temp, webroot) {
        let _ = std::fs::remove_file(&temp);
        return Err(e).with_context(|| format!("cannot switch {}", webroot.display()));
    }
    Ok(())
}

/// The message for a webroot that is a real directory or file.
pub fn not_a_link(webroot: &Path) -> String {
    format!(
        "webroot {} is a real directory or file, not a link (a legacy copy?); clubdeploy will \
         not replace it: move it away first",
        webroot.display()
    )
}

fn temp_link_path(webroot: &Path) -> anyhow::Result<PathBuf> {
    let name = webroot
        .file_name()
        .with_context(|| format!("{} has no file name", webroot.display()))?;
    let mut temp = name.to_owned();
    temp.push(format!("{TEMP_LINK_INFIX}{}", random_suffix()));
    Ok(webroot.with_file_name(temp))
}

/// Every release that some link under `base` resolves to, looking `depth` levels down
/// without following links: clubs the database has forgotten still count.
pub fn releases_linked_under(
    base: &Path,
    depth: usize,
    releases_dir: &Path,
) -> std::io::Result<HashSet<ReleaseName>> {
    let mut found = HashSet::new();
    let mut pending = vec![(base.to_path_buf(), 0)];
    while let Some((dir, level)) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::PermissionDenied => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_symlink() {
                if let Webroot::Release(name) = inspect(&entry.path(), releases_dir)? {
                    found.insert(name);
                }
            } else if kind.is_dir() && level < depth {
                pending.push((entry.path(), level + 1));
            }
        }
    }
    Ok(found)
}
