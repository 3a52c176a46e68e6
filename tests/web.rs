//! The web panel, spawned for real on a loopback port with its worker, driven by a
//! cookie-keeping HTTP client: the whole deploy-and-rollback flow through the forms, every
//! route for every role, CSRF, sessions, throttling and escaping.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clubdeploy::auth::staff::{self, Actor};
use clubdeploy::config::Settings;
use clubdeploy::db::{self, DbPool};
use clubdeploy::domain::{ClubScope, NewPassword, Role, UserName};
use clubdeploy::startup::Application;
use reqwest::StatusCode;
use reqwest::header::{LOCATION, SET_COOKIE};

use crate::helpers::TestEnv;

pub const PASSWORD: &str = "correct horse battery staple";

/// A running panel and what it runs on.
pub struct TestApp {
    pub env: TestEnv,
    pub panel: Panel,
}

/// A running panel: its address, database and settings, and the client helpers.
pub struct Panel {
    pub base: String,
    pub pool: DbPool,
    pub settings: Arc<Settings>,
    /// Whether the panel runs its own worker; without one, queued jobs wait for
    /// [`Panel::run_pending_jobs`].
    worker: bool,
}

impl std::ops::Deref for TestApp {
    type Target = Panel;

    fn deref(&self) -> &Panel {
        &self.panel
    }
}

impl TestApp {
    /// Spawns the panel for `env` with one user of each kind: viewer, limited (deployer of
    /// club a), deployer, admin; its worker runs the jobs it queues, as in production.
    pub async fn spawn(env: TestEnv) -> TestApp {
        let panel = Self::spawn_on(&env).await;
        TestApp { env, panel }
    }

    /// The same for an environment the caller keeps.
    pub async fn spawn_on(env: &TestEnv) -> Panel {
        Self::start(env, true).await
    }

    /// The panel without its worker: the jobs it queues run when the test calls
    /// [`Panel::run_pending_jobs`], to the end, so the test needs no polling.
    pub async fn spawn_driven(env: TestEnv) -> TestApp {
        let panel = Self::spawn_driven_on(&env).await;
        TestApp { env, panel }
    }

    /// The same for an environment the caller keeps.
    pub async fn spawn_driven_on(env: &TestEnv) -> Panel {
        Self::start(env, false).await
    }

    async fn start(env: &TestEnv, worker: bool) -> Panel {
        let settings = Settings::load(&env.config_path).unwrap();
        // The mirror as Refresh leaves it: the panel deploys only tags it has fetched.
        for app in settings.apps() {
            clubdeploy::pipeline::git::open_mirror(app)
                .unwrap()
                .fetch(&mut clubdeploy::pipeline::Quiet)
                .unwrap();
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        // Polling once an hour: jobs start only when the panel queues them (and notifies).
        let app =
            Application::build(settings.clone(), listener, Duration::from_secs(3600)).unwrap();
        let app = if worker { app } else { app.without_worker() };
        let base = format!("http://{}", app.addr());
        tokio::spawn(app.run_until_stopped());
        let pool = db::open(&settings.database_path()).unwrap();
        let conn = &mut pool.get().unwrap();
        let setup = Actor {
            name: "setup",
            address: None,
        };
        let hash =
            clubdeploy::auth::password::hash(&NewPassword::parse(PASSWORD).unwrap()).unwrap();
        for (name, role, clubs) in [
            ("viewer", Role::Viewer, ""),
            ("limited", Role::Deployer, "a"),
            ("deployer", Role::Deployer, ""),
            ("admin", Role::Admin, ""),
        ] {
            staff::add(
                conn,
                setup,
                &UserName::parse(name).unwrap(),
                role,
                &ClubScope::parse(clubs).unwrap(),
                &hash,
            )
            .unwrap();
        }
        Panel {
            base,
            pool,
            settings: Arc::new(settings),
            worker,
        }
    }
}

impl Panel {
    /// A client that keeps cookies and does not follow redirects.
    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Signs `name` in; returns the client.
    pub async fn login(&self, name: &str) -> reqwest::Client {
        let client = self.client();
        let response = self.try_login(&client, name, PASSWORD).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "login of {name}");
        client
    }

    /// Posts the sign-in form.
    pub async fn try_login(
        &self,
        client: &reqwest::Client,
        name: &str,
        password: &str,
    ) -> reqwest::Response {
        let page = client.get(self.url("/login")).send().await.unwrap();
        let csrf = csrf_of(&page.text().await.unwrap());
        client
            .post(self.url("/login"))
            .form(&[
                ("name", name),
                ("password", password),
                ("csrf", &csrf),
                ("next", "/"),
            ])
            .send()
            .await
            .unwrap()
    }

    /// The CSRF token of the signed-in session, read from a page.
    pub async fn csrf(&self, client: &reqwest::Client) -> String {
        let page = client.get(self.url("/jobs")).send().await.unwrap();
        csrf_of(&page.text().await.unwrap())
    }

    /// GETs a page's body, asserting 200.
    pub async fn page(&self, client: &reqwest::Client, path: &str) -> String {
        let response = client.get(self.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.text().await.unwrap()
    }

    /// POSTs a form (with the session's CSRF token added).
    pub async fn post(
        &self,
        client: &reqwest::Client,
        path: &str,
        fields: &[(&str, &str)],
    ) -> reqwest::Response {
        let csrf = self.csrf(client).await;
        let mut form: Vec<(&str, &str)> = fields.to_vec();
        form.push(("csrf", &csrf));
        client
            .post(self.url(path))
            .form(&form)
            .send()
            .await
            .unwrap()
    }

    /// The deploy confirmation for the deploy form's `fields` (a GET: it changes nothing).
    pub async fn confirm(
        &self,
        client: &reqwest::Client,
        fields: &[(&str, &str)],
    ) -> reqwest::Response {
        let query: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("{k}={}", clubdeploy::web::error::urlencode(v)))
            .collect();
        client
            .get(self.url(&format!("/deploy/confirm?{}", query.join("&"))))
            .send()
            .await
            .unwrap()
    }

    /// [`Panel::confirm`]'s page.
    pub async fn confirm_text(&self, client: &reqwest::Client, fields: &[(&str, &str)]) -> String {
        self.confirm(client, fields).await.text().await.unwrap()
    }

    /// POSTs a form (with the session's CSRF token added); the answer's body.
    pub async fn post_text(
        &self,
        client: &reqwest::Client,
        path: &str,
        fields: &[(&str, &str)],
    ) -> String {
        self.post(client, path, fields).await.text().await.unwrap()
    }

