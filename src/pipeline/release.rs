//! Release directories: building one from a tag, listing the published ones, and choosing
//! and deleting the ones no club needs.

use std::collections::{HashMap, HashSet};
use std::fs::{DirBuilder, File};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
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
    /// Whether the probe takes each site's own token (see [`super::probe`]); false for a
    /// release built before tokens, whose probe takes the secret itself.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub probe_per_host: bool,
    /// The hash of the recipe it was built with (see [`recipe_hash`]); `None` for a release
    /// built before recipes were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipe: Option<String>,
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
    /// The probe's public key (hex), when the release gets a health probe.
    pub probe: Option<&'a str>,
    /// The recipe's hash ([`recipe_hash`]): a release built with another is not reused.
    pub recipe: Option<&'a str>,
    /// Build anew even when a release of this tag, commit and recipe exists.
    pub rebuild: bool,
    /// A release to reuse whatever its recipe, when it is there (a rollback's target).
    pub prefer: Option<&'a ReleaseName>,
    /// How long each command may run (`[build] timeout_secs`).
    pub timeout: std::time::Duration,
    /// The most files and bytes the release may hold (`[build] max_files`, `max_bytes`).
    pub cap: super::git::TreeStats,
    /// The user the commands and the check run as (`build_user`; see [`super::build_user`]),
    /// or `None`: as the service.
    pub build_user: Option<&'a str>,
}

