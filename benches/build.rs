//! Building a release of a 5,000-file tree from a tag: clubdeploy's build step (tree written
//! out from the mirror, manifest, publish) against `git archive <tag> | tar -x -C dir` on the
//! same repository; first with no release built before (every file written), then the next
//! tag (10 files changed) beside the first, whose identical files it links instead of
//! writing. Run with `cargo bench --bench build`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use clubdeploy::config::GitSettings;
use clubdeploy::domain::{ReleaseTag, RepoUrl};
use clubdeploy::pipeline::Quiet;
use clubdeploy::pipeline::git::Mirror;
use clubdeploy::pipeline::release::{self, BuildSpec, Built};

const FILES: usize = 5000;
const ROUNDS: usize = 8;

fn main() {
    let root = tempfile::tempdir().expect("tempdir");
    let root = root.path().canonicalize().unwrap();
    let app = root.join("app");
    make_app(&app);
    let mirror_dir = root.join("repo.git");
    let url = RepoUrl::parse(app.to_str().unwrap()).unwrap();
    let mirror = Mirror::open(&mirror_dir, &url, &GitSettings::default()).unwrap();
    mirror.fetch(&mut Quiet).unwrap();
    let tags: Vec<(ReleaseTag, String)> = ["v1", "v2"]
        .iter()
        .map(|t| {
            let tag = ReleaseTag::parse(t).unwrap();
            let commit = mirror.resolve(&tag).unwrap().unwrap();
            (tag, commit)
        })
        .collect();

    let (mut first, mut next, mut archive) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        // Alternate which goes first, and settle the filesystem between runs: on the VMs
        // measured, creating inodes right after deleting thousands is slower.
        if round % 2 == 1 {
            archive.push(git_archive_tar(&root, &mirror_dir));
        }
        let releases = root.join("releases");
        first.push(build_ours(&releases, &mirror, &tags[0]));
        next.push(build_ours(&releases, &mirror, &tags[1]));
        std::fs::remove_dir_all(&releases).unwrap();
        if round % 2 == 0 {
            archive.push(git_archive_tar(&root, &mirror_dir));
        }
    }
    let (first, next, archive) = (median(first), median(next), median(archive));
    println!("building a {FILES}-file release, median of {ROUNDS} rounds:");
    println!(
        "  git archive | tar -x:                 {:>8.1} ms",
        ms(archive)
    );
    println!(
        "  clubdeploy, no release before:        {:>8.1} ms  ({:.2}x git archive | tar)",
        ms(first),
        first.as_secs_f64() / archive.as_secs_f64()
    );
    println!(
        "  clubdeploy, next tag (10 files new):  {:>8.1} ms  ({:.2}x git archive | tar)",
        ms(next),
        next.as_secs_f64() / archive.as_secs_f64()
    );
}

fn build_ours(releases: &Path, mirror: &Mirror, (tag, commit): &(ReleaseTag, String)) -> Duration {
    settle();
    let started = Instant::now();
    let spec = BuildSpec {
        releases_dir: releases,
        tag,
        commit,
        commands: &[],
        check: None,
        env: &[],
        // What a deploy writes by default: the health probe.
        probe: Some("0000000000000000000000000000000000000000000000000000000000000000"),
        recipe: None,
        rebuild: false,
        prefer: None,
        timeout: Duration::from_secs(60),
        cap: clubdeploy::pipeline::git::TreeStats::UNBOUNDED,
        build_user: None,
    };
    let built = release::build(mirror, &spec, &mut Quiet).unwrap();
    let took = started.elapsed();
    let Built::New(release) = built else {
        panic!("reused")
    };
    assert_eq!(release.manifest.files, FILES as u64);
    took
}

fn git_archive_tar(root: &Path, mirror_dir: &Path) -> Duration {
    let dest = root.join("archive");
    std::fs::create_dir(&dest).unwrap();
    settle();
    let started = Instant::now();
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "git --git-dir={} archive v2 | tar -x -C {}",
            mirror_dir.display(),
            dest.display()
        ))
        .status()
        .unwrap();
    let took = started.elapsed();
    assert!(status.success());
    assert!(dest.join("src/dir-0/File0.php").is_file());
    std::fs::remove_dir_all(&dest).unwrap();
    took
}

/// Writes back dirty data and waits a little, so each run starts from a quiet filesystem.
fn settle() {
    Command::new("sync").status().unwrap();
    std::thread::sleep(Duration::from_millis(500));
}

/// A repository of `FILES` PHP files of about 2 KB in 50 directories, tagged v1; then 10 of
/// them changed, tagged v2.
fn make_app(dir: &Path) {
    for n in 0..FILES {
        let file = dir.join(format!("src/dir-{}/File{n}.php", n % 50));
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        let body = format!(
            "<?php\nnamespace App\\Dir{};\n\nfinal class File{n}\n{{\n{}}}\n",
            n % 50,
            (0..40)
                .map(|m| format!("    public function method{m}(): int {{ return {n} + {m}; }}\n"))
                .collect::<String>()
        );
        std::fs::write(file, body).unwrap();
    }
    let git = |args: &[&str]| {
        let status = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_AUTHOR_NAME", "bench")
            .env("GIT_AUTHOR_EMAIL", "bench@example.invalid")
            .env("GIT_COMMITTER_NAME", "bench")
            .env("GIT_COMMITTER_EMAIL", "bench@example.invalid")
            .status()
            .unwrap();
        assert!(status.success(), "git {args:?}");
    };
    git(&["init", "-q"]);
    git(&["add", "."]);
    git(&["commit", "-qm", "app"]);
    git(&["tag", "v1"]);
    for n in 0..10 {
        let file = dir.join(format!("src/dir-{}/File{n}.php", n % 50));
        let body = std::fs::read_to_string(&file).unwrap();
        std::fs::write(&file, body.replace("return", "return 1 +")).unwrap();
    }
    git(&["commit", "-qam", "ten files changed"]);
    git(&["tag", "v2"]);
    git(&["gc", "-q"]);
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
