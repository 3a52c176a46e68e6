//! A release tree's safety checks before it is published: every symbolic link stays inside
//! the tree and leads only through real folders of it, and the names clubdeploy writes at a
//! release's top are free.

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

use anyhow::bail;

use super::release::MANIFEST;

/// Refuses a tree that holds, at its top, an entry of a name clubdeploy writes there itself
/// (the manifest, the probe's folder): whatever it is, a file or a link, clubdeploy would
/// write through it or trust it.
pub fn check_reserved_names(root: &Path) -> anyhow::Result<()> {
    for name in [MANIFEST, super::probe::PROBE_DIR] {
        if std::fs::symlink_metadata(root.join(name)).is_ok() {
            bail!(
                "the release holds {name}, a name clubdeploy keeps for itself at the top of a \
                 release; rename it in the repository (or have the build leave it out)"
            );
        }
    }
    Ok(())
}

/// Refuses a tree holding a symbolic link that leads out of the tree, or through another
/// link on the way: each link is resolved a folder at a time with the tree as its root
/// ([`leads`]), as the system would resolve it but never past the tree's top; a dangling one
/// by its path as written. Names the first such entry.
pub fn check_links(root: &Path) -> anyhow::Result<()> {
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(entry.path());
                continue;
            }
            if !kind.is_symlink() {
                continue;
            }
            let path = entry.path();
            let relative = path.strip_prefix(root).unwrap_or(&path);
            let shown = relative.display().to_string();
            let target = std::fs::read_link(&path)?;
            let from: Vec<OsString> = relative
                .parent()
                .into_iter()
                .flat_map(|p| p.iter().map(OsString::from))
                .collect();
            match leads(root, from, &target, &mut 0)? {
                Leads::Inside => {}
                Leads::Out => bail!(
                    "the release holds a symbolic link that leads out of it: {shown} -> {}; \
                     links must stay inside the release",
                    target.display()
                ),
                Leads::Through(other) => bail!(
                    "the release holds a symbolic link whose target passes through another \
                     link: {shown} -> {} (through {}); a link may lead only through real \
                     folders of the release",
                    target.display(),
                    other.display()
                ),
            }
        }
    }
    Ok(())
}

/// Where a link in a tree leads.
#[derive(Debug, PartialEq, Eq)]
enum Leads {
    /// To a path inside the tree (which may not exist).
    Inside,
    /// Above the tree's top, to an absolute path, or round more links than the system follows.
    Out,
    /// Through this other link (a path in the tree), not as the last part of the target.
    Through(PathBuf),
}

/// Links the system follows in one resolution before it gives up (`ELOOP`).
const MAX_HOPS: usize = 40;

/// Resolves `target`, a link's target read in the folder `from` (its parts, below `root`),
/// one part at a time with `root` as the top: `..` at the top leads out; a link as the last
/// part is followed (at most [`MAX_HOPS`] in all); a link before the last part is refused;
/// from the first part that does not exist on, the rest is read as written.
fn leads(
    root: &Path,
    mut at: Vec<OsString>,
    target: &Path,
    hops: &mut usize,
) -> std::io::Result<Leads> {
    let parts: Vec<Component> = target.components().collect();
    let mut as_written = false;
    for (n, part) in parts.iter().enumerate() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                if at.pop().is_none() {
                    return Ok(Leads::Out);
                }
            }
            Component::Normal(name) => {
                at.push(name.into());
                if as_written {
                    continue;
                }
                let path: PathBuf = std::iter::once(root.as_os_str())
                    .chain(at.iter().map(OsString::as_os_str))
                    .collect();
                let meta = match std::fs::symlink_metadata(&path) {
                    Ok(meta) => meta,
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                        ) =>
                    {
                        as_written = true;
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                if !meta.file_type().is_symlink() {
                    continue;
                }
                let here: PathBuf = at.iter().collect();
                if n + 1 < parts.len() {
                    return Ok(Leads::Through(here));
                }
                *hops += 1;
                if *hops > MAX_HOPS {
                    return Ok(Leads::Out);
                }
                let next = std::fs::read_link(&path)?;
                at.pop();
                return leads(root, at, &next, hops);
            }
            Component::RootDir | Component::Prefix(_) => return Ok(Leads::Out),
        }
    }
    Ok(Leads::Inside)
}

