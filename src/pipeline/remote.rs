//! A web host reached over SSH (`[[hosts]]` with an `ssh` other than `local`): the host
//! agent of this very build copied to it once, then asked in JSON over ssh(1), which never
//! prompts and always checks the host key. Every failure says which host and what ssh said
//! ("web2: ssh: connect to host 10.0.0.12 port 22: Connection refused").

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context;
use sha2::{Digest, Sha256};

use super::agent::{self, Answer, Request};
use super::command::shell_quote;
use crate::config::Host;
use crate::domain::SshTarget;

/// How long ssh may take to connect before the host counts as unreachable.
const CONNECT_TIMEOUT_SECS: u32 = 10;

/// One web host over SSH.
pub struct RemoteHost {
    host: Host,
}

impl RemoteHost {
    pub fn new(host: Host) -> RemoteHost {
        RemoteHost { host }
    }

    pub fn name(&self) -> &str {
        self.host.name.as_str()
    }

    /// ssh's arguments to run `remote` (one program and its arguments) there, each quoted
    /// for the remote shell: never prompting, the host key always checked, the configured
    /// key alone.
    pub fn ssh_argv(&self, remote: &[String]) -> anyhow::Result<Vec<String>> {
        let mut argv = self.ssh_options()?;
        argv.extend(["--".to_owned(), self.destination()?]);
        argv.push(
            remote
                .iter()
                .map(|a| shell_quote(a))
                .collect::<Vec<_>>()
                .join(" "),
        );
        Ok(argv)
    }

    /// ssh and its options, the host aside: never prompting, the host key always checked,
    /// the configured key alone, the port and user of an `ssh://` URL.
    fn ssh_options(&self) -> anyhow::Result<Vec<String>> {
        let mut argv: Vec<String> = [
            "ssh",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
        ]
        .map(str::to_owned)
        .to_vec();
        argv.push(format!("ConnectTimeout={CONNECT_TIMEOUT_SECS}"));
        if let Some(known) = &self.host.known_hosts {
            argv.extend([
                "-o".to_owned(),
                format!("UserKnownHostsFile={}", known.display()),
            ]);
        }
        if let Some(key) = &self.host.ssh_key {
            argv.extend(
                ["-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none", "-i"].map(str::to_owned),
            );
            argv.push(key.display().to_string());
        }
        match &self.host.ssh {
            SshTarget::Local => anyhow::bail!("host {} is this machine: no SSH", self.name()),
            SshTarget::Url { user, port, .. } => {
                if let Some(port) = port {
                    argv.extend(["-p".to_owned(), port.to_string()]);
                }
                if let Some(user) = user {
                    argv.extend(["-l".to_owned(), user.clone()]);
                }
            }
            SshTarget::Alias(_) => {}
        }
        Ok(argv)
    }

    /// The host as ssh and rsync name it.
    fn destination(&self) -> anyhow::Result<String> {
        Ok(match &self.host.ssh {
            SshTarget::Local => anyhow::bail!("host {} is this machine: no SSH", self.name()),
            SshTarget::Url { host, .. } if host.contains(':') => format!("[{host}]"),
            SshTarget::Url { host, .. } => host.clone(),
            SshTarget::Alias(alias) => alias.clone(),
        })
    }