    /// Takes the deploy lock, so the worker runs nothing while it is held (waiting out the
    /// worker's first pass, which may hold the lock for a moment).
    pub async fn hold_worker(&self) -> clubdeploy::pipeline::lock::DeployLock {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(lock) =
                clubdeploy::pipeline::lock::DeployLock::try_acquire(&self.settings.lock_path())
                    .unwrap()
            {
                return lock;
            }
            assert!(Instant::now() < deadline, "the worker kept the deploy lock");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Queues a deploy of v3 to all clubs without waking the worker: it stays queued until
    /// the panel queues a job (job ids: this one follows the jobs made before).
    pub fn queue_a_job(&self) {
        use clubdeploy::domain::{JobSpec, ReleaseTag, Targets};
        let spec = JobSpec::Deploy {
            app: clubdeploy::domain::AppName::main(),
            tag: ReleaseTag::parse("v3").unwrap(),
            targets: Targets::All,
            canary: None,
            rebuild: false,
            group: None,
        };
        let conn = &mut self.pool.get().unwrap();
        clubdeploy::jobs::enqueue::enqueue(conn, &spec, "setup", None).unwrap();
    }

    /// Presses the releases page's Refresh as `client` and waits for the fetch job it
    /// queues to succeed; returns the job's id.
    pub async fn refresh(&self, client: &reqwest::Client) -> i32 {
        let response = self.post(client, "/releases/refresh", &[]).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let id = job_id(&response);
        assert_eq!(self.run_job(id).await, "succeeded", "fetch job #{id}");
        id
    }

    /// Runs every queued job to its end, as the worker would (recovery first), on a panel
    /// spawned without one; returns each job's id and how it ended, in the order they ran.
    pub async fn run_pending_jobs(&self) -> Vec<(i32, String)> {
        assert!(
            !self.worker,
            "run_pending_jobs needs a panel without its own worker (TestApp::spawn_driven)"
        );
        let (settings, pool) = (self.settings.clone(), self.pool.clone());
        tokio::task::spawn_blocking(move || clubdeploy::jobs::queue::drain(&settings, &pool))
            .await
            .unwrap()
            .unwrap()
            .into_iter()
            .map(|done| (done.id, done.status.as_str().to_owned()))
            .collect()
    }

    /// Runs the queued jobs, which must be exactly job `id`; returns how it ended.
    pub async fn run_job(&self, id: i32) -> String {
        match self.run_pending_jobs().await.as_slice() {
            [(ran, status)] if *ran == id => status.clone(),
            other => panic!("expected job #{id} alone to run, ran {other:?}"),
        }
    }
}

/// The first CSRF token in a page.
pub fn csrf_of(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).expect("a CSRF field") + marker.len();
    html[start..start + 64].to_owned()
}

/// The job id a redirect to `/jobs/{id}` names.
pub fn job_id(response: &reqwest::Response) -> i32 {
    let location = response.headers()[LOCATION].to_str().unwrap();
    location.strip_prefix("/jobs/").unwrap().parse().unwrap()
}

fn env_with_clubs() -> TestEnv {
    let env = TestEnv::new();
    env.add_clubs(&["a", "b"]);
    env
}

#[tokio::test]
async fn staff_deploy_to_all_clubs_and_roll_one_back_through_the_forms() {
    let app = TestApp::spawn_driven(env_with_clubs()).await;
    let admin = app.login("admin").await;
    let dashboard = app.page(&admin, "/").await;
    assert!(dashboard.contains("no release"), "{dashboard}");
    // A new installation knows no tags until staff refresh them (a job, never a request):
    // the mirror the test panel starts with is removed to be one.
    std::fs::remove_dir_all(&app.settings.apps()[0].mirror_dir).unwrap();
    let form = app.page(&admin, "/deploy").await;
    assert!(form.contains("No tags are known yet"), "{form}");
    app.refresh(&admin).await;

    for tag in ["v1", "v2"] {
        let form = app.page(&admin, &format!("/deploy?tag={tag}")).await;
        assert!(
            form.contains(&format!("<option value=\"{tag}\" selected>{tag}")),
            "{form}"
        );
        let confirm = app
            .confirm(&admin, &[("tag", tag), ("target", "all")])
            .await;
        assert_eq!(confirm.status(), StatusCode::OK);
        let confirm = confirm.text().await.unwrap();
        let release = app.env.release_name(tag);
        // The version by its tag, the release's full name (with the commit) small beside it.
        assert!(
            confirm.contains(&format!(
                "<strong>2 clubs will move to {tag}.</strong> <span class=\"muted commit\">{release}</span>"
            )),
            "{confirm}"
        );
        assert!(
            confirm.contains("Apache will then be reloaded"),
            "{confirm}"
        );
        let queued = app
            .post(&admin, "/deploy", &[("tag", tag), ("target", "all")])
            .await;
        assert_eq!(queued.status(), StatusCode::SEE_OTHER);
        let id = job_id(&queued);
        let job_page = app.page(&admin, &format!("/jobs/{id}")).await;
        assert!(job_page.contains(&format!("Job #{id}: deploy {tag} to all clubs")));
        assert_eq!(app.run_job(id).await, "succeeded");
        let job_page = app.page(&admin, &format!("/jobs/{id}")).await;
        assert!(
            job_page.contains(&format!("2 of 2 clubs on {tag}")),
            "{job_page}"
        );
        assert_eq!(app.env.release_of("a"), release);
        assert_eq!(app.env.release_of("b"), release);
    }

    let clubs = app.page(&admin, "/clubs").await;
    let v1 = app.env.release_name("v1");
    // Versions read by their tag first, the commit id apart.
    assert!(clubs.contains("Roll back to v1<"), "{clubs}");
    assert!(
        clubs.contains(&format!(
            "<strong>v2</strong> <span class=\"muted commit\">{}</span>",
            &app.env.commit_of("v2")[..8]
        )),
        "{clubs}"
    );
    let confirm = app.page(&admin, "/clubs/a/rollback").await;
    assert!(
        confirm.contains(&format!(
            "It will go back to\n<strong>v1</strong> <span class=\"muted commit\">{}</span>",
            &app.env.commit_of("v1")[..8]
        )),
        "{confirm}"
    );
    // The form goes exactly to that release.
    assert!(
        confirm.contains(&format!("name=\"to\" value=\"{v1}\"")),
        "{confirm}"
    );
    let queued = app.post(&admin, "/clubs/a/rollback", &[("to", &v1)]).await;
    assert_eq!(queued.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.run_job(job_id(&queued)).await, "succeeded");
    assert_eq!(app.env.release_of("a"), v1);
    assert_eq!(app.env.release_of("b"), app.env.release_name("v2"));

    let audit = app.page(&admin, "/audit?user=admin").await;
    for expected in [
        "login.succeeded",
        "job.queued",
        "deploy v1 to all clubs",
        "deploy v2 to all clubs",
        "roll back a to",
    ] {
        assert!(audit.contains(expected), "{expected} not in the audit page");
    }
    let switched = app.page(&admin, "/audit?club=a&action=club.switched").await;
    // Release names are kept whole on their line (`ui::ids_whole`).
    assert!(switched.contains(&format!(
        "rollback: from <span class=\"id\">{}</span> to <span class=\"id\">{v1}</span>",
        app.env.release_name("v2")
    )));
    // Read as sentences, the action codes kept beside them.
    for sentence in [
        "admin rolled club a (main) back from v2 to v1",
        "admin moved club a (main) from v1 to v2",
        "admin put club a (main) on v1",
    ] {
        assert!(switched.contains(sentence), "{sentence} not in: {switched}");
    }
    assert!(switched.contains("club.switched"), "{switched}");
    let everything = app.page(&admin, "/audit").await;
    assert!(everything.contains("admin signed in"), "{everything}");
    let csv = admin
        .get(app.url("/audit.csv?club=a"))
        .send()
        .await
        .unwrap();
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = csv.text().await.unwrap();
    assert!(csv.starts_with("id,time_utc,actor,address,action"), "{csv}");
    assert_eq!(
        csv.lines().filter(|l| l.contains("club.switched")).count(),
        3,
        "{csv}"
    );
    let verify = app.page(&admin, "/audit/verify").await;
    assert!(verify.contains("The audit log is intact"), "{verify}");
}

