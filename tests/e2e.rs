//! End to end on a real Apache + mod_php + OPcache (see `apache.rs`): one cached copy of the
//! code for every club, new code live right after a deploy, no failed request while clubs
//! are switched and old releases pruned, single-club deploys and rollbacks.

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
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
    // v9: a release whose page dies with a PHP fatal error (HTTP 500).
    let work = repo.workdir().unwrap().to_path_buf();
    std::fs::write(
        work.join("index.php"),
        "<?php
require __DIR__ . '/src/Lib0.php';
no_such_function();
echo \"version v9\\nEND\\n\";\n",
    )
    .unwrap();
    crate::helpers::commit_all_and_tag(&repo, &sig, parent, "v9", "v9: broken");
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
    /// The application is [`make_large_repo`]'s 5,000 files.
    LargeTree,
    /// PHP's OPcache has the least memory it can have (8 MB).
    SmallOpcache,
    /// OPcache never checks a cached file again (`opcache.validate_timestamps=0`).
    NoRevalidate,
}

/// Files of [`make_large_repo`]'s application.
const LARGE_FILES: usize = 5000;

/// An application of 5,000 PHP files of about 2 KB in 50 directories (tag v1), then 10 of
/// them changed (tag v2); `index.php` prints its version and `__DIR__`.
fn make_large_repo(path: &std::path::Path) {
    let repo = Repository::init(path).unwrap();
    let sig = tagger();
    let mut parent = None;
    for tag in ["v1", "v2"] {
        for n in 0..LARGE_FILES {
            let changed = tag == "v2" && n < 10;
            let file = path.join(format!("src/dir-{}/File{n}.php", n % 50));
            if tag == "v2" && !changed {
                continue;
            }
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            let body = (0..40)
                .map(|m| {
                    format!(
                        "    public function m{m}(): int {{ return {}{n} + {m}; }}\n",
                        if changed { "1 + " } else { "" }
                    )
                })
                .collect::<String>();
            std::fs::write(file, format!("<?php\nfinal class File{n}\n{{\n{body}}}\n")).unwrap();
        }
        std::fs::write(
            path.join("index.php"),
            format!("<?php\necho \"version {tag}\\n\" . __DIR__ . \"\\nEND\\n\";\n"),
        )
        .unwrap();
        parent = Some(crate::helpers::commit_all_and_tag(
            &repo, &sig, parent, tag, tag,
        ));
    }
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
    if setup == Setup::LargeTree {
        make_large_repo(&app);
    } else {
        make_php_repo(&app);
    }
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
    let ini = match setup {
        Setup::SmallOpcache => "opcache.memory_consumption=8\nopcache.interned_strings_buffer=1\n",
        Setup::NoRevalidate => "opcache.validate_timestamps=0\n",
        _ => "",
    };
    let apache = Apache::start_with_php(env.root.path(), &clubs, ini);
    env.config.configtest = apache.configtest();
    env.config.reload = apache.graceful();
    env.config.vhosts = apache.vhosts();
    // Health checks go to this Apache by each club's own name (no DNS for *.test here).
    env.config.tables.push((
        "health".into(),
        vec![
            "connect_to = \"127.0.0.1\"".into(),
            "timeout_secs = 10".into(),
        ],
    ));
    env.configure();
    for (host, _) in &clubs {
        let url = format!("http://{host}.test:{}/", apache.port);
        match host.strip_suffix("-m") {
            Some(slug) => env.ok(&["club", "url", slug, &url, "--app", "mobile"]),
            None if setup == Setup::SecondApp => {
                env.ok(&["club", "url", host, &url, "--app", "main"])
            }
            None => env.ok(&["club", "url", host, &url]),
        };
    }
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
    // Prune, with keep_releases = 0: only the release everyone runs and the one they would
    // roll back to (v3) are left.
    let mut left = vec![world.env.release_name("v1"), world.env.release_name("v3")];
    left.sort();
    assert_eq!(world.env.release_entries(), left);
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
        let app = crate::web::TestApp::spawn_driven_on(&world.env).await;
        let admin = app.login("admin").await;
        // Proven healthy through Apache after its deploy: the clubs list says so and finds
        // it by health and by version.
        let healthy = app.page(&admin, "/clubs?health=healthy&release=v2").await;
        assert!(healthy.contains("id=\"club-club05\""), "{healthy}");
        assert!(
            healthy.contains("class=\"health-healthy\">Healthy"),
            "{healthy}"
        );
        assert!(healthy.contains(&format!("1 of {} clubs match", world.slugs.len())));
        let failed = app.page(&admin, "/clubs?health=failed").await;
        assert!(failed.contains("No club matches"), "{failed}");
        let v1 = world.env.release_name("v1");
        let confirm = app.page(&admin, "/clubs/club05/rollback").await;
        assert!(confirm.contains(&v1), "{confirm}");
        let queued = app
            .post(&admin, "/clubs/club05/rollback", &[("to", &v1)])
            .await;
        let id = crate::web::job_id(&queued);
        assert_eq!(app.run_job(id).await, "succeeded");
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

impl World {
    /// Each club's link, as (target, inode): a link rewritten is a new inode.
    fn links(&self) -> Vec<(std::path::PathBuf, u64)> {
        use std::os::unix::fs::MetadataExt;
        self.slugs
            .iter()
            .map(|slug| {
                let path = self.env.webroot(slug);
                let inode = std::fs::symlink_metadata(&path).unwrap().ino();
                (std::fs::read_link(&path).unwrap(), inode)
            })
            .collect()
    }

    /// The log of job `id`, as `clubdeploy job` prints it.
    fn job_log(&self, id: usize) -> String {
        self.env.ok(&["job", &id.to_string()])
    }
}

#[test]
fn a_broken_release_stops_at_its_canary_and_every_other_club_is_untouched() {
    let Some(world) = world(2, 1) else { return };
    let before = world.links();
    let error = world
        .env
        .fails(&["deploy", "v9", "--all", "--canary", "club07"]);
    let v1 = world.env.release_name("v1");
    assert!(
        error.contains(&format!(
            "club07's site answered with an error (HTTP 500), so it was put back on \
             {v1}; club00, club01, club02 and 26 more were not touched"
        )),
        "{error}"
    );
    // The canary is back on v1; every other club's link is the very same link.
    assert_eq!(world.serves("club07").0, "version v1");
    let after = world.links();
    for (n, slug) in world.slugs.iter().enumerate() {
        if slug != "club07" {
            assert_eq!(after[n], before[n], "{slug} was touched");
        }
    }
    let log = world.job_log(2);
    assert!(log.contains("wave 1 of 2 (canary): club07"), "{log}");
    assert!(log.contains("HTTP 500"), "{log}");
    assert!(log.contains("club club07 FAILED its health check"), "{log}");
    // v9 is marked bad for club07: its next rollback skips it.
    let status: serde_json::Value =
        serde_json::from_str(&world.env.ok(&["job", "2", "--json"])).unwrap();
    assert_eq!(status["status"], "failed");
}

#[test]
fn without_a_canary_every_club_that_fails_goes_back() {
    let Some(world) = world(2, 1) else { return };
    let error = world
        .env
        .fails(&["deploy", "v9", "--all", "--canary", "none"]);
    let v1 = world.env.release_name("v1");
    assert!(
        error.contains(&format!(
            "30 of 30 clubs failed their health check: the sites of club00, club01, \
             club02 and 27 more answered with an error (HTTP 500), so they were put back on {v1}"
        )),
        "{error}"
    );
    for slug in &world.slugs {
        assert_eq!(world.serves(slug).0, "version v1", "{slug}");
    }
    let log = world.job_log(2);
    assert!(log.contains("HTTP 500"), "{log}");
    // The put-back clubs are checked again, through the probe of v1.
    assert!(
        log.contains(&format!("club club00 is live on {v1}")),
        "{log}"
    );
}

#[test]
fn a_good_release_goes_canary_first_then_everywhere_and_is_live_when_the_job_ends() {
    let Some(world) = world(2, 1) else { return };
    let started = Instant::now();
    world
        .env
        .ok(&["deploy", "v2", "--all", "--canary", "club03"]);
    let took = started.elapsed();
    // The moment the job ends, every club serves the new release: no grace period needed.
    let v2 = world.env.releases_dir().join(world.env.release_name("v2"));
    for slug in &world.slugs {
        let (version, dir) = world.serves(slug);
        assert_eq!(version, "version v2", "{slug}");
        assert_eq!(dir, v2.display().to_string());
    }
    let log = world.job_log(2);
    assert!(log.contains("wave 1 of 2 (canary): club03"), "{log}");
    assert!(
        log.contains("wave 2 of 2: club00, club01, club02, club04"),
        "{log}"
    );
    assert_eq!(log.matches(" is live on ").count(), 30, "{log}");
    // Click-to-live of a release already built (v3 is built by a deploy to one club first),
    // in one wave: command start until every club is proven on it.
    world.env.ok(&["deploy", "v3", "--club", "club00"]);
    let started = Instant::now();
    world.env.ok(&["deploy", "v3", "--all", "--canary", "none"]);
    let live = started.elapsed();
    let v3 = world.env.releases_dir().join(world.env.release_name("v3"));
    for slug in &world.slugs {
        assert_eq!(world.serves(slug).1, v3.display().to_string(), "{slug}");
    }
    eprintln!(
        "E2E: click-to-live on 30 clubs, every club proven: v3 already built, one wave {:.3} s; \
         v2 built by the deploy (301 files), canary first then the rest {:.3} s",
        live.as_secs_f64(),
        took.as_secs_f64()
    );
}

#[test]
fn the_probe_answers_only_to_its_sites_token_and_says_what_opcache_says() {
    let Some(world) = world(2, 1) else { return };
    let ask = |path: &str, host: &str, credential: Option<&str>| {
        let mut request = world
            .client
            .get(format!("http://127.0.0.1:{}/{path}", world.apache.port))
            .header("Host", host);
        if let Some(credential) = credential {
            request = request.header("X-Clubdeploy-Probe", credential);
        }
        let response = request.send().unwrap();
        let mut headers: Vec<String> = response
            .headers()
            .iter()
            .filter(|(name, _)| *name != "date")
            .map(|(name, value)| format!("{name}: {}", value.to_str().unwrap()))
            .collect();
        headers.sort();
        (
            response.status().as_u16(),
            headers,
            response.text().unwrap(),
        )
    };
    let probe = |credential: Option<&str>| {
        let (status, _, body) = ask(".clubdeploy/probe.php", "club00.test", credential);
        (status, body)
    };
    let data = world.env.data.clone();
    let key = clubdeploy::pipeline::probe::ProbeKey::load_or_create(&data).unwrap();
    let secret = key.secret().to_owned();
    // Without club00's own token the probe answers what Apache answers for a file that is
    // not there, header for header and byte for byte: nothing tells a probe is there.
    let missing = ask(".clubdeploy/missing.php", "club00.test", None);
    assert_eq!(missing.0, 404, "{missing:?}");
    let club01 = key.token_for("club01.test");
    for wrong in [
        None,
        Some("not-a-token"),
        Some(secret.as_str()),
        Some(&club01),
    ] {
        assert_eq!(
            ask(".clubdeploy/probe.php", "club00.test", wrong),
            missing,
            "{wrong:?}"
        );
    }
    // club01's token opens club01's probe only.
    assert_eq!(
        ask(".clubdeploy/probe.php", "club01.test", Some(&club01)).0,
        200
    );
    let token = key.token_for("club00.test");
    let secret = token.as_str();
    // The release holds the public key alone: neither the secret nor a token.
    let release = world.env.releases_dir().join(world.env.release_name("v1"));
    let script = std::fs::read_to_string(release.join(".clubdeploy/probe.php")).unwrap();
    assert!(!script.contains(key.secret()) && !script.contains(secret));
    assert!(script.contains(&key.public_key()));
    // Both scripts compiled and cached, then read back to back: the same figures.
    for _ in 0..2 {
        probe(Some(secret));
        world.opcache();
    }
    let (status, body) = probe(Some(secret));
    let php = world.opcache();
    assert_eq!(status, 200, "{body}");
    let ours: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ours["release_dir"], release.display().to_string());
    for key in ["num_cached_scripts", "max_cached_keys", "oom_restarts"] {
        assert_eq!(
            ours["opcache"]["opcache_statistics"][key], php["opcache_statistics"][key],
            "{key}"
        );
    }
    for key in ["used_memory", "free_memory", "wasted_memory"] {
        assert_eq!(
            ours["opcache"]["memory_usage"][key], php["memory_usage"][key],
            "{key}"
        );
    }
}

