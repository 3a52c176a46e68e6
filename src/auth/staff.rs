//! Staff changes and sign-in, each audited, shared by the command line and the panel.

use anyhow::{Context, bail};
use chrono::{Duration, NaiveDateTime};
use diesel::SqliteConnection;

use super::password;
use super::session::{self, Started};
use crate::db::users::{self, NewUser, User};
use crate::db::{self, audit};
use crate::domain::{ClubScope, NewPassword, Role, UserName};

/// Failed sign-ins allowed per account within [`THROTTLE_WINDOW_MINUTES`].
pub const MAX_FAILURES_PER_ACCOUNT: i64 = 5;
/// Failed sign-ins allowed per address within [`THROTTLE_WINDOW_MINUTES`].
pub const MAX_FAILURES_PER_ADDRESS: i64 = 20;
/// The throttling window.
pub const THROTTLE_WINDOW_MINUTES: i64 = 15;

/// Who is making a change, for the audit log.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    pub name: &'a str,
    pub address: Option<&'a str>,
}

fn audit_user(
    conn: &mut SqliteConnection,
    actor: Actor<'_>,
    action: &str,
    user: &str,
    details: &str,
) -> anyhow::Result<()> {
    let entry = audit::Entry::new(actor.name, action, "user", user, details);
    audit::record(
        conn,
        &audit::Entry {
            address: actor.address,
            ..entry
        },
    )
    .context("cannot write the audit log")
}

/// Adds a member of staff.
pub fn add(
    conn: &mut SqliteConnection,
    actor: Actor<'_>,
    name: &UserName,
    role: Role,
    scope: &ClubScope,
    password: &NewPassword,
) -> anyhow::Result<User> {
    let hash = password::hash(password)?;
    let clubs = scope.to_stored();
    let user = users::insert(
        conn,
        &NewUser {
            name: name.as_str(),
            password_hash: &hash,
            role: role.as_str(),
            clubs: clubs.as_deref(),
            disabled: false,
            created_at: db::now(),
        },
    )?
    .with_context(|| format!("there is already a user named {name}"))?;
    let details = format!("added as {role}{}", scope_words(scope));
    audit_user(conn, actor, "user.added", name.as_str(), &details)?;
    Ok(user)
}

fn scope_words(scope: &ClubScope) -> String {
    match scope.to_stored() {
        None => String::new(),
        Some(list) => format!(" limited to clubs {list}"),
    }
}

fn existing(conn: &mut SqliteConnection, name: &str) -> anyhow::Result<User> {
    users::by_name(conn, name)?.with_context(|| format!("there is no user named {name}"))
}

/// Changes a user's role and club list (never demoting the last enabled admin).
pub fn set_role(
    conn: &mut SqliteConnection,
    actor: Actor<'_>,
    name: &str,
    role: Role,
    scope: &ClubScope,
) -> anyhow::Result<()> {
    let user = existing(conn, name)?;
    if role != Role::Admin {
        keep_an_admin(conn, name)?;
    }
    users::set_role(conn, user.id, role.as_str(), scope.to_stored().as_deref())?;
    let details = format!("role set to {role}{}", scope_words(scope));
    audit_user(conn, actor, "user.changed", name, &details)
}

/// Sets a new password and ends the user's sessions.
pub fn set_password(
    conn: &mut SqliteConnection,
    actor: Actor<'_>,
    name: &str,
    password: &NewPassword,
) -> anyhow::Result<()> {
    let user = existing(conn, name)?;
    users::set_password(conn, user.id, &password::hash(password)?)?;
    audit_user(
        conn,
        actor,
        "user.password_set",
        name,
        "password changed; sessions ended",
    )
}

/// Disables or re-enables a user; disabling ends their sessions at once (never the last
/// enabled admin).
pub fn set_disabled(
    conn: &mut SqliteConnection,
    actor: Actor<'_>,
    name: &str,
    disabled: bool,
) -> anyhow::Result<()> {
    let user = existing(conn, name)?;
    if disabled {
        keep_an_admin(conn, name)?;
    }
    users::set_disabled(conn, user.id, disabled)?;
    let (action, details) = if disabled {
        ("user.disabled", "disabled; sessions ended")
    } else {
        ("user.enabled", "enabled again")
    };
    audit_user(conn, actor, action, name, details)
}

