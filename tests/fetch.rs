//! Fetching from real servers on loopback: an OpenSSH server with a deploy key (ssh://, a
//! `~/.ssh/config` Host alias, unknown and changed host keys, a refused key), Apache with
//! `git http-backend` behind TLS and basic auth (a token in `repo_url` that must never leak),
//! a remote that never answers (timeout), and git's progress in the job log.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::apache::{self, GitHttps};
use crate::helpers::{TestEnv, entries};
use crate::sshd::{self, Sshd};

/// How long a refused fetch may take at most: it must fail fast, never hang a job.
const FAST: Duration = Duration::from_secs(15);

fn quoted(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}

/// An environment with clubs a and b whose repository is served by a fresh sshd.
fn ssh_world() -> Option<(TestEnv, Sshd, PathBuf)> {
    if !sshd::available() {
        return None;
    }
    let mut env = TestEnv::new();
    env.add_clubs(&["a", "b"]);
    let sshd = Sshd::start(&env.root.path().join("sshd"));
    let known_hosts = env.root.path().join("known_hosts");
    std::fs::write(&known_hosts, format!("{}\n", sshd.known_hosts_line)).unwrap();
    env.config.repo_url = sshd.url(&env.app);
    env.config.git = vec![
        format!("ssh_key = {}", quoted(&sshd.deploy_key)),
        format!("known_hosts = {}", quoted(&known_hosts)),
    ];
    env.configure();
    Some((env, sshd, known_hosts))
}

/// Nothing was fetched, built or switched.
fn assert_nothing_changed(env: &TestEnv) {
    assert!(!env.webroot("a").exists() && !env.webroot("b").exists());
    let releases: Vec<String> = env
        .release_entries()
        .into_iter()
        .filter(|e| !e.starts_with('.'))
        .collect();
    assert_eq!(releases, Vec::<String>::new());
    let tags: serde_json::Value = serde_json::from_str(&env.ok(&["releases", "--json"])).unwrap();
    assert_eq!(tags, serde_json::json!([]), "the mirror learnt tags");
}

#[test]
fn fetch_and_deploy_over_ssh_with_a_deploy_key_and_known_hosts() {
    let Some((env, _sshd, _)) = ssh_world() else {
        return;
    };
    let out = env.ok(&["deploy", "v2", "--all"]);
    assert!(out.contains("fetching tags from ssh://"), "{out}");
    assert_eq!(env.release_of("a"), env.release_name("v2"));
    assert_eq!(env.release_of("b"), env.release_name("v2"));
    let tags: Vec<serde_json::Value> =
        serde_json::from_str(&env.ok(&["releases", "--json"])).unwrap();
    let names: Vec<&str> = tags.iter().map(|t| t["tag"].as_str().unwrap()).collect();
    assert_eq!(names, ["v1", "v2", "v3"]);
}

#[test]
fn fetch_through_an_ssh_config_host_alias() {
    let Some((mut env, sshd, known_hosts)) = ssh_world() else {
        return;
    };
    // ssh reads the real home directory's config, not $HOME's: name the file with -F.
    let ssh_config = env.root.path().join("ssh_config");
    std::fs::write(
        &ssh_config,
        format!(
            "Host clubgit\n  HostName 127.0.0.1\n  Port {}\n  User {}\n  IdentityFile {}\n  \
             IdentitiesOnly yes\n  UserKnownHostsFile {}\n",
            sshd.port,
            sshd.user,
            sshd.deploy_key.display(),
            known_hosts.display()
        ),
    )
    .unwrap();
    env.config.repo_url = format!("clubgit:{}", env.app.display());
    env.config.git = Vec::new();
    env.configure();
    env.vars.push((
        "GIT_SSH_COMMAND".into(),
        format!("ssh -F {}", ssh_config.display()),
    ));
    env.ok(&["deploy", "v1", "--club", "a"]);
    assert_eq!(env.release_of("a"), env.release_name("v1"));
    assert!(!env.webroot("b").exists());
}

