//! The job queue: crash recovery at every injected crash point, concurrent deploys from many
//! processes, detached jobs picked up by `serve`, the in-process wake-up, and cancelling.

use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel::sql_types::{Integer, Nullable, Text};

use crate::helpers::{TestEnv, entries};

/// Every name under `dir` (two levels: `<www>/<club>/<entry>`) that a job must not leave.
fn leftovers(env: &TestEnv) -> Vec<String> {
    let mut found: Vec<String> = entries(&env.releases_dir())
        .into_iter()
        .filter(|n| n.starts_with(".build-") || n.starts_with(".trash-"))
        .collect();
    for top in entries(&env.www) {
        if top.contains(".tmp-") {
            found.push(top.clone());
        }
        for inner in entries(&env.www.join(&top)) {
            if inner.contains(".tmp-") {
                found.push(format!("{top}/{inner}"));
            }
        }
    }
    found
}

fn job_json(env: &TestEnv, id: i64) -> serde_json::Value {
    serde_json::from_str(&env.ok(&["job", &id.to_string(), "--json"])).unwrap()
}

fn newest_job(env: &TestEnv) -> serde_json::Value {
    let jobs: serde_json::Value = serde_json::from_str(&env.ok(&["jobs", "--json"])).unwrap();
    jobs[0].clone()
}

/// Deploys v1 to three clubs, then v2 with a crash at `point`; checks what the crash left
/// (`left_behind` says what a crash there leaves), then that any command recovers.
fn crash_then_recover(point: &str, left_behind: impl Fn(&TestEnv) -> bool) -> TestEnv {
    crash_then_recover_after(point, left_behind, |_| {})
}

/// [`crash_then_recover`], with `prepare` run after v1 is deployed.
fn crash_then_recover_after(
    point: &str,
    left_behind: impl Fn(&TestEnv) -> bool,
    prepare: impl Fn(&mut TestEnv),
) -> TestEnv {
    let mut env = TestEnv::new();
    env.config.keep_releases = 0;
    env.configure();
    env.add_clubs(&["a", "b", "c"]);
    env.ok(&["deploy", "v1", "--all"]);
    prepare(&mut env);
    env.crash_at(&["deploy", "v2", "--all"], point);
    assert!(
        left_behind(&env),
        "a crash at {point} left nothing half-done"
    );
    // Read the database directly: every command would recover first.
    let jobs = job_times(&env.data.join("clubdeploy.sqlite3"));
    assert_eq!(jobs.last().unwrap().status, "running", "{jobs:?}");

    // Any command recovers.
    env.ok(&["status"]);
    for slug in ["a", "b", "c"] {
        let real = env.realpath(slug);
        assert!(
            real.join(".clubdeploy-release.json").is_file(),
            "club {slug} resolves to {} without a manifest after a crash at {point}",
            real.display()
        );
    }
    assert_eq!(
        leftovers(&env),
        Vec::<String>::new(),
        "after a crash at {point}"
    );
    let job = newest_job(&env);
    assert_eq!(job["status"], "interrupted", "{job}");
    let status: serde_json::Value = serde_json::from_str(&env.ok(&["status", "--json"])).unwrap();
    for club in status.as_array().unwrap() {
        assert_eq!(club["drift"], false, "recovery did not record {club}");
    }

    // And the same deploy then succeeds.
    env.ok(&["deploy", "v2", "--all"]);
    for slug in ["a", "b", "c"] {
        assert_eq!(env.release_of(slug), env.release_name("v2"));
    }
    // v1 stays: it is what every club would roll back to.
    assert_eq!(
        env.release_entries(),
        vec![env.release_name("v1"), env.release_name("v2")]
    );
    env
}

#[test]
fn a_crash_before_publishing_a_build_is_recovered() {
    let env = crash_then_recover("build:before-publish", |env| {
        entries(&env.releases_dir())
            .iter()
            .any(|n| n.starts_with(".build-v2-"))
    });
    let job = job_json(&env, 2);
    assert_eq!(
        job["outcome"],
        "interrupted during build; steps completed: fetch"
    );
}

#[test]
fn a_crash_after_the_first_club_switched_is_recovered_and_recorded() {
    let env = crash_then_recover("switch:after-1", |env| {
        // a was switched, b and c not yet; the template link is still there.
        env.release_of("a") == env.release_name("v2")
            && env.release_of("b") == env.release_name("v1")
            && entries(&env.www)
                .iter()
                .any(|n| n.starts_with(".clubdeploy-link"))
    });
    let job = job_json(&env, 2);
    assert_eq!(
        job["outcome"],
        "interrupted during switch; steps completed: fetch, build, preflight"
    );
    let audit = env.ok(&["audit", "--club", "a"]);
    assert!(
        audit.contains("found on disk after job #2 stopped"),
        "{audit}"
    );
}

