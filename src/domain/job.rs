use std::fmt;

use serde::{Deserialize, Serialize};

use super::{AppName, ClubSlug, GroupName, InvalidInput, JobKind, ReleaseTag};

/// Which clubs a deploy switches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Targets {
    All,
    Clubs(Vec<ClubSlug>),
}

/// What a job does, with its parameters. Every job but a prune or fetch of every application
/// concerns one application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobSpec {
    Deploy {
        app: AppName,
        tag: ReleaseTag,
        targets: Targets,
        /// The clubs that go first and must pass their health check before any other is
        /// touched; `None`: `[rollout] canary` (those of them the deploy reaches).
        canary: Option<Vec<ClubSlug>>,
        /// Build the release anew even when one with the same recipe exists.
        rebuild: bool,
        /// The group staff picked, when the clubs are exactly its clubs (for the title).
        group: Option<GroupName>,
    },
    Rollback {
        app: AppName,
        club: ClubSlug,
        to: Option<String>,
    },
    /// Delete unused releases of one application, or of each (`None`).
    Prune { app: Option<AppName> },
    /// Fetch the repository's tags (the releases page's Refresh) of one application, or of
    /// each (`None`).
    Fetch { app: Option<AppName> },
    /// Replace a club's legacy copy (a real directory) by a link to the tag's release,
    /// keeping the copy as a backup.
    Adopt {
        app: AppName,
        club: ClubSlug,
        tag: ReleaseTag,
    },
    /// Put a club's newest legacy backup back in place of its link.
    UndoAdopt { app: AppName, club: ClubSlug },
    /// Delete one of a club's kept legacy copies (`copy`: its directory name under the
    /// application's legacy directory, `<slug>.<time>`).
    PurgeLegacy {
        app: AppName,
        club: ClubSlug,
        copy: String,
    },
    /// Switch the clubs deploy job `job` switched (those still on what it gave them) back to
    /// the release each ran before it, like a rollback: only `clubs`, the ones staff
    /// confirmed (`None` only for a job queued before put-backs named their clubs).
    PutBack {
        app: AppName,
        job: i32,
        clubs: Option<Vec<ClubSlug>>,
    },
}

/// The application of a job stored before there could be several.
fn main_app() -> String {
    AppName::MAIN.to_owned()
}

/// A job's parameters as stored (JSON in `jobs.params`). `app` is absent from jobs queued by
/// earlier versions, which knew only the application `main`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum StoredSpec {
    Deploy {
        #[serde(default = "main_app")]
        app: String,
        tag: String,
        clubs: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        canary: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        rebuild: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        group: Option<String>,
    },
    Rollback {
        #[serde(default = "main_app")]
        app: String,
        club: String,
        to: Option<String>,
    },
    Prune {
        #[serde(default)]
        app: Option<String>,
    },
    Fetch {
        #[serde(default)]
        app: Option<String>,
    },
    Adopt {
        #[serde(default = "main_app")]
        app: String,
        club: String,
        tag: String,
    },
    UndoAdopt {
        #[serde(default = "main_app")]
        app: String,
        club: String,
    },
    PurgeLegacy {
        #[serde(default = "main_app")]
        app: String,
        club: String,
        copy: String,
    },
    PutBack {
        app: String,
        job: i32,
        /// Absent in jobs queued before put-backs named their clubs.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        clubs: Option<Vec<String>>,
    },
}

impl Targets {
    /// A deploy to these targets, as the reload rule reads it.
    pub fn switch_scope(&self) -> super::SwitchScope {
        match self {
            Targets::All => super::SwitchScope::AllClubs,
            Targets::Clubs(_) => super::SwitchScope::SomeClubs,
        }
    }
}

impl JobSpec {
    /// What this job's switches are, for the reload rule ([`super::ReloadPolicy::reloads`]):
    /// the run of the job and the recovery of an interrupted one both ask this.
    pub fn switch_scope(&self) -> super::SwitchScope {
        use super::SwitchScope;
        match self {
            JobSpec::Deploy { targets, .. } => targets.switch_scope(),
            JobSpec::Rollback { .. } | JobSpec::Adopt { .. } | JobSpec::UndoAdopt { .. } => {
                SwitchScope::SomeClubs
            }
            JobSpec::PutBack { .. } | JobSpec::Prune { .. } => SwitchScope::Repair,
            JobSpec::Fetch { .. } | JobSpec::PurgeLegacy { .. } => SwitchScope::Nothing,
        }
    }