#[cfg(test)]
mod link_tests {
    use std::ffi::OsString;
    use std::os::unix::fs::symlink;
    use std::path::{Path, PathBuf};

    use super::{Leads, MANIFEST, check_links, check_reserved_names, leads};

    #[test]
    fn links_inside_the_release_are_fine_and_links_out_of_it_are_named() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("release");
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        std::fs::write(dir.join("index.php"), "").unwrap();
        symlink("index.php", dir.join("current")).unwrap();
        symlink("../../index.php", dir.join("a/b/up")).unwrap();
        symlink("missing.php", dir.join("dangling")).unwrap();
        check_links(&dir).unwrap();

        for (name, target) in [
            ("passwd.txt", "/etc/passwd"),
            ("a/escape", "../../outside"),
            ("a/b/escape", "../../../x"),
        ] {
            let link = dir.join(name);
            symlink(target, &link).unwrap();
            let error = check_links(&dir).unwrap_err().to_string();
            assert!(error.contains(&format!("{name} -> {target}")), "{error}");
            std::fs::remove_file(link).unwrap();
        }
        // A chain: each link alone looks inside, together they leave.
        symlink("../x", dir.join("a/b/s")).unwrap();
        symlink("a/b/s/../../..", dir.join("chain")).unwrap();
        std::fs::create_dir_all(dir.join("a/x")).unwrap();
        let error = check_links(&dir).unwrap_err().to_string();
        assert!(
            error.contains("chain -> a/b/s/../../.. (through a/b/s)"),
            "{error}"
        );
        std::fs::remove_file(dir.join("chain")).unwrap();
        // A link as the last part is followed; round and round is out.
        symlink("a/b/s", dir.join("to-s")).unwrap();
        check_links(&dir).unwrap();
        symlink("loop-b", dir.join("loop-a")).unwrap();
        symlink("loop-a", dir.join("loop-b")).unwrap();
        let error = check_links(&dir).unwrap_err().to_string();
        assert!(error.contains("leads out of it: loop-"), "{error}");
    }

    #[test]
    fn a_link_is_resolved_a_folder_at_a_time_with_the_tree_as_its_top() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("release");
        std::fs::create_dir_all(dir.join("d1/d2/d3")).unwrap();
        symlink("../../..", dir.join("d1/d2/d3/l")).unwrap();
        let at = |parts: &[&str]| parts.iter().map(OsString::from).collect::<Vec<_>>();
        let leads = |from: &[&str], target: &str| leads(&dir, at(from), Path::new(target), &mut 0);
        assert_eq!(
            leads(&["d1", "d2", "d3"], "../../..").unwrap(),
            Leads::Inside
        );
        assert_eq!(
            leads(&[], "d1/d2/d3/l/../../../outside").unwrap(),
            Leads::Through(PathBuf::from("d1/d2/d3/l"))
        );
        assert_eq!(leads(&[], "d1/d2/d3/l").unwrap(), Leads::Inside);
        assert_eq!(leads(&[], "missing/../..").unwrap(), Leads::Out);
        assert_eq!(leads(&[], "missing/x/../y").unwrap(), Leads::Inside);
        assert_eq!(leads(&["d1"], "/etc/passwd").unwrap(), Leads::Out);
        assert_eq!(leads(&["d1"], "./../d1/d2").unwrap(), Leads::Inside);
    }

    #[test]
    fn names_clubdeploy_writes_at_a_release_top_are_refused_whatever_they_are() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("release");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub").join(MANIFEST), "").unwrap();
        check_reserved_names(&dir).unwrap();
        for name in [MANIFEST, ".clubdeploy"] {
            symlink("sub", dir.join(name)).unwrap();
            let error = check_reserved_names(&dir).unwrap_err().to_string();
            assert!(error.contains(&format!("holds {name},")), "{error}");
            std::fs::remove_file(dir.join(name)).unwrap();
        }
    }
}
