//! The bare mirror of the PHP application's repository: fetching tags and writing a tag's tree
//! out as plain files.

use std::collections::HashSet;
use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use git2::{ObjectType, Oid, Repository};
use serde::Serialize;

use super::Progress;
use crate::config::{App, GitSettings};
use crate::domain::{ReleaseTag, RepoUrl};

mod compare;

/// `<data_dir>/repo.git`, kept in step with `repo_url`. Fetching goes through the system
/// `git` (see [`super::fetch`]); git2 reads objects and writes trees.
pub struct Mirror {
    repo: Repository,
    path: PathBuf,
    url: RepoUrl,
    git: GitSettings,
}

/// A tag with what its annotation says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagInfo {
    pub tag: ReleaseTag,
    /// The full id of the commit it points to.
    pub commit: String,
    /// The annotated tag's message (`None` for a lightweight tag).
    pub message: Option<String>,
    /// Who made the annotated tag.
    pub tagger: Option<String>,
    /// When it was tagged (a lightweight tag: its commit's time).
    pub tagged_at: DateTime<Utc>,
}

/// One commit, as a deploy preview lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommitSummary {
    pub id: String,
    pub subject: String,
    pub author: String,
    pub at: DateTime<Utc>,
}

/// What moving from one commit to another changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Changes {
    /// Commits the move brings in, and the newest of them (at most [`NEWEST`]).
    pub brought: usize,
    pub newest_brought: Vec<CommitSummary>,
    /// Commits the move undoes (moving backwards), and the newest of them.
    pub undone: usize,
    pub newest_undone: Vec<CommitSummary>,
    /// Files that differ between the two trees.
    pub files_changed: usize,
    /// For each watched path with changes: the path and how many files under it changed.
    pub watched: Vec<(String, usize)>,
    /// The two commits have no commit in common: the tag is of another history (another
    /// application's, or one rewritten).
    pub unrelated: bool,
}

/// A tag of the repository that cannot name a release, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedTag {
    pub name: String,
    pub why: String,
}

/// The skipped tags in one sentence that says what to do, for every place that counts tags
/// (fetch, releases, doctor, the panel); `None` when there are none.
pub fn skipped_in_words(skipped: &[SkippedTag]) -> Option<String> {
    let first = skipped.first()?;
    Some(format!(
        "{}. To deploy one, give its commit a tag clubdeploy can use (letters, digits, '.', \
         '_', '+', '-', '/'), e.g. `git tag v1.2.3 {:?} && git push origin v1.2.3`, then \
         fetch the tags again",
        skipped_listed(skipped)?,
        first.name
    ))
}

/// "2 tags cannot be deployed: \"v1,2\" (why), …": the skipped tags named, without what to
/// do (the doctor says that as its fix); `None` when there are none.
pub fn skipped_listed(skipped: &[SkippedTag]) -> Option<String> {
    if skipped.is_empty() {
        return None;
    }
    let listed: Vec<String> = skipped
        .iter()
        .take(5)
        .map(|s| format!("{:?} ({})", s.name, s.why))
        .collect();
    let more = skipped.len().saturating_sub(listed.len());
    Some(format!(
        "{} tag{} cannot be deployed: {}{}",
        skipped.len(),
        if skipped.len() == 1 { "" } else { "s" },
        listed.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    ))
}

/// How many commits a preview lists.
pub const NEWEST: usize = 20;

/// The mirror of an application's repository.
pub fn open_mirror(app: &App) -> anyhow::Result<Mirror> {
    Mirror::open(&app.mirror_dir, &app.repo_url, &app.git)
}

/// Refuses a deploy of `tag` of `app` asked for in the panel unless the mirror, as last
/// fetched, has the tag: a burst of bogus tags queues nothing and fetches nothing; staff
/// fetch first with Refresh. (The command line's operator, on the server itself, may name a
/// tag pushed just now: its deploy job fetches a tag new to the mirror, as before.)
pub fn tag_to_queue(app: &App, tag: &ReleaseTag) -> anyhow::Result<String> {
    match open_mirror(app)?.resolve(tag)? {
        Some(commit) => Ok(commit),
        None => Err(crate::domain::Refusal::NotFound(format!(
            "{} has no tag {tag} as last fetched, so nothing was queued. If the tag was pushed \
             just now, refresh the releases first (Releases → Refresh, or `clubdeploy releases \
             --fetch`).",
            app.name
        ))
        .into()),
    }
}

