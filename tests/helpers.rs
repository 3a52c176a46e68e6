//! A test environment: a git repository with tags made by the test, a webroot base, a data
//! directory, a configuration file, and the `clubdeploy` binary run against them.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use git2::{Repository, Signature};
use tempfile::TempDir;

/// The tags every fixture repository has; each tag's `index.php` prints its name.
pub const TAGS: [&str; 3] = ["v1", "v2", "v3"];

/// What the configuration file says; tests change fields before [`TestEnv::configure`].
#[derive(Clone)]
pub struct Config {
    pub repo_url: String,
    pub keep_releases: usize,
    pub prune_grace_secs: u64,
    pub policy: &'static str,
    pub build_commands: Vec<Vec<String>>,
    pub check: Option<Vec<String>>,
    /// `[build] env`: variables passed on to build commands.
    pub build_env: Vec<String>,
    /// More `[build]` lines (`timeout_secs = 1`).
    pub build_limits: Vec<String>,
    pub configtest: Vec<String>,
    pub reload: Vec<String>,
    /// `reload.vhosts` (what lists Apache's virtual hosts, for `doctor`); none here.
    pub vhosts: Vec<String>,
    /// `[web] doctor_every_secs`: 0 here (the doctor's configtest would write to `events`).
    pub doctor_every_secs: u64,
    pub session_idle_secs: u64,
    pub cookie_secure: bool,
    /// The reload's settling time; 0 here, since the default reload only logs.
    pub settle_ms: u64,
    /// Lines of the `[git]` table (`key = value`), if any.
    pub git: Vec<String>,
    /// Lines of the `[web]` table (`key = value`), if any.
    pub web: Vec<String>,
    /// More applications besides `main` (the top-level `repo_url`): name and repository.
    pub apps: Vec<(String, String)>,
    /// More tables: name (`health`, `rollout` …) and their `key = value` lines.
    pub tables: Vec<(String, Vec<String>)>,
}

/// A temporary world for one test.
pub struct TestEnv {
    pub root: TempDir,
    pub data: PathBuf,
    pub www: PathBuf,
    pub config_path: PathBuf,
    /// A log the default configtest and reload commands append to, one line each.
    pub events: PathBuf,
    pub config: Config,
    /// Environment variables every `clubdeploy` command gets.
    pub vars: Vec<(String, String)>,
    /// The fixture repository on disk (whatever URL `repo_url` reaches it by).
    pub app: PathBuf,
}

/// A shell command as an argv list.
pub fn sh(script: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script.into()]
}

impl TestEnv {
    /// A repository with tags v1..v3, an empty webroot base and a default configuration:
    /// reload policy `always`, no grace, configtest and reload that only log.
    pub fn new() -> TestEnv {
        let root = tempfile::tempdir().expect("tempdir");
        let base = root.path().canonicalize().unwrap();
        let repo = base.join("app");
        let www = base.join("www");
        std::fs::create_dir_all(&www).unwrap();
        make_repo(&repo);
        let events = base.join("events.log");
        let config = Config {
            repo_url: repo.display().to_string(),
            keep_releases: 2,
            prune_grace_secs: 0,
            policy: "always",
            build_commands: Vec::new(),
            check: None,
            build_env: Vec::new(),
            build_limits: Vec::new(),
            configtest: sh(&format!("echo configtest >> {}", events.display())),
            reload: sh(&format!("echo reload >> {}", events.display())),
            vhosts: Vec::new(),
            doctor_every_secs: 0,
            session_idle_secs: 1800,
            cookie_secure: false,
            settle_ms: 0,
            git: Vec::new(),
            web: Vec::new(),
            apps: Vec::new(),
            tables: Vec::new(),
        };
        let env = TestEnv {
            data: base.join("data"),
            config_path: base.join("clubdeploy.toml"),
            root,
            www,
            events,
            config,
            vars: Vec::new(),
            app: repo,
        };
        env.configure();
        env
    }