#[test]
fn opcache_insight_shows_what_is_cached_per_release_and_warns_of_dead_releases() {
    let Some(mut world) = world(2, 0) else { return };
    // Without reloads, the release every club left stays in the cache: dead, never freed.
    world.env.config.policy = "never";
    world.env.configure();
    for slug in &world.slugs {
        assert_eq!(world.serves(slug).0, "version v1");
    }
    world.env.ok(&["deploy", "v2", "--all"]);
    let insight: serde_json::Value =
        serde_json::from_str(&world.env.ok(&["opcache", "--json"])).unwrap();
    for key in [
        "used_memory",
        "free_memory",
        "wasted_memory",
        "cached_scripts",
        "max_cached_keys",
        "hit_rate",
        "oom_restarts",
        "releases",
    ] {
        assert!(!insight[key].is_null(), "{key} missing: {insight}");
    }
    let v1 = world.env.releases_dir().join(world.env.release_name("v1"));
    let releases = insight["releases"].as_array().unwrap();
    let cached_v1 = releases
        .iter()
        .find(|r| r["dir"] == v1.display().to_string())
        .unwrap_or_else(|| panic!("v1 not listed: {insight}"));
    // index.php and the classes; and the probe when the request for it still resolved the
    // webroot to v1 (PHP's realpath cache: nothing reloaded).
    let scripts = cached_v1["scripts"].as_u64().unwrap();
    assert!(
        scripts == 1 + CLASSES as u64 || scripts == 2 + CLASSES as u64,
        "{cached_v1}"
    );
    assert_eq!(cached_v1["in_use"], false);
    let warnings = insight["warnings"].to_string();
    assert!(
        warnings.contains("1 release is cached that no club runs"),
        "{warnings}"
    );
    let text = world.env.ok(&["opcache"]);
    assert!(text.contains("no (dead until a reload)"), "{text}");
    // Each cached release's line names its application.
    let v1_name = world.env.release_name("v1");
    assert!(
        text.lines()
            .any(|l| l.starts_with("main ") && l.contains(&v1_name)),
        "{text}"
    );

    // The panel shows the same, and the dashboard says it where staff will see it.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let app = crate::web::TestApp::spawn_on(&world.env).await;
        let viewer = app.login("viewer").await;
        let page = app.page(&viewer, "/opcache").await;
        assert!(
            page.contains("cached but dead until Apache is reloaded"),
            "{page}"
        );
        assert!(page.contains(&world.env.release_name("v1")), "{page}");
        let dashboard = app.page(&viewer, "/").await;
        assert!(
            dashboard.contains("1 release is cached that no club runs"),
            "{dashboard}"
        );
        // And before the next deploy is confirmed.
        let admin = app.login("admin").await;
        let confirm = app
            .confirm_text(&admin, &[("tag", "v3"), ("target", "all")])
            .await;
        assert!(
            confirm.contains("1 release is cached that no club runs"),
            "{confirm}"
        );
    });
}

