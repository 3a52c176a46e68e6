//! A private Apache (prefork + mod_php + OPcache) for the end-to-end tests: its own
//! ServerRoot, config, pid file and loopback port, one name-based vhost per club whose
//! DocumentRoot is the club's webroot symlink, and a status vhost outside the releases that
//! returns `opcache_get_status()` as JSON. Stopped when dropped.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

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
    let mut needs: Vec<(&Path, &str)> = NEEDS
        .iter()
        .map(|(path, package)| (Path::new(*path), *package))
        .collect();
    needs.push((&php, "libapache2-mod-php"));
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
    /// Writes the config for `clubs` (slug, webroot) under `root` and starts Apache.
    pub fn start(root: &Path, clubs: &[(String, PathBuf)]) -> Apache {
        let dir = root.join("apache");
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
        let out = Command::new("/usr/sbin/apache2")
            .args(["-f", conf_path.to_str().unwrap(), "-k", "start"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "apache2 did not start: {}{}",
            String::from_utf8_lossy(&out.stderr),
            error_log()
        );
        let pid_file = dir.join("httpd.pid");
        let deadline = Instant::now() + Duration::from_secs(20);
        let pid = loop {
            let pid = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|text| text.trim().parse::<u32>().ok());
            let listening = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
            if let (Some(pid), true) = (pid, listening) {
                break pid;
            }
            assert!(
                Instant::now() < deadline,
                "apache2 did not listen and write its pid file: {}",
                error_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
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
        stop_process(self.pid);
    }
}

/// Stops a server by its pid: SIGTERM (Apache and sshd stop their children on it), then
/// waits for it to go, with SIGKILL after 10 s, so the port and shared memory are released.
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

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
