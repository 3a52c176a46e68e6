//! The `clubs` table.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

use super::schema::clubs;

/// A club as stored.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = clubs)]
pub struct Club {
    pub id: i32,
    pub slug: String,
    pub name: String,
    pub webroot: String,
    pub url: Option<String>,
    pub current_release: Option<String>,
    pub created_at: NaiveDateTime,
}

/// A club to add.
#[derive(Debug, Insertable)]
#[diesel(table_name = clubs)]
pub struct NewClub<'a> {
    pub slug: &'a str,
    pub name: &'a str,
    pub webroot: &'a str,
    pub url: Option<&'a str>,
    pub current_release: Option<&'a str>,
    pub created_at: NaiveDateTime,
}

/// Why a club could not be added.
#[derive(Debug, thiserror::Error)]
pub enum AddClubError {
    #[error("a club with that slug or webroot already exists")]
    Duplicate,
    #[error(transparent)]
    Db(DieselError),
}

impl From<DieselError> for AddClubError {
    fn from(e: DieselError) -> Self {
        match e {
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
                AddClubError::Duplicate
            }
            e => AddClubError::Db(e),
        }
    }
}

/// Adds a club.
pub fn insert(conn: &mut SqliteConnection, club: &NewClub<'_>) -> Result<Club, AddClubError> {
    diesel::insert_into(clubs::table)
        .values(club)
        .returning(Club::as_returning())
        .get_result(conn)
        .map_err(AddClubError::from)
}

/// Every club, by slug.
pub fn all(conn: &mut SqliteConnection) -> QueryResult<Vec<Club>> {
    clubs::table
        .order(clubs::slug)
        .select(Club::as_select())
        .load(conn)
}

/// The club with this slug, if any.
pub fn by_slug(conn: &mut SqliteConnection, slug: &str) -> QueryResult<Option<Club>> {
    clubs::table
        .filter(clubs::slug.eq(slug))
        .select(Club::as_select())
        .first(conn)
        .optional()
}

/// Forgets a club and its history; says whether there was one.
pub fn remove(conn: &mut SqliteConnection, slug: &str) -> QueryResult<bool> {
    Ok(diesel::delete(clubs::table.filter(clubs::slug.eq(slug))).execute(conn)? == 1)
}

/// Records what the club's webroot was found to resolve to.
pub fn set_current_release(
    conn: &mut SqliteConnection,
    club_id: i32,
    release: Option<&str>,
) -> QueryResult<()> {
    diesel::update(clubs::table.find(club_id))
        .set(clubs::current_release.eq(release))
        .execute(conn)?;
    Ok(())
}
