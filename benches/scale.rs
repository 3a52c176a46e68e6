//! A whole deploy job at 1,000 and 10,000 clubs, as staff run it: the real binary, clubs
//! imported from a CSV file, `deploy v1 --all`, then `deploy v2 --all` timed end to end with
//! its switch step (from the job's own log), the lines its log got, and adding one club at
//! that size against adding one at 10 clubs; beside it the floor: bare `rename(2)` of as many
//! links made beforehand. With `BASELINE_BIN=<another clubdeploy binary>` the same runs are
//! made with that binary too, in the same run, and the ratios printed. No club has an address
//! (health checks say "not checked"), and configtest and reload are `true`. Run with
//! `cargo bench --bench scale`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const SIZES: [usize; 2] = [1_000, 10_000];

/// What one binary measured at one size.
#[derive(Debug, Clone, Copy)]
struct Figures {
    deploy: Duration,
    switch: Duration,
    lines: usize,
    add_one: Duration,
}

fn main() {
    let ours = PathBuf::from(env!("CARGO_BIN_EXE_clubdeploy"));
    let baseline = std::env::var_os("BASELINE_BIN").map(PathBuf::from);
    let small = |bin: &Path| measure(bin, 10).add_one;
    let (ours_small, base_small) = (small(&ours), baseline.as_deref().map(small));
    println!("one club added at 10 clubs: {:.1} ms", ms(ours_small));
    if let Some(base) = base_small {
        println!("  baseline: {:.1} ms", ms(base));
    }
    for n in SIZES {
        let floor = Floors {
            shared: rename_floor(n, true),
            own: rename_floor(n, false),
        };
        let got = measure(&ours, n);
        report("clubdeploy", n, &got, &floor, ours_small);
        if let Some(bin) = &baseline {
            let base = measure(bin, n);
            report("baseline", n, &base, &floor, base_small.unwrap_or_default());
            println!(
                "  ratio ours/baseline at {n}: deploy {:.2}x, switch step {:.2}x, log lines {:.2}x, \
                 one club added {:.2}x",
                got.deploy.as_secs_f64() / base.deploy.as_secs_f64(),
                got.switch.as_secs_f64() / base.switch.as_secs_f64(),
                got.lines as f64 / base.lines as f64,
                got.add_one.as_secs_f64() / base.add_one.as_secs_f64(),
            );
        }
    }
}

/// The bare `rename(2)` floor, measured over links as a deploy leaves them (`shared`) and over
/// links of their own.
struct Floors {
    shared: Duration,
    own: Duration,
}

