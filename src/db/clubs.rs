//! The `clubs` table and the clubs' `webroots`, one per application a club runs.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

use super::schema::{clubs, webroots};

/// A club as stored.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = clubs)]
pub struct Club {
    pub id: i32,
    pub slug: String,
    pub name: String,
    pub url: Option<String>,
    pub created_at: NaiveDateTime,
}

/// A club's webroot for one application, with the club: what a job switches. Selected from
/// `clubs` joined with `webroots`.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = webroots)]
pub struct ClubApp {
    #[diesel(select_expression = clubs::id)]
    pub club_id: i32,
    #[diesel(select_expression = clubs::slug)]
    pub slug: String,
    #[diesel(select_expression = clubs::name)]
    pub name: String,
    /// The address of this webroot's site (health checks go there).
    pub url: Option<String>,
    #[diesel(column_name = id)]
    pub webroot_id: i32,
    pub app: String,
    /// The webroot's path, under `webroot_base`.
    #[diesel(column_name = path)]
    pub webroot: String,
    /// The release the webroot was last seen or made to resolve to.
    pub current_release: Option<String>,
}

/// A club to add.
#[derive(Debug, Insertable)]
#[diesel(table_name = clubs)]
pub struct NewClub<'a> {
    pub slug: &'a str,
    pub name: &'a str,
    pub url: Option<&'a str>,
    pub created_at: NaiveDateTime,
}

/// A webroot to add to a club.
#[derive(Debug, Insertable)]
#[diesel(table_name = webroots)]
pub struct NewWebroot<'a> {
    pub club_id: i32,
    pub app: &'a str,
    pub path: &'a str,
    pub current_release: Option<&'a str>,
    pub created_at: NaiveDateTime,
    pub url: Option<&'a str>,
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

/// Gives a club a webroot for an application.
pub fn add_webroot(
    conn: &mut SqliteConnection,
    webroot: &NewWebroot<'_>,
) -> Result<(), AddClubError> {
    diesel::insert_into(webroots::table)
        .values(webroot)
        .execute(conn)?;
    Ok(())
}

/// Every club's display name, by slug, to name clubs to staff.
pub fn names(conn: &mut SqliteConnection) -> QueryResult<crate::domain::ClubNames> {
    let rows: Vec<(String, String)> = clubs::table.select((clubs::slug, clubs::name)).load(conn)?;
    Ok(crate::domain::ClubNames::new(rows.into_iter().collect()))
}

/// Every club's webroot, by club slug then application; only `app`'s when given.
pub fn webroots(conn: &mut SqliteConnection, app: Option<&str>) -> QueryResult<Vec<ClubApp>> {
    let mut query = clubs::table
        .inner_join(webroots::table)
        .select(ClubApp::as_select())
        .order((clubs::slug, webroots::app))
        .into_boxed();
    if let Some(app) = app {
        query = query.filter(webroots::app.eq(app.to_owned()));
    }
    query.load(conn)
}

/// The webroot of club `slug` for `app`, if the club runs it.
pub fn webroot(conn: &mut SqliteConnection, slug: &str, app: &str) -> QueryResult<Option<ClubApp>> {
    clubs::table
        .inner_join(webroots::table)
        .filter(clubs::slug.eq(slug))
        .filter(webroots::app.eq(app))
        .select(ClubApp::as_select())
        .first(conn)
        .optional()
}

/// The webroots of club `slug`, by application.
pub fn webroots_of(conn: &mut SqliteConnection, slug: &str) -> QueryResult<Vec<ClubApp>> {
    clubs::table
        .inner_join(webroots::table)
        .filter(clubs::slug.eq(slug))
        .select(ClubApp::as_select())
        .order(webroots::app)
        .load(conn)
}

/// Gives a club another display name.
pub fn rename(conn: &mut SqliteConnection, club_id: i32, name: &str) -> QueryResult<()> {
    diesel::update(clubs::table.find(club_id))
        .set(clubs::name.eq(name))
        .execute(conn)?;
    Ok(())
}

/// Sets the address of a webroot's site.
pub fn set_url(conn: &mut SqliteConnection, webroot_id: i32, url: Option<&str>) -> QueryResult<()> {
    diesel::update(webroots::table.find(webroot_id))
        .set(webroots::url.eq(url))
        .execute(conn)?;
    Ok(())
}

/// Records what a webroot was found to resolve to.
pub fn set_current_release(
    conn: &mut SqliteConnection,
    webroot_id: i32,
    release: Option<&str>,
) -> QueryResult<()> {
    diesel::update(webroots::table.find(webroot_id))
        .set(webroots::current_release.eq(release))
        .execute(conn)?;
    Ok(())
}

/// Records a webroot's last health check: `healthy`, `failed` or `unchecked`, why, and when.
pub fn set_health(
    conn: &mut SqliteConnection,
    webroot_id: i32,
    health: &str,
    note: Option<&str>,
    at: NaiveDateTime,
) -> QueryResult<()> {
    diesel::update(webroots::table.find(webroot_id))
        .set((
            webroots::health.eq(health),
            webroots::health_note.eq(note),
            webroots::health_at.eq(at),
        ))
        .execute(conn)?;
    Ok(())
}

/// A webroot's last health check, as recorded.
#[derive(Debug, Clone, Queryable)]
pub struct Health {
    pub club_id: i32,
    pub app: String,
    pub health: String,
    pub note: Option<String>,
    pub at: Option<NaiveDateTime>,
}

/// The last health check of every webroot that had one.
pub fn health(conn: &mut SqliteConnection) -> QueryResult<Vec<Health>> {
    webroots::table
        .filter(webroots::health.is_not_null())
        .select((
            webroots::club_id,
            webroots::app,
            webroots::health.assume_not_null(),
            webroots::health_note,
            webroots::health_at,
        ))
        .load(conn)
}
