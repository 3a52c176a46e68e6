//! The `switches` history and the `bad_releases` marks, per club and application.

use std::collections::{HashMap, HashSet};

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::{bad_releases, switches, webroots};
use crate::domain::SwitchKind;

/// One club's webroot switched from one release to another.
#[derive(Debug, Clone, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = switches)]
pub struct Switch {
    pub id: i32,
    pub club_id: i32,
    pub app: String,
    pub from_release: Option<String>,
    pub to_release: String,
    pub commit_id: String,
    pub kind: SwitchKind,
    pub actor: String,
    pub switched_at: NaiveDateTime,
}

/// A switch to record.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = switches)]
pub struct NewSwitch {
    pub club_id: i32,
    pub app: String,
    pub from_release: Option<String>,
    pub to_release: String,
    pub commit_id: String,
    pub kind: SwitchKind,
    pub actor: String,
    pub switched_at: NaiveDateTime,
    /// The job that made the switch.
    pub job_id: Option<i32>,
}

/// The switches job `job_id` made, oldest first.
pub fn of_job(conn: &mut SqliteConnection, job_id: i32) -> QueryResult<Vec<Switch>> {
    switches::table
        .filter(switches::job_id.eq(job_id))
        .order(switches::id)
        .select(Switch::as_select())
        .load(conn)
}

/// A release a rollback left: marked bad for that club and application.
#[derive(Debug, Clone)]
pub struct BadMark {
    pub club_id: i32,
    pub app: String,
    pub release: String,
}

/// A club and application: the key of everything per webroot.
pub type ClubAppKey = (i32, String);

