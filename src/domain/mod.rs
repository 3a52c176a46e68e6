//! Parse-don't-validate types for the words of the domain. No I/O here: once a value of one of
//! these types exists it is valid, so the rest of the code takes the type, not a `&str`.

mod address;
mod audit_kind;
mod club;
mod host;
mod job;
mod job_title;
mod kinds;
mod release;
mod repo_url;
pub mod rollout;
mod staff;
mod tally;
mod version;

pub use address::{check_url, is_internal_address, parse_connect_to, sign_in_key, url_host};
pub use audit_kind::AuditKind;
pub use club::{AppName, ClubSlug, GroupName, club_name, group_of};
pub use host::{HostName, SshTarget};
pub use job::{JobSpec, JobStatus, Targets};
pub use job_title::ClubNames;
pub use kinds::{JobKind, SwitchKind};
pub use release::{ReleaseName, ReleaseTag};
pub use repo_url::{Credentials, RepoUrl, UrlKind};
pub use staff::{ClubScope, NewPassword, OUTPUT_WITHHELD, Role, UserName, may_ask, may_change};
pub use tally::Tally;
pub use version::{Version, newest_first, release_order};

/// `n` and the noun, plural unless one: "1 club", "30 clubs".
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Names as a sentence says them, at most `up_to` (at least one) of them: "Arosa", "Arosa
/// and Davos", "Arosa, Davos and Lenk", "Arosa, Davos, Lenk and 5 more".
pub fn named<S: AsRef<str>>(names: &[S], up_to: usize) -> String {
    let shown: Vec<&str> = names.iter().take(up_to.max(1)).map(AsRef::as_ref).collect();
    let more = names.len() - shown.len();
    match (shown.split_last(), more) {
        (None, _) => String::new(),
        (Some((only, [])), 0) => (*only).to_owned(),
        (Some((last, first)), 0) => format!("{} and {last}", first.join(", ")),
        (Some(_), more) => format!("{} and {more} more", shown.join(", ")),
    }
}

/// Text as a search compares it: lower case, without accents ("Kitzbühel" and "kitzbuhel"
/// are alike), so staff find a club however they type its name. The panel's search boxes
/// fold what is typed the same way (`static/panel.js` `folded`).
pub fn search_key(text: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    text.nfd()
        .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
        .collect::<String>()
        .to_lowercase()
}

/// A length of time as people read it: "4.2 s", "42 s", "3 min 5 s".
pub fn duration_in_words(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 10_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else if ms < 120_000 {
        format!("{} s", ms / 1000)
    } else {
        format!("{} min {} s", ms / 60_000, ms / 1000 % 60)
    }
}

/// Whether a search for `query` finds the club called `name` with short name `slug`: the
/// folded query ([`search_key`]) is part of its folded name or short name; an empty query
/// finds every club. The clubs list and the audit log's club filter ask this.
pub fn search_finds(query: &str, name: &str, slug: &str) -> bool {
    let query = search_key(query.trim());
    query.is_empty() || search_key(&format!("{name} {slug}")).contains(&query)
}

/// A size as people read it: "3.2 GB", "12.3 MB", "840 KB", "17 bytes".
pub fn size_in_words(bytes: u64) -> String {
    match bytes {
        b if b >= 1_000_000_000 => format!("{:.1} GB", b as f64 / 1e9),
        b if b >= 1_000_000 => format!("{:.1} MB", b as f64 / 1e6),
        b if b >= 1_000 => format!("{:.0} KB", b as f64 / 1e3),
        b => format!("{b} bytes"),
    }
}

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

/// What a job's switches are, as the reload rule reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwitchScope {
    /// A deploy to every club.
    AllClubs,
    /// Some clubs move on purpose: a deploy to some, a rollback, an adopt or its undo.
    SomeClubs,
    /// The web server must let go of what is being undone or deleted: clubs put back after a
    /// failure, releases about to be pruned.
    Repair,
    /// The job switches nothing (fetch, purge of a legacy copy).
    Nothing,
}

impl ReloadPolicy {
    /// Whether a job whose switches are `scope` reloads the web server under this policy: the
    /// one rule the run, recovery, previews and confirmations all ask.
    pub fn reloads(self, scope: SwitchScope) -> bool {
        match (self, scope) {
            (_, SwitchScope::Nothing) | (ReloadPolicy::Never, _) => false,
            (ReloadPolicy::Always, _) => true,
            (ReloadPolicy::AfterAll, scope) => scope != SwitchScope::SomeClubs,
        }
    }

    /// [`ReloadPolicy::reloads`] for a deploy to all clubs or to some.
    pub fn reloads_after(self, all_clubs: bool) -> bool {
        self.reloads(if all_clubs {
            SwitchScope::AllClubs
        } else {
            SwitchScope::SomeClubs
        })
    }
}

#[cfg(test)]
mod reload_tests {
    use super::{ReloadPolicy, SwitchScope};

    #[test]
    fn every_policy_and_scope_has_one_answer() {
        use ReloadPolicy::*;
        use SwitchScope::*;
        for (policy, scope, reloads) in [
            (Always, AllClubs, true),
            (Always, SomeClubs, true),
            (Always, Repair, true),
            (Always, Nothing, false),
            (AfterAll, AllClubs, true),
            (AfterAll, SomeClubs, false),
            (AfterAll, Repair, true),
            (AfterAll, Nothing, false),
            (Never, AllClubs, false),
            (Never, SomeClubs, false),
            (Never, Repair, false),
            (Never, Nothing, false),
        ] {
            assert_eq!(policy.reloads(scope), reloads, "{policy:?} {scope:?}");
        }
    }
}

#[cfg(test)]
mod words_tests {
    use super::named;

    #[test]
    fn a_search_ignores_case_and_accents() {
        use super::search_key;
        assert_eq!(search_key("Skiclub Kitzbühel"), "skiclub kitzbuhel");
        assert_eq!(search_key("CLUB ÉTOILE Genève"), "club etoile geneve");
        assert!(search_key("Skiclub Kitzbühel").contains(&search_key("Kitzbuhel")));
        assert!(search_key("Kitzbuhel").contains(&search_key("kitzbühel")));
    }

    #[test]
    fn names_read_as_a_sentence_and_a_long_list_is_cut_with_a_count() {
        let names = ["Arosa", "Davos", "Lenk", "Adelboden", "Andermatt"];
        assert_eq!(named(&names[..0], 3), "");
        assert_eq!(named(&names[..1], 3), "Arosa");
        assert_eq!(named(&names[..2], 3), "Arosa and Davos");
        assert_eq!(named(&names[..3], 3), "Arosa, Davos and Lenk");
        assert_eq!(named(&names, 3), "Arosa, Davos, Lenk and 2 more");
        assert_eq!(named(&names, 0), "Arosa and 4 more");
    }
}
