//! How far a job that switches clubs is, and the one sentence that says it.

use super::{JobKind, JobStatus};

/// A job's count across all its waves: `done` of its `total` clubs handled, `already` of
/// them on the release before the job (a deploy leaves those as they are).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tally {
    pub done: usize,
    pub total: usize,
    pub already: usize,
}

impl Tally {
    /// The job's count in words, as staff read it on every page: a deploy says what its clubs
    /// run ("6 of 6 clubs on v1.2.0 (4 already were)"), a rollback or put-back how many went
    /// back; a job that failed or was interrupted says where it stopped ("1 of 3 clubs tried,
    /// 2 not reached"), one stopped between waves what it reached and what it did not. `to`:
    /// the version a deploy brings; `status`: the job's now.
    pub fn words(&self, kind: JobKind, to: Option<&str>, status: JobStatus) -> String {
        let Tally {
            done,
            total,
            already,
        } = *self;
        let clubs = super::count(total, "club");
        let rest = total.saturating_sub(done);
        let not_reached = if rest > 0 {
            format!(", {rest} not reached")
        } else {
            String::new()
        };
        if matches!(status, JobStatus::Failed | JobStatus::Interrupted) {
            return format!("{done} of {clubs} tried{not_reached}");
        }
        let mut words = match (kind, to) {
            (JobKind::Deploy, Some(to)) => format!("{done} of {clubs} on {to}"),
            (JobKind::Rollback, _) => format!("{done} of {clubs} rolled back"),
            (JobKind::PutBack, _) => format!("{done} of {clubs} put back"),
            _ => format!("{done} of {clubs} switched"),
        };
        if kind == JobKind::Deploy && already > 0 {
            words.push_str(&format!(
                " ({already} already {})",
                if already == 1 { "was" } else { "were" }
            ));
        }
        if status == JobStatus::Cancelled {
            words.push_str(&not_reached);
        }
        words
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(done: usize, total: usize, already: usize) -> Tally {
        Tally {
            done,
            total,
            already,
        }
    }

    #[test]
    fn a_deploy_that_reached_every_club_says_what_they_run_and_how_many_already_did() {
        let words = |t: Tally| t.words(JobKind::Deploy, Some("v1.2.0"), JobStatus::Succeeded);
        assert_eq!(
            words(tally(6, 6, 4)),
            "6 of 6 clubs on v1.2.0 (4 already were)"
        );
        assert_eq!(
            words(tally(6, 6, 1)),
            "6 of 6 clubs on v1.2.0 (1 already was)"
        );
        assert_eq!(words(tally(1, 1, 0)), "1 of 1 club on v1.2.0");
    }

    #[test]
    fn a_running_deploy_counts_what_it_handled_so_far() {
        let t = tally(2, 30, 1);
        assert_eq!(
            t.words(JobKind::Deploy, Some("v2"), JobStatus::Running),
            "2 of 30 clubs on v2 (1 already was)"
        );
    }

    #[test]
    fn a_failed_job_says_where_it_stopped_not_a_full_count() {
        let t = tally(1, 3, 0);
        for kind in [JobKind::Deploy, JobKind::PutBack] {
            assert_eq!(
                t.words(kind, Some("v2"), JobStatus::Failed),
                "1 of 3 clubs tried, 2 not reached"
            );
        }
        assert_eq!(
            tally(3, 3, 0).words(JobKind::Deploy, Some("v2"), JobStatus::Interrupted),
            "3 of 3 clubs tried"
        );
    }

    #[test]
    fn a_job_stopped_between_waves_says_what_it_did_not_reach() {
        assert_eq!(
            tally(2, 6, 0).words(JobKind::Deploy, Some("v2"), JobStatus::Cancelled),
            "2 of 6 clubs on v2, 4 not reached"
        );
    }

    #[test]
    fn jobs_that_move_clubs_back_say_so() {
        let t = tally(2, 2, 0);
        assert_eq!(
            t.words(JobKind::Rollback, None, JobStatus::Succeeded),
            "2 of 2 clubs rolled back"
        );
        assert_eq!(
            t.words(JobKind::PutBack, None, JobStatus::Succeeded),
            "2 of 2 clubs put back"
        );
    }
}