/// The hash of what makes a release besides its tree: the build commands, the check and the
/// names of the variables passed to them (not their values: a rotated token rebuilds
/// nothing). `None` when there is none of them: the release is exactly the tag's tree.
pub fn recipe_hash(
    commands: &[Vec<String>],
    check: Option<&[String]>,
    env: &[String],
) -> Option<String> {
    use sha2::Digest;
    if commands.is_empty() && check.is_none() && env.is_empty() {
        return None;
    }
    let text = serde_json::json!({ "commands": commands, "check": check, "env": env });
    let digest = sha2::Sha256::digest(text.to_string().as_bytes());
    Some(digest.iter().take(8).map(|b| format!("{b:02x}")).collect())
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
        && ReleaseName::new(&name.tag(), &manifest.commit).ok() == Some(name.first_build());
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
    let first = ReleaseName::new(spec.tag, spec.commit)?;
    if let Some(found) = spec
        .prefer
        .filter(|p| p.first_build() == first)
        .and_then(|p| read(&spec.releases_dir.join(p.as_str()), p))
        .filter(|r| r.manifest.commit == spec.commit)
    {
        return Ok(Built::Reused(found));
    }
    let first_dir = spec.releases_dir.join(first.as_str());
    if first_dir.exists() {
        match read(&first_dir, &first) {
            // The name holds 8 hex digits of the commit; the manifest holds all of them.
            Some(release) if release.manifest.commit != spec.commit => bail!(
                "{} was built from commit {}, not {} (their ids start alike); move it away \
                 and deploy again",
                first_dir.display(),
                release.manifest.commit,
                spec.commit
            ),
            Some(_) => {}
            None => bail!(
                "{} exists but is not a complete release (no valid {MANIFEST}); move it away \
                 and deploy again",
                first_dir.display()
            ),
        }
    }
    // The published releases, read once: the builds of this tag and commit (newest first),
    // and the newest of all, whose files a new build shares.
    let published = list(spec.releases_dir)?;
    let newest = published
        .iter()
        .max_by_key(|r| r.manifest.built_at)
        .cloned();
    let builds: Vec<Release> = published
        .into_iter()
        .filter(|r| r.name.first_build() == first && r.manifest.commit == spec.commit)
        .collect();
    let same_recipe = builds
        .iter()
        .find(|r| r.manifest.recipe.as_deref() == spec.recipe);
    match (same_recipe, builds.first()) {
        (Some(release), _) if !spec.rebuild => return Ok(Built::Reused(release.clone())),
        (_, Some(newest)) if spec.rebuild => progress.progress(&format!(
            "{} is built already; building anew as asked (--rebuild)",
            newest.name
        )),
        (_, Some(newest)) => progress.progress(&format!(
            "{} was built with {}; building anew",
            newest.name,
            if newest.manifest.recipe.is_none() {
                "a recipe clubdeploy did not record yet"
            } else {
                "other build commands, check or build variables"
            }
        )),
        (_, None) => {}
    }
    let name = (1..)
        .map(|n| {
            if n == 1 {
                first.clone()
            } else {
                first.nth_build(n)
            }
        })
        .find(|n| !spec.releases_dir.join(n.as_str()).exists())
        .expect("some build number is free");
    let dir = spec.releases_dir.join(name.as_str());
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
    match build_in(mirror, spec, &name, &build_dir, newest.as_ref(), progress) {
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
    name: &ReleaseName,
    build_dir: &Path,
    newest: Option<&Release>,
    progress: &mut dyn Progress,
) -> anyhow::Result<Manifest> {
    let runs_commands = !spec.commands.is_empty() || spec.check.is_some();
    // Whether it was built apart, as the build user.
    let (mut stats, apart) = match spec.build_user.filter(|_| runs_commands) {
        Some(user) => {
            let user = super::build_user::BuildUser::look_up(user)?;
            user.ready()?;
            let previous = newest.map(|r| r.dir.as_path());
            let stats = super::build_user::build_apart(
                &user, mirror, spec, name, build_dir, previous, progress,
            )?;
            (stats, true)
        }
        None => {
            // Without build commands a release is exactly its tree: identical files of the
            // newest release already built are linked, not written again (see
            // `Mirror::export_reusing`).
            let reuse = if spec.commands.is_empty() {
                newest.map(|r| r.dir.as_path())
            } else {
                None
            };
            let stats = mirror
                .export_reusing(spec.commit, build_dir, reuse, spec.cap)
                .with_context(|| format!("cannot check out {}", spec.tag))?;
            run_commands(spec, name, build_dir, None, progress)?;
            (stats, false)
        }
    };
    if !spec.commands.is_empty() && !apart {
        // Build commands add and remove files (vendor/, caches), under the service's umask:
        // count what is really there, and make it readable to Apache.
        stats = count_and_open_up(build_dir)?;
        stats
            .within(spec.cap)
            .context("the build made the release too big")?;
    }
    if !spec.commands.is_empty() || apart {
        // The tree was written afresh (a build command could change a linked file in place,
        // and with it a live release); what the commands left as it was in the newest
        // release is linked to it now.
        if let Some(previous) = newest {
            let linked = relink_unchanged(build_dir, &previous.dir)?;
            progress.progress(&format!(
                "{linked} of {} files are the same as in {} and share its copy",
                stats.files, previous.name
            ));
        }
    }
    // Under Apache's FollowSymLinks, a link out of the release would serve whatever it names
    // (`passwd.txt -> /etc/passwd`, the database) to every club.
    super::tree_check::check_links(build_dir)?;
    super::tree_check::check_reserved_names(build_dir)?;
    // The probe comes after the build commands and the check: it is clubdeploy's, not the
    // application's, and no build step can change it.
    if let Some(public_key) = spec.probe {
        super::probe::write_into(build_dir, public_key)?;
    }
    let manifest = Manifest {
        tag: spec.tag.to_string(),
        commit: spec.commit.to_owned(),
        built_at: Utc::now(),
        files: stats.files,
        bytes: stats.bytes,
        probe: spec.probe.map(|_| super::probe::PROBE_PATH.to_owned()),
        probe_per_host: spec.probe.is_some(),
        recipe: spec.recipe.map(str::to_owned),
    };
    // A new file, never one (or a link) already there: the name was checked free above.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(build_dir.join(MANIFEST))
        .with_context(|| format!("cannot write {MANIFEST} into the release"))?;
    file.write_all(&serde_json::to_vec_pretty(&manifest)?)?;
    file.sync_all()?;
    fsync_dir(build_dir)?;
    Ok(manifest)
}

/// Runs the build commands, then the check, in `dir` (as `as_user` when given), each with the
/// build's environment; the first that fails stops the build.
pub(super) fn run_commands(
    spec: &BuildSpec<'_>,
    name: &ReleaseName,
    dir: &Path,
    as_user: Option<&super::build_user::BuildUser>,
    progress: &mut dyn Progress,
) -> anyhow::Result<()> {
    let mut env = spec.env.to_vec();
    env.extend([
        ("CLUBDEPLOY_TAG".to_owned(), spec.tag.to_string()),
        ("CLUBDEPLOY_COMMIT".to_owned(), spec.commit.to_owned()),
        ("CLUBDEPLOY_RELEASE".to_owned(), name.to_string()),
        ("CLUBDEPLOY_BUILD_DIR".to_owned(), dir.display().to_string()),
    ]);
    for argv in spec.commands {
        let ran = command::run_clean(argv, dir, &env, spec.timeout, as_user)?;
        progress.output(&ran);
        ran.ok().context("the build failed")?;
    }
    if let Some(check) = spec.check {
        let ran = command::run_clean(check, dir, &env, spec.timeout, as_user)?;
        progress.output(&ran);
        ran.ok().context("the release check failed")?;
    }
    Ok(())
}

/// Replaces every regular file under `dir` that `previous` holds at the same path with the
/// same size, mode and bytes by a hard link to that file (a temporary link renamed over it,
/// so the path is never missing). Returns how many files share their copy with `previous`
/// now, those that already did included.
pub fn relink_unchanged(dir: &Path, previous: &Path) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut linked = 0;
    let mut pending = vec![PathBuf::new()];
    while let Some(within) = pending.pop() {
        for entry in std::fs::read_dir(dir.join(&within))? {
            let entry = entry?;
            let kind = entry.file_type()?;
            let relative = within.join(entry.file_name());
            if kind.is_dir() {
                pending.push(relative);
                continue;
            }
            if !kind.is_file() {
                continue;
            }
            let ours = entry.metadata()?;
            let theirs_path = previous.join(&relative);
            let Ok(theirs) = std::fs::symlink_metadata(&theirs_path) else {
                continue;
            };
            // One file already (the import of a build apart links what it can).
            if theirs.dev() == ours.dev() && theirs.ino() == ours.ino() {
                linked += 1;
                continue;
            }
            let same = theirs.is_file()
                && theirs.len() == ours.len()
                && theirs.mode() & 0o7777 == ours.mode() & 0o7777;
            if !same || !same_bytes(&entry.path(), &theirs_path)? {
                continue;
            }
            let path = entry.path();
            let temp = path.with_file_name(format!(
                "{}{}{}",
                super::fsops::TEMPLATE_PREFIX,
                super::fsops::TEMP_LINK_INFIX,
                random_suffix()
            ));
            // Too many links to one file, or another filesystem: the copy stays.
            if std::fs::hard_link(&theirs_path, &temp).is_err() {
                continue;
            }
            std::fs::rename(&temp, &path)?;
            linked += 1;
        }
    }
    Ok(linked)
}

