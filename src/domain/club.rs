use std::fmt;

use super::InvalidInput;

/// A club's short name: `[a-z0-9][a-z0-9-]{0,62}`, safe in a path and a URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClubSlug(String);

/// Whether `s` is 1 to `max` lower-case letters, digits and dashes, starting with a letter or
/// digit: a name safe in a path, a URL and a `name=value` argument.
pub(super) fn is_plain_name(s: &str, max: usize) -> bool {
    let valid_start = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let valid_rest = s
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    valid_start && valid_rest && s.len() <= max
}

impl ClubSlug {
    /// Accepts a slug of lower-case letters, digits and dashes, starting with a letter or digit.
    pub fn parse(s: &str) -> Result<ClubSlug, InvalidInput> {
        if is_plain_name(s, 63) {
            Ok(ClubSlug(s.to_owned()))
        } else {
            Err(InvalidInput(format!(
                "{s:?} is not a valid short name for a club: use 1 to 63 lower-case letters, digits and \
                 dashes, starting with a letter or digit"
            )))
        }
    }

    /// The slug as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClubSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The longest display name a club may have, in characters.
pub const CLUB_NAME_LIMIT: usize = 100;

/// A club's display name as stored: `raw` trimmed, refused when that is empty or longer than
/// [`CLUB_NAME_LIMIT`] characters. Adding a club and importing a list both ask this.
pub fn club_name(raw: &str) -> Result<&str, InvalidInput> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(InvalidInput("the club's display name is empty".into()));
    }
    if let Some(c) = name.chars().find(|c| c.is_control() || is_bidi_control(*c)) {
        return Err(InvalidInput(format!(
            "the club's display name holds the invisible character U+{:04X} (a control or \
             text-direction character), which could make it read as another club's; type the \
             name again",
            u32::from(c)
        )));
    }
    if name.chars().count() > CLUB_NAME_LIMIT {
        return Err(InvalidInput(format!(
            "the club's display name is longer than {CLUB_NAME_LIMIT} characters"
        )));
    }
    Ok(name)
}

/// The characters that reorder how text around them is shown (Unicode's bidirectional
/// formatting characters): "abc\u{202E}cba" shows as another name.
fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

/// An application's name (`[apps.<name>]` in the configuration): `[a-z0-9][a-z0-9-]{0,31}`.
/// The application configured by the top-level `repo_url` is [`AppName::MAIN`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AppName(String);

impl AppName {
    /// The name of the application configured by the top-level `repo_url` and `[build]` (the
    /// one application of an installation made before there could be several).
    pub const MAIN: &'static str = "main";

    /// Accepts 1 to 32 lower-case letters, digits and dashes, starting with a letter or digit.
    pub fn parse(s: &str) -> Result<AppName, InvalidInput> {
        if is_plain_name(s, 32) {
            Ok(AppName(s.to_owned()))
        } else {
            Err(InvalidInput(format!(
                "{s:?} is not a valid application name: use 1 to 32 lower-case letters, digits \
                 and dashes, starting with a letter or digit"
            )))
        }
    }

