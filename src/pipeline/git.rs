//! The bare mirror of the PHP application's repository: fetching tags and writing a tag's tree
//! out as plain files.

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender};

use anyhow::{Context, bail};
use git2::{AutotagOption, FetchOptions, ObjectType, Oid, Repository};

use crate::domain::ReleaseTag;

/// `<data_dir>/repo.git`, kept in step with `repo_url`.
pub struct Mirror {
    repo: Repository,
    url: String,
}

/// What writing a tree out produced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeStats {
    /// Regular files written.
    pub files: u64,
    /// Their total size.
    pub bytes: u64,
}

impl Mirror {
    /// Opens the mirror at `path`, creating an empty bare repository there the first time.
    pub fn open(path: &Path, url: &str) -> anyhow::Result<Mirror> {
        let repo = if path.exists() {
            Repository::open_bare(path)
                .with_context(|| format!("{} is not a git repository", path.display()))?
        } else {
            Repository::init_bare(path)
                .with_context(|| format!("cannot create the git mirror {}", path.display()))?
        };
        Ok(Mirror {
            repo,
            url: url.to_owned(),
        })
    }

    /// Fetches every tag of `repo_url` into the mirror.
    pub fn fetch(&self) -> anyhow::Result<()> {
        let mut remote = self.repo.remote_anonymous(&self.url)?;
        let mut options = FetchOptions::new();
        options.download_tags(AutotagOption::None);
        remote
            .fetch(&["+refs/tags/*:refs/tags/*"], Some(&mut options), None)
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot fetch from repo_url {:?}: it is not a git repository or cannot be \
                     read ({})",
                    self.url,
                    e.message()
                )
            })
    }

    /// The commit a tag points to in the mirror, if the mirror has the tag.
    pub fn resolve(&self, tag: &ReleaseTag) -> anyhow::Result<Option<String>> {
        match self.repo.find_reference(&format!("refs/tags/{tag}")) {
            Ok(reference) => {
                let commit = reference
                    .peel_to_commit()
                    .with_context(|| format!("tag {tag} does not point to a commit"))?;
                Ok(Some(commit.id().to_string()))
            }
            Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read tag {tag}")),
        }
    }

    /// The tag's commit, fetching first only when the mirror does not know the tag yet.
    /// Says whether it fetched.
    pub fn ensure_tag(&self, tag: &ReleaseTag) -> anyhow::Result<(String, bool)> {
        if let Some(commit) = self.resolve(tag)? {
            return Ok((commit, false));
        }
        self.fetch()?;
        match self.resolve(tag)? {
            Some(commit) => Ok((commit, true)),
            None => bail!("tag {tag} does not exist in the repository {:?}", self.url),
        }
    }

    /// Whether the mirror holds this commit (fetching first if it does not).
    pub fn ensure_commit(&self, commit: &str) -> anyhow::Result<()> {
        let oid =
            Oid::from_str(commit).with_context(|| format!("{commit:?} is not a commit id"))?;
        if self.repo.find_commit(oid).is_ok() {
            return Ok(());
        }
        self.fetch()?;
        self.repo
            .find_commit(oid)
            .map(|_| ())
            .with_context(|| format!("commit {commit} is no longer in the repository"))
    }

    /// Every tag that can name a release, with its commit, sorted by tag. Tags that are not
    /// usable release tags (e.g. holding `/`) are left out.
    pub fn tags(&self) -> anyhow::Result<Vec<(ReleaseTag, String)>> {
        let mut tags = Vec::new();
        for name in self.repo.tag_names(None)?.iter().flatten().flatten() {
            let Ok(tag) = ReleaseTag::parse(name) else {
                continue;
            };
            if let Some(commit) = self.resolve(&tag)? {
                tags.push((tag, commit));
            }
        }
        tags.sort();
        Ok(tags)
    }

    /// Writes the tree of `commit` into the existing, empty directory `dest`. Reading objects
    /// and creating files overlap: this thread walks the tree and inflates blobs while a
    /// second one writes, as `git archive | tar -x` does across two processes. Files carry the
    /// commit's time, as `git archive` gives them: OPcache does not cache a file modified less
    /// than `opcache.file_update_protection` (2 s) ago, which a just-built file would be.
    pub fn export(&self, commit: &str, dest: &Path) -> anyhow::Result<TreeStats> {
        let oid = Oid::from_str(commit)?;
        let commit = self.repo.find_commit(oid)?;
        let tree = commit.tree()?;
        let seconds = u64::try_from(commit.time().seconds()).unwrap_or(0);
        let mtime = std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds);
        let (sender, receiver) = std::sync::mpsc::sync_channel::<Entry>(512);
        std::thread::scope(|scope| {
            let writer = scope.spawn(move || write_entries(receiver, mtime));
            let walked = self.walk_tree(&tree, dest, &sender);
            drop(sender);
            let written = writer
                .join()
                .map_err(|_| anyhow::anyhow!("the file writer panicked"))?;
            // A write error stops the walk (its channel closes); report the write error first.
            let stats = written?;
            walked?;
            Ok(stats)
        })
    }

    fn walk_tree(
        &self,
        tree: &git2::Tree<'_>,
        dir: &Path,
        out: &SyncSender<Entry>,
    ) -> anyhow::Result<()> {
        for entry in tree.iter() {
            let name = std::str::from_utf8(entry.name_bytes())
                .ok()
                .filter(|n| !matches!(*n, "" | "." | ".." | ".git") && !n.contains('/'))
                .with_context(|| {
                    format!(
                        "the tree holds an unsafe file name {:?}",
                        entry.name_bytes()
                    )
                })?;
            let path: PathBuf = dir.join(name);
            let item = match (entry.kind(), entry.filemode()) {
                (Some(ObjectType::Tree), _) => {
                    send(out, Entry::Dir(path.clone()))?;
                    let subtree = self.repo.find_tree(entry.id())?;
                    self.walk_tree(&subtree, &path, out)?;
                    continue;
                }
                (Some(ObjectType::Blob), 0o120000) => {
                    let blob = self.repo.find_blob(entry.id())?;
                    Entry::Symlink(path, blob.content().to_vec())
                }
                (Some(ObjectType::Blob), mode) => {
                    let blob = self.repo.find_blob(entry.id())?;
                    let perm = if mode & 0o111 != 0 { 0o755 } else { 0o644 };
                    Entry::File(path, perm, blob.content().to_vec())
                }
                // A submodule: an empty directory, as `git archive` leaves it.
                (Some(ObjectType::Commit), _) => Entry::Dir(path),
                (kind, mode) => bail!("unexpected tree entry {name} ({kind:?}, mode {mode:o})"),
            };
            send(out, item)?;
        }
        Ok(())
    }
}