#[test]
fn a_crash_after_two_clubs_switched_is_recovered() {
    crash_then_recover("switch:after-2", |env| {
        env.release_of("b") == env.release_name("v2")
            && env.release_of("c") == env.release_name("v1")
    });
}

#[test]
fn a_crash_before_the_reload_is_recovered_with_the_reload() {
    let env = crash_then_recover("reload:before", |env| {
        ["a", "b", "c"]
            .iter()
            .all(|s| env.release_of(s) == env.release_name("v2"))
    });
    // The v1 deploy; the v2 deploy that crashed before its reload; recovery finishing it with
    // configtest and reload; the v2 deploy again, switching nothing and pruning nothing
    // (v1 is every club's rollback target), so not reloading.
    assert_eq!(
        env.events(),
        ["configtest", "reload", "configtest", "configtest", "reload"]
    );
}

#[test]
fn a_crash_after_moving_a_release_to_trash_is_recovered() {
    // A release no club ever ran (its deploy stopped at the configtest) for prune to delete.
    let prepare = |env: &mut TestEnv| {
        let configtest = env.config.configtest.clone();
        env.config.configtest = crate::helpers::sh("exit 1");
        env.configure();
        env.fails(&["deploy", "v3", "--all"]);
        env.config.configtest = configtest;
        env.configure();
    };
    crash_then_recover_after(
        "prune:after-trash",
        |env| {
            entries(&env.releases_dir())
                .iter()
                .any(|n| n.starts_with(".trash-"))
        },
        prepare,
    );
}

#[derive(QueryableByName, Debug)]
struct JobTimes {
    #[diesel(sql_type = Integer)]
    id: i32,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Text)]
    params: String,
    #[diesel(sql_type = Nullable<Text>)]
    started_at: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    finished_at: Option<String>,
}

fn job_times(db: &Path) -> Vec<JobTimes> {
    let mut conn = SqliteConnection::establish(db.to_str().unwrap()).unwrap();
    diesel::sql_query(
        "SELECT id, status, params, started_at, finished_at FROM jobs ORDER BY started_at",
    )
    .load(&mut conn)
    .unwrap()
}