fn report(who: &str, n: usize, f: &Figures, floor: &Floors, add_small: Duration) {
    let ratio = |d: Duration| f.switch.as_secs_f64() / d.as_secs_f64();
    println!(
        "{who} at {n} clubs: deploy v2 --all {:.0} ms, switch step {:.0} ms ({:.1}x the {:.0} ms \
         rename floor over links as a deploy leaves them, {:.1}x the {:.0} ms one over links of \
         their own), {} log lines, one club added {:.1} ms ({:.2}x the same at 10 clubs)",
        ms(f.deploy),
        ms(f.switch),
        ratio(floor.shared),
        ms(floor.shared),
        ratio(floor.own),
        ms(floor.own),
        f.lines,
        ms(f.add_one),
        f.add_one.as_secs_f64() / add_small.as_secs_f64()
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Sets up `n` clubs on v1 with `bin`, then times `deploy v2 --all` and one `club add`.
fn measure(bin: &Path, n: usize) -> Figures {
    let root = tempfile::tempdir().expect("tempdir");
    let root = root.path().canonicalize().unwrap();
    let app = root.join("app");
    make_repo(&app);
    let www = root.join("www");
    std::fs::create_dir_all(&www).unwrap();
    let config = root.join("clubdeploy.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\nrepo_url = {:?}\nwebroot_base = {:?}\nprune_grace_secs = 0\n\
             [reload]\nconfigtest = [\"true\"]\ncommand = [\"true\"]\nvhosts = []\nsettle_ms = 0\n",
            root.join("data"),
            app,
            www
        ),
    )
    .unwrap();
    let run = |args: &[&str]| -> String {
        let out = Command::new(bin)
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let mut csv = String::from("slug,name,url,webroot\n");
    for k in 0..n {
        writeln!(
            csv,
            "club-{k:05},Club {k},,{}/club-{k:05}/htdocs",
            www.display()
        )
        .unwrap();
    }
    let file = root.join("clubs.csv");
    std::fs::write(&file, csv).unwrap();
    run(&["club", "import", file.to_str().unwrap()]);
    run(&["deploy", "v1", "--all"]);
    let started = Instant::now();
    let log = run(&["deploy", "v2", "--all"]);
    let deploy = started.elapsed();
    let switch = log
        .lines()
        .filter_map(|l| l.trim().strip_prefix("switch done in "))
        .filter_map(|l| l.strip_suffix(" s")?.parse::<f64>().ok())
        .sum::<f64>();
    let webroot = www.join("extra/htdocs");
    let started = Instant::now();
    run(&[
        "club",
        "add",
        "extra",
        "--webroot",
        webroot.to_str().unwrap(),
    ]);
    let add_one = started.elapsed();
    Figures {
        deploy,
        switch: Duration::from_secs_f64(switch),
        lines: log.lines().count(),
        add_one,
    }
}

/// `n` bare renames of temporary links made beforehand over `n` links: the least a switch of
/// `n` clubs can cost. With `shared`, every link is a hard link of one link, as a deploy
/// leaves them and as the switch step's temporary links are; without, each is a link of its
/// own, so each rename also frees the inode of the link it replaces (work the job's switch
/// step does not do, but what the first figures were measured against).
fn rename_floor(n: usize, shared: bool) -> Duration {
    let root = tempfile::tempdir().unwrap();
    let (a, b) = (root.path().join("a"), root.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let (to_a, to_b) = (root.path().join("to-a"), root.path().join("to-b"));
    std::os::unix::fs::symlink(&a, &to_a).unwrap();
    std::os::unix::fs::symlink(&b, &to_b).unwrap();
    let make = |template: &Path, target: &Path, link: &Path| {
        if shared {
            std::fs::hard_link(template, link).unwrap();
        } else {
            std::os::unix::fs::symlink(target, link).unwrap();
        }
    };
    let mut pairs = Vec::new();
    for k in 0..n {
        let dir = root.path().join(format!("club-{k:05}"));
        std::fs::create_dir_all(&dir).unwrap();
        let link = dir.join("htdocs");
        make(&to_a, &a, &link);
        let temp = dir.join("htdocs.tmp");
        make(&to_b, &b, &temp);
        pairs.push((temp, link));
    }
    let started = Instant::now();
    for (temp, link) in &pairs {
        std::fs::rename(temp, link).unwrap();
    }
    started.elapsed()
}

fn make_repo(path: &Path) {
    let git = |args: &[&str]| {
        let status = Command::new("git")
            .arg("-C")
            .arg(path)
            .args(args)
            .env("GIT_AUTHOR_NAME", "bench")
            .env("GIT_AUTHOR_EMAIL", "bench@example.invalid")
            .env("GIT_COMMITTER_NAME", "bench")
            .env("GIT_COMMITTER_EMAIL", "bench@example.invalid")
            .status()
            .unwrap();
        assert!(status.success(), "git {args:?}");
    };
    std::fs::create_dir_all(path).unwrap();
    git(&["init", "-q"]);
    for tag in ["v1", "v2"] {
        std::fs::write(path.join("index.php"), format!("<?php echo '{tag}';\n")).unwrap();
        git(&["add", "-A"]);
        git(&["commit", "-qm", tag]);
        git(&["tag", tag]);
    }
}
