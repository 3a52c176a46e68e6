//! The panel under load: 1,000 clubs, 200 releases and 100,000 audit events; `wrk` with 20
//! connections on loopback, signed in, against the clubs page, the audit page (first and a
//! late page) and the dashboard; and the server's resident memory when idle. Needs `wrk`
//! (Debian package). Run with `cargo bench --bench panel`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use clubdeploy::config::Settings;
use clubdeploy::db::{self, audit, clubs, switches};

const CLUBS: usize = 1000;
const RELEASES: usize = 200;
const AUDIT_EVENTS: usize = 100_000;
const PASSWORD: &str = "benchmark password";

mod support;

fn main() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path().canonicalize().unwrap();
    let config = make_data(&root);
    let server = support::Server::start(Path::new(env!("CARGO_BIN_EXE_clubdeploy")), &config);
    let base = server.base.clone();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let cookie = runtime.block_on(login(&base));
    std::thread::sleep(Duration::from_secs(2));
    println!(
        "idle RSS after start and sign-in: {:.1} MB",
        server.rss_mb()
    );
    let late = AUDIT_EVENTS / 50;
    for (name, path) in [
        ("clubs page", "/clubs".to_owned()),
        ("clubs page 10", "/clubs?page=10".to_owned()),
        ("clubs search", "/clubs?q=club-05".to_owned()),
        ("clubs group", "/clubs?group=region-east".to_owned()),
        ("audit page (first)", "/audit".to_owned()),
        ("audit page (late)", format!("/audit?before={late}")),
        ("dashboard", "/".to_owned()),
    ] {
        let bytes = runtime.block_on(page_size(&base, &cookie, &path));
        let out = Command::new("wrk")
            .args(["-t2", "-c20", "-d10s", "--latency", "-H"])
            .arg(format!("Cookie: {cookie}"))
            .arg(format!("{base}{path}"))
            .output()
            .expect("wrk (apt-get install wrk)");
        let text = String::from_utf8_lossy(&out.stdout);
        let pick = |label: &str| {
            text.lines()
                .find(|l| l.trim_start().starts_with(label))
                .map(|l| l.split_whitespace().nth(1).unwrap_or("?").to_owned())
                .unwrap_or_else(|| "?".into())
        };
        let non2xx = text
            .lines()
            .find(|l| l.contains("Non-2xx"))
            .unwrap_or("0 non-2xx")
            .trim()
            .to_owned();
        println!(
            "{name:20} {:>4} KB  p50 {:>8}  p99 {:>8}  {:>9} req/s  ({non2xx})",
            bytes / 1000,
            pick("50%"),
            pick("99%"),
            pick("Requests/sec:")
        );
    }
    std::thread::sleep(Duration::from_secs(2));
    println!("idle RSS after the load: {:.1} MB", server.rss_mb());
}

/// The size of the page's HTML, in bytes.
async fn page_size(base: &str, cookie: &str, path: &str) -> usize {
    let response = reqwest::Client::new()
        .get(format!("{base}{path}"))
        .header("Cookie", cookie)
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    response.bytes().await.unwrap().len()
}

async fn login(base: &str) -> String {
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut page = String::new();
    for _ in 0..100 {
        if let Ok(response) = client.get(format!("{base}/login")).send().await {
            page = response.text().await.unwrap();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let marker = "name=\"csrf\" value=\"";
    let start = page.find(marker).unwrap() + marker.len();
    let csrf = &page[start..start + 64];
    let response = client
        .post(format!("{base}/login"))
        .form(&[
            ("name", "admin"),
            ("password", PASSWORD),
            ("csrf", csrf),
            ("next", "/"),
        ])
        .send()
        .await
        .unwrap();
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|c| c.starts_with("clubdeploy_session="))
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

/// Writes the data set and its configuration; returns the configuration's path.
fn make_data(root: &Path) -> std::path::PathBuf {
    let config = support::write_config(root, "");
    let settings = Settings::load(&config).unwrap();
    let releases_dir = settings.apps()[0].releases_dir.clone();
    let names: Vec<String> = (0..RELEASES)
        .map(|n| {
            let commit = format!("{n:08x}{}", "0".repeat(32));
            let name = format!("v1.{n}-{}", &commit[..8]);
            let dir = releases_dir.join(&name);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(
                dir.join(".clubdeploy-release.json"),
                format!(
                    "{{\"tag\":\"v1.{n}\",\"commit\":\"{commit}\",\
                     \"built_at\":\"2026-11-01T00:00:00Z\",\"files\":5000,\"bytes\":10000000}}"
                ),
            )
            .unwrap();
            name
        })
        .collect();
    let pool = db::open(&settings.database_path()).unwrap();
    let conn = &mut pool.get().unwrap();
    conn.immediate_transaction(|conn| {
        for n in 0..CLUBS {
            let slug = format!("club-{n:04}");
            let webroot = root.join("www").join(&slug).join("htdocs");
            std::fs::create_dir_all(webroot.parent().unwrap()).unwrap();
            let release = &names[n % 7];
            std::os::unix::fs::symlink(releases_dir.join(release), &webroot).unwrap();
            let club = clubs::insert(
                conn,
                &clubs::NewClub {
                    slug: &slug,
                    name: &format!("Club {n}"),
                    url: None,
                    created_at: db::now(),
                },
            )
            .unwrap();
            if n % 5 == 0 {
                clubdeploy::db::groups::join(conn, "region-east", club.id)?;
            }
            clubs::add_webroot(
                conn,
                &clubs::NewWebroot {
                    club_id: club.id,
                    app: "main",
                    path: webroot.to_str().unwrap(),
                    current_release: Some(release),
                    created_at: db::now(),
                    url: None,
                },
            )
            .unwrap();
            diesel::RunQueryDsl::execute(
                diesel::insert_into(db::schema::switches::table).values(switches::NewSwitch {
                    club_id: club.id,
                    app: "main".into(),
                    from_release: Some(names[(n % 7) + 7].clone()),
                    to_release: release.clone(),
                    commit_id: format!("{:08x}{}", n % 7, "0".repeat(32)),
                    kind: clubdeploy::domain::SwitchKind::Deploy,
                    actor: "bench".into(),
                    switched_at: db::now(),
                    job_id: None,
                }),
                conn,
            )?;
        }
        for n in 0..AUDIT_EVENTS {
            let target = format!("club-{:04}", n % CLUBS);
            let details = format!("deploy: from v1.{} to v1.{} (job #{n})", n % 7 + 7, n % 7);
            audit::append(
                conn,
                &audit::Entry::new("bench", "club.switched", "club", &target, &details),
            )?;
        }
        Ok::<_, diesel::result::Error>(())
    })
    .unwrap();
    support::add_admin(conn, PASSWORD);
    config
}
