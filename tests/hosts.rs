//! Issue 21: several web servers (`[[hosts]]`). So far: the configuration is read and
//! checked, and while a host is reached over SSH no job changes any club's link (this
//! version switches links on this machine only); without `[[hosts]]` nothing changes.

use crate::helpers::TestEnv;

/// A `[[hosts]]` table of `lines` (TestEnv writes each table as `[name]`).
fn host(env: &mut TestEnv, lines: &[&str]) {
    env.config.tables.push((
        "[hosts]".into(),
        lines.iter().map(|l| (*l).to_owned()).collect(),
    ));
    env.configure();
}

#[test]
fn with_a_host_over_ssh_no_job_changes_a_club_and_says_why() {
    let mut env = TestEnv::new();
    env.add_clubs(&["a", "b"]);
    env.ok(&["deploy", "v1", "--all"]);
    host(&mut env, &["name = \"here\"", "ssh = \"local\""]);
    // A host that is this machine changes nothing: deploys go on.
    env.ok(&["deploy", "v2", "--club", "a"]);
    host(
        &mut env,
        &["name = \"web2\"", "ssh = \"ssh://deploy@127.0.0.1:2222\""],
    );
    let error = env.fails(&["deploy", "v3", "--all"]);
    assert!(
        error.contains("[[hosts]] names web2 reached over SSH: no club was changed on any host"),
        "{error}"
    );
    assert_eq!(env.release_of("a"), env.release_name("v2"));
    assert_eq!(env.release_of("b"), env.release_name("v1"));
    let error = env.fails(&["rollback", "a"]);
    assert!(error.contains("no club was changed"), "{error}");
    assert_eq!(env.release_of("a"), env.release_name("v2"));
    // Reading and fetching still work.
    env.ok(&["releases", "--fetch"]);
    env.ok(&["status"]);
}

#[test]
fn a_bad_host_is_refused_naming_its_key() {
    let mut env = TestEnv::new();
    host(
        &mut env,
        &["name = \"web1\"", "ssh = \"-oProxyCommand=touch /tmp/x\""],
    );
    let error = env.fails(&["status"]);
    assert!(error.contains("`hosts.web1.ssh`"), "{error}");
    assert!(error.contains("ssh://user@host:port"), "{error}");
}

