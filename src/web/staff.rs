//! Staff management (admins only): add, change role and clubs, disable, reset password.

use actix_web::{HttpResponse, web};
use askama::Template;
use askama_web::WebTemplate;
use serde::Deserialize;

use super::ui::see_other;
use super::{Admin, AppState, CsrfForm, Nav, NoFields};
use crate::auth::password::{self, PasswordHash};
use crate::auth::staff::{self as staff_ops, Actor};
use crate::db::users::{self, User};
use crate::domain::{ClubScope, NewPassword, Role, UserName};
use crate::web::error::AppError;

#[derive(Template, WebTemplate)]
#[template(path = "staff.html")]
pub struct StaffPage {
    nav: Nav,
    users: Vec<User>,
    roles: Vec<&'static str>,
    /// Each role with what it may do.
    explained: Vec<(&'static str, &'static str)>,
}

/// `GET /staff`.
pub async fn page(staff: Admin, state: web::Data<AppState>) -> Result<StaffPage, AppError> {
    let users = state.db(|_, conn| Ok(users::all(conn)?)).await?;
    Ok(StaffPage {
        nav: staff.nav("staff"),
        users,
        roles: Role::ALL.iter().map(|r| r.as_str()).collect(),
        explained: Role::ALL
            .iter()
            .map(|r| (r.as_str(), r.explained()))
            .collect(),
    })
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct UserForm {
    name: String,
    role: String,
    clubs: String,
    password: String,
}

/// Runs `change` as this admin (the extractor checked the CSRF token and the role). A refusal
/// keeps its status (400 bad input, 404 no such user, 409 the last admin); anything else is
/// a logged 500.
async fn admin_change<F>(
    staff: &Admin,
    state: &web::Data<AppState>,
    change: F,
) -> Result<HttpResponse, AppError>
where
    F: FnOnce(&mut crate::db::Conn, Actor<'_>) -> Result<(), AppError> + Send + 'static,
{
    let (name, address) = (staff.user.name.clone(), staff.address.clone());
    state
        .db(move |_, conn| {
            let actor = Actor {
                name: &name,
                address: Some(&address),
            };
            Ok(change(conn, actor)?)
        })
        .await?;
    Ok(see_other("/staff"))
}

/// Hashes a new password off the async threads, with no database connection held.
async fn hash_new(password: &str) -> Result<PasswordHash, AppError> {
    let password = NewPassword::parse(password)?;
    web::block(move || password::hash(&password))
        .await?
        .map_err(AppError::Internal)
}

/// `POST /staff`: adds a member of staff.
pub async fn add(
    CsrfForm {
        staff,
        form: posted,
        ..
    }: CsrfForm<UserForm, Admin>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    let name = UserName::parse(posted.name.trim())?;
    let role = Role::parse(&posted.role)?;
    let scope = ClubScope::parse(&posted.clubs)?;
    let hash = hash_new(&posted.password).await?;
    admin_change(&staff, &state, move |conn, actor| {
        staff_ops::add(conn, actor, &name, role, &scope, &hash)?;
        Ok(())
    })
    .await
}

/// `POST /staff/{name}/role`: changes role and club list.
pub async fn set_role(
    CsrfForm {
        staff,
        form: posted,
        ..
    }: CsrfForm<UserForm, Admin>,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let name = name.into_inner();
    admin_change(&staff, &state, move |conn, actor| {
        let role = Role::parse(&posted.role)?;
        let scope = ClubScope::parse(&posted.clubs)?;
        Ok(staff_ops::set_role(conn, actor, &name, role, &scope)?)
    })
    .await
}

/// `POST /staff/{name}/disable`: disables a user and ends their sessions.
pub async fn disable(
    CsrfForm { staff, .. }: CsrfForm<NoFields, Admin>,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let name = name.into_inner();
    admin_change(&staff, &state, move |conn, actor| {
        Ok(staff_ops::set_disabled(conn, actor, &name, true)?)
    })
    .await
}

/// `GET /staff/{name}/disable` (admins): asks first.
pub async fn disable_confirm(
    staff: Admin,
    name: web::Path<String>,
) -> Result<super::ui::ConfirmPage, AppError> {
    let name = crate::domain::UserName::parse(&name)?;
    Ok(super::ui::ConfirmPage::ask(
        staff.nav("staff"),
        format!("Disable {name}?"),
        format!(
            "{name} is signed out everywhere at once, can no longer sign in, and every job \
             {name} has waiting is cancelled. Enable them again at any time."
        ),
        format!("/staff/{name}/disable"),
        format!("Yes, disable {name}"),
        "/staff".into(),
    ))
}

/// `POST /staff/{name}/enable`.
pub async fn enable(
    CsrfForm { staff, .. }: CsrfForm<NoFields, Admin>,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let name = name.into_inner();
    admin_change(&staff, &state, move |conn, actor| {
        Ok(staff_ops::set_disabled(conn, actor, &name, false)?)
    })
    .await
}

/// `POST /staff/{name}/password`: sets a new password (ends the user's sessions).
pub async fn reset_password(
    CsrfForm {
        staff,
        form: posted,
        ..
    }: CsrfForm<UserForm, Admin>,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let hash = hash_new(&posted.password).await?;
    let name = name.into_inner();
    admin_change(&staff, &state, move |conn, actor| {
        Ok(staff_ops::set_password(conn, actor, &name, &hash)?)
    })
    .await
}
