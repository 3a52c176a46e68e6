//! A webroot's directory, reached from `webroot_base` one name at a time through directory
//! descriptors opened with `O_NOFOLLOW`: a local user who can write a club's directory and
//! swaps it (or any directory on the way) for a symbolic link between the check at job start
//! and the switch cannot make clubdeploy write outside `webroot_base`. Directories on the way
//! must be writable by no one but this user or root.

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, bail};
use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

/// The directory holding a webroot, open, and the webroot's name in it.
pub struct WebrootDir {
    pub fd: OwnedFd,
    pub name: OsString,
    /// The directory's path, for messages.
    pub path: PathBuf,
}

/// Opens `base` (which must be canonical) as a directory.
pub fn open_base(base: &Path) -> anyhow::Result<OwnedFd> {
    let fd = rustix::fs::openat(rustix::fs::CWD, base, dir_flags(), Mode::empty())
        .with_context(|| format!("cannot open webroot_base {}", base.display()))?;
    check_owner(&fd, base)?;
    Ok(fd)
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// Opens the directory holding `webroot` (a path under `base`) from `base` down without
/// following any link; missing directories are made (mode 0755) when `create`, else `None`.
/// Refuses a link on the way and a directory others may write to, naming it.
pub fn open_parent(
    base: &Path,
    base_fd: &OwnedFd,
    webroot: &Path,
    create: bool,
) -> anyhow::Result<Option<WebrootDir>> {
    let relative = webroot.strip_prefix(base).map_err(|_| {
        anyhow::anyhow!(
            "{} is outside the folder that holds the clubs' sites ({})",
            webroot.display(),
            base.display()
        )
    })?;
    let mut names: Vec<OsString> = Vec::new();
    for component in relative.components() {
        match component {
            Component::Normal(name) => names.push(name.to_owned()),
            _ => bail!(
                "{} is not a plain path inside the folder that holds the clubs' sites",
                webroot.display()
            ),
        }
    }
    let Some(name) = names.pop() else {
        bail!(
            "{} is the folder that holds the clubs' sites itself, not a club's folder in it",
            webroot.display()
        );
    };
    // The base itself is borrowed, not duplicated: one system call less per webroot.
    let mut opened_dir: Option<OwnedFd> = None;
    let mut path = base.to_path_buf();
    for part in names {
        path.push(&part);
        let fd = opened_dir.as_ref().unwrap_or(base_fd);
        let opened = match rustix::fs::openat(fd, part.as_os_str(), dir_flags(), Mode::empty()) {
            Err(Errno::NOENT) if create => {
                let made =
                    match rustix::fs::mkdirat(fd, part.as_os_str(), Mode::from_raw_mode(0o755)) {
                        Ok(()) => true,
                        Err(Errno::EXIST) => false,
                        Err(e) => {
                            return Err(e)
                                .with_context(|| format!("cannot create {}", path.display()));
                        }
                    };
                let opened = rustix::fs::openat(fd, part.as_os_str(), dir_flags(), Mode::empty());
                // Apache passes through it to the webroot, whatever the service's umask (077).
                if let (true, Ok(dir)) = (made, &opened) {
                    rustix::fs::fchmod(dir, Mode::from_raw_mode(0o755))?;
                }
                opened
            }
            Err(Errno::NOENT) => return Ok(None),
            other => other,
        };
        let fd = match opened {
            Ok(fd) => fd,
            Err(Errno::LOOP | Errno::NOTDIR) => bail!(
                "{} is a symbolic link or not a directory; clubdeploy follows no link on the \
                 way to a webroot, so nothing was written there",
                path.display()
            ),
            Err(e) => return Err(e).with_context(|| format!("cannot open {}", path.display())),
        };
        check_owner(&fd, &path)?;
        opened_dir = Some(fd);
    }
    let fd = match opened_dir {
        Some(fd) => fd,
        None => base_fd.try_clone()?,
    };
    Ok(Some(WebrootDir { fd, name, path }))
}

/// Refuses a directory that anyone but this user or root owns or may write to: whoever can
/// write it can replace what clubdeploy puts there.
fn check_owner(fd: &OwnedFd, path: &Path) -> anyhow::Result<()> {
    let stat = rustix::fs::fstat(fd).with_context(|| format!("cannot stat {}", path.display()))?;
    let me = rustix::process::geteuid().as_raw();
    let mode = stat.st_mode & 0o7777;
    if stat.st_uid != me && stat.st_uid != 0 {
        bail!(
            "{} belongs to user id {}, not to the user clubdeploy runs as or root; whoever owns \
             it could redirect a webroot, so nothing was written there",
            path.display(),
            stat.st_uid
        );
    }
    if mode & 0o022 != 0 {
        bail!(
            "{} may be written by others (mode {:o}); make it writable by its owner only \
             (chmod go-w), so nobody else can redirect a webroot; nothing was written there",
            path.display(),
            mode
        );
    }
    Ok(())
}

/// Whether `name` in `dir` is a symbolic link (`false` when it is missing).
pub fn is_link(dir: &OwnedFd, name: &std::ffi::OsStr) -> std::io::Result<bool> {
    Ok(file_type(dir, name)? == Some(0o120000))
}

/// Whether `name` in `dir` is a directory itself, not a link to one.
pub fn is_dir(dir: &OwnedFd, name: &std::ffi::OsStr) -> std::io::Result<bool> {
    Ok(file_type(dir, name)? == Some(0o040000))
}

/// The `S_IFMT` bits of `name` in `dir`, not following a link; `None` when it is missing.
fn file_type(dir: &OwnedFd, name: &std::ffi::OsStr) -> std::io::Result<Option<u32>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => Ok(Some(stat.st_mode & 0o170000)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The names in an open directory.
pub fn names(dir: &OwnedFd) -> std::io::Result<Vec<OsString>> {
    use std::os::unix::ffi::OsStrExt;
    let mut listing = rustix::fs::Dir::read_from(dir)?;
    let mut names = Vec::new();
    while let Some(entry) = listing.read() {
        let entry = entry?;
        let name = std::ffi::OsStr::from_bytes(entry.file_name().to_bytes());
        if name != "." && name != ".." {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}
