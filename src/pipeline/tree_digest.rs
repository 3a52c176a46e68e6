//! A release's tree as a list of what is in it (each file's size, SHA-256 and whether it may
//! run, each link's target, each directory), the same wherever it is made: the panel lists
//! the release it built, a web host's agent lists what was staged there, and the two must be
//! equal before any club on that host is switched.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One entry of a tree, by its path relative to the root (`/`-separated).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub path: String,
    #[serde(flatten)]
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Kind {
    Dir,
    File {
        size: u64,
        sha256: String,
        executable: bool,
    },
    Link {
        target: String,
    },
}

/// Every entry under `root`, sorted by path; links are listed, never followed.
pub fn digest(root: &Path) -> std::io::Result<Vec<Entry>> {
    let mut entries = Vec::new();
    walk(root, "", &mut entries)?;
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(entries)
}

fn walk(dir: &Path, prefix: &str, entries: &mut Vec<Entry>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = format!("{prefix}{name}");
        let meta = std::fs::symlink_metadata(entry.path())?;
        let kind = if meta.file_type().is_symlink() {
            Kind::Link {
                target: std::fs::read_link(entry.path())?
                    .to_string_lossy()
                    .into_owned(),
            }
        } else if meta.is_dir() {
            walk(&entry.path(), &format!("{path}/"), entries)?;
            Kind::Dir
        } else {
            let bytes = std::fs::read(entry.path())?;
            let digest = Sha256::digest(&bytes);
            Kind::File {
                size: meta.len(),
                sha256: digest.iter().map(|b| format!("{b:02x}")).collect(),
                executable: meta.permissions().mode() & 0o111 != 0,
            }
        };
        entries.push(Entry { path, kind });
    }
    Ok(())
}

/// The paths where `theirs` differs from `ours` (missing, extra or other), sorted.
pub fn differences(ours: &[Entry], theirs: &[Entry]) -> Vec<String> {
    use std::collections::BTreeMap;
    let ours: BTreeMap<&str, &Kind> = ours.iter().map(|e| (e.path.as_str(), &e.kind)).collect();
    let theirs: BTreeMap<&str, &Kind> = theirs.iter().map(|e| (e.path.as_str(), &e.kind)).collect();
    let mut paths: Vec<String> = ours
        .keys()
        .chain(theirs.keys())
        .filter(|p| ours.get(*p) != theirs.get(*p))
        .map(|p| (*p).to_owned())
        .collect();
    paths.sort();
    paths.dedup();
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_trees_are_equal_only_when_every_file_link_and_folder_is() {
        let root = tempfile::tempdir().unwrap();
        let (a, b) = (root.path().join("a"), root.path().join("b"));
        for dir in [&a, &b] {
            std::fs::create_dir_all(dir.join("src")).unwrap();
            std::fs::write(dir.join("index.php"), "<?php echo 1;").unwrap();
            std::fs::write(dir.join("src/x.php"), "x").unwrap();
            std::os::unix::fs::symlink("src/x.php", dir.join("alias.php")).unwrap();
        }
        assert_eq!(digest(&a).unwrap(), digest(&b).unwrap());
        assert!(differences(&digest(&a).unwrap(), &digest(&b).unwrap()).is_empty());
        std::fs::write(b.join("src/x.php"), "y").unwrap();
        std::fs::write(b.join("extra"), "").unwrap();
        std::fs::set_permissions(b.join("index.php"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        assert_eq!(
            differences(&digest(&a).unwrap(), &digest(&b).unwrap()),
            ["extra", "index.php", "src/x.php"]
        );
    }
}
