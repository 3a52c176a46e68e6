//! A private Apache (prefork + mod_php + OPcache) for the end-to-end tests: its own
//! ServerRoot, config, pid file and loopback port, one name-based vhost per club whose
//! DocumentRoot is the club's webroot symlink, and a status vhost outside the releases that
//! returns `opcache_get_status()` as JSON. Stopped when dropped.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::helpers::{free_port, wait_until_serving};

/// What the tests need installed, with the Debian package that brings it.
const NEEDS: [(&str, &str); 3] = [
    ("/usr/sbin/apache2", "apache2"),
    ("/usr/lib/apache2/modules/mod_mpm_prefork.so", "apache2"),
    ("/usr/bin/php", "php-cli"),
];

/// The mod_php module, whichever PHP version Debian ships.
fn mod_php() -> Option<PathBuf> {
    std::fs::read_dir("/usr/lib/apache2/modules")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libphp") && n.ends_with(".so"))
        })
}

/// Whether Apache, mod_php and PHP are installed (see [`crate::helpers::installed`]).
pub fn available() -> bool {
    let php = mod_php().unwrap_or_else(|| PathBuf::from("/usr/lib/apache2/modules/libphp.so"));
    let mut needs: Vec<(PathBuf, &str)> = NEEDS
        .iter()
        .map(|(path, package)| (PathBuf::from(path), *package))
        .collect();
    needs.push((php, "libapache2-mod-php"));
    crate::helpers::installed("END-TO-END TEST", &needs)
}

/// A running Apache. Dropping it stops it by its process id, so it stops even when the
/// directory holding its config and pid file is already gone.
pub struct Apache {
    pub port: u16,
    pub conf: PathBuf,
    root: PathBuf,
    pid: u32,
}

impl Apache {
    /// Writes the config for `clubs` (slug, webroot) under `root` and starts Apache, with
    /// `ini` (lines of php.ini, if any) added to PHP's configuration.
    pub fn start_with_php(root: &Path, clubs: &[(String, PathBuf)], ini: &str) -> Apache {
        let dir = root.join("apache");
        if !ini.is_empty() {
            std::fs::create_dir_all(dir.join("php.d")).unwrap();
            std::fs::write(dir.join("php.d/99-test.ini"), ini).unwrap();
        }
        std::fs::create_dir_all(dir.join("status")).unwrap();
        std::fs::write(
            dir.join("status/index.php"),
            "<?php header('Content-Type: application/json'); \
             echo json_encode(opcache_get_status(true));\n",
        )
        .unwrap();
        // Apache's children run as www-data: every directory on the way must be readable.
        let mut up = Some(root);
        while let Some(path) = up {
            if path.starts_with(std::env::temp_dir()) && path != std::env::temp_dir() {
                let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755));
            }
            up = path.parent();
        }
        let port = free_port();
        let mut conf = format!(
            "ServerRoot {dir:?}\nPidFile {pid:?}\nErrorLog {log:?}\nListen 127.0.0.1:{port}\n\
             ServerName localhost\n\
             LoadModule mpm_prefork_module /usr/lib/apache2/modules/mod_mpm_prefork.so\n\
             LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so\n\
             LoadModule dir_module /usr/lib/apache2/modules/mod_dir.so\n\
             LoadModule mime_module /usr/lib/apache2/modules/mod_mime.so\n\
             LoadModule php_module {php:?}\n\
             User www-data\nGroup www-data\n\
             StartServers 4\nMinSpareServers 4\nMaxSpareServers 12\nMaxRequestWorkers 32\n\
             TypesConfig /etc/mime.types\nDirectoryIndex index.php\n\
             <FilesMatch \"\\.php$\">\n  SetHandler application/x-httpd-php\n</FilesMatch>\n\
             <Directory />\n  Options FollowSymLinks\n  AllowOverride None\n  Require all granted\n</Directory>\n\
             <FilesMatch \"^\\.clubdeploy-release\\.json$\">\n  Require all denied\n</FilesMatch>\n\
             <VirtualHost 127.0.0.1:{port}>\n  ServerName status.test\n  DocumentRoot {status:?}\n</VirtualHost>\n",
            pid = dir.join("httpd.pid"),
            log = dir.join("error.log"),
            php = mod_php().unwrap(),
            status = dir.join("status"),
        );
        for (slug, webroot) in clubs {
            conf.push_str(&format!(
                "<VirtualHost 127.0.0.1:{port}>\n  ServerName {slug}.test\n  DocumentRoot {webroot:?}\n</VirtualHost>\n"
            ));
        }
        Apache::start_with(dir, port, &conf)
    }

    /// Starts Apache on `port` with the config text `conf` (which must name `<dir>/httpd.pid`
    /// as its PidFile and `<dir>/error.log` as its ErrorLog), and waits until it listens and
    /// has written its pid file, which `-k graceful` and `-k stop` read.
    pub fn start_with(dir: PathBuf, port: u16, conf: &str) -> Apache {
        let conf_path = dir.join("httpd.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let error_log = || std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
        let mut command = Command::new("/usr/sbin/apache2");
        command.args(["-f", conf_path.to_str().unwrap(), "-k", "start"]);
        // Extra php.ini lines (see `start_with_php`), after PHP's own scan directory.
        if dir.join("php.d").is_dir() {
            command.env(
                "PHP_INI_SCAN_DIR",
                format!(":{}", dir.join("php.d").display()),
            );
        }
        let out = command.output().unwrap();
        assert!(
            out.status.success(),
            "apache2 did not start: {}{}",
            String::from_utf8_lossy(&out.stderr),
            error_log()
        );
        let pid = wait_until_serving(&dir.join("httpd.pid"), port, error_log);
        Apache {
            port,
            conf: conf_path,
            root: dir,
            pid,
        }
    }

    /// The argv that checks this Apache's config, for clubdeploy's `reload.configtest`.
    pub fn configtest(&self) -> Vec<String> {
        vec![
            "/usr/sbin/apache2".into(),
            "-f".into(),
            self.conf.display().to_string(),
            "-t".into(),
        ]
    }

    /// The argv that lists its virtual hosts, for clubdeploy's `reload.vhosts`.
    pub fn vhosts(&self) -> Vec<String> {
        vec![
            "/usr/sbin/apache2".into(),
            "-f".into(),
            self.conf.display().to_string(),
            "-S".into(),
        ]
    }

    /// The argv that reloads it gracefully, for clubdeploy's `reload.command`.
    pub fn graceful(&self) -> Vec<String> {
        vec![
            "/usr/sbin/apache2".into(),
            "-f".into(),
            self.conf.display().to_string(),
            "-k".into(),
            "graceful".into(),
        ]
    }

    /// What the error log says, for failure messages.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.root.join("error.log")).unwrap_or_default()
    }
}

