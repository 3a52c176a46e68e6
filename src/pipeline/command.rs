//! Runs the configured external commands (build, check, configtest, reload) and captures what
//! they print, bounded, for the job log.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::build_user::BuildUser;

/// The most output kept per command: the last 64 KiB.
pub const OUTPUT_LIMIT: usize = 64 * 1024;

/// A command that ran, with the tail of its combined output.
#[derive(Debug)]
pub struct Ran {
    /// The command line, for messages.
    pub shown: String,
    /// Whether it exited 0.
    pub success: bool,
    /// How it ended, in words ("exit code 2", "killed by signal 9").
    pub status: String,
    /// The last [`OUTPUT_LIMIT`] bytes of stdout and stderr, interleaved as written.
    pub output: String,
}

/// Runs `argv` in `dir` (or the current directory) with the service's environment and waits
/// for it; an error only when it could not be started at all.
pub fn run(argv: &[String], dir: Option<&Path>) -> std::io::Result<Ran> {
    run_in(argv, dir, None, None, None)
}

/// Runs `argv` in `dir` with only the variables in `env` (the service's own environment,
/// tokens and credentials included, is not passed on), in a process group of its own, and
/// waits for it at most `timeout`: then the whole group is killed and the command has
/// failed. When the command itself exits, what it left running in the background (a
/// daemon holding its output open) is given a moment, then killed with its group: a build
/// step ends when its command does. With `as_user`, it runs as that user (see
/// [`super::build_user`]), and after it every process of that user is stopped.
pub fn run_clean(
    argv: &[String],
    dir: &Path,
    env: &[(String, String)],
    timeout: Duration,
    as_user: Option<&BuildUser>,
) -> std::io::Result<Ran> {
    run_in(argv, Some(dir), Some(env), Some(timeout), as_user)
}

/// How long what a command left in the background may keep its output open after the
/// command exits.
const STRAGGLERS: Duration = Duration::from_millis(500);

