//! How soon the server's worker starts a job queued while it is idle: queued in the same
//! process (the worker is notified) and queued by another connection, as the command line
//! does (the server's watcher sees the database change, `jobs::watch`; before it, the worker
//! learned by polling every 2 s). Measured from the job's `created_at` to its `started_at` in
//! the database. Run with `cargo bench --bench wakeup`.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use clubdeploy::config::Settings;
use clubdeploy::db::{self, jobs};
use clubdeploy::domain::JobSpec;
use clubdeploy::jobs::{enqueue::enqueue, worker};

const JOBS: usize = 8;

fn main() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path().canonicalize().unwrap();
    let app = root.join("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(app.join("index.php"), "<?php echo 1;\n").unwrap();
    for args in [
        &["init", "-q"][..],
        &["add", "."],
        &[
            "-c",
            "user.name=b",
            "-c",
            "user.email=b@b",
            "commit",
            "-qm",
            "a",
        ],
        &["tag", "v1"],
    ] {
        assert!(
            Command::new("git")
                .args(args)
                .current_dir(&app)
                .status()
                .unwrap()
                .success()
        );
    }
    std::fs::create_dir_all(root.join("www")).unwrap();
    let config = root.join("clubdeploy.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\nrepo_url = {:?}\nwebroot_base = {:?}\n[reload]\npolicy = \"never\"\n",
            root.join("data"),
            app,
            root.join("www")
        ),
    )
    .unwrap();
    let settings = Arc::new(Settings::load(&config).unwrap());
    let pool = db::open(&settings.database_path()).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let wake = Arc::new(tokio::sync::Notify::new());
    // The server's watcher, as `serve` runs it; kept alive by its receiver.
    let _events = clubdeploy::jobs::watch::spawn(&settings.database_path(), wake.clone()).unwrap();
    runtime.spawn(worker::run(
        settings.clone(),
        pool.clone(),
        wake.clone(),
        worker::POLL_INTERVAL,
    ));
    let mut notified = Vec::new();
    let mut polled = Vec::new();
    for n in 0..JOBS * 2 {
        // Let the worker go idle at a random point of its poll interval.
        std::thread::sleep(Duration::from_millis(300 + (n as u64 * 577) % 1700));
        let id = enqueue(
            &mut pool.get().unwrap(),
            &JobSpec::Prune { app: None },
            "bench",
            None,
        )
        .unwrap();
        let in_process = n % 2 == 0;
        if in_process {
            wake.notify_one();
        }
        let waited = wait_started(&pool, id);
        if in_process {
            notified.push(waited);
        } else {
            polled.push(waited);
        }
    }
    report("queued in-process (notified)", &mut notified);
    report(
        "queued by another connection (the command line's way)",
        &mut polled,
    );
}

fn wait_started(pool: &db::DbPool, id: i32) -> Duration {
    loop {
        let job = jobs::by_id(&mut pool.get().unwrap(), id).unwrap().unwrap();
        if job.finished_at.is_some() {
            let started = job.started_at.unwrap();
            return (started - job.created_at).to_std().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn report(what: &str, times: &mut [Duration]) {
    times.sort();
    let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{what}: median {:.1} ms, max {:.1} ms over {} jobs",
        ms(&times[times.len() / 2]),
        ms(times.last().unwrap()),
        times.len()
    );
}