#[test]
fn on_failure_stop_leaves_the_clubs_ignore_reports_and_expect_text_is_checked() {
    let Some(mut world) = world(2, 1) else { return };
    let set_health = |world: &mut World, lines: &[&str]| {
        let health = world
            .env
            .config
            .tables
            .iter_mut()
            .find(|(name, _)| name == "health")
            .unwrap();
        health.1.truncate(2);
        health.1.extend(lines.iter().map(|l| l.to_string()));
        world.env.configure();
    };
    let v9 = world.env.release_name("v9");
    set_health(&mut world, &["on_failure = \"stop\""]);
    let error = world.env.fails(&["deploy", "v9", "--club", "club01"]);
    assert!(
        error.contains(&format!(
            "club01's site answered with an error (HTTP 500), and it was left on {v9} \
             (on_failure = \"stop\")"
        )),
        "{error}"
    );
    assert_eq!(world.env.release_of("club01"), v9);
    set_health(&mut world, &["on_failure = \"ignore\""]);
    let out = world.env.ok(&["deploy", "v9", "--club", "club02"]);
    assert!(
        out.contains("1 club failed its health check (ignored: on_failure = \"ignore\")"),
        "{out}"
    );
    // The page must contain expect_text: v2's does, "version v7" is nowhere.
    set_health(&mut world, &["expect_text = \"version v2\""]);
    world.env.ok(&["deploy", "v2", "--club", "club03"]);
    set_health(&mut world, &["expect_text = \"version v7\""]);
    let error = world.env.fails(&["deploy", "v3", "--club", "club04"]);
    assert!(error.contains("put back on"), "{error}");
    let log = world.job_log(5);
    assert!(log.contains("without \"version v7\""), "{log}");
    assert_eq!(world.serves("club04").0, "version v1");
    // With probes off, a release gets none, and health checks the page alone.
    set_health(&mut world, &[]);
    world
        .env
        .config
        .tables
        .push(("probe".into(), vec!["enabled = false".into()]));
    world.env.configure();
    std::fs::remove_dir_all(world.env.releases_dir().join(world.env.release_name("v3"))).unwrap();
    let out = world.env.ok(&["deploy", "v3", "--club", "club05"]);
    assert!(out.contains("club club05: its page answers"), "{out}");
    assert!(!out.contains(" is live on "), "{out}");
    let v3 = world.env.releases_dir().join(world.env.release_name("v3"));
    assert!(!v3.join(".clubdeploy").exists());
    assert_eq!(world.serves("club05").0, "version v3");
}

