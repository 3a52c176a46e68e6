//! The Debian package, built with `cargo deb` from the binary these tests run and installed
//! with `dpkg -i` in a root of the test's own: this very test runs again inside a private
//! mount namespace whose `/etc`, `/usr`, `/var` and `/run` are throw-away overlays of the
//! machine's, so nothing it installs, adds or purges reaches the machine itself (as root, on
//! Debian; skipped loudly elsewhere, never under `CI=true`; refused on a machine where
//! clubdeploy is installed or `/var/lib/clubdeploy` exists). Inside: the binary, the service
//! unit (`systemd-analyze verify`), the system user, the configuration as a conffile readable
//! by the service only, the sudoers rule (`visudo -cf`, and `sudo -l` lists exactly the three
//! Apache commands), the data directory's modes; then remove (the configuration stays) and
//! purge (the configuration goes; the data directory with its releases and the user who owns it
//! are kept, and that is said).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs `program` with `args`; its output.
fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

/// Runs `program` with `args`, asserting success; its standard output and error.
fn ok(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    let text = said(&out);
    assert!(out.status.success(), "{program} {args:?} failed:\n{text}");
    text
}

/// What a command printed: its standard output, then its standard error.
fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `(mode, uid name, gid name)` of `path`.
fn owner_and_mode(path: &str) -> (u32, String, String) {
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let name = |db: &str, id: u32| {
        let line = ok("getent", &[db, &id.to_string()]);
        line.split(':').next().unwrap().to_owned()
    };
    (
        meta.permissions().mode() & 0o7777,
        name("passwd", meta.uid()),
        name("group", meta.gid()),
    )
}

/// Whether the package can be built and installed here: as root, with dpkg, cargo-deb,
/// sudo's visudo and systemd-analyze.
fn available() -> bool {
    let cargo_deb = std::env::var("HOME")
        .map(|home| PathBuf::from(home).join(".cargo/bin/cargo-deb"))
        .unwrap_or_default();
    let root = rustix::process::geteuid().is_root();
    if !root {
        crate::helpers::skip("PACKAGE TEST SKIPPED: installing a package needs root");
        return false;
    }
    crate::helpers::installed(
        "PACKAGE TEST",
        &[
            (PathBuf::from("/usr/bin/dpkg"), "dpkg"),
            (PathBuf::from("/usr/sbin/visudo"), "sudo"),
            (PathBuf::from("/usr/bin/systemd-analyze"), "systemd"),
            (PathBuf::from("/usr/sbin/adduser"), "adduser"),
            (cargo_deb, "cargo-deb (cargo install cargo-deb)"),
        ],
    )
}

/// Set only in the run of this test inside its private root: the `.deb` to install there.
const INSIDE: &str = "CLUBDEPLOY_PACKAGE_TEST_DEB";
const TEST_NAME: &str =
    "package::the_debian_package_installs_a_least_privilege_service_and_purges_cleanly";

/// What on this machine says clubdeploy is (or was) really in use here.
fn installation_on_this_machine() -> Option<String> {
    if run("dpkg", &["-s", "clubdeploy"]).status.success() {
        return Some("a clubdeploy package is installed on this machine".to_owned());
    }
    ["/var/lib/clubdeploy", "/etc/clubdeploy"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .map(|p| format!("{p} exists on this machine"))
}

#[test]
fn the_units_umask_is_the_one_clubdeploy_runs_with() {
    let unit = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/clubdeploy.service"),
    )
    .unwrap();
    let umasks: Vec<&str> = unit
        .lines()
        .filter_map(|l| l.trim().strip_prefix("UMask="))
        .collect();
    // src/main.rs sets 077 and the README says so: the unit must not promise another.
    assert_eq!(umasks, ["0077"], "{unit}");
    let main = include_str!("../src/main.rs");
    assert!(
        main.contains("from_raw_mode(0o077)"),
        "main.rs sets another umask"
    );
}

