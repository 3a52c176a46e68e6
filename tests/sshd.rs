//! A private OpenSSH server for the fetch tests: its own config, host key, authorized deploy
//! key and pid file under the test's directory, on a free loopback port. Stopped (by pid)
//! when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::helpers::{free_port, stop_process, succeeded, wait_until_serving};

/// What the SSH tests need installed, with the Debian package that brings it.
const NEEDS: [(&str, &str); 3] = [
    ("/usr/sbin/sshd", "openssh-server"),
    ("/usr/bin/ssh", "openssh-client"),
    ("/usr/bin/ssh-keygen", "openssh-client"),
];

/// Whether OpenSSH's server and client are installed (see [`crate::helpers::installed`]).
pub fn available() -> bool {
    crate::helpers::installed("SSH FETCH TEST", &NEEDS)
}

/// A running sshd that lets the holder of `deploy_key` in as the current user.
pub struct Sshd {
    pub port: u16,
    /// The server's host key line for a known_hosts file: `[127.0.0.1]:PORT ssh-ed25519 …`.
    pub known_hosts_line: String,
    /// A private key the server accepts.
    pub deploy_key: PathBuf,
    /// The user it lets in.
    pub user: String,
    pid: u32,
}

/// Makes an ed25519 key pair at `path` (and `path.pub`); returns the public key line.
pub fn keygen(path: &Path) -> String {
    succeeded(
        Command::new("ssh-keygen")
            .args([
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "clubdeploy-test",
                "-f",
            ])
            .arg(path),
    );
    std::fs::read_to_string(path.with_extension("pub"))
        .unwrap()
        .trim()
        .to_owned()
}

impl Sshd {
    /// Starts sshd with its files in `dir`.
    pub fn start(dir: &Path) -> Sshd {
        std::fs::create_dir_all(dir).unwrap();
        // sshd's privilege separation directory; the openssh-server package's service would
        // make it, but no service runs here.
        if !Path::new("/run/sshd").exists() {
            std::fs::create_dir_all("/run/sshd").unwrap();
        }
        let host_key = dir.join("host_key");
        let host_public = keygen(&host_key);
        let deploy_key = dir.join("deploy_key");
        let deploy_public = keygen(&deploy_key);
        std::fs::write(dir.join("authorized_keys"), format!("{deploy_public}\n")).unwrap();
        let port = free_port();
        let pid_file = dir.join("sshd.pid");
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nPidFile {pid}\n\
                 AuthorizedKeysFile {auth}\nStrictModes no\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nUsePAM no\n\
                 PermitRootLogin prohibit-password\nAllowTcpForwarding no\nX11Forwarding no\n\
                 PrintMotd no\nLogLevel VERBOSE\n",
                host = host_key.display(),
                pid = pid_file.display(),
                auth = dir.join("authorized_keys").display(),
            ),
        )
        .unwrap();
        let log = dir.join("sshd.log");
        let out = Command::new("/usr/sbin/sshd")
            .arg("-f")
            .arg(&config)
            .arg("-E")
            .arg(&log)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "sshd did not start: {}{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let pid = wait_until_serving(&pid_file, port, || {
            std::fs::read_to_string(&log).unwrap_or_default()
        });
        let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_owned();
        let key_type_and_key = host_public
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        Sshd {
            port,
            known_hosts_line: format!("[127.0.0.1]:{port} {key_type_and_key}"),
            deploy_key,
            user,
            pid,
        }
    }

    /// `ssh://<user>@127.0.0.1:<port><path>`.
    pub fn url(&self, path: &Path) -> String {
        format!(
            "ssh://{}@127.0.0.1:{}{}",
            self.user,
            self.port,
            path.display()
        )
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        stop_process(self.pid);
    }
}
