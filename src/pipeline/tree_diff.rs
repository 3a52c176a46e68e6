//! What differs between two trees of files, by path: the comparison a legacy adopt shows
//! before it exchanges a copy for a release.

/// What differs between a legacy copy and a release, by path relative to their roots.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeDiff {
    /// Files (or links) only the legacy copy has: local additions, uploads, caches.
    pub only_in_copy: Vec<String>,
    /// Files only the release has.
    pub only_in_release: Vec<String>,
    /// Files both have, with other content (or one a link, the other a file).
    pub differing: Vec<String>,
}

impl TreeDiff {
    /// Whether the copy is exactly the release.
    pub fn is_empty(&self) -> bool {
        self.only_in_copy.is_empty() && self.only_in_release.is_empty() && self.differing.is_empty()
    }
}
