//! Bad marks said where someone could repeat the mistake: a release that was put back on a
//! club (a rollback, a put-back, a failed health check) is named on the deploy form, the
//! confirmation and the releases page, and deploying it to that club again needs a tick on
//! purpose (on the command line, `--again`).

use std::collections::BTreeMap;

use chrono::NaiveDateTime;

use crate::db::switches::Marked;
use crate::domain::{Refusal, ReleaseName, count, named};

/// How many clubs a note names before it counts the rest.
const NAMED: usize = 3;

/// One release put back on some clubs by one person in one job, in words.
#[derive(Debug, Clone)]
pub struct PutBackNote {
    pub tag: String,
    pub release: String,
    pub slugs: Vec<String>,
    /// "v1.2.0 was put back on Club Davos by admin 10 minutes ago (job #7)".
    pub words: String,
}

/// The notes for `marks` whose release is of `tag` (any, when `None`) and whose club `among`
/// admits, one per release, person and job, as of `now`.
pub fn notes(
    marks: &[Marked],
    tag: Option<&str>,
    among: impl Fn(&str) -> bool,
    now: NaiveDateTime,
) -> Vec<PutBackNote> {
    type Key<'m> = (&'m str, Option<&'m str>, Option<i32>);
    let mut grouped: BTreeMap<Key<'_>, Vec<&Marked>> = BTreeMap::new();
    for mark in marks {
        let Ok(release) = ReleaseName::parse(&mark.release) else {
            continue;
        };
        if tag.is_some_and(|t| release.tag().as_str() != t) || !among(&mark.slug) {
            continue;
        }
        grouped
            .entry((&mark.release, mark.actor.as_deref(), mark.job_id))
            .or_default()
            .push(mark);
    }
    grouped
        .into_iter()
        .map(|((release, actor, job), clubs)| {
            let tag = ReleaseName::parse(release)
                .map(|r| r.tag().to_string())
                .unwrap_or_default();
            let names: Vec<&str> = clubs.iter().map(|m| m.name.as_str()).collect();
            let newest = clubs.iter().map(|m| m.at).max().unwrap_or(now);
            let mut words = format!("{tag} was put back on {}", named(&names, NAMED));
            if let Some(actor) = actor {
                words.push_str(&format!(" by {actor}"));
            }
            words.push_str(&format!(" {}", ago((now - newest).num_seconds())));
            if let Some(job) = job {
                words.push_str(&format!(" (job #{job})"));
            }
            PutBackNote {
                tag,
                release: release.to_owned(),
                slugs: clubs.iter().map(|m| m.slug.clone()).collect(),
                words,
            }
        })
        .collect()
}

/// The notes a deploy of `tag` to `targets` of `app` must heed: the tag's releases put back
/// on clubs it goes to.
pub fn for_deploy(
    conn: &mut crate::db::Conn,
    app: &str,
    tag: &str,
    targets: &crate::domain::Targets,
) -> diesel::QueryResult<Vec<PutBackNote>> {
    let marks = crate::db::switches::marked(conn, app)?;
    Ok(notes(
        &marks,
        Some(tag),
        |slug| match targets {
            crate::domain::Targets::All => true,
            crate::domain::Targets::Clubs(slugs) => slugs.iter().any(|s| s.as_str() == slug),
        },
        crate::db::now(),
    ))
}

/// A deploy that would bring a release back to clubs it was put back on goes ahead only when
/// asked on purpose (`again`); else it is refused, saying so and how to ask.
pub fn refuse_unless_again(notes: &[PutBackNote], again: bool) -> Result<(), Refusal> {
    if again || notes.is_empty() {
        return Ok(());
    }
    let said: Vec<&str> = notes.iter().map(|n| n.words.as_str()).collect();
    let clubs: usize = notes.iter().map(|n| n.slugs.len()).sum();
    Err(Refusal::Conflict(format!(
        "{}. To deploy it to {} again on purpose, tick \u{201c}Deploy it again\u{201d} on the \
         confirmation (on the command line: --again); nothing was queued",
        said.join("; "),
        if clubs == 1 {
            "that club".to_owned()
        } else {
            format!("those {}", count(clubs, "club"))
        }
    )))
}

/// How long ago, in words: "just now", "10 minutes ago", "3 hours ago", "2 days ago".
pub fn ago(seconds: i64) -> String {
    let seconds = seconds.max(0);
    let (n, unit) = match seconds {
        0..60 => return "just now".to_owned(),
        60..3600 => (seconds / 60, "minute"),
        3600..172_800 => (seconds / 3600, "hour"),
        _ => (seconds / 86_400, "day"),
    };
    format!("{} ago", count(n as usize, unit))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(slug: &str, release: &str, actor: &str, job: i32, minutes_ago: i64) -> Marked {
        let now = chrono::DateTime::from_timestamp(1_800_000_000, 0)
            .unwrap()
            .naive_utc();
        Marked {
            slug: slug.into(),
            name: format!("Club {slug}"),
            release: release.into(),
            actor: Some(actor.into()),
            at: now - chrono::Duration::minutes(minutes_ago),
            job_id: Some(job),
        }
    }

    #[test]
    fn a_put_back_release_is_said_per_job_and_redeploying_it_needs_asking() {
        let now = chrono::DateTime::from_timestamp(1_800_000_000, 0)
            .unwrap()
            .naive_utc();
        let marks = [
            mark("davos", "v1.2.0-aaaaaaaa", "admin", 7, 10),
            mark("arosa", "v1.2.0-aaaaaaaa", "admin", 7, 12),
            mark("lenk", "v1.1.0-bbbbbbbb", "maria", 5, 60 * 30),
        ];
        let all = notes(&marks, None, |_| true, now);
        let words: Vec<&str> = all.iter().map(|n| n.words.as_str()).collect();
        assert_eq!(
            words,
            [
                "v1.1.0 was put back on Club lenk by maria 30 hours ago (job #5)",
                "v1.2.0 was put back on Club davos and Club arosa by admin 10 minutes ago \
                 (job #7)"
            ]
        );
        // Only the tag deployed, only the clubs it goes to.
        let davos = notes(&marks, Some("v1.2.0"), |s| s == "davos", now);
        assert_eq!(davos.len(), 1);
        assert_eq!(davos[0].slugs, ["davos"]);
        assert!(notes(&marks, Some("v1.3.0"), |_| true, now).is_empty());
        // Deploying it there again is refused unless asked, saying how to ask.
        let refused = refuse_unless_again(&davos, false).unwrap_err().to_string();
        assert!(
            refused.starts_with("v1.2.0 was put back on Club davos"),
            "{refused}"
        );
        assert!(refused.contains("tick “Deploy it again”"), "{refused}");
        assert!(refused.contains("--again"), "{refused}");
        assert!(refuse_unless_again(&davos, true).is_ok());
        assert!(refuse_unless_again(&[], false).is_ok());
    }

    #[test]
    fn time_ago_is_said_in_the_largest_whole_unit() {
        assert_eq!(ago(5), "just now");
        assert_eq!(ago(60), "1 minute ago");
        assert_eq!(ago(600), "10 minutes ago");
        assert_eq!(ago(3 * 3600 + 5), "3 hours ago");
        assert_eq!(ago(5 * 86_400), "5 days ago");
    }
}