    /// Writes `self.config` to the configuration file.
    pub fn configure(&self) {
        let c = &self.config;
        let argv = |v: &Vec<String>| format!("{v:?}");
        let mut text = format!(
            "data_dir = {:?}\nrepo_url = {:?}\nwebroot_base = {:?}\nkeep_releases = {}\n\
             prune_grace_secs = {}\nlisten = \"127.0.0.1:0\"\nsession_idle_secs = {}\n\
             cookie_secure = {}\n[build]\ncommands = [{}]\n",
            self.data.display().to_string(),
            c.repo_url,
            self.www.display().to_string(),
            c.keep_releases,
            c.prune_grace_secs,
            c.session_idle_secs,
            c.cookie_secure,
            c.build_commands
                .iter()
                .map(argv)
                .collect::<Vec<_>>()
                .join(", "),
        );
        if let Some(check) = &c.check {
            writeln!(text, "check = {}", argv(check)).unwrap();
        }
        writeln!(text, "env = {:?}", c.build_env).unwrap();
        for line in &c.build_limits {
            writeln!(text, "{line}").unwrap();
        }
        write!(
            text,
            "[reload]\npolicy = {:?}\nconfigtest = {}\ncommand = {}\nvhosts = {}\n\
             realpath_cache_ttl_secs = 1\nsettle_ms = {}\n",
            c.policy,
            argv(&c.configtest),
            argv(&c.reload),
            argv(&c.vhosts),
            c.settle_ms
        )
        .unwrap();
        if !c.git.is_empty() {
            writeln!(text, "[git]\n{}", c.git.join("\n")).unwrap();
        }
        writeln!(
            text,
            "[web]\ndoctor_every_secs = {}\n{}",
            c.doctor_every_secs,
            c.web.join("\n")
        )
        .unwrap();
        for (name, lines) in &c.tables {
            writeln!(text, "[{name}]\n{}", lines.join("\n")).unwrap();
        }
        for (name, repo_url) in &c.apps {
            writeln!(text, "[apps.{name}]\nrepo_url = {repo_url:?}").unwrap();
        }
        std::fs::write(&self.config_path, text).unwrap();
    }

