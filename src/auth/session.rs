//! Server-side sessions: the cookie holds a random token, the database only its hash, with
//! a CSRF token tied to the session, an idle timeout and an absolute timeout.

use chrono::{Duration, NaiveDateTime};

use crate::config::SessionTimeouts;
use crate::db::Conn;
use crate::db::users::{self, Session, User};
use crate::secret::{random_token, sha256_hex};

/// The session cookie's name over plain HTTP.
pub const COOKIE: &str = "clubdeploy_session";

/// The session cookie's name: behind TLS (`cookie_secure`) it carries the `__Host-` prefix,
/// so browsers accept it only `Secure`, for this host and path `/`.
pub fn cookie_name(secure: bool) -> &'static str {
    if secure {
        "__Host-clubdeploy_session"
    } else {
        COOKIE
    }
}

/// A new session: the token for the cookie and the CSRF token for forms.
pub struct Started {
    pub token: String,
    pub csrf: String,
}

/// Starts a session for `user_id` (always a new token: no session fixation).
pub fn start(conn: &mut Conn, user_id: i32, now: NaiveDateTime) -> anyhow::Result<Started> {
    let token = random_token();
    let csrf = random_token();
    users::insert_session(conn, &sha256_hex(&token), user_id, &csrf, now)?;
    Ok(Started { token, csrf })
}

/// Whether a session may still be used: not idle too long, not too old, its user enabled.
fn is_live(session: &Session, user: &User, now: NaiveDateTime, timeouts: SessionTimeouts) -> bool {
    let idle = now - session.last_seen_at > Duration::seconds(timeouts.idle_secs as i64);
    let too_old = now - session.created_at > Duration::seconds(timeouts.absolute_secs as i64);
    !(idle || too_old || user.disabled)
}

/// Whether session `id` still exists and may be used, without marking it used (for a live
/// stream, which must end when its session does).
pub fn still_live(
    conn: &mut Conn,
    id: i32,
    now: NaiveDateTime,
    timeouts: SessionTimeouts,
) -> anyhow::Result<bool> {
    Ok(users::session_by_id(conn, id)?
        .is_some_and(|(session, user)| is_live(&session, &user, now, timeouts)))
}

/// Ends the session whose cookie token is `token`, if there is one.
pub fn end_by_token(conn: &mut Conn, token: &str) -> anyhow::Result<()> {
    if let Some((session, _)) = users::session(conn, &sha256_hex(token))? {
        users::delete_session(conn, session.id)?;
    }
    Ok(())
}

/// The session and user behind a cookie token, if the session exists, has not timed out, and
/// its user is not disabled; an expired session is deleted. Marks it as used now.
pub fn authenticate(
    conn: &mut Conn,
    token: &str,
    now: NaiveDateTime,
    timeouts: SessionTimeouts,
) -> anyhow::Result<Option<(Session, User)>> {
    let Some((session, user)) = users::session(conn, &sha256_hex(token))? else {
        return Ok(None);
    };
    if !is_live(&session, &user, now, timeouts) {
        users::delete_session(conn, session.id)?;
        return Ok(None);
    }
    // Recording every request would make each page view a database write; a quarter of the
    // idle timeout (at most a minute) is precise enough.
    let precision = Duration::seconds((timeouts.idle_secs / 4).min(60) as i64);
    if now - session.last_seen_at >= precision {
        users::touch_session(conn, session.id, now)?;
    }
    Ok(Some((session, user)))
}
