//! Switching one application's webroots of 1,000 clubs that each run two applications
//! (`main` at `<club>/htdocs`, `mobile` at `<club>/mobile`, each with its own releases) to
//! another release of `mobile`: clubdeploy's switch step (read each link, make the new links
//! of a batch, then rename them over the webroots) against a shell loop of `ln -sfn` (what a
//! hand-written deploy script does) and against 1,000 bare `rename(2)` calls of links made
//! beforehand (the floor); both clubdeploy and the floor replace links as a switch leaves
//! them. Reported: the whole step, and its renames alone (the changeover window, in which
//! clubs run mixed releases). The other application's 1,000 links sit beside them in the same
//! directories and must be untouched after every round. Also timed: reading that
//! application's 1,000 webroots out of the 2,000 in a real SQLite database, as a deploy job
//! does first. Run with `cargo bench --bench switch`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use clubdeploy::db::{self, clubs};
use clubdeploy::pipeline::switch::{SWITCH_BATCH, Switcher, Webroot};

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
    let mut changeovers = Vec::new();
    let mut shell = Vec::new();
    let mut floor = Vec::new();
    let (back, target) = (&targets[0], &targets[1]);
    let base = root.path().join("www");
    // Every round starts with all links on `back` as a switch leaves them (hard links of one
    // template link), so each timed loop replaces the same kind of link a real job does:
    // replacing a link that is its inode's last name also frees the inode, which would charge
    // one side with work the other does not do.
    let _ = switch_step(&webroots, &releases, back, &base, false);
    for _ in 0..ROUNDS {
        let (took, changeover) = switch_step(&webroots, &releases, target, &base, true);
        ours.push(took);
        changeovers.push(changeover);
        floor.push(bare_renames(&webroots, target, &base));
        shell.push(ln_sfn_loop(root.path(), &webroots, back));
        let _ = switch_step(&webroots, &releases, back, &base, false);
        for main in &main_webroots {
            assert_eq!(std::fs::read_link(main).unwrap(), main_target);
        }
    }
    let (ours, shell, floor) = (median(ours), median(shell), median(floor));
    let changeover = median(changeovers);
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
        "    of which the renames:      {:>9.2} ms  ({:.2}x the floor: the changeover window)",
        ms(changeover),
        changeover.as_secs_f64() / floor.as_secs_f64()
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

/// What the switch step does: read each link (skipping a club already there, noting the
/// release it ran) and swap, in the job's batches; the whole call and the changeover (the
/// renames alone) are timed. `moving` says whether every club must move.
fn switch_step(
    webroots: &[PathBuf],
    releases: &Path,
    target: &Path,
    base: &Path,
    moving: bool,
) -> (Duration, Duration) {
    let name = target.file_name().unwrap().to_str().unwrap();
    let started = Instant::now();
    let switcher = Switcher::new(target, base);
    let mut switched = 0;
    let mut changeover = Duration::ZERO;
    for batch in webroots.chunks(SWITCH_BATCH) {
        let paths: Vec<&Path> = batch.iter().map(PathBuf::as_path).collect();
        let done = switcher.switch_batch(&paths, releases);
        assert!(done.error.is_none(), "{:?}", done.error);
        changeover += done.changeover;
        for (webroot, before) in batch.iter().zip(done.before) {
            match before {
                Some(Webroot::Release(from)) if from.as_str() != name => switched += 1,
                None if !moving => {}
                other => panic!("{} was {other:?}", webroot.display()),
            }
        }
    }
    drop(switcher);
    let took = started.elapsed();
    if moving {
        assert_eq!(switched, webroots.len());
    }
    for webroot in webroots {
        assert_eq!(std::fs::read_link(webroot).unwrap(), target);
    }
    (took, changeover)
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

/// Renames links made beforehand over the webroots; only the renames are timed. The temporary
/// links are hard links of one link, as the switch step's are.
fn bare_renames(webroots: &[PathBuf], target: &Path, base: &Path) -> Duration {
    let template = base.join("template.tmp-bench");
    std::os::unix::fs::symlink(target, &template).unwrap();
    let temps: Vec<PathBuf> = webroots
        .iter()
        .map(|w| {
            let temp = w.with_file_name("mobile.tmp-bench");
            std::fs::hard_link(&template, &temp).unwrap();
            temp
        })
        .collect();
    std::fs::remove_file(&template).unwrap();
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