impl Drop for Apache {
    fn drop(&mut self) {
        crate::helpers::stop_process(self.pid);
    }
}

/// What the HTTPS git server needs, with the Debian package that brings it.
const GIT_HTTPS_NEEDS: [(&str, &str); 6] = [
    ("/usr/sbin/apache2", "apache2"),
    ("/usr/lib/apache2/modules/mod_ssl.so", "apache2"),
    ("/usr/lib/apache2/modules/mod_cgi.so", "apache2"),
    ("/usr/bin/htpasswd", "apache2-utils"),
    ("/usr/lib/git-core/git-http-backend", "git"),
    ("/usr/bin/openssl", "openssl"),
];

/// Whether an HTTPS git server can be started (see [`crate::helpers::installed`]).
pub fn git_https_available() -> bool {
    crate::helpers::installed("HTTPS FETCH TEST", &GIT_HTTPS_NEEDS)
}

/// Apache serving git repositories over HTTPS (`git http-backend`) with basic auth, its
/// certificate signed by a CA the test made.
pub struct GitHttps {
    pub apache: Apache,
    /// The CA certificate that vouches for the server, for `GIT_SSL_CAINFO`.
    pub ca: PathBuf,
}

impl GitHttps {
    /// Serves a bare copy of `source` as `/git/app.git` under `root`, for user `user` with
    /// password `password` (given to htpasswd on standard input, never in an argv).
    pub fn start(root: &Path, source: &Path, user: &str, password: &str) -> GitHttps {
        let dir = root.join("git-https");
        let repos = dir.join("repos");
        std::fs::create_dir_all(&repos).unwrap();
        let bare = repos.join("app.git");
        run(Command::new("git")
            .args(["clone", "--quiet", "--bare"])
            .arg(source)
            .arg(&bare));
        // Apache's children (and so git http-backend) run as www-data.
        run(Command::new("chown")
            .args(["-R", "www-data:www-data"])
            .arg(&repos));
        let ca = make_certificates(&dir);
        let htpasswd = dir.join("htpasswd");
        let mut child = Command::new("htpasswd")
            .args(["-i", "-c", "-B"])
            .arg(&htpasswd)
            .arg(user)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(password.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success(), "htpasswd failed");
        // Every directory on the way must be readable by www-data.
        let mut up = Some(dir.as_path());
        while let Some(path) = up {
            if path.starts_with(std::env::temp_dir()) && path != std::env::temp_dir() {
                let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755));
            }
            up = path.parent();
        }
        let port = free_port();
        let modules = "/usr/lib/apache2/modules";
        let conf = format!(
            "ServerRoot {dir:?}\nDefaultRuntimeDir {dir:?}\nPidFile {pid:?}\nErrorLog {log:?}\n\
             Listen 127.0.0.1:{port}\nServerName 127.0.0.1\n\
             LoadModule mpm_prefork_module {modules}/mod_mpm_prefork.so\n\
             LoadModule authz_core_module {modules}/mod_authz_core.so\n\
             LoadModule authn_core_module {modules}/mod_authn_core.so\n\
             LoadModule authn_file_module {modules}/mod_authn_file.so\n\
             LoadModule authz_user_module {modules}/mod_authz_user.so\n\
             LoadModule auth_basic_module {modules}/mod_auth_basic.so\n\
             LoadModule alias_module {modules}/mod_alias.so\n\
             LoadModule env_module {modules}/mod_env.so\n\
             LoadModule cgi_module {modules}/mod_cgi.so\n\
             LoadModule socache_shmcb_module {modules}/mod_socache_shmcb.so\n\
             LoadModule ssl_module {modules}/mod_ssl.so\n\
             User www-data\nGroup www-data\n\
             StartServers 2\nMinSpareServers 2\nMaxSpareServers 4\nMaxRequestWorkers 8\n\
             SSLSessionCache none\n\
             <VirtualHost 127.0.0.1:{port}>\n  SSLEngine on\n  SSLCertificateFile {cert:?}\n\
             \x20 SSLCertificateKeyFile {key:?}\n  SetEnv GIT_PROJECT_ROOT {repos:?}\n\
             \x20 SetEnv GIT_HTTP_EXPORT_ALL 1\n\
             \x20 ScriptAlias /git/ /usr/lib/git-core/git-http-backend/\n\
             \x20 <Directory /usr/lib/git-core>\n    Options +ExecCGI\n    Require all granted\n  </Directory>\n\
             \x20 <Location /git/>\n    AuthType Basic\n    AuthName git\n    AuthUserFile {htpasswd:?}\n\
             \x20   Require valid-user\n  </Location>\n</VirtualHost>\n",
            pid = dir.join("httpd.pid"),
            log = dir.join("error.log"),
            cert = dir.join("server.pem"),
            key = dir.join("server.key"),
        );
        let apache = Apache::start_with(dir, port, &conf);
        GitHttps { apache, ca }
    }

    /// `https://<userinfo>127.0.0.1:<port>/git/app.git`; `userinfo` is e.g. `deploy:TOKEN@`.
    pub fn url(&self, userinfo: &str) -> String {
        format!(
            "https://{userinfo}127.0.0.1:{}/git/app.git",
            self.apache.port
        )
    }
}

/// A CA and a server certificate for 127.0.0.1 signed by it, in `dir`; returns the CA's path.
fn make_certificates(dir: &Path) -> PathBuf {
    let ca_key = dir.join("ca.key");
    let ca = dir.join("ca.pem");
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-days",
            "2",
            "-subj",
            "/CN=clubdeploy test CA",
        ])
        .args(ec)
        .args(["-addext", "basicConstraints=critical,CA:TRUE"])
        .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        .arg("-keyout")
        .arg(&ca_key)
        .arg("-out")
        .arg(&ca));
    let csr = dir.join("server.csr");
    run(Command::new("openssl")
        .args(["req", "-subj", "/CN=127.0.0.1"])
        .args(ec)
        .arg("-keyout")
        .arg(dir.join("server.key"))
        .arg("-out")
        .arg(&csr));
    let ext = dir.join("server.ext");
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(Command::new("openssl")
        .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
        .arg("-in")
        .arg(&csr)
        .arg("-CA")
        .arg(&ca)
        .arg("-CAkey")
        .arg(&ca_key)
        .arg("-extfile")
        .arg(&ext)
        .arg("-out")
        .arg(dir.join("server.pem")));
    ca
}

/// Runs a set-up command that must succeed.
fn run(command: &mut Command) {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
