//! Fetching tags from the remote through the system `git`, as cargo's `net.git-fetch-with-cli`
//! does: SSH keys, `~/.ssh/config`, ssh-agent, known_hosts, credential helpers, proxies and a
//! private CA (`GIT_SSL_CAINFO`, `http.sslCAInfo`) then work exactly as they do for the
//! operators' own `git fetch`. It never prompts (no terminal, `BatchMode`, no askpass), always
//! verifies SSH host keys, stops after the configured timeout, and keeps a password in
//! `repo_url` out of every argv, message and log: git gets it from a credential helper that
//! reads it from its environment.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::bail;

use super::Progress;
use super::command::{OUTPUT_LIMIT, Ran};
use crate::config::GitSettings;
use crate::domain::{RepoUrl, UrlKind};

/// How often at most a fetch's running progress ("Receiving objects: 45%") is logged.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// The credential helper: answers git's `get` with the user name and password from its
/// environment, so they never appear in an argv that `ps` shows to other users.
const CREDENTIAL_HELPER: &str = "!f() { test \"$1\" = get || exit 0; \
     printf 'username=%s\\npassword=%s\\n' \"$CLUBDEPLOY_GIT_USERNAME\" \"$CLUBDEPLOY_GIT_PASSWORD\"; }; f";

/// Fetches every tag of `url` into the bare repository `git_dir`, reporting progress. On any
/// failure (timeout included) the mirror's refs are as they were.
pub fn fetch_tags(
    git_dir: &Path,
    url: &RepoUrl,
    git: &GitSettings,
    progress: &mut dyn Progress,
) -> anyhow::Result<()> {
    let shown = format!("git fetch {}", url.redacted());
    progress.progress(&format!("fetching tags from {}", url.redacted()));
    let mut command = Command::new("git");
    command
        .arg("--git-dir")
        .arg(git_dir)
        .args([
            "fetch",
            "--no-tags",
            "--progress",
            "--no-write-fetch-head",
            "--",
        ])
        .arg(url.for_git())
        .arg("+refs/tags/*:refs/tags/*")
        .stdin(Stdio::null())
        // Its own process group: a timeout stops git and the ssh or https helper it started.
        .process_group(0);
    environment(&mut command, url, git);
    let timeout = Duration::from_secs(git.timeout_secs);
    let (ran, timed_out) = run_with_progress(command, shown, timeout, url, progress)?;
    if timed_out {
        clean_after_kill(git_dir);
        progress.output(&ran);
        bail!(
            "fetching from {} did not finish within {} s ([git] timeout_secs), so it was \
             stopped; nothing was changed. Is the server reachable and answering?",
            url.redacted(),
            git.timeout_secs
        );
    }
    // On success the progress lines said it all; git's full output is for failures.
    if !ran.success {
        progress.output(&ran);
        bail!(explain_failure(url, git, &ran));
    }
    Ok(())
}

/// Asks `url` for its tags (`git ls-remote --tags`) the way a fetch would (same environment,
/// same timeout), changing nothing: how many tags it has, or why it cannot be reached.
pub fn ls_remote(url: &RepoUrl, git: &GitSettings) -> anyhow::Result<usize> {
    let mut command = Command::new("git");
    command
        .args(["ls-remote", "--tags", "--refs", "--"])
        .arg(url.for_git())
        .stdin(Stdio::null())
        .process_group(0);
    environment(&mut command, url, git);
    let shown = format!("git ls-remote {}", url.redacted());
    let timeout = Duration::from_secs(git.timeout_secs);
    let (ran, timed_out) = run_with_progress(command, shown, timeout, url, &mut super::Quiet)?;
    if timed_out {
        bail!(
            "{} did not answer within {} s ([git] timeout_secs)",
            url.redacted(),
            git.timeout_secs
        );
    }
    if !ran.success {
        bail!(explain_failure(url, git, &ran));
    }
    Ok(ran
        .output
        .lines()
        .filter(|l| l.contains("refs/tags/"))
        .count())
}