#[tokio::test]
async fn job_page_streams_events_until_the_job_ends() {
    let app = TestApp::spawn(env_with_clubs()).await;
    let admin = app.login("admin").await;
    let queued = app
        .post(&admin, "/deploy", &[("tag", "v1"), ("target", "all")])
        .await;
    let id = job_id(&queued);
    let stream = admin
        .get(app.url(&format!("/jobs/{id}/events?after=0")))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    // The stream ends by itself after the `end` event.
    let body = tokio::time::timeout(Duration::from_secs(30), stream.text())
        .await
        .expect("the stream ended")
        .unwrap();
    assert!(body.contains("event: log"), "{body}");
    assert!(body.contains("\"message\":\"switch\""), "{body}");
    assert!(body.contains("(2 of 2 clubs on v1)"), "{body}");
    // Each count says, in words, what the clubs run.
    assert!(
        body.contains("\"counted\":\"2 of 2 clubs on v1\""),
        "{body}"
    );
    assert!(body.trim_end().ends_with("}"), "{body}");
    let end = body
        .split("event: end\ndata: ")
        .nth(1)
        .expect("an end event");
    let end: serde_json::Value = serde_json::from_str(end.trim()).unwrap();
    assert_eq!(end["error"], serde_json::Value::Null, "{body}");
    assert_eq!(end["counted"], "2 of 2 clubs on v1", "{body}");
    assert!(
        end["outcome"]
            .as_str()
            .unwrap()
            .starts_with("2 of 2 clubs on v1"),
        "{body}"
    );
    // The moment it ended, for the job page's step times.
    assert!(end["at"].as_str().unwrap().ends_with('Z'), "{body}");
}

/// Who makes a request in the route table.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Who {
    Anonymous,
    Viewer,
    Limited,
    Deployer,
    Admin,
}

const OK: u16 = 200;
const SEE: u16 = 303;
const NO: u16 = 403;

#[tokio::test]
async fn every_route_answers_each_role_as_expected() {
    // (method, path, form fields, expected for anonymous, viewer, limited, deployer, admin)
    type Case = (
        &'static str,
        &'static str,
        &'static [(&'static str, &'static str)],
        [u16; 5],
    );
    let cases: &[Case] = &[
        ("GET", "/login", &[], [OK, OK, OK, OK, OK]),
        ("GET", "/static/style.css", &[], [OK, OK, OK, OK, OK]),
        ("GET", "/no/such/page", &[], [404, 404, 404, 404, 404]),
        ("GET", "/", &[], [SEE, OK, OK, OK, OK]),
        ("GET", "/clubs", &[], [SEE, OK, OK, OK, OK]),
        ("GET", "/account", &[], [SEE, OK, OK, OK, OK]),
        ("GET", "/releases", &[], [SEE, OK, OK, OK, OK]),
        ("GET", "/jobs", &[], [SEE, OK, OK, OK, OK]),
        ("GET", "/jobs/1", &[], [SEE, OK, OK, OK, OK]),
        ("GET", "/jobs/1/events", &[], [SEE, OK, OK, OK, OK]),
        ("GET", "/jobs/999", &[], [SEE, 404, 404, 404, 404]),
        ("GET", "/audit", &[], [SEE, OK, OK, OK, OK]),
        ("GET", "/audit.csv", &[], [SEE, OK, OK, OK, OK]),
        ("GET", "/audit/verify", &[], [SEE, OK, OK, OK, OK]),
        ("GET", "/deploy", &[], [SEE, NO, OK, OK, OK]),
        ("GET", "/clubs/a/rollback", &[], [SEE, NO, OK, OK, OK]),
        ("GET", "/clubs/b/rollback", &[], [SEE, NO, NO, OK, OK]),
        ("GET", "/staff", &[], [SEE, NO, NO, NO, OK]),
        ("GET", "/doctor", &[], [SEE, NO, NO, NO, OK]),
        ("POST", "/doctor", &[], [SEE, NO, NO, NO, SEE]),
        ("GET", "/clubs/a/remove", &[], [SEE, NO, NO, NO, OK]),
        // Job 2 moved a and b from v1 to v2; job 1 had nothing before it to go back to.
        ("GET", "/jobs/2/put-back", &[], [SEE, NO, NO, OK, OK]),
        ("GET", "/jobs/1/put-back", &[], [SEE, NO, 409, 409, 409]),
        ("GET", "/jobs/3/put-back", &[], [SEE, NO, 409, 409, 409]),
        ("POST", "/jobs/2/put-back", &[], [SEE, NO, NO, SEE, SEE]),
        (
            "POST",
            "/groups",
            &[("group", "canary"), ("clubs", "a"), ("action", "join")],
            [SEE, NO, NO, NO, SEE],
        ),
        // Job 3 is queued (and stays queued: nothing wakes the worker before this row).
        ("POST", "/jobs/3/cancel", &[], [SEE, NO, NO, SEE, SEE]),
        (
            "POST",
            "/deploy/confirm",
            &[("tag", "v1"), ("target", "some"), ("clubs", "a")],
            [SEE, NO, SEE, SEE, SEE],
        ),
        (
            "POST",
            "/deploy/confirm",
            &[("tag", "v1"), ("target", "all")],
            [SEE, NO, NO, SEE, SEE],
        ),
        (
            "POST",
            "/deploy/confirm",
            &[("tag", "v1"), ("target", "some"), ("clubs", "b")],
            [SEE, NO, NO, SEE, SEE],
        ),
        (
            "POST",
            "/deploy",
            &[("tag", "v1"), ("target", "some"), ("clubs", "a")],
            [SEE, NO, SEE, SEE, SEE],
        ),
        (
            "POST",
            "/deploy",
            &[("tag", "v1"), ("target", "some"), ("clubs", "b")],
            [SEE, NO, NO, SEE, SEE],
        ),
        (
            "POST",
            "/deploy",
            &[("tag", "v1"), ("target", "all")],
            [SEE, NO, NO, SEE, SEE],
        ),
        ("POST", "/clubs/a/rollback", &[], [SEE, NO, SEE, SEE, SEE]),
        ("POST", "/clubs/b/rollback", &[], [SEE, NO, NO, SEE, SEE]),
        ("POST", "/releases/refresh", &[], [SEE, NO, SEE, SEE, SEE]),
        (
            "POST",
            "/clubs",
            &[("slug", "extra"), ("webroot", "WWW/extra/htdocs")],
            [SEE, NO, NO, NO, SEE],
        ),
        ("POST", "/clubs/extra/remove", &[], [SEE, NO, NO, NO, SEE]),
        (
            "POST",
            "/clubs/nosuchclub/remove",
            &[],
            [SEE, NO, NO, NO, 404],
        ),
        (
            "POST",
            "/staff",
            &[
                ("name", "newbie"),
                ("role", "viewer"),
                ("password", "a long enough password"),
            ],
            [SEE, NO, NO, NO, SEE],
        ),
        (
            "POST",
            "/staff/newbie/role",
            &[("role", "deployer"), ("clubs", "a")],
            [SEE, NO, NO, NO, SEE],
        ),
        (
            "POST",
            "/staff/newbie/password",
            &[("password", "another long password")],
            [SEE, NO, NO, NO, SEE],
        ),
        ("POST", "/staff/newbie/disable", &[], [SEE, NO, NO, NO, SEE]),
        ("POST", "/staff/newbie/enable", &[], [SEE, NO, NO, NO, SEE]),
        ("POST", "/staff/nobody/disable", &[], [SEE, NO, NO, NO, 404]),
        ("POST", "/logout", &[], [SEE, SEE, SEE, SEE, SEE]),
    ];
    let everyone = [
        Who::Anonymous,
        Who::Viewer,
        Who::Limited,
        Who::Deployer,
        Who::Admin,
    ];
    for (column, who) in everyone.into_iter().enumerate() {
        // A fresh panel per role: each starts from the same state. Every route that queues a
        // job queues one here, and none runs: more than the usual limit of waiting jobs.
        let mut env = env_with_clubs();
        env.config.web = vec!["max_queued_jobs_per_user = 100".into()];
        env.configure();
        env.ok(&["deploy", "v1", "--all"]);
        env.ok(&["deploy", "v2", "--all"]);
        let app = TestApp::spawn(env).await;
        // Holding the deploy lock keeps the worker from running anything: job 3 stays queued
        // and the routes are judged on the same state for every role.
        let _hold = app.hold_worker().await;
        app.queue_a_job();
        let www = app.env.www.display().to_string();
        let client = match who {
            Who::Anonymous => app.client(),
            Who::Viewer => app.login("viewer").await,
            Who::Limited => app.login("limited").await,
            Who::Deployer => app.login("deployer").await,
            Who::Admin => app.login("admin").await,
        };
        let csrf = if who == Who::Anonymous {
            String::new()
        } else {
            app.csrf(&client).await
        };
        for (method, path, fields, expected) in cases {
            let response = if *method == "GET" {
                client.get(app.url(path)).send().await.unwrap()
            } else {
                let mut form: Vec<(String, String)> = fields
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.replace("WWW", &www)))
                    .collect();
                form.push(("csrf".into(), csrf.clone()));
                client.post(app.url(path)).form(&form).send().await.unwrap()
            };
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            assert_eq!(
                status,
                expected[column],
                "{who:?} {method} {path} {fields:?}: {}",
                body.chars().take(600).collect::<String>()
            );
            if status == 403 {
                assert!(
                    body.contains("Not allowed"),
                    "{who:?} {path}: a plain 403 page"
                );
            }
        }
    }
}

