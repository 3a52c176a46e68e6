//! The configuration's unit tests.

use super::*;

#[test]
fn the_virtual_hosts_are_asked_of_the_apache_the_configtest_checks() {
    let argv = |s: &str| s.split(' ').map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(
        vhosts_of(&argv(
            "sudo -n /usr/sbin/apachectl -f /srv/web/httpd.conf configtest"
        )),
        Some(argv(
            "sudo -n /usr/sbin/apachectl -f /srv/web/httpd.conf -S"
        ))
    );
    assert_eq!(
        vhosts_of(&argv("apache2 -f /tmp/a.conf -t")),
        Some(argv("apache2 -f /tmp/a.conf -S"))
    );
    assert_eq!(vhosts_of(&argv("apachectl configtest")), None);
    assert_eq!(vhosts_of(&argv("apachectl -f")), None);
}

/// Loads `text` as the configuration file, with a data directory and webroot base made
/// for it.
fn load(text: &str) -> Result<Settings, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("www")).unwrap();
    let file = dir.path().join("clubdeploy.toml");
    std::fs::write(
        &file,
        format!(
            "data_dir = {:?}\nwebroot_base = {:?}\n{text}",
            dir.path().join("data"),
            dir.path().join("www")
        ),
    )
    .unwrap();
    Settings::load(&file)
}

fn names(settings: &Settings) -> Vec<&str> {
    settings.apps().iter().map(|a| a.name.as_str()).collect()
}

#[test]
fn the_top_level_repository_is_the_application_main_where_it_always_was() {
    let settings = load("repo_url = \"/srv/app\"\n[build]\ncommands = [[\"true\"]]\n").unwrap();
    assert_eq!(names(&settings), ["main"]);
    let main = settings.app(None).unwrap();
    assert_eq!(main.releases_dir, settings.data_dir.join("releases"));
    assert_eq!(main.mirror_dir, settings.data_dir.join("repo.git"));
    assert_eq!(main.legacy_dir, settings.data_dir.join("legacy"));
    assert_eq!(main.build.commands, [vec!["true".to_owned()]]);
    assert!(!settings.several_apps());
}

#[test]
fn applications_have_their_own_repository_build_git_and_directories() {
    let settings = load(
        "repo_url = \"/srv/booking\"\n[git]\ntimeout_secs = 7\n\
         [apps.mobile]\nrepo_url = \"/srv/mobile\"\n[apps.mobile.build]\ncheck = [\"php\"]\n\
         [apps.mobile.git]\ntimeout_secs = 9\n[apps.shop]\nrepo_url = \"/srv/shop\"\n",
    )
    .unwrap();
    assert_eq!(names(&settings), ["main", "mobile", "shop"]);
    let mobile = settings.app(Some("mobile")).unwrap();
    assert_eq!(
        mobile.releases_dir,
        settings.data_dir.join("apps/mobile/releases")
    );
    assert_eq!(
        mobile.mirror_dir,
        settings.data_dir.join("apps/mobile/repo.git")
    );
    assert_eq!(
        mobile.legacy_dir,
        settings.data_dir.join("apps/mobile/legacy")
    );
    assert_eq!(mobile.build.check, Some(vec!["php".to_owned()]));
    assert_eq!(mobile.git.timeout_secs, 9);
    // Without its own [git], an application uses the top-level one.
    assert_eq!(settings.app(Some("shop")).unwrap().git.timeout_secs, 7);
    let error = settings.app(None).unwrap_err().to_string();
    assert!(
        error.contains("several applications (main, mobile, shop)"),
        "{error}"
    );
    let error = settings.app(Some("blog")).unwrap_err().to_string();
    assert!(
        error.contains("there is no application \"blog\""),
        "{error}"
    );
}

#[test]
fn conflicting_or_misnamed_applications_are_refused_naming_the_key() {
    for (text, expected) in [
        ("", "`repo_url` is missing"),
        (
            "[build]\ncommands = []\n[apps.x]\nrepo_url = \"/a\"\n",
            "move it to [apps.<name>.build]",
        ),
        (
            "repo_url = \"/a\"\n[apps.main]\nrepo_url = \"/b\"\n",
            "both configure the application main",
        ),
        ("[apps.Shop]\nrepo_url = \"/a\"\n", "`apps.Shop`"),
        (
            "[apps.shop]\nbuild = {}\n",
            "`apps.shop.repo_url` is missing",
        ),
        (
            "[apps.shop]\nrepo_url = \"/a\"\n[apps.shop.build]\ncommands = [[]]\n",
            "`apps.shop.build.commands`",
        ),
        (
            "[apps.shop]\nrepo_url = \"/a\"\n[apps.shop.git]\ntimeout_secs = 0\n",
            "`apps.shop.git.timeout_secs`",
        ),
    ] {
        let error = load(text).unwrap_err().to_string();
        assert!(error.contains(expected), "{text:?}: {error}");
    }
    // [apps.main] alone is the application main, laid out as the top-level one.
    let settings = load("[apps.main]\nrepo_url = \"/a\"\n").unwrap();
    assert_eq!(
        settings.app(None).unwrap().releases_dir,
        settings.data_dir.join("releases")
    );
}

