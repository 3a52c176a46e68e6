//! End to end on a real Apache + mod_php + OPcache (see `apache.rs`): one cached copy of the
//! code for every club, new code live right after a deploy, no failed request while clubs
//! are switched and old releases pruned, single-club deploys and rollbacks.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use git2::{Repository, Signature};

use crate::apache::{self, Apache};
use crate::helpers::TestEnv;

/// PHP classes per release; each page view compiles (or reuses) all of them.
const CLASSES: usize = 300;
const CLUBS: usize = 30;

/// Who commits and tags the test applications, well before the tests deploy them, as real
/// releases are (2026-01-01): OPcache caches files at once only when they are older than
/// `opcache.file_update_protection`.
fn tagger() -> Signature<'static> {
    Signature::new(
        "Test",
        "test@example.invalid",
        &git2::Time::new(1_767_225_600, 0),
    )
    .unwrap()
}

/// A git repository of a PHP app with tags v1..v3: `index.php` prints its version and
/// `__DIR__` and requires every class; `slow.php` takes 2 s, then includes `late.php`.
fn make_php_repo(path: &std::path::Path) {
    let repo = Repository::init(path).unwrap();
    let sig = tagger();
    let mut parent: Option<git2::Oid> = None;
    for tag in ["v1", "v2", "v3"] {
        let work = repo.workdir().unwrap().to_path_buf();
        std::fs::create_dir_all(work.join("src")).unwrap();
        for n in 0..CLASSES {
            std::fs::write(
                work.join(format!("src/Lib{n}.php")),
                format!(
                    "<?php\nnamespace App;\n\nfinal class Lib{n}\n{{\n    public static function id(): int\n    {{\n        return {n};\n    }}\n}}\n"
                ),
            )
            .unwrap();
        }
        std::fs::write(
            work.join("index.php"),
            format!(
                "<?php\n$sum = 0;\nfor ($i = 0; $i < {CLASSES}; $i++) {{\n    require_once __DIR__ . \"/src/Lib$i.php\";\n    $class = \"App\\\\Lib$i\";\n    $sum += $class::id();\n}}\necho \"version {tag}\\n\" . __DIR__ . \"\\n\" . $sum . \"\\nEND\\n\";\n"
            ),
        )
        .unwrap();
        std::fs::write(
            work.join("slow.php"),
            format!(
                "<?php\nwhile (ob_get_level()) {{ ob_end_flush(); }}\necho \"slow {tag}\\n\";\nflush();\nsleep(2);\nrequire __DIR__ . '/late.php';\necho \"END\\n\";\n"
            ),
        )
        .unwrap();
        std::fs::write(
            work.join("late.php"),
            format!("<?php\necho \"late {tag}\\n\";\n"),
        )
        .unwrap();
        let id = crate::helpers::commit_all_and_tag(&repo, &sig, parent, tag, tag);
        parent = Some(id);
    }
}

/// A test world: 30 clubs on v1 served by their own Apache, clubdeploy reloading it.
struct World {
    // Dropped first: Apache stops before the directory holding its config goes.
    apache: Apache,
    env: TestEnv,
    slugs: Vec<String>,
    client: reqwest::blocking::Client,
}

fn world(keep_releases: usize, grace: u64) -> Option<World> {
    world_with(keep_releases, grace, Setup::Plain)
}

/// How a test world starts besides its 30 clubs on v1.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Setup {
    Plain,
    /// Each club's webroot starts as its own copy of v1 (the method before symlinks), not yet
    /// adopted.
    Legacy,
    /// Every club also runs a second application, `mobile` (see [`make_mobile_repo`]), at
    /// `<club>/mobile`, served as `<slug>-m.test`, on its v1.
    SecondApp,
}

/// Classes of the second application.
const MOBILE_CLASSES: usize = 40;

