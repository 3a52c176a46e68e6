//! Parse-don't-validate types for the words of the domain. No I/O here: once a value of one of
//! these types exists it is valid, so the rest of the code takes the type, not a `&str`.

mod club;
mod job;
mod release;
mod repo_url;
mod staff;
mod version;

pub use club::{AppName, ClubSlug, GroupName};
pub use job::{JobSpec, JobStatus, Targets};
pub use release::{ReleaseName, ReleaseTag};
pub use repo_url::{Credentials, RepoUrl, UrlKind};
pub use staff::{ClubScope, NewPassword, Role, UserName};
pub use version::{Version, newest_first, release_order};

/// Why a piece of user input was refused; the message is fit to show to staff.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidInput(pub String);

/// A request refused for what exists (or does not), with a message fit for staff: the panel
/// answers 404 or 409, never 500.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// What the request names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with what exists (a duplicate, a job already running).
    #[error("{0}")]
    Conflict(String),
}

/// When Apache is gracefully reloaded after clubs were switched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReloadPolicy {
    /// After every job that switched a club: PHP otherwise serves old and new code mixed for up
    /// to `realpath_cache_ttl` (DESIGN §7).
    #[default]
    Always,
    /// Only after a deploy to all clubs (the original method).
    AfterAll,
    /// Never; prune then waits out PHP's realpath cache instead.
    Never,
}

impl ReloadPolicy {
    /// Whether a job that switched clubs (all of them, or not) reloads under this policy.
    pub fn reloads_after(self, all_clubs: bool) -> bool {
        match self {
            ReloadPolicy::Always => true,
            ReloadPolicy::AfterAll => all_clubs,
            ReloadPolicy::Never => false,
        }
    }
}
