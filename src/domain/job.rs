use std::fmt;

use serde::{Deserialize, Serialize};

use super::{ClubSlug, InvalidInput, ReleaseTag};

/// Which clubs a deploy switches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Targets {
    All,
    Clubs(Vec<ClubSlug>),
}

/// What a job does, with its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobSpec {
    Deploy {
        tag: ReleaseTag,
        targets: Targets,
    },
    Rollback {
        club: ClubSlug,
        to: Option<String>,
    },
    Prune,
    /// Fetch the repository's tags (the releases page's Refresh).
    Fetch,
    /// Replace a club's legacy copy (a real directory) by a link to the tag's release,
    /// keeping the copy as a backup.
    Adopt {
        club: ClubSlug,
        tag: ReleaseTag,
    },
    /// Put a club's newest legacy backup back in place of its link.
    UndoAdopt {
        club: ClubSlug,
    },
    /// Delete one of a club's kept legacy copies (`copy`: its directory name under
    /// `<data_dir>/legacy`, `<slug>.<time>`).
    PurgeLegacy {
        club: ClubSlug,
        copy: String,
    },
}

/// A job's parameters as stored (JSON in `jobs.params`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum StoredSpec {
    Deploy {
        tag: String,
        clubs: Option<Vec<String>>,
    },
    Rollback {
        club: String,
        to: Option<String>,
    },
    Prune,
    Fetch,
    Adopt {
        club: String,
        tag: String,
    },
    UndoAdopt {
        club: String,
    },
    PurgeLegacy {
        club: String,
        copy: String,
    },
}

impl JobSpec {
    /// The kind, as stored and shown.
    pub fn kind(&self) -> &'static str {
        match self {
            JobSpec::Deploy { .. } => "deploy",
            JobSpec::Rollback { .. } => "rollback",
            JobSpec::Prune => "prune",
            JobSpec::Fetch => "fetch",
            JobSpec::Adopt { .. } => "adopt",
            JobSpec::UndoAdopt { .. } => "undo_adopt",
            JobSpec::PurgeLegacy { .. } => "purge_legacy",
        }
    }

    /// A purge of club `club`'s kept copy `copy`, which must be one of its copies' names
    /// (`<slug>.<time>`: no path).
    pub fn purge_legacy(club: &str, copy: &str) -> Result<JobSpec, InvalidInput> {
        let club = ClubSlug::parse(club)?;
        let ok = copy.strip_prefix(&format!("{club}.")).is_some_and(|time| {
            !time.is_empty()
                && time
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '-'))
        });
        if !ok || copy.contains("..") {
            return Err(InvalidInput(format!(
                "{copy:?} is not a kept legacy copy of club {club}"
            )));
        }
        Ok(JobSpec::PurgeLegacy {
            club,
            copy: copy.to_owned(),
        })
    }

    /// The parameters as JSON for the database.
    pub fn to_json(&self) -> String {
        let stored = match self {
            JobSpec::Deploy { tag, targets } => StoredSpec::Deploy {
                tag: tag.to_string(),
                clubs: match targets {
                    Targets::All => None,
                    Targets::Clubs(slugs) => Some(slugs.iter().map(|s| s.to_string()).collect()),
                },
            },
            JobSpec::Rollback { club, to } => StoredSpec::Rollback {
                club: club.to_string(),
                to: to.clone(),
            },
            JobSpec::Prune => StoredSpec::Prune,
            JobSpec::Fetch => StoredSpec::Fetch,
            JobSpec::Adopt { club, tag } => StoredSpec::Adopt {
                club: club.to_string(),
                tag: tag.to_string(),
            },
            JobSpec::UndoAdopt { club } => StoredSpec::UndoAdopt {
                club: club.to_string(),
            },
            JobSpec::PurgeLegacy { club, copy } => StoredSpec::PurgeLegacy {
                club: club.to_string(),
                copy: copy.clone(),
            },
        };
        serde_json::to_string(&stored).expect("plain data serializes")
    }

    /// Parses stored parameters, checking them as if they were typed in again.
    pub fn from_json(json: &str) -> Result<JobSpec, InvalidInput> {
        let stored: StoredSpec = serde_json::from_str(json)
            .map_err(|e| InvalidInput(format!("unreadable job parameters: {e}")))?;
        Ok(match stored {
            StoredSpec::Deploy { tag, clubs } => JobSpec::Deploy {
                tag: ReleaseTag::parse(&tag)?,
                targets: match clubs {
                    None => Targets::All,
                    Some(slugs) => Targets::Clubs(
                        slugs
                            .iter()
                            .map(|s| ClubSlug::parse(s))
                            .collect::<Result<_, _>>()?,
                    ),
                },
            },
            StoredSpec::Rollback { club, to } => JobSpec::Rollback {
                club: ClubSlug::parse(&club)?,
                to,
            },
            StoredSpec::Prune => JobSpec::Prune,
            StoredSpec::Fetch => JobSpec::Fetch,
            StoredSpec::Adopt { club, tag } => JobSpec::Adopt {
                club: ClubSlug::parse(&club)?,
                tag: ReleaseTag::parse(&tag)?,
            },
            StoredSpec::UndoAdopt { club } => JobSpec::UndoAdopt {
                club: ClubSlug::parse(&club)?,
            },
            StoredSpec::PurgeLegacy { club, copy } => JobSpec::purge_legacy(&club, &copy)?,
        })
    }
}

