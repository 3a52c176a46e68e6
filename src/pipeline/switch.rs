//! Club webroots: where one may lie, what it links to, and the atomic swap of its link.

use std::collections::HashSet;
use std::ffi::OsString;
use std::io::ErrorKind;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStringExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::AtFlags;
use rustix::io::Errno;

use anyhow::{Context, bail};

use super::fsops::{TEMP_LINK_INFIX, TEMPLATE_PREFIX, random_suffix};
use super::release::MANIFEST;
use super::webroot_dir;
use crate::domain::{InvalidInput, ReleaseName};

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

/// A refusal of bad input, as an error a caller can tell from a failure.
fn invalid(message: String) -> anyhow::Error {
    InvalidInput(message).into()
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
        _ => return Err(invalid(format!("{} cannot be a webroot", path.display()))),
    };
    if absolute.components().next_back() != Some(Component::Normal(last)) {
        return Err(invalid(format!("{} cannot be a webroot", path.display())));
    }
    // Resolve the longest existing ancestor; the rest must be plain names.
    let mut existing = parent.to_path_buf();
    let mut rest = Vec::new();
    while existing.symlink_metadata().is_err() {
        match existing.components().next_back() {
            Some(Component::Normal(name)) => rest.push(name.to_owned()),
            Some(Component::ParentDir | Component::CurDir) => {
                return Err(invalid(format!(
                    "webroot {} holds '..' or '.' below a directory that does not exist",
                    path.display()
                )));
            }
            _ => return Err(invalid(format!("{} cannot be a webroot", path.display()))),
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
        return Err(invalid(format!(
            "{} is outside the folder that holds the clubs' sites ({}): it resolves to {}",
            path.display(),
            base.display(),
            resolved.display()
        )));
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
    let release =
        release_named_by(&target, releases_dir).filter(|_| target.join(MANIFEST).is_file());
    Ok(match release {
        Some(name) => Webroot::Release(name),
        None => Webroot::OtherLink(target),
    })
}

/// What `webroot` links to, with a single `readlink` when the link names a release directory
/// directly (as every link clubdeploy writes does); otherwise as [`inspect`] finds it. Used on
/// the switch path, where a full `realpath` per club would cost more than the swap itself.
pub fn linked_release(webroot: &Path, releases_dir: &Path) -> std::io::Result<Webroot> {
    match std::fs::read_link(webroot) {
        Ok(target) => match release_named_by(&target, releases_dir) {
            Some(name) => Ok(Webroot::Release(name)),
            None => inspect(webroot, releases_dir),
        },
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Webroot::Missing),
        Err(e) if e.kind() == ErrorKind::InvalidInput => Ok(Webroot::NotALink),
        Err(e) => Err(e),
    }
}

/// The release whose directory `path` is, read from the path alone.
fn release_named_by(path: &Path, releases_dir: &Path) -> Option<ReleaseName> {
    if path.parent() != Some(releases_dir) {
        return None;
    }
    ReleaseName::parse(path.file_name()?.to_str()?).ok()
}

/// Points webroots at one release directory, each atomically: a temporary link next to the
/// webroot is renamed over it, so at every instant a webroot is the old link or the new one,
/// never missing (unlink-then-symlink leaves a gap). Refuses to replace anything that is not
/// a link; creates a webroot's parent directories when missing. Every step is relative to a
/// directory descriptor opened from `webroot_base` down without following links
/// ([`webroot_dir`]), so a directory swapped for a link mid-job cannot send a link elsewhere.
///
/// The temporary links are hard links of one template symlink made once per switcher: creating
/// a symlink allocates an inode, which measured ~0.5–1.3 ms on this project's machines against
/// ~15 µs for a hard link, and a symlink's target can never change, so webroots sharing its
/// inode is safe. Where the hard link fails (another filesystem), a fresh symlink is made.
pub struct Switcher {
    target: PathBuf,
    base: PathBuf,
    base_fd: Option<OwnedFd>,
    template: Option<OsString>,
    /// Webroots renamed so far (for the crash tests' `switch:after-N`).
    renamed: std::cell::Cell<usize>,
}

impl Switcher {
    /// A switcher to `target` for webroots under `base` (canonical), its template link in
    /// `base`.
    pub fn new(target: &Path, base: &Path) -> Switcher {
        let base_fd = webroot_dir::open_base(base).ok();
        let name: OsString =
            format!("{TEMPLATE_PREFIX}{TEMP_LINK_INFIX}{}", random_suffix()).into();
        let template = base_fd
            .as_ref()
            .and_then(|fd| rustix::fs::symlinkat(target, fd, name.as_os_str()).ok())
            .map(|()| name);
        Switcher {
            target: target.to_path_buf(),
            base: base.to_path_buf(),
            base_fd,
            template,
            renamed: std::cell::Cell::new(0),
        }
    }

    /// Points `webroot` (under the base) at the target.
    pub fn swap(&self, webroot: &Path) -> anyhow::Result<()> {
        if let Some((_, mut link)) = self.stage(webroot, None)? {
            link.commit()?;
        }
        Ok(())
    }

