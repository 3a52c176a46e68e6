//! Staff management (admins only): add, change role and clubs, disable, reset password.

use actix_web::{HttpResponse, web};
use askama::Template;
use askama_web::WebTemplate;
use serde::Deserialize;

use super::ui::see_other;
use super::{AppState, Nav, Staff, form};
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
}

/// `GET /staff`.
pub async fn page(staff: Staff, state: web::Data<AppState>) -> Result<StaffPage, AppError> {
    staff.require(Role::Admin, "manage staff")?;
    let users = state.db(|_, conn| Ok(users::all(conn)?)).await?;
    Ok(StaffPage {
        nav: staff.nav("staff"),
        users,
        roles: Role::ALL.iter().map(|r| r.as_str()).collect(),
    })
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct UserForm {
    csrf: String,
    name: String,
    role: String,
    clubs: String,
    password: String,
}

/// Checks the CSRF token and the admin role, then runs `change` as this admin. A refusal
/// keeps its status (400 bad input, 404 no such user, 409 the last admin); anything else is
/// a logged 500.
async fn admin_change<F>(
    staff: &Staff,
    state: &web::Data<AppState>,
    csrf: &str,
    change: F,
) -> Result<HttpResponse, AppError>
where
    F: FnOnce(&mut crate::db::Conn, Actor<'_>) -> Result<(), AppError> + Send + 'static,
{
    authorize(staff, csrf)?;
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

fn authorize(staff: &Staff, csrf: &str) -> Result<(), AppError> {
    staff.check_csrf(csrf)?;
    staff.require(Role::Admin, "manage staff")
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
    staff: Staff,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    let posted: UserForm = form(&body)?;
    authorize(&staff, &posted.csrf)?;
    let name = UserName::parse(posted.name.trim())?;
    let role = Role::parse(&posted.role)?;
    let scope = ClubScope::parse(&posted.clubs)?;
    let hash = hash_new(&posted.password).await?;
    admin_change(&staff, &state, &posted.csrf, move |conn, actor| {
        staff_ops::add(conn, actor, &name, role, &scope, &hash)?;
        Ok(())
    })
    .await
}

/// `POST /staff/{name}/role`: changes role and club list.
pub async fn set_role(
    staff: Staff,
    state: web::Data<AppState>,
    name: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    let posted: UserForm = form(&body)?;
    let csrf = posted.csrf.clone();
    let name = name.into_inner();
    admin_change(&staff, &state, &csrf, move |conn, actor| {
        let role = Role::parse(&posted.role)?;
        let scope = ClubScope::parse(&posted.clubs)?;
        Ok(staff_ops::set_role(conn, actor, &name, role, &scope)?)
    })
    .await
}

/// `POST /staff/{name}/disable`: disables a user and ends their sessions.
pub async fn disable(
    staff: Staff,
    state: web::Data<AppState>,
    name: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    let posted: UserForm = form(&body)?;
    let name = name.into_inner();
    admin_change(&staff, &state, &posted.csrf, move |conn, actor| {
        Ok(staff_ops::set_disabled(conn, actor, &name, true)?)
    })
    .await
}

/// `GET /staff/{name}/disable` (admins): asks first.
pub async fn disable_confirm(
    staff: Staff,
    name: web::Path<String>,
) -> Result<super::ui::ConfirmPage, AppError> {
    staff.require(Role::Admin, "disable staff")?;
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
    staff: Staff,
    state: web::Data<AppState>,
    name: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    let posted: UserForm = form(&body)?;
    let name = name.into_inner();
    admin_change(&staff, &state, &posted.csrf, move |conn, actor| {
        Ok(staff_ops::set_disabled(conn, actor, &name, false)?)
    })
    .await
}

/// `POST /staff/{name}/password`: sets a new password (ends the user's sessions).
pub async fn reset_password(
    staff: Staff,
    state: web::Data<AppState>,
    name: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    let posted: UserForm = form(&body)?;
    authorize(&staff, &posted.csrf)?;
    let hash = hash_new(&posted.password).await?;
    let name = name.into_inner();
    admin_change(&staff, &state, &posted.csrf, move |conn, actor| {
        Ok(staff_ops::set_password(conn, actor, &name, &hash)?)
    })
    .await
}