    /// The kind of job.
    pub fn kind(&self) -> JobKind {
        match self {
            JobSpec::Deploy { .. } => JobKind::Deploy,
            JobSpec::Rollback { .. } => JobKind::Rollback,
            JobSpec::Prune { .. } => JobKind::Prune,
            JobSpec::Fetch { .. } => JobKind::Fetch,
            JobSpec::Adopt { .. } => JobKind::Adopt,
            JobSpec::UndoAdopt { .. } => JobKind::UndoAdopt,
            JobSpec::PurgeLegacy { .. } => JobKind::PurgeLegacy,
            JobSpec::PutBack { .. } => JobKind::PutBack,
        }
    }

    /// The application the job concerns; `None` for every application.
    pub fn app(&self) -> Option<&AppName> {
        match self {
            JobSpec::Deploy { app, .. }
            | JobSpec::Rollback { app, .. }
            | JobSpec::Adopt { app, .. }
            | JobSpec::UndoAdopt { app, .. }
            | JobSpec::PurgeLegacy { app, .. }
            | JobSpec::PutBack { app, .. } => Some(app),
            JobSpec::Prune { app } | JobSpec::Fetch { app } => app.as_ref(),
        }
    }

    /// A purge of club `club`'s kept copy `copy` of `app`, which must be one of its copies'
    /// names (`<slug>.<time>`: no path).
    pub fn purge_legacy(app: AppName, club: &str, copy: &str) -> Result<JobSpec, InvalidInput> {
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
            app,
            club,
            copy: copy.to_owned(),
        })
    }

    /// The parameters as JSON for the database.
    pub fn to_json(&self) -> String {
        let stored = match self {
            JobSpec::Deploy {
                app,
                tag,
                targets,
                canary,
                rebuild,
                group,
            } => StoredSpec::Deploy {
                rebuild: *rebuild,
                group: group.as_ref().map(GroupName::to_string),
                canary: canary
                    .as_ref()
                    .map(|slugs| slugs.iter().map(|s| s.to_string()).collect()),
                app: app.to_string(),
                tag: tag.to_string(),
                clubs: match targets {
                    Targets::All => None,
                    Targets::Clubs(slugs) => Some(slugs.iter().map(|s| s.to_string()).collect()),
                },
            },
            JobSpec::Rollback { app, club, to } => StoredSpec::Rollback {
                app: app.to_string(),
                club: club.to_string(),
                to: to.clone(),
            },
            JobSpec::Prune { app } => StoredSpec::Prune {
                app: app.as_ref().map(AppName::to_string),
            },
            JobSpec::Fetch { app } => StoredSpec::Fetch {
                app: app.as_ref().map(AppName::to_string),
            },
            JobSpec::Adopt { app, club, tag } => StoredSpec::Adopt {
                app: app.to_string(),
                club: club.to_string(),
                tag: tag.to_string(),
            },
            JobSpec::UndoAdopt { app, club } => StoredSpec::UndoAdopt {
                app: app.to_string(),
                club: club.to_string(),
            },
            JobSpec::PurgeLegacy { app, club, copy } => StoredSpec::PurgeLegacy {
                app: app.to_string(),
                club: club.to_string(),
                copy: copy.clone(),
            },
            JobSpec::PutBack { app, job, clubs } => StoredSpec::PutBack {
                app: app.to_string(),
                job: *job,
                clubs: clubs
                    .as_ref()
                    .map(|clubs| clubs.iter().map(ClubSlug::to_string).collect()),
            },
        };
        serde_json::to_string(&stored).expect("plain data serializes")
    }

    /// Parses stored parameters, checking them as if they were typed in again.
    pub fn from_json(json: &str) -> Result<JobSpec, InvalidInput> {
        let stored: StoredSpec = serde_json::from_str(json)
            .map_err(|e| InvalidInput(format!("unreadable job parameters: {e}")))?;
        let optional = |app: Option<String>| app.as_deref().map(AppName::parse).transpose();
        Ok(match stored {
            StoredSpec::Deploy {
                app,
                tag,
                clubs,
                canary,
                rebuild,
                group,
            } => JobSpec::Deploy {
                rebuild,
                group: group.as_deref().map(GroupName::parse).transpose()?,
                canary: canary
                    .map(|slugs| slugs.iter().map(|s| ClubSlug::parse(s)).collect())
                    .transpose()?,
                app: AppName::parse(&app)?,
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
            StoredSpec::Rollback { app, club, to } => JobSpec::Rollback {
                app: AppName::parse(&app)?,
                club: ClubSlug::parse(&club)?,
                to,
            },
            StoredSpec::Prune { app } => JobSpec::Prune {
                app: optional(app)?,
            },
            StoredSpec::Fetch { app } => JobSpec::Fetch {
                app: optional(app)?,
            },
            StoredSpec::Adopt { app, club, tag } => JobSpec::Adopt {
                app: AppName::parse(&app)?,
                club: ClubSlug::parse(&club)?,
                tag: ReleaseTag::parse(&tag)?,
            },
            StoredSpec::UndoAdopt { app, club } => JobSpec::UndoAdopt {
                app: AppName::parse(&app)?,
                club: ClubSlug::parse(&club)?,
            },
            StoredSpec::PurgeLegacy { app, club, copy } => {
                JobSpec::purge_legacy(AppName::parse(&app)?, &club, &copy)?
            }
            StoredSpec::PutBack { app, job, clubs } => JobSpec::PutBack {
                app: AppName::parse(&app)?,
                job,
                clubs: clubs
                    .map(|clubs| clubs.iter().map(|c| ClubSlug::parse(c)).collect())
                    .transpose()?,
            },
        })
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

    /// Every status, in a job's order of life.
    pub const ALL: [JobStatus; 6] = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Cancelled,
        JobStatus::Interrupted,
    ];

    /// Parses a stored status.
    pub fn parse(s: &str) -> Result<JobStatus, InvalidInput> {
        JobStatus::ALL
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
        f.pad(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whether_a_job_reloads_is_one_answer_per_kind_and_policy() {
        use crate::domain::ReloadPolicy::{AfterAll, Always, Never};
        let app = AppName::main;
        let club = || ClubSlug::parse("a").unwrap();
        let tag = || ReleaseTag::parse("v2").unwrap();
        let deploy = |targets| JobSpec::Deploy {
            app: app(),
            tag: tag(),
            targets,
            canary: None,
            rebuild: false,
            group: None,
        };
        // (job, reloads under always, after_all, never)
        let cases = [
            (deploy(Targets::All), [true, true, false]),
            (deploy(Targets::Clubs(vec![club()])), [true, false, false]),
            (
                JobSpec::Rollback {
                    app: app(),
                    club: club(),
                    to: None,
                },
                [true, false, false],
            ),
            (
                JobSpec::Adopt {
                    app: app(),
                    club: club(),
                    tag: tag(),
                },
                [true, false, false],
            ),
            (
                JobSpec::UndoAdopt {
                    app: app(),
                    club: club(),
                },
                [true, false, false],
            ),
            // Putting clubs back must be live, whatever was deployed; prune must free the
            // releases it deletes.
            (
                JobSpec::PutBack {
                    app: app(),
                    job: 1,
                    clubs: Some(vec![club()]),
                },
                [true, true, false],
            ),
            (JobSpec::Prune { app: None }, [true, true, false]),
            (JobSpec::Fetch { app: None }, [false, false, false]),
            (
                JobSpec::purge_legacy(app(), "a", "a.2026-01-01T00:00:00Z").unwrap(),
                [false, false, false],
            ),
        ];
        for (spec, expected) in cases {
            let got = [Always, AfterAll, Never].map(|p| p.reloads(spec.switch_scope()));
            assert_eq!(got, expected, "{}", spec.kind());
        }
    }

    #[test]
    fn job_specs_survive_the_database_round_trip() {
        let app = || AppName::parse("mobile").unwrap();
        let specs = [
            JobSpec::Deploy {
                app: app(),
                tag: ReleaseTag::parse("v2").unwrap(),
                targets: Targets::All,
                canary: None,
                rebuild: false,
                group: None,
            },
            JobSpec::Deploy {
                app: app(),
                tag: ReleaseTag::parse("v2").unwrap(),
                targets: Targets::All,
                canary: Some(vec![ClubSlug::parse("a").unwrap()]),
                rebuild: true,
                group: None,
            },
            JobSpec::Deploy {
                app: AppName::main(),
                tag: ReleaseTag::parse("v2").unwrap(),
                targets: Targets::Clubs(vec![ClubSlug::parse("a").unwrap()]),
                canary: Some(Vec::new()),
                rebuild: false,
                group: Some(GroupName::parse("region-east").unwrap()),
            },
            JobSpec::Rollback {
                app: app(),
                club: ClubSlug::parse("a").unwrap(),
                to: Some("v1".into()),
            },
            JobSpec::Prune { app: None },
            JobSpec::Prune { app: Some(app()) },
            JobSpec::Fetch { app: None },
            JobSpec::Fetch { app: Some(app()) },
            JobSpec::Adopt {
                app: app(),
                club: ClubSlug::parse("a").unwrap(),
                tag: ReleaseTag::parse("v2").unwrap(),
            },
            JobSpec::UndoAdopt {
                app: app(),
                club: ClubSlug::parse("a").unwrap(),
            },
            JobSpec::purge_legacy(app(), "a", "a.20260101T000000.000000Z").unwrap(),
        ];
        for bad in [
            "../a.x",
            "a.",
            "b.20260101",
            "a./etc",
            "a.x/../../y",
            "a..x",
        ] {
            assert!(JobSpec::purge_legacy(app(), "a", bad).is_err(), "{bad}");
        }
        for spec in specs {
            assert_eq!(JobSpec::from_json(&spec.to_json()).unwrap(), spec);
        }
    }

    #[test]
    fn jobs_stored_before_applications_existed_concern_main() {
        let old = r#"{"kind":"rollback","club":"a","to":null}"#;
        assert_eq!(
            JobSpec::from_json(old).unwrap(),
            JobSpec::Rollback {
                app: AppName::main(),
                club: ClubSlug::parse("a").unwrap(),
                to: None
            }
        );
        let old = r#"{"kind":"deploy","tag":"v2","clubs":null}"#;
        assert_eq!(
            JobSpec::from_json(old).unwrap().to_string(),
            "deploy v2 to all clubs (main)"
        );
        assert_eq!(
            JobSpec::from_json(r#"{"kind":"prune"}"#).unwrap(),
            JobSpec::Prune { app: None }
        );
        let bad = r#"{"kind":"deploy","app":"../x","tag":"v2","clubs":null}"#;
        assert!(JobSpec::from_json(bad).is_err());
        // A put-back queued before put-backs named their clubs, and one that names them.
        let old = r#"{"kind":"put_back","app":"main","job":2}"#;
        let clubs = |spec: JobSpec| match spec {
            JobSpec::PutBack { clubs, .. } => clubs,
            other => panic!("{other:?}"),
        };
        assert_eq!(clubs(JobSpec::from_json(old).unwrap()), None);
        let named = JobSpec::PutBack {
            app: AppName::main(),
            job: 2,
            clubs: Some(vec![ClubSlug::parse("a").unwrap()]),
        };
        assert_eq!(JobSpec::from_json(&named.to_json()).unwrap(), named);
        let bad = r#"{"kind":"put_back","app":"main","job":2,"clubs":["../x"]}"#;
        assert!(JobSpec::from_json(bad).is_err());
    }

    #[test]
    fn stored_parameters_are_checked_again() {
        let bad = r#"{"kind":"deploy","tag":"../../etc","clubs":null}"#;
        assert!(JobSpec::from_json(bad).is_err());
    }
}