#[test]
fn twenty_deploys_from_separate_processes_run_one_at_a_time() {
    let env = TestEnv::new();
    env.add_clubs(&["a", "b"]);
    let tags = ["v1", "v2", "v3"];
    let children: Vec<Child> = (0..20)
        .map(|n| {
            env.command(&["deploy", tags[n % 3], "--club", "a"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let jobs = job_times(&env.data.join("clubdeploy.sqlite3"));
    assert_eq!(jobs.len(), 20);
    for pair in jobs.windows(2) {
        assert_eq!(pair[0].status, "succeeded", "{:?}", pair[0]);
        let (end, next_start) = (
            pair[0].finished_at.as_ref().unwrap(),
            pair[1].started_at.as_ref().unwrap(),
        );
        assert!(end <= next_start, "jobs overlapped: {pair:?}");
    }
    let last = jobs.last().unwrap();
    assert_eq!(last.status, "succeeded");
    let tag = serde_json::from_str::<serde_json::Value>(&last.params).unwrap()["tag"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        env.release_of("a"),
        env.release_name(&tag),
        "last job was #{}",
        last.id
    );
    assert!(!env.webroot("b").exists(), "club b was never targeted");
}

/// A `clubdeploy serve` process, stopped when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for_status(env: &TestEnv, id: i64, wanted: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let job = job_json(env, id);
        if job["status"] == wanted {
            return job;
        }
        assert!(
            Instant::now() < deadline,
            "job #{id} never became {wanted}: {job}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn serve_runs_jobs_queued_by_another_process() {
    let env = TestEnv::new();
    env.add_clubs(&["a", "b"]);
    let _server = Server(
        env.command(&["serve"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let out = env.ok(&["deploy", "v2", "--all", "--detach"]);
    assert_eq!(out.trim(), "queued job #1: deploy v2 to all clubs (main)");
    let job = wait_for_status(&env, 1, "succeeded");
    assert!(job["worker"].as_str().unwrap().contains('@'));
    let steps: Vec<&str> = job["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "step")
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "fetch",
            "build",
            "preflight",
            "switch",
            "reload",
            "health",
            "prune"
        ]
    );
    assert_eq!(env.release_of("a"), env.release_name("v2"));
}

#[test]
fn a_job_queued_in_process_wakes_the_worker_without_waiting_for_a_poll() {
    use clubdeploy::domain::{JobSpec, ReleaseTag, Targets};
    let env = TestEnv::new();
    env.add_clubs(&["a"]);
    let settings = Arc::new(clubdeploy::config::Settings::load(&env.config_path).unwrap());
    let pool = clubdeploy::db::open(&settings.database_path()).unwrap();
    let deploy = |tag: &str| JobSpec::Deploy {
        app: clubdeploy::domain::AppName::main(),
        tag: ReleaseTag::parse(tag).unwrap(),
        targets: Targets::All,
        canary: None,
        rebuild: false,
        group: None,
    };
    let enqueue = |spec: &JobSpec| {
        clubdeploy::jobs::enqueue::enqueue(&mut pool.get().unwrap(), spec, "test", None).unwrap()
    };
    // Job 1 is there before the worker starts, so its first pass runs it.
    enqueue(&deploy("v1"));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let wake = Arc::new(tokio::sync::Notify::new());
    // Polling once an hour: only the notification can start job 2 within the test.
    runtime.spawn(clubdeploy::jobs::worker::run(
        settings.clone(),
        pool.clone(),
        wake.clone(),
        Duration::from_secs(3600),
    ));
    wait_for_status(&env, 1, "succeeded");
    enqueue(&deploy("v2"));
    wake.notify_one();
    wait_for_status(&env, 2, "succeeded");
    assert_eq!(env.release_of("a"), env.release_name("v2"));
    runtime.shutdown_timeout(Duration::from_secs(5));
}

#[test]
fn a_queued_job_can_be_cancelled_and_a_finished_one_cannot() {
    let env = TestEnv::new();
    env.add_clubs(&["a"]);
    env.ok(&["deploy", "v1", "--all"]);
    let out = env.ok(&["deploy", "v2", "--all", "--detach"]);
    assert!(out.starts_with("queued job #2"), "{out}");
    let out = env.ok(&["cancel", "2"]);
    assert_eq!(out.trim(), "job #2 cancelled");
    assert_eq!(job_json(&env, 2)["status"], "cancelled");
    let error = env.fails(&["cancel", "1"]);
    assert!(
        error.contains("job #1 is succeeded; only a queued or running job"),
        "{error}"
    );
    let error = env.fails(&["cancel", "99"]);
    assert!(error.contains("there is no job #99"), "{error}");
    // The cancelled job never runs: the next command works the queue past it.
    env.ok(&["deploy", "v3", "--club", "a"]);
    assert_eq!(env.release_of("a"), env.release_name("v3"));
    assert_eq!(job_json(&env, 2)["status"], "cancelled");
    let audit = env.ok(&["audit"]);
    assert!(audit.contains("job.cancelled"), "{audit}");
}

#[test]
fn a_failed_job_keeps_its_log_and_the_command_exits_non_zero() {
    let mut env = TestEnv::new();
    env.add_clubs(&["a"]);
    env.config.build_commands = vec![crate::helpers::sh("echo 'PHP Fatal error' >&2; exit 3")];
    env.configure();
    let error = env.fails(&["deploy", "v1", "--all"]);
    assert!(
        error.starts_with("error: job #1 failed: building v1 failed"),
        "{error}"
    );
    let job = job_json(&env, 1);
    assert_eq!(job["status"], "failed");
    let output: Vec<&str> = job["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["output"].as_str())
        .collect();
    assert_eq!(output, ["PHP Fatal error\n"]);
}

#[tokio::test]
async fn an_interrupted_deploy_says_what_it_left_and_offers_to_put_its_clubs_back() {
    let mut env = TestEnv::new();
    env.config.keep_releases = 0;
    env.configure();
    env.add_clubs(&["a", "b", "c"]);
    env.ok(&["deploy", "v1", "--all"]);
    env.crash_at(&["deploy", "v2", "--all"], "switch:after-2");
    env.ok(&["status"]);
    let job = job_json(&env, 2);
    let error = job["error"].as_str().unwrap();
    assert!(
        error.contains(
            "2 of 3 clubs were switched to v2 before the process stopped; the web server was \
             reloaded, so they serve it. Deploy v2 again to finish, or put these clubs back"
        ),
        "{error}"
    );
    // The recovery's reload is a step of its own, and it ended.
    let events = env.ok(&["job", "2"]);
    assert!(events.contains("reload done in"), "{events}");

    // The panel offers to put the two clubs back, as after a deploy that ended.
    let panel = crate::web::TestApp::spawn_on(&env).await;
    let client = panel.login("deployer").await;
    let page = client
        .get(panel.url("/jobs/2"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Put these clubs back… (2 switched)"),
        "{page}"
    );
    let confirm = client
        .get(panel.url("/jobs/2/put-back"))
        .send()
        .await
        .unwrap();
    assert_eq!(confirm.status(), reqwest::StatusCode::OK);
    let confirm = confirm.text().await.unwrap();
    assert!(confirm.contains("2 clubs will go back"), "{confirm}");
}

#[test]
fn a_put_back_interrupted_before_its_reload_is_reloaded_by_recovery() {
    let env = TestEnv::new();
    env.add_clubs(&["a", "b"]);
    env.ok(&["deploy", "v1", "--all"]);
    env.ok(&["deploy", "v2", "--all"]);
    env.queue_put_back(2);
    // The next command works the queue: the put-back switches both clubs back, then the
    // process dies before its reload.
    env.crash_at(&["prune"], "reload:before");
    assert_eq!(env.release_of("a"), env.release_name("v1"));
    let reloads = |env: &TestEnv| env.events().iter().filter(|e| *e == "reload").count();
    assert_eq!(reloads(&env), 2, "{:?}", env.events());
    // Recovery finishes the switch with the reload the put-back did not get to.
    env.ok(&["status"]);
    assert_eq!(reloads(&env), 3, "{:?}", env.events());
    let job = job_json(&env, 3);
    assert_eq!(job["status"], "interrupted", "{job}");
}

#[test]
fn a_put_back_tests_the_configuration_before_it_switches_and_a_failing_test_changes_no_club() {
    let mut env = TestEnv::new();
    env.add_clubs(&["a", "b"]);
    env.ok(&["deploy", "v1", "--all"]);
    env.ok(&["deploy", "v2", "--all"]);
    env.config.configtest = crate::helpers::sh("echo 'Syntax error on line 3' >&2; exit 1");
    env.configure();
    env.queue_put_back(2);
    let reloads = |env: &TestEnv| env.events().iter().filter(|e| *e == "reload").count();
    let before = reloads(&env);
    // The next command that queues a job works the queue first.
    env.ok(&["prune"]);
    let job = job_json(&env, 3);
    assert_eq!(job["status"], "failed", "{job}");
    let said = job.to_string();
    assert!(
        said.contains("configuration test failed; no club was changed"),
        "{said}"
    );
    // Both clubs stay where they were, and nothing was reloaded.
    assert_eq!(env.release_of("a"), env.release_name("v2"));
    assert_eq!(env.release_of("b"), env.release_name("v2"));
    assert_eq!(reloads(&env), before, "{:?}", env.events());
    // Its steps ran in the order the job page lists them: the test first, no switch.
    let steps: Vec<String> = job["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["kind"] == "step")
        .filter_map(|e| e["step"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(steps, ["preflight"], "{job}");
}

/// `clubdeploy --config <env's> cancel <id>`, as a shell command a job's own step can run:
/// another process asking the running job to stop, at a known moment.
fn cancel_from_another_process(env: &TestEnv, id: i32) -> Vec<String> {
    // `env -i`: a build step's CLUBDEPLOY_* facts would read as configuration.
    crate::helpers::sh(&format!(
        "env -i PATH=/usr/bin:/bin {} --config {} cancel {id}",
        env!("CARGO_BIN_EXE_clubdeploy"),
        env.config_path.display()
    ))
}

#[test]
fn a_running_deploy_asked_to_stop_stops_before_its_switch_or_between_waves() {
    let mut env = TestEnv::new();
    env.add_clubs(&["a", "b"]);
    env.ok(&["deploy", "v1", "--all"]);
    // Asked while it builds: it stops before any club is switched.
    env.config.build_commands = vec![cancel_from_another_process(&env, 2)];
    env.configure();
    let error = env.fails(&["deploy", "v2", "--all", "--canary", "a"]);
    assert!(error.contains("job #2 cancelled"), "{error}");
    assert!(
        error.contains("before any club was switched; nothing was changed"),
        "{error}"
    );
    assert_eq!(env.release_of("a"), env.release_name("v1"));
    assert_eq!(env.release_of("b"), env.release_name("v1"));
    // Asked during the canary wave's reload: the canary stays switched, the next wave does
    // not run.
    env.config.build_commands = Vec::new();
    env.config.reload = cancel_from_another_process(&env, 3);
    env.configure();
    let error = env.fails(&["deploy", "v3", "--all", "--canary", "a"]);
    assert!(error.contains("job #3 cancelled"), "{error}");
    assert!(
        error.contains("after wave 1 of 2: the 1 club it switched stay on"),
        "{error}"
    );
    assert_eq!(env.release_of("a"), env.release_name("v3"));
    assert_eq!(env.release_of("b"), env.release_name("v1"));
    let audit = env.ok(&["audit", "--limit", "50"]);
    assert!(
        audit.contains("asked to stop at its next safe point"),
        "{audit}"
    );
    // A finished job cannot be stopped.
    let error = env.fails(&["cancel", "3"]);
    assert!(
        error.contains("only a queued or running job can be cancelled"),
        "{error}"
    );
}