/// Which hosts serve a club: every one unless said (`club hosts`, the import's `hosts`
/// column, the club's page), each name checked against `[[hosts]]`, each change audited,
/// bad input changing nothing.
#[tokio::test]
async fn which_hosts_serve_a_club_is_said_on_the_command_line_in_the_import_and_the_panel() {
    let mut env = TestEnv::new();
    env.add_clubs(&["a"]);
    let error = env.fails(&["club", "hosts", "a", "web1"]);
    assert!(error.contains("no [[hosts]] are configured"), "{error}");
    host(&mut env, &["name = \"web1\"", "ssh = \"local\""]);
    host(&mut env, &["name = \"web2\"", "ssh = \"local\""]);
    let out = env.ok(&["club", "hosts", "a", "web2"]);
    assert!(out.contains("club a is served by web2"), "{out}");
    assert!(
        env.ok(&["club", "hosts", "a", "web2"])
            .contains("nothing changed")
    );
    let error = env.fails(&["club", "hosts", "a", "web9"]);
    assert!(
        error.contains("there is no host \"web9\": the hosts are web1, web2"),
        "{error}"
    );
    let audit = env.ok(&["audit", "--json"]);
    assert!(audit.contains("served by web2"), "{audit}");

    // The import's hosts column; the export says it back.
    let b = env.webroot("b").display().to_string();
    let csv = env.www.join("hosts.csv");
    std::fs::write(
        &csv,
        format!("slug,name,webroot,hosts\nb,Club B,{b},web2 web1\n"),
    )
    .unwrap();
    let out = env.ok(&["club", "import", csv.to_str().unwrap()]);
    assert!(out.contains("1 club added"), "{out}");
    std::fs::write(
        &csv,
        format!("slug,name,webroot,hosts\nc,Club C,{b}-c,web3\n"),
    )
    .unwrap();
    let error = env.fails(&["club", "import", csv.to_str().unwrap()]);
    assert!(error.contains("there is no host \"web3\""), "{error}");
    let app = crate::web::TestApp::spawn_driven(env).await;
    let admin = app.login("admin").await;
    let export = app.page(&admin, "/clubs/export.csv").await;
    let lines: Vec<&str> = export.lines().collect();
    assert_eq!(lines[0], "slug,name,url,webroot,hosts");
    assert!(
        lines[1].starts_with("a,a,,") && lines[1].ends_with(",web2"),
        "{export}"
    );
    assert!(lines[2].ends_with(",web1 web2"), "{export}");

    // The club's page says it and edits it; a bad host changes nothing.
    let page = app.page(&admin, "/clubs/b").await;
    assert!(page.contains("Served by web1, web2"), "{page}");
    let edit = |hosts: &'static str| {
        [
            ("name", "Club B renamed"),
            ("app", "main"),
            ("url", ""),
            ("groups", ""),
            ("hosts_field", "1"),
            ("hosts", hosts),
        ]
    };
    let refused = app.post(&admin, "/clubs/b", &edit("web1, nowhere")).await;
    assert_eq!(refused.status(), reqwest::StatusCode::BAD_REQUEST);
    assert!(app.page(&admin, "/clubs/b").await.contains("<h1>Club B <"));
    app.post(&admin, "/clubs/b", &edit("")).await;
    let page = app.page(&admin, "/clubs/b").await;
    assert!(page.contains("Served by every host (web1, web2)"), "{page}");
    assert!(page.contains("<h1>Club B renamed"), "{page}");
}

/// Sends `request` (JSON) to `clubdeploy host-agent` and returns its answer (JSON).
fn agent(request: &serde_json::Value) -> serde_json::Value {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_clubdeploy"))
        .arg("host-agent")
        .env_remove("CLUBDEPLOY_CONFIG")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{request}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Point 3's agent, the code that will switch links on every web host: the real binary,
/// asked in JSON on real directories, switches a webroot atomically to a staged release,
/// reads links back, and refuses what it must (a release not staged there, a parent others
/// may write) changing nothing.
#[test]
fn the_host_agent_switches_and_reads_links_and_refuses_what_it_must() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    let root = root.path().canonicalize().unwrap();
    let (base, releases) = (root.join("www"), root.join("releases"));
    let release = releases.join("v1-0000000a");
    std::fs::create_dir_all(&release).unwrap();
    std::fs::write(release.join(clubdeploy::pipeline::release::MANIFEST), "{}").unwrap();
    std::fs::create_dir_all(base.join("a")).unwrap();
    let (a, b) = (base.join("a/htdocs"), base.join("b/htdocs"));
    let answer = agent(&serde_json::json!({
        "op": "switch",
        "releases_dir": releases,
        "release": "v1-0000000a",
        "webroot_base": base,
        "webroots": [a, b],
    }));
    assert_eq!(
        answer,
        serde_json::json!({"answer": "switched", "before": [{"is": "missing"}, {"is": "missing"}], "error": null})
    );
    assert_eq!(std::fs::read_link(&a).unwrap(), release);
    let answer = agent(&serde_json::json!({
        "op": "linked", "releases_dir": releases, "webroots": [a, base.join("c/htdocs")],
    }));
    assert_eq!(
        answer["webroots"],
        serde_json::json!([{"Ok": {"is": "release", "name": "v1-0000000a"}}, {"Ok": {"is": "missing"}}])
    );
    // A release that is not there, and a parent anyone may write: refused, nothing changed.
    let answer = agent(&serde_json::json!({
        "op": "switch", "releases_dir": releases, "release": "v2-0000000b",
        "webroot_base": base, "webroots": [a],
    }));
    assert_eq!(answer["answer"], "refused", "{answer}");
    assert!(
        answer["why"].as_str().unwrap().contains("not staged"),
        "{answer}"
    );
    std::fs::create_dir_all(base.join("open")).unwrap();
    std::fs::set_permissions(base.join("open"), std::fs::Permissions::from_mode(0o777)).unwrap();
    let open = base.join("open/htdocs");
    let answer = agent(&serde_json::json!({
        "op": "switch", "releases_dir": releases, "release": "v1-0000000a",
        "webroot_base": base, "webroots": [open],
    }));
    assert_eq!(answer["before"], serde_json::json!([]), "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("open"),
        "{answer}"
    );
    assert!(
        std::fs::symlink_metadata(&open).is_err(),
        "a link was made under an open parent"
    );
    // What it cannot read as a request it refuses in words.
    let answer = agent(&serde_json::json!({"op": "delete", "path": "/"}));
    assert_eq!(answer["answer"], "refused");
}