/// Whether two files hold the same bytes (their sizes are known to be equal).
pub(super) fn same_bytes(a: &Path, b: &Path) -> std::io::Result<bool> {
    use std::io::Read;
    let (mut a, mut b) = (File::open(a)?, File::open(b)?);
    let (mut x, mut y) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let n = a.read(&mut x)?;
        if n == 0 {
            return Ok(b.read(&mut y[..1])? == 0);
        }
        if b.read_exact(&mut y[..n]).is_err() || x[..n] != y[..n] {
            return Ok(false);
        }
    }
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

/// What prune must know of an application's releases besides the releases themselves.
#[derive(Debug, Default, Clone)]
pub struct PruneFacts {
    /// Releases some webroot on disk resolves to now.
    pub in_use: HashSet<ReleaseName>,
    /// Releases some club would roll back to: the one each club ran before its current one.
    pub rollback_targets: HashSet<ReleaseName>,
    /// When a club last ran each release (switched to it or away from it).
    pub last_ran: HashMap<ReleaseName, DateTime<Utc>>,
    /// Releases a rollback or a failed health check left, for some club.
    pub bad: HashSet<ReleaseName>,
}

/// The releases prune deletes. Never one a webroot resolves to, nor any club's rollback
/// target. Of the others, the newest `keep` by when a club last ran them are kept; releases
/// marked bad or never switched to are not counted among those kept, and go.
pub fn prunable<'a>(releases: &'a [Release], facts: &PruneFacts, keep: usize) -> Vec<&'a Release> {
    let mut idle: Vec<&Release> = releases
        .iter()
        .filter(|r| !facts.in_use.contains(&r.name) && !facts.rollback_targets.contains(&r.name))
        .collect();
    // Kept first: those that ran, newest run first; then the rest, which are never kept.
    idle.sort_by_key(|r| {
        let counted = !facts.bad.contains(&r.name);
        std::cmp::Reverse(facts.last_ran.get(&r.name).filter(|_| counted).copied())
    });
    let kept = idle
        .iter()
        .take_while(|r| facts.last_ran.contains_key(&r.name) && !facts.bad.contains(&r.name))
        .count()
        .min(keep);
    idle.split_off(kept)
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
mod prune_tests {
    use chrono::{DateTime, Duration, Utc};