#[test]
fn the_debian_package_installs_a_least_privilege_service_and_purges_cleanly() {
    if let Ok(deb) = std::env::var(INSIDE) {
        // The run inside the private root (see below).
        let installed = ok("dpkg", &["-i", &deb]);
        assert!(
            installed.contains("systemctl enable --now clubdeploy"),
            "{installed}"
        );
        check_installed();
        return;
    }
    if !available() {
        return;
    }
    // Never over an installation someone uses, not even in a private root.
    if let Some(why) = installation_on_this_machine() {
        crate::helpers::skip(&format!("PACKAGE TEST SKIPPED: {why}"));
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let manifest_dir = env!("CARGO_MANIFEST_DIR");
    // The binary these tests run (the dev profile's), packaged as a release would be.
    let built =
        Command::new(Path::new(&std::env::var("HOME").unwrap()).join(".cargo/bin/cargo-deb"))
            .current_dir(manifest_dir)
            .args([
                "deb",
                "--no-build",
                "--profile",
                "dev",
                "--no-strip",
                "--fast",
                "-o",
            ])
            .arg(out.path())
            .output()
            .unwrap();
    assert!(
        built.status.success(),
        "cargo deb: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    let deb = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("a .deb");
    // A package of this build upgrades one of v0.1.0: the version has moved on.
    let version = ok("dpkg-deb", &["-f", deb.to_str().unwrap(), "Version"]);
    assert!(
        run(
            "dpkg",
            &["--compare-versions", version.trim(), "gt", "0.1.0-1"]
        )
        .status
        .success(),
        "the package's version {version} does not upgrade 0.1.0-1"
    );

    // This test again, in a mount namespace of its own: every directory dpkg, adduser and
    // the maintainer scripts write is an overlay whose changes live in `root` and vanish
    // with the namespace; /run is empty there, so no systemd of the machine is asked.
    let root = tempfile::tempdir().unwrap();
    let mut script = String::from("set -e\n");
    for dir in ["etc", "usr", "var"] {
        script.push_str(&format!(
            "mkdir -p \"$R/{dir}.up\" \"$R/{dir}.work\"\n\
             mount -t overlay overlay -o \"lowerdir=/{dir},upperdir=$R/{dir}.up,workdir=$R/{dir}.work\" /{dir}\n"
        ));
    }
    script.push_str(
        "mount -t tmpfs tmpfs /run\nexec \"$0\" --exact \"$1\" --nocapture --test-threads=1\n",
    );
    let inside = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .arg(std::env::current_exe().unwrap())
        .arg(TEST_NAME)
        .env("R", root.path())
        .env(INSIDE, &deb)
        .output()
        .unwrap();
    let text = said(&inside);
    assert!(inside.status.success(), "in the private root:\n{text}");
    // The checks really ran there, once.
    assert!(text.contains("1 passed; 0 failed"), "{text}");
    // And the machine itself never saw the package.
    assert_eq!(installation_on_this_machine(), None);
    assert!(!Path::new("/usr/bin/clubdeploy").exists());
    assert!(!run("getent", &["passwd", "clubdeploy"]).status.success());
    // What dpkg wrote stayed in the overlays.
    assert!(root.path().join("var.up/lib/clubdeploy/releases").is_dir());
}

/// Everything the installed package must have put in place, then its removal and purge.
fn check_installed() {
    ok("/usr/bin/clubdeploy", &["--help"]);
    assert_eq!(
        owner_and_mode("/usr/bin/clubdeploy"),
        (0o755, "root".into(), "root".into())
    );

    // The service runs as its own user, hardened; systemd finds nothing wrong with the unit.
    let unit = "/lib/systemd/system/clubdeploy.service";
    let text = std::fs::read_to_string(unit).unwrap();
    for line in [
        "User=clubdeploy",
        "ExecStart=/usr/bin/clubdeploy --config /etc/clubdeploy/clubdeploy.toml serve",
        "Restart=on-failure",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/clubdeploy /var/www",
        "PrivateTmp=yes",
        "ProtectHome=yes",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line} missing from {unit}"
        );
    }
    ok("systemd-analyze", &["verify", unit]);
    // The unit's exposure as systemd rates it: 5.3 MEDIUM before the system-call filter and
    // the capability bounding set, 2.9 OK with them.
    let rated = ok("systemd-analyze", &["security", "--offline=true", unit]);
    let exposure: f64 = rated
        .lines()
        .find_map(|l| l.split("exposure level for clubdeploy.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{rated}"));
    assert!(exposure <= 3.5, "exposure {exposure}:\n{rated}");

    // A system user with no login and the data directory as its home.
    let user = ok("getent", &["passwd", "clubdeploy"]);
    let fields: Vec<&str> = user.trim().split(':').collect();
    assert_eq!(fields[5], "/var/lib/clubdeploy", "{user}");
    assert_eq!(fields[6], "/usr/sbin/nologin", "{user}");
    assert!(
        fields[2].parse::<u32>().unwrap() < 1000,
        "not a system user: {user}"
    );
    assert_eq!(
        owner_and_mode("/var/lib/clubdeploy"),
        (0o711, "clubdeploy".into(), "clubdeploy".into())
    );

    // The configuration: a conffile the service may read and nobody else.
    assert_eq!(
        owner_and_mode("/etc/clubdeploy/clubdeploy.toml"),
        (0o640, "root".into(), "clubdeploy".into())
    );
    let conffiles = ok("dpkg-query", &["-W", "-f=${Conffiles}", "clubdeploy"]);
    assert!(
        conffiles.contains("/etc/clubdeploy/clubdeploy.toml"),
        "{conffiles}"
    );
    let config = std::fs::read_to_string("/etc/clubdeploy/clubdeploy.toml").unwrap();
    assert!(config.contains("listen = \"127.0.0.1:8080\""), "{config}");
    assert!(
        config.contains(
            "command = [\"sudo\", \"-n\", \"/usr/sbin/apachectl\", \"-k\", \"graceful\"]"
        ),
        "{config}"
    );

    // The proxy's secret: the service reads it, Apache (root) includes the header that sends
    // it, and nobody else reads either; the two hold the same secret, and the packaged
    // configuration names it.
    assert_eq!(
        owner_and_mode("/etc/clubdeploy/proxy-secret"),
        (0o640, "root".into(), "clubdeploy".into())
    );
    assert_eq!(
        owner_and_mode("/etc/clubdeploy/apache-proxy-header.conf"),
        (0o600, "root".into(), "root".into())
    );
    let secret = std::fs::read_to_string("/etc/clubdeploy/proxy-secret").unwrap();
    let secret = secret.trim();
    assert_eq!(secret.len(), 64, "{secret}");
    let header = std::fs::read_to_string("/etc/clubdeploy/apache-proxy-header.conf").unwrap();
    assert!(
        header.contains(&format!(
            "RequestHeader set X-Clubdeploy-Proxy \"{secret}\""
        )),
        "{header}"
    );
    assert!(
        config.contains("proxy_secret_file = \"/etc/clubdeploy/proxy-secret\""),
        "{config}"
    );

    // sudo lets the service check and reload Apache, and nothing else.
    assert_eq!(
        owner_and_mode("/etc/sudoers.d/clubdeploy"),
        (0o440, "root".into(), "root".into())
    );
    ok("visudo", &["-cf", "/etc/sudoers.d/clubdeploy"]);
    let allowed = ok("sudo", &["-n", "-l", "-U", "clubdeploy"]);
    let rules: Vec<&str> = allowed
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("(root)"))
        .collect();
    assert_eq!(
        rules,
        [
            "(root) NOPASSWD: /usr/sbin/apachectl configtest, /usr/sbin/apachectl -k graceful, \
             /usr/sbin/apachectl -S"
        ],
        "{allowed}"
    );
    // And run clubdeploy's own build steps as the build user, nothing else as it.
    let as_builder: Vec<&str> = allowed
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with('(') && !l.starts_with("(root)"))
        .collect();
    assert_eq!(
        as_builder,
        ["(clubdeploy-build) NOPASSWD: /usr/bin/clubdeploy build-user *"],
        "{allowed}"
    );
    // The build user: a system user of its own, with its own group (which the service's user
    // is in, to share build folders), not in the service's group (which reads the
    // configuration and the proxy secret), its home for build tools' caches.
    let builder = ok("getent", &["passwd", "clubdeploy-build"]);
    let fields: Vec<&str> = builder.trim().split(':').collect();
    assert_eq!(fields[5], "/var/lib/clubdeploy-build", "{builder}");
    assert_eq!(fields[6], "/usr/sbin/nologin", "{builder}");
    assert_eq!(
        owner_and_mode("/var/lib/clubdeploy-build"),
        (0o700, "clubdeploy-build".into(), "clubdeploy-build".into())
    );
    assert_eq!(
        ok("id", &["-Gn", "clubdeploy-build"]).trim(),
        "clubdeploy-build"
    );
    let service_groups = ok("id", &["-Gn", "clubdeploy"]);
    assert!(
        service_groups
            .split_whitespace()
            .any(|g| g == "clubdeploy-build"),
        "{service_groups}"
    );
    assert!(
        config.contains("\nbuild_user = \"clubdeploy-build\"\n"),
        "{config}"
    );

    builds_run_as_a_user_who_can_read_nothing_of_the_services();

    // A release a club might still run.
    std::fs::create_dir_all("/var/lib/clubdeploy/releases/v1-0123abcd").unwrap();

    // Remove: the program goes, the configuration and the user stay.
    ok("dpkg", &["-r", "clubdeploy"]);
    assert!(!Path::new("/usr/bin/clubdeploy").exists());
    assert!(Path::new("/etc/clubdeploy/clubdeploy.toml").exists());
    ok("getent", &["passwd", "clubdeploy"]);

    // Purge: the configuration goes; the releases stay, and so does the user who owns them (a
    // deleted user's id could be given to someone else).
    let purged = ok("dpkg", &["-P", "clubdeploy"]);
    assert!(purged.contains("/var/lib/clubdeploy was kept"), "{purged}");
    assert!(!Path::new("/etc/clubdeploy").exists());
    ok("getent", &["passwd", "clubdeploy"]);
    let (mode, owner, _) = owner_and_mode("/var/lib/clubdeploy");
    assert_eq!(owner, "clubdeploy", "mode {mode:o}");
    assert!(Path::new("/var/lib/clubdeploy/releases/v1-0123abcd").is_dir());
}

