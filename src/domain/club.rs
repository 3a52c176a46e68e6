use std::fmt;

use super::InvalidInput;

/// A club's short name: `[a-z0-9][a-z0-9-]{0,62}`, safe in a path and a URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClubSlug(String);

impl ClubSlug {
    /// Accepts a slug of lower-case letters, digits and dashes, starting with a letter or digit.
    pub fn parse(s: &str) -> Result<ClubSlug, InvalidInput> {
        let valid_start = s
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let valid_rest = s
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if valid_start && valid_rest && s.len() <= 63 {
            Ok(ClubSlug(s.to_owned()))
        } else {
            Err(InvalidInput(format!(
                "{s:?} is not a valid club slug: use 1 to 63 lower-case letters, digits and \
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