/// git's environment: the service's own (for ssh-agent, proxies, `GIT_SSL_CAINFO`, `HOME`),
/// with prompting off, SSH in batch mode with strict host key checking, and the credentials.
fn environment(command: &mut Command, url: &RepoUrl, git: &GitSettings) {
    command
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "")
        .env("SSH_ASKPASS", "")
        .env("SSH_ASKPASS_REQUIRE", "never")
        .env("GCM_INTERACTIVE", "never")
        // git's ext:: and fd:: transports run commands: allow only real network transports.
        .env("GIT_ALLOW_PROTOCOL", "file:git:http:https:ssh")
        .env("GIT_SSH_COMMAND", ssh_command(git))
        .env_remove("GIT_SSH")
        .env_remove("CLUBDEPLOY_GIT_USERNAME")
        .env_remove("CLUBDEPLOY_GIT_PASSWORD");
    if let Some(credentials) = url.credentials() {
        // Extra config through the environment (git 2.31+), appended to any the service has.
        let first: usize = std::env::var("GIT_CONFIG_COUNT")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        command
            .env("GIT_CONFIG_COUNT", (first + 2).to_string())
            // An empty helper first resets the list: only ours answers for this URL.
            .env(format!("GIT_CONFIG_KEY_{first}"), "credential.helper")
            .env(format!("GIT_CONFIG_VALUE_{first}"), "")
            .env(format!("GIT_CONFIG_KEY_{}", first + 1), "credential.helper")
            .env(format!("GIT_CONFIG_VALUE_{}", first + 1), CREDENTIAL_HELPER)
            .env("CLUBDEPLOY_GIT_USERNAME", credentials.username)
            .env("CLUBDEPLOY_GIT_PASSWORD", credentials.password);
    }
}

/// The ssh command git runs: the service's `GIT_SSH_COMMAND` (or `ssh`), never prompting,
/// always checking the host key, with the deploy key and known_hosts file when configured.
/// Options given on the command line win over `~/.ssh/config`.
pub fn ssh_command(git: &GitSettings) -> String {
    let base = std::env::var("GIT_SSH_COMMAND")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .unwrap_or_else(|| "ssh".to_owned());
    let mut command = format!(
        "{base} -o BatchMode=yes -o StrictHostKeyChecking=yes -o ConnectTimeout={}",
        git.timeout_secs.min(60)
    );
    if let Some(known_hosts) = &git.known_hosts {
        command.push_str(&format!(
            " -o UserKnownHostsFile={}",
            super::command::shell_quote(&known_hosts.display().to_string())
        ));
    }
    if let Some(key) = &git.ssh_key {
        command.push_str(&format!(
            " -o IdentitiesOnly=yes -o IdentityAgent=none -i {}",
            super::command::shell_quote(&key.display().to_string())
        ));
    }
    command
}