/// Records switches, the webroots' new current release, the releases a rollback left (marked
/// bad for that club and application) and the audit rows telling of it, all in one
/// transaction.
pub fn record(
    conn: &mut SqliteConnection,
    done: &[NewSwitch],
    rolled_back_from: &[BadMark],
    audit_entries: &[super::audit::Entry<'_>],
) -> QueryResult<()> {
    conn.immediate_transaction(|conn| {
        super::audit::append_all(conn, audit_entries)?;
        let now = super::now();
        for mark in rolled_back_from {
            mark_bad(conn, mark, now)?;
        }
        for rows in done.chunks(SWITCH_ROWS) {
            diesel::insert_into(switches::table)
                .values(rows)
                .execute(conn)?;
        }
        // A job switches its clubs of one application to one release: one statement per
        // group and chunk, not two per club.
        let mut groups: HashMap<(&str, &str), Vec<i32>> = HashMap::new();
        for switch in done {
            groups
                .entry((switch.app.as_str(), switch.to_release.as_str()))
                .or_default()
                .push(switch.club_id);
        }
        for ((app, release), clubs) in groups {
            for clubs in clubs.chunks(SWITCH_ROWS) {
                diesel::update(
                    webroots::table
                        .filter(webroots::app.eq(app))
                        .filter(webroots::club_id.eq_any(clubs)),
                )
                .set(webroots::current_release.eq(release))
                .execute(conn)?;
                // Deploying a release to a club on purpose lifts its "bad" mark there.
                diesel::delete(
                    bad_releases::table
                        .filter(bad_releases::app.eq(app))
                        .filter(bad_releases::release.eq(release))
                        .filter(bad_releases::club_id.eq_any(clubs)),
                )
                .execute(conn)?;
            }
        }
        Ok(())
    })
}

/// Rows (or club ids) one statement of [`record`] takes: well under SQLite's variable limit.
const SWITCH_ROWS: usize = 200;

/// A club's switches of one application, newest first.
pub fn history(conn: &mut SqliteConnection, club_id: i32, app: &str) -> QueryResult<Vec<Switch>> {
    switches::table
        .filter(switches::club_id.eq(club_id))
        .filter(switches::app.eq(app))
        .order(switches::id.desc())
        .select(Switch::as_select())
        .load(conn)
}

/// The rule of a club's previous release: the newest in its history (`newest_first`) that it
/// does not run now (`current`, as read from its link on disk) and was not rolled back from
/// (`bad`). The rollback job, the rollback page, the clubs page and prune all ask this.
pub fn previous_of<T>(
    newest_first: impl IntoIterator<Item = T>,
    release: impl Fn(&T) -> &str,
    current: &str,
    bad: &HashSet<String>,
) -> Option<T> {
    newest_first.into_iter().find(|item| {
        let to = release(item);
        to != current && !bad.contains(to)
    })
}

/// The switch to the release a club's webroot of `app` would roll back to from `current`
/// (see [`previous_of`]).
pub fn previous(
    conn: &mut SqliteConnection,
    club_id: i32,
    app: &str,
    current: &str,
) -> QueryResult<Option<Switch>> {
    let bad = bad_for(conn, club_id, app)?;
    Ok(previous_of(
        history(conn, club_id, app)?,
        |s| s.to_release.as_str(),
        current,
        &bad,
    ))
}

/// Every club's rollback target per application, from what each runs now as read from disk
/// (`current`; a webroot missing there has none): [`previous_of`] over each club's releases
/// by their newest switch, in two queries for all clubs.
pub fn rollback_targets(
    conn: &mut SqliteConnection,
    app: Option<&str>,
    current: &HashMap<ClubAppKey, String>,
) -> QueryResult<HashMap<ClubAppKey, String>> {
    let mut query = switches::table
        .group_by((switches::club_id, switches::app, switches::to_release))
        .select((
            switches::club_id,
            switches::app,
            switches::to_release,
            diesel::dsl::max(switches::id),
        ))
        .into_boxed();
    let mut marks = bad_releases::table
        .select((
            bad_releases::club_id,
            bad_releases::app,
            bad_releases::release,
        ))
        .into_boxed();
    if let Some(app) = app {
        query = query.filter(switches::app.eq(app));
        marks = marks.filter(bad_releases::app.eq(app));
    }
    let rows: Vec<(i32, String, String, Option<i32>)> = query.load(conn)?;
    let mut bad: HashMap<ClubAppKey, HashSet<String>> = HashMap::new();
    for (club, app, release) in marks.load::<(i32, String, String)>(conn)? {
        bad.entry((club, app)).or_default().insert(release);
    }
    let mut runs: HashMap<ClubAppKey, Vec<(i32, String)>> = HashMap::new();
    for (club, app, release, last) in rows {
        runs.entry((club, app))
            .or_default()
            .push((last.unwrap_or(0), release));
    }
    let none = HashSet::new();
    Ok(runs
        .into_iter()
        .filter_map(|(key, mut releases)| {
            let now = current.get(&key)?;
            releases.sort_by_key(|(last, _)| std::cmp::Reverse(*last));
            let bad = bad.get(&key).unwrap_or(&none);
            let (_, to) = previous_of(releases, |(_, r)| r.as_str(), now, bad)?;
            Some((key, to))
        })
        .collect())
}

/// When a club last ran each release of `app`: its newest switch to it or away from it.
pub fn last_ran(
    conn: &mut SqliteConnection,
    app: &str,
) -> QueryResult<HashMap<String, NaiveDateTime>> {
    let to: Vec<(String, Option<NaiveDateTime>)> = switches::table
        .filter(switches::app.eq(app))
        .group_by(switches::to_release)
        .select((
            switches::to_release,
            diesel::dsl::max(switches::switched_at),
        ))
        .load(conn)?;
    let from: Vec<(Option<String>, Option<NaiveDateTime>)> = switches::table
        .filter(switches::app.eq(app))
        .filter(switches::from_release.is_not_null())
        .group_by(switches::from_release)
        .select((
            switches::from_release,
            diesel::dsl::max(switches::switched_at),
        ))
        .load(conn)?;
    let mut last: HashMap<String, NaiveDateTime> = HashMap::new();
    let found = to
        .into_iter()
        .filter_map(|(r, at)| Some((r, at?)))
        .chain(from.into_iter().filter_map(|(r, at)| Some((r?, at?))));
    for (release, at) in found {
        let entry = last.entry(release).or_insert(at);
        *entry = (*entry).max(at);
    }
    Ok(last)
}

/// The releases of `app` marked bad for any club.
pub fn bad_anywhere(conn: &mut SqliteConnection, app: &str) -> QueryResult<HashSet<String>> {
    Ok(bad_releases::table
        .filter(bad_releases::app.eq(app))
        .select(bad_releases::release)
        .distinct()
        .load::<String>(conn)?
        .into_iter()
        .collect())
}

/// The commit a release of `app` was built from, from any club's history.
pub fn commit_of(
    conn: &mut SqliteConnection,
    app: &str,
    release: &str,
) -> QueryResult<Option<String>> {
    switches::table
        .filter(switches::app.eq(app))
        .filter(switches::to_release.eq(release))
        .select(switches::commit_id)
        .first(conn)
        .optional()
}

/// When any club's webroot of `app` was last switched.
pub fn last_switched_at(
    conn: &mut SqliteConnection,
    app: &str,
) -> QueryResult<Option<NaiveDateTime>> {
    switches::table
        .filter(switches::app.eq(app))
        .select(diesel::dsl::max(switches::switched_at))
        .first(conn)
}

/// Marks a release as bad for a club's application, so "previous" skips it.
fn mark_bad(conn: &mut SqliteConnection, mark: &BadMark, at: NaiveDateTime) -> QueryResult<()> {
    diesel::insert_into(bad_releases::table)
        .values((
            bad_releases::club_id.eq(mark.club_id),
            bad_releases::app.eq(&mark.app),
            bad_releases::release.eq(&mark.release),
            bad_releases::marked_at.eq(at),
        ))
        .on_conflict_do_nothing()
        .execute(conn)?;
    Ok(())
}

/// A release marked bad for a club (a rollback, a put-back or a failed health check moved the
/// club off it), with who did that, when and in which job, as the newest switch off it says.
#[derive(Debug, Clone)]
pub struct Marked {
    pub slug: String,
    pub name: String,
    pub release: String,
    pub actor: Option<String>,
    pub at: NaiveDateTime,
    pub job_id: Option<i32>,
}

/// Every release of `app` marked bad for a club, by release then club.
pub fn marked(conn: &mut SqliteConnection, app: &str) -> QueryResult<Vec<Marked>> {
    use super::schema::clubs;
    let marks: Vec<(i32, String, String, String, NaiveDateTime)> = bad_releases::table
        .inner_join(clubs::table)
        .filter(bad_releases::app.eq(app))
        .select((
            bad_releases::club_id,
            clubs::slug,
            clubs::name,
            bad_releases::release,
            bad_releases::marked_at,
        ))
        .order((bad_releases::release, clubs::slug))
        .load(conn)?;
    if marks.is_empty() {
        return Ok(Vec::new());
    }
    // The switches that moved a club off a release, newest last (one query for all marks).
    // (club, from release, actor, when, job)
    type Off = (i32, Option<String>, String, NaiveDateTime, Option<i32>);
    let off: Vec<Off> = switches::table
        .filter(switches::app.eq(app))
        .filter(switches::kind.eq_any([SwitchKind::Rollback, SwitchKind::HealthRollback]))
        .filter(switches::from_release.is_not_null())
        .select((
            switches::club_id,
            switches::from_release,
            switches::actor,
            switches::switched_at,
            switches::job_id,
        ))
        .order(switches::id)
        .load(conn)?;
    let mut by: HashMap<(i32, String), (String, NaiveDateTime, Option<i32>)> = HashMap::new();
    for (club_id, from, actor, at, job_id) in off {
        if let Some(from) = from {
            by.insert((club_id, from), (actor, at, job_id));
        }
    }
    Ok(marks
        .into_iter()
        .map(|(club_id, slug, name, release, marked_at)| {
            let found = by.remove(&(club_id, release.clone()));
            Marked {
                slug,
                name,
                actor: found.as_ref().map(|f| f.0.clone()),
                at: found.as_ref().map_or(marked_at, |f| f.1),
                job_id: found.and_then(|f| f.2),
                release,
            }
        })
        .collect())
}

/// The releases of `app` marked bad for a club.
pub fn bad_for(
    conn: &mut SqliteConnection,
    club_id: i32,
    app: &str,
) -> QueryResult<HashSet<String>> {
    Ok(bad_releases::table
        .filter(bad_releases::club_id.eq(club_id))
        .filter(bad_releases::app.eq(app))
        .select(bad_releases::release)
        .load::<String>(conn)?
        .into_iter()
        .collect())
}

/// Each club's newest switch per application (when it got its current release, and from
/// whom).
pub fn latest_per_club(conn: &mut SqliteConnection) -> QueryResult<HashMap<ClubAppKey, Switch>> {
    let rows: Vec<Switch> = diesel::sql_query(
        "SELECT * FROM switches WHERE id IN \
         (SELECT MAX(id) FROM switches GROUP BY club_id, app)",
    )
    .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|s| ((s.club_id, s.app.clone()), s))
        .collect())
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::previous_of;

    #[test]
    fn the_previous_release_is_the_newest_other_one_not_rolled_back_from() {
        let history = ["v4", "v3", "v2", "v3", "v1"];
        let bad: HashSet<String> = ["v3".to_owned()].into();
        let previous = |current: &str, bad: &HashSet<String>| {
            previous_of(history, |r| r, current, bad).map(str::to_owned)
        };
        assert_eq!(previous("v4", &HashSet::new()).as_deref(), Some("v3"));
        assert_eq!(previous("v4", &bad).as_deref(), Some("v2"));
        // Under drift (a link changed by hand to v2), the previous is read from that.
        assert_eq!(previous("v2", &bad).as_deref(), Some("v4"));
        let all_bad: HashSet<String> = ["v1", "v2", "v3"].map(str::to_owned).into();
        assert_eq!(previous("v4", &all_bad), None);
    }
}
