//! Staff (`users`), their sessions, and sign-in attempts.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::{login_attempts, sessions, users};
use crate::domain::Role;

/// A member of staff as stored.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = users)]
pub struct User {
    pub id: i32,
    pub name: String,
    pub password_hash: String,
    pub role: Role,
    pub clubs: Option<String>,
    pub disabled: bool,
    pub created_at: NaiveDateTime,
    /// The sign-in code secret (base32), when they set one up.
    pub totp_secret: Option<String>,
    /// The time step of the last sign-in code accepted.
    pub totp_step: Option<i64>,
}

/// Someone to add.
#[derive(Debug, Insertable)]
#[diesel(table_name = users)]
pub struct NewUser<'a> {
    pub name: &'a str,
    pub password_hash: &'a str,
    pub role: Role,
    pub clubs: Option<&'a str>,
    pub disabled: bool,
    pub created_at: NaiveDateTime,
}

/// A signed-in session as stored.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = sessions)]
pub struct Session {
    pub id: i32,
    pub token_hash: String,
    pub user_id: i32,
    pub csrf_token: String,
    pub created_at: NaiveDateTime,
    pub last_seen_at: NaiveDateTime,
}

/// Adds a user; `Ok(None)` when the name is taken.
pub fn insert(conn: &mut SqliteConnection, user: &NewUser<'_>) -> QueryResult<Option<User>> {
    match diesel::insert_into(users::table)
        .values(user)
        .returning(User::as_returning())
        .get_result(conn)
    {
        Ok(user) => Ok(Some(user)),
        Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Everyone, by name.
pub fn all(conn: &mut SqliteConnection) -> QueryResult<Vec<User>> {
    users::table
        .order(users::name)
        .select(User::as_select())
        .load(conn)
}

/// The user with this name.
pub fn by_name(conn: &mut SqliteConnection, name: &str) -> QueryResult<Option<User>> {
    users::table
        .filter(users::name.eq(name))
        .select(User::as_select())
        .first(conn)
        .optional()
}

/// Changes a user's role and club list.
pub fn set_role(
    conn: &mut SqliteConnection,
    id: i32,
    role: Role,
    clubs: Option<&str>,
) -> QueryResult<()> {
    diesel::update(users::table.find(id))
        .set((users::role.eq(role), users::clubs.eq(clubs)))
        .execute(conn)?;
    Ok(())
}

/// Replaces a user's password hash and ends their sessions.
pub fn set_password(conn: &mut SqliteConnection, id: i32, hash: &str) -> QueryResult<()> {
    set_hash(conn, id, hash)?;
    end_sessions_of(conn, id)
}

/// Disables (or re-enables) a user; disabling ends their sessions at once.
pub fn set_disabled(conn: &mut SqliteConnection, id: i32, disabled: bool) -> QueryResult<()> {
    diesel::update(users::table.find(id))
        .set(users::disabled.eq(disabled))
        .execute(conn)?;
    if disabled {
        end_sessions_of(conn, id)?;
    }
    Ok(())
}

/// Ends every session of a user.
pub fn end_sessions_of(conn: &mut SqliteConnection, user_id: i32) -> QueryResult<()> {
    diesel::delete(sessions::table.filter(sessions::user_id.eq(user_id))).execute(conn)?;
    Ok(())
}

/// Ends every session of a user but `keep` (the one they are using); how many ended.
pub fn end_other_sessions(
    conn: &mut SqliteConnection,
    user_id: i32,
    keep: i32,
) -> QueryResult<usize> {
    diesel::delete(
        sessions::table
            .filter(sessions::user_id.eq(user_id))
            .filter(sessions::id.ne(keep)),
    )
    .execute(conn)
}

/// How many sessions a user has besides `this` one.
pub fn other_sessions(conn: &mut SqliteConnection, user_id: i32, this: i32) -> QueryResult<i64> {
    sessions::table
        .filter(sessions::user_id.eq(user_id))
        .filter(sessions::id.ne(this))
        .count()
        .get_result(conn)
}

/// Replaces a user's password hash, keeping their sessions (see [`set_password`]).
pub fn set_hash(conn: &mut SqliteConnection, id: i32, hash: &str) -> QueryResult<()> {
    diesel::update(users::table.find(id))
        .set(users::password_hash.eq(hash))
        .execute(conn)?;
    Ok(())
}

/// Starts a session.
pub fn insert_session(
    conn: &mut SqliteConnection,
    token_hash: &str,
    user_id: i32,
    csrf_token: &str,
    now: NaiveDateTime,
) -> QueryResult<()> {
    diesel::insert_into(sessions::table)
        .values((
            sessions::token_hash.eq(token_hash),
            sessions::user_id.eq(user_id),
            sessions::csrf_token.eq(csrf_token),
            sessions::created_at.eq(now),
            sessions::last_seen_at.eq(now),
        ))
        .execute(conn)?;
    Ok(())
}

/// The session with this token hash and its user.
pub fn session(
    conn: &mut SqliteConnection,
    token_hash: &str,
) -> QueryResult<Option<(Session, User)>> {
    sessions::table
        .inner_join(users::table)
        .filter(sessions::token_hash.eq(token_hash))
        .select((Session::as_select(), User::as_select()))
        .first(conn)
        .optional()
}

/// The session with this id and its user.
pub fn session_by_id(conn: &mut SqliteConnection, id: i32) -> QueryResult<Option<(Session, User)>> {
    sessions::table
        .inner_join(users::table)
        .filter(sessions::id.eq(id))
        .select((Session::as_select(), User::as_select()))
        .first(conn)
        .optional()
}

/// Marks a session as used now.
pub fn touch_session(conn: &mut SqliteConnection, id: i32, now: NaiveDateTime) -> QueryResult<()> {
    diesel::update(sessions::table.find(id))
        .set(sessions::last_seen_at.eq(now))
        .execute(conn)?;
    Ok(())
}

/// Ends one session.
pub fn delete_session(conn: &mut SqliteConnection, id: i32) -> QueryResult<()> {
    diesel::delete(sessions::table.find(id)).execute(conn)?;
    Ok(())
}

/// Records a failed sign-in attempt (a reservation, made before the password is checked;
/// [`mark_attempt_succeeded`] clears it when the password was right); returns its id.
pub fn record_failure(
    conn: &mut SqliteConnection,
    account: &str,
    address: &str,
    at: NaiveDateTime,
) -> QueryResult<i32> {
    diesel::insert_into(login_attempts::table)
        .values((
            login_attempts::at.eq(at),
            login_attempts::account.eq(account),
            login_attempts::address.eq(address),
            login_attempts::succeeded.eq(false),
        ))
        .returning(login_attempts::id)
        .get_result(conn)
}

/// Sets a user's sign-in code secret with the step of the code already spent on it
/// (`Some((secret, step))`), or removes both (`None`).
pub fn set_totp(
    conn: &mut SqliteConnection,
    id: i32,
    code: Option<(&str, i64)>,
) -> QueryResult<()> {
    diesel::update(users::table.find(id))
        .set((
            users::totp_secret.eq(code.map(|(secret, _)| secret)),
            users::totp_step.eq(code.map(|(_, step)| step)),
        ))
        .execute(conn)?;
    Ok(())
}

/// Records that the code of `step` was used; false when it (or a later one) already was, so
/// two sign-ins racing with one code cannot both win.
pub fn use_totp_step(conn: &mut SqliteConnection, id: i32, step: i64) -> QueryResult<bool> {
    let changed = diesel::update(
        users::table
            .find(id)
            .filter(users::totp_step.is_null().or(users::totp_step.lt(step))),
    )
    .set(users::totp_step.eq(step))
    .execute(conn)?;
    Ok(changed == 1)
}

/// Turns a reserved attempt into a successful one (it no longer counts as a failure).
pub fn mark_attempt_succeeded(conn: &mut SqliteConnection, id: i32) -> QueryResult<()> {
    diesel::update(login_attempts::table.find(id))
        .set(login_attempts::succeeded.eq(true))
        .execute(conn)?;
    Ok(())
}

/// Forgets the failed attempts for `account` from `address` (its owner just proved the
/// password there); returns how many there were.
pub fn forget_failures_of(
    conn: &mut SqliteConnection,
    account: &str,
    address: &str,
) -> QueryResult<usize> {
    diesel::delete(
        login_attempts::table
            .filter(login_attempts::account.eq(account))
            .filter(login_attempts::address.eq(address))
            .filter(login_attempts::succeeded.eq(false)),
    )
    .execute(conn)
}

/// Forgets attempts made before `before` (they no longer count for throttling).
pub fn forget_attempts_before(
    conn: &mut SqliteConnection,
    before: NaiveDateTime,
) -> QueryResult<()> {
    diesel::delete(login_attempts::table.filter(login_attempts::at.lt(before))).execute(conn)?;
    Ok(())
}

/// Failed attempts since `since`: how many, and the newest one's time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Failures {
    pub count: i64,
    pub last: Option<NaiveDateTime>,
}

/// Failed attempts since `since`: for `account` from `address`, from `address` in all, and
/// for `account` from every address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FailureCounts {
    pub pair: Failures,
    pub from_address: Failures,
    pub of_account: Failures,
}