fn run_in(
    argv: &[String],
    dir: Option<&Path>,
    env: Option<&[(String, String)]>,
    timeout: Option<Duration>,
    as_user: Option<&BuildUser>,
) -> std::io::Result<Ran> {
    let shown = argv.join(" ");
    if argv.is_empty() {
        return Err(std::io::Error::other("empty command"));
    }
    // As another user, sudo runs this program, which reads the environment from standard
    // input and becomes the command.
    let (line, input) = match as_user {
        Some(user) => {
            let (line, input) = user.wrap(argv, env.unwrap_or_default());
            (line, Some(input))
        }
        None => (argv.to_vec(), None),
    };
    let (program, args) = line.split_first().expect("not empty");
    // One pipe for both streams keeps their order as the command wrote them.
    let (mut reader, writer) = std::io::pipe()?;
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(match input {
            Some(_) => Stdio::piped(),
            None => Stdio::null(),
        })
        .stdout(writer.try_clone()?)
        .stderr(writer);
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    match (env, as_user) {
        // sudo itself gets only the service's PATH, to be found; the command gets `env`.
        (Some(_), Some(_)) => {
            command
                .env_clear()
                .envs(std::env::var_os("PATH").map(|p| ("PATH", p)));
        }
        (Some(env), None) => {
            command.env_clear().envs(env.iter().map(|(k, v)| (k, v)));
        }
        (None, _) => {}
    }
    if timeout.is_some() {
        // A session of its own: a process group to stop, and no terminal to ask on (nor for
        // sudo to give the command one).
        // SAFETY: setsid(2) is async-signal-safe and touches no memory of the parent's.
        unsafe {
            command.pre_exec(|| rustix::process::setsid().map(|_| ()).map_err(Into::into));
        }
    }
    let mut child = command
        .spawn()
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot run `{shown}`: {e}")))?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        std::thread::spawn(move || {
            use std::io::Write;
            let _ = stdin.write_all(&input);
        });
    }
    // The parent's copies of the write end are gone with `command`, so the read ends at exit.
    drop(command);
    let (sender, chunks) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        while let Ok(n) = reader.read(&mut chunk) {
            if n == 0 || sender.send(chunk[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let started = Instant::now();
    let mut tail = Vec::new();
    let mut exited: Option<(std::process::ExitStatus, Instant)> = None;
    let mut timed_out = false;
    loop {
        match chunks.recv_timeout(Duration::from_millis(50)) {
            Ok(chunk) => {
                tail.extend_from_slice(&chunk);
                if tail.len() > 2 * OUTPUT_LIMIT {
                    tail.drain(..tail.len() - OUTPUT_LIMIT);
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if exited.is_none()
            && let Some(status) = child.try_wait()?
        {
            exited = Some((status, Instant::now()));
        }
        let stragglers = exited.is_some_and(|(_, at)| at.elapsed() >= STRAGGLERS);
        timed_out = exited.is_none() && timeout.is_some_and(|t| started.elapsed() >= t);
        if stragglers || timed_out {
            break;
        }
    }
    if let Some(t) = timeout {
        // What is left of the group (the command after its timeout, its background
        // children either way) is stopped.
        if let Some(group) = rustix::process::Pid::from_raw(child.id() as i32) {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
        // Processes of another user this one may not signal: that user stops them all,
        // and with them the command sudo waits for.
        if let Some(user) = as_user
            && let Err(e) = user.stop()
        {
            tail.extend_from_slice(format!("\n({e})\n").as_bytes());
        }
        if timed_out {
            let _ = child.kill();
            let _ = child.wait();
            tail.extend_from_slice(
                format!("\n(stopped after {} s: the time limit)\n", t.as_secs()).as_bytes(),
            );
        }
    }
    if tail.len() > OUTPUT_LIMIT {
        tail.drain(..tail.len() - OUTPUT_LIMIT);
    }
    let (success, status) = match exited {
        _ if timed_out => (
            false,
            format!("stopped after {} s", timeout.unwrap_or_default().as_secs()),
        ),
        Some((status, _)) => (status.success(), describe_status(status)),
        None => {
            let status = child.wait()?;
            (status.success(), describe_status(status))
        }
    };
    Ok(Ran {
        shown,
        success,
        status,
        output: String::from_utf8_lossy(&tail).into_owned(),
    })
}

/// `text` as one word of a POSIX shell, nothing in it expanded: `'it'\''s'`. For the
/// command lines ssh(1) hands to the remote user's shell.
pub fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// How a process ended, in words: "exit code 2", "killed by signal 9".
pub fn describe_status(status: std::process::ExitStatus) -> String {
    match (
        status.code(),
        std::os::unix::process::ExitStatusExt::signal(&status),
    ) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => status.to_string(),
    }
}

impl Ran {
    /// The last line the command printed, to put in a one-line error.
    pub fn last_line(&self) -> Option<&str> {
        self.output
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| !l.is_empty())
    }

    /// An error naming the command and how it failed, or `Ok` when it succeeded.
    pub fn ok(&self) -> anyhow::Result<()> {
        if self.success {
            return Ok(());
        }
        match self.last_line() {
            Some(line) => anyhow::bail!("`{}` failed ({}): {line}", self.shown, self.status),
            None => anyhow::bail!("`{}` failed ({})", self.shown, self.status),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), script.into()]
    }

    #[test]
    fn captures_both_streams_and_the_exit_code() {
        let ran = run(&sh("echo out; echo err >&2; exit 3"), None).unwrap();
        assert!(!ran.success);
        assert_eq!(ran.status, "exit code 3");
        assert_eq!(ran.output, "out\nerr\n");
        assert!(
            ran.ok()
                .unwrap_err()
                .to_string()
                .contains("failed (exit code 3): err")
        );
    }

    #[test]
    fn keeps_only_the_tail_of_long_output() {
        let ran = run(&sh("head -c 300000 /dev/zero | tr '\\0' x; echo END"), None).unwrap();
        assert!(ran.success);
        assert_eq!(ran.output.len(), OUTPUT_LIMIT);
        assert!(ran.output.ends_with("xEND\n"));
    }

    #[test]
    fn a_command_past_its_time_is_stopped_with_its_group_and_has_failed() {
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let ran = run_clean(
            &sh("echo begun; sleep 30 & sleep 30"),
            dir.path(),
            &[("PATH".into(), "/usr/bin:/bin".into())],
            Duration::from_millis(300),
            None,
        )
        .unwrap();
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(!ran.success);
        assert_eq!(ran.status, "stopped after 0 s");
        assert!(ran.output.starts_with("begun\n"), "{}", ran.output);
        assert!(ran.ok().unwrap_err().to_string().contains("stopped after"));
    }

    #[test]
    fn what_a_command_leaves_running_does_not_keep_its_step_going() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("still-running");
        let started = Instant::now();
        // The daemon keeps the output open, and would write the marker if it lived.
        let script = format!("(sleep 3; touch {}) & echo built", marker.display());
        let ran = run_clean(
            &sh(&script),
            dir.path(),
            &[("PATH".into(), "/usr/bin:/bin".into())],
            Duration::from_secs(60),
            None,
        )
        .unwrap();
        assert!(ran.success, "{ran:?}");
        assert_eq!(ran.output, "built\n");
        assert!(started.elapsed() < Duration::from_secs(3));
        std::thread::sleep(
            Duration::from_millis(3500) - started.elapsed().min(Duration::from_secs(3)),
        );
        assert!(
            !marker.exists(),
            "the background child outlived its build step"
        );
    }

    #[test]
    fn a_missing_program_is_an_error_naming_it() {
        let err = run(&["/nonexistent/prog".to_string()], None).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/prog"));
    }
}
