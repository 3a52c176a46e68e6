//! The order releases are listed in: by version where a tag is one (v1.9 < v1.10 < v2.0, a
//! pre-release before its release), tags that are not versions after them, by date.

use std::cmp::Ordering;

use chrono::{DateTime, Utc};

use super::ReleaseTag;

/// A tag read as a version: `[v]N(.N)*[-pre.release][+build]`, the pre-release starting with a
/// letter (so a date such as `2026-11-26` is not taken for version 2026).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    numbers: Vec<u64>,
    pre: Vec<PreId>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum PreId {
    // Declared first: numeric identifiers sort before alphanumeric ones, as in SemVer.
    Number(u64),
    Text(String),
}

impl Version {
    /// The version a tag names, if it names one.
    pub fn of(tag: &ReleaseTag) -> Option<Version> {
        let text = tag.as_str();
        let text = text.strip_prefix(['v', 'V']).unwrap_or(text);
        let text = text.split_once('+').map_or(text, |(main, _build)| main);
        let (main, pre) = match text.split_once('-') {
            Some((main, pre)) => (main, Some(pre)),
            None => (text, None),
        };
        let numbers = main
            .split('.')
            .map(|part| {
                (!part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| part.parse::<u64>().ok())
                    .flatten()
            })
            .collect::<Option<Vec<u64>>>()?;
        let pre = match pre {
            None => Vec::new(),
            Some(pre) if pre.starts_with(|c: char| c.is_ascii_alphabetic()) => pre
                .split(['.', '-'])
                .map(|id| match id.parse::<u64>() {
                    Ok(n) if id.bytes().all(|b| b.is_ascii_digit()) => PreId::Number(n),
                    _ => PreId::Text(id.to_owned()),
                })
                .collect(),
            Some(_) => return None,
        };
        Some(Version { numbers, pre })
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        let width = self.numbers.len().max(other.numbers.len());
        let number = |v: &Version, i: usize| v.numbers.get(i).copied().unwrap_or(0);
        (0..width)
            .map(|i| number(self, i).cmp(&number(other, i)))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
            .then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
                // A pre-release comes before its release.
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => self.pre.cmp(&other.pre),
            })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Release order, oldest first: versions by version, then tags that are not versions by the
/// time they were tagged; the tag's text breaks ties.
pub fn release_order(a: (&ReleaseTag, DateTime<Utc>), b: (&ReleaseTag, DateTime<Utc>)) -> Ordering {
    match (Version::of(a.0), Version::of(b.0)) {
        (Some(va), Some(vb)) => va.cmp(&vb),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.1.cmp(&b.1),
    }
    .then_with(|| a.0.cmp(b.0))
}

/// Items in release order (oldest first) turned newest first for a list people read: the
/// newest version at the top, then the tags that are not versions, newest first.
pub fn newest_first<T>(items: Vec<T>, tag: impl Fn(&T) -> &ReleaseTag) -> Vec<T> {
    let (mut versions, mut others): (Vec<T>, Vec<T>) = items
        .into_iter()
        .partition(|item| Version::of(tag(item)).is_some());
    versions.reverse();
    others.reverse();
    versions.extend(others);
    versions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(tags: &[(&str, i64)]) -> Vec<String> {
        let mut tags: Vec<(ReleaseTag, DateTime<Utc>)> = tags
            .iter()
            .map(|(t, at)| {
                (
                    ReleaseTag::parse(t).unwrap(),
                    DateTime::from_timestamp(*at, 0).unwrap(),
                )
            })
            .collect();
        tags.sort_by(|a, b| release_order((&a.0, a.1), (&b.0, b.1)));
        tags.into_iter().map(|(t, _)| t.to_string()).collect()
    }

    #[test]
    fn versions_sort_by_number_with_pre_releases_before_their_release() {
        assert_eq!(
            sorted(&[
                ("v2.0", 1),
                ("v1.10", 2),
                ("v1.9", 3),
                ("v2.0-rc.2", 4),
                ("v2.0-rc.10", 5),
                ("v2.0-beta", 6),
                ("1.9.1", 7),
                ("v10.0.0", 8),
            ]),
            [
                "v1.9",
                "1.9.1",
                "v1.10",
                "v2.0-beta",
                "v2.0-rc.2",
                "v2.0-rc.10",
                "v2.0",
                "v10.0.0"
            ]
        );
    }

    #[test]
    fn tags_that_are_not_versions_come_after_by_date() {
        assert_eq!(
            sorted(&[
                ("hotfix-ski", 300),
                ("2026-11-26", 100),
                ("v3", 50),
                ("release_candidate", 200),
                ("v1.2", 900),
            ]),
            [
                "v1.2",
                "v3",
                "2026-11-26",
                "release_candidate",
                "hotfix-ski"
            ]
        );
    }
}