    /// Runs `remote` there with `input` on its standard input; its standard output, or an
    /// error naming the host and what ssh or the command said.
    fn run(&self, remote: &[String], input: &[u8]) -> anyhow::Result<Vec<u8>> {
        let argv = self.ssh_argv(remote)?;
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("{}: cannot run ssh", self.name()))?;
        let mut stdin = child.stdin.take().expect("piped");
        // A host that refuses before reading leaves the pipe closed: its error is ssh's.
        let _ = stdin.write_all(input);
        drop(stdin);
        let out = child.wait_with_output()?;
        if out.status.success() {
            return Ok(out.stdout);
        }
        let said = String::from_utf8_lossy(&out.stderr);
        let said = said
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("no message");
        let said: String = said.chars().take(300).collect();
        anyhow::bail!(
            "{}: {} ({})",
            self.name(),
            said,
            super::command::describe_status(out.status)
        )
    }

    /// Where the agent that is `binary` (its bytes) lives on the host:
    /// `<data_dir>/bin/clubdeploy-<sha-256>`, so each build is copied once and never
    /// replaces another in use.
    fn agent_path(&self, binary: &[u8]) -> PathBuf {
        let digest = Sha256::digest(binary);
        let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        self.host
            .data_dir
            .join("bin")
            .join(format!("clubdeploy-{hex}"))
    }

    /// Copies `binary` (this build of clubdeploy) to the host unless it is there already:
    /// into a temporary name, then renamed into place. Returns the agent's path there.
    pub fn install_agent(&self, binary: &Path) -> anyhow::Result<PathBuf> {
        let bytes =
            std::fs::read(binary).with_context(|| format!("cannot read {}", binary.display()))?;
        let path = self.agent_path(&bytes);
        let path_text = path.display().to_string();
        if self
            .run(&["test".into(), "-x".into(), path_text.clone()], b"")
            .is_ok()
        {
            return Ok(path);
        }
        let bin = self.host.data_dir.join("bin").display().to_string();
        let temp = format!("{path_text}.tmp-{}", std::process::id());
        // One POSIX shell line of quoted words: make the folder, write, make it runnable,
        // rename over.
        let line = format!(
            "mkdir -p {bin} && cat > {temp} && chmod 0755 {temp} && mv -f {temp} {path}",
            bin = shell_quote(&bin),
            temp = shell_quote(&temp),
            path = shell_quote(&path_text)
        );
        self.run(&["sh".into(), "-c".into(), line], &bytes)?;
        Ok(path)
    }

    /// Makes release `release_dir` (built here) present on the host as
    /// `<host_releases_dir>/<its name>`, complete or not at all: rsync into a `.stage-*`
    /// folder there, unchanged files hard links to the host's newest release; the staged
    /// tree must list exactly as ours ([`super::tree_digest`]); then one rename. A release
    /// already there and equal is left as it is (nothing travels).
    pub fn stage(
        &self,
        agent_path: &Path,
        release_dir: &Path,
        host_releases_dir: &Path,
    ) -> anyhow::Result<Staged> {
        let name = release_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .context("a release directory has a name")?;
        let ours = super::tree_digest::digest(release_dir)?;
        let names = match self.ask(
            agent_path,
            &Request::Releases {
                releases_dir: host_releases_dir.to_owned(),
            },
        )? {
            Answer::Releases { names } => names,
            other => anyhow::bail!("{}: {}", self.name(), unexpected(&other)),
        };
        let compare = |dir: PathBuf| -> anyhow::Result<Vec<String>> {
            match self.ask(agent_path, &Request::Digest { dir })? {
                Answer::Digest { entries } => Ok(super::tree_digest::differences(&ours, &entries)),
                other => anyhow::bail!("{}: {}", self.name(), unexpected(&other)),
            }
        };
        if names.contains(&name) {
            let differing = compare(host_releases_dir.join(&name))?;
            anyhow::ensure!(
                differing.is_empty(),
                "{}: release {name} there is not the one built here ({}): remove it there",
                self.name(),
                crate::domain::named(&differing, 3)
            );
            return Ok(Staged::Already);
        }
        let staged = host_releases_dir.join(format!(
            "{}{name}-{}",
            super::agent::STAGING_PREFIX,
            std::process::id()
        ));
        let ssh = self
            .ssh_options()?
            .iter()
            .map(|a| rsync_word(a))
            .collect::<anyhow::Result<Vec<_>>>()?
            .join(" ");
        // Files are compared by content, not by time (a host may keep times less precisely
        // than this machine, and a build makes new ones): an unchanged file becomes a hard
        // link to the host's newest release, a changed one travels.
        let mut rsync = Command::new("rsync");
        rsync
            .args([
                "-a",
                "--no-times",
                "--checksum",
                "--delete",
                "--mkpath",
                "--protect-args",
                "-e",
            ])
            .arg(ssh);
        if let Some(newest) = names.first() {
            rsync.arg(format!(
                "--link-dest={}",
                host_releases_dir.join(newest).display()
            ));
        }
        rsync
            .arg(format!("{}/", release_dir.display()))
            .arg(format!("{}:{}/", self.destination()?, staged.display()))
            .stdin(Stdio::null());
        let out = rsync
            .output()
            .with_context(|| format!("{}: cannot run rsync", self.name()))?;
        if !out.status.success() {
            let said = String::from_utf8_lossy(&out.stderr);
            let said = said
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("");
            anyhow::bail!(
                "{}: rsync: {} ({}); no club was changed",
                self.name(),
                said.chars().take(300).collect::<String>(),
                super::command::describe_status(out.status)
            );
        }
        let differing = compare(staged.clone())?;
        anyhow::ensure!(
            differing.is_empty(),
            "{}: the staged release {name} differs from ours ({}); no club was changed",
            self.name(),
            crate::domain::named(&differing, 3)
        );
        match self.ask(
            agent_path,
            &Request::Publish {
                releases_dir: host_releases_dir.to_owned(),
                staged,
                release: name,
            },
        )? {
            Answer::Published => Ok(Staged::Now),
            other => anyhow::bail!("{}: {}", self.name(), unexpected(&other)),
        }
    }

    /// Sends `request` to the agent at `agent_path` there; its answer, checked.
    pub fn ask(&self, agent_path: &Path, request: &Request) -> anyhow::Result<Answer> {
        let mut input = serde_json::to_vec(request)?;
        input.push(b'\n');
        let out = self.run(
            &[agent_path.display().to_string(), "host-agent".into()],
            &input,
        )?;
        agent::read_answer(&out).with_context(|| self.name().to_owned())
    }
}