    /// [`AppName::MAIN`].
    pub fn main() -> AppName {
        AppName(Self::MAIN.to_owned())
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AppName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A club group's name ("early-adopters", "region-east"): 1 to 63 lower-case letters, digits
/// and dashes, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupName(String);

impl GroupName {
    /// Accepts a name like a slug's.
    pub fn parse(s: &str) -> Result<GroupName, InvalidInput> {
        if is_plain_name(s, 63) {
            Ok(GroupName(s.to_owned()))
        } else {
            Err(InvalidInput(format!(
                "{s:?} is not a valid group name: use 1 to 63 lower-case letters, digits and \
                 dashes, starting with a letter or digit"
            )))
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for GroupName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The group a set of ticked clubs is, for naming a deploy: the first group (by name) whose
/// members among the clubs offered (`offered`: those running the application that the person
/// may change) are exactly `ticked`, order aside. `None` when no group is, or nothing is ticked.
pub fn group_of(
    ticked: &[ClubSlug],
    groups: &std::collections::BTreeMap<String, Vec<String>>,
    offered: impl Fn(&str) -> bool,
) -> Option<GroupName> {
    if ticked.is_empty() {
        return None;
    }
    let ticked: std::collections::BTreeSet<&str> = ticked.iter().map(ClubSlug::as_str).collect();
    groups.iter().find_map(|(name, members)| {
        let members: std::collections::BTreeSet<&str> = members
            .iter()
            .map(String::as_str)
            .filter(|m| offered(m))
            .collect();
        (members == ticked).then(|| GroupName::parse(name).ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_are_plain() {
        assert_eq!(
            GroupName::parse("region-east").unwrap().as_str(),
            "region-east"
        );
        for bad in ["", "Early", "a/b", "..", "a b", &"a".repeat(64)] {
            assert!(GroupName::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn accepts_plain_slugs() {
        for ok in ["zermatt", "a", "club-9", "9lives", &"a".repeat(63)] {
            assert_eq!(ClubSlug::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn refuses_slugs_that_could_escape_a_path() {
        let long = "a".repeat(64);
        for bad in ["", "-x", "Zermatt", "a/b", "..", "a.b", "a b", "ä", &long] {
            assert!(ClubSlug::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn application_names_are_plain_and_short() {
        for ok in ["main", "mobile", "booking-2", &"a".repeat(32)] {
            assert_eq!(AppName::parse(ok).unwrap().as_str(), ok);
        }
        let long = "a".repeat(33);
        for bad in ["", "Mobile", "a/b", "..", "a=b", "a.b", "-a", &long] {
            assert!(AppName::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn a_display_name_is_trimmed_and_refused_when_empty_or_too_long() {
        assert_eq!(club_name("  Riverside FC \n").unwrap(), "Riverside FC");
        assert!(club_name(" \t ").unwrap_err().0.contains("is empty"));
        let longest = "é".repeat(CLUB_NAME_LIMIT);
        assert_eq!(
            club_name(&longest).unwrap(),
            longest,
            "characters are counted, not bytes"
        );
        for bad in [
            "Riverside\nFC",
            "River\u{0}side",
            "Riverside \u{202E}CF",
            "a\u{2066}b",
        ] {
            let error = club_name(bad).unwrap_err().0;
            assert!(error.contains("invisible character U+"), "{bad:?}: {error}");
        }
        assert_eq!(club_name("Ñandú ✓ عربي").unwrap(), "Ñandú ✓ عربي");
        let too_long = format!("{longest}x");
        assert!(
            club_name(&too_long)
                .unwrap_err()
                .0
                .contains("longer than 100 characters")
        );
    }

    #[test]
    fn ticked_clubs_are_a_group_only_when_they_are_exactly_its_offered_clubs() {
        let groups: std::collections::BTreeMap<String, Vec<String>> = [
            ("early", vec!["a", "b"]),
            ("east", vec!["a", "b", "c", "x"]),
        ]
        .into_iter()
        .map(|(g, m)| (g.to_owned(), m.into_iter().map(str::to_owned).collect()))
        .collect();
        let slugs = |s: &[&str]| -> Vec<ClubSlug> {
            s.iter().map(|s| ClubSlug::parse(s).unwrap()).collect()
        };
        // x does not run this application: east is a, b and c here.
        let offered = |s: &str| s != "x";
        let group = |ticked: &[&str]| group_of(&slugs(ticked), &groups, offered).map(|g| g.0);
        assert_eq!(group(&["b", "a"]).as_deref(), Some("early"));
        assert_eq!(group(&["a", "b", "c"]).as_deref(), Some("east"));
        assert_eq!(group(&["a"]), None, "part of a group is not the group");
        assert_eq!(group(&["a", "b", "c", "d"]), None, "nor is more than it");
        assert_eq!(group(&[]), None);
    }
}