/// Point 3 over a real sshd on loopback: the agent of this build is copied to the host once
/// (a second deploy finds it there), then switches a link on that host; an unreachable host
/// and an unknown host key are errors naming the host and what ssh said.
#[test]
fn over_ssh_the_agent_is_copied_once_and_switches_links_on_the_host() {
    use clubdeploy::pipeline::agent::{Answer, Request};
    use std::os::unix::fs::MetadataExt;
    if !crate::sshd::available() {
        return;
    }
    let mut env = TestEnv::new();
    let (sshd, web2, there, known) = web2_over_ssh(&mut env);
    let (releases, base) = (there.join("releases"), there.join("www"));
    std::fs::create_dir_all(releases.join("v1-0000000a")).unwrap();
    std::fs::write(
        releases
            .join("v1-0000000a")
            .join(clubdeploy::pipeline::release::MANIFEST),
        "{}",
    )
    .unwrap();
    std::fs::create_dir_all(&base).unwrap();
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_clubdeploy"));
    let agent = web2.install_agent(binary).unwrap();
    assert!(agent.starts_with(there.join("bin")), "{}", agent.display());
    let inode = std::fs::metadata(&agent).unwrap().ino();
    assert_eq!(web2.install_agent(binary).unwrap(), agent);
    assert_eq!(
        std::fs::metadata(&agent).unwrap().ino(),
        inode,
        "copied twice"
    );
    let webroot = base.join("a").join("htdocs");
    std::fs::create_dir_all(base.join("a")).unwrap();
    let answer = web2
        .ask(
            &agent,
            &Request::Switch {
                releases_dir: releases.clone(),
                release: "v1-0000000a".into(),
                webroot_base: base.clone(),
                webroots: vec![webroot.clone()],
            },
        )
        .unwrap();
    assert!(
        matches!(&answer, Answer::Switched { before, error: None } if before.len() == 1),
        "{answer:?}"
    );
    assert_eq!(
        std::fs::read_link(&webroot).unwrap(),
        releases.join("v1-0000000a")
    );

    // A host whose key is not the one known, and a host that is down.
    std::fs::write(&known, "[127.0.0.1]:1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHkR7vRAg9mvIEM5bEs2h5qqjG8cS7JwJ0jYJ0Ytt0Hu\n").unwrap();
    let error = format!("{:#}", web2.install_agent(binary).unwrap_err());
    assert!(
        error.starts_with("web2: ") && error.contains("Host key verification failed"),
        "{error}"
    );
    drop(sshd);
    std::fs::write(&known, "").unwrap();
    let error = format!(
        "{:#}",
        web2.ask(
            &agent,
            &Request::Linked {
                releases_dir: releases,
                webroots: vec![]
            }
        )
        .unwrap_err()
    );
    assert!(
        error.starts_with("web2: ") && error.contains("Connection refused"),
        "{error}"
    );
}

