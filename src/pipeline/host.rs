//! The Host seam: what a job does on one web host, and only that. Stage a release there,
//! read and switch the clubs' links, run the web server's configuration test and reload,
//! and check the clubs' health. [`LocalHost`], this machine, is the one implementation
//! today; several web servers (DESIGN §6) add an SSH twin, and the job steps, which reach
//! the web host only through this trait, stay as they are.

use std::path::Path;

use super::command::{self, Ran};
use super::health::{self, Check, Target, Verdict};
use super::release::Release;
use super::switch::{self, Batch, Switcher, Webroot};

/// One web host, as a job's steps see it.
pub trait Host {
    /// The host in messages ("this machine", "web2").
    fn name(&self) -> &str;

    /// Makes the built `release` present on this host, complete or not at all.
    fn stage(&self, release: &Release) -> anyhow::Result<()>;

    /// What `webroot` runs, its link resolved fully (as the web server does).
    fn inspect(&self, webroot: &Path, releases_dir: &Path) -> std::io::Result<Webroot>;

    /// What `webroot` links to, cheaply: one read of a link that names a release directory
    /// (every link clubdeploy writes), else as [`Host::inspect`] finds it.
    fn linked(&self, webroot: &Path, releases_dir: &Path) -> std::io::Result<Webroot>;

    /// Links that point webroots under `webroot_base` at `release_dir`, one atomic swap each.
    fn links(&self, release_dir: &Path, webroot_base: &Path) -> Box<dyn Links>;

    /// Runs a web server command (the configuration test, the reload) there.
    fn run(&self, argv: &[String]) -> std::io::Result<Ran>;

    /// Asks each target whether it serves `check.release_dir`, reporting each verdict as it
    /// comes; verdicts in the order of `targets`.
    fn check_health(
        &self,
        targets: &[Target],
        check: &Check<'_>,
        report: &mut dyn FnMut(&Target, &Verdict),
    ) -> Vec<Verdict>;
}

/// The switch of many webroots to one release (see [`Switcher`]).
pub trait Links {
    /// Points each of `webroots` at the release unless it already is, in order, a batch at a
    /// time (see [`Switcher::switch_batch`]): what each switched webroot ran before (`None`:
    /// nothing changed), and why it stopped before the end, if it did.
    fn switch_batch(&self, webroots: &[&Path], releases_dir: &Path) -> Batch;
}

impl Links for Switcher {
    fn switch_batch(&self, webroots: &[&Path], releases_dir: &Path) -> Batch {
        Switcher::switch_batch(self, webroots, releases_dir)
    }
}

/// This machine: releases are built in place, links and commands are local, and health
/// checks go out from here.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalHost;

impl Host for LocalHost {
    fn name(&self) -> &str {
        "this machine"
    }

    fn stage(&self, release: &Release) -> anyhow::Result<()> {
        // Built here, in the releases directory the webroots link into: already staged.
        anyhow::ensure!(
            release.dir.is_dir(),
            "release {} is not at {}",
            release.name,
            release.dir.display()
        );
        Ok(())
    }

    fn inspect(&self, webroot: &Path, releases_dir: &Path) -> std::io::Result<Webroot> {
        switch::inspect(webroot, releases_dir)
    }

    fn linked(&self, webroot: &Path, releases_dir: &Path) -> std::io::Result<Webroot> {
        switch::linked_release(webroot, releases_dir)
    }

    fn links(&self, release_dir: &Path, webroot_base: &Path) -> Box<dyn Links> {
        Box::new(Switcher::new(release_dir, webroot_base))
    }

    fn run(&self, argv: &[String]) -> std::io::Result<Ran> {
        command::run(argv, None)
    }

    fn check_health(
        &self,
        targets: &[Target],
        check: &Check<'_>,
        report: &mut dyn FnMut(&Target, &Verdict),
    ) -> Vec<Verdict> {
        health::check_all(targets, check, report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ReleaseName;
    use crate::pipeline::release::MANIFEST;

    #[test]
    fn the_local_host_switches_reads_and_runs_on_this_machine() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path().canonicalize().unwrap();
        let (base, releases) = (root.join("www"), root.join("releases"));
        let name = ReleaseName::parse("v1-0000000a").unwrap();
        std::fs::create_dir_all(&base).unwrap();
        std::fs::create_dir_all(releases.join(name.as_str())).unwrap();
        std::fs::write(releases.join(name.as_str()).join(MANIFEST), "{}").unwrap();
        let host: &dyn Host = &LocalHost;
        let webroot = base.join("club-a/htdocs");
        let other = base.join("club-b/htdocs");
        let not_a_link = base.join("club-c/htdocs");
        std::fs::create_dir_all(&not_a_link).unwrap();

        assert_eq!(host.inspect(&webroot, &releases).unwrap(), Webroot::Missing);
        let links = host.links(&releases.join(name.as_str()), &base);
        let batch = links.switch_batch(&[&webroot], &releases);
        assert!(batch.error.is_none(), "{:?}", batch.error);
        assert_eq!(batch.before, [Some(Webroot::Missing)]);
        // One already there, one switched, then one that cannot be: the batch stops there
        // and leaves no new link behind.
        let batch = links.switch_batch(&[&webroot, &other, &not_a_link], &releases);
        assert_eq!(batch.before, [None, Some(Webroot::Missing)]);
        let error = format!("{:#}", batch.error.unwrap());
        assert!(error.contains("not a link"), "{error}");
        drop(links);
        let left: Vec<String> = ["club-a", "club-b", "club-c"]
            .iter()
            .flat_map(|club| std::fs::read_dir(base.join(club)).unwrap())
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name != "htdocs")
            .collect();
        assert!(left.is_empty(), "{left:?}");
        assert_eq!(
            host.linked(&other, &releases).unwrap(),
            Webroot::Release(name.clone())
        );
        let on_it = Webroot::Release(name.clone());
        assert_eq!(host.inspect(&webroot, &releases).unwrap(), on_it);
        assert_eq!(host.linked(&webroot, &releases).unwrap(), on_it);

        let ran = host
            .run(&["sh".into(), "-c".into(), "echo hi; exit 3".into()])
            .unwrap();
        assert!(!ran.success && ran.output.contains("hi"), "{ran:?}");

        let gone = Release {
            name: name.clone(),
            dir: releases.join("v2-0000000b"),
            manifest: crate::pipeline::release::Manifest {
                tag: "v2".into(),
                commit: "b".repeat(40),
                built_at: chrono::Utc::now(),
                files: 0,
                bytes: 0,
                probe: None,
                probe_per_host: false,
                recipe: None,
            },
        };
        assert!(
            host.stage(&gone).is_err(),
            "a release not on disk is not staged"
        );
    }
}
