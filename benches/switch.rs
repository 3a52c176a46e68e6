//! Switching one application's webroots of 1,000 clubs that each run two applications
//! (`main` at `<club>/htdocs`, `mobile` at `<club>/mobile`, each with its own releases) to
//! another release of `mobile`: clubdeploy's switch step (read the link, then swap it by
//! renaming a temporary link over it) against a shell loop of `ln -sfn` (what a hand-written
//! deploy script does) and against 1,000 bare `rename(2)` calls of links made beforehand (the
//! floor). The other application's 1,000 links sit beside them in the same directories and
//! must be untouched after every round. Also timed: reading that application's 1,000
//! webroots out of the 2,000 in a real SQLite database, as a deploy job does first. Run with
//! `cargo bench --bench switch`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use clubdeploy::db::{self, clubs};
use clubdeploy::pipeline::switch::{Switcher, Webroot};

const CLUBS: usize = 1000;
const ROUNDS: usize = 7;

fn main() {
    let root = tempfile::tempdir().expect("tempdir");
    let data = root.path().canonicalize().unwrap().join("data");
    let main_releases = data.join("releases");
    let releases = data.join("apps/mobile/releases");
    let main_target = main_releases.join("v1-00000001");
    let targets = [releases.join("v1-0000000a"), releases.join("v2-0000000b")];
    for dir in targets.iter().chain([&main_target]) {
        std::fs::create_dir_all(dir).unwrap();
    }
    let mut main_webroots = Vec::new();
    let webroots: Vec<PathBuf> = (0..CLUBS)
        .map(|n| {
            let club = root.path().join("www").join(format!("club-{n}"));
            std::fs::create_dir_all(&club).unwrap();
            let main = club.join("htdocs");
            std::os::unix::fs::symlink(&main_target, &main).unwrap();
            main_webroots.push(main);
            let webroot = club.join("mobile");
            std::os::unix::fs::symlink(&targets[0], &webroot).unwrap();
            webroot
        })
        .collect();
    let selecting = select_from_database(&data, &main_webroots, &webroots);

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
        for main in &main_webroots {
            assert_eq!(std::fs::read_link(main).unwrap(), main_target);
        }
    }
    let (ours, shell, floor) = (median(ours), median(shell), median(floor));
    println!(
        "switching the mobile webroots of {CLUBS} clubs that each run two applications, \
         median of {ROUNDS} rounds:"
    );
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
    println!(
        "  selecting mobile's {CLUBS} webroots of {} in SQLite: {:>5.2} ms",
        2 * CLUBS,
        ms(selecting)
    );
}

/// A real database with every club's two webroots; the median time to read one
/// application's webroots (the rows a deploy job switches).
fn select_from_database(data: &Path, main: &[PathBuf], mobile: &[PathBuf]) -> Duration {
    let pool = db::open(&data.join("clubdeploy.sqlite3")).unwrap();
    let conn = &mut pool.get().unwrap();
    conn.immediate_transaction(|conn| {
        for (n, (main, mobile)) in main.iter().zip(mobile).enumerate() {
            let club = clubs::insert(
                conn,
                &clubs::NewClub {
                    slug: &format!("club-{n}"),
                    name: &format!("Club {n}"),
                    url: None,
                    created_at: db::now(),
                },
            )
            .unwrap();
            for (app, path) in [("main", main), ("mobile", mobile)] {
                clubs::add_webroot(
                    conn,
                    &clubs::NewWebroot {
                        club_id: club.id,
                        app,
                        path: path.to_str().unwrap(),
                        current_release: None,
                        created_at: db::now(),
                        url: None,
                    },
                )
                .unwrap();
            }
        }
        Ok::<_, diesel::result::Error>(())
    })
    .unwrap();
    let mut times = Vec::new();
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let found = clubs::webroots(conn, Some("mobile")).unwrap();
        times.push(started.elapsed());
        assert_eq!(found.len(), mobile.len());
    }
    median(times)
}

/// What the switch step does per club: read the link (skipping a club already there, noting
/// the release it ran) and swap, as the deploy job's switch step calls it.
fn switch_step(webroots: &[PathBuf], releases: &Path, target: &Path, base: &Path) -> Duration {
    let name = target.file_name().unwrap().to_str().unwrap();
    let started = Instant::now();
    let switcher = Switcher::new(target, base);
    let mut switched = 0;
    for webroot in webroots {
        match switcher.switch(webroot, releases).unwrap() {
            Some(Webroot::Release(from)) if from.as_str() != name => switched += 1,
            other => panic!("{} was {other:?}", webroot.display()),
        }
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
            let temp = w.with_file_name("mobile.tmp-bench");
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
