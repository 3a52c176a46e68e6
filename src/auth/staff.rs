//! Staff changes and sign-in, each audited, shared by the command line and the panel.

use anyhow::Context;
use chrono::{Duration, NaiveDateTime};

use super::password;
use super::session::{self, Started};
use crate::db::Conn;
use crate::db::users::{self, NewUser, User};
use crate::db::{self, audit};
use crate::domain::{ClubScope, NewPassword, Role, UserName};

/// Failed sign-ins for one account from one address that cost no wait; each one more
/// doubles the wait (1 s, 2 s, 4 s …) up to [`MAX_WAIT_SECS`].
pub const FREE_FAILURES_PER_ACCOUNT: i64 = 3;
/// Failed sign-ins from one address (any accounts) that cost no wait; then as above.
pub const FREE_FAILURES_PER_ADDRESS: i64 = 10;
/// The longest wait after failed sign-ins: the right password always works again at most
/// this long after the last failure that counted.
pub const MAX_WAIT_SECS: i64 = 60;
/// Failed sign-ins for one account over every address within the window that cost no
/// delay; past them each sign-in for it from an address without a recent success waits
/// [`slow_down`] before its password is checked (the right one still works: no lockout).
pub const FREE_FAILURES_ACROSS_ADDRESSES: i64 = 20;
/// The longest of those delays.
pub const MAX_SLOW_DOWN_SECS: u64 = 10;
/// Failed attempts older than this no longer count, and are deleted.
pub const ATTEMPT_WINDOW_MINUTES: i64 = 15;
/// Failed sign-ins audited one by one within [`ATTEMPT_WINDOW_MINUTES`], over every account
/// and address: beyond them a flood (spread over many addresses) is audited once, not a row
/// a guess, so it cannot fill the append-only audit log.
pub const AUDITED_FAILURES_PER_WINDOW: i64 = 100;

/// How a failed sign-in is audited when it is the `nth` failure (1-based) in the window over
/// every account and address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureAudit {
    /// Its own row (and the `login.throttled` rows it starts).
    EachOne,
    /// The one row saying that further failures are counted, not logged one by one.
    FloodBegins,
    /// None: the flood was audited.
    Counted,
}

/// See [`FailureAudit`].
pub fn failure_audit(nth: i64) -> FailureAudit {
    if nth <= AUDITED_FAILURES_PER_WINDOW {
        FailureAudit::EachOne
    } else if nth == AUDITED_FAILURES_PER_WINDOW + 1 {
        FailureAudit::FloodBegins
    } else {
        FailureAudit::Counted
    }
}

/// The audit log's name for a sign-in under a name that is no account (what was typed may
/// be a mistyped password, which no viewer should read).
pub const UNKNOWN_ACCOUNT: &str = "(no such user)";

/// Why a staff change was refused, for callers that answer differently to each.
#[derive(Debug, thiserror::Error)]
pub enum StaffError {
    /// There is no such user.
    #[error("there is no user named {0}")]
    NotFound(String),
    /// The change conflicts with what exists (a duplicate name, the last admin).
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<diesel::result::Error> for StaffError {
    fn from(e: diesel::result::Error) -> Self {
        StaffError::Internal(e.into())
    }
}

/// Who is making a change, for the audit log.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    pub name: &'a str,
    pub address: Option<&'a str>,
}

/// Appends a user's audit row; call inside an immediate transaction, with the change it
/// records.
fn audit_user(
    conn: &mut Conn,
    actor: Actor<'_>,
    action: &str,
    user: &str,
    details: &str,
) -> anyhow::Result<()> {
    let entry = audit::Entry::new(actor.name, action, "user", user, details);
    audit::append(
        conn,
        &audit::Entry {
            address: actor.address,
            ..entry
        },
    )
    .context("cannot write the audit log")
}

/// Adds a member of staff, and its audit row, in one transaction. The password is hashed
/// beforehand ([`password::hash`]), with no connection held.
pub fn add(
    conn: &mut Conn,
    actor: Actor<'_>,
    name: &UserName,
    role: Role,
    scope: &ClubScope,
    hash: &password::PasswordHash,
) -> Result<User, StaffError> {
    let clubs = scope.to_stored();
    conn.immediate_transaction(|conn| {
        let user = users::insert(
            conn,
            &NewUser {
                name: name.as_str(),
                password_hash: hash.as_str(),
                role,
                clubs: clubs.as_deref(),
                disabled: false,
                created_at: db::now(),
            },
        )?
        .ok_or_else(|| StaffError::Conflict(format!("there is already a user named {name}")))?;
        let details = format!("added as {role}{}", scope_words(scope));
        audit_user(conn, actor, "user.added", name.as_str(), &details)?;
        Ok(user)
    })
}

