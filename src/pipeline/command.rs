//! Runs the configured external commands (build, check, configtest, reload) and captures what
//! they print, bounded, for the job log.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};

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
    run_in(argv, dir, None)
}

/// Runs `argv` in `dir` with only the variables in `env` (the service's own environment,
/// tokens and credentials included, is not passed on), and waits for it.
pub fn run_clean(argv: &[String], dir: &Path, env: &[(String, String)]) -> std::io::Result<Ran> {
    run_in(argv, Some(dir), Some(env))
}

fn run_in(
    argv: &[String],
    dir: Option<&Path>,
    env: Option<&[(String, String)]>,
) -> std::io::Result<Ran> {
    let shown = argv.join(" ");
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| std::io::Error::other("empty command"))?;
    // One pipe for both streams keeps their order as the command wrote them.
    let (mut reader, writer) = std::io::pipe()?;
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(writer.try_clone()?)
        .stderr(writer);
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    if let Some(env) = env {
        command.env_clear().envs(env.iter().map(|(k, v)| (k, v)));
    }
    let mut child = command
        .spawn()
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot run `{shown}`: {e}")))?;
    // The parent's copies of the write end are gone with `command`, so the read ends at exit.
    drop(command);
    let mut tail = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = reader.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        tail.extend_from_slice(&chunk[..n]);
        if tail.len() > 2 * OUTPUT_LIMIT {
            tail.drain(..tail.len() - OUTPUT_LIMIT);
        }
    }
    if tail.len() > OUTPUT_LIMIT {
        tail.drain(..tail.len() - OUTPUT_LIMIT);
    }
    let status = child.wait()?;
    Ok(Ran {
        shown,
        success: status.success(),
        status: describe_status(status),
        output: String::from_utf8_lossy(&tail).into_owned(),
    })
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
    fn a_missing_program_is_an_error_naming_it() {
        let err = run(&["/nonexistent/prog".to_string()], None).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/prog"));
    }
}
