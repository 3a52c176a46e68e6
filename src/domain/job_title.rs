//! A job in words, as staff read it: its title, clubs named by display name.

use std::collections::HashMap;
use std::fmt;

use super::{ClubSlug, JobSpec, Targets, count, named};

/// Clubs' display names by short name, to name clubs to staff; a club it does not know (one
/// removed since) is named by its short name.
#[derive(Debug, Default)]
pub struct ClubNames(HashMap<String, String>);

impl ClubNames {
    pub fn new(names: HashMap<String, String>) -> ClubNames {
        ClubNames(names)
    }

    /// The display name of club `slug`.
    pub fn of<'a>(&'a self, slug: &'a str) -> &'a str {
        self.0.get(slug).map_or(slug, String::as_str)
    }
}

/// How many clubs a job's title names before it counts them instead.
const TITLE_NAMED: usize = 3;

impl JobSpec {
    /// The job in words as staff read it, clubs by display name and the application last:
    /// "deploy v1.1.0 to 250 clubs (group region-east), 3 first (main)", "roll back Club
    /// Davos (main)". A title never lists more than a few clubs: past that it counts them.
    pub fn title(&self, names: &ClubNames) -> String {
        let clubs = |slugs: &[ClubSlug]| -> String {
            let shown: Vec<&str> = slugs.iter().map(|s| names.of(s.as_str())).collect();
            if shown.len() > TITLE_NAMED {
                count(shown.len(), "club")
            } else {
                named(&shown, TITLE_NAMED)
            }
        };
        let mut title = match self {
            JobSpec::Deploy {
                tag,
                targets: Targets::All,
                ..
            } => format!("deploy {tag} to all clubs"),
            JobSpec::Deploy {
                tag,
                targets: Targets::Clubs(slugs),
                group: Some(group),
                ..
            } => format!(
                "deploy {tag} to {} (group {group})",
                count(slugs.len(), "club")
            ),
            JobSpec::Deploy {
                tag,
                targets: Targets::Clubs(slugs),
                ..
            } => format!("deploy {tag} to {}", clubs(slugs)),
            JobSpec::Rollback { club, to: None, .. } => {
                format!("roll back {}", names.of(club.as_str()))
            }
            JobSpec::Rollback {
                club, to: Some(to), ..
            } => format!("roll back {} to {to}", names.of(club.as_str())),
            JobSpec::Prune { .. } => "prune unused releases".to_owned(),
            JobSpec::Fetch { .. } => "fetch new tags from the repository".to_owned(),
            JobSpec::Adopt { club, tag, .. } => {
                format!("adopt {}'s legacy copy with {tag}", names.of(club.as_str()))
            }
            JobSpec::UndoAdopt { club, .. } => {
                format!("put {}'s legacy copy back", names.of(club.as_str()))
            }
            JobSpec::PurgeLegacy { club, copy, .. } => {
                format!(
                    "delete {}'s kept legacy copy {copy}",
                    names.of(club.as_str())
                )
            }
            JobSpec::PutBack {
                job,
                clubs: Some(slugs),
                ..
            } if !slugs.is_empty() => {
                format!("put {} back as before job #{job}", clubs(slugs))
            }
            JobSpec::PutBack { job, .. } => format!("put the clubs job #{job} switched back"),
        };
        if let JobSpec::Deploy {
            canary: Some(canary),
            ..
        } = self
        {
            match canary.as_slice() {
                [] => {}
                [one] => title.push_str(&format!(", {} first", names.of(one.as_str()))),
                several => title.push_str(&format!(", {} first", several.len())),
            }
        }
        match self.app() {
            Some(app) => title.push_str(&format!(" ({app})")),
            None if matches!(self, JobSpec::Prune { .. } | JobSpec::Fetch { .. }) => {
                title.push_str(" (every application)")
            }
            None => {}
        }
        title
    }
}

impl fmt::Display for JobSpec {
    /// [`JobSpec::title`] with clubs by short name (for logs and where names are not at hand).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.title(&ClubNames::default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AppName, GroupName, ReleaseTag};

    #[test]
    fn a_title_names_a_few_clubs_by_display_name_and_counts_many() {
        let slugs = |n: usize| -> Vec<ClubSlug> {
            (0..n)
                .map(|i| ClubSlug::parse(&format!("c{i}")).unwrap())
                .collect()
        };
        let names = ClubNames::new(
            (0..300)
                .map(|i| (format!("c{i}"), format!("Club {i}")))
                .collect(),
        );
        let deploy = |clubs: Vec<ClubSlug>, canary: Option<Vec<ClubSlug>>, group: Option<&str>| {
            JobSpec::Deploy {
                app: AppName::main(),
                tag: ReleaseTag::parse("v1.1.0").unwrap(),
                targets: Targets::Clubs(clubs),
                canary,
                rebuild: false,
                group: group.map(|g| GroupName::parse(g).unwrap()),
            }
        };
        let title = |spec: JobSpec| spec.title(&names);
        assert_eq!(
            title(deploy(slugs(250), Some(slugs(3)), Some("region-east"))),
            "deploy v1.1.0 to 250 clubs (group region-east), 3 first (main)"
        );
        assert_eq!(
            title(deploy(slugs(250), None, None)),
            "deploy v1.1.0 to 250 clubs (main)"
        );
        assert_eq!(
            title(deploy(slugs(3), Some(slugs(1)), None)),
            "deploy v1.1.0 to Club 0, Club 1 and Club 2, Club 0 first (main)"
        );
        // A club removed since is named by its short name; without names, all are.
        let gone = vec![ClubSlug::parse("gone").unwrap()];
        assert_eq!(
            title(deploy(gone, None, None)),
            "deploy v1.1.0 to gone (main)"
        );
        assert_eq!(
            deploy(slugs(2), None, None).to_string(),
            "deploy v1.1.0 to c0 and c1 (main)"
        );
        let rollback = JobSpec::Rollback {
            app: AppName::main(),
            club: ClubSlug::parse("c7").unwrap(),
            to: None,
        };
        assert_eq!(title(rollback), "roll back Club 7 (main)");
        let put_back = JobSpec::PutBack {
            app: AppName::main(),
            job: 7,
            clubs: Some(slugs(40)),
        };
        assert_eq!(title(put_back), "put 40 clubs back as before job #7 (main)");
    }
}
