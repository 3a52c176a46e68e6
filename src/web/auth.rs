//! Who is asking: the `Staff` extractor (session cookie → user, role, CSRF token), the
//! permission checks every handler calls, and the sign-in and sign-out pages.

use std::future::Future;
use std::pin::Pin;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use askama::Template;
use askama_web::WebTemplate;
use serde::Deserialize;

use super::{AppState, CsrfForm, form};
use crate::auth::gate::Refused;
use crate::auth::session;
use crate::auth::staff::{self as staff_ops, Actor, LoginError};
use crate::db::{self, users::User};
use crate::domain::{ClubScope, Role};
use crate::secret::{random_token, same_secret};
use crate::web::error::AppError;

/// The cookie that carries the sign-in form's CSRF token before any session exists.
const LOGIN_CSRF_COOKIE: &str = "clubdeploy_login";

/// A signed-in member of staff.
pub struct Staff {
    pub user: User,
    pub role: Role,
    pub scope: ClubScope,
    pub session_id: i32,
    pub csrf: String,
    pub address: String,
    /// The one-time message this page shows, if one was left.
    pub flash: Option<String>,
}

impl Staff {
    /// Leaves `message` for this session's next page ("Club Zermatt will move to v2.4.1:
    /// job #42"). Losing it is not worth failing the action over: it is said on stderr.
    pub async fn tell(&self, state: &AppState, message: String) {
        let session = self.session_id;
        let left = state
            .db(move |_, conn| Ok(crate::db::users::set_flash(conn, session, &message)?))
            .await;
        if let Err(e) = left {
            eprintln!("warning: cannot leave a message for the next page: {e}");
        }
    }
}

/// What the layout shows about the signed-in user.
pub struct Nav {
    pub user: String,
    pub role: &'static str,
    pub can_deploy: bool,
    pub is_admin: bool,
    pub csrf: String,
    pub active: &'static str,
    /// A fresh one-time token for a form on this page that queues a job.
    pub once: String,
    /// What the last action did, shown once.
    pub flash: Option<String>,
}

impl Staff {
    /// The layout's data for a page under `active` in the menu.
    pub fn nav(&self, active: &'static str) -> Nav {
        Nav {
            user: self.user.name.clone(),
            role: self.role.as_str(),
            can_deploy: self.role >= Role::Deployer,
            is_admin: self.role == Role::Admin,
            csrf: self.csrf.clone(),
            active,
            once: crate::secret::random_token(),
            flash: self.flash.clone(),
        }
    }

    /// Refuses a form whose CSRF token is missing or is not this session's.
    pub fn check_csrf(&self, token: &str) -> Result<(), AppError> {
        if same_secret(token, &self.csrf) {
            Ok(())
        } else {
            Err(AppError::Forbidden(
                "This form has expired or did not come from this panel. Go back, reload the \
                 page and try again."
                    .into(),
            ))
        }
    }

    /// Whether this user may deploy to or roll back `club`.
    pub fn may_change(&self, club: &str) -> bool {
        crate::domain::may_change(self.role, &self.scope, club)
    }

    /// Whether this user may deploy to every club at once.
    pub fn may_change_all(&self) -> bool {
        self.role == Role::Admin || (self.role == Role::Deployer && self.scope == ClubScope::All)
    }

    /// This user as the audit log's actor.
    pub fn actor(&self) -> Actor<'_> {
        Actor {
            name: &self.user.name,
            address: Some(&self.address),
        }
    }
}

