//! The steps of a deploy, on the filesystem and git only: it knows nothing of HTTP or SQL, so
//! every step is tested on temporary directories.

pub mod agent;
pub mod attributes;
pub mod build_user;
pub mod command;
pub mod fetch;
pub mod fsops;
pub mod git;
pub mod health;
pub mod host;
pub mod legacy;
pub mod lock;
pub mod probe;
pub mod recovery;
pub mod release;
pub mod remote;
pub mod switch;
pub mod tree_check;
pub mod tree_diff;
pub mod tree_digest;
pub mod webroot_dir;

use std::fmt;
use std::time::Duration;

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
    /// A line that also says, as data, how far the whole job is.
    fn count(&mut self, message: &str, tally: crate::domain::Tally) {
        let _ = tally;
        self.progress(message);
    }
}

/// Whether the `done`th of `total` clubs is worth a line of progress: every club of a job of
/// up to [`EVERY_CLUB_UP_TO`]; else the last, and each percent once [`PACE`] has passed since
/// the line before (`since_last`; `None` before the first). A 10,000-club deploy writes a line
/// every tenth of a second at most, not ten thousand: each line is a database write.
pub fn worth_telling(done: usize, total: usize, since_last: Option<Duration>) -> bool {
    let percent = done * 100 / total != (done - 1) * 100 / total;
    total <= EVERY_CLUB_UP_TO
        || done >= total
        || (percent && since_last.is_none_or(|since| since >= PACE))
}

/// The least time between two lines of progress in a large job.
pub const PACE: Duration = Duration::from_millis(100);

/// Jobs of up to this many clubs say every club's switch.
pub const EVERY_CLUB_UP_TO: usize = 100;

/// A [`Progress`] that reports nothing, for callers with no one to tell.
pub struct Quiet;

impl Progress for Quiet {
    fn step(&mut self, _: Step) {}
    fn progress(&mut self, _: &str) {}
    fn output(&mut self, _: &command::Ran) {}
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{PACE, worth_telling};

    #[test]
    fn a_small_job_tells_every_club_and_a_large_one_each_percent_at_most_each_pace() {
        let slow = Some(PACE);
        assert!((1..=100).all(|done| worth_telling(done, 100, Some(Duration::ZERO))));
        let told = (1..=10_000)
            .filter(|&done| worth_telling(done, 10_000, slow))
            .count();
        assert_eq!(told, 100);
        assert!(worth_telling(10_000, 10_000, slow));
        assert!(worth_telling(100, 10_000, slow) && !worth_telling(101, 10_000, slow));
        let told = (1..=250)
            .filter(|&done| worth_telling(done, 250, slow))
            .count();
        assert!((99..=101).contains(&told), "{told}");
        // Faster than the pace: the first percent and the last club only.
        let fast = Some(PACE / 2);
        assert!(worth_telling(100, 10_000, None));
        assert!(!worth_telling(200, 10_000, fast));
        assert!(worth_telling(10_000, 10_000, fast));
        assert!(!worth_telling(150, 10_000, None), "between percents");
    }
}
