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