/// Runs `clubdeploy` as the service's user, as the unit does, with `config`, asserting
/// success; its output.
fn as_service(config: &Path, args: &[&str]) -> String {
    let out = Command::new("runuser")
        .args(["-u", "clubdeploy", "--", "/usr/bin/clubdeploy", "--config"])
        .arg(config)
        .args(args)
        .current_dir("/var/lib/clubdeploy")
        // The service's environment: none of this test's (CLUBDEPLOY_* would be settings).
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("HOME", "/var/lib/clubdeploy")
        .output()
        .unwrap();
    let text = said(&out);
    assert!(out.status.success(), "clubdeploy {args:?}:\n{text}");
    text
}

/// Issue 19, point 5: with the packaged setup, a tag's build script runs as clubdeploy-build.
/// It cannot read the database, audit.key, probe.key or the configuration, nor list data_dir,
/// nor change a release already published; what it leaves running does not outlive its step;
/// the release it built is the service's own, and its build folder is gone.
fn builds_run_as_a_user_who_can_read_nothing_of_the_services() {
    let work = tempfile::tempdir().unwrap();
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let repo = work.path().join("repo");
    let www = work.path().join("www");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::create_dir_all(&www).unwrap();
    let secrets = [
        "/var/lib/clubdeploy/clubdeploy.sqlite3",
        "/var/lib/clubdeploy/audit.key",
        "/var/lib/clubdeploy/probe.key",
        "/etc/clubdeploy/build-test.toml",
    ];
    let script = format!(
        "id -un\n\
         for f in {}; do\n\
           if cat \"$f\" > /dev/null 2>&1; then echo \"READ $f\"; else echo \"DENIED $f\"; fi\n\
         done\n\
         ls /var/lib/clubdeploy > /dev/null 2>&1 && echo 'LISTED data_dir' || echo 'DENIED listing'\n\
         for f in /var/lib/clubdeploy/releases/v1-*/built.txt; do\n\
           [ -e \"$f\" ] || continue\n\
           if echo changed >> \"$f\" 2> /dev/null; then echo 'CHANGED v1'; else echo 'DENIED v1'; fi\n\
         done\n\
         echo built > built.txt\n\
         mkdir -p vendor/lib && echo '<?php' > vendor/lib/a.php\n\
         (umask 077; echo private > private.txt)\n\
         setsid sleep 300 < /dev/null > /dev/null 2>&1 &\n\
         echo \"HOME=$HOME\"\n",
        secrets.join(" ")
    );
    std::fs::write(repo.join("build.sh"), script).unwrap();
    std::fs::write(repo.join("index.php"), "<?php echo 'hello';\n").unwrap();
    let git = |args: &[&str]| {
        let mut all = vec![
            "-C",
            repo.to_str().unwrap(),
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
        ];
        all.extend_from_slice(args);
        ok("git", &all)
    };
    git(&["init", "-q"]);
    git(&["add", "."]);
    git(&["commit", "-qm", "one"]);
    git(&["tag", "v1"]);
    std::fs::write(repo.join("index.php"), "<?php echo 'hello again';\n").unwrap();
    git(&["commit", "-qam", "two"]);
    git(&["tag", "v2"]);
    ok(
        "chown",
        &["-R", "clubdeploy:clubdeploy", work.path().to_str().unwrap()],
    );
    let config = Path::new("/etc/clubdeploy/build-test.toml");
    std::fs::write(
        config,
        format!(
            "data_dir = \"/var/lib/clubdeploy\"\nrepo_url = \"{}\"\nwebroot_base = \"{}\"\n\
             build_user = \"clubdeploy-build\"\n[build]\ncommands = [[\"sh\", \"build.sh\"]]\n\
             [reload]\npolicy = \"never\"\n",
            repo.display(),
            www.display()
        ),
    )
    .unwrap();
    ok("chown", &["root:clubdeploy", config.to_str().unwrap()]);
    std::fs::set_permissions(config, std::fs::Permissions::from_mode(0o640)).unwrap();

    as_service(config, &["migrate"]);
    let club = www.join("a");
    as_service(
        config,
        &["club", "add", "a", "--webroot", club.to_str().unwrap()],
    );
    let first = as_service(config, &["deploy", "v1", "--club", "a"]);
    let second = as_service(config, &["deploy", "v2", "--club", "a"]);
    for (tag, said) in [("v1", &first), ("v2", &second)] {
        assert!(
            said.contains("the build commands run as clubdeploy-build"),
            "{said}"
        );
        assert!(said.contains("| clubdeploy-build\n"), "{tag}:\n{said}");
        for secret in secrets {
            assert!(
                said.contains(&format!("| DENIED {secret}\n")),
                "{tag}:\n{said}"
            );
        }
        assert!(!said.contains("| READ "), "{tag}:\n{said}");
        assert!(said.contains("| DENIED listing\n"), "{tag}:\n{said}");
        assert!(
            said.contains("| HOME=/var/lib/clubdeploy-build\n"),
            "{tag}:\n{said}"
        );
        // Not a byte of the keys reached the job's log.
        for key in [
            "/var/lib/clubdeploy/audit.key",
            "/var/lib/clubdeploy/probe.key",
        ] {
            let text = std::fs::read_to_string(key).unwrap();
            let secret = text
                .lines()
                .map(|l| l.trim().trim_start_matches("key="))
                .find(|l| l.len() == 64 && l.bytes().all(|b| b.is_ascii_hexdigit()))
                .unwrap_or_else(|| panic!("no key in {key}"));
            assert!(!said.contains(secret), "{tag}: {key} is in the log");
        }
    }
    assert!(second.contains("| DENIED v1\n"), "{second}");

    // The releases are the service's: every entry owned by it, none writable but by it.
    let releases = Path::new("/var/lib/clubdeploy/releases");
    let clubdeploy_uid: u32 = ok("id", &["-u", "clubdeploy"]).trim().parse().unwrap();
    let mut published = Vec::new();
    for entry in std::fs::read_dir(releases).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            !name.starts_with('.'),
            "a build or trash folder is left: {name}"
        );
        published.push(path);
    }
    assert_eq!(published.len(), 2, "{published:?}");
    for release in &published {
        assert_eq!(
            std::fs::read_to_string(release.join("built.txt")).unwrap(),
            "built\n"
        );
        assert!(release.join("vendor/lib/a.php").is_file());
        assert!(release.join("private.txt").is_file());
        let mut pending = vec![release.clone()];
        while let Some(path) = pending.pop() {
            let meta = std::fs::symlink_metadata(&path).unwrap();
            assert_eq!(meta.uid(), clubdeploy_uid, "{}", path.display());
            assert_eq!(
                meta.mode() & 0o022,
                0,
                "{} is writable by others",
                path.display()
            );
            if meta.is_dir() {
                pending.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            }
        }
    }
    // The daemon the script left (in a session of its own) was stopped with its step.
    let left = run("ps", &["-o", "stat=,comm=", "-u", "clubdeploy-build"]);
    let alive: Vec<String> = String::from_utf8_lossy(&left.stdout)
        .lines()
        .filter(|l| !l.trim_start().starts_with('Z'))
        .map(str::to_owned)
        .collect();
    assert!(
        alive.is_empty(),
        "still running as clubdeploy-build: {alive:?}"
    );
    std::fs::remove_file(config).unwrap();
}