    /// Runs `clubdeploy --config <file> args…`.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run clubdeploy")
    }

    /// The command, not yet started.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_clubdeploy"));
        command
            .arg("--config")
            .arg(&self.config_path)
            .args(args)
            .env_remove("CLUBDEPLOY_CONFIG")
            .envs(self.vars.iter().map(|(k, v)| (k, v)))
            .current_dir(self.root.path());
        command
    }

    /// Runs `args` with a crash injected at `point` (`CLUBDEPLOY_CRASH_AT`), asserting the
    /// process aborted there.
    pub fn crash_at(&self, args: &[&str], point: &str) {
        use std::os::unix::process::ExitStatusExt;
        let out = self
            .command(args)
            .env("CLUBDEPLOY_CRASH_AT", point)
            .output()
            .unwrap();
        assert_eq!(
            out.status.signal(),
            Some(6),
            "{args:?} did not abort at {point}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs a command that must succeed; returns its standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "clubdeploy {args:?} failed:\n{stdout}\n{stderr}"
        );
        stdout
    }

    /// Runs a command that must fail with a one-line error; returns that line.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !out.status.success(),
            "clubdeploy {args:?} succeeded:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "expected a one-line error, got:\n{stderr}");
        assert!(lines[0].starts_with("error: "), "{stderr}");
        lines[0].to_owned()
    }

    /// Adds clubs whose webroots are `<www>/<slug>/htdocs`.
    pub fn add_clubs(&self, slugs: &[&str]) {
        for slug in slugs {
            self.add_club(slug, &[]);
        }
    }

    /// Adds club `slug` at its webroot, with `more` options of `club add` (`--name …`).
    pub fn add_club(&self, slug: &str, more: &[&str]) {
        let webroot = self.webroot(slug);
        let mut args = vec!["club", "add", slug, "--webroot", webroot.to_str().unwrap()];
        args.extend(more);
        self.ok(&args);
    }

    /// Queues a put-back of every club deploy job `job` switched (of `main`), as the panel's
    /// Put back does, without working it: the next command that queues a job works it first.
    pub fn queue_put_back(&self, job: i32) {
        let settings = clubdeploy::config::Settings::load(&self.config_path).unwrap();
        let pool = clubdeploy::db::open(&settings.database_path()).unwrap();
        let spec = clubdeploy::domain::JobSpec::PutBack {
            app: clubdeploy::domain::AppName::main(),
            job,
            clubs: None,
        };
        clubdeploy::jobs::enqueue::enqueue(&mut pool.get().unwrap(), &spec, "test", None).unwrap();
    }

    /// `<www>/<slug>/htdocs`.
    pub fn webroot(&self, slug: &str) -> PathBuf {
        self.www.join(slug).join("htdocs")
    }

    /// The directory a club's webroot resolves to (what Apache and OPcache see).
    pub fn realpath(&self, slug: &str) -> PathBuf {
        self.webroot(slug).canonicalize().expect("webroot resolves")
    }

    /// The release directory name a club's webroot resolves to.
    pub fn release_of(&self, slug: &str) -> String {
        let real = self.realpath(slug);
        assert_eq!(real.parent().unwrap(), self.releases_dir());
        real.file_name().unwrap().to_str().unwrap().to_owned()
    }

    /// What `index.php` of a club's current release says.
    pub fn served(&self, slug: &str) -> String {
        std::fs::read_to_string(self.webroot(slug).join("index.php")).unwrap()
    }

    /// `<data>/releases`.
    pub fn releases_dir(&self) -> PathBuf {
        self.data.join("releases")
    }

    /// Every entry of the releases directory, hidden ones too, sorted.
    pub fn release_entries(&self) -> Vec<String> {
        entries(&self.releases_dir())
    }

    /// The lines the configtest and reload commands logged.
    pub fn events(&self) -> Vec<String> {
        std::fs::read_to_string(&self.events)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The commit a tag points to in the fixture repository.
    pub fn commit_of(&self, tag: &str) -> String {
        let repo = Repository::open(&self.app).unwrap();
        let commit = repo.revparse_single(tag).unwrap().peel_to_commit().unwrap();
        commit.id().to_string()
    }

    /// The release name `<tag>-<sha8>` of a fixture tag.
    pub fn release_name(&self, tag: &str) -> String {
        format!("{tag}-{}", &self.commit_of(tag)[..8])
    }

    /// Adds an application `name` besides `main`: a repository of its own (tags v1 and v2,
    /// whose `index.php` prints "<name> v1" …) configured as `[apps.<name>]`. Returns the
    /// repository's path.
    pub fn add_app(&mut self, name: &str) -> PathBuf {
        let path = self
            .root
            .path()
            .canonicalize()
            .unwrap()
            .join(format!("{name}-app"));
        let repo = Repository::init(&path).unwrap();
        let sig = Signature::now("Test", "test@example.invalid").unwrap();
        let mut parent = None;
        for tag in ["v1", "v2"] {
            std::fs::write(
                path.join("index.php"),
                format!("<?php echo '{name} {tag}';\n"),
            )
            .unwrap();
            parent = Some(commit_all_and_tag(
                &repo,
                &sig,
                parent,
                tag,
                &format!("{name} {tag}"),
            ));
        }
        self.config
            .apps
            .push((name.to_owned(), path.display().to_string()));
        self.configure();
        path
    }

    /// `<data>/apps/<app>/releases`: where an application other than `main` keeps its releases.
    pub fn app_releases_dir(&self, app: &str) -> PathBuf {
        self.data.join("apps").join(app).join("releases")
    }

    /// Adds a tag `tag` to the fixture repository: `files` (path, content) written on top of
    /// the newest commit.
    pub fn tag(&self, tag: &str, files: &[(&str, &str)]) {
        let repo = Repository::open(&self.app).unwrap();
        for (path, content) in files {
            let path = self.app.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
        let parent = repo.head().unwrap().peel_to_commit().unwrap().id();
        let sig = Signature::now("Test", "test@example.invalid").unwrap();
        commit_all_and_tag(&repo, &sig, Some(parent), tag, &format!("release {tag}"));
    }

    /// Adds `tags` after v3, each with an `index.php` that prints its name.
    pub fn more_tags(&self, tags: &[&str]) {
        for tag in tags {
            self.tag(
                tag,
                &[("index.php", &format!("<?php echo 'version {tag}';\n"))],
            );
        }
    }

    /// `club list --json`, parsed.
    pub fn clubs_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["club", "list", "--json"])).unwrap()
    }
}

