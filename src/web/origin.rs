//! Requests that change something must come from the panel's own pages. The CSRF token of
//! each form already proves that for forms the panel rendered; this is the second layer a
//! browser gives for free: its `Sec-Fetch-Site` header (or, from older browsers, `Origin`)
//! says which site made the request, so a form or `fetch` on another site is refused before
//! any handler reads it, whatever it carries. A request with neither header (the command
//! line's tools, `curl`) is not a browser's cross-site request and goes on to the token check.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;

use crate::web::error::AppError;

/// Why a request with `method` may not change anything, given its `Sec-Fetch-Site` and
/// `Origin` headers and the `Host` it was sent to; `None` if it may go on.
pub fn cross_site(
    method: &Method,
    fetch_site: Option<&str>,
    origin: Option<&str>,
    host: Option<&str>,
) -> Option<String> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return None;
    }
    const WHY: &str = "This request came from another website, so nothing was changed. \
                       Use the panel's own pages (reload the page and try again).";
    if let Some(site) = fetch_site {
        // "none": the user typed or bookmarked it; "same-origin": a page of the panel.
        return match site.trim().to_ascii_lowercase().as_str() {
            "same-origin" | "none" => None,
            _ => Some(WHY.to_owned()),
        };
    }
    let origin = origin?;
    let from = origin
        .split_once("://")
        .map(|(_, rest)| rest.trim_end_matches('/'))
        .filter(|h| !h.is_empty() && !h.contains('/'));
    match (from, host) {
        (Some(from), Some(host)) if from.eq_ignore_ascii_case(host.trim()) => None,
        _ => Some(WHY.to_owned()),
    }
}

/// The middleware: refuses a cross-site request with 403 before it reaches a handler.
pub async fn refuse_cross_site(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .map(|v| v.to_str().unwrap_or("\u{fffd}"))
    };
    if let Some(why) = cross_site(
        req.method(),
        header("sec-fetch-site"),
        header("origin"),
        header("host"),
    ) {
        return Err(AppError::Forbidden(why).into());
    }
    next.call(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_change_from_another_site_is_refused() {
        let post = Method::POST;
        let host = Some("deploy.example.org");
        for (method, site, origin, allowed) in [
            (
                &Method::GET,
                Some("cross-site"),
                Some("https://evil.example"),
                true,
            ),
            (&post, Some("same-origin"), None, true),
            (&post, Some("none"), None, true),
            (
                &post,
                Some("Same-Origin"),
                Some("https://deploy.example.org"),
                true,
            ),
            (&post, Some("same-site"), None, false),
            (&post, Some("cross-site"), None, false),
            // The browser's word wins over an Origin that looks right.
            (
                &post,
                Some("cross-site"),
                Some("https://deploy.example.org"),
                false,
            ),
            (&post, None, Some("https://deploy.example.org"), true),
            (&post, None, Some("https://DEPLOY.example.org/"), true),
            (&post, None, Some("https://evil.example"), false),
            (
                &post,
                None,
                Some("https://deploy.example.org.evil.example"),
                false,
            ),
            (&post, None, Some("null"), false),
            (&post, None, Some("https://deploy.example.org:8443"), false),
            // Neither header: not a browser's cross-site request; the token decides.
            (&post, None, None, true),
        ] {
            let answer = cross_site(method, site, origin, host);
            assert_eq!(answer.is_none(), allowed, "{method} {site:?} {origin:?}");
        }
        assert!(cross_site(&post, None, Some("https://a"), None).is_some());
    }
}