#[tokio::test]
async fn state_changing_routes_refuse_a_missing_or_wrong_csrf_token() {
    let env = env_with_clubs();
    env.ok(&["deploy", "v1", "--all"]);
    env.ok(&["deploy", "v2", "--all"]);
    let app = TestApp::spawn(env).await;
    let _hold = app.hold_worker().await;
    app.queue_a_job();
    let www = app.env.www.display().to_string();
    let admin = app.login("admin").await;
    let extra = format!("{www}/extra/htdocs");
    let routes: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("/logout", vec![]),
        ("/deploy/confirm", vec![("tag", "v1"), ("target", "all")]),
        ("/deploy", vec![("tag", "v1"), ("target", "all")]),
        ("/clubs/a/rollback", vec![]),
        ("/clubs", vec![("slug", "extra"), ("webroot", &extra)]),
        ("/clubs/a/remove", vec![]),
        ("/clubs/a/adopt", vec![("tag", "v1")]),
        ("/clubs/a/undo-adopt", vec![]),
        ("/clubs/a/legacy/a.20260101T000000Z/purge", vec![]),
        ("/releases/refresh", vec![]),
        ("/jobs/3/cancel", vec![]),
        (
            "/staff",
            vec![
                ("name", "x"),
                ("role", "admin"),
                ("password", "a long enough password"),
            ],
        ),
        ("/staff/viewer/role", vec![("role", "admin")]),
        (
            "/staff/viewer/password",
            vec![("password", "a long enough password")],
        ),
        ("/staff/viewer/disable", vec![]),
        ("/staff/viewer/enable", vec![]),
    ];
    let snapshot = |app: &TestApp| {
        let conn = &mut app.pool.get().unwrap();
        let audit = db::audit::list(
            conn,
            &db::audit::Filter {
                limit: 1_000_000,
                ..Default::default()
            },
        )
        .unwrap();
        let jobs = db::jobs::recent(conn, 1000).unwrap();
        let clubs = db::clubs::all(conn).unwrap();
        let users = db::users::all(conn).unwrap();
        (
            audit.len(),
            jobs.iter().map(|j| j.status).collect::<Vec<_>>(),
            clubs.len(),
            users
                .iter()
                .map(|u| (u.role, u.disabled, u.password_hash.clone()))
                .collect::<Vec<_>>(),
        )
    };
    let before = snapshot(&app);
    let links = (app.env.release_of("a"), app.env.release_of("b"));
    for (path, fields) in &routes {
        for token in [None, Some("0".repeat(64))] {
            let mut form: Vec<(&str, &str)> = fields.clone();
            if let Some(token) = &token {
                form.push(("csrf", token));
            }
            let response = admin.post(app.url(path)).form(&form).send().await.unwrap();
            assert_eq!(
                response.status(),
                StatusCode::FORBIDDEN,
                "{path} with token {token:?}"
            );
        }
    }
    assert_eq!(
        snapshot(&app),
        before,
        "a refused request changed something"
    );
    assert_eq!((app.env.release_of("a"), app.env.release_of("b")), links);
    // Still signed in: the refused logout did not sign out.
    app.page(&admin, "/").await;

    // The sign-in form's token is checked too.
    let client = app.client();
    let response = client
        .post(app.url("/login"))
        .form(&[
            ("name", "admin"),
            ("password", PASSWORD),
            ("csrf", &"0".repeat(64)),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

fn session_cookie(response: &reqwest::Response) -> String {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| {
            c.starts_with("clubdeploy_session=") || c.starts_with("__Host-clubdeploy_session=")
        })
        .expect("a session cookie")
}

#[tokio::test]
async fn sessions_are_new_at_login_end_at_logout_disable_and_idle_and_are_flagged() {
    let mut env = env_with_clubs();
    env.config.session_idle_secs = 60;
    env.config.cookie_secure = true;
    env.configure();
    let app = TestApp::spawn(env).await;
    let client = app.client();
    let first = app.try_login(&client, "viewer", PASSWORD).await;
    let cookie = session_cookie(&first);
    for flag in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
        assert!(cookie.contains(flag), "{flag} missing from {cookie}");
    }
    // Behind TLS the cookie is bound to this host, and browsers are told to stay on HTTPS.
    assert!(cookie.starts_with("__Host-clubdeploy_session="), "{cookie}");
    assert_eq!(
        first.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    let token = |c: &str| c.split(';').next().unwrap().to_owned();
    let second = app.try_login(&client, "viewer", PASSWORD).await;
    assert_ne!(
        token(&session_cookie(&second)),
        token(&cookie),
        "a new session at login"
    );

    // Logout ends the session: the old cookie no longer works.
    let old = token(&session_cookie(&second));
    let raw = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let get = |path: &str| raw.get(app.url(path)).header("Cookie", old.clone()).send();
    assert_eq!(get("/").await.unwrap().status(), StatusCode::OK);
    let logout = app.post(&client, "/logout", &[]).await;
    assert_eq!(logout.status(), StatusCode::SEE_OTHER);
    // It says so (issue 20, point 15).
    assert_eq!(logout.headers()[LOCATION], "/login?signed_out=1");
    let said = raw
        .get(app.url("/login?signed_out=1"))
        .send()
        .await
        .unwrap();
    assert!(said.text().await.unwrap().contains("You have signed out."));
    let after = get("/").await.unwrap();
    assert_eq!(after.status(), StatusCode::SEE_OTHER);
    assert_eq!(after.headers()[LOCATION], "/login?next=/");

    // Disabling a user ends their session at once.
    let viewer = app.login("viewer").await;
    app.page(&viewer, "/").await;
    let admin = app.login("admin").await;
    assert_eq!(
        app.post(&admin, "/staff/viewer/disable", &[])
            .await
            .status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        viewer.get(app.url("/")).send().await.unwrap().status(),
        StatusCode::SEE_OTHER
    );
    let refused = app.try_login(&app.client(), "viewer", PASSWORD).await;
    assert_eq!(
        refused.status(),
        StatusCode::UNAUTHORIZED,
        "a disabled user cannot sign in"
    );

    // An idle session ends (idle timeout 60 s here); an active one lives on. Time passes by
    // moving every session's last use back, so the test waits for no clock.
    let deployer = app.login("deployer").await;
    age_sessions(&app.pool, 40);
    assert!(app.page(&admin, "/").await.contains("admin"));
    age_sessions(&app.pool, 40);
    assert!(
        app.page(&admin, "/").await.contains("admin"),
        "a session used 40 s ago ended"
    );
    let idle = deployer.get(app.url("/")).send().await.unwrap();
    assert_eq!(
        idle.status(),
        StatusCode::SEE_OTHER,
        "the idle session still worked"
    );
}

/// Moves every session's last use `secs` seconds back, as if they had been idle that long.
fn age_sessions(pool: &DbPool, secs: i64) {
    use clubdeploy::db::schema::sessions;
    use diesel::prelude::*;
    let conn = &mut pool.get().unwrap();
    let seen: Vec<(i32, chrono::NaiveDateTime)> = sessions::table
        .select((sessions::id, sessions::last_seen_at))
        .load(conn)
        .unwrap();
    for (id, at) in seen {
        diesel::update(sessions::table.find(id))
            .set(sessions::last_seen_at.eq(at - chrono::Duration::seconds(secs)))
            .execute(conn)
            .unwrap();
    }
}

#[tokio::test]
async fn markup_in_names_is_shown_escaped_everywhere() {
    let env = TestEnv::new();
    let webroot = env.webroot("evil");
    env.ok(&[
        "club",
        "add",
        "evil",
        "--webroot",
        webroot.to_str().unwrap(),
        "--name",
        "<script>alert('club')</script>",
    ]);
    env.ok(&["deploy", "v1", "--all"]);
    let app = TestApp::spawn(env).await;
    // A sign-in attempt under a name with markup lands in the audit log.
    app.try_login(&app.client(), "<script>alert('user')</script>", "x")
        .await;
    let admin = app.login("admin").await;
    let bad_tag = app
        .confirm(
            &admin,
            &[("tag", "<script>alert('tag')</script>"), ("target", "all")],
        )
        .await;
    assert_eq!(bad_tag.status(), StatusCode::BAD_REQUEST);
    let bad_tag = bad_tag.text().await.unwrap();
    assert!(escaped(&bad_tag, "tag"), "{bad_tag}");
    assert!(!bad_tag.contains("<script>alert"), "{bad_tag}");
    for path in [
        "/",
        "/clubs",
        "/deploy",
        "/audit",
        "/jobs/1",
        "/releases",
        "/staff",
    ] {
        let page = app.page(&admin, path).await;
        assert!(
            !page.contains("<script>alert"),
            "unescaped markup on {path}"
        );
    }
    let clubs = app.page(&admin, "/clubs").await;
    assert!(escaped(&clubs, "club"), "{clubs}");
    let audit = app.page(&admin, "/audit").await;
    // A sign-in under a name that cannot be a user name is refused before anything is written.
    assert!(!audit.contains("alert(&#39;user"), "{audit}");
    assert!(escaped(&audit, "club"), "{audit}");
}

/// Whether `<script>alert('what')</script>` appears in `page` as escaped text.
fn escaped(page: &str, what: &str) -> bool {
    page.contains(&format!(
        "&#60;script&#62;alert(&#39;{what}&#39;)&#60;/script&#62;"
    ))
}

#[tokio::test]
async fn responses_carry_security_headers_and_errors_hide_internals() {
    let app = TestApp::spawn(env_with_clubs()).await;
    let response = app.client().get(app.url("/login")).send().await.unwrap();
    let headers = response.headers();
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "same-origin");
    let html = response.text().await.unwrap();
    assert!(
        !html.contains("<script>") && !html.contains(" on"),
        "inline script on the login page"
    );
    let admin = app.login("admin").await;
    let missing = admin.get(app.url("/jobs/12345")).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let body = missing.text().await.unwrap();
    assert!(body.contains("There is no job #12345."));
    // The page keeps the panel's navigation (issue 12), and names nobody.
    assert!(
        body.contains("<nav") && body.contains("href=\"/clubs\""),
        "{body}"
    );
    assert!(!body.contains("admin"), "{body}");
}

