use std::fmt;

use super::{ClubSlug, InvalidInput, JobSpec, Targets};

/// What viewers see in place of a command's output or a failing response.
pub const OUTPUT_WITHHELD: &str =
    "(output and responses are shown to deployers and administrators only)";

/// What a member of staff may do.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Sees everything, changes nothing.
    Viewer,
    /// Also deploys and rolls back (possibly limited to some clubs).
    Deployer,
    /// Also manages staff and clubs.
    Admin,
}

impl Role {
    /// Every role, least powerful first.
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Deployer, Role::Admin];

    /// Parses `admin`, `deployer` or `viewer`.
    pub fn parse(s: &str) -> Result<Role, InvalidInput> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                InvalidInput(format!(
                    "{s:?} is not a role: use admin, deployer or viewer"
                ))
            })
    }

    /// What a job's log shows someone of this role of a command's output or a site's failing
    /// response: the text itself to deployers and administrators; to viewers a note that it
    /// is withheld (a build script or a site may print what viewers must not read).
    pub fn sees_output(self, output: Option<String>) -> Option<String> {
        match output {
            Some(_) if self < Role::Deployer => Some(OUTPUT_WITHHELD.to_owned()),
            output => output,
        }
    }

    /// As stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Deployer => "deployer",
            Role::Admin => "admin",
        }
    }

    /// What someone of this role may do, in words for staff (what `may_ask` and the
    /// panel's checks enforce).
    pub fn explained(self) -> &'static str {
        match self {
            Role::Viewer => "sees every club, release, job and the audit log, and changes nothing",
            Role::Deployer => {
                "also deploys, rolls back, puts back, cancels and refreshes tags: for every club, or \
                 only for the clubs in their list when they have one"
            }
            Role::Admin => {
                "also manages staff and clubs, adopts legacy copies, prunes, and checks the \
                 installation"
            }
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Whether a member of staff of `role`, limited to `scope`, may deploy to or roll back
/// `club`.
pub fn may_change(role: Role, scope: &ClubScope, club: &str) -> bool {
    role == Role::Admin || (role == Role::Deployer && scope.allows(club))
}

/// Whether a member of staff of `role`, limited to `scope`, may ask for `spec`; why not
/// otherwise. Asked when the panel queues a job and again when the job starts, with the
/// requester's role and clubs as they are then (a change since refuses the job).
/// Deploying, rolling back, putting back and fetching need a deployer whose clubs cover
/// every club the job may change; pruning and legacy copies need an administrator.
pub fn may_ask(role: Role, scope: &ClubScope, spec: &JobSpec) -> Result<(), String> {
    let needed = match spec {
        JobSpec::Deploy { .. }
        | JobSpec::Rollback { .. }
        | JobSpec::PutBack { .. }
        | JobSpec::Fetch { .. } => Role::Deployer,
        JobSpec::Prune { .. }
        | JobSpec::Adopt { .. }
        | JobSpec::UndoAdopt { .. }
        | JobSpec::PurgeLegacy { .. } => Role::Admin,
    };
    if role < needed {
        return Err(format!(
            "a {} job needs a{} {}; the requester is a {role}",
            spec.kind().in_words(),
            if needed == Role::Admin { "n" } else { "" },
            if needed == Role::Admin {
                "administrator"
            } else {
                "deployer"
            }
        ));
    }
    if role == Role::Admin || *scope == ClubScope::All {
        return Ok(());
    }
    let clubs: Option<Vec<&ClubSlug>> = match spec {
        JobSpec::Deploy {
            targets: Targets::Clubs(slugs),
            ..
        }
        | JobSpec::PutBack {
            clubs: Some(slugs), ..
        } => Some(slugs.iter().collect()),
        JobSpec::Rollback { club, .. } => Some(vec![club]),
        JobSpec::Fetch { .. } => Some(Vec::new()),
        // Every club, or a put-back stored before it named its clubs.
        _ => None,
    };
    match clubs {
        None => Err("it may change every club, and the requester's clubs are limited".into()),
        Some(clubs) => match clubs.iter().find(|c| !scope.allows(c.as_str())) {
            Some(club) => Err(format!("the requester may not change club {club}")),
            None => Ok(()),
        },
    }
}

/// A staff member's sign-in name: 1 to 64 letters, digits, `.`, `_`, `@` or `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserName(String);

impl UserName {
    /// Parses a user name.
    pub fn parse(s: &str) -> Result<UserName, InvalidInput> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-'));
        if ok {
            Ok(UserName(s.to_owned()))
        } else {
            Err(InvalidInput(format!(
                "{s:?} is not a valid user name: use 1 to 64 letters, digits, '.', '_', '@' or '-'"
            )))
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A new password: at least 12 characters (OWASP's minimum without other rules).
pub struct NewPassword(String);

impl NewPassword {
    /// Accepts a password of 12 to 1,024 characters.
    pub fn parse(s: &str) -> Result<NewPassword, InvalidInput> {
        match s.chars().count() {
            0..12 => Err(InvalidInput(
                "the password is too short: use at least 12 characters".into(),
            )),
            1025.. => Err(InvalidInput(
                "the password is too long: use at most 1,024 characters".into(),
            )),
            _ => Ok(NewPassword(s.to_owned())),
        }
    }

    /// The password's text.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// The clubs a deployer may deploy to: every club, or only those listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClubScope {
    All,
    Only(Vec<ClubSlug>),
}

impl ClubScope {
    /// Parses a comma-separated list of slugs; empty text means every club.
    pub fn parse(list: &str) -> Result<ClubScope, InvalidInput> {
        let slugs: Vec<ClubSlug> = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(ClubSlug::parse)
            .collect::<Result<_, _>>()?;
        Ok(if slugs.is_empty() {
            ClubScope::All
        } else {
            ClubScope::Only(slugs)
        })
    }

    /// Whether `club` is in scope.
    pub fn allows(&self, club: &str) -> bool {
        match self {
            ClubScope::All => true,
            ClubScope::Only(slugs) => slugs.iter().any(|s| s.as_str() == club),
        }
    }

    /// As stored: `None` for every club, else the comma-separated slugs.
    pub fn to_stored(&self) -> Option<String> {
        match self {
            ClubScope::All => None,
            ClubScope::Only(slugs) => Some(
                slugs
                    .iter()
                    .map(ClubSlug::as_str)
                    .collect::<Vec<_>>()
                    .join(","),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_may_ask_for_a_job_follows_role_and_clubs() {
        use crate::domain::{AppName, ReleaseTag};
        let app = || AppName::parse("main").unwrap();
        let slug = |s: &str| ClubSlug::parse(s).unwrap();
        let deploy = |targets| JobSpec::Deploy {
            app: app(),
            tag: ReleaseTag::parse("v1").unwrap(),
            targets,
            canary: None,
            rebuild: false,
            group: None,
        };
        let to_a = deploy(Targets::Clubs(vec![slug("a")]));
        let to_ab = deploy(Targets::Clubs(vec![slug("a"), slug("b")]));
        let to_all = deploy(Targets::All);
        let put_back = |clubs: Option<Vec<ClubSlug>>| JobSpec::PutBack {
            app: app(),
            job: 1,
            clubs,
        };
        let only_a = ClubScope::parse("a").unwrap();
        let all = ClubScope::All;
        for (role, scope, spec, allowed) in [
            (Role::Viewer, &all, &to_a, false),
            (Role::Deployer, &all, &to_all, true),
            (Role::Deployer, &only_a, &to_a, true),
            (Role::Deployer, &only_a, &to_ab, false),
            (Role::Deployer, &only_a, &to_all, false),
            (
                Role::Deployer,
                &only_a,
                &put_back(Some(vec![slug("a")])),
                true,
            ),
            (
                Role::Deployer,
                &only_a,
                &put_back(Some(vec![slug("b")])),
                false,
            ),
            (Role::Deployer, &only_a, &put_back(None), false),
            (Role::Deployer, &only_a, &JobSpec::Fetch { app: None }, true),
            (Role::Deployer, &all, &JobSpec::Prune { app: None }, false),
            (Role::Admin, &only_a, &to_all, true),
            (Role::Admin, &all, &JobSpec::Prune { app: None }, true),
        ] {
            assert_eq!(
                may_ask(role, scope, spec).is_ok(),
                allowed,
                "{role} {scope:?} {spec}"
            );
        }
        let why = may_ask(Role::Deployer, &only_a, &to_ab).unwrap_err();
        assert!(why.contains("club b"), "{why}");
    }

    #[test]
    fn only_deployers_and_admins_read_output() {
        let text = || Some("probe.key: 0123".to_owned());
        assert_eq!(
            Role::Viewer.sees_output(text()).as_deref(),
            Some(OUTPUT_WITHHELD)
        );
        assert_eq!(Role::Deployer.sees_output(text()), text());
        assert_eq!(Role::Admin.sees_output(text()), text());
        assert_eq!(Role::Viewer.sees_output(None), None);
    }

    #[test]
    fn passwords_need_twelve_characters() {
        assert!(NewPassword::parse("elevenchars").is_err());
        assert!(NewPassword::parse("twelve chars").is_ok());
        assert!(NewPassword::parse("ünïcödé-pw12").is_ok());
    }

    #[test]
    fn club_scope_parses_lists() {
        assert_eq!(ClubScope::parse("").unwrap(), ClubScope::All);
        let scope = ClubScope::parse("a, b").unwrap();
        assert!(scope.allows("a") && scope.allows("b") && !scope.allows("c"));
        assert_eq!(scope.to_stored().as_deref(), Some("a,b"));
        assert!(ClubScope::parse("a,B/c").is_err());
    }

    #[test]
    fn user_names_refuse_markup() {
        assert!(UserName::parse("alice").is_ok());
        assert!(UserName::parse("<script>").is_err());
    }
}
