//! `AppError`: every way a request can fail, each with its HTTP status and a message fit for
//! staff. Internal errors are logged and shown only as "something went wrong".

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use askama::Template;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Not signed in (or the session ended): go to the sign-in page, then back to `next`.
    #[error("please sign in")]
    LoginRequired { next: String },
    /// The member of staff must set up a sign-in code first (`[web] require_totp_for`): a
    /// page goes to their account page.
    #[error("set up a sign-in code on your account page first")]
    CodeRequired,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    /// The request conflicts with what exists (a duplicate, the last admin).
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooManyRequests(String),
    /// The server is too busy to take this request now; try again after `retry_after_secs`.
    #[error("{message}")]
    Busy {
        message: String,
        retry_after_secs: u64,
    },
    #[error("something went wrong on the server")]
    Internal(#[from] anyhow::Error),
}

impl AppError {
    /// The standard refusal for a role that may not do something.
    pub fn not_allowed(what: &str) -> AppError {
        AppError::Forbidden(format!("Your role does not allow you to {what}."))
    }
}

impl From<crate::domain::InvalidInput> for AppError {
    fn from(e: crate::domain::InvalidInput) -> Self {
        AppError::BadRequest(e.0)
    }
}

impl From<diesel::result::Error> for AppError {
    fn from(e: diesel::result::Error) -> Self {
        AppError::Internal(e.into())
    }
}

impl From<crate::auth::staff::StaffError> for AppError {
    fn from(e: crate::auth::staff::StaffError) -> Self {
        use crate::auth::staff::StaffError;
        match e {
            StaffError::NotFound(name) => AppError::NotFound(format!("There is no user {name}.")),
            StaffError::Conflict(why) => AppError::Conflict(why),
            StaffError::Internal(e) => AppError::Internal(e),
        }
    }
}

impl From<actix_web::error::BlockingError> for AppError {
    fn from(e: actix_web::error::BlockingError) -> Self {
        AppError::Internal(anyhow::anyhow!("a blocking task failed: {e}"))
    }
}

/// The error page, in the site's layout.
#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    status: u16,
    title: &'a str,
    message: String,
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            AppError::LoginRequired { .. } | AppError::CodeRequired => StatusCode::SEE_OTHER,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            AppError::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let AppError::LoginRequired { next } = self {
            let location = format!("/login?next={}", urlencode(next));
            return HttpResponse::SeeOther()
                .insert_header(("Location", location))
                .finish();
        }
        if let AppError::CodeRequired = self {
            return HttpResponse::SeeOther()
                .insert_header(("Location", "/account"))
                .finish();
        }
        if let AppError::Internal(e) = self {
            eprintln!("internal error: {e:#}");
        }
        let status = self.status_code();
        let title = match status {
            StatusCode::FORBIDDEN => "Not allowed",
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::BAD_REQUEST | StatusCode::CONFLICT => "That did not work",
            StatusCode::TOO_MANY_REQUESTS => "Too many attempts",
            StatusCode::SERVICE_UNAVAILABLE => "Busy",
            _ => "Something went wrong",
        };
        let message = match self {
            AppError::Internal(_) => {
                "Something went wrong on the server. Nothing was changed by this request; \
                 try again, and tell an administrator if it keeps happening."
                    .to_owned()
            }
            other => other.to_string(),
        };
        let page = ErrorPage {
            status: status.as_u16(),
            title,
            message,
        };
        let mut response = HttpResponse::build(status);
        if let AppError::Busy {
            retry_after_secs, ..
        } = self
        {
            response.insert_header(("Retry-After", retry_after_secs.to_string()));
        }
        response
            .content_type("text/html; charset=utf-8")
            .body(page.render().unwrap_or_else(|_| title.to_owned()))
    }
}

/// Percent-encodes a query value.
pub fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