/// `clubdeploy demo` running in `dir` on a port of its choice, read up to its panel's address.
struct Demo {
    child: std::process::Child,
    /// What it printed up to its address.
    said: String,
    password: String,
    base: String,
}

/// The body of `url` as `client` gets it.
async fn text_of(client: &reqwest::Client, url: String) -> String {
    client.get(url).send().await.unwrap().text().await.unwrap()
}

impl Demo {
    fn start(dir: &std::path::Path) -> Demo {
        use std::io::{BufRead, BufReader};
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_clubdeploy"))
            .args([
                "demo",
                "--dir",
                dir.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
            ])
            .env_remove("CLUBDEPLOY_CONFIG")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let (mut password, mut base, mut said) = (None, None, String::new());
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            let line = line.unwrap();
            said.push_str(&line);
            said.push('\n');
            if let Some(rest) = line.strip_prefix("sign in as admin with password ") {
                password = rest.split_whitespace().next().map(str::to_owned);
            }
            if let Some(rest) = line.strip_prefix("clubdeploy panel on ") {
                base = rest
                    .split_whitespace()
                    .next()
                    .map(|u| u.trim_end_matches('/').to_owned());
                break;
            }
        }
        Demo {
            child,
            password: password.expect("a password"),
            base: base.expect("an address"),
            said,
        }
    }

    /// A client signed in as the demo's admin.
    async fn sign_in(&self) -> reqwest::Client {
        let client = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let base = &self.base;
        let page = client.get(format!("{base}/login")).send().await.unwrap();
        let csrf = csrf_of(&page.text().await.unwrap());
        let login = client
            .post(format!("{base}/login"))
            .form(&[
                ("name", "admin"),
                ("password", &self.password),
                ("csrf", &csrf),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(login.status(), StatusCode::SEE_OTHER);
        client
    }
}

#[tokio::test]
async fn the_demo_serves_a_panel_its_printed_password_opens() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("demo");
    let mut demo = Demo::start(&dir);
    // It says what to try first.
    assert!(
        demo.said
            .contains("try first: sign in; on Deploy choose v1.1.0 and tick Club Zermatt"),
        "{}",
        demo.said
    );
    let client = demo.sign_in().await;
    let base = demo.base.clone();
    let dashboard = text_of(&client, format!("{base}/")).await;
    assert!(
        dashboard.contains("v1.0.0-"),
        "the oldest tag runs everywhere: {dashboard}"
    );
    assert!(dashboard.contains(">6 clubs</a>") && dashboard.contains("(6 clubs)"));
    let _ = demo.child.kill();
    let _ = demo.child.wait();
    // The demo runs as whoever tries it: no run-as-root warning (issue 20; `serve` warns).
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut demo.child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!stderr.contains("running as root"), "{stderr}");
    let links: Vec<_> = std::fs::read_dir(dir.join("www")).unwrap().collect();
    assert_eq!(links.len(), 6);

    // Run again on another address: the one given now wins over the one saved at creation.
    let port = crate::helpers::free_port();
    let mut again = std::process::Command::new(env!("CARGO_BIN_EXE_clubdeploy"))
        .args(["demo", "--dir", dir.to_str().unwrap(), "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .env_remove("CLUBDEPLOY_CONFIG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let served = std::io::BufRead::lines(std::io::BufReader::new(again.stdout.take().unwrap()))
        .map(Result::unwrap)
        .find(|line| line.starts_with("clubdeploy panel on "));
    let _ = again.kill();
    let _ = again.wait();
    assert_eq!(
        served.as_deref(),
        Some(format!("clubdeploy panel on http://127.0.0.1:{port}/ (Ctrl-C stops)").as_str())
    );

    // A port in use: the demo says to choose another with --listen.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = std::process::Command::new(env!("CARGO_BIN_EXE_clubdeploy"))
        .args(["demo", "--dir", dir.to_str().unwrap(), "--listen"])
        .arg(taken.local_addr().unwrap().to_string())
        .env_remove("CLUBDEPLOY_CONFIG")
        .output()
        .unwrap();
    assert!(!busy.status.success());
    let stderr = String::from_utf8_lossy(&busy.stderr);
    assert!(
        stderr.contains("another program (an earlier demo?) uses that port")
            && stderr.contains("--listen 127.0.0.1:8081"),
        "{stderr}"
    );
}

/// Issue 20, point 12: with PHP installed, the demo serves each club's site on a loopback port
/// and gives the clubs those addresses, so a deploy made in its panel is health-checked (the
/// site proves it runs the new release) and the OPcache page has figures; its sites stop with
/// it.
#[tokio::test]
async fn the_demo_serves_each_clubs_site_so_its_deploys_are_health_checked() {
    if !crate::helpers::installed("DEMO SITES TEST", &[("/usr/bin/php", "php-cli")]) {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("demo");
    let mut demo = Demo::start(&dir);
    assert!(demo.said.contains("served here by php -S"), "{}", demo.said);
    let client = demo.sign_in().await;
    let base = demo.base.clone();
    let csrf = csrf_of(&text_of(&client, format!("{base}/jobs")).await);
    let asked = client
        .post(format!("{base}/deploy"))
        .form(&[
            ("app", "booking"),
            ("tag", "v1.1.0"),
            ("target", "some"),
            ("clubs", "zermatt"),
            ("csrf", &csrf),
        ])
        .send()
        .await
        .unwrap();
    let id = job_id(&asked);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let page = loop {
        let page = text_of(&client, format!("{base}/jobs/{id}")).await;
        if page.contains("1 of 1 club on v1.1.0") || page.contains("class=\"notice bad\"") {
            break page;
        }
        assert!(std::time::Instant::now() < deadline, "{page}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert!(page.contains("is live on v1.1.0-"), "{page}");
    assert!(page.contains("1 of 1 club on v1.1.0"), "{page}");
    let opcache = text_of(&client, format!("{base}/opcache")).await;
    assert!(opcache.contains("<th>Cached scripts</th>"), "{opcache}");
    let _ = demo.child.kill();
    let _ = demo.child.wait();
    // Its sites went with it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::process::Command::new("pgrep")
        .args([
            "-f",
            &format!("{}/sites/", dir.canonicalize().unwrap().display()),
        ])
        .status()
        .unwrap()
        .success()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "php -S outlived the demo"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn user_commands_add_list_change_and_disable_staff() {
    use std::io::Write;
    let env = TestEnv::new();
    let add = |name: &str, role: &str, password: &str| {
        let mut child = env
            .command(&[
                "user",
                "add",
                name,
                "--role",
                role,
                "--clubs",
                "a",
                "--password-stdin",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
        child.wait_with_output().unwrap()
    };
    let out = add("alice", "deployer", "a long enough password");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let short = add("bob", "viewer", "short");
    assert!(String::from_utf8_lossy(&short.stderr).contains("at least 12 characters"));
    let role = add("carol", "boss", "a long enough password");
    assert!(String::from_utf8_lossy(&role.stderr).contains("is not a role"));
    let list = env.ok(&["user", "list"]);
    assert!(list.contains("alice") && list.contains("deployer") && list.contains("active"));
    assert!(!list.contains("bob") && !list.contains("carol"));
    env.ok(&["user", "disable", "alice"]);
    assert!(env.ok(&["user", "list"]).contains("disabled"));
    let out = add("root", "admin", "a long enough password");
    assert!(out.status.success());
    let error = env.fails(&["user", "disable", "root"]);
    assert!(error.contains("root is the only enabled admin"), "{error}");
    let audit = env.ok(&["audit"]);
    assert!(
        audit.contains("user.added") && audit.contains("user.disabled"),
        "{audit}"
    );
}

#[tokio::test]
async fn addresses_the_panel_cannot_read_are_its_own_plain_pages() {
    let env = TestEnv::new();
    env.add_clubs(&["a"]);
    env.ok(&["releases", "--fetch"]);
    env.ok(&["club", "url", "a", "https://a.example/?x=<b>"]);
    let app = TestApp::spawn(env).await;
    let admin = app.login("admin").await;
    for path in ["/jobs/abc", "/jobs/99999999999", "/nowhere"] {
        let response = admin.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        let body = response.text().await.unwrap();
        assert!(
            body.contains("There is no such page") || body.contains("There is no job"),
            "{path}: {body}"
        );
        assert!(!body.contains("can not parse"), "{path}: {body}");
    }
    let response = admin.get(app.url("/jobs?before=abc")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body = response.text().await.unwrap();
    assert!(body.contains("cannot be read"), "{body}");
    // A tag the repository does not have is said, not silently replaced by the newest.
    let form = app.page(&admin, "/deploy?tag=v9.9.9").await;
    assert!(form.contains("There is no version v9.9.9"), "{form}");
    assert!(
        form.contains("<option value=\"\" selected>Choose a version</option>"),
        "{form}"
    );
    let form = app.page(&admin, "/deploy?tag=v2").await;
    assert!(!form.contains("There is no version"), "{form}");
    // Each club's site address is a link on the clubs page, escaped.
    let clubs = app.page(&admin, "/clubs").await;
    assert!(
        clubs.contains("<a href=\"https://a.example/?x=&#60;b&#62;\" rel=\"noopener noreferrer\">"),
        "{clubs}"
    );
    assert!(form.contains("value=\"v2\" selected"), "{form}");
}

#[tokio::test]
async fn a_deploy_form_sent_twice_queues_one_job_and_shows_it_both_times() {
    let env = TestEnv::new();
    env.add_clubs(&["a"]);
    env.ok(&["releases", "--fetch"]);
    let app = TestApp::spawn(env).await;
    let admin = app.login("admin").await;
    let _held = app.hold_worker().await;
    let confirm = app
        .confirm_text(&admin, &[("tag", "v2"), ("target", "all")])
        .await;
    let marker = "name=\"once\" value=\"";
    let start = confirm.find(marker).expect("a one-time token") + marker.len();
    let once = confirm[start..start + 64].to_owned();
    let fields = [("tag", "v2"), ("target", "all"), ("once", once.as_str())];
    let first = app.post(&admin, "/deploy", &fields).await;
    let again = app.post(&admin, "/deploy", &fields).await;
    assert_eq!(first.status(), StatusCode::SEE_OTHER);
    assert_eq!(again.status(), StatusCode::SEE_OTHER);
    assert_eq!(job_id(&first), job_id(&again));
    let jobs = db::jobs::recent(&mut app.pool.get().unwrap(), 10).unwrap();
    let deploys = jobs
        .iter()
        .filter(|j| j.kind == clubdeploy::domain::JobKind::Deploy)
        .count();
    assert_eq!(deploys, 1, "a repeat queued another job");
    // Another user's form with the same token still queues its own job.
    let deployer = app.login("deployer").await;
    let theirs = app.post(&deployer, "/deploy", &fields).await;
    assert_ne!(job_id(&theirs), job_id(&first));
    // A fresh page has a fresh token.
    let again_page = app
        .confirm_text(&admin, &[("tag", "v2"), ("target", "all")])
        .await;
    assert!(!again_page.contains(&once));
}

#[tokio::test]
async fn cancel_and_disable_ask_first() {
    let env = TestEnv::new();
    env.add_clubs(&["a"]);
    let app = TestApp::spawn(env).await;
    let admin = app.login("admin").await;
    let _held = app.hold_worker().await;
    app.queue_a_job();
    let job = app.page(&admin, "/jobs/1").await;
    assert!(job.contains("href=\"/jobs/1/cancel\""), "{job}");
    assert!(!job.contains("action=\"/jobs/1/cancel\""), "{job}");
    let ask = app.page(&admin, "/jobs/1/cancel").await;
    assert!(ask.contains("Cancel job #1?"), "{ask}");
    assert!(ask.contains("action=\"/jobs/1/cancel\""), "{ask}");
    assert!(ask.contains("href=\"/jobs/1\">No, go back"), "{ask}");
    let viewer = app.login("viewer").await;
    let refused = viewer.get(app.url("/jobs/1/cancel")).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let done = app.post(&admin, "/jobs/1/cancel", &[]).await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    let again = admin.get(app.url("/jobs/1/cancel")).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::CONFLICT);
    assert!(again.text().await.unwrap().contains("Job #1 is cancelled"));

    let staff = app.page(&admin, "/staff").await;
    assert!(staff.contains("href=\"/staff/viewer/disable\""), "{staff}");
    // The page explains what each role may do (issue 20, point 15).
    assert!(
        staff.contains("<dt>viewer</dt><dd>sees every club, release, job and the audit log, and changes nothing</dd>"),
        "{staff}"
    );
    assert!(
        staff.contains("<dt>deployer</dt><dd>also deploys"),
        "{staff}"
    );
    assert!(
        staff.contains("<dt>admin</dt><dd>also manages staff and clubs"),
        "{staff}"
    );
    assert!(
        !staff.contains("action=\"/staff/viewer/disable\""),
        "{staff}"
    );
    let ask = app.page(&admin, "/staff/viewer/disable").await;
    assert!(ask.contains("Disable viewer?"), "{ask}");
    assert!(ask.contains("action=\"/staff/viewer/disable\""), "{ask}");
    let refused = viewer
        .get(app.url("/staff/deployer/disable"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn after_an_action_the_next_page_says_once_what_happened() {
    let env = TestEnv::new();
    env.ok(&[
        "club",
        "add",
        "zermatt",
        "--webroot",
        env.webroot("zermatt").to_str().unwrap(),
        "--name",
        "Club Zermatt",
    ]);
    env.ok(&["releases", "--fetch"]);
    let app = TestApp::spawn(env).await;
    let admin = app.login("admin").await;
    let _held = app.hold_worker().await;
    let queued = app
        .post(
            &admin,
            "/deploy",
            &[("tag", "v2"), ("target", "some"), ("clubs", "zermatt")],
        )
        .await;
    let id = job_id(&queued);
    let page = app.page(&admin, &format!("/jobs/{id}")).await;
    assert!(
        page.contains(&format!(
            "<p class=\"flash\" role=\"status\">Club Zermatt will move to v2: job #{id}</p>"
        )),
        "{page}"
    );
    // Shown once: the next page has no message.
    let again = app.page(&admin, &format!("/jobs/{id}")).await;
    assert!(!again.contains("class=\"flash\""), "{again}");
    // Another session of the same user never sees it.
    let other = app.login("admin").await;
    app.post(&admin, &format!("/jobs/{id}/cancel"), &[]).await;
    let elsewhere = app.page(&other, "/").await;
    assert!(!elsewhere.contains("class=\"flash\""), "{elsewhere}");
    let mine = app.page(&admin, "/").await;
    assert!(mine.contains(&format!("Job #{id} was cancelled")), "{mine}");
}

#[tokio::test]
async fn the_deploy_question_is_its_own_address_so_back_never_resends_a_form() {
    let env = TestEnv::new();
    env.add_clubs(&["a", "b"]);
    env.ok(&["releases", "--fetch"]);
    let app = TestApp::spawn(env).await;
    let admin = app.login("admin").await;
    let form = app.page(&admin, "/deploy").await;
    assert!(
        form.contains("<form method=\"get\" action=\"/deploy/confirm\""),
        "{form}"
    );
    // The CSRF token is never put in an address.
    let start = form.find("action=\"/deploy/confirm\"").unwrap();
    let end = start + form[start..].find("</form>").unwrap();
    assert!(!form[start..end].contains("name=\"csrf\""), "{form}");
    // A posted question answers with a redirect to the same question as an address.
    let posted = app
        .post(
            &admin,
            "/deploy/confirm",
            &[
                ("tag", "v2"),
                ("target", "some"),
                ("clubs", "a"),
                ("clubs", "b"),
            ],
        )
        .await;
    assert_eq!(posted.status(), StatusCode::SEE_OTHER);
    let location = posted.headers()[LOCATION].to_str().unwrap().to_owned();
    assert!(
        location.starts_with("/deploy/confirm?") && location.contains("clubs=a&clubs=b"),
        "{location}"
    );
    let page = app.page(&admin, &location).await;
    assert!(page.contains("Deploy v2?"), "{page}");
    assert!(page.contains("2 clubs will move"), "{page}");
}

#[tokio::test]
async fn a_queued_job_says_what_it_waits_for() {
    let env = TestEnv::new();
    env.add_clubs(&["a"]);
    let app = TestApp::spawn(env).await;
    let admin = app.login("admin").await;
    let _held = app.hold_worker().await;
    app.queue_a_job();
    app.queue_a_job();
    let first = app.page(&admin, "/jobs/1").await;
    assert!(
        first.contains("It starts as soon as the worker takes it."),
        "{first}"
    );
    let second = app.page(&admin, "/jobs/2").await;
    assert!(
        second.contains("1 job queued before it runs first."),
        "{second}"
    );
    // Marked running by hand, as a worker would: the next one names it.
    db::jobs::claim_oldest(&mut app.pool.get().unwrap(), "test@here", db::now()).unwrap();
    let second = app.page(&admin, "/jobs/2").await;
    assert!(
        second.contains("It waits for job #1 (deploy v3 to all clubs (main)), running now."),
        "{second}"
    );
    let running = app.page(&admin, "/jobs/1").await;
    assert!(!running.contains("id=\"waiting\""), "{running}");
}

/// Issue 12 points 5 and 6: with 1,000 clubs the clubs list stays under 100 KB a page, finds
/// clubs by name, group and version; groups change through the panel (every club a filter
/// shows at once) and the command line, each change in the audit log; bad names and
/// unknown clubs are refused with nothing changed.
#[tokio::test]
async fn a_thousand_clubs_page_filter_and_group_with_every_change_audited() {
    let env = TestEnv::new();
    let mut csv = String::from("slug,name,url,webroot\n");
    for n in 0..1000 {
        let slug = format!("club-{n:04}");
        csv.push_str(&format!(
            "{slug},Club number {n},,{}\n",
            env.webroot(&slug).display()
        ));
    }
    let file = env.root.path().join("clubs.csv");
    std::fs::write(&file, csv).unwrap();
    env.ok(&["club", "import", file.to_str().unwrap()]);
    env.ok(&["club", "group", "canary", "club-0001", "club-0002"]);
    let app = TestApp::spawn(env).await;
    let admin = app.login("admin").await;

    let page = app.page(&admin, "/clubs").await;
    assert!(
        page.len() < 100_000,
        "the clubs page is {} bytes",
        page.len()
    );
    assert!(page.contains("1000 clubs; showing 1 to 50"), "{page}");
    assert!(page.contains("id=\"club-club-0049\"") && !page.contains("id=\"club-club-0050\""));
    let last = app.page(&admin, "/clubs?page=20").await;
    assert!(last.contains("showing 951 to 1000") && last.contains("id=\"club-club-0999\""));
    // A page past the end shows the last.
    assert!(
        app.page(&admin, "/clubs?page=99")
            .await
            .contains("showing 951 to 1000")
    );
    let found = app.page(&admin, "/clubs?q=NUMBER+77").await;
    assert!(found.contains("11 of 1000 clubs match"), "{found}");
    let canary = app.page(&admin, "/clubs?group=canary").await;
    assert!(canary.contains("2 of 1000 clubs match"), "{canary}");
    assert!(canary.contains("club-0001") && !canary.contains("club-0003"));
    // None runs anything yet.
    let on_v1 = app.page(&admin, "/clubs?release=v1").await;
    assert!(on_v1.contains("0 of 1000 clubs match"), "{on_v1}");

    // Every club a search shows joins a group in one go, and the list comes back.
    let response = app
        .post(
            &admin,
            "/groups",
            &[
                ("group", "region-east"),
                ("clubs", ""),
                ("shown", "1"),
                ("back", "/clubs?q=club-099"),
                ("action", "join"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "/clubs?q=club-099");
    let back = app.page(&admin, "/clubs?q=club-099").await;
    assert!(
        back.contains("10 clubs put in group region-east."),
        "{back}"
    );
    let east = app.page(&admin, "/clubs?group=region-east").await;
    assert!(east.contains("10 of 1000 clubs match"), "{east}");
    let left = app
        .post(
            &admin,
            "/groups",
            &[
                ("group", "region-east"),
                ("clubs", "club-0990, club-0991"),
                ("action", "leave"),
            ],
        )
        .await;
    assert_eq!(left.status(), StatusCode::SEE_OTHER);
    assert!(
        app.page(&admin, "/clubs")
            .await
            .contains("2 clubs taken out of group region-east.")
    );
    let groups: serde_json::Value =
        serde_json::from_str(&app.env.ok(&["club", "groups", "--json"])).unwrap();
    assert_eq!(
        groups["canary"],
        serde_json::json!(["club-0001", "club-0002"])
    );
    assert_eq!(groups["region-east"].as_array().unwrap().len(), 8);

    // Refused, nothing changed: a bad name, an unknown club, an outside address to go back to.
    for (fields, status, words) in [
        (
            vec![
                ("group", "Bad Name"),
                ("clubs", "club-0001"),
                ("action", "join"),
            ],
            StatusCode::BAD_REQUEST,
            "not a valid group name",
        ),
        (
            vec![
                ("group", "canary"),
                ("clubs", "club-0001, nope"),
                ("action", "join"),
            ],
            StatusCode::NOT_FOUND,
            "There is no club nope.",
        ),
    ] {
        let response = app.post(&admin, "/groups", &fields).await;
        assert_eq!(response.status(), status);
        assert!(response.text().await.unwrap().contains(words));
    }
    let response = app
        .post(
            &admin,
            "/groups",
            &[
                ("group", "canary"),
                ("clubs", "club-0003"),
                ("back", "https://evil.example/"),
                ("action", "join"),
            ],
        )
        .await;
    assert_eq!(response.headers()["location"], "/clubs");
    let groups: serde_json::Value =
        serde_json::from_str(&app.env.ok(&["club", "groups", "--json"])).unwrap();
    assert_eq!(
        groups["canary"],
        serde_json::json!(["club-0001", "club-0002", "club-0003"])
    );

    // The audit log tells each change, in words and as codes.
    let audit = app.page(&admin, "/audit?action=group.joined").await;
    assert!(
        audit.contains("admin put Club number 995 in group region-east"),
        "{audit}"
    );
    let csv = app.page(&admin, "/audit.csv?action=group.left").await;
    assert_eq!(
        csv.lines().filter(|l| l.contains("group.left")).count(),
        2,
        "{csv}"
    );
    // The chain still verifies (the command fails otherwise).
    app.env.ok(&["audit", "verify"]);
}

/// Issue 13 point 5: the doctor runs when the panel starts; while it finds a problem every
/// member of staff sees it on the dashboard, and admins see every finding with its fix, and
/// can check again once it is fixed.
#[tokio::test]
async fn the_dashboard_shows_the_doctors_problems_until_an_admin_checks_again() {
    let mut env = env_with_clubs();
    env.ok(&["deploy", "v1", "--all"]);
    // Apache's configuration "breaks" while this file exists.
    let broken = env.root.path().join("broken");
    env.config.configtest = crate::helpers::sh(&format!(
        "if test -e {0}; then echo 'Syntax error on line 3 of sites.conf' >&2; exit 1; fi",
        broken.display()
    ));
    env.config.doctor_every_secs = 3600;
    env.configure();
    std::fs::write(&broken, "").unwrap();
    let app = TestApp::spawn(env).await;
    let viewer = app.login("viewer").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let dashboard = loop {
        let page = app.page(&viewer, "/").await;
        if page.contains("id=\"doctor-banner\"") {
            break page;
        }
        assert!(Instant::now() < deadline, "no banner:\n{page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        dashboard.contains("The installation check found 1 problem</strong>"),
        "{dashboard}"
    );
    assert!(
        dashboard.contains("the configuration test fails"),
        "{dashboard}"
    );
    assert!(dashboard.contains("Tell an administrator."), "{dashboard}");
    let refused = viewer.get(app.url("/doctor")).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);

    let admin = app.login("admin").await;
    let report = app.page(&admin, "/doctor").await;
    assert!(
        report.contains("1 problem, 1 warning") || report.contains("1 problem, 2 warnings"),
        "{report}"
    );
    assert!(
        report.contains("Syntax error on line 3 of sites.conf"),
        "{report}"
    );
    assert!(
        report.contains("fix Apache&#39;s configuration until `apachectl configtest` passes"),
        "{report}"
    );

    // Fixed, and checked again: the banner goes.
    std::fs::remove_file(&broken).unwrap();
    let again = app.post(&admin, "/doctor", &[]).await;
    assert_eq!(again.status(), StatusCode::SEE_OTHER);
    let report = app.page(&admin, "/doctor").await;
    assert!(report.contains("Checked again: 0 problems"), "{report}");
    assert!(!app.page(&viewer, "/").await.contains("doctor-banner"));
    // Checking again is an admin's: a viewer is refused.
    let refused = app.post(&viewer, "/doctor", &[]).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
}

/// The `data:` of every `log` event in a stream's body, parsed.
fn logged(body: &str) -> Vec<serde_json::Value> {
    body.split("event: log\ndata: ")
        .skip(1)
        .map(|chunk| serde_json::from_str(chunk.lines().next().unwrap()).unwrap())
        .collect()
}

#[tokio::test]
async fn progress_is_counted_for_the_whole_job_across_waves_and_a_stream_resumes_from_last_event_id()
 {
    let mut env = TestEnv::new();
    env.config.tables.push((
        "rollout".into(),
        vec!["canary = [\"c\"]".into(), "batch_size = 2".into()],
    ));
    env.configure();
    env.add_clubs(&["a", "b", "c", "d", "e"]);
    env.ok(&["deploy", "v1", "--all"]);
    let app = TestApp::spawn(env).await;
    let viewer = app.login("viewer").await;
    let stream = |client: reqwest::Client, last: Option<i64>| {
        let url = app.url("/jobs/1/events");
        async move {
            let mut request = client.get(url);
            if let Some(last) = last {
                request = request.header("Last-Event-ID", last.to_string());
            }
            let response = request.send().await.unwrap();
            tokio::time::timeout(Duration::from_secs(30), response.text())
                .await
                .expect("the stream ended")
                .unwrap()
        }
    };
    let events = logged(&stream(viewer.clone(), None).await);
    // Three waves (c; a, b; d, e), one count of all five clubs: it never starts again.
    let counts: Vec<(i64, i64)> = events
        .iter()
        .filter(|e| e["done"].is_number())
        .map(|e| (e["done"].as_i64().unwrap(), e["total"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        counts,
        [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)],
        "{events:?}"
    );
    // Events that count nothing carry no numbers.
    let step = events.iter().find(|e| e["kind"] == "step").unwrap();
    assert!(step["done"].is_null(), "{step}");
    // A browser reconnecting with Last-Event-ID gets only what came after it.
    let third = events.iter().find(|e| e["done"] == 3).unwrap()["id"]
        .as_i64()
        .unwrap();
    let resumed = logged(&stream(viewer, Some(third)).await);
    assert!(!resumed.is_empty());
    assert!(
        resumed.iter().all(|e| e["id"].as_i64().unwrap() > third),
        "{resumed:?}"
    );
    assert_eq!(
        resumed.len(),
        events
            .iter()
            .filter(|e| e["id"].as_i64().unwrap() > third)
            .count()
    );
}
