//! The steps of a deploy, on the filesystem and git only: it knows nothing of HTTP or SQL, so
//! every step is tested on temporary directories.

pub mod attributes;
pub mod command;
pub mod fetch;
pub mod fsops;
pub mod git;
pub mod health;
pub mod legacy;
pub mod lock;
pub mod probe;
pub mod recovery;
pub mod release;
pub mod switch;
pub mod webroot_dir;

use std::fmt;

/// The steps of a job, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    Fetch,
    Build,
    /// Comparing a legacy copy with the release that replaces it.
    Compare,
    Preflight,
    Switch,
    Reload,
    /// Proving the switched clubs live on the release.
    Health,
    Prune,
}

impl Step {
    /// The step's name as shown and stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Fetch => "fetch",
            Step::Build => "build",
            Step::Compare => "compare",
            Step::Preflight => "preflight",
            Step::Switch => "switch",
            Step::Reload => "reload",
            Step::Health => "health",
            Step::Prune => "prune",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a running job reports what it does: the terminal for the command line, the job's
/// events for the server.
pub trait Progress {
    /// A step begins.
    fn step(&mut self, step: Step);
    /// A line of progress within the current step ("12 of 30 clubs switched").
    fn progress(&mut self, message: &str);
    /// The output of a command that ran in the current step.
    fn output(&mut self, ran: &command::Ran);
    /// A line with evidence behind it (a failing response), kept in full in the log.
    fn evidence(&mut self, message: &str, text: &str) {
        let _ = text;
        self.progress(message);
    }
}

/// A [`Progress`] that reports nothing, for callers with no one to tell.
pub struct Quiet;

impl Progress for Quiet {
    fn step(&mut self, _: Step) {}
    fn progress(&mut self, _: &str) {}
    fn output(&mut self, _: &command::Ran) {}
}