/// The client's address: the connection's peer, or, when the peer is one of
/// `[web] trusted_proxies` (and sent the proxy's secret, when `[web] proxy_secret_file` is
/// set), the nearest address in `X-Forwarded-For` that is not a trusted proxy (what a client
/// writes into the header itself is never believed).
pub fn address_of(req: &HttpRequest) -> String {
    let Some(peer) = req.peer_addr().map(|a| a.ip()) else {
        return "unknown".to_owned();
    };
    let Some(state) = req.app_data::<web::Data<AppState>>() else {
        return peer.to_string();
    };
    let trusted = &state.settings.web.trusted_proxies;
    let vouched = match &state.proxy_secret {
        None => true,
        Some(secret) => {
            let sent = req
                .headers()
                .get(PROXY_SECRET_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let vouched = same_secret(sent, secret);
            if !vouched && trusted.contains(&peer) && req.headers().contains_key("x-forwarded-for")
            {
                warn_once_unvouched(&state.unvouched_proxy, peer);
            }
            vouched
        }
    };
    let trusted: &[std::net::IpAddr] = if vouched { trusted } else { &[] };
    client_address(
        peer,
        req.headers()
            .get_all("x-forwarded-for")
            .filter_map(|v| v.to_str().ok()),
        trusted,
    )
    .to_string()
}

/// The header the proxy in front of the panel proves itself with.
pub const PROXY_SECRET_HEADER: &str = "x-clubdeploy-proxy";

/// Remembers in `seen` (and says on stderr, once) that a request from `peer`, a trusted
/// proxy's address, carried `X-Forwarded-For` without the proxy's secret.
fn warn_once_unvouched(seen: &std::sync::OnceLock<std::net::IpAddr>, peer: std::net::IpAddr) {
    if seen.set(peer).is_ok() {
        eprintln!(
            "warning: a request from {peer} carried X-Forwarded-For but not the proxy's secret \
             (X-Clubdeploy-Proxy, [web] proxy_secret_file): its client is taken to be {peer}. \
             If Apache proxies the panel, include /etc/clubdeploy/apache-proxy-header.conf \
             in its virtual host (see apache-panel.conf)."
        );
    }
}

/// The client behind `peer`: walking `X-Forwarded-For` from the right while the hop we
/// stand at is a trusted proxy.
pub fn client_address<'a>(
    peer: std::net::IpAddr,
    forwarded: impl Iterator<Item = &'a str>,
    trusted: &[std::net::IpAddr],
) -> std::net::IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let hops: Vec<&str> = forwarded
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Ok(address) = hop.parse::<std::net::IpAddr>() else {
            break;
        };
        client = address;
        if !trusted.contains(&address) {
            break;
        }
    }
    client
}

impl FromRequest for Staff {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = Result<Staff, AppError>>>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let secure = state.as_ref().is_some_and(|s| s.settings.cookie_secure);
        let token = req
            .cookie(session::cookie_name(secure))
            .map(|c| c.value().to_owned());
        let next = if req.method() == actix_web::http::Method::GET {
            req.uri()
                .path_and_query()
                .map_or("/".to_owned(), |p| p.to_string())
        } else {
            "/".to_owned()
        };
        let address = address_of(req);
        // A page shows the session's one-time message; a stream or a download does not take it.
        let path = req.path();
        let account_path = path == "/account" || path.starts_with("/account/") || path == "/logout";
        let is_get = req.method() == actix_web::http::Method::GET;
        let shows_flash = req.method() == actix_web::http::Method::GET
            && !path.ends_with("/events")
            && !path.ends_with(".csv");
        Box::pin(async move {
            let state = state.ok_or_else(|| AppError::Internal(anyhow::anyhow!("no state")))?;
            let login = || AppError::LoginRequired { next: next.clone() };
            let token = token.ok_or_else(login)?;
            let found = state
                .db(move |settings, conn| {
                    let found = session::authenticate(
                        conn,
                        &token,
                        db::now(),
                        settings.session_timeouts(),
                    )?;
                    let flash = match (&found, shows_flash) {
                        (Some((session, _)), true) => {
                            crate::db::users::take_flash(conn, session.id)?
                        }
                        _ => None,
                    };
                    Ok(found.map(|found| (found, flash)))
                })
                .await?;
            let ((session, user), flash) = found.ok_or_else(login)?;
            let role = user.role;
            // Until they set up a sign-in code, those who must have one see their account
            // page (and may sign out); a change posted elsewhere is refused.
            if needs_code(&state.settings.web, &user) && !account_path {
                return Err(if is_get {
                    AppError::CodeRequired
                } else {
                    AppError::Forbidden(
                        "Set up a sign-in code on your account page first: your role needs \
                         one. Nothing was changed."
                            .into(),
                    )
                });
            }
            let scope = staff_ops::scope_of(&user)?;
            Ok(Staff {
                user,
                role,
                scope,
                session_id: session.id,
                csrf: session.csrf_token,
                address,
                flash,
            })
        })
    }
}

/// Whether `user` must set up a sign-in code before anything else: their role needs one
/// (`[web] require_totp_for`) and they have none.
pub fn needs_code(web: &crate::config::WebSettings, user: &User) -> bool {
    web.requires_code(user.role) && user.totp_secret.is_none()
}