#[test]
fn click_to_live_of_the_next_tag_of_a_5000_file_application_with_its_build() {
    let Some(world) = world_with(2, 1, Setup::LargeTree) else {
        return;
    };
    // v1 was built from nothing before Apache started; v2 changes 10 files: built (the other
    // files linked from v1), switched on 30 clubs, reloaded, every club proven on it.
    let started = Instant::now();
    let out = world.env.ok(&["deploy", "v2", "--all", "--canary", "none"]);
    let took = started.elapsed();
    assert!(out.contains(&format!("{} files", LARGE_FILES + 1)), "{out}");
    let v2 = world.env.releases_dir().join(world.env.release_name("v2"));
    for slug in &world.slugs {
        assert_eq!(
            world.serves(slug),
            ("version v2".into(), v2.display().to_string()),
            "{slug}"
        );
    }
    eprintln!(
        "E2E: click-to-live with a fresh build of the next tag of a {LARGE_FILES}-file \
         application (10 files changed) on 30 clubs, every club proven: {:.3} s",
        took.as_secs_f64()
    );
}

/// `clubdeploy doctor` with its exit status and report (stdout).
fn doctor(world: &World) -> (i32, String) {
    let out = world.env.run(&["doctor"]);
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn the_doctor_passes_a_correct_set_up_and_names_each_fault_with_its_fix() {
    let Some(world) = world(2, 1) else { return };
    // Deployed through Apache: the release's probe reports PHP's settings.
    world.env.ok(&["deploy", "v2", "--all", "--canary", "none"]);
    let (code, report) = doctor(&world);
    assert_eq!(code, 0, "{report}");
    assert!(report.ends_with("0 problems, 0 warnings\n"), "{report}");
    for line in [
        "30 webroots are served by a virtual host that follows the links",
        "the configuration test passes",
        "OPcache has room for",
        // 300 classes, the page, the slow and late pages, and the probe.
        "scripts; a release has 304 PHP files",
        "realpath_cache_ttl is",
        "the repository of main answers (4 tags)",
        "30 webroots as clubdeploy left them",
    ] {
        assert!(report.contains(line), "{line:?} missing:\n{report}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&world.env.ok(&["doctor", "--json"])).unwrap();
    let levels: Vec<&str> = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["level"].as_str().unwrap())
        .collect();
    assert!(levels.iter().all(|l| *l == "ok"), "{json}");

    // A club whose webroot no virtual host serves, and a club folder anyone may write to.
    let stray = world.env.webroot("stray");
    world
        .env
        .ok(&["club", "add", "stray", "--webroot", stray.to_str().unwrap()]);
    world.env.ok(&["deploy", "v2", "--club", "stray"]);
    let folder = world.env.www.join("club03");
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (code, report) = doctor(&world);
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(code, 1, "{report}");
    assert!(report.ends_with("2 problems, 0 warnings\n"), "{report}");
    assert!(
        report.contains(&format!(
            "problem  apache club stray's webroot {} is the DocumentRoot of no virtual host",
            stray.display()
        )),
        "{report}"
    );
    assert!(
        report.contains(&format!(
            "fix: in the club's <VirtualHost>, set DocumentRoot {}",
            stray.display()
        )),
        "{report}"
    );
    assert!(
        report.contains(&format!(
            "problem  files  club club03's folder {} may be written by others (mode 777)",
            folder.display()
        )),
        "{report}"
    );
    assert!(
        report.contains(&format!("fix: chmod go-w {}", folder.display())),
        "{report}"
    );

    // A configuration that lets a release's .htaccess set PHP's settings (auto_prepend_file
    // would run before the probe): one warning for all the webroots it lets.
    let conf = std::fs::read_to_string(&world.apache.conf).unwrap();
    std::fs::write(
        &world.apache.conf,
        format!(
            "{conf}<Directory {:?}>\n  AllowOverride FileInfo Options=Indexes\n</Directory>\n",
            world.env.www
        ),
    )
    .unwrap();
    let (_, report) = doctor(&world);
    std::fs::write(&world.apache.conf, conf).unwrap();
    assert!(report.ends_with("1 problem, 1 warning\n"), "{report}");
    assert!(
        report.contains(&format!(
            "warning  apache club club00's webroot {} and 29 more: Apache lets a release's \
             .htaccess change PHP's settings there (AllowOverride FileInfo Options=Indexes)",
            world.env.webroot("club00").display()
        )),
        "{report}"
    );
}

#[test]
fn the_doctor_says_when_opcache_has_no_room_for_two_releases() {
    let Some(world) = world_with(2, 1, Setup::SmallOpcache) else {
        return;
    };
    // A new tag adds a script too big for two copies in 8 MB of OPcache; one request caches
    // it.
    let repo = git2::Repository::open(&world.env.app).unwrap();
    let head = repo.head().unwrap().peel_to_commit().unwrap().id();
    let body: String = (0..9_000)
        .map(|n| format!("function big{n}(int $a): int {{ return $a * {n} + {n}; }}\n"))
        .collect();
    std::fs::write(
        world.env.app.join("big.php"),
        format!("<?php\n{body}echo \"big\\n\";\n"),
    )
    .unwrap();
    // The work tree holds the last tag's files (v9's failing page): a page that works.
    std::fs::write(
        world.env.app.join("index.php"),
        "<?php\necho \"version v20\\n\" . __DIR__ . \"\\nEND\\n\";\n",
    )
    .unwrap();
    crate::helpers::commit_all_and_tag(&repo, &tagger(), Some(head), "v20", "v20");
    world.env.ok(&["deploy", "v20", "--club", "club00"]);
    let (status, body) = world.get("club00.test", "/big.php");
    assert_eq!(status, 200, "{body}");
    let (code, report) = doctor(&world);
    assert_eq!(code, 1, "{report}");
    assert!(
        report.contains("problem  php    OPcache has 8.4 MB in all and a release takes")
            && report.contains("1 fits. During a deploy the old and the new release"),
        "no OPcache problem:\n{report}"
    );
    assert!(
        report.contains("fix: raise opcache.memory_consumption"),
        "{report}"
    );
}

#[test]
fn the_doctor_calls_a_cache_that_never_revalidates_a_problem_unless_every_switch_reloads() {
    let Some(mut world) = world_with(2, 1, Setup::NoRevalidate) else {
        return;
    };
    // The probe reports PHP's settings from the release it runs.
    world.env.ok(&["deploy", "v2", "--all"]);
    let (_, report) = doctor(&world);
    assert!(
        !report.contains("OPcache never looks at a file again"),
        "{report}"
    );
    world.env.config.policy = "after_all";
    world.env.configure();
    let (code, report) = doctor(&world);
    assert_eq!(code, 1, "{report}");
    assert!(
        report.contains("problem  php    OPcache never looks at a file again once cached")
            && report.contains("reload.policy is \"after_all\""),
        "{report}"
    );
    assert!(
        report.contains("fix: set [reload] policy = \"always\""),
        "{report}"
    );
}