#[test]
fn unknown_or_changed_host_keys_and_a_refused_key_fail_fast_and_change_nothing() {
    let Some((mut env, sshd, known_hosts)) = ssh_world() else {
        return;
    };
    let port = sshd.port.to_string();
    let keyscan = format!(
        "ssh-keyscan -p {port} 127.0.0.1 >> {}",
        known_hosts.display()
    );
    let attempt = |env: &TestEnv| {
        let started = Instant::now();
        let error = env.fails(&["deploy", "v1", "--all"]);
        assert!(
            started.elapsed() < FAST,
            "took {:?}: {error}",
            started.elapsed()
        );
        assert_nothing_changed(env);
        error
    };

    std::fs::write(&known_hosts, "").unwrap();
    let error = attempt(&env);
    assert!(error.contains("SSH host key of 127.0.0.1 (port"), "{error}");
    assert!(error.contains("is not known yet"), "{error}");
    assert!(error.contains(&keyscan), "{error}");

    let other = env.root.path().join("other_host_key");
    let other_public = sshd::keygen(&other);
    let key: Vec<&str> = other_public.split_whitespace().take(2).collect();
    std::fs::write(
        &known_hosts,
        format!("[127.0.0.1]:{port} {}\n", key.join(" ")),
    )
    .unwrap();
    let error = attempt(&env);
    assert!(error.contains("has CHANGED"), "{error}");
    assert!(error.contains(&keyscan), "{error}");

    std::fs::write(&known_hosts, format!("{}\n", sshd.known_hosts_line)).unwrap();
    let stranger = env.root.path().join("stranger_key");
    sshd::keygen(&stranger);
    env.config.git[0] = format!("ssh_key = {}", quoted(&stranger));
    env.configure();
    let error = attempt(&env);
    assert!(error.contains("refused the deploy key"), "{error}");
    assert!(error.contains(&stranger.display().to_string()), "{error}");

    // The same server and known_hosts with the right key: it was only the key.
    env.config.git[0] = format!("ssh_key = {}", quoted(&sshd.deploy_key));
    env.configure();
    env.ok(&["deploy", "v1", "--all"]);
    assert_eq!(env.release_of("a"), env.release_name("v1"));
}

/// Records every process command line on the machine that holds `needle`, while running.
struct ArgvWatch {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<String>>>,
}

impl ArgvWatch {
    fn start(needle: &str) -> ArgvWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let needle = needle.as_bytes().to_vec();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut seen = Vec::new();
            // Bounded: at most 10 minutes of sampling.
            let deadline = Instant::now() + Duration::from_secs(600);
            while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
                for entry in std::fs::read_dir("/proc").unwrap().flatten() {
                    let Ok(argv) = std::fs::read(entry.path().join("cmdline")) else {
                        continue;
                    };
                    if argv.windows(needle.len()).any(|w| w == needle) {
                        seen.push(String::from_utf8_lossy(&argv).replace('\0', " "));
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            seen
        });
        ArgvWatch {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                let bytes = std::fs::read(entry.path()).unwrap();
                if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    found.push(entry.path());
                }
            }
        }
    }
    found
}

/// `clubdeploy serve` as a child process with the environment's variables; killed on drop.
struct Served {
    child: std::process::Child,
    base: String,
}