/// A second PHP application with tags v1 and v2: `index.php` prints "mobile <tag>" and
/// `__DIR__` and requires its classes.
fn make_mobile_repo(path: &std::path::Path) {
    let repo = Repository::init(path).unwrap();
    let sig = tagger();
    let mut parent: Option<git2::Oid> = None;
    for tag in ["v1", "v2"] {
        let work = repo.workdir().unwrap().to_path_buf();
        std::fs::create_dir_all(work.join("lib")).unwrap();
        for n in 0..MOBILE_CLASSES {
            std::fs::write(
                work.join(format!("lib/M{n}.php")),
                format!(
                    "<?php
namespace Mobile;

final class M{n}
{{
    const N = {n};
}}
"
                ),
            )
            .unwrap();
        }
        std::fs::write(
            work.join("index.php"),
            format!(
                "<?php
for ($i = 0; $i < {MOBILE_CLASSES}; $i++) {{
    require_once __DIR__ . \"/lib/M$i.php\";
}}
echo \"mobile {tag}\\n\" . __DIR__ . \"\\nEND\\n\";\n"
            ),
        )
        .unwrap();
        let id = crate::helpers::commit_all_and_tag(&repo, &sig, parent, tag, tag);
        parent = Some(id);
    }
}

/// The same world, set up as `setup` says.
fn world_with(keep_releases: usize, grace: u64, setup: Setup) -> Option<World> {
    let legacy = setup == Setup::Legacy;
    if !apache::available() {
        return None;
    }
    let mut env = TestEnv::new();
    let app = env.root.path().canonicalize().unwrap().join("php-app");
    make_php_repo(&app);
    env.config.repo_url = app.display().to_string();
    env.app = app.clone();
    env.config.keep_releases = keep_releases;
    env.config.prune_grace_secs = grace;
    env.config.settle_ms = 500;
    env.configure();
    let slugs: Vec<String> = (0..CLUBS).map(|n| format!("club{n:02}")).collect();
    let refs: Vec<&str> = slugs.iter().map(String::as_str).collect();
    if legacy {
        for slug in &slugs {
            let copy = env.webroot(slug);
            std::fs::create_dir_all(&copy).unwrap();
            let archive = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "git --git-dir {}/.git archive v1 | tar -x -C {}",
                    app.display(),
                    copy.display()
                ))
                .status()
                .unwrap();
            assert!(archive.success());
        }
        env.add_clubs(&refs);
    } else if setup == Setup::SecondApp {
        let mobile = env.root.path().canonicalize().unwrap().join("mobile-app");
        make_mobile_repo(&mobile);
        env.config
            .apps
            .push(("mobile".into(), mobile.display().to_string()));
        env.configure();
        for slug in &slugs {
            let main = format!("main={}", env.webroot(slug).display());
            let mobile = format!("mobile={}", mobile_webroot(&env, slug).display());
            env.ok(&[
                "club",
                "add",
                slug,
                "--webroot",
                &main,
                "--webroot",
                &mobile,
            ]);
        }
        env.ok(&["deploy", "v1", "--app", "main", "--all"]);
        env.ok(&["deploy", "v1", "--app", "mobile", "--all"]);
    } else {
        env.add_clubs(&refs);
        // The first deploy needs no Apache: its reload only logs.
        env.ok(&["deploy", "v1", "--all"]);
    }
    let mut clubs: Vec<(String, std::path::PathBuf)> =
        slugs.iter().map(|s| (s.clone(), env.webroot(s))).collect();
    if setup == Setup::SecondApp {
        clubs.extend(
            slugs
                .iter()
                .map(|s| (format!("{s}-m"), mobile_webroot(&env, s))),
        );
    }
    let apache = Apache::start(env.root.path(), &clubs);
    env.config.configtest = apache.configtest();
    env.config.reload = apache.graceful();
    env.configure();
    // A new connection per request: a kept-alive connection to a child from before a graceful
    // reload gets one more answer from that child (old code) before it closes.
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(20))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    Some(World {
        env,
        apache,
        slugs,
        client,
    })
}

