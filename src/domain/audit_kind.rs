//! What happened, in the staff's words: the audit log's filter offers these, not action codes.

use super::InvalidInput;

/// A kind of audit event as staff ask for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditKind {
    Deploy,
    RollBack,
    PutBack,
    Adopt,
    SignIn,
    Staff,
    Clubs,
    Jobs,
    Apache,
}

impl AuditKind {
    /// Every kind, in the order the filter lists them.
    pub const ALL: [AuditKind; 9] = [
        AuditKind::Deploy,
        AuditKind::RollBack,
        AuditKind::PutBack,
        AuditKind::Adopt,
        AuditKind::SignIn,
        AuditKind::Staff,
        AuditKind::Clubs,
        AuditKind::Jobs,
        AuditKind::Apache,
    ];

    /// As the filter's address says it (`/audit?kind=roll-back`).
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::Deploy => "deploy",
            AuditKind::RollBack => "roll-back",
            AuditKind::PutBack => "put-back",
            AuditKind::Adopt => "adopt",
            AuditKind::SignIn => "sign-in",
            AuditKind::Staff => "staff",
            AuditKind::Clubs => "clubs",
            AuditKind::Jobs => "jobs",
            AuditKind::Apache => "apache",
        }
    }

    /// As the filter's list says it.
    pub fn in_words(self) -> &'static str {
        match self {
            AuditKind::Deploy => "Deploy",
            AuditKind::RollBack => "Roll back",
            AuditKind::PutBack => "Put back after a failed check",
            AuditKind::Adopt => "Legacy copies (adopt, undo, delete)",
            AuditKind::SignIn => "Sign-in",
            AuditKind::Staff => "Staff changes",
            AuditKind::Clubs => "Club changes (added, edited, groups)",
            AuditKind::Jobs => "Jobs (asked, started, ended, cancelled)",
            AuditKind::Apache => "Apache reloads",
        }
    }

    pub fn parse(s: &str) -> Result<AuditKind, InvalidInput> {
        AuditKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| InvalidInput(format!("{s:?} is not a kind of event in the audit log")))
    }

    /// The rows of this kind: an action (`%` ends a prefix, as in SQL `LIKE`) and, where
    /// the action alone does not tell, how its details begin (a switch's kind, a job's title).
    pub fn patterns(self) -> &'static [(&'static str, Option<&'static str>)] {
        match self {
            AuditKind::Deploy => &[
                ("club.switched", Some("deploy:")),
                ("job.queued", Some("deploy ")),
                ("release.built", None),
            ],
            AuditKind::RollBack => &[
                ("club.switched", Some("rollback:")),
                ("job.queued", Some("roll back ")),
                ("job.queued", Some("put ")),
            ],
            AuditKind::PutBack => &[("club.switched", Some("health_rollback:"))],
            AuditKind::Adopt => &[
                ("club.adopted", None),
                ("club.adoption_undone", None),
                ("legacy.purged", None),
                ("job.queued", Some("adopt ")),
            ],
            AuditKind::SignIn => &[("login.%", None)],
            AuditKind::Staff => &[("user.%", None)],
            AuditKind::Clubs => &[
                ("club.added", None),
                ("club.updated", None),
                ("club.removed", None),
                ("club.webroot_added", None),
                ("club.url_changed", None),
                ("club.hosts_set", None),
                ("group.%", None),
            ],
            AuditKind::Jobs => &[("job.%", None)],
            AuditKind::Apache => &[("server.%", None)],
        }
    }

    /// Whether a row of `action` with `details` is of this kind (the same test as
    /// [`AuditKind::patterns`] in SQL).
    pub fn admits(self, action: &str, details: &str) -> bool {
        self.patterns().iter().any(|(pattern, begins)| {
            let acted = match pattern.strip_suffix('%') {
                Some(prefix) => action.starts_with(prefix),
                None => action == *pattern,
            };
            acted && begins.is_none_or(|b| details.to_lowercase().starts_with(b))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_event_is_found_by_its_action_and_how_its_details_begin() {
        let cases = [
            (
                "club.switched",
                "deploy: from v1 to v2 (job #4)",
                AuditKind::Deploy,
            ),
            (
                "club.switched",
                "rollback: from v2 to v1 (job #5)",
                AuditKind::RollBack,
            ),
            (
                "club.switched",
                "health_rollback: from v2 to v1",
                AuditKind::PutBack,
            ),
            (
                "job.queued",
                "deploy v2 to all clubs (main)",
                AuditKind::Deploy,
            ),
            (
                "job.queued",
                "roll back Club Davos (main)",
                AuditKind::RollBack,
            ),
            ("login.failed", "wrong password", AuditKind::SignIn),
            ("group.joined", "joined early", AuditKind::Clubs),
            ("server.reloaded", "graceful", AuditKind::Apache),
        ];
        for (action, details, kind) in cases {
            assert!(
                kind.admits(action, details),
                "{action} {details} is not {kind:?}"
            );
            for other in AuditKind::ALL
                .into_iter()
                .filter(|k| *k != kind && *k != AuditKind::Jobs)
            {
                assert!(
                    !other.admits(action, details),
                    "{action} {details} is {other:?}"
                );
            }
        }
        for kind in AuditKind::ALL {
            assert_eq!(AuditKind::parse(kind.as_str()).unwrap(), kind);
        }
        assert!(AuditKind::parse("club.switched").is_err());
    }
}