impl Served {
    fn start(env: &TestEnv) -> Served {
        let mut child = env
            .command(&["serve"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let line = BufReader::new(child.stdout.take().unwrap())
            .lines()
            .map(Result::unwrap)
            .find(|l| l.starts_with("clubdeploy panel on "))
            .expect("the panel's address");
        let base = line
            .trim_start_matches("clubdeploy panel on ")
            .split_whitespace()
            .next()
            .unwrap()
            .trim_end_matches('/')
            .to_owned();
        Served { child, base }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn fetch_and_deploy_over_https_with_a_token_that_never_leaks() {
    if !apache::git_https_available() {
        return;
    }
    let mut env = TestEnv::new();
    env.add_clubs(&["a", "b"]);
    let token = format!("tok{}", rand_hex());
    let server = GitHttps::start(env.root.path(), &env.app, "deploy", &token);
    env.config.repo_url = server.url(&format!("deploy:{token}@"));
    env.configure();
    // A wrapper first on PATH records the argv clubdeploy gives git.
    let bin = env.root.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let argv_log = env.root.path().join("git-argv.log");
    let real_git = String::from_utf8(
        std::process::Command::new("sh")
            .args(["-c", "command -v git"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    std::fs::write(
        bin.join("git"),
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> {}\nexec {} \"$@\"\n",
            argv_log.display(),
            real_git.trim()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(bin.join("git"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    env.vars.push(("PATH".into(), path));
    env.vars
        .push(("GIT_SSL_CAINFO".into(), server.ca.display().to_string()));

    let watch = ArgvWatch::start(&token);
    env.ok(&["deploy", "v1", "--all"]);
    assert_eq!(env.release_of("a"), env.release_name("v1"));
    let releases = env.ok(&["releases", "--fetch", "--json"]);
    // The panel: sign in, press Refresh (a fetch job run by the server), read every page.
    let pages = {
        let mut add = env
            .command(&[
                "user",
                "add",
                "admin",
                "--role",
                "admin",
                "--password-stdin",
            ])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        add.stdin
            .take()
            .unwrap()
            .write_all(b"correct horse battery staple\n")
            .unwrap();
        assert!(add.wait().unwrap().success());
        panel_pages(&env)
    };
    // A wrong token: refused, and shown redacted.
    env.config.repo_url = server.url("deploy:wrong-secret-123@");
    env.configure();
    let refused = env.fails(&["releases", "--fetch"]);
    assert!(
        refused.contains("refused the user name and password"),
        "{refused}"
    );
    assert!(
        refused.contains("https://deploy:***@127.0.0.1"),
        "{refused}"
    );
    assert!(!refused.contains("wrong-secret-123"), "{refused}");
    env.config.repo_url = server.url(&format!("deploy:{token}@"));
    env.configure();
    let outputs = [
        releases,
        env.ok(&["status", "--json"]),
        env.ok(&["club", "list", "--json"]),
        env.ok(&["jobs", "--json"]),
        env.ok(&["job", "1", "--json"]),
        env.ok(&["job", "2", "--json"]),
        env.ok(&["job", "3", "--json"]),
        env.ok(&["job", "4", "--json"]),
        env.ok(&["audit", "--json", "--limit", "1000"]),
        env.ok(&["audit"]),
        pages.join("\n"),
    ];
    let seen_in_argv = watch.finish();

    for (n, output) in outputs.iter().enumerate() {
        assert!(
            !output.contains(&token),
            "output {n} shows the token:\n{output}"
        );
    }
    let job_log = env.ok(&["job", "1", "--json"]);
    assert!(
        job_log.contains("https://deploy:***@127.0.0.1"),
        "{job_log}"
    );
    assert!(
        files_containing(&env.data, &token).is_empty(),
        "the token is stored in {:?}",
        files_containing(&env.data, &token)
    );
    assert_eq!(
        seen_in_argv,
        Vec::<String>::new(),
        "the token was in an argv"
    );
    let argv = std::fs::read_to_string(&argv_log).unwrap();
    assert!(argv.contains("fetch"), "{argv}");
    assert!(argv.contains("https://deploy@127.0.0.1"), "{argv}");
    assert!(!argv.contains(&token), "{argv}");
}

/// Signs in to a served panel as admin, refreshes the tags through the Releases page, and
/// returns the text of every page a member of staff can open.
fn panel_pages(env: &TestEnv) -> Vec<String> {
    let served = Served::start(env);
    let client = reqwest::blocking::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let url = |path: &str| format!("{}{path}", served.base);
    let login = client.get(url("/login")).send().unwrap().text().unwrap();
    let csrf = crate::web::csrf_of(&login);
    let signed_in = client
        .post(url("/login"))
        .form(&[
            ("name", "admin"),
            ("password", "correct horse battery staple"),
            ("csrf", &csrf),
        ])
        .send()
        .unwrap();
    assert_eq!(signed_in.status().as_u16(), 303);
    let releases = client.get(url("/releases")).send().unwrap().text().unwrap();
    let refresh = client
        .post(url("/releases/refresh"))
        .form(&[("csrf", crate::web::csrf_of(&releases))])
        .send()
        .unwrap();
    assert_eq!(refresh.status().as_u16(), 303);
    let job = refresh.headers()["location"].to_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let page = client.get(url(&job)).send().unwrap().text().unwrap();
        if page.contains("succeeded") {
            break;
        }
        assert!(!page.contains(">failed<"), "{page}");
        assert!(
            Instant::now() < deadline,
            "the fetch job did not end: {page}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut pages = Vec::new();
    for path in [
        "/",
        "/clubs",
        "/releases",
        "/deploy",
        "/jobs",
        "/jobs/1",
        "/jobs/2",
        "/jobs/3",
        "/audit",
        "/audit.csv",
        "/staff",
        job.as_str(),
        &format!("{job}/events?after=0"),
    ] {
        let response = client.get(url(path)).send().unwrap();
        assert_eq!(response.status().as_u16(), 200, "{path}");
        pages.push(response.text().unwrap());
    }
    pages
}

fn rand_hex() -> String {
    use std::fmt::Write;
    let bytes: [u8; 12] = rand::random();
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[test]
fn a_remote_that_never_answers_times_out_with_a_clear_error_and_changes_nothing() {
    let mut env = TestEnv::new();
    env.add_clubs(&["a", "b"]);
    // A server that accepts connections and never says a word (for at most 60 s).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let silent = std::thread::spawn(move || {
        let mut held = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
            if let Ok((stream, _)) = listener.accept() {
                held.push(stream);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        held.len()
    });
    env.config.repo_url = format!("https://127.0.0.1:{port}/app.git");
    env.config.git = vec!["timeout_secs = 2".into()];
    env.configure();
    let started = Instant::now();
    let error = env.fails(&["deploy", "v1", "--all"]);
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let connections = silent.join().unwrap();
    assert!(connections >= 1, "git never connected");
    assert!(
        took >= Duration::from_secs(2) && took < FAST,
        "took {took:?}: {error}"
    );
    assert!(error.contains("did not finish within 2 s"), "{error}");
    assert!(error.contains("nothing was changed"), "{error}");
    assert_nothing_changed(&env);
    let leftovers: Vec<String> = walk_names(&env.data.join("repo.git"))
        .into_iter()
        .filter(|n| n.ends_with(".lock") || n.starts_with("tmp_"))
        .collect();
    assert_eq!(leftovers, Vec::<String>::new());
    // The job's log says so too.
    let job: serde_json::Value = serde_json::from_str(&env.ok(&["job", "1", "--json"])).unwrap();
    assert_eq!(job["status"], "failed");
    assert!(
        job["error"].as_str().unwrap().contains("timeout_secs"),
        "{job}"
    );
}

fn walk_names(dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for name in entries(&dir) {
            let path = dir.join(&name);
            if path.is_dir() {
                pending.push(path);
            }
            names.push(name);
        }
    }
    names
}

#[test]
fn a_fetch_reports_gits_progress_in_the_job_log() {
    let mut env = TestEnv::new();
    // A larger repository: 160 files, 5 MiB that does not compress. git reports receiving
    // a pack from 100 objects on (fetch.unpackLimit); fewer are unpacked silently.
    let repo = git2::Repository::open(&env.app).unwrap();
    let work = repo.workdir().unwrap().to_path_buf();
    std::fs::create_dir_all(work.join("assets")).unwrap();
    for n in 0..160 {
        let bytes: Vec<u8> = (0..32768).map(|_| rand::random::<u8>()).collect();
        std::fs::write(work.join(format!("assets/blob{n}.bin")), bytes).unwrap();
    }
    let sig = git2::Signature::now("Test", "test@example.invalid").unwrap();
    let head = repo.head().unwrap().peel_to_commit().unwrap().id();
    crate::helpers::commit_all_and_tag(&repo, &sig, Some(head), "v4", "assets");
    // file:// goes through git's pack protocol, as a remote does.
    env.config.repo_url = format!("file://{}", env.app.display());
    env.configure();
    env.ok(&["releases", "--fetch"]);
    let job: serde_json::Value = serde_json::from_str(&env.ok(&["job", "1", "--json"])).unwrap();
    assert_eq!(job["kind"], "fetch");
    assert_eq!(job["status"], "succeeded");
    let progress: Vec<&str> = job["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "progress")
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert!(
        progress
            .iter()
            .any(|m| m.starts_with("Receiving objects: 100%") && m.contains("MiB")),
        "{progress:?}"
    );
    assert!(
        job["outcome"]
            .as_str()
            .unwrap()
            .contains("new: v1, v2, v3, v4"),
        "{job}"
    );
}