/// One thing to create, in tree order (a directory before what it holds).
enum Entry {
    Dir(PathBuf),
    File(PathBuf, u32, Vec<u8>),
    Symlink(PathBuf, Vec<u8>),
}

fn send(out: &SyncSender<Entry>, entry: Entry) -> anyhow::Result<()> {
    out.send(entry)
        .map_err(|_| anyhow::anyhow!("stopped writing the tree"))
}

fn write_entries(
    entries: Receiver<Entry>,
    mtime: std::time::SystemTime,
) -> anyhow::Result<TreeStats> {
    let mut stats = TreeStats::default();
    for entry in entries {
        match entry {
            Entry::Dir(path) => DirBuilder::new()
                .mode(0o755)
                .create(&path)
                .with_context(|| format!("cannot create {}", path.display()))?,
            Entry::Symlink(path, target) => {
                let target = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&target);
                std::os::unix::fs::symlink(target, &path)
                    .with_context(|| format!("cannot create {}", path.display()))?;
            }
            Entry::File(path, perm, content) => {
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(perm)
                    .open(&path)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                file.write_all(&content)?;
                file.set_modified(mtime)?;
                stats.files += 1;
                stats.bytes += content.len() as u64;
            }
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_appear_after_the_first_fetch() {
        let root = tempfile::tempdir().unwrap();
        let app = root.path().join("app");
        let repo = Repository::init(&app).unwrap();
        std::fs::write(app.join("index.php"), "<?php\n").unwrap();
        let mut index = repo.index().unwrap();
        index.add_path(Path::new("index.php")).unwrap();
        let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
        let sig = git2::Signature::now("t", "t@example.invalid").unwrap();
        let id = repo
            .commit(Some("HEAD"), &sig, &sig, "one", &tree, &[])
            .unwrap();
        repo.tag_lightweight("v1", &repo.find_object(id, None).unwrap(), false)
            .unwrap();
        let mirror = Mirror::open(&root.path().join("repo.git"), app.to_str().unwrap()).unwrap();
        assert!(mirror.tags().unwrap().is_empty());
        mirror.fetch().unwrap();
        let tags = mirror.tags().unwrap();
        assert_eq!(tags.len(), 1, "{tags:?}");
        assert_eq!(tags[0].1, id.to_string());
    }
}
