use std::fmt;

use super::InvalidInput;

/// A git deploy tag that can name a release directory: a valid git ref name made only of
/// letters, digits, `.`, `_`, `+`, `-` and `/` between parts (`release/2.4`); it never holds
/// `..`, and its release directory's name holds `~` where the tag has `/` (see
/// [`ReleaseName`]), so a release is always one directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct ReleaseTag(String);

impl ReleaseTag {
    /// Accepts a tag such as `v2.4.1`; refuses anything that could leave the releases directory.
    pub fn parse(s: &str) -> Result<ReleaseTag, InvalidInput> {
        let refuse = |why: &str| Err(InvalidInput(format!("{s:?} is not a usable tag: {why}")));
        if s.is_empty() || s.len() > 100 {
            return refuse("a tag has 1 to 100 characters");
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-' | '/'))
        {
            return refuse("use only letters, digits, '.', '_', '+', '-' and '/'");
        }
        if s.starts_with(['.', '-', '/']) || s.contains("..") || s.ends_with(['.', '/']) {
            return refuse(
                "it may not start with '.', '-' or '/', end with '.' or '/', or contain '..'",
            );
        }
        if s.contains("//") || s.split('/').any(|part| part.starts_with(['.', '-'])) {
            return refuse("each part between '/' must start with a letter, digit, '_' or '+'");
        }
        if s.ends_with(".lock") || !git_ref_name_is_valid(&format!("refs/tags/{s}")) {
            return refuse("it is not a valid git tag name");
        }
        Ok(ReleaseTag(s.to_owned()))
    }

    /// The tag as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// git's own rules on ref names, for what our character set lets through (`@{` cannot occur).
fn git_ref_name_is_valid(name: &str) -> bool {
    name.split('/')
        .all(|part| !part.is_empty() && !part.starts_with('.') && !part.ends_with(".lock"))
        && !name.contains("..")
}

impl fmt::Display for ReleaseTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The name of a release directory: `<tag>-<first 8 hex digits of the commit>`, and for a
/// second or later build of the same commit (another build recipe, or `--rebuild`)
/// `<tag>-<sha8>-b<n>` with n from 2.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReleaseName(String);

impl ReleaseName {
    /// The first release built from `tag` at `commit` (a full hex object id).
    pub fn new(tag: &ReleaseTag, commit: &str) -> Result<ReleaseName, InvalidInput> {
        let short = commit
            .get(..8)
            .filter(|h| is_lower_hex(h))
            .ok_or_else(|| InvalidInput(format!("{commit:?} is not a commit id")))?;
        Ok(ReleaseName(format!("{}-{short}", tag.0.replace('/', "~"))))
    }

    /// The `n`th build (n ≥ 2) of the same tag and commit as this first one.
    pub fn nth_build(&self, n: u32) -> ReleaseName {
        ReleaseName(format!("{}-b{n}", self.first_build().0))
    }

    /// Parses a directory name such as `v2.4.1-3f2a9c1d` or `v2.4.1-3f2a9c1d-b2`.
    pub fn parse(s: &str) -> Result<ReleaseName, InvalidInput> {
        let invalid = || {
            InvalidInput(format!(
                "{s:?} is not a release name (a tag, a dash and 8 hex digits, e.g. v2.4.1-3f2a9c1d)"
            ))
        };
        let (first, build) = split_build(s);
        if build.is_some_and(|n| n < 2) {
            return Err(invalid());
        }
        let (tag, short) = first.rsplit_once('-').ok_or_else(invalid)?;
        if short.len() != 8 || !is_lower_hex(short) {
            return Err(invalid());
        }
        // `~` stands for the tag's `/`; a name never holds `/` itself.
        if tag.contains('/') {
            return Err(invalid());
        }
        ReleaseTag::parse(&tag.replace('~', "/")).map_err(|_| invalid())?;
        Ok(ReleaseName(s.to_owned()))
    }

    /// The tag part of the name.
    pub fn tag(&self) -> ReleaseTag {
        let first = split_build(&self.0).0;
        let (tag, _) = first.rsplit_once('-').expect("checked in parse");
        ReleaseTag(tag.replace('~', "/"))
    }

    /// The 8 hex digits of the commit in the name.
    pub fn short_commit(&self) -> &str {
        let first = split_build(&self.0).0;
        first.rsplit_once('-').expect("checked in parse").1
    }

    /// The name of the first build of the same tag and commit (itself when it is one).
    pub fn first_build(&self) -> ReleaseName {
        ReleaseName(split_build(&self.0).0.to_owned())
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `<first>-b<n>` into the first build's name and n; a name without such a suffix is a first
/// build. (A first build's last part is 8 hex digits, never `b` and a number.)
fn split_build(s: &str) -> (&str, Option<u32>) {
    if let Some((first, last)) = s.rsplit_once('-')
        && let Some(digits) = last.strip_prefix('b')
        && !digits.is_empty()
        && digits.len() <= 4
        && !digits.starts_with('0')
        && digits.bytes().all(|b| b.is_ascii_digit())
    {
        return (first, digits.parse().ok());
    }
    (s, None)
}

fn is_lower_hex(s: &str) -> bool {
    s.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f'))
}

impl fmt::Display for ReleaseName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_deploy_tags() {
        for ok in [
            "v1",
            "v2.4.1",
            "2026-11-26",
            "v1.0.0-rc.1",
            "build_7+meta",
            "release/2.4",
            "2024-06-09/hotfix",
        ] {
            assert_eq!(ReleaseTag::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn refuses_tags_that_are_paths_or_bad_ref_names() {
        for bad in [
            "",
            "../../etc",
            "..",
            ".",
            "a//b",
            "a/",
            "a/.b",
            "a/-b",
            "a/b.lock",
            "a~b",
            "/etc",
            "v1..2",
            ".hidden",
            "-x",
            "v1.",
            "x.lock",
            "a b",
            "a~1",
            "a^",
            "a:b",
            "a?",
            "a*",
            "a[",
            "a\\b",
            "a@{1}",
            "ä",
        ] {
            assert!(ReleaseTag::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn release_name_is_tag_and_short_commit() {
        let tag = ReleaseTag::parse("v2.4.1").unwrap();
        let name = ReleaseName::new(&tag, "3f2a9c1d00112233445566778899aabbccddeeff").unwrap();
        assert_eq!(name.as_str(), "v2.4.1-3f2a9c1d");
        assert_eq!(name.tag(), tag);
        assert_eq!(ReleaseName::parse("v2.4.1-3f2a9c1d").unwrap(), name);
    }

    #[test]
    fn a_later_build_of_the_same_commit_has_a_build_number() {
        let tag = ReleaseTag::parse("v1-b2").unwrap();
        let first = ReleaseName::new(&tag, "3f2a9c1d00112233445566778899aabbccddeeff").unwrap();
        assert_eq!(first.as_str(), "v1-b2-3f2a9c1d");
        let second = first.nth_build(2);
        assert_eq!(second.as_str(), "v1-b2-3f2a9c1d-b2");
        assert_eq!(ReleaseName::parse("v1-b2-3f2a9c1d-b2").unwrap(), second);
        assert_eq!(second.tag(), tag);
        assert_eq!(second.first_build(), first);
        assert_eq!(second.short_commit(), "3f2a9c1d");
        assert_eq!(first.first_build(), first);
        assert_eq!(second.nth_build(3).as_str(), "v1-b2-3f2a9c1d-b3");
        for bad in [
            "v1-3f2a9c1d-b1",
            "v1-3f2a9c1d-b0",
            "v1-3f2a9c1d-b02",
            "v1-3f2a9c1d-bx",
        ] {
            assert!(ReleaseName::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn a_tag_with_slashes_names_one_directory() {
        let tag = ReleaseTag::parse("release/2.4").unwrap();
        let name = ReleaseName::new(&tag, "3f2a9c1d00112233445566778899aabbccddeeff").unwrap();
        assert_eq!(name.as_str(), "release~2.4-3f2a9c1d");
        assert!(!name.as_str().contains('/'));
        assert_eq!(name.tag(), tag);
        assert_eq!(ReleaseName::parse("release~2.4-3f2a9c1d").unwrap(), name);
        assert_eq!(name.nth_build(2).tag(), tag);
        for bad in [
            "release/2.4-3f2a9c1d",
            "~x-3f2a9c1d",
            "a~~b-3f2a9c1d",
            "a~.x-3f2a9c1d",
        ] {
            assert!(ReleaseName::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn release_name_parse_refuses_other_directory_names() {
        for bad in [
            ".build-v1-abc",
            ".trash-x",
            "v1",
            "v1-XYZ12345",
            "v1-3f2a9c1",
            "../v1-3f2a9c1d",
        ] {
            assert!(ReleaseName::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