    /// Points each of `webroots` at the target unless its link already names the target, in
    /// order, in two passes: every new link is made beside its webroot first, then all are
    /// renamed over their webroots in one tight run, so the batch changes over in the time of
    /// its renames alone. Returns what each switched webroot was before (as
    /// [`linked_release`] reads it against `releases_dir`; `None` when it already was the
    /// target and nothing changed): one `readlinkat` serves both the check and the answer.
    /// Stops at the first webroot that fails (its error in [`Batch::error`]); the webroots
    /// before it are switched, and no new link is left behind.
    pub fn switch_batch(&self, webroots: &[&Path], releases_dir: &Path) -> Batch {
        let mut staged = Vec::with_capacity(webroots.len());
        let mut error = None;
        for webroot in webroots {
            match self.stage(webroot, Some(releases_dir)) {
                Ok(link) => staged.push(link),
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        let mut before = Vec::with_capacity(staged.len());
        let crash_test = crate::crash::armed();
        let renaming = std::time::Instant::now();
        for link in &mut staged {
            match link {
                None => before.push(None),
                Some((was, link)) => match link.commit() {
                    Ok(()) => {
                        before.push(Some(std::mem::replace(was, Webroot::Missing)));
                        self.renamed.set(self.renamed.get() + 1);
                        if crash_test {
                            crate::crash::point(&format!("switch:after-{}", self.renamed.get()));
                        }
                    }
                    Err(e) => {
                        // A failed rename stops the batch before the staged webroot it
                        // failed on: the error is that webroot's.
                        error = Some(e);
                        break;
                    }
                },
            }
        }
        let changeover = renaming.elapsed();
        // Closes the directories; each link left unrenamed (after a failure) is removed.
        drop(staged);
        Batch {
            before,
            error,
            changeover,
        }
    }

    /// Makes the new link for `webroot` beside it, not yet renamed over it; with
    /// `releases_dir`, `None` when the webroot already links to the target. Also returns what
    /// the webroot was (`Missing` without `releases_dir`).
    fn stage<'a>(
        &'a self,
        webroot: &'a Path,
        releases_dir: Option<&Path>,
    ) -> anyhow::Result<Option<(Webroot, Staged<'a>)>> {
        let opened;
        let base_fd = match &self.base_fd {
            Some(fd) => fd,
            None => {
                opened = webroot_dir::open_base(&self.base)?;
                &opened
            }
        };
        let dir = webroot_dir::open_parent(&self.base, base_fd, webroot, true)?
            .with_context(|| format!("cannot create the directory of {}", webroot.display()))?;
        let before = match rustix::fs::readlinkat(&dir.fd, dir.name.as_os_str(), Vec::new()) {
            Ok(target) => Some(PathBuf::from(OsString::from_vec(target.into_bytes()))),
            Err(Errno::NOENT) => None,
            Err(Errno::INVAL) => bail!(not_a_link(webroot)),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", webroot.display())),
        };
        let previous = match (releases_dir, before) {
            (None, _) => Webroot::Missing,
            (Some(_), Some(target)) if target == self.target => return Ok(None),
            (Some(releases_dir), Some(target)) => match release_named_by(&target, releases_dir) {
                Some(name) => Webroot::Release(name),
                // A link clubdeploy did not write: resolved fully, before it is replaced.
                None => inspect(webroot, releases_dir)
                    .with_context(|| format!("cannot read {}", webroot.display()))?,
            },
            (Some(_), None) => Webroot::Missing,
        };
        let mut temp = dir.name.clone();
        temp.push(format!("{TEMP_LINK_INFIX}{}", random_suffix()));
        let symlink = || rustix::fs::symlinkat(&self.target, &dir.fd, temp.as_os_str());
        match &self.template {
            Some(template) => rustix::fs::linkat(
                base_fd,
                template.as_os_str(),
                &dir.fd,
                temp.as_os_str(),
                AtFlags::empty(),
            )
            .or_else(|_| symlink()),
            None => symlink(),
        }
        .with_context(|| format!("cannot create a link in {}", dir.path.display()))?;
        Ok(Some((
            previous,
            Staged {
                dir,
                temp: Some(temp),
                webroot,
            },
        )))
    }
}

/// What [`Switcher::switch_batch`] did: what each webroot switched was before (`None`: it
/// already was the target), in order, and why it stopped early, if it did.
#[derive(Debug)]
pub struct Batch {
    pub before: Vec<Option<Webroot>>,
    pub error: Option<anyhow::Error>,
    /// How long the renames took: the time in which the batch's clubs were on mixed releases.
    pub changeover: std::time::Duration,
}

/// Webroots whose new links [`Switcher::switch_batch`] is given at once by a job: each holds
/// its directory open until renamed, well under the usual limit of 1,024 open files.
pub const SWITCH_BATCH: usize = 256;

/// A webroot's new link, made beside it and not yet renamed over it; dropped without
/// [`Staged::commit`], it removes the new link.
struct Staged<'a> {
    dir: webroot_dir::WebrootDir,
    temp: Option<OsString>,
    webroot: &'a Path,
}