/// What staging did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Staged {
    /// The release was there already, the same: nothing travelled.
    Already,
    /// It was copied there now.
    Now,
}

/// An answer that is not the one asked for, in words.
fn unexpected(answer: &Answer) -> String {
    match answer {
        Answer::Refused { why } => format!("the host agent refused: {why}"),
        other => format!("the host agent answered something else: {other:?}"),
    }
}

/// A word of rsync's `-e` command: rsync splits it on spaces and honours quotes but not
/// backslashes, so a word holding a quote cannot be said and is refused.
fn rsync_word(word: &str) -> anyhow::Result<String> {
    anyhow::ensure!(
        !word.contains(['\'', '"', '\\']),
        "{word:?} holds a quote or a backslash, which rsync cannot pass to ssh"
    );
    Ok(if word.contains(' ') {
        format!("'{word}'")
    } else {
        word.to_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::HostName;

    fn host(ssh: SshTarget) -> RemoteHost {
        RemoteHost::new(Host {
            name: HostName::parse("web2").unwrap(),
            ssh,
            ssh_key: Some("/etc/clubdeploy/deploy key".into()),
            known_hosts: Some("/etc/clubdeploy/known_hosts".into()),
            data_dir: "/srv/clubdeploy".into(),
            webroot_base: "/var/www".into(),
            configtest: Vec::new(),
            reload: Vec::new(),
            connect_to: None,
        })
    }

    #[test]
    fn ssh_never_prompts_checks_the_host_key_and_quotes_the_remote_words() {
        let web2 = host(SshTarget::Url {
            user: Some("deploy".into()),
            host: "10.0.0.12".into(),
            port: Some(2222),
        });
        let argv = web2
            .ssh_argv(&["/srv/x/clubdeploy".into(), "it's; rm -rf /".into()])
            .unwrap();
        let line = argv.join(" ");
        for part in [
            "-o BatchMode=yes",
            "-o StrictHostKeyChecking=yes",
            "-o UserKnownHostsFile=/etc/clubdeploy/known_hosts",
            "-o IdentitiesOnly=yes",
            "-p 2222",
            "-l deploy",
            "-- 10.0.0.12",
        ] {
            assert!(line.contains(part), "{part}: {line}");
        }
        assert_eq!(
            argv[argv.iter().position(|a| a == "-i").unwrap() + 1],
            "/etc/clubdeploy/deploy key"
        );
        assert_eq!(
            argv.last().unwrap(),
            "'/srv/x/clubdeploy' 'it'\\''s; rm -rf /'"
        );
        let alias = host(SshTarget::Alias("web2-alias".into()));
        let argv = alias.ssh_argv(&["true".into()]).unwrap();
        assert_eq!(&argv[argv.len() - 3..], ["--", "web2-alias", "'true'"]);
        assert!(host(SshTarget::Local).ssh_argv(&[]).is_err());
    }
}
