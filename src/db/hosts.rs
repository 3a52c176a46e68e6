//! Which web hosts serve a club, when not every one does (`club_hosts`).

use std::collections::BTreeMap;

use diesel::prelude::*;

use super::schema::{club_hosts, clubs};

/// The hosts named for each club that has any, by slug (a club absent is served by every
/// host).
pub fn all(conn: &mut SqliteConnection) -> QueryResult<BTreeMap<String, Vec<String>>> {
    let rows: Vec<(String, String)> = club_hosts::table
        .inner_join(clubs::table)
        .select((clubs::slug, club_hosts::host))
        .order((clubs::slug, club_hosts::host))
        .load(conn)?;
    let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (slug, host) in rows {
        found.entry(slug).or_default().push(host);
    }
    Ok(found)
}

/// The hosts named for club `club_id` (none: every host).
pub fn of(conn: &mut SqliteConnection, club_id: i32) -> QueryResult<Vec<String>> {
    club_hosts::table
        .filter(club_hosts::club_id.eq(club_id))
        .select(club_hosts::host)
        .order(club_hosts::host)
        .load(conn)
}

/// Names exactly `hosts` for club `club_id` (none: every host); call in a transaction.
pub fn set(conn: &mut SqliteConnection, club_id: i32, hosts: &[String]) -> QueryResult<()> {
    diesel::delete(club_hosts::table.filter(club_hosts::club_id.eq(club_id))).execute(conn)?;
    for host in hosts {
        diesel::insert_into(club_hosts::table)
            .values((club_hosts::club_id.eq(club_id), club_hosts::host.eq(host)))
            .execute(conn)?;
    }
    Ok(())
}
