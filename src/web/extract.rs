//! Extractors that make a handler's checks before it runs: who is asking ([`Staff`],
//! [`Admin`], [`Deployer`]) and, for a posted form, that it came from this panel's page
//! ([`CsrfForm`]). A handler that takes one of these cannot skip the check: the CSRF token
//! is checked first (a stale or forged form answers 403 whatever it asks), then the role,
//! then the form's fields are read.

use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;

use actix_web::{FromRequest, HttpRequest, web};
use serde::de::DeserializeOwned;

use super::auth::Staff;
use super::form;
use crate::domain::Role;
use crate::web::error::AppError;

/// The least role an extractor lets through, and the type that proves it was checked.
pub trait Needs: Sized {
    const ROLE: Role;
    /// `staff`, whose role was checked against [`Needs::ROLE`].
    fn checked(staff: Staff) -> Self;
}

impl Needs for Staff {
    const ROLE: Role = Role::Viewer;
    fn checked(staff: Staff) -> Self {
        staff
    }
}

/// A signed-in administrator.
pub struct Admin(pub Staff);

impl Needs for Admin {
    const ROLE: Role = Role::Admin;
    fn checked(staff: Staff) -> Self {
        Admin(staff)
    }
}

/// A signed-in deployer or administrator. Which clubs they may change is still asked club
/// by club ([`Staff::may_change`]).
pub struct Deployer(pub Staff);

impl Needs for Deployer {
    const ROLE: Role = Role::Deployer;
    fn checked(staff: Staff) -> Self {
        Deployer(staff)
    }
}

/// Refuses `staff` unless their role is at least `needed`, saying who may.
pub fn allow(staff: &Staff, needed: Role) -> Result<(), AppError> {
    if staff.role >= needed {
        return Ok(());
    }
    let who = match needed {
        Role::Admin => "administrators",
        Role::Deployer => "deployers and administrators",
        Role::Viewer => return Ok(()),
    };
    Err(AppError::Forbidden(format!(
        "Only {who} may do this; you are signed in as a {}.",
        staff.role.as_str()
    )))
}

type Extracted<T> = Pin<Box<dyn Future<Output = Result<T, actix_web::Error>>>>;

/// The signed-in user, refused unless their role is at least `needed`.
fn staff_with(
    req: &HttpRequest,
    payload: &mut actix_web::dev::Payload,
    needed: Role,
) -> Extracted<Staff> {
    let staff = Staff::from_request(req, payload);
    Box::pin(async move {
        let staff = staff.await?;
        allow(&staff, needed)?;
        Ok(staff)
    })
}

macro_rules! role_extractor {
    ($name:ident) => {
        impl FromRequest for $name {
            type Error = actix_web::Error;
            type Future = Extracted<$name>;

            fn from_request(
                req: &HttpRequest,
                payload: &mut actix_web::dev::Payload,
            ) -> Self::Future {
                let staff = staff_with(req, payload, <$name as Needs>::ROLE);
                Box::pin(async move { Ok(<$name as Needs>::checked(staff.await?)) })
            }
        }

        impl Deref for $name {
            type Target = Staff;

            fn deref(&self) -> &Staff {
                &self.0
            }
        }
    };
}

role_extractor!(Admin);
role_extractor!(Deployer);

/// A form with no fields of its own (sign out, cancel, a confirmation).
#[derive(serde::Deserialize, Default)]
pub struct NoFields {}

/// The two tokens every form of the panel carries.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct Tokens {
    csrf: String,
    once: String,
}

/// A form posted by a signed-in user of at least role `R` ([`Staff`]: anyone signed in,
/// [`Deployer`], [`Admin`]) whose CSRF token is their session's, read as `T` (repeated
/// fields included; missing ones take their defaults). `staff` is an `R`, the proof of the
/// role.
pub struct CsrfForm<T = NoFields, R: Needs = Staff> {
    pub staff: R,
    pub form: T,
    /// The one-time token of a form that queues a job (see `queue::queue`); empty if none.
    pub once: String,
}

impl<T: DeserializeOwned + 'static, R: Needs + 'static> FromRequest for CsrfForm<T, R> {
    type Error = actix_web::Error;
    type Future = Extracted<CsrfForm<T, R>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let staff = Staff::from_request(req, payload);
        let body = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            let staff = staff.await?;
            let body = body.await?;
            let tokens: Tokens = form(&body)?;
            staff.check_csrf(&tokens.csrf)?;
            allow(&staff, R::ROLE)?;
            Ok(CsrfForm {
                form: form(&body)?,
                staff: R::checked(staff),
                once: tokens.once,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::users::User;
    use crate::domain::ClubScope;

    fn staff(role: Role) -> Staff {
        Staff {
            user: User {
                id: 1,
                name: "maria".into(),
                password_hash: String::new(),
                role,
                disabled: false,
                created_at: chrono::NaiveDateTime::default(),
                clubs: None,
                totp_secret: None,
                totp_step: None,
            },
            role,
            scope: ClubScope::All,
            session_id: 1,
            csrf: "t".into(),
            address: "127.0.0.1".into(),
            flash: None,
        }
    }

    #[test]
    fn each_role_is_let_through_only_where_its_rank_reaches() {
        for (who, needed, allowed) in [
            (Role::Viewer, Role::Viewer, true),
            (Role::Viewer, Role::Deployer, false),
            (Role::Viewer, Role::Admin, false),
            (Role::Deployer, Role::Deployer, true),
            (Role::Deployer, Role::Admin, false),
            (Role::Admin, Role::Admin, true),
            (Role::Admin, Role::Deployer, true),
        ] {
            let answer = allow(&staff(who), needed);
            assert_eq!(answer.is_ok(), allowed, "{who:?} for {needed:?}");
            if let Err(AppError::Forbidden(why)) = answer {
                assert!(
                    why.contains(&format!("signed in as a {}", who.as_str())),
                    "{why}"
                );
            }
        }
    }
}