impl fmt::Display for JobSpec {
    /// In words: "deploy v2.4.1 to all clubs".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobSpec::Deploy {
                tag,
                targets: Targets::All,
            } => write!(f, "deploy {tag} to all clubs"),
            JobSpec::Deploy {
                tag,
                targets: Targets::Clubs(slugs),
            } => {
                let names: Vec<&str> = slugs.iter().map(ClubSlug::as_str).collect();
                write!(f, "deploy {tag} to {}", names.join(", "))
            }
            JobSpec::Rollback { club, to: None } => write!(f, "roll back {club}"),
            JobSpec::Rollback { club, to: Some(to) } => write!(f, "roll back {club} to {to}"),
            JobSpec::Prune => write!(f, "prune unused releases"),
            JobSpec::Fetch => write!(f, "fetch new tags from the repository"),
            JobSpec::Adopt { club, tag } => write!(f, "adopt {club}'s legacy copy with {tag}"),
            JobSpec::UndoAdopt { club } => write!(f, "put {club}'s legacy copy back"),
            JobSpec::PurgeLegacy { club, copy } => {
                write!(f, "delete {club}'s kept legacy copy {copy}")
            }
        }
    }
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    Interrupted,
}

impl JobStatus {
    /// As stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
            JobStatus::Interrupted => "interrupted",
        }
    }

    /// Parses a stored status.
    pub fn parse(s: &str) -> Result<JobStatus, InvalidInput> {
        [
            JobStatus::Queued,
            JobStatus::Running,
            JobStatus::Succeeded,
            JobStatus::Failed,
            JobStatus::Cancelled,
            JobStatus::Interrupted,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
        .ok_or_else(|| InvalidInput(format!("{s:?} is not a job status")))
    }

    /// Whether the job has ended.
    pub fn is_finished(self) -> bool {
        !matches!(self, JobStatus::Queued | JobStatus::Running)
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_specs_survive_the_database_round_trip() {
        let specs = [
            JobSpec::Deploy {
                tag: ReleaseTag::parse("v2").unwrap(),
                targets: Targets::All,
            },
            JobSpec::Deploy {
                tag: ReleaseTag::parse("v2").unwrap(),
                targets: Targets::Clubs(vec![ClubSlug::parse("a").unwrap()]),
            },
            JobSpec::Rollback {
                club: ClubSlug::parse("a").unwrap(),
                to: Some("v1".into()),
            },
            JobSpec::Prune,
            JobSpec::Fetch,
            JobSpec::Adopt {
                club: ClubSlug::parse("a").unwrap(),
                tag: ReleaseTag::parse("v2").unwrap(),
            },
            JobSpec::UndoAdopt {
                club: ClubSlug::parse("a").unwrap(),
            },
            JobSpec::purge_legacy("a", "a.20260101T000000.000000Z").unwrap(),
        ];
        for bad in [
            "../a.x",
            "a.",
            "b.20260101",
            "a./etc",
            "a.x/../../y",
            "a..x",
        ] {
            assert!(JobSpec::purge_legacy("a", bad).is_err(), "{bad}");
        }
        for spec in specs {
            assert_eq!(JobSpec::from_json(&spec.to_json()).unwrap(), spec);
        }
    }

    #[test]
    fn stored_parameters_are_checked_again() {
        let bad = r#"{"kind":"deploy","tag":"../../etc","clubs":null}"#;
        assert!(JobSpec::from_json(bad).is_err());
    }
}