fn scope_words(scope: &ClubScope) -> String {
    match scope.to_stored() {
        None => String::new(),
        Some(list) => format!(" limited to clubs {list}"),
    }
}

fn existing(conn: &mut Conn, name: &str) -> Result<User, StaffError> {
    users::by_name(conn, name)?.ok_or_else(|| StaffError::NotFound(name.to_owned()))
}

/// Changes a user's role and club list (never demoting the last enabled admin); a change
/// cancels the jobs they have waiting, which were asked for under the old rights. The check,
/// the change and its audit rows happen in one transaction.
pub fn set_role(
    conn: &mut Conn,
    actor: Actor<'_>,
    name: &str,
    role: Role,
    scope: &ClubScope,
) -> Result<(), StaffError> {
    conn.immediate_transaction(|conn| {
        let user = existing(conn, name)?;
        if role != Role::Admin {
            keep_an_admin(conn, name)?;
        }
        let clubs = scope.to_stored();
        users::set_role(conn, user.id, role, clubs.as_deref())?;
        let details = format!("role set to {role}{}", scope_words(scope));
        audit_user(conn, actor, "user.changed", name, &details)?;
        if (user.role, user.clubs) != (role, clubs) {
            let why = format!("{name}'s role or clubs changed");
            crate::jobs::enqueue::cancel_all_of(conn, name, &why, actor.name, actor.address)?;
        }
        Ok(())
    })
}

/// Sets a new password (hashed beforehand, with no connection held) and ends the user's
/// sessions, with its audit row, in one transaction.
pub fn set_password(
    conn: &mut Conn,
    actor: Actor<'_>,
    name: &str,
    hash: &password::PasswordHash,
) -> Result<(), StaffError> {
    conn.immediate_transaction(|conn| {
        let user = existing(conn, name)?;
        users::set_password(conn, user.id, hash.as_str())?;
        Ok(audit_user(
            conn,
            actor,
            "user.password_set",
            name,
            "password changed; sessions ended",
        )?)
    })
}

/// A member of staff's own new password (its old one checked, and the new one hashed,
/// beforehand with no connection held): their other sessions end, the one they use stays.
/// One transaction with its audit row.
pub fn change_own_password(
    conn: &mut Conn,
    actor: Actor<'_>,
    user_id: i32,
    session_id: i32,
    hash: &password::PasswordHash,
) -> anyhow::Result<usize> {
    conn.immediate_transaction(|conn| {
        users::set_hash(conn, user_id, hash.as_str())?;
        let ended = users::end_other_sessions(conn, user_id, session_id)?;
        audit_user(
            conn,
            actor,
            "user.password_changed",
            actor.name,
            &format!("changed their own password; {ended} other sessions ended"),
        )?;
        Ok(ended)
    })
}

/// Ends a member of staff's sessions but the one they use; how many ended. With its audit
/// row.
pub fn end_other_sessions(
    conn: &mut Conn,
    actor: Actor<'_>,
    user_id: i32,
    session_id: i32,
) -> anyhow::Result<usize> {
    conn.immediate_transaction(|conn| {
        let ended = users::end_other_sessions(conn, user_id, session_id)?;
        audit_user(
            conn,
            actor,
            "user.sessions_ended",
            actor.name,
            &format!("signed out {ended} other sessions"),
        )?;
        Ok(ended)
    })
}

/// Disables or re-enables a user; disabling ends their sessions at once and cancels the jobs
/// they have waiting (never the last enabled admin). One transaction with its audit rows.
pub fn set_disabled(
    conn: &mut Conn,
    actor: Actor<'_>,
    name: &str,
    disabled: bool,
) -> Result<(), StaffError> {
    conn.immediate_transaction(|conn| {
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
        audit_user(conn, actor, action, name, details)?;
        if disabled {
            // Nothing they asked for runs after they were stopped.
            let why = format!("{name} was disabled");
            crate::jobs::enqueue::cancel_all_of(conn, name, &why, actor.name, actor.address)?;
        }
        Ok(())
    })
}