#[derive(Template, WebTemplate)]
#[template(path = "login.html")]
pub struct LoginPage {
    next: String,
    csrf: String,
    name: String,
    error: Option<String>,
    /// Said after signing out.
    signed_out: bool,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct NextQuery {
    next: String,
    /// Set by the sign-out's redirect, to say it worked.
    signed_out: Option<String>,
}

/// Where to go after sign-in: only a path of this site. Browsers drop tabs and newlines
/// from URLs and read `\` as `/`, so `/%09/evil.example` would become `//evil.example` (another
/// site): anything but a single leading `/`, no backslash and no control character or space,
/// that parses as a path, goes to `/`.
pub fn safe_next(next: &str) -> String {
    let acceptable = next.starts_with('/')
        && !next[1..].starts_with('/')
        && !next.contains('\\')
        && !next.chars().any(|c| c.is_control() || c.is_whitespace())
        && next
            .parse::<actix_web::http::uri::PathAndQuery>()
            .is_ok_and(|p| p.as_str() == next);
    if acceptable {
        next.to_owned()
    } else {
        "/".to_owned()
    }
}

/// The cookie that carries the sign-in form's CSRF token; behind TLS it is `Secure` and
/// bound to this host (`__Host-`).
fn login_cookie_name(secure: bool) -> &'static str {
    if secure {
        "__Host-clubdeploy_login"
    } else {
        LOGIN_CSRF_COOKIE
    }
}

fn login_form(secure: bool, next: &str, name: &str, error: Option<String>) -> HttpResponse {
    let page = LoginPage {
        next: safe_next(next),
        csrf: random_token(),
        name: name.to_owned(),
        error,
        signed_out: false,
    };
    form_page(secure, page)
}

/// Sends the sign-in page `page` with a fresh form token in its cookie.
fn form_page(secure: bool, page: LoginPage) -> HttpResponse {
    let csrf = page.csrf.clone();
    // `__Host-` cookies must have Path=/.
    let cookie = Cookie::build(login_cookie_name(secure), csrf)
        .path(if secure { "/" } else { "/login" })
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Strict)
        .finish();
    let status = if page.error.is_some() {
        actix_web::http::StatusCode::UNAUTHORIZED
    } else {
        actix_web::http::StatusCode::OK
    };
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .cookie(cookie)
        .body(page.render().unwrap_or_default())
}

/// `GET /login`.
pub async fn login_page(state: web::Data<AppState>, query: web::Query<NextQuery>) -> HttpResponse {
    let page = LoginPage {
        next: safe_next(&query.next),
        csrf: random_token(),
        name: String::new(),
        error: None,
        signed_out: query.signed_out.is_some(),
    };
    form_page(state.settings.cookie_secure, page)
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LoginForm {
    name: String,
    password: String,
    /// The sign-in code (TOTP), for accounts that set one up.
    code: String,
    next: String,
    csrf: String,
}

/// `POST /login`: a new session on success (the old cookie, if any, is replaced).
pub async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    let login: LoginForm = form(&body)?;
    let secure = state.settings.cookie_secure;
    let expected = req
        .cookie(login_cookie_name(secure))
        .map(|c| c.value().to_owned());
    // The session this browser had, if any: signing in ends it.
    let previous = req
        .cookie(session::cookie_name(secure))
        .map(|c| c.value().to_owned());
    if !expected.is_some_and(|e| !login.csrf.is_empty() && same_secret(&e, &login.csrf)) {
        return Err(AppError::Forbidden(
            "The sign-in form expired. Go back, reload the page and sign in again.".into(),
        ));
    }
    let address = address_of(&req);
    let sender = crate::domain::sign_in_key(&address);
    let name = login.name.trim().to_owned();
    // Turn a flood away before it costs a database write or a hash.
    let place = state
        .sign_ins
        .admit(&sender, &name)
        .map_err(|refused| match refused {
            Refused::Full => AppError::Busy {
                message: refused.message().into(),
                retry_after_secs: 5,
            },
            Refused::SenderBusy | Refused::AccountBusy => {
                AppError::TooManyRequests(refused.message().into())
            }
        })?;
    let outcome = {
        let sender = sender.clone();
        state
            .db(move |_, conn| Ok(staff_ops::begin_login(conn, &name, &sender, db::now())))
            .await?
    };
    let outcome = match outcome {
        // The password is checked with no database connection held.
        Ok(pending) => {
            // A stranger to an account under a spread flood waits its turn (holding the
            // account's one place for strangers), whatever the password.
            if let Some(delay) = pending.slow_down.filter(|_| !place.known()) {
                tokio::time::sleep(delay).await;
            }
            let matches = place
                .verify(login.password.clone(), pending.stored_hash())
                .await;
            drop(place);
            let through_proxy = state.settings.web.is_proxy(&address);
            let finished = state
                .db(move |_, conn| {
                    Ok(staff_ops::finish_login(
                        conn,
                        pending,
                        matches,
                        &login.code,
                        previous.as_deref(),
                        &address,
                        db::now(),
                    ))
                })
                .await?;
            if finished.is_ok() && !through_proxy {
                state.sign_ins.remember(&sender, std::time::Instant::now());
            }
            finished
        }
        Err(refused) => Err(refused),
    };
    match outcome {
        Ok((_, started)) => {
            let cookie = Cookie::build(session::cookie_name(secure), started.token)
                .path("/")
                .http_only(true)
                .secure(secure)
                .same_site(SameSite::Strict)
                .finish();
            Ok(HttpResponse::SeeOther()
                .cookie(cookie)
                .insert_header(("Location", safe_next(&login.next)))
                .finish())
        }
        Err(throttled @ LoginError::Throttled { wait_secs }) => {
            let mut response = login_form(
                secure,
                &login.next,
                &login.name,
                Some(throttled.to_string()),
            );
            *response.status_mut() = actix_web::http::StatusCode::TOO_MANY_REQUESTS;
            response.headers_mut().insert(
                actix_web::http::header::RETRY_AFTER,
                actix_web::http::header::HeaderValue::from(wait_secs),
            );
            Ok(response)
        }
        Err(LoginError::Invalid) => Ok(login_form(
            secure,
            &login.next,
            &login.name,
            Some("Wrong user name or password (or sign-in code).".into()),
        )),
        Err(LoginError::Internal(e)) => Err(AppError::Internal(e)),
    }
}