    use super::*;

    #[test]
    fn a_manifest_from_before_per_site_tokens_says_its_probe_takes_the_secret() {
        let old = r#"{"tag":"v1","commit":"ab","built_at":"2026-11-26T12:51:25Z","files":1,
                      "bytes":25,"probe":".clubdeploy/probe.php"}"#;
        let manifest: Manifest = serde_json::from_str(old).unwrap();
        assert!(manifest.probe.is_some() && !manifest.probe_per_host);
        let new = serde_json::to_value(Manifest {
            probe_per_host: true,
            ..manifest.clone()
        })
        .unwrap();
        assert_eq!(new["probe_per_host"], true);
        assert!(
            serde_json::to_value(manifest)
                .unwrap()
                .get("probe_per_host")
                .is_none()
        );
    }

    fn release(tag: &str) -> Release {
        let tag = ReleaseTag::parse(tag).unwrap();
        let commit = "0123456789abcdef0123456789abcdef01234567";
        Release {
            name: ReleaseName::new(&tag, commit).unwrap(),
            dir: PathBuf::from("/nonexistent"),
            manifest: Manifest {
                tag: tag.to_string(),
                commit: commit.to_owned(),
                built_at: DateTime::<Utc>::UNIX_EPOCH,
                files: 0,
                bytes: 0,
                probe: None,
                probe_per_host: false,
                recipe: None,
            },
        }
    }

    fn names(list: Vec<&Release>) -> Vec<String> {
        let mut names: Vec<String> = list.iter().map(|r| r.name.tag().to_string()).collect();
        names.sort();
        names
    }

    #[test]
    fn prune_keeps_the_releases_clubs_ran_last_and_every_rollback_target() {
        // Built in tag order, but run in another: 07-29 ran until 20 s ago, 06-09 runs now.
        let releases: Vec<Release> = ["05-01", "06-09", "07-01", "07-29", "08-01", "crashed"]
            .into_iter()
            .map(release)
            .collect();
        let name = |i: usize| releases[i].name.clone();
        let now = Utc::now();
        let mut facts = PruneFacts::default();
        facts.in_use.insert(name(1));
        facts.last_ran.insert(name(0), now - Duration::days(90));
        facts.last_ran.insert(name(1), now);
        facts.last_ran.insert(name(2), now - Duration::days(30));
        facts.last_ran.insert(name(3), now - Duration::seconds(20));
        // 08-01: a failed canary, rolled back.
        facts.last_ran.insert(name(4), now - Duration::seconds(10));
        facts.bad.insert(name(4));
        // keep 0: only what runs and what a rollback needs stay.
        facts.rollback_targets.insert(name(3));
        assert_eq!(
            names(prunable(&releases, &facts, 0)),
            ["05-01", "07-01", "08-01", "crashed"]
        );
        // keep 1: the next by last run (07-01), never the bad one or the one never switched to.
        assert_eq!(
            names(prunable(&releases, &facts, 1)),
            ["05-01", "08-01", "crashed"]
        );
        assert_eq!(names(prunable(&releases, &facts, 5)), ["08-01", "crashed"]);
        // Without the rollback target, 07-29 is kept as the newest run.
        facts.rollback_targets.clear();
        assert_eq!(
            names(prunable(&releases, &facts, 1)),
            ["05-01", "07-01", "08-01", "crashed"]
        );
    }
}
