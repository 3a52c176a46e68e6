//! Club groups: named sets of clubs ("early-adopters", "region-east") to deploy to, filter by
//! and try first. A club may be in several groups; a group exists while it has a member.

use std::collections::{BTreeMap, HashMap};

use diesel::prelude::*;

use super::schema::{club_groups, clubs};

/// Every group and its members' slugs, by group name then slug.
pub fn all(conn: &mut SqliteConnection) -> QueryResult<BTreeMap<String, Vec<String>>> {
    let rows: Vec<(String, String)> = club_groups::table
        .inner_join(clubs::table)
        .select((club_groups::name, clubs::slug))
        .order((club_groups::name, clubs::slug))
        .load(conn)?;
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, slug) in rows {
        groups.entry(name).or_default().push(slug);
    }
    Ok(groups)
}

/// The groups each club is in, by club slug (clubs in none are absent).
pub fn by_slug(conn: &mut SqliteConnection) -> QueryResult<HashMap<String, Vec<String>>> {
    let rows: Vec<(String, String)> = club_groups::table
        .inner_join(clubs::table)
        .select((clubs::slug, club_groups::name))
        .order(club_groups::name)
        .load(conn)?;
    let mut found: HashMap<String, Vec<String>> = HashMap::new();
    for (slug, name) in rows {
        found.entry(slug).or_default().push(name);
    }
    Ok(found)
}

/// The slugs of group `name`'s members (none: no such group).
pub fn members(conn: &mut SqliteConnection, name: &str) -> QueryResult<Vec<String>> {
    club_groups::table
        .inner_join(clubs::table)
        .filter(club_groups::name.eq(name))
        .select(clubs::slug)
        .order(clubs::slug)
        .load(conn)
}

/// Puts club `club_id` in group `name`; says whether it was not in it already.
pub fn join(conn: &mut SqliteConnection, name: &str, club_id: i32) -> QueryResult<bool> {
    let added = diesel::insert_into(club_groups::table)
        .values((club_groups::name.eq(name), club_groups::club_id.eq(club_id)))
        .on_conflict_do_nothing()
        .execute(conn)?;
    Ok(added == 1)
}

/// Takes club `club_id` out of group `name`; says whether it was in it.
pub fn leave(conn: &mut SqliteConnection, name: &str, club_id: i32) -> QueryResult<bool> {
    let removed = diesel::delete(
        club_groups::table
            .filter(club_groups::name.eq(name))
            .filter(club_groups::club_id.eq(club_id)),
    )
    .execute(conn)?;
    Ok(removed == 1)
}

/// Club slugs for `names`, each a club's slug or a group's name: a club stays itself, a group
/// stands for its clubs (only those in `among`, when given), anything else stays as it is
/// (to be refused where it is used). Each slug once, in order.
pub fn expand(
    conn: &mut SqliteConnection,
    names: &[String],
    among: Option<&[String]>,
) -> QueryResult<Vec<String>> {
    let mut slugs: Vec<String> = Vec::new();
    for name in names {
        let group = match super::clubs::by_slug(conn, name)? {
            Some(_) => Vec::new(),
            None => members(conn, name)?,
        };
        let found: Vec<String> = if group.is_empty() {
            vec![name.clone()]
        } else {
            group
                .into_iter()
                .filter(|m| among.is_none_or(|among| among.contains(m)))
                .collect()
        };
        for slug in found {
            if !slugs.contains(&slug) {
                slugs.push(slug);
            }
        }
    }
    Ok(slugs)
}

/// The group `ticked` is, among the clubs running `app` that `may_change` allows (the rule:
/// [`crate::domain::group_of`]), to name it in a deploy's title.
pub fn picked(
    conn: &mut SqliteConnection,
    app: &str,
    ticked: &[crate::domain::ClubSlug],
    may_change: impl Fn(&str) -> bool,
) -> QueryResult<Option<crate::domain::GroupName>> {
    let running: std::collections::HashSet<String> = super::clubs::webroots(conn, Some(app))?
        .into_iter()
        .map(|w| w.slug)
        .collect();
    let groups = all(conn)?;
    Ok(crate::domain::group_of(ticked, &groups, |slug| {
        running.contains(slug) && may_change(slug)
    }))
}
