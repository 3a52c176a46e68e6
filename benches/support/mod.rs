//! What the benches share: a configuration in a temporary folder, a server started from a
//! binary on a free loopback port (stopped when dropped), and a process's resident memory.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Writes `root/clubdeploy.toml` (data in `root/data`, sites under `root/www`, a repository
/// that need not exist) with `extra` appended; its path.
pub fn write_config(root: &Path, extra: &str) -> PathBuf {
    let config = root.join("clubdeploy.toml");
    std::fs::create_dir_all(root.join("www")).unwrap();
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\nrepo_url = {:?}\nwebroot_base = {:?}\n{extra}",
            root.join("data"),
            root.join("no-repo"),
            root.join("www")
        ),
    )
    .unwrap();
    config
}

/// Adds the member of staff `admin` (an administrator) with `password`.
pub fn add_admin(conn: &mut clubdeploy::db::Conn, password: &str) {
    use clubdeploy::auth::staff::{self, Actor};
    use clubdeploy::domain::{ClubScope, NewPassword, Role, UserName};
    staff::add(
        conn,
        Actor {
            name: "bench",
            address: None,
        },
        &UserName::parse("admin").unwrap(),
        Role::Admin,
        &ClubScope::All,
        &clubdeploy::auth::password::hash(&NewPassword::parse(password).unwrap()).unwrap(),
    )
    .unwrap();
}

/// `clubdeploy serve` from `binary` with `config` on a free loopback port; killed on drop.
pub struct Server {
    pub child: Child,
    pub base: String,
}

impl Server {
    pub fn start(binary: &Path, config: &Path) -> Server {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let child = Command::new(binary)
            .args(["--config", config.to_str().unwrap(), "serve"])
            .env("CLUBDEPLOY_LISTEN", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Its resident memory, in MB.
    pub fn rss_mb(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kb: f64 = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap();
        kb / 1024.0
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