/// Sets up a member of staff's sign-in code (`Some((secret, step))`: the secret, and the
/// step of the code that proved it, which cannot sign in again) or removes it (`None`), with
/// its audit row, in one transaction.
pub fn set_code(
    conn: &mut Conn,
    actor: Actor<'_>,
    name: &str,
    code: Option<(&str, i64)>,
) -> Result<(), StaffError> {
    conn.immediate_transaction(|conn| {
        let user = existing(conn, name)?;
        users::set_totp(conn, user.id, code)?;
        let (action, details) = match code {
            Some(_) => ("user.code_set", "set up a sign-in code"),
            None => ("user.code_removed", "sign-in code removed"),
        };
        Ok(audit_user(conn, actor, action, name, details)?)
    })
}

/// Why a sign-in was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("too many failed sign-in attempts; wait {wait_secs} seconds and try again")]
    Throttled { wait_secs: i64 },
    #[error("wrong user name or password")]
    Invalid,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// How long after the last of `failures` failed attempts the next may be made.
fn wait_after(failures: &users::Failures, free: i64) -> Option<NaiveDateTime> {
    let last = failures.last?;
    if failures.count < free {
        return None;
    }
    let doublings = u32::try_from(failures.count - free)
        .unwrap_or(u32::MAX)
        .min(16);
    let secs = 1i64
        .checked_shl(doublings)
        .unwrap_or(MAX_WAIT_SECS)
        .min(MAX_WAIT_SECS);
    Some(last + Duration::seconds(secs))
}

/// How long a sign-in for an account with `failures` failed sign-ins (over every address,
/// within the window) waits before its password is checked: nothing up to
/// [`FREE_FAILURES_ACROSS_ADDRESSES`], then 1 s, 2 s, 4 s … up to [`MAX_SLOW_DOWN_SECS`]. The
/// sign-in gate lets one such sign-in per account through at a time, so a flood spread over
/// many addresses guesses at one account at most once per delay.
pub fn slow_down(failures: i64) -> Option<std::time::Duration> {
    let over = failures - FREE_FAILURES_ACROSS_ADDRESSES;
    if over < 0 {
        return None;
    }
    let doublings = u32::try_from(over).unwrap_or(u32::MAX).min(16);
    let secs = (1u64 << doublings).min(MAX_SLOW_DOWN_SECS);
    Some(std::time::Duration::from_secs(secs))
}

/// A sign-in under way: the attempt is recorded as failed until [`finish_login`] says
/// otherwise, so parallel guesses all count.
pub struct PendingLogin {
    attempt: i32,
    name: UserName,
    user: Option<User>,
    /// What the attempts are counted by (see [`crate::domain::sign_in_key`]).
    sender: String,
    /// How long to wait before checking the password, for a sender without a recent
    /// success (see [`slow_down`]).
    pub slow_down: Option<std::time::Duration>,
}

impl PendingLogin {
    /// The hash to check the password against (a decoy when there is no such user, so the
    /// time taken does not tell whether the account exists). Check it with no database
    /// connection held: argon2 is slow on purpose.
    pub fn stored_hash(&self) -> String {
        self.user
            .as_ref()
            .map_or_else(|| decoy_hash().to_owned(), |u| u.password_hash.clone())
    }
}

/// The first half of a sign-in, in one transaction: refuses a name that is no valid user name
/// and an attempt made while throttled (writing nothing for either), forgets attempts older
/// than the window, and records this attempt as failed until it is proven right. Throttling
/// is per account and sender, and per sender (`sender`: a [`crate::domain::sign_in_key`]):
/// a stranger's failures never lock the owner out from elsewhere; over every sender they
/// only slow the account's sign-ins down ([`slow_down`]).
pub fn begin_login(
    conn: &mut Conn,
    name: &str,
    sender: &str,
    now: NaiveDateTime,
) -> Result<PendingLogin, LoginError> {
    let name = UserName::parse(name).map_err(|_| LoginError::Invalid)?;
    conn.immediate_transaction(|conn| {
        users::forget_attempts_before(conn, now - Duration::minutes(ATTEMPT_WINDOW_MINUTES))?;
        let since = now - Duration::minutes(ATTEMPT_WINDOW_MINUTES);
        let counts = users::failures_since(conn, name.as_str(), sender, since)?;
        let until = [
            wait_after(&counts.pair, FREE_FAILURES_PER_ACCOUNT),
            wait_after(&counts.from_address, FREE_FAILURES_PER_ADDRESS),
        ]
        .into_iter()
        .flatten()
        .max();
        if let Some(until) = until.filter(|until| *until > now) {
            let wait_secs = (until - now).num_seconds().max(1);
            return Ok(Err(LoginError::Throttled { wait_secs }));
        }
        let attempt = users::record_failure(conn, name.as_str(), sender, now)?;
        let user = users::by_name(conn, name.as_str())?;
        Ok::<_, diesel::result::Error>(Ok(PendingLogin {
            attempt,
            name: name.clone(),
            user,
            sender: sender.to_owned(),
            slow_down: slow_down(counts.of_account.count),
        }))
    })
    .map_err(|e| LoginError::Internal(e.into()))?
}