/// Runs `command`, logging git's progress lines as they come (at most one a second, and
/// each phase's last), killing its process group after `timeout`. Returns what it printed
/// (secret scrubbed, progress redraws folded) and whether it timed out.
fn run_with_progress(
    mut command: Command,
    shown: String,
    timeout: Duration,
    url: &RepoUrl,
    progress: &mut dyn Progress,
) -> anyhow::Result<(Ran, bool)> {
    let (mut reader, writer) = std::io::pipe()?;
    command.stdout(writer.try_clone()?).stderr(writer);
    let mut child = command
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot run git (is it installed?): {e}"))?;
    drop(command);
    let (sender, chunks) = mpsc::channel::<Vec<u8>>();
    let pump = std::thread::spawn(move || {
        let mut buffer = [0u8; 8192];
        while let Ok(n) = reader.read(&mut buffer) {
            if n == 0 || sender.send(buffer[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + timeout;
    let mut lines = ProgressLines::default();
    let mut timed_out = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match chunks.recv_timeout(left) {
            Ok(chunk) => {
                for line in lines.feed(&chunk) {
                    progress.progress(&url.scrub(&line));
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                timed_out = true;
                if let Some(group) = rustix::process::Pid::from_raw(child.id() as i32) {
                    let _ =
                        rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
                }
                let _ = child.kill();
                break;
            }
        }
    }
    let status = child.wait()?;
    // After a kill, a grandchild may still hold the pipe a moment; do not wait on it.
    if !timed_out {
        let _ = pump.join();
    }
    let output = url.scrub(&lines.finish());
    let described = if timed_out {
        format!("stopped after {} s", timeout.as_secs())
    } else {
        super::command::describe_status(status)
    };
    let ran = Ran {
        shown,
        success: status.success() && !timed_out,
        status: described,
        output,
    };
    Ok((ran, timed_out))
}

/// Splits git's output into lines (a `\r` redraws a progress line) and picks the progress
/// lines worth logging.
#[derive(Default)]
struct ProgressLines {
    partial: Vec<u8>,
    /// Every finished line, progress redraws folded into their last state.
    kept: String,
    last_logged: Option<Instant>,
}

impl ProgressLines {
    fn feed(&mut self, chunk: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        for &byte in chunk {
            if byte != b'\r' && byte != b'\n' {
                self.partial.push(byte);
                continue;
            }
            let line = String::from_utf8_lossy(&self.partial).trim().to_owned();
            self.partial.clear();
            if line.is_empty() {
                continue;
            }
            let text = line.strip_prefix("remote: ").unwrap_or(&line).to_owned();
            let is_progress = text.contains('%') || text.ends_with("done.");
            if !is_progress {
                self.keep(&line);
                continue;
            }
            let finished = text.ends_with("done.") || byte == b'\n';
            if finished {
                self.keep(&line);
                self.last_logged = Some(Instant::now());
                out.push(text);
            } else if self
                .last_logged
                .is_none_or(|at| at.elapsed() >= PROGRESS_EVERY)
            {
                self.last_logged = Some(Instant::now());
                out.push(text);
            }
        }
        out
    }

    fn keep(&mut self, line: &str) {
        self.kept.push_str(line);
        self.kept.push('\n');
        if self.kept.len() > 2 * OUTPUT_LIMIT {
            let cut = self.kept.len() - OUTPUT_LIMIT;
            let cut = (cut..self.kept.len())
                .find(|&i| self.kept.is_char_boundary(i))
                .unwrap_or(cut);
            self.kept.drain(..cut);
        }
    }

    fn finish(mut self) -> String {
        if !self.partial.is_empty() {
            let line = String::from_utf8_lossy(&self.partial).trim().to_owned();
            self.keep(&line);
        }
        self.kept
    }
}

/// After git was killed: its temporary pack files and ref locks would make the next fetch
/// fail ("cannot lock ref"). The deploy lock is held, so no other git runs here now.
fn clean_after_kill(git_dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(git_dir.join("objects/pack")) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with("tmp_") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    remove_locks(git_dir, 0);
}

fn remove_locks(dir: &Path, depth: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let name = entry.file_name();
        if kind.is_dir() && depth < 8 && (depth > 0 || name == "refs") {
            remove_locks(&path, depth + 1);
        } else if kind.is_file() && name.to_string_lossy().ends_with(".lock") {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// A plain-language reason for a failed fetch, naming the (redacted) URL and what to do.
fn explain_failure(url: &RepoUrl, git: &GitSettings, ran: &Ran) -> String {
    // git's own reason: its first `fatal:`/`error:` line (the last line is often advice).
    let said = ran
        .output
        .lines()
        .map(str::trim)
        .find(|l| {
            let lower = l.to_ascii_lowercase();
            lower.starts_with("fatal:") || lower.starts_with("error:")
        })
        .or_else(|| ran.last_line())
        .unwrap_or("no output")
        .to_owned();
    let output = &ran.output;
    let shown = url.redacted();
    let has = |needle: &str| output.contains(needle);
    if url.kind() == UrlKind::Ssh
        && (has("Host key verification failed")
            || has("REMOTE HOST IDENTIFICATION HAS CHANGED")
            || has("host key is known for"))
    {
        let (host, port) = ssh_destination(url, git);
        let changed = has("REMOTE HOST IDENTIFICATION HAS CHANGED");
        let file = git
            .known_hosts
            .as_ref()
            .map_or("~/.ssh/known_hosts".to_owned(), |p| p.display().to_string());
        return format!(
            "the SSH host key of {host} (port {port}) {} so the fetch from {shown} was refused \
             and nothing was changed. Check the server's fingerprint with its administrator, \
             then trust it with `ssh-keyscan -p {port} {host} >> {file}`{}",
            if changed {
                "has CHANGED since it was last trusted (someone may be intercepting the \
                 connection, or the server was reinstalled),"
            } else {
                "is not known yet,"
            },
            if changed {
                format!(
                    " after removing the old key with `ssh-keygen -R '[{host}]:{port}' -f {file}`"
                )
            } else {
                String::new()
            }
        );
    }
    if url.kind() == UrlKind::Ssh && has("Permission denied") {
        let key = git.ssh_key.as_ref().map_or_else(
            || "the SSH key of the user clubdeploy runs as".to_owned(),
            |k| format!("the deploy key {} ([git] ssh_key)", k.display()),
        );
        return format!(
            "the SSH server refused {key} for {shown}: add its public key to the repository's \
             deploy keys, or fix [git] ssh_key; nothing was changed (ssh said: {said})"
        );
    }
    if has("Authentication failed")
        || has("terminal prompts disabled")
        || has("returned error: 403")
    {
        return format!(
            "the server refused the user name and password (or token) for {shown}: put \
             a valid token in repo_url or set up a git credential helper; nothing was changed \
             (git said: {said})"
        );
    }
    if has("SSL certificate problem") || has("server certificate verification failed") {
        return format!(
            "cannot verify the TLS certificate of {shown}; for a private CA set GIT_SSL_CAINFO \
             or `git config --global http.sslCAInfo <file>` for the user clubdeploy runs as; \
             nothing was changed (git said: {said})"
        );
    }
    if has("does not appear to be a git repository") || has("not a git repository") {
        return format!(
            "repo_url {shown} is not a git repository or cannot be read; nothing was changed \
             (git said: {said})"
        );
    }
    if has("Could not resolve host")
        || has("Connection refused")
        || has("Connection timed out")
        || has("Could not read from remote repository")
    {
        return format!(
            "cannot reach the repository {shown} (repo_url); nothing was changed (git said: \
             {said})"
        );
    }
    format!(
        "cannot fetch from repo_url {shown}: it is not a git repository or cannot be read; \
         nothing was changed (git {}: {said})",
        ran.status
    )
}

/// The real host and port ssh connects to for the URL, as ssh itself resolves them (Host
/// aliases, Port lines in `~/.ssh/config`), falling back to what the URL says.
fn ssh_destination(url: &RepoUrl, git: &GitSettings) -> (String, u16) {
    let (host, port) = url
        .host_and_port()
        .unwrap_or_else(|| ("?".to_owned(), None));
    let mut resolved = (host.clone(), port.unwrap_or(22));
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!("{} -G \"$1\"", ssh_command(git)))
        .arg("sh")
        .arg(&host)
        .stdin(Stdio::null())
        .stderr(Stdio::null());
    if let Ok(out) = command.output()
        && out.status.success()
    {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            match line.split_once(' ') {
                Some(("hostname", value)) => resolved.0 = value.to_owned(),
                Some(("port", value)) if port.is_none() => {
                    resolved.1 = value.parse().unwrap_or(resolved.1)
                }
                _ => {}
            }
        }
    }
    resolved
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_redraws_are_folded_and_throttled() {
        let mut lines = ProgressLines::default();
        let logged = lines.feed(
            b"remote: Counting objects:  50% (1/2)\rremote: Counting objects: 100% (2/2), done.\n\
              Receiving objects:  10% (1/10)\rReceiving objects:  20% (2/10)\r\
              Receiving objects: 100% (10/10), 1.00 KiB | 1.00 MiB/s, done.\n\
               * [new tag]         v1         -> v1\n",
        );
        assert_eq!(
            logged,
            [
                "Counting objects:  50% (1/2)",
                "Counting objects: 100% (2/2), done.",
                "Receiving objects: 100% (10/10), 1.00 KiB | 1.00 MiB/s, done."
            ]
        );
        let kept = lines.finish();
        assert!(kept.contains("* [new tag]"), "{kept}");
        assert!(!kept.contains("20%"), "{kept}");
    }

    #[test]
    fn the_ssh_command_never_prompts_and_always_checks_host_keys() {
        let git = GitSettings {
            ssh_key: Some("/keys/it's".into()),
            known_hosts: Some("/keys/known".into()),
            ..GitSettings::default()
        };
        let command = ssh_command(&git);
        assert!(command.contains("-o BatchMode=yes"));
        assert!(command.contains("-o StrictHostKeyChecking=yes"));
        assert!(command.contains("-o UserKnownHostsFile='/keys/known'"));
        assert!(command.contains("-i '/keys/it'\\''s'"));
    }
}
