//! Each member of staff's own account: a new password, and signing out their other
//! sessions (a phone left signed in, a shared computer).

use actix_web::{HttpResponse, web};
use askama::Template;
use askama_web::WebTemplate;
use serde::Deserialize;

use super::ui::see_other;
use super::{AppState, CsrfForm, Nav, NoFields, Staff};
use crate::auth::staff::{self as staff_ops, Actor};
use crate::auth::{password, totp};
use crate::domain::NewPassword;
use crate::web::error::AppError;

#[derive(Template, WebTemplate)]
#[template(path = "account.html")]
pub struct AccountPage {
    nav: Nav,
    /// Sessions of this user besides the one in use.
    others: i64,
    /// Whether they sign in with a code too.
    code_on: bool,
    /// Whether their role must (`[web] require_totp_for`).
    code_required: bool,
    /// A new secret to set up, and the address an authenticator app reads it from.
    new_secret: String,
    app_address: String,
}

/// `GET /account`.
pub async fn page(staff: Staff, state: web::Data<AppState>) -> Result<AccountPage, AppError> {
    let (user_id, session_id) = (staff.user.id, staff.session_id);
    let others = state
        .db(move |_, conn| Ok(crate::db::users::other_sessions(conn, user_id, session_id)?))
        .await?;
    let new_secret = totp::new_secret();
    Ok(AccountPage {
        app_address: totp::app_address(&new_secret, &staff.user.name),
        new_secret,
        code_on: staff.user.totp_secret.is_some(),
        code_required: state.settings.web.requires_code(staff.user.role),
        others,
        nav: staff.nav("account"),
    })
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct CodeForm {
    secret: String,
    code: String,
}

/// `POST /account/code`: sets up a sign-in code, once the app shows a code that matches the
/// secret (so a typo in the secret locks nobody out).
pub async fn set_up_code(
    CsrfForm {
        staff,
        form: posted,
        ..
    }: CsrfForm<CodeForm>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    if !totp::is_secret(&posted.secret) {
        return Err(AppError::BadRequest(
            "That secret is not one this page made; reload the page and start again. Nothing \
             was changed."
                .into(),
        ));
    }
    let step =
        totp::accepted_step(&posted.secret, &posted.code, None, totp::now()).ok_or_else(|| {
            AppError::BadRequest(
                "That code does not match the secret: type the code the app shows now (and \
                 check the phone's clock). Nothing was changed."
                    .into(),
            )
        })?;
    let told = "Your sign-in code is set up: sign in with it from now on.";
    set_own_code(&staff, &state, Some((posted.secret, step)), told).await
}

/// Sets up (or, with `None`, removes) the member of staff's own sign-in code, then shows
/// their account page with `told`.
async fn set_own_code(
    staff: &Staff,
    state: &web::Data<AppState>,
    code: Option<(String, i64)>,
    told: &str,
) -> Result<HttpResponse, AppError> {
    own_change(staff, state, move |conn, actor, _, _| {
        let code = code.as_ref().map(|(secret, step)| (secret.as_str(), *step));
        staff_ops::set_code(conn, actor, actor.name, code)?;
        Ok(0)
    })
    .await?;
    staff.tell(state, told.to_owned()).await;
    Ok(see_other("/account"))
}

/// `POST /account/code/remove`: removes the sign-in code, proven with a current code; not
/// for a role that must have one.
pub async fn remove_code(
    CsrfForm {
        staff,
        form: posted,
        ..
    }: CsrfForm<CodeForm>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    if state.settings.web.requires_code(staff.user.role) {
        return Err(AppError::Forbidden(format!(
            "Your role ({}) must sign in with a code; it stays. Nothing was changed.",
            staff.user.role
        )));
    }
    let Some(secret) = staff.user.totp_secret.clone() else {
        return Err(AppError::Conflict(
            "You have no sign-in code to remove.".into(),
        ));
    };
    if totp::accepted_step(&secret, &posted.code, staff.user.totp_step, totp::now()).is_none() {
        return Err(AppError::Forbidden(
            "That code is not right (or was used already); nothing was changed.".into(),
        ));
    }
    set_own_code(&staff, &state, None, "Your sign-in code is removed.").await
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct PasswordForm {
    current: String,
    password: String,
    repeat: String,
}

/// `POST /account/password`: the current password, then the new one twice. The checks run
/// before anything is written; a wrong current password changes nothing.
pub async fn change_password(
    CsrfForm {
        staff,
        form: posted,
        ..
    }: CsrfForm<PasswordForm>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    if posted.password != posted.repeat {
        return Err(AppError::BadRequest(
            "The new password and its repetition differ; nothing was changed.".into(),
        ));
    }
    let new = NewPassword::parse(&posted.password).map_err(|e| {
        AppError::BadRequest(format!("The new password: {}; nothing was changed.", e.0))
    })?;
    if posted.current == posted.password {
        return Err(AppError::BadRequest(
            "The new password is the current one; choose another. Nothing was changed.".into(),
        ));
    }
    // The password check shares the sign-in's bounded queue, with no connection held.
    let sender = crate::domain::sign_in_key(&staff.address);
    let place = state
        .sign_ins
        .admit(&sender, &staff.user.name)
        .map_err(|refused| AppError::TooManyRequests(refused.message().into()))?;
    if !place
        .verify(posted.current, staff.user.password_hash.clone())
        .await
    {
        return Err(AppError::Forbidden(
            "The current password is not right; nothing was changed.".into(),
        ));
    }
    drop(place);
    let hash = web::block(move || password::hash(&new))
        .await?
        .map_err(AppError::Internal)?;
    let ended = own_change(&staff, &state, move |conn, actor, user, session| {
        staff_ops::change_own_password(conn, actor, user, session, &hash)
    })
    .await?;
    staff
        .tell(
            &state,
            format!(
                "Your password was changed; {} signed out.",
                signed_out(ended)
            ),
        )
        .await;
    Ok(see_other("/account"))
}

/// `POST /account/sign-out-others`: ends this user's other sessions.
pub async fn sign_out_others(
    CsrfForm { staff, .. }: CsrfForm<NoFields>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    let ended = own_change(&staff, &state, staff_ops::end_other_sessions).await?;
    staff
        .tell(&state, format!("{} signed out.", signed_out(ended)))
        .await;
    Ok(see_other("/account"))
}

/// Runs `change` on `staff`'s own account, given the audit log's actor, their user id and
/// the session in use, with a pooled connection: how many other sessions it ended.
async fn own_change<F>(
    staff: &Staff,
    state: &web::Data<AppState>,
    change: F,
) -> Result<usize, AppError>
where
    F: FnOnce(&mut crate::db::Conn, Actor<'_>, i32, i32) -> anyhow::Result<usize> + Send + 'static,
{
    let (name, address) = (staff.user.name.clone(), staff.address.clone());
    let (user_id, session_id) = (staff.user.id, staff.session_id);
    state
        .db(move |_, conn| {
            let actor = Actor {
                name: &name,
                address: Some(&address),
            };
            change(conn, actor, user_id, session_id)
        })
        .await
}

/// "no other session was", "1 other session was", "3 other sessions were".
fn signed_out(n: usize) -> String {
    match n {
        0 => "no other session was".into(),
        1 => "1 other session was".into(),
        n => format!("{n} other sessions were"),
    }
}