/// `POST /logout`.
pub async fn logout(
    CsrfForm { staff, .. }: CsrfForm,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    let (name, address, id) = (
        staff.user.name.clone(),
        staff.address.clone(),
        staff.session_id,
    );
    state
        .db(move |_, conn| {
            let actor = Actor {
                name: &name,
                address: Some(&address),
            };
            staff_ops::logout(conn, actor, id)
        })
        .await?;
    let secure = state.settings.cookie_secure;
    let mut gone = Cookie::build(session::cookie_name(secure), "")
        .path("/")
        .secure(secure)
        .finish();
    gone.make_removal();
    Ok(HttpResponse::SeeOther()
        .cookie(gone)
        .insert_header(("Location", "/login?signed_out=1"))
        .finish())
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn only_paths_of_this_site_are_followed_after_sign_in() {
        for ok in ["/", "/jobs/3", "/audit?club=a&user=b", "/clubs/a/rollback"] {
            assert_eq!(safe_next(ok), ok);
        }
        for bad in [
            "//evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "https://evil.example/",
            "evil.example",
            "/ /evil.example",
            "",
            "/\u{7f}/x",
        ] {
            assert_eq!(safe_next(bad), "/", "{bad:?}");
        }
    }
}

#[cfg(test)]
mod proxy_tests {
    use std::net::IpAddr;

    use super::client_address;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_a_trusted_proxy() {
        let proxy = ip("10.0.0.2");
        let header = ["203.0.113.9, 198.51.100.7"];
        // No trusted proxy: the header is ignored.
        assert_eq!(client_address(proxy, header.into_iter(), &[]), proxy);
        // From the proxy: its nearest hop is the client; a spoofed left part is ignored.
        assert_eq!(
            client_address(proxy, header.into_iter(), &[proxy]),
            ip("198.51.100.7")
        );
        // Two trusted hops in a row.
        let second = ip("198.51.100.7");
        assert_eq!(
            client_address(proxy, header.into_iter(), &[proxy, second]),
            ip("203.0.113.9")
        );
        // Someone else sending the header is not believed.
        let stranger = ip("192.0.2.1");
        assert_eq!(
            client_address(stranger, header.into_iter(), &[proxy]),
            stranger
        );
        // Garbage stops the walk at the last good hop.
        assert_eq!(client_address(proxy, ["junk"].into_iter(), &[proxy]), proxy);
    }
}
