//! Release directories: building one from a tag, listing the published ones, and choosing
//! and deleting the ones no club needs.

use std::collections::HashSet;
use std::fs::{DirBuilder, File};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
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
    /// The health probe's path in the release (see [`super::probe`]); `None` for a release
    /// built without one (before the probe existed, or with `[probe] enabled = false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<String>,
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
    /// The environment the commands get (besides the `CLUBDEPLOY_*` facts about the build):
    /// see [`build_environment`].
    pub env: &'a [(String, String)],
    /// The probe secret's hash, when the release gets a health probe.
    pub probe: Option<&'a str>,
}

/// The environment of build commands and checks: `PATH`, `HOME` and `LANG` (the service's, or
/// plain defaults) and the variables named in `pass_through`, and nothing else of the
/// service's environment (its tokens and credentials stay with it).
pub fn build_environment(pass_through: &[String]) -> Vec<(String, String)> {
    let own =
        |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
    let mut env = vec![
        (
            "PATH".to_owned(),
            own("PATH", "/usr/local/bin:/usr/bin:/bin"),
        ),
        ("HOME".to_owned(), own("HOME", "/nonexistent")),
        ("LANG".to_owned(), own("LANG", "C.UTF-8")),
    ];
    for name in pass_through {
        if let Ok(value) = std::env::var(name) {
            env.retain(|(k, _)| k != name);
            env.push((name.clone(), value));
        }
    }
    env
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
            // The name holds 8 hex digits of the commit; the manifest holds all of them.
            Some(release) if release.manifest.commit != spec.commit => bail!(
                "{} was built from commit {}, not {} (their ids start alike); move it away \
                 and deploy again",
                dir.display(),
                release.manifest.commit,
                spec.commit
            ),
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
    // Apache reads the releases; the service's umask (077) would hide them.
    for dir in [spec.releases_dir, build_dir.as_path()] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    }
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
    // Without build commands a release is exactly its tree: identical files of the newest
    // release already built are linked, not written again (see `Mirror::export_reusing`).
    let reuse = if spec.commands.is_empty() {
        newest(spec.releases_dir).map(|r| r.dir)
    } else {
        None
    };
    let mut stats = mirror
        .export_reusing(spec.commit, build_dir, reuse.as_deref())
        .with_context(|| format!("cannot check out {}", spec.tag))?;
    let mut env = spec.env.to_vec();
    env.extend([
        ("CLUBDEPLOY_TAG".to_owned(), spec.tag.to_string()),
        ("CLUBDEPLOY_COMMIT".to_owned(), spec.commit.to_owned()),
        (
            "CLUBDEPLOY_RELEASE".to_owned(),
            ReleaseName::new(spec.tag, spec.commit)?.to_string(),
        ),
        (
            "CLUBDEPLOY_BUILD_DIR".to_owned(),
            build_dir.display().to_string(),
        ),
    ]);
    for argv in spec.commands {
        let ran = command::run_clean(argv, build_dir, &env)?;
        progress.output(&ran);
        ran.ok().context("the build failed")?;
    }
    if let Some(check) = spec.check {
        let ran = command::run_clean(check, build_dir, &env)?;
        progress.output(&ran);
        ran.ok().context("the release check failed")?;
    }
    if !spec.commands.is_empty() {
        // Build commands add and remove files (vendor/, caches), under the service's umask:
        // count what is really there, and make it readable to Apache.
        stats = count_and_open_up(build_dir)?;
    }
    // Under Apache's FollowSymLinks, a link out of the release would serve whatever it names
    // (`passwd.txt -> /etc/passwd`, the database) to every club.
    check_links(build_dir)?;
    // The probe comes after the build commands and the check: it is clubdeploy's, not the
    // application's, and no build step can change it.
    if let Some(hash) = spec.probe {
        super::probe::write_into(build_dir, hash)?;
    }
    let manifest = Manifest {
        tag: spec.tag.to_string(),
        commit: spec.commit.to_owned(),
        built_at: Utc::now(),
        files: stats.files,
        bytes: stats.bytes,
        probe: spec.probe.map(|_| super::probe::PROBE_PATH.to_owned()),
    };
    let mut file = File::create(build_dir.join(MANIFEST))?;
    file.write_all(&serde_json::to_vec_pretty(&manifest)?)?;
    file.sync_all()?;
    fsync_dir(build_dir)?;
    Ok(manifest)
}

/// The most recently built release in `releases_dir`, if any.
fn newest(releases_dir: &Path) -> Option<Release> {
    list(releases_dir)
        .ok()?
        .into_iter()
        .max_by_key(|r| r.manifest.built_at)
}

/// Refuses a tree holding a symbolic link that is absolute or leads out of the tree: read
/// lexically from the link's own directory, and as the system resolves it (a chain of links
/// can leave a tree that each link alone stays in). Names the first such entry.
pub fn check_links(root: &Path) -> anyhow::Result<()> {
    let real_root = root.canonicalize()?;
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
            let shown = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .display()
                .to_string();
            let target = std::fs::read_link(&path)?;
            if target.is_absolute() {
                bail!(
                    "the release holds a symbolic link with an absolute target: {shown} -> {}; \
                     links must stay inside the release",
                    target.display()
                );
            }
            let inside_lexically = {
                let mut depth = path
                    .parent()
                    .and_then(|p| p.strip_prefix(root).ok())
                    .map_or(0, |p| p.components().count());
                target.components().all(|part| match part {
                    std::path::Component::ParentDir if depth == 0 => false,
                    std::path::Component::ParentDir => {
                        depth -= 1;
                        true
                    }
                    std::path::Component::Normal(_) => {
                        depth += 1;
                        true
                    }
                    _ => true,
                })
            };
            let inside_really = match path.canonicalize() {
                Ok(real) => real.starts_with(&real_root),
                // A dangling link leads nowhere; the lexical reading decides.
                Err(_) => true,
            };
            if !inside_lexically || !inside_really {
                bail!(
                    "the release holds a symbolic link that leads out of it: {shown} -> {}; \
                     links must stay inside the release",
                    target.display()
                );
            }
        }
    }
    Ok(())
}

/// Regular files and their bytes under `dir`, not following links; directories become 0755
/// and files 0644 (0755 when any execute bit was set): readable by all, writable by the
/// service only.
fn count_and_open_up(dir: &Path) -> std::io::Result<TreeStats> {
    use std::fs::Permissions;
    let mut stats = TreeStats::default();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                std::fs::set_permissions(entry.path(), Permissions::from_mode(0o755))?;
                pending.push(entry.path());
            } else if kind.is_file() {
                let meta = entry.metadata()?;
                let mode = if meta.permissions().mode() & 0o111 != 0 {
                    0o755
                } else {
                    0o644
                };
                std::fs::set_permissions(entry.path(), Permissions::from_mode(mode))?;
                stats.files += 1;
                stats.bytes += meta.len();
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

#[cfg(test)]
mod link_tests {
    use std::os::unix::fs::symlink;

    use super::check_links;

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
        assert!(error.contains("chain ->"), "{error}");
    }
}