/// Sorted names in a directory (none when it does not exist).
pub fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// A PHP application repository with an annotated tag per entry of [`TAGS`].
fn make_repo(path: &Path) {
    let repo = Repository::init(path).unwrap();
    let sig = Signature::now("Test", "test@example.invalid").unwrap();
    let mut parent = None;
    for (n, tag) in TAGS.iter().enumerate() {
        let files = [
            (
                "index.php".to_owned(),
                format!("<?php echo 'version {tag}';\n"),
            ),
            (
                "lib/Util.php".to_owned(),
                format!("<?php class Util {{ const N = {n}; }}\n"),
            ),
            (format!("lib/only-in-{tag}.php"), "<?php\n".to_owned()),
            ("bin/tool".to_owned(), "#!/bin/sh\necho tool\n".to_owned()),
        ];
        let workdir = repo.workdir().unwrap().to_path_buf();
        // Each tag has its own lib/only-in-<tag>.php: start lib/ afresh.
        let _ = std::fs::remove_dir_all(workdir.join("lib"));
        for (name, body) in &files {
            let file = workdir.join(name);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(&file, body).unwrap();
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            workdir.join("bin/tool"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        let _ = std::fs::remove_file(workdir.join("current"));
        std::os::unix::fs::symlink("index.php", workdir.join("current")).unwrap();
        let id = commit_all_and_tag(&repo, &sig, parent, tag, &format!("release {tag}"));
        parent = Some(id);
    }
}

/// Commits everything in the work tree of `repo` (files gone from it are dropped) on top of
/// `parent`, and tags the commit with an annotated `tag`; returns the commit.
pub fn commit_all_and_tag(
    repo: &Repository,
    sig: &Signature<'_>,
    parent: Option<git2::Oid>,
    tag: &str,
    message: &str,
) -> git2::Oid {
    let id = commit_all(repo, sig, parent, message);
    let object = repo.find_object(id, None).unwrap();
    repo.tag(tag, &object, sig, &format!("deploy tag {tag}"), false)
        .unwrap();
    id
}

/// Commits everything in the work tree of `repo` (files gone from it are dropped) on top of
/// `parent`; returns the commit.
pub fn commit_all(
    repo: &Repository,
    sig: &Signature<'_>,
    parent: Option<git2::Oid>,
    message: &str,
) -> git2::Oid {
    let mut index = repo.index().unwrap();
    index.clear().unwrap();
    index
        .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
        .unwrap();
    index.write().unwrap();
    let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
    let parents: Vec<git2::Commit<'_>> = parent
        .iter()
        .map(|id| repo.find_commit(*id).unwrap())
        .collect();
    let parent_refs: Vec<&git2::Commit<'_>> = parents.iter().collect();
    repo.commit(Some("HEAD"), sig, sig, message, &tree, &parent_refs)
        .unwrap()
}

/// Whether an end-to-end test can run: each `(path, Debian package)` must exist. Outside CI a
/// missing one makes the test skip, saying loudly what to install; with `CI=true` it fails.
pub fn installed<P: AsRef<Path>>(what: &str, needs: &[(P, &str)]) -> bool {
    let mut missing: Vec<&str> = needs
        .iter()
        .filter(|(path, _)| !path.as_ref().exists())
        .map(|(_, package)| *package)
        .collect();
    missing.dedup();
    if missing.is_empty() {
        return true;
    }
    skip(&format!(
        "{what} SKIPPED: missing {}; install with `apt-get install {}` (the README's test \
         command does this as root on Debian)",
        missing.join(", "),
        missing.join(" ")
    ));
    false
}

/// Says loudly that a test is skipped and why: on standard error and in the skip log that
/// `scripts/test.sh` prints in its closing lines (outside libtest's capture). Under `CI=true`
/// a skip is a failure.
pub fn skip(message: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{message}; CI must not skip it");
    }
    eprintln!("\n*** {message} ***\n");
    if let Ok(log) = std::env::var("SKIPPED_TESTS_LOG") {
        use std::io::Write;
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            let _ = writeln!(file, "{}", message.replace('\n', " "));
        }
    }
}

/// A loopback port that was free a moment ago.
/// Runs `command` to its end, asserting that it succeeded (showing its stderr otherwise);
/// its output.
pub fn succeeded(command: &mut Command) -> Output {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits (at most 20 s) until a server that daemonized has written its pid file and listens
/// on `port`; returns its pid. `log` says what went wrong, for the failure message.
pub fn wait_until_serving(pid_file: &Path, port: u16, log: impl Fn() -> String) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let pid = std::fs::read_to_string(pid_file)
            .ok()
            .and_then(|text| text.trim().parse::<u32>().ok());
        let listening = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
        if let (Some(pid), true) = (pid, listening) {
            return pid;
        }
        assert!(
            Instant::now() < deadline,
            "{} did not listen on {port} and write its pid file: {}",
            pid_file.display(),
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stops a server by its pid: SIGTERM (Apache and sshd stop their children on it), then
/// waits for it to go, with SIGKILL after 10 s, so its port and shared memory are released.
pub fn stop_process(pid: u32) {
    let alive = || Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid);
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .output();
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if alive() {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .output();
    }
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            stat.rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('Z'))
        })
        .unwrap_or(true)
}
