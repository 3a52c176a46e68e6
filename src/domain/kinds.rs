//! What a job does and why a club's webroot was switched: the kinds, each stored by one
//! literal that lives here.

use std::fmt;

use serde::Serialize;

use super::InvalidInput;

/// What a job does: every list of kinds (the jobs filter, the steps a kind goes through) is
/// built from [`JobKind::ALL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    Deploy,
    Rollback,
    PutBack,
    Prune,
    Fetch,
    Adopt,
    UndoAdopt,
    PurgeLegacy,
}

impl JobKind {
    /// Every kind, in the order lists show them.
    pub const ALL: [JobKind; 8] = [
        JobKind::Deploy,
        JobKind::Rollback,
        JobKind::PutBack,
        JobKind::Prune,
        JobKind::Fetch,
        JobKind::Adopt,
        JobKind::UndoAdopt,
        JobKind::PurgeLegacy,
    ];

    /// As stored (`jobs.kind`) and in addresses.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Deploy => "deploy",
            JobKind::Rollback => "rollback",
            JobKind::PutBack => "put_back",
            JobKind::Prune => "prune",
            JobKind::Fetch => "fetch",
            JobKind::Adopt => "adopt",
            JobKind::UndoAdopt => "undo_adopt",
            JobKind::PurgeLegacy => "purge_legacy",
        }
    }

    /// In words for staff.
    pub fn in_words(self) -> &'static str {
        match self {
            JobKind::Deploy => "deploy",
            JobKind::Rollback => "rollback",
            JobKind::PutBack => "put back",
            JobKind::Prune => "prune",
            JobKind::Fetch => "fetch",
            JobKind::Adopt => "adopt",
            JobKind::UndoAdopt => "undo adopt",
            JobKind::PurgeLegacy => "delete legacy copy",
        }
    }

    /// Parses a stored kind.
    pub fn parse(s: &str) -> Result<JobKind, InvalidInput> {
        JobKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| InvalidInput(format!("{s:?} is not a kind of job")))
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Why a club's webroot was switched, as its `switches` row records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SwitchKind {
    /// A deploy moved it.
    Deploy,
    /// Staff rolled it back (or put a deploy's clubs back).
    Rollback,
    /// A failed health check put it back.
    HealthRollback,
    /// Recovery found it switched by a job that was interrupted before recording it.
    Recovered,
    /// A legacy copy was adopted.
    Adopt,
}

impl SwitchKind {
    /// Every kind.
    pub const ALL: [SwitchKind; 5] = [
        SwitchKind::Deploy,
        SwitchKind::Rollback,
        SwitchKind::HealthRollback,
        SwitchKind::Recovered,
        SwitchKind::Adopt,
    ];

    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            SwitchKind::Deploy => "deploy",
            SwitchKind::Rollback => "rollback",
            SwitchKind::HealthRollback => "health_rollback",
            SwitchKind::Recovered => "recovered",
            SwitchKind::Adopt => "adopt",
        }
    }

    /// Parses a stored kind.
    pub fn parse(s: &str) -> Result<SwitchKind, InvalidInput> {
        SwitchKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| InvalidInput(format!("{s:?} is not a kind of switch")))
    }

    /// Whether the switch moved a club back.
    pub fn is_rollback(self) -> bool {
        matches!(self, SwitchKind::Rollback | SwitchKind::HealthRollback)
    }

    /// Whether "Put these clubs back" undoes a deploy's switch of this kind: its own, and
    /// those recovery found it made before it was interrupted.
    pub fn made_by_the_deploy(self) -> bool {
        matches!(self, SwitchKind::Deploy | SwitchKind::Recovered)
    }
}

impl fmt::Display for SwitchKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_switch_kind_reads_back_and_put_back_undoes_what_the_deploy_made() {
        for kind in SwitchKind::ALL {
            assert_eq!(SwitchKind::parse(kind.as_str()).unwrap(), kind);
        }
        let undone: Vec<SwitchKind> = SwitchKind::ALL
            .into_iter()
            .filter(|k| k.made_by_the_deploy())
            .collect();
        assert_eq!(undone, [SwitchKind::Deploy, SwitchKind::Recovered]);
    }

    #[test]
    fn every_job_kind_reads_back_from_its_stored_name() {
        for kind in JobKind::ALL {
            assert_eq!(JobKind::parse(kind.as_str()).unwrap(), kind);
        }
        assert!(JobKind::parse("deploy ").is_err());
    }
}
