//! Importing 10,000 clubs from one CSV file into an installation that already has 1,000:
//! every row checked (slug, webroot resolved under webroot_base and read, addresses), then
//! all written in one transaction with an audit row per club. Run with
//! `cargo bench --bench import`.

use std::fmt::Write as _;
use std::time::Instant;

use clubdeploy::config::Settings;
use clubdeploy::db;

const EXISTING: usize = 1_000;
const IMPORTED: usize = 10_000;

mod support;

fn main() {
    let root = tempfile::tempdir().expect("tempdir");
    let root = root.path().canonicalize().unwrap();
    let config = support::write_config(&root, "");
    let settings = Settings::load(&config).unwrap();
    let pool = db::open(&settings.database_path()).unwrap();
    let csv = |range: std::ops::Range<usize>| {
        let mut text = String::from("slug,name,url,webroot\n");
        for n in range {
            writeln!(
                text,
                "club-{n:05},Club {n},https://club-{n:05}.example/,{}/club-{n:05}/htdocs",
                root.join("www").display()
            )
            .unwrap();
        }
        text
    };
    let import = |text: &str| {
        let started = Instant::now();
        let plan =
            clubdeploy::service::import::plan(&settings, &mut pool.get().unwrap(), text.as_bytes())
                .unwrap();
        let planned = started.elapsed();
        clubdeploy::service::import::apply(&mut pool.get().unwrap(), "bench", &plan).unwrap();
        (plan, planned, started.elapsed())
    };
    let (_, _, took) = import(&csv(0..EXISTING));
    println!(
        "importing {EXISTING} clubs into an empty installation: {:.2} s",
        took.as_secs_f64()
    );
    let (plan, planned, took) = import(&csv(EXISTING..EXISTING + IMPORTED));
    assert_eq!(plan.added.len(), IMPORTED);
    println!(
        "importing {IMPORTED} more clubs: {:.2} s ({:.2} s checking every row, {:.2} s writing), \
         {:.2} ms per club",
        took.as_secs_f64(),
        planned.as_secs_f64(),
        (took - planned).as_secs_f64(),
        took.as_secs_f64() * 1000.0 / IMPORTED as f64
    );
    let conn = &mut pool.get().unwrap();
    let verified = db::audit::verify(conn, &settings.anchor_file())
        .unwrap()
        .unwrap();
    println!("audit chain afterwards: {verified}");
}
