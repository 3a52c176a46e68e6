//! The bare mirror of the PHP application's repository: fetching tags and writing a tag's tree
//! out as plain files.

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

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

    /// Writes the tree of `commit` into the existing, empty directory `dest`.
    pub fn export(&self, commit: &str, dest: &Path) -> anyhow::Result<TreeStats> {
        let oid = Oid::from_str(commit)?;
        let tree = self.repo.find_commit(oid)?.tree()?;
        let mut stats = TreeStats::default();
        self.write_tree(&tree, dest, &mut stats)?;
        Ok(stats)
    }

    fn write_tree(
        &self,
        tree: &git2::Tree<'_>,
        dir: &Path,
        stats: &mut TreeStats,
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
            match (entry.kind(), entry.filemode()) {
                (Some(ObjectType::Tree), _) => {
                    DirBuilder::new().mode(0o755).create(&path)?;
                    let subtree = self.repo.find_tree(entry.id())?;
                    self.write_tree(&subtree, &path, stats)?;
                }
                (Some(ObjectType::Blob), 0o120000) => {
                    let blob = self.repo.find_blob(entry.id())?;
                    let target = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(
                        blob.content(),
                    );
                    std::os::unix::fs::symlink(target, &path)?;
                }
                (Some(ObjectType::Blob), mode) => {
                    let blob = self.repo.find_blob(entry.id())?;
                    let perm = if mode & 0o111 != 0 { 0o755 } else { 0o644 };
                    let mut file = OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(perm)
                        .open(&path)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    file.write_all(blob.content())?;
                    stats.files += 1;
                    stats.bytes += blob.content().len() as u64;
                }
                // A submodule: an empty directory, as `git archive` leaves it.
                (Some(ObjectType::Commit), _) => DirBuilder::new().mode(0o755).create(&path)?,
                (kind, mode) => bail!("unexpected tree entry {name} ({kind:?}, mode {mode:o})"),
            }
        }
        Ok(())
    }
}
