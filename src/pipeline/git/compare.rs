//! Comparing a commit's tree with a legacy copy on disk, for the confirmation before an
//! adopt.

use std::path::Path;

use git2::{ObjectType, Oid};

use super::Mirror;

impl Mirror {
    /// What differs between the tree of `commit` and the directory `copy` (a legacy copy), by
    /// git object id, without writing the tree out: for the confirmation before an adopt.
    pub fn compare_with_copy(
        &self,
        commit: &str,
        copy: &Path,
    ) -> anyhow::Result<crate::pipeline::tree_diff::TreeDiff> {
        let tree = self.repo.find_commit(Oid::from_str(commit)?)?.tree()?;
        let mut in_tree: std::collections::BTreeMap<String, Oid> = Default::default();
        tree.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
            if entry.kind() == Some(ObjectType::Blob)
                && let Ok(name) = entry.name()
            {
                in_tree.insert(format!("{dir}{name}"), entry.id());
            }
            git2::TreeWalkResult::Ok
        })?;
        // The release the copy is compared with holds what `git archive` gives.
        let ignored = crate::pipeline::attributes::export_ignored(&self.path, &tree)?;
        in_tree.retain(|path, _| !crate::pipeline::attributes::is_left_out(&ignored, path));
        let mut diff = crate::pipeline::tree_diff::TreeDiff::default();
        let mut seen = std::collections::BTreeSet::new();
        let odb = self.repo.odb()?;
        let mut pending = vec![copy.to_path_buf()];
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir)? {
                let entry = entry?;
                let kind = entry.file_type()?;
                let path = entry.path();
                let relative = path.strip_prefix(copy)?.to_string_lossy().into_owned();
                let id = if kind.is_dir() {
                    pending.push(path);
                    continue;
                } else if kind.is_symlink() {
                    let target = std::fs::read_link(&path)?;
                    let bytes = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::as_bytes(
                        target.as_os_str(),
                    );
                    Oid::hash_object(ObjectType::Blob, bytes)?
                } else if kind.is_file() {
                    // Only a file the tree has, of the very size of its blob, is read: a copy's
                    // huge or sparse file is never hashed (at most the tree's own bytes are).
                    let Some(tree_id) = in_tree.get(&relative) else {
                        diff.only_in_copy.push(relative.clone());
                        seen.insert(relative);
                        continue;
                    };
                    let (size, _) = odb.read_header(*tree_id)?;
                    if entry.metadata()?.len() != size as u64 {
                        diff.differing.push(relative.clone());
                        seen.insert(relative);
                        continue;
                    }
                    Oid::hash_file(ObjectType::Blob, &path)?
                } else {
                    continue;
                };
                match in_tree.get(&relative) {
                    None => diff.only_in_copy.push(relative.clone()),
                    Some(tree_id) if *tree_id != id => diff.differing.push(relative.clone()),
                    Some(_) => {}
                }
                seen.insert(relative);
            }
        }
        diff.only_in_release = in_tree.into_keys().filter(|p| !seen.contains(p)).collect();
        diff.only_in_copy.sort();
        diff.differing.sort();
        Ok(diff)
    }
}
