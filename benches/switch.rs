//! Switching 1,000 club webroots to another release: clubdeploy's switch step (read the link,
//! then swap it by renaming a temporary link over it) against a shell loop of `ln -sfn` (what
//! a hand-written deploy script does) and against 1,000 bare `rename(2)` calls of links made
//! beforehand (the floor). Run with `cargo bench --bench switch`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use clubdeploy::pipeline::switch::{Switcher, Webroot, linked_release};

const CLUBS: usize = 1000;
const ROUNDS: usize = 7;

fn main() {
    let root = tempfile::tempdir().expect("tempdir");
    let releases = root.path().canonicalize().unwrap().join("releases");
    let targets = [releases.join("v1-00000001"), releases.join("v2-00000002")];
    for dir in &targets {
        std::fs::create_dir_all(dir).unwrap();
    }
    let webroots: Vec<PathBuf> = (0..CLUBS)
        .map(|n| {
            let club = root.path().join("www").join(format!("club-{n}"));
            std::fs::create_dir_all(&club).unwrap();
            let webroot = club.join("htdocs");
            std::os::unix::fs::symlink(&targets[0], &webroot).unwrap();
            webroot
        })
        .collect();

    let mut ours = Vec::new();
    let mut shell = Vec::new();
    let mut floor = Vec::new();
    let (back, target) = (&targets[0], &targets[1]);
    for _ in 0..ROUNDS {
        // Every round starts with all links on `back`.
        ours.push(switch_step(
            &webroots,
            &releases,
            target,
            &root.path().join("www"),
        ));
        shell.push(ln_sfn_loop(root.path(), &webroots, back));
        floor.push(bare_renames(&webroots, target));
        bare_renames(&webroots, back);
    }
    let (ours, shell, floor) = (median(ours), median(shell), median(floor));
    println!("switching {CLUBS} clubs, median of {ROUNDS} rounds:");
    println!("  bare rename(2) loop (floor): {:>9.2} ms", ms(floor));
    println!(
        "  clubdeploy switch step:      {:>9.2} ms  ({:.2}x the floor)",
        ms(ours),
        ours.as_secs_f64() / floor.as_secs_f64()
    );
    println!(
        "  shell loop of ln -sfn:       {:>9.2} ms  (clubdeploy is {:.1}x faster)",
        ms(shell),
        shell.as_secs_f64() / ours.as_secs_f64()
    );
}

/// What the switch step does per club: read the link, skip a club already there, swap.
fn switch_step(webroots: &[PathBuf], releases: &Path, target: &Path, base: &Path) -> Duration {
    let name = target.file_name().unwrap().to_str().unwrap();
    let started = Instant::now();
    let switcher = Switcher::new(target, base);
    let mut switched = 0;
    for webroot in webroots {
        let from = linked_release(webroot, releases).unwrap();
        if matches!(&from, Webroot::Release(r) if r.as_str() == name) {
            continue;
        }
        switcher.swap(webroot).unwrap();
        switched += 1;
    }
    drop(switcher);
    let took = started.elapsed();
    assert_eq!(switched, webroots.len());
    took
}

fn ln_sfn_loop(dir: &Path, webroots: &[PathBuf], target: &Path) -> Duration {
    let script = dir.join("switch.sh");
    let mut text = String::from("set -e\n");
    for webroot in webroots {
        text.push_str(&format!(
            "ln -sfn {} {}\n",
            target.display(),
            webroot.display()
        ));
    }
    std::fs::write(&script, text).unwrap();
    let started = Instant::now();
    let status = Command::new("sh").arg(&script).status().unwrap();
    let took = started.elapsed();
    assert!(status.success());
    assert_eq!(std::fs::read_link(&webroots[0]).unwrap(), target);
    took
}

/// Renames links made beforehand over the webroots; only the renames are timed.
fn bare_renames(webroots: &[PathBuf], target: &Path) -> Duration {
    let temps: Vec<PathBuf> = webroots
        .iter()
        .map(|w| {
            let temp = w.with_file_name("htdocs.tmp-bench");
            std::os::unix::fs::symlink(target, &temp).unwrap();
            temp
        })
        .collect();
    let started = Instant::now();
    for (temp, webroot) in temps.iter().zip(webroots) {
        std::fs::rename(temp, webroot).unwrap();
    }
    started.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