/// What writing a tree out produced (or the most it may: see [`TreeStats::within`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeStats {
    /// Regular files written.
    pub files: u64,
    /// Their total size.
    pub bytes: u64,
}

impl TreeStats {
    /// No bound at all.
    pub const UNBOUNDED: TreeStats = TreeStats {
        files: u64::MAX,
        bytes: u64::MAX,
    };

    /// Refuses a tree past `cap`'s files or bytes, saying which and the setting.
    pub fn within(&self, cap: TreeStats) -> anyhow::Result<()> {
        if self.files > cap.files {
            bail!(
                "the release would hold more than {} files ([build] max_files); nothing was \
                 published",
                cap.files
            );
        }
        if self.bytes > cap.bytes {
            bail!(
                "the release would hold more than {} bytes ([build] max_bytes); nothing was \
                 published",
                cap.bytes
            );
        }
        Ok(())
    }
}

impl Mirror {
    /// Opens the mirror at `path`, creating an empty bare repository there the first time.
    pub fn open(path: &Path, url: &RepoUrl, git: &GitSettings) -> anyhow::Result<Mirror> {
        let repo = if path.exists() {
            Repository::open_bare(path)
                .with_context(|| format!("{} is not a git repository", path.display()))?
        } else {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            Repository::init_bare(path)
                .with_context(|| format!("cannot create the git mirror {}", path.display()))?
        };
        Ok(Mirror {
            repo,
            path: path.to_owned(),
            url: url.clone(),
            git: git.clone(),
        })
    }