/// Why a sign-in was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error(
        "too many failed sign-in attempts; wait {THROTTLE_WINDOW_MINUTES} minutes and try again"
    )]
    Throttled,
    #[error("wrong user name or password")]
    Invalid,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Checks a sign-in, throttled per account and per address, audits it either way, and on
/// success starts a new session.
pub fn login(
    conn: &mut SqliteConnection,
    name: &str,
    password: &str,
    address: &str,
    now: NaiveDateTime,
) -> Result<(User, Started), LoginError> {
    let since = now - Duration::minutes(THROTTLE_WINDOW_MINUTES);
    let (by_account, by_address) =
        users::failures_since(conn, name, address, since).map_err(anyhow::Error::from)?;
    let actor = Actor {
        name,
        address: Some(address),
    };
    if by_account >= MAX_FAILURES_PER_ACCOUNT || by_address >= MAX_FAILURES_PER_ADDRESS {
        users::record_attempt(conn, name, address, false, now).map_err(anyhow::Error::from)?;
        audit_user(
            conn,
            actor,
            "login.throttled",
            name,
            "refused: too many failed attempts",
        )?;
        return Err(LoginError::Throttled);
    }
    let user = users::by_name(conn, name).map_err(anyhow::Error::from)?;
    // Verify against a decoy hash when there is no such user, so timing does not tell.
    let stored = user
        .as_ref()
        .map_or_else(|| decoy_hash(), |u| u.password_hash.as_str());
    let matches = password::verify(password, stored);
    let user = match user {
        Some(user) if matches && !user.disabled => user,
        _ => {
            users::record_attempt(conn, name, address, false, now).map_err(anyhow::Error::from)?;
            audit_user(
                conn,
                actor,
                "login.failed",
                name,
                "wrong user name or password",
            )?;
            return Err(LoginError::Invalid);
        }
    };
    users::record_attempt(conn, name, address, true, now).map_err(anyhow::Error::from)?;
    let started = session::start(conn, user.id, now)?;
    audit_user(conn, actor, "login.succeeded", name, "signed in")?;
    Ok((user, started))
}

/// Ends a session and audits it.
pub fn logout(
    conn: &mut SqliteConnection,
    actor: Actor<'_>,
    session_id: i32,
) -> anyhow::Result<()> {
    users::delete_session(conn, session_id)?;
    audit_user(conn, actor, "logout", actor.name, "signed out")
}

/// An argon2id hash of a random password nobody knows, made once per process.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        let secret = NewPassword::parse(&super::random_token()).expect("64 characters");
        password::hash(&secret).unwrap_or_default()
    })
}

/// Parses a stored role, refusing what is not one.
pub fn role_of(user: &User) -> anyhow::Result<Role> {
    Role::parse(&user.role).map_err(|e| anyhow::anyhow!("user {}: {e}", user.name))
}

/// Parses a stored club list.
pub fn scope_of(user: &User) -> anyhow::Result<ClubScope> {
    ClubScope::parse(user.clubs.as_deref().unwrap_or(""))
        .map_err(|e| anyhow::anyhow!("user {}: {e}", user.name))
}

/// Refuses a change to `changing` (demotion, disabling) that would leave no enabled admin.
fn keep_an_admin(conn: &mut SqliteConnection, changing: &str) -> anyhow::Result<()> {
    let users = users::all(conn)?;
    let enabled_admin = |u: &&User| u.role == "admin" && !u.disabled;
    let is_admin = users
        .iter()
        .filter(enabled_admin)
        .any(|u| u.name == changing);
    let others = users
        .iter()
        .filter(enabled_admin)
        .filter(|u| u.name != changing)
        .count();
    if is_admin && others == 0 {
        bail!("{changing} is the only enabled admin; add another admin first");
    }
    Ok(())
}