impl Staged<'_> {
    /// Renames the new link over the webroot: the one atomic change. When it fails, the new
    /// link stays staged, and dropping it removes it.
    fn commit(&mut self) -> anyhow::Result<()> {
        let temp = self.temp.as_ref().expect("a staged link is committed once");
        rustix::fs::renameat(&self.dir.fd, temp.as_os_str(), &self.dir.fd, &self.dir.name)
            .with_context(|| format!("cannot switch {}", self.webroot.display()))?;
        self.temp = None;
        Ok(())
    }
}

impl Drop for Staged<'_> {
    fn drop(&mut self) {
        if let Some(temp) = &self.temp {
            let _ = rustix::fs::unlinkat(&self.dir.fd, temp.as_os_str(), AtFlags::empty());
        }
    }
}

impl Drop for Switcher {
    fn drop(&mut self) {
        if let (Some(fd), Some(template)) = (&self.base_fd, &self.template) {
            let _ = rustix::fs::unlinkat(fd, template.as_os_str(), AtFlags::empty());
        }
    }
}

/// The message for a webroot that is a real directory or file.
pub fn not_a_link(webroot: &Path) -> String {
    format!(
        "webroot {} is a real directory or file, not a link (a legacy copy?); clubdeploy will \
         not replace it: move it away first",
        webroot.display()
    )
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
                if let Webroot::Release(name) = linked_release(&entry.path(), releases_dir)? {
                    found.insert(name);
                }
            } else if kind.is_dir() && level < depth {
                pending.push((entry.path(), level + 1));
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let base = root.path().canonicalize().unwrap().join("www");
        let releases = root.path().canonicalize().unwrap().join("releases");
        std::fs::create_dir_all(&base).unwrap();
        std::fs::create_dir_all(releases.join("v1-0000000a")).unwrap();
        std::fs::write(releases.join("v1-0000000a").join(MANIFEST), "{}").unwrap();
        (root, base, releases)
    }

    #[test]
    fn resolve_under_accepts_paths_below_the_base_and_refuses_escapes() {
        let (root, base, _) = world();
        let ok = resolve_under(&base, &base.join("a/htdocs")).unwrap();
        assert_eq!(ok, base.join("a/htdocs"));
        let dotted = resolve_under(&base, &base.join("a/../b/htdocs")).unwrap_err();
        assert!(dotted.to_string().contains("'..'"), "{dotted}");
        std::fs::create_dir(base.join("real")).unwrap();
        assert_eq!(
            resolve_under(&base, &base.join("real/../c/htdocs")).unwrap(),
            base.join("c/htdocs")
        );
        std::os::unix::fs::symlink(root.path(), base.join("up")).unwrap();
        assert!(resolve_under(&base, &base.join("up/htdocs")).is_err());
        std::os::unix::fs::symlink("/nonexistent", base.join("dangling")).unwrap();
        assert!(resolve_under(&base, &base.join("dangling/htdocs")).is_err());
        assert!(resolve_under(&base, &base).is_err());
    }

    #[test]
    fn switcher_without_a_template_still_swaps_with_fresh_links() {
        let (_root, base, releases) = world();
        let target = releases.join("v1-0000000a");
        let mut switcher = Switcher::new(&target, &base);
        // As when the template could not be made: every link is a fresh symlink.
        let template = switcher.template.take().unwrap();
        std::fs::remove_file(base.join(template)).unwrap();
        let webroot = base.join("club/htdocs");
        switcher.swap(&webroot).unwrap();
        assert_eq!(std::fs::read_link(&webroot).unwrap(), target);
        assert_eq!(
            linked_release(&webroot, &releases).unwrap(),
            Webroot::Release(ReleaseName::parse("v1-0000000a").unwrap())
        );
    }

    #[test]
    fn switcher_shares_one_link_inode_and_removes_its_template() {
        use std::os::unix::fs::MetadataExt;
        let (_root, base, releases) = world();
        let target = releases.join("v1-0000000a");
        let switcher = Switcher::new(&target, &base);
        for club in ["a", "b"] {
            switcher.swap(&base.join(club).join("htdocs")).unwrap();
        }
        drop(switcher);
        let ino = |club: &str| {
            std::fs::symlink_metadata(base.join(club).join("htdocs"))
                .unwrap()
                .ino()
        };
        assert_eq!(ino("a"), ino("b"));
        let mut left: Vec<_> = std::fs::read_dir(&base)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        left.sort();
        assert_eq!(left, ["a", "b"]);
    }

    #[test]
    fn switcher_refuses_to_replace_a_real_directory() {
        let (_root, base, releases) = world();
        let webroot = base.join("legacy");
        std::fs::create_dir(&webroot).unwrap();
        let switcher = Switcher::new(&releases.join("v1-0000000a"), &base);
        let err = switcher.swap(&webroot).unwrap_err();
        assert!(err.to_string().contains("real directory"), "{err}");
        assert!(webroot.is_dir());
        assert_eq!(
            linked_release(&webroot, &releases).unwrap(),
            Webroot::NotALink
        );
    }
}