    /// Fetches every tag of `repo_url` into the mirror, reporting git's progress.
    pub fn fetch(&self, progress: &mut dyn Progress) -> anyhow::Result<()> {
        super::fetch::fetch_tags(&self.path, &self.url, &self.git, progress)
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
    pub fn ensure_tag(
        &self,
        tag: &ReleaseTag,
        progress: &mut dyn Progress,
    ) -> anyhow::Result<(String, bool)> {
        if let Some(commit) = self.resolve(tag)? {
            return Ok((commit, false));
        }
        self.fetch(progress)?;
        match self.resolve(tag)? {
            Some(commit) => Ok((commit, true)),
            None => bail!("tag {tag} does not exist in the repository {}", self.url),
        }
    }

    /// The full id of the commit whose id starts with `short` (hex), if the mirror has it.
    pub fn commit_by_prefix(&self, short: &str) -> Option<String> {
        if short.is_empty() || !short.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let commit = self
            .repo
            .revparse_single(short)
            .ok()?
            .peel_to_commit()
            .ok()?;
        Some(commit.id().to_string())
    }

    /// Whether the mirror holds this commit (fetching first if it does not).
    pub fn ensure_commit(&self, commit: &str, progress: &mut dyn Progress) -> anyhow::Result<()> {
        let oid =
            Oid::from_str(commit).with_context(|| format!("{commit:?} is not a commit id"))?;
        if self.repo.find_commit(oid).is_ok() {
            return Ok(());
        }
        self.fetch(progress)?;
        self.repo
            .find_commit(oid)
            .map(|_| ())
            .with_context(|| format!("commit {commit} is no longer in the repository"))
    }

    /// Every tag that can name a release, with its commit and annotation, in release order
    /// (oldest version first, see [`crate::domain::release_order`]). Tags that are not usable
    /// release tags are left out: [`Mirror::skipped_tags`] names them.
    pub fn tags(&self) -> anyhow::Result<Vec<TagInfo>> {
        Ok(self.read_tags()?.0)
    }

    /// The tags [`Mirror::tags`] leaves out, each with why, by name.
    pub fn skipped_tags(&self) -> anyhow::Result<Vec<SkippedTag>> {
        Ok(self.read_tags()?.1)
    }

    fn read_tags(&self) -> anyhow::Result<(Vec<TagInfo>, Vec<SkippedTag>)> {
        let mut tags = Vec::new();
        let mut skipped = Vec::new();
        for name in self.repo.tag_names(None)?.iter().flatten() {
            let Some(name) = name else {
                // git2 gives no name for one that is not UTF-8.
                skipped.push(SkippedTag {
                    name: "(a name that is not UTF-8)".into(),
                    why: "tag names must be text".into(),
                });
                continue;
            };
            let tag = match ReleaseTag::parse(name) {
                Ok(tag) => tag,
                Err(e) => {
                    let why =
                        e.0.split_once(": ")
                            .map_or(e.0.clone(), |(_, why)| why.to_owned());
                    skipped.push(SkippedTag {
                        name: name.to_owned(),
                        why,
                    });
                    continue;
                }
            };
            let reference = match self.repo.find_reference(&format!("refs/tags/{tag}")) {
                Ok(reference) => reference,
                Err(e) if e.code() == git2::ErrorCode::NotFound => continue,
                Err(e) => return Err(e).with_context(|| format!("cannot read tag {tag}")),
            };
            let Ok(commit) = reference.peel_to_commit() else {
                skipped.push(SkippedTag {
                    name: name.to_owned(),
                    why: "it does not point to a commit".into(),
                });
                continue;
            };
            let (message, tagger, tagged_at) = match reference.peel_to_tag() {
                Ok(annotated) => {
                    let tagger = annotated.tagger();
                    (
                        annotated.message_bytes().map(|m| text(m).trim().to_owned()),
                        tagger.as_ref().map(|t| text(t.name_bytes())),
                        tagger.map_or_else(|| commit.time(), |t| t.when()),
                    )
                }
                Err(_) => (None, None, commit.time()),
            };
            tags.push(TagInfo {
                tag,
                commit: commit.id().to_string(),
                message,
                tagger,
                tagged_at: time(tagged_at),
            });
        }
        tags.sort_by(|a, b| {
            crate::domain::release_order((&a.tag, a.tagged_at), (&b.tag, b.tagged_at))
        });
        skipped.sort_by(|a, b| a.name.cmp(&b.name));
        Ok((tags, skipped))
    }

    /// What moving from commit `from` to commit `to` brings in and undoes, with the number of
    /// files changed and those under each of `watch_paths`. Reads the mirror only.
    pub fn changes(&self, from: &str, to: &str, watch_paths: &[String]) -> anyhow::Result<Changes> {
        let from = self.repo.find_commit(Oid::from_str(from)?)?;
        let to = self.repo.find_commit(Oid::from_str(to)?)?;
        let (brought, newest_brought) = self.commits_between(to.id(), from.id())?;
        let (undone, newest_undone) = self.commits_between(from.id(), to.id())?;
        let diff = self
            .repo
            .diff_tree_to_tree(Some(&from.tree()?), Some(&to.tree()?), None)?;
        let mut watched: Vec<(String, usize)> = Vec::new();
        for delta in diff.deltas() {
            let paths = [delta.old_file().path(), delta.new_file().path()];
            for watch in watch_paths {
                let prefix = watch.trim_start_matches('/');
                if paths
                    .iter()
                    .flatten()
                    .any(|p| p.to_string_lossy().starts_with(prefix))
                {
                    match watched.iter_mut().find(|(w, _)| w == watch) {
                        Some((_, n)) => *n += 1,
                        None => watched.push((watch.clone(), 1)),
                    }
                }
            }
        }
        let unrelated = matches!(
            self.repo.merge_base(from.id(), to.id()),
            Err(e) if e.code() == git2::ErrorCode::NotFound
        );
        Ok(Changes {
            brought,
            newest_brought,
            undone,
            newest_undone,
            files_changed: diff.deltas().len(),
            watched,
            unrelated,
        })
    }

    /// Commits reachable from `tip` but not from `base`: how many, and the newest [`NEWEST`].
    fn commits_between(&self, tip: Oid, base: Oid) -> anyhow::Result<(usize, Vec<CommitSummary>)> {
        let mut walk = self.repo.revwalk()?;
        walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::TIME)?;
        walk.push(tip)?;
        walk.hide(base)?;
        let mut count = 0;
        let mut newest = Vec::new();
        for id in walk {
            let id = id?;
            count += 1;
            if newest.len() < NEWEST {
                let commit = self.repo.find_commit(id)?;
                newest.push(CommitSummary {
                    id: id.to_string(),
                    subject: commit.summary_bytes().map(text).unwrap_or_default(),
                    author: text(commit.author().name_bytes()),
                    at: time(commit.time()),
                });
            }
        }
        Ok((count, newest))
    }