/// The second half: `matches` says whether the password was right, and `code` is the
/// sign-in code, which an account with a code secret must also get right
/// ([`super::totp::accepted_step`]; a code works once). On success the attempt
/// no longer counts, the browser's `previous_session` ends and a new session starts; either way the sign-in is audited (a failed one
/// under the account's name only if the account exists), and the failure that starts a wait
/// is audited once as `login.throttled`.
pub fn finish_login(
    conn: &mut Conn,
    pending: PendingLogin,
    matches: bool,
    code: &str,
    previous_session: Option<&str>,
    address: &str,
    now: NaiveDateTime,
) -> Result<(User, Started), LoginError> {
    let name = pending.name.as_str();
    let actor = Actor {
        name,
        address: Some(address),
    };
    let unix_now = u64::try_from(now.and_utc().timestamp()).unwrap_or(0);
    let code_step = |user: &User| match &user.totp_secret {
        None => Some(None),
        Some(secret) => {
            super::totp::accepted_step(secret, code, user.totp_step, unix_now).map(Some)
        }
    };
    let proven = pending
        .user
        .as_ref()
        .filter(|user| matches && !user.disabled)
        .and_then(code_step);
    match (pending.user, proven) {
        (Some(user), Some(step)) => {
            let started = conn
                .immediate_transaction(|conn| {
                    if let Some(step) = step
                        && !users::use_totp_step(conn, user.id, step)?
                    {
                        return Ok(None);
                    }
                    users::mark_attempt_succeeded(conn, pending.attempt)?;
                    // The owner proved the password from here: earlier failures no longer
                    // slow this account and address down, and a wait that was on ends.
                    let failures = users::forget_failures_of(conn, name, &pending.sender)?;
                    if failures as i64 >= FREE_FAILURES_PER_ACCOUNT {
                        audit_user(
                            conn,
                            actor,
                            "login.throttle_ended",
                            name,
                            "the right password ended the wait for this account from this address",
                        )?;
                    }
                    // The browser's earlier session (any user's) ends with this sign-in.
                    if let Some(token) = previous_session {
                        session::end_by_token(conn, token)?;
                    }
                    let started = session::start(conn, user.id, now)?;
                    let how = if step.is_some() {
                        "signed in with a sign-in code"
                    } else {
                        "signed in"
                    };
                    audit_user(conn, actor, "login.succeeded", name, how)?;
                    Ok::<_, anyhow::Error>(Some(started))
                })
                .map_err(LoginError::Internal)?;
            // Another sign-in used the same code first.
            started
                .map(|started| (user, started))
                .ok_or(LoginError::Invalid)
        }
        (user, _) => {
            let shown = if user.is_some() {
                name
            } else {
                UNKNOWN_ACCOUNT
            };
            let actor = Actor {
                name: shown,
                ..actor
            };
            conn.immediate_transaction(|conn| {
                let since = now - Duration::minutes(ATTEMPT_WINDOW_MINUTES);
                match failure_audit(users::all_failures_since(conn, since)?) {
                    FailureAudit::EachOne => {}
                    FailureAudit::FloodBegins => {
                        return audit_user(
                            conn,
                            actor,
                            "login.flood",
                            shown,
                            &format!(
                                "over {AUDITED_FAILURES_PER_WINDOW} failed sign-ins within \
                                 {ATTEMPT_WINDOW_MINUTES} minutes: further ones are counted \
                                 (and slowed down), not logged one by one, until it calms down"
                            ),
                        );
                    }
                    FailureAudit::Counted => return Ok(()),
                }
                audit_user(
                    conn,
                    actor,
                    "login.failed",
                    shown,
                    "wrong user name or password",
                )?;
                let counts = users::failures_since(conn, name, &pending.sender, since)?;
                if counts.pair.count == FREE_FAILURES_PER_ACCOUNT {
                    audit_user(
                        conn,
                        actor,
                        "login.throttled",
                        shown,
                        "further sign-ins for this account from this address must wait",
                    )?;
                }
                if counts.from_address.count == FREE_FAILURES_PER_ADDRESS {
                    audit_user(
                        conn,
                        actor,
                        "login.throttled",
                        shown,
                        "further sign-ins from this address must wait",
                    )?;
                }
                if counts.of_account.count == FREE_FAILURES_ACROSS_ADDRESSES {
                    audit_user(
                        conn,
                        actor,
                        "login.account_slowed",
                        shown,
                        &format!(
                            "{FREE_FAILURES_ACROSS_ADDRESSES} failed sign-ins for this account \
                             within {ATTEMPT_WINDOW_MINUTES} minutes, over every address: \
                             sign-ins for it from addresses that have not signed in lately \
                             are checked one at a time, each after a delay of up to \
                             {MAX_SLOW_DOWN_SECS} s; the right password still works"
                        ),
                    )?;
                }
                Ok::<_, anyhow::Error>(())
            })?;
            Err(LoginError::Invalid)
        }
    }
}
/// Ends a session and audits it.
pub fn logout(conn: &mut Conn, actor: Actor<'_>, session_id: i32) -> anyhow::Result<()> {
    conn.immediate_transaction(|conn| {
        users::delete_session(conn, session_id)?;
        audit_user(conn, actor, "logout", actor.name, "signed out")
    })
}