/// See [`FailureCounts`].
pub fn failures_since(
    conn: &mut SqliteConnection,
    account: &str,
    address: &str,
    since: NaiveDateTime,
) -> QueryResult<FailureCounts> {
    use diesel::dsl::{count_star, max};
    let failed = || {
        login_attempts::table
            .filter(login_attempts::succeeded.eq(false))
            .filter(login_attempts::at.ge(since))
    };
    let read = |(count, last): (i64, Option<NaiveDateTime>)| Failures { count, last };
    let pair = failed()
        .filter(login_attempts::account.eq(account))
        .filter(login_attempts::address.eq(address))
        .select((count_star(), max(login_attempts::at)))
        .first(conn)
        .map(read)?;
    let from_address = failed()
        .filter(login_attempts::address.eq(address))
        .select((count_star(), max(login_attempts::at)))
        .first(conn)
        .map(read)?;
    let of_account = failed()
        .filter(login_attempts::account.eq(account))
        .select((count_star(), max(login_attempts::at)))
        .first(conn)
        .map(read)?;
    Ok(FailureCounts {
        pair,
        from_address,
        of_account,
    })
}

/// Failed attempts since `since` over every account and address.
pub fn all_failures_since(conn: &mut SqliteConnection, since: NaiveDateTime) -> QueryResult<i64> {
    login_attempts::table
        .filter(login_attempts::succeeded.eq(false))
        .filter(login_attempts::at.ge(since))
        .count()
        .get_result(conn)
}

/// Leaves `message` for the session's next page (replacing one not yet shown).
pub fn set_flash(conn: &mut SqliteConnection, session_id: i32, message: &str) -> QueryResult<()> {
    use super::schema::flashes;
    diesel::insert_into(flashes::table)
        .values((
            flashes::session_id.eq(session_id),
            flashes::message.eq(message),
        ))
        .on_conflict(flashes::session_id)
        .do_update()
        .set(flashes::message.eq(message))
        .execute(conn)?;
    Ok(())
}

/// The session's message for this page, taken: it is shown once.
pub fn take_flash(conn: &mut SqliteConnection, session_id: i32) -> QueryResult<Option<String>> {
    use super::schema::flashes;
    diesel::delete(flashes::table.find(session_id))
        .returning(flashes::message)
        .get_result(conn)
        .optional()
}