#[test]
fn session_lengths_are_bounded() {
    let repo = "repo_url = \"/srv/app\"\n";
    let settings = load(&format!(
        "session_idle_secs = 9300000000000000\nsession_absolute_secs = 315360001\n{repo}"
    ))
    .unwrap();
    let timeouts = settings.session_timeouts();
    assert_eq!(
        (timeouts.idle_secs, timeouts.absolute_secs),
        (MAX_SESSION_SECS, MAX_SESSION_SECS),
        "longer reads as ten years"
    );
    assert_eq!(MAX_SESSION_SECS, 315_360_000);
    for text in ["session_idle_secs = 0\n", "session_absolute_secs = 0\n"] {
        let error = load(&format!("{text}{repo}")).unwrap_err().to_string();
        assert!(error.contains("must be at least 1"), "{text}: {error}");
    }
}

/// The package's configuration, with its own paths swapped for temporary ones, loads and
/// sends audit anchors to syslog.
#[test]
fn the_packaged_configuration_loads_and_anchors_to_syslog() {
    let packaged = include_str!("../../packaging/clubdeploy.toml");
    let own_paths: String = packaged
        .lines()
        .filter(|l| !l.starts_with("data_dir") && !l.starts_with("webroot_base"))
        .map(|l| format!("{l}\n"))
        .collect();
    // Keys before the first table stay top-level keys.
    let settings = load(&format!("repo_url = \"/srv/booking.git\"\n{own_paths}")).unwrap();
    assert!(settings.audit.syslog);
    assert!(settings.cookie_secure);
    assert_eq!(
        settings.web.proxy_secret_file.as_deref(),
        Some(std::path::Path::new("/etc/clubdeploy/proxy-secret"))
    );
}

#[test]
fn the_build_user_is_a_plain_user_name_and_never_root() {
    let repo = "repo_url = \"/srv/repo\"\n";
    let set = load(&format!("{repo}build_user = \"clubdeploy-build\"\n")).unwrap();
    assert_eq!(set.build_user.as_deref(), Some("clubdeploy-build"));
    assert_eq!(load(repo).unwrap().build_user, None);
    for bad in ["root", "a b", "", "../x", "x\\ny"] {
        let err = load(&format!("{repo}build_user = \"{bad}\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`build_user`"), "{bad}: {err}");
    }
}

#[test]
fn without_hosts_this_machine_serves_the_clubs_and_with_them_each_is_checked() {
    let settings = load("repo_url = \"/srv/app\"\n").unwrap();
    assert!(settings.hosts().is_empty() && settings.remote_hosts().is_empty());
    let settings = load(
        "repo_url = \"/srv/app\"\n\
         [[hosts]]\nname = \"web1\"\nssh = \"ssh://deploy@10.0.0.11:22\"\n\
         data_dir = \"/srv/clubdeploy\"\n\
         [hosts.reload]\ncommand = [\"sudo\", \"-n\", \"/usr/sbin/apachectl\", \"-k\", \"graceful\"]\n\
         [hosts.health]\nconnect_to = \"10.0.0.11\"\n\
         [[hosts]]\nname = \"here\"\nssh = \"local\"\n",
    )
    .unwrap();
    let [web1, here] = settings.hosts() else {
        panic!("{:?}", settings.hosts())
    };
    assert_eq!(web1.name.as_str(), "web1");
    assert_eq!(web1.data_dir, std::path::Path::new("/srv/clubdeploy"));
    assert_eq!(web1.webroot_base, settings.webroot_base, "ours by default");
    assert_eq!(
        web1.configtest, settings.reload.configtest,
        "ours by default"
    );
    assert_eq!(web1.reload[3], "-k");
    assert_eq!(web1.connect_to.as_deref(), Some("10.0.0.11"));
    assert!(here.is_local() && !web1.is_local());
    assert_eq!(settings.remote_hosts(), [web1]);
    // Bad values are refused naming the key.
    for (table, key) in [
        ("name = \"Web 1\"\nssh = \"local\"", "`hosts[0].name`"),
        ("name = \"web1\"\nssh = \"deploy@host\"", "`hosts.web1.ssh`"),
        (
            "name = \"web1\"\nssh = \"local\"\ndata_dir = \"srv\"",
            "`hosts.web1.data_dir`",
        ),
        (
            "name = \"web1\"\nssh = \"local\"\nssh_key = \"/nonexistent/key\"",
            "`hosts.web1.ssh_key`",
        ),
        (
            "name = \"web1\"\nssh = \"local\"\n[hosts.health]\nconnect_to = \"a:b:c]\"",
            "`hosts.web1.health.connect_to`",
        ),
        ("name = \"web1\"\nssh = \"local\"\nport = 22", "port"),
    ] {
        let error = load(&format!("repo_url = \"/srv/app\"\n[[hosts]]\n{table}\n"))
            .unwrap_err()
            .to_string();
        assert!(error.contains(key), "{table}: {error}");
    }
    let twice = load(
        "repo_url = \"/srv/app\"\n[[hosts]]\nname = \"web1\"\nssh = \"local\"\n\
         [[hosts]]\nname = \"web1\"\nssh = \"web1-alias\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(twice.contains("two hosts are named web1"), "{twice}");
}