/// Clients requesting every club's page without pause, counting answers that are not a whole
/// page of some version; bounded to 20,000 requests each and two minutes.
struct Load {
    stop: Arc<AtomicBool>,
    clients: Vec<std::thread::JoinHandle<()>>,
    ok: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    failures: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Load {
    fn start(world: &Arc<World>, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
        let clients = (0..clients)
            .map(|worker| {
                let (world, stop, ok, failed, failures) = (
                    world.clone(),
                    stop.clone(),
                    ok.clone(),
                    failed.clone(),
                    failures.clone(),
                );
                std::thread::spawn(move || {
                    let deadline = Instant::now() + Duration::from_secs(120);
                    let mut n = worker;
                    for _ in 0..20_000 {
                        if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                            break;
                        }
                        let slug = &world.slugs[n % CLUBS];
                        n += 7;
                        let (status, body) = world.get(&format!("{slug}.test"), "/");
                        let good = status == 200
                            && body.starts_with("version v")
                            && body.ends_with("\nEND\n");
                        if good {
                            ok.fetch_add(1, Ordering::Relaxed);
                        } else {
                            failed.fetch_add(1, Ordering::Relaxed);
                            failures
                                .lock()
                                .unwrap()
                                .push(format!("{slug}: {status} {body:?}"));
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            clients,
            ok,
            failed,
            failures,
        }
    }

    /// Stops the clients; returns (good answers, failed answers, the failures).
    fn finish(self) -> (usize, usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for client in self.clients {
            client.join().unwrap();
        }
        let failures = self.failures.lock().unwrap().clone();
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            failures,
        )
    }
}

/// `<www>/<slug>/mobile`: a club's webroot of the second application.
fn mobile_webroot(env: &TestEnv, slug: &str) -> std::path::PathBuf {
    env.www.join(slug).join("mobile")
}

impl World {
    fn get(&self, host: &str, path: &str) -> (u16, String) {
        let response = self
            .client
            .get(format!("http://127.0.0.1:{}{path}", self.apache.port))
            .header("Host", host)
            .send()
            .unwrap();
        (
            response.status().as_u16(),
            response.text().unwrap_or_default(),
        )
    }

    /// What a club serves: (version line, __DIR__ line).
    fn serves(&self, slug: &str) -> (String, String) {
        self.serves_host(&format!("{slug}.test"))
    }

    /// What a virtual host serves: (first line, __DIR__ line).
    fn serves_host(&self, host: &str) -> (String, String) {
        let slug = host;
        let (status, body) = self.get(host, "/");
        assert_eq!(status, 200, "{slug}: {body}\n{}", self.apache.error_log());
        let mut lines = body.lines();
        (
            lines.next().unwrap_or_default().to_owned(),
            lines.next().unwrap_or_default().to_owned(),
        )
    }

    fn opcache(&self) -> serde_json::Value {
        let (status, body) = self.get("status.test", "/");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// The scripts OPcache has cached (asking again while a reading comes without them).
    fn cached_scripts(&self) -> Vec<String> {
        let mut status = self.opcache();
        for _ in 0..10 {
            if status["scripts"].is_object() {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
            status = self.opcache();
        }
        status["scripts"]
            .as_object()
            .unwrap_or_else(|| panic!("no scripts in the status: {:.600}", status.to_string()))
            .keys()
            .cloned()
            .collect()
    }

    fn deploy_all(&self, tag: &str) -> Duration {
        let started = Instant::now();
        self.env.ok(&["deploy", tag, "--all"]);
        started.elapsed()
    }
}

#[test]
fn thirty_clubs_on_one_release_share_one_cached_copy_of_the_code() {
    // The release was built a moment ago, but its files carry the commit's time: OPcache
    // caches them at once (it skips files younger than opcache.file_update_protection, 2 s).
    let Some(world) = world(2, 1) else { return };
    for _ in 0..3 {
        for slug in &world.slugs {
            let (version, dir) = world.serves(slug);
            assert_eq!(version, "version v1");
            assert_eq!(
                dir,
                world
                    .env
                    .releases_dir()
                    .join(world.env.release_name("v1"))
                    .display()
                    .to_string()
            );
        }
    }
    // OPcache's status lists the cached scripts; ask again if a reading comes without them.
    let mut status = world.opcache();
    for _ in 0..10 {
        if status["scripts"].is_object() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        status = world.opcache();
    }
    let cached = status["opcache_statistics"]["num_cached_scripts"]
        .as_u64()
        .unwrap();
    let used = status["memory_usage"]["used_memory"].as_u64().unwrap();
    let scripts: HashSet<&str> = status["scripts"]
        .as_object()
        .unwrap_or_else(|| panic!("no scripts in the status: {:.600}", status.to_string()))
        .keys()
        .map(String::as_str)
        .collect();
    eprintln!("E2E: 30 clubs on v1: {cached} cached scripts, used_memory {used} bytes");
    // index.php and the classes of one release, cached once by their real path (plus the
    // status script, once it has been cached itself): not 30 copies.
    let release = world.env.releases_dir().join(world.env.release_name("v1"));
    let in_release = scripts
        .iter()
        .filter(|s| s.starts_with(release.to_str().unwrap()))
        .count();
    assert_eq!(
        in_release,
        1 + CLASSES,
        "{cached} cached: {:.300?} {}",
        scripts.iter().take(3).collect::<Vec<_>>(),
        status["opcache_statistics"]
    );
    let status_script = world
        .env
        .root
        .path()
        .canonicalize()
        .unwrap()
        .join("apache/status/index.php");
    let others: Vec<&&str> = scripts
        .iter()
        .filter(|s| {
            !s.starts_with(release.to_str().unwrap()) && **s != status_script.to_str().unwrap()
        })
        .collect();
    assert!(others.is_empty(), "cached outside the release: {others:?}");
    assert!(
        cached as usize <= 1 + CLASSES + 1,
        "{cached} scripts cached"
    );
}

#[test]
fn every_club_serves_the_new_release_as_soon_as_the_deploy_ends() {
    let Some(world) = world(2, 1) else { return };
    for slug in &world.slugs {
        assert_eq!(world.serves(slug).0, "version v1");
    }
    let took = world.deploy_all("v2");
    eprintln!(
        "E2E: deploy of v2 to 30 clubs took {:.2} s",
        took.as_secs_f64()
    );
    let v2 = world.env.releases_dir().join(world.env.release_name("v2"));
    for slug in &world.slugs {
        let (version, dir) = world.serves(slug);
        assert_eq!(version, "version v2", "{slug} still served old code");
        assert_eq!(dir, v2.display().to_string());
    }
}

#[test]
fn no_request_fails_while_all_clubs_are_deployed_and_pruned_three_times() {
    let Some(world) = world(0, 3) else { return };
    let world = Arc::new(world);
    let load = Load::start(&world, 4);
    // A slow request (2 s, then an include) that PHP has started running before the first
    // deploy begins: its headers have arrived.
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let slow = {
        let port = world.apache.port;
        std::thread::spawn(move || {
            let response = reqwest::blocking::Client::new()
                .get(format!("http://127.0.0.1:{port}/slow.php"))
                .header("Host", "club00.test")
                .timeout(Duration::from_secs(30))
                .send()
                .unwrap();
            started_tx.send(()).unwrap();
            (
                response.status().as_u16(),
                response.text().unwrap_or_default(),
            )
        })
    };
    started_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the slow request started");
    let mut took = Vec::new();
    for tag in ["v2", "v3", "v1"] {
        took.push(world.deploy_all(tag));
    }
    let (ok, failed, failures) = load.finish();
    let (slow_status, slow_body) = slow.join().unwrap();
    eprintln!(
        "E2E: load during v2, v3, v1 deploys: {} requests, {failed} failed; deploys took {:?}",
        ok + failed,
        took
    );
    assert_eq!(failed, 0, "{failures:?}");
    assert!(ok >= 1000, "the load generator barely ran: {ok}");
    assert_eq!(slow_status, 200, "{slow_body}");
    assert_eq!(slow_body, "slow v1\nlate v1\nEND\n");
    // Prune, with keep_releases = 0: only the release everyone runs is left.
    assert_eq!(
        world.env.release_entries(),
        vec![world.env.release_name("v1")]
    );
}

#[test]
fn a_single_club_deploy_and_its_rollback_through_the_panel_change_only_that_club() {
    let Some(world) = world(2, 1) else { return };
    world.env.ok(&["deploy", "v2", "--club", "club05"]);
    assert_eq!(world.serves("club05").0, "version v2");
    for slug in world.slugs.iter().filter(|s| *s != "club05") {
        assert_eq!(world.serves(slug).0, "version v1", "{slug} changed");
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let app = crate::web::TestApp::spawn_on(&world.env).await;
        let admin = app.login("admin").await;
        let v1 = world.env.release_name("v1");
        let confirm = app.page(&admin, "/clubs/club05/rollback").await;
        assert!(confirm.contains(&v1), "{confirm}");
        let queued = app
            .post(&admin, "/clubs/club05/rollback", &[("to", &v1)])
            .await;
        let id = crate::web::job_id(&queued);
        assert_eq!(app.job_finished(id).await, "succeeded");
    });
    assert_eq!(world.serves("club05").0, "version v1");
    // Two releases are kept for rollback (keep_releases = 2): v1 runs, v2 is kept.
    assert_eq!(
        world.env.release_entries(),
        vec![world.env.release_name("v1"), world.env.release_name("v2")]
    );
}

#[test]
fn adopting_thirty_legacy_copies_under_load_fails_no_request() {
    let Some(world) = world_with(2, 0, Setup::Legacy) else {
        return;
    };
    let world = Arc::new(world);
    // Each club serves its own copy: thirty copies of the code.
    let (_, dir) = world.serves("club00");
    assert!(dir.ends_with("/club00/htdocs"), "{dir}");
    let load = Load::start(&world, 4);
    let started = Instant::now();
    for slug in &world.slugs {
        world.env.ok(&["adopt", slug, "--tag", "v2"]);
    }
    let took = started.elapsed();
    let (ok, failed, failures) = load.finish();
    eprintln!(
        "E2E: load while adopting {CLUBS} legacy copies: {} requests, {failed} failed; the \
         adoptions took {took:?}",
        ok + failed
    );
    assert_eq!(failed, 0, "{failures:?}");
    assert!(ok >= 500, "the load generator barely ran: {ok}");
    // Every club now serves the one shared release; every copy is kept whole.
    let release = world.env.releases_dir().join(world.env.release_name("v2"));
    for slug in &world.slugs {
        let (version, dir) = world.serves(slug);
        assert_eq!(version, "version v2", "{slug}");
        assert_eq!(std::path::Path::new(&dir), release.as_path(), "{slug}");
    }
    let kept = std::fs::read_dir(world.env.data.join("legacy"))
        .unwrap()
        .count();
    assert_eq!(kept, CLUBS);
}

#[test]
fn a_second_application_is_cached_once_too_and_deploys_without_touching_the_first() {
    let Some(world) = world_with(2, 1, Setup::SecondApp) else {
        return;
    };
    let main_v1 = world.env.releases_dir().join(world.env.release_name("v1"));
    let mobile_releases = world.env.app_releases_dir("mobile");
    let mobile_dir = |world: &World, slug: &str| {
        mobile_webroot(&world.env, slug)
            .canonicalize()
            .unwrap()
            .display()
            .to_string()
    };
    let mobile_v1 = mobile_dir(&world, "club00");
    assert!(
        mobile_v1.starts_with(mobile_releases.to_str().unwrap()),
        "{mobile_v1}"
    );
    for _ in 0..2 {
        for slug in &world.slugs {
            assert_eq!(
                world.serves(slug),
                ("version v1".into(), main_v1.display().to_string())
            );
            assert_eq!(
                world.serves_host(&format!("{slug}-m.test")),
                ("mobile v1".into(), mobile_v1.clone())
            );
        }
    }
    // 30 clubs x 2 applications on one release each: two releases cached once, not sixty.
    let scripts = world.cached_scripts();
    let under = |dir: &str| scripts.iter().filter(|s| s.starts_with(dir)).count();
    let in_main = under(main_v1.to_str().unwrap());
    let in_mobile = under(&mobile_v1);
    eprintln!(
        "E2E: 30 clubs x 2 applications: {} cached scripts ({in_main} of main v1, {in_mobile} \
         of mobile v1)",
        scripts.len()
    );
    assert_eq!(in_main, 1 + CLASSES);
    assert_eq!(in_mobile, 1 + MOBILE_CLASSES);
    assert!(
        scripts.len() <= in_main + in_mobile + 1,
        "{} cached",
        scripts.len()
    );

    // A deploy of mobile to every club changes every mobile page and no main page.
    world.env.ok(&["deploy", "v2", "--app", "mobile", "--all"]);
    let mobile_v2 = mobile_dir(&world, "club00");
    assert_ne!(mobile_v2, mobile_v1);
    for slug in &world.slugs {
        assert_eq!(
            world.serves_host(&format!("{slug}-m.test")),
            ("mobile v2".into(), mobile_v2.clone()),
            "{slug}"
        );
        assert_eq!(
            world.serves(slug),
            ("version v1".into(), main_v1.display().to_string()),
            "{slug}'s main pages changed"
        );
    }
    // A deploy of main to one club leaves every mobile page as it was.
    world
        .env
        .ok(&["deploy", "v2", "--app", "main", "--club", "club05"]);
    assert_eq!(world.serves("club05").0, "version v2");
    for slug in &world.slugs {
        assert_eq!(world.serves_host(&format!("{slug}-m.test")).0, "mobile v2");
    }
    // Each application's prune kept its own releases: main v1 still serves, mobile's v1 is
    // kept for rollback (keep_releases = 2).
    assert_eq!(crate::helpers::entries(&mobile_releases).len(), 2);
}
