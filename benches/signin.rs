//! A sign-in flood: for 15 s, 64 connections post wrong passwords for `admin`, each from a
//! new address (`X-Forwarded-For` through a trusted proxy on loopback, with the proxy's
//! secret), while the real admin signs in from an address they signed in from before, twice
//! a second. Says how often the admin got in, how many guesses the flood got checked against
//! the account, and the server's resident memory before, right after and 5 s after.
//!
//! Run with `cargo bench --bench signin`; `BASELINE_BIN=/path/to/an/older/clubdeploy` runs
//! the same flood against that binary first, in the same run (its configuration then has no
//! proxy secret, which older versions do not know).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clubdeploy::config::Settings;
use clubdeploy::db;

const PASSWORD: &str = "benchmark password";
const SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef";
const FLOOD: Duration = Duration::from_secs(15);
const CONNECTIONS: usize = 64;
const ADMIN_ADDRESS: &str = "198.51.100.7";

mod support;

fn main() {
    if let Some(baseline) = std::env::var_os("BASELINE_BIN") {
        run("baseline", Path::new(&baseline), false);
    }
    run(
        "this build",
        Path::new(env!("CARGO_BIN_EXE_clubdeploy")),
        true,
    );
}

fn run(label: &str, binary: &Path, with_secret: bool) {
    let root = tempfile::tempdir().unwrap();
    let root = root.path().canonicalize().unwrap();
    let config = make_data(&root, with_secret);
    let server = support::Server::start(binary, &config);
    let base = server.base.clone();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        wait_for(&base).await;
        assert_eq!(sign_in(&base, ADMIN_ADDRESS, PASSWORD).await, 303);
    });
    std::thread::sleep(Duration::from_secs(2));
    let before = server.rss_mb();
    let (admin, flood) = runtime.block_on(flood(&base));
    let after = server.rss_mb();
    std::thread::sleep(Duration::from_secs(5));
    let later = server.rss_mb();
    let statuses = |counts: &[(u16, usize)]| {
        counts
            .iter()
            .map(|(status, n)| format!("{n} × {status}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let in_of = |counts: &[(u16, usize)]| {
        let got: usize = counts.iter().filter(|(s, _)| *s == 303).map(|c| c.1).sum();
        let all: usize = counts.iter().map(|c| c.1).sum();
        (got, all)
    };
    let (got, tries) = in_of(&admin);
    let checked: usize = flood.iter().filter(|(s, _)| *s == 401).map(|c| c.1).sum();
    println!("{label}:");
    println!(
        "  the admin got in {got} of {tries} times ({})",
        statuses(&admin)
    );
    println!(
        "  the flood: {} ({:.1} guesses checked per second against admin)",
        statuses(&flood),
        checked as f64 / FLOOD.as_secs_f64()
    );
    println!("  RSS: {before:.1} MB before, {after:.1} MB right after, {later:.1} MB 5 s later");
}

async fn wait_for(base: &str) {
    for _ in 0..200 {
        if reqwest::get(format!("{base}/login")).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the server did not start");
}

/// Posts the sign-in form as if through the proxy for `from`; the status.
async fn sign_in(base: &str, from: &str, password: &str) -> u16 {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    let client = CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(CONNECTIONS + 8)
            .build()
            .unwrap()
    });
    let token = "a".repeat(64);
    let response = client
        .post(format!("{base}/login"))
        .header("Cookie", format!("clubdeploy_login={token}"))
        .header("X-Forwarded-For", from)
        .header("X-Clubdeploy-Proxy", SECRET)
        .form(&[
            ("name", "admin"),
            ("password", password),
            ("csrf", &token),
            ("next", "/"),
        ])
        .send()
        .await;
    match response {
        Ok(response) => {
            let status = response.status().as_u16();
            let _ = response.bytes().await;
            status
        }
        Err(_) => 0,
    }
}

type Counts = Vec<(u16, usize)>;

fn tally(statuses: &[u16]) -> Counts {
    let mut counts: std::collections::BTreeMap<u16, usize> = Default::default();
    for status in statuses {
        *counts.entry(*status).or_default() += 1;
    }
    counts.into_iter().collect()
}

/// The admin's statuses and the flood's.
async fn flood(base: &str) -> (Counts, Counts) {
    let end = Instant::now() + FLOOD;
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let (base, next) = (base.to_owned(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            while Instant::now() < end {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let from = format!("10.{}.{}.{}", n >> 16 & 255, n >> 8 & 255, n & 255);
                statuses.push(sign_in(&base, &from, "a wrong guess").await);
            }
            statuses
        }));
    }
    let admin = {
        let base = base.to_owned();
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            while Instant::now() < end {
                statuses.push(sign_in(&base, ADMIN_ADDRESS, PASSWORD).await);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            statuses
        })
    };
    let mut flood = Vec::new();
    for task in tasks {
        flood.extend(task.await.unwrap());
    }
    (tally(&admin.await.unwrap()), tally(&flood))
}

/// Writes the configuration (and the proxy's secret) and the admin; the configuration's path.
fn make_data(root: &Path, with_secret: bool) -> PathBuf {
    let secret_file = root.join("proxy-secret");
    std::fs::write(&secret_file, SECRET).unwrap();
    let secret_line = if with_secret {
        format!("proxy_secret_file = {secret_file:?}\n")
    } else {
        String::new()
    };
    let config = support::write_config(
        root,
        &format!("[web]\ntrusted_proxies = [\"127.0.0.1\"]\ndoctor_every_secs = 0\n{secret_line}"),
    );
    let settings = Settings::load(&config).unwrap();
    let pool = db::open(&settings.database_path()).unwrap();
    support::add_admin(&mut pool.get().unwrap(), PASSWORD);
    config
}