/// An argon2id hash of a random password nobody knows, made once per process.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        let secret = NewPassword::parse(&crate::secret::random_token()).expect("64 characters");
        password::hash(&secret)
            .map(|h| h.as_str().to_owned())
            .unwrap_or_default()
    })
}

/// Parses a stored club list.
pub fn scope_of(user: &User) -> anyhow::Result<ClubScope> {
    ClubScope::parse(user.clubs.as_deref().unwrap_or(""))
        .map_err(|e| anyhow::anyhow!("user {}: {e}", user.name))
}

/// Refuses a change to `changing` (demotion, disabling) that would leave no enabled admin.
fn keep_an_admin(conn: &mut Conn, changing: &str) -> Result<(), StaffError> {
    let users = users::all(conn)?;
    let enabled_admin = |u: &&User| u.role == Role::Admin && !u.disabled;
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
        return Err(StaffError::Conflict(format!(
            "{changing} is the only enabled admin; add another admin first"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_flood_of_failures_is_audited_once_past_the_first_hundred() {
        use super::FailureAudit;
        let audits: Vec<FailureAudit> = [1, 100, 101, 102, 10_000]
            .into_iter()
            .map(super::failure_audit)
            .collect();
        assert_eq!(
            audits,
            [
                FailureAudit::EachOne,
                FailureAudit::EachOne,
                FailureAudit::FloodBegins,
                FailureAudit::Counted,
                FailureAudit::Counted
            ]
        );
    }

    use chrono::NaiveDateTime;

    use super::{FREE_FAILURES_PER_ACCOUNT, MAX_WAIT_SECS, wait_after};
    use crate::db::users::Failures;

    #[test]
    fn an_account_failing_from_everywhere_is_slowed_down_by_doubling_delays_up_to_a_cap() {
        use super::{FREE_FAILURES_ACROSS_ADDRESSES as FREE, MAX_SLOW_DOWN_SECS, slow_down};
        let secs = |n: i64| slow_down(n).map(|d| d.as_secs());
        assert_eq!(secs(0), None);
        assert_eq!(secs(FREE - 1), None);
        assert_eq!(secs(FREE), Some(1));
        assert_eq!(secs(FREE + 1), Some(2));
        assert_eq!(secs(FREE + 3), Some(8));
        assert_eq!(secs(FREE + 4), Some(MAX_SLOW_DOWN_SECS));
        assert_eq!(secs(i64::MAX), Some(MAX_SLOW_DOWN_SECS));
    }

    #[test]
    fn waits_double_with_each_failure_and_stop_at_a_minute() {
        let last = NaiveDateTime::default();
        let wait = |count: i64| {
            wait_after(
                &Failures {
                    count,
                    last: Some(last),
                },
                FREE_FAILURES_PER_ACCOUNT,
            )
            .map(|until| (until - last).num_seconds())
        };
        assert_eq!(wait(0), None);
        assert_eq!(wait(FREE_FAILURES_PER_ACCOUNT - 1), None);
        assert_eq!(wait(FREE_FAILURES_PER_ACCOUNT), Some(1));
        assert_eq!(wait(FREE_FAILURES_PER_ACCOUNT + 1), Some(2));
        assert_eq!(wait(FREE_FAILURES_PER_ACCOUNT + 5), Some(32));
        assert_eq!(wait(FREE_FAILURES_PER_ACCOUNT + 6), Some(MAX_WAIT_SECS));
        assert_eq!(wait(10_000), Some(MAX_WAIT_SECS));
    }
}