    /// Writes the tree of `commit` into the existing, empty directory `dest`. Reading objects
    /// and creating files overlap: this thread walks the tree and inflates blobs while a
    /// second one writes, as `git archive | tar -x` does across two processes. Files carry the
    /// commit's time, as `git archive` gives them: OPcache does not cache a file modified less
    /// than `opcache.file_update_protection` (2 s) ago, which a just-built file would be.
    pub fn export(&self, commit: &str, dest: &Path) -> anyhow::Result<TreeStats> {
        self.export_reusing(commit, dest, None, TreeStats::UNBOUNDED)
    }

    /// [`Mirror::export`], hard-linking each file that `reuse` (a published release) holds
    /// at the same path with the same content and mode instead of writing it again: creating
    /// an inode costs ~0.7 ms on the machines measured, a hard link ~15 µs, and a release
    /// differs from the one before it in a few files. Content is proven by the file's git
    /// blob id, so a file changed in `reuse` by a build command or by hand is never taken.
    /// Writing stops, refused, as soon as the tree passes `cap`'s files or bytes.
    pub fn export_reusing(
        &self,
        commit: &str,
        dest: &Path,
        reuse: Option<&Path>,
        cap: TreeStats,
    ) -> anyhow::Result<TreeStats> {
        let oid = Oid::from_str(commit)?;
        let commit = self.repo.find_commit(oid)?;
        let tree = commit.tree()?;
        let seconds = u64::try_from(commit.time().seconds()).unwrap_or(0);
        let mtime = std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds);
        let ignored = super::attributes::export_ignored(&self.path, &tree)
            .context("cannot read the tree's .gitattributes")?;
        let (sender, receiver) = std::sync::mpsc::sync_channel::<Entry>(512);
        std::thread::scope(|scope| {
            let writer = scope.spawn(move || write_entries(receiver, mtime, cap));
            let place = Place {
                dir: dest,
                within: String::new(),
                reuse,
            };
            let walked = self.walk_tree(&tree, &place, &ignored, &sender);
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

    /// Sends what `tree` holds, written at `place`, less what `ignored` (paths in the tree,
    /// directories with a trailing `/`) leaves out.
    fn walk_tree(
        &self,
        tree: &git2::Tree<'_>,
        place: &Place<'_>,
        ignored: &HashSet<String>,
        out: &SyncSender<Entry>,
    ) -> anyhow::Result<()> {
        let Place { dir, within, reuse } = place;
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
            let in_tree = format!("{within}{name}");
            let is_dir = matches!(
                entry.kind(),
                Some(ObjectType::Tree) | Some(ObjectType::Commit)
            );
            if ignored.contains(&in_tree) || (is_dir && ignored.contains(&format!("{in_tree}/"))) {
                continue;
            }
            let path: PathBuf = dir.join(name);
            let reused = reuse.map(|r| r.join(name));
            let item = match (entry.kind(), entry.filemode()) {
                (Some(ObjectType::Tree), _) => {
                    send(out, Entry::Dir(path.clone()))?;
                    let subtree = self.repo.find_tree(entry.id())?;
                    let inner = Place {
                        dir: &path,
                        within: format!("{in_tree}/"),
                        reuse: reused.as_deref(),
                    };
                    self.walk_tree(&subtree, &inner, ignored, out)?;
                    continue;
                }
                (Some(ObjectType::Blob), mode)
                    if mode != 0o120000
                        && let Some(from) =
                            reused.filter(|from| same_blob(from, entry.id(), mode)) =>
                {
                    let size = std::fs::symlink_metadata(&from)?.len();
                    Entry::Reuse(path, from, size)
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

/// Text from git, which need not be UTF-8.
fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn time(at: git2::Time) -> DateTime<Utc> {
    DateTime::from_timestamp(at.seconds(), 0).unwrap_or_default()
}

/// Where a tree is written: the directory, the tree's path in the commit (`""` or ending in
/// `/`), and the same directory in a release to reuse files from.
struct Place<'a> {
    dir: &'a Path,
    within: String,
    reuse: Option<&'a Path>,
}

/// One thing to create, in tree order (a directory before what it holds).
enum Entry {
    Dir(PathBuf),
    File(PathBuf, u32, Vec<u8>),
    Symlink(PathBuf, Vec<u8>),
    /// A hard link to an identical file of an earlier release, and its size.
    Reuse(PathBuf, PathBuf, u64),
}

/// Whether `path` is a regular file (not a link) with the blob's content and the mode its
/// tree entry gives it (executable or not).
fn same_blob(path: &Path, id: Oid, mode: i32) -> bool {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return false;
    };
    let executable = meta.permissions().mode() & 0o111 != 0;
    meta.file_type().is_file()
        && executable == (mode & 0o111 != 0)
        && Oid::hash_file(ObjectType::Blob, path).is_ok_and(|found| found == id)
}

fn send(out: &SyncSender<Entry>, entry: Entry) -> anyhow::Result<()> {
    out.send(entry)
        .map_err(|_| anyhow::anyhow!("stopped writing the tree"))
}

fn write_entries(
    entries: Receiver<Entry>,
    mtime: std::time::SystemTime,
    cap: TreeStats,
) -> anyhow::Result<TreeStats> {
    let mut stats = TreeStats::default();
    for entry in entries {
        stats.within(cap)?;
        match entry {
            Entry::Dir(path) => {
                DirBuilder::new()
                    .mode(0o755)
                    .create(&path)
                    .with_context(|| format!("cannot create {}", path.display()))?;
                // Readable by Apache whatever the service's umask (077).
                std::fs::set_permissions(&path, Permissions::from_mode(0o755))?;
            }
            Entry::Symlink(path, target) => {
                let target = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&target);
                std::os::unix::fs::symlink(target, &path)
                    .with_context(|| format!("cannot create {}", path.display()))?;
            }
            Entry::Reuse(path, from, size) => {
                // Where a link cannot be made (too many links to one file), a copy serves.
                if std::fs::hard_link(&from, &path).is_err() {
                    std::fs::copy(&from, &path).with_context(|| {
                        format!("cannot copy {} to {}", from.display(), path.display())
                    })?;
                }
                stats.files += 1;
                stats.bytes += size;
            }
            Entry::File(path, perm, content) => {
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(perm)
                    .open(&path)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                file.write_all(&content)?;
                file.set_permissions(Permissions::from_mode(perm))?;
                file.set_modified(mtime)?;
                stats.files += 1;
                stats.bytes += content.len() as u64;
            }
        }
    }
    stats.within(cap)?;
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
        let url = RepoUrl::parse(app.to_str().unwrap()).unwrap();
        let mirror =
            Mirror::open(&root.path().join("repo.git"), &url, &GitSettings::default()).unwrap();
        assert!(mirror.tags().unwrap().is_empty());
        mirror.fetch(&mut super::super::Quiet).unwrap();
        let tags = mirror.tags().unwrap();
        assert_eq!(tags.len(), 1, "{tags:?}");
        assert_eq!(tags[0].commit, id.to_string());
        assert_eq!(tags[0].message, None);
    }
}
