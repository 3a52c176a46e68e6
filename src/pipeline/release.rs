//! Release directories: building one from a tag, listing the published ones, and choosing
//! and deleting the ones no club needs.

use std::collections::HashSet;
use std::fs::{DirBuilder, File};
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::fsops::{BUILD_PREFIX, delete_via_trash, fsync_dir, random_suffix, trash_path};
use super::git::{Mirror, TreeStats};
use super::{Progress, command};
use crate::domain::{ReleaseName, ReleaseTag};

/// The file that makes a directory a release; written last, before the publishing rename.
pub const MANIFEST: &str = ".clubdeploy-release.json";

/// What `.clubdeploy-release.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub tag: String,
    pub commit: String,
    pub built_at: DateTime<Utc>,
    pub files: u64,
    pub bytes: u64,
}

/// A published release directory.
#[derive(Debug, Clone)]
pub struct Release {
    pub name: ReleaseName,
    pub dir: PathBuf,
    pub manifest: Manifest,
}

/// What to build.
pub struct BuildSpec<'a> {
    pub releases_dir: &'a Path,
    pub tag: &'a ReleaseTag,
    pub commit: &'a str,
    /// Commands run in the build directory, in order.
    pub commands: &'a [Vec<String>],
    /// A command run in the finished tree before it is published.
    pub check: Option<&'a [String]>,
}

/// Whether the release was built now or was already there.
#[derive(Debug)]
pub enum Built {
    New(Release),
    Reused(Release),
}

impl Built {
    /// The release either way.
    pub fn release(&self) -> &Release {
        match self {
            Built::New(r) | Built::Reused(r) => r,
        }
    }
}

/// Reads a release's manifest; `None` when `dir` is not a complete release of `name`.
pub fn read(dir: &Path, name: &ReleaseName) -> Option<Release> {
    let text = std::fs::read(dir.join(MANIFEST)).ok()?;
    let manifest: Manifest = serde_json::from_slice(&text).ok()?;
    let matches = manifest.tag == name.tag().as_str()
        && ReleaseName::new(&name.tag(), &manifest.commit)
            .ok()
            .as_ref()
            == Some(name);
    matches.then(|| Release {
        name: name.clone(),
        dir: dir.to_path_buf(),
        manifest,
    })
}

/// Builds the release of `spec.tag` at `spec.commit` unless it is already published: the tree
/// is written into a `.build-*` directory, the build commands and the check run there, the
/// manifest is written and fsynced, and only then is the directory renamed into place. On any
/// failure the build directory is deleted and nothing is published.
pub fn build(
    mirror: &Mirror,
    spec: &BuildSpec<'_>,
    progress: &mut dyn Progress,
) -> anyhow::Result<Built> {
    let name = ReleaseName::new(spec.tag, spec.commit)?;
    let dir = spec.releases_dir.join(name.as_str());
    if dir.exists() {
        return match read(&dir, &name) {
            Some(release) => Ok(Built::Reused(release)),
            None => bail!(
                "{} exists but is not a complete release (no valid {MANIFEST}); move it away \
                 and deploy again",
                dir.display()
            ),
        };
    }
    DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(spec.releases_dir)
        .with_context(|| format!("cannot create {}", spec.releases_dir.display()))?;
    let build_dir = spec
        .releases_dir
        .join(format!("{BUILD_PREFIX}{name}-{}", random_suffix()));
    DirBuilder::new().mode(0o755).create(&build_dir)?;
    match build_in(mirror, spec, &build_dir, progress) {
        Ok(manifest) => {
            crate::crash::point("build:before-publish");
            std::fs::rename(&build_dir, &dir)
                .with_context(|| format!("cannot publish {}", dir.display()))?;
            fsync_dir(spec.releases_dir)?;
            Ok(Built::New(Release {
                name,
                dir,
                manifest,
            }))
        }
        Err(e) => {
            if let Err(cleanup) = delete_via_trash(spec.releases_dir, &build_dir) {
                progress.progress(&format!(
                    "could not remove {}: {cleanup}",
                    build_dir.display()
                ));
            }
            Err(e)
        }
    }
}

fn build_in(
    mirror: &Mirror,
    spec: &BuildSpec<'_>,
    build_dir: &Path,
    progress: &mut dyn Progress,
) -> anyhow::Result<Manifest> {
    let mut stats = mirror
        .export(spec.commit, build_dir)
        .with_context(|| format!("cannot check out {}", spec.tag))?;
    for argv in spec.commands {
        let ran = command::run(argv, Some(build_dir))?;
        progress.output(&ran);
        ran.ok().context("the build failed")?;
    }
    if let Some(check) = spec.check {
        let ran = command::run(check, Some(build_dir))?;
        progress.output(&ran);
        ran.ok().context("the release check failed")?;
    }
    if !spec.commands.is_empty() {
        // Build commands add and remove files (vendor/, caches): count what is really there.
        stats = count_files(build_dir)?;
    }
    let manifest = Manifest {
        tag: spec.tag.to_string(),
        commit: spec.commit.to_owned(),
        built_at: Utc::now(),
        files: stats.files,
        bytes: stats.bytes,
    };
    let mut file = File::create(build_dir.join(MANIFEST))?;
    file.write_all(&serde_json::to_vec_pretty(&manifest)?)?;
    file.sync_all()?;
    fsync_dir(build_dir)?;
    Ok(manifest)
}

/// Regular files and their bytes under `dir`, not following links.
fn count_files(dir: &Path) -> std::io::Result<TreeStats> {
    let mut stats = TreeStats::default();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                stats.files += 1;
                stats.bytes += entry.metadata()?.len();
            }
        }
    }
    Ok(stats)
}

/// Every published release in `releases_dir`, newest build first. Build and trash
/// directories, and directories without a valid manifest, are not releases.
pub fn list(releases_dir: &Path) -> anyhow::Result<Vec<Release>> {
    let mut releases = Vec::new();
    let entries = match std::fs::read_dir(releases_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(releases),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", releases_dir.display())),
    };
    for entry in entries {
        let entry = entry?;
        let Some(name) = entry
            .file_name()
            .to_str()
            .and_then(|n| ReleaseName::parse(n).ok())
        else {
            continue;
        };
        if let Some(release) = read(&entry.path(), &name) {
            releases.push(release);
        }
    }
    releases.sort_by(|a, b| (b.manifest.built_at, &b.name).cmp(&(a.manifest.built_at, &a.name)));
    Ok(releases)
}

/// The releases prune would delete: those no webroot resolves to, less the newest `keep` of
/// them. `releases` must be newest first, as [`list`] returns them.
pub fn unused_beyond<'a>(
    releases: &'a [Release],
    in_use: &HashSet<ReleaseName>,
    keep: usize,
) -> Vec<&'a Release> {
    releases
        .iter()
        .filter(|r| !in_use.contains(&r.name))
        .skip(keep)
        .collect()
}

/// Deletes a release: renamed to `.trash-*` first, then removed.
pub fn delete(releases_dir: &Path, release: &Release) -> anyhow::Result<()> {
    let trash = trash_path(releases_dir);
    std::fs::rename(&release.dir, &trash)
        .with_context(|| format!("cannot delete release {}", release.name))?;
    crate::crash::point("prune:after-trash");
    std::fs::remove_dir_all(&trash).with_context(|| {
        format!(
            "cannot delete release {} (now {})",
            release.name,
            trash.display()
        )
    })
}