/// A host web2 reached over a real sshd on loopback, keeping its data under `<root>/web2`:
/// the server, the host as clubdeploy reaches it, that folder and its known_hosts file.
fn web2_over_ssh(
    env: &mut TestEnv,
) -> (
    crate::sshd::Sshd,
    clubdeploy::pipeline::remote::RemoteHost,
    std::path::PathBuf,
    std::path::PathBuf,
) {
    let sshd = crate::sshd::Sshd::start(&env.root.path().join("sshd"));
    let known = env.root.path().join("known_hosts");
    std::fs::write(&known, format!("{}\n", sshd.known_hosts_line)).unwrap();
    let there = env.root.path().join("web2");
    let ssh = format!("ssh = \"ssh://{}@127.0.0.1:{}\"", sshd.user, sshd.port);
    let key = format!("ssh_key = {:?}", sshd.deploy_key);
    let known_line = format!("known_hosts = {known:?}");
    let data = format!("data_dir = {there:?}");
    host(env, &["name = \"web2\"", &ssh, &key, &known_line, &data]);
    let settings = clubdeploy::config::Settings::load(&env.config_path).unwrap();
    let web2 = clubdeploy::pipeline::remote::RemoteHost::new(settings.hosts()[0].clone());
    (sshd, web2, there, known)
}

/// Point 2's staging over a real sshd and rsync: a release built here arrives complete under
/// its own name (through a `.stage-*` folder), the same file for file; the next release's
/// unchanged files are hard links to the host's previous one (same inode); staging a release
/// that is there already sends nothing; a host that is down is an error naming it.
#[test]
fn a_release_is_staged_on_a_host_complete_sharing_unchanged_files() {
    use clubdeploy::pipeline::remote::Staged;
    use std::os::unix::fs::MetadataExt;
    if !crate::sshd::available()
        || !crate::helpers::installed("STAGING TEST", &[("/usr/bin/rsync", "rsync")])
    {
        return;
    }
    let mut env = TestEnv::new();
    let (sshd, web2, there, _) = web2_over_ssh(&mut env);
    let agent = web2
        .install_agent(std::path::Path::new(env!("CARGO_BIN_EXE_clubdeploy")))
        .unwrap();
    let built = env.root.path().join("built");
    let release = |name: &str, changed: &str| {
        let dir = built.join(name);
        std::fs::create_dir_all(dir.join("src")).unwrap();
        std::fs::write(dir.join("index.php"), "<?php require 'src/a.php';").unwrap();
        std::fs::write(dir.join("src/a.php"), changed).unwrap();
        std::fs::write(dir.join(clubdeploy::pipeline::release::MANIFEST), name).unwrap();
        dir
    };
    let host_releases = there.join("releases");
    let v1 = release("v1-0000000a", "one");
    assert_eq!(
        web2.stage(&agent, &v1, &host_releases).unwrap(),
        Staged::Now
    );
    assert_eq!(
        clubdeploy::pipeline::tree_digest::digest(&host_releases.join("v1-0000000a")).unwrap(),
        clubdeploy::pipeline::tree_digest::digest(&v1).unwrap()
    );
    let v2 = release("v2-0000000b", "two");
    assert_eq!(
        web2.stage(&agent, &v2, &host_releases).unwrap(),
        Staged::Now
    );
    let inode = |release: &str, file: &str| {
        std::fs::metadata(host_releases.join(release).join(file))
            .unwrap()
            .ino()
    };
    assert_eq!(
        inode("v1-0000000a", "index.php"),
        inode("v2-0000000b", "index.php")
    );
    assert_ne!(
        inode("v1-0000000a", "src/a.php"),
        inode("v2-0000000b", "src/a.php")
    );
    assert_eq!(
        web2.stage(&agent, &v2, &host_releases).unwrap(),
        Staged::Already
    );
    let left: Vec<String> = std::fs::read_dir(&host_releases)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".stage-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    drop(sshd);
    let v3 = release("v3-0000000c", "three");
    let error = format!("{:#}", web2.stage(&agent, &v3, &host_releases).unwrap_err());
    assert!(
        error.starts_with("web2: ") && error.contains("refused"),
        "{error}"
    );
    assert!(!host_releases.join("v3-0000000c").exists());
}
