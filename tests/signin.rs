//! Sign-in fairness under a flood spread over many addresses: one check at a time per sender
//! (an IPv6 /64 is one) and per account from strangers, a delay for an account failing from
//! everywhere that never refuses the right password, places kept for staff who signed in
//! lately, and `X-Forwarded-For` believed only with the proxy's secret.

use std::time::{Duration, Instant};

use clubdeploy::db::audit;
use reqwest::StatusCode;

use crate::helpers::TestEnv;
use crate::web::{PASSWORD, TestApp};

const SECRET: &str = "b2f1c9d04e8a7f3356c1d2e9a0b4f7c6";

/// A panel behind a trusted proxy on loopback that proves itself with [`SECRET`].
async fn behind_proxy() -> TestApp {
    let mut env = TestEnv::new();
    let secret = env.root.path().join("proxy-secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    env.config.web = vec![
        "trusted_proxies = [\"127.0.0.1\"]".into(),
        format!("proxy_secret_file = {secret:?}"),
    ];
    env.configure();
    TestApp::spawn(env).await
}

/// Posts the sign-in form to the panel at `base` as the proxy would for a client at `from`
/// (with `secret` in the proxy's header, if any): the status and the page.
async fn sign_in(
    base: &str,
    from: &str,
    secret: Option<&str>,
    name: &str,
    password: &str,
) -> (StatusCode, String) {
    let token = "t".repeat(64);
    let mut request = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{base}/login"))
        .header("Cookie", format!("clubdeploy_login={token}"))
        .header("X-Forwarded-For", from)
        .form(&[
            ("name", name),
            ("password", password),
            ("csrf", &token),
            ("next", "/"),
        ]);
    if let Some(secret) = secret {
        request = request.header("X-Clubdeploy-Proxy", secret);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.text().await.unwrap())
}

fn audited(app: &TestApp, action: &str) -> Vec<audit::AuditEvent> {
    audit::list(
        &mut app.pool.get().unwrap(),
        &audit::Filter {
            action: Some(action.into()),
            limit: 1000,
            ..Default::default()
        },
    )
    .unwrap()
}

#[tokio::test]
async fn a_flood_against_one_account_from_everywhere_is_slowed_one_guess_at_a_time_and_never_keeps_its_owner_out()
 {
    use clubdeploy::auth::staff::FREE_FAILURES_ACROSS_ADDRESSES;
    let app = behind_proxy().await;
    // The owner signed in from their office before.
    let office = "198.51.100.7";
    let (status, _) = sign_in(&app.base, office, Some(SECRET), "admin", PASSWORD).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    // Wrong guesses at admin, each from a new address: under every per-address limit.
    for n in 0..FREE_FAILURES_ACROSS_ADDRESSES {
        let from = format!("203.0.113.{}", n + 1);
        let (status, _) = sign_in(&app.base, &from, Some(SECRET), "admin", "a wrong guess").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "guess {n}");
    }
    assert_eq!(
        audited(&app, "login.account_slowed").len(),
        1,
        "admins are told once"
    );
    // From now on a stranger's sign-in to admin waits a second first, even with the right
    // password — and then gets in: a delay, not a lockout.
    let started = Instant::now();
    let slowed = {
        let base = app.base.clone();
        tokio::spawn(async move {
            let (status, _) =
                sign_in(&base, "2001:db8:1:2::1", Some(SECRET), "admin", PASSWORD).await;
            (status, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!slowed.is_finished(), "the stranger's sign-in waits");
    // Meanwhile another stranger's guess at admin is turned away at once, unchecked…
    let (status, page) = sign_in(&app.base, "192.0.2.50", Some(SECRET), "admin", "guess").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{page}");
    assert!(page.contains("Another sign-in for this account"), "{page}");
    // …and so is a second sign-in from the same IPv6 /64, even to another account.
    let (status, page) = sign_in(&app.base, "2001:db8:1:2::99", Some(SECRET), "viewer", "x").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{page}");
    assert!(page.contains("from your address"), "{page}");
    // The owner, from where they signed in before, gets straight in.
    let owner = Instant::now();
    let (status, _) = sign_in(&app.base, office, Some(SECRET), "admin", PASSWORD).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(
        owner.elapsed() < Duration::from_millis(900),
        "not slowed: {:?}",
        owner.elapsed()
    );
    assert!(
        !slowed.is_finished(),
        "the owner did not wait for the stranger"
    );
    let (status, waited) = slowed.await.unwrap();
    assert_eq!(status, StatusCode::SEE_OTHER, "the right password works");
    assert!(waited >= Duration::from_secs(1), "{waited:?}");
    // The turned-away attempts were never checked: only the 20 guesses count as failures.
    let failed = audited(&app, "login.failed");
    assert_eq!(failed.len() as i64, FREE_FAILURES_ACROSS_ADDRESSES);
    assert_eq!(audited(&app, "login.account_slowed").len(), 1);
}

#[tokio::test]
async fn failed_sign_ins_are_counted_per_ipv6_network_not_per_address() {
    use clubdeploy::auth::staff::FREE_FAILURES_PER_ADDRESS;
    let app = behind_proxy().await;
    // A new address of one /64 for each guess, at a new account name each time.
    for n in 0..FREE_FAILURES_PER_ADDRESS {
        let from = format!("2001:db8:5:6::{:x}", n + 1);
        let (status, _) = sign_in(&app.base, &from, Some(SECRET), &format!("guess{n}"), "x").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "guess {n}");
    }
    let (status, page) = sign_in(
        &app.base,
        "2001:db8:5:6:ffff::1",
        Some(SECRET),
        "other",
        "x",
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{page}");
    assert!(page.contains("too many failed sign-in attempts"), "{page}");
    // The next network is someone else.
    let (status, _) = sign_in(&app.base, "2001:db8:5:7::1", Some(SECRET), "other", "x").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The audit log keeps each full address.
    let first = audited(&app, "login.failed");
    assert!(
        first
            .iter()
            .any(|row| row.address.as_deref() == Some("2001:db8:5:6::1")),
        "{:?}",
        first.iter().map(|r| &r.address).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn forwarded_for_is_believed_only_with_the_proxys_secret() {
    let app = behind_proxy().await;
    for (secret, expected) in [
        (None, "127.0.0.1"),
        (Some("not the secret at all, but as long"), "127.0.0.1"),
        (Some(SECRET), "203.0.113.5"),
    ] {
        let (status, _) = sign_in(&app.base, "203.0.113.5", secret, "viewer", PASSWORD).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        let rows = audited(&app, "login.succeeded");
        assert_eq!(
            rows[0].address.as_deref(),
            Some(expected),
            "secret {secret:?}"
        );
    }
    // The panel's doctor reading says the proxy sent no secret, and how to fix it.
    let admin = app.login("admin").await;
    let csrf = app.csrf(&admin).await;
    let response = admin
        .post(app.url("/doctor"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert!(response.status().is_redirection() || response.status().is_success());
    let page = app.page(&admin, "/doctor").await;
    assert!(
        page.contains("requests from the proxy at 127.0.0.1 carry X-Forwarded-For but not"),
        "{page}"
    );
    assert!(page.contains("apache-proxy-header.conf"), "{page}");
}

#[test]
fn the_doctor_warns_when_loopback_is_trusted_without_a_proxy_secret() {
    let mut env = TestEnv::new();
    env.config.web = vec!["trusted_proxies = [\"127.0.0.1\", \"::1\"]".into()];
    env.configure();
    let out = env.run(&["doctor"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "warning  panel  the panel believes X-Forwarded-For from loopback without a secret"
        ),
        "{text}"
    );
    // With the secret, it is fine; with a secret file that is too short, a problem.
    let secret = env.root.path().join("proxy-secret");
    for (content, expected) in [
        (
            SECRET,
            "ok       panel  the panel believes X-Forwarded-For only from a proxy",
        ),
        ("short", "problem  panel  [web] proxy_secret_file"),
    ] {
        std::fs::write(&secret, content).unwrap();
        env.config.web = vec![
            "trusted_proxies = [\"127.0.0.1\", \"::1\"]".into(),
            format!("proxy_secret_file = {secret:?}"),
        ];
        env.configure();
        let out = env.run(&["doctor"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(expected), "{text}");
    }
}

/// The secret the account page offers to set up.
fn offered_secret(page: &str) -> String {
    let marker = "<code id=\"new-secret\">";
    let start = page.find(marker).expect("a secret is offered") + marker.len();
    page[start..start + page[start..].find('<').unwrap()].to_owned()
}

/// Posts `fields` (and the session's form token, read from the account page) to `path`.
async fn post_from_account(
    app: &TestApp,
    client: &reqwest::Client,
    path: &str,
    fields: &[(&str, &str)],
) -> (StatusCode, String) {
    let csrf = crate::web::csrf_of(&app.page(client, "/account").await);
    let mut form = vec![("csrf", csrf.as_str())];
    form.extend_from_slice(fields);
    let response = client.post(app.url(path)).form(&form).send().await.unwrap();
    let status = response.status();
    (status, response.text().await.unwrap())
}

/// Signs in with a sign-in code as well; the status.
async fn sign_in_with_code(app: &TestApp, name: &str, code: &str) -> StatusCode {
    let client = app.client();
    let page = app.page(&client, "/login").await;
    client
        .post(app.url("/login"))
        .form(&[
            ("name", name),
            ("password", PASSWORD),
            ("code", code),
            ("csrf", &crate::web::csrf_of(&page)),
        ])
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn admins_must_set_up_a_sign_in_code_and_then_sign_in_with_it_each_code_once() {
    use clubdeploy::auth::totp;
    let mut env = TestEnv::new();
    env.config.web = vec!["require_totp_for = [\"admin\"]".into()];
    env.configure();
    let app = TestApp::spawn(env).await;
    // A viewer is not asked for one.
    let viewer = app.login("viewer").await;
    app.page(&viewer, "/").await;
    // The admin's password still signs them in, but every page leads to their account page
    // and a change posted anywhere else is refused, changing nothing.
    let admin = app.login("admin").await;
    let response = admin.get(app.url("/clubs")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "/account");
    let (status, page) = post_from_account(&app, &admin, "/doctor", &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{page}");
    assert!(page.contains("Set up a sign-in code"), "{page}");
    // Setting up: a code that does not match changes nothing; the app's code does.
    let page = app.page(&admin, "/account").await;
    assert!(
        page.contains("Your role must sign in with a code"),
        "{page}"
    );
    let secret = offered_secret(&page);
    let now = totp::now();
    let stale = totp::code_at(&secret, now - 3600).unwrap();
    let (status, page) = post_from_account(
        &app,
        &admin,
        "/account/code",
        &[("secret", &secret), ("code", &stale)],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    assert!(page.contains("does not match"), "{page}");
    let code = totp::code_at(&secret, now).unwrap();
    let (status, _) = post_from_account(
        &app,
        &admin,
        "/account/code",
        &[("secret", &secret), ("code", &code)],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    app.page(&admin, "/clubs").await;
    assert_eq!(audited(&app, "user.code_set").len(), 1);
    // Signing in now takes the code: not the password alone, not the code spent on setting
    // up (a wrong code is as wrong; three failures would make this address wait); the next
    // one, once.
    assert_eq!(
        app.try_login(&app.client(), "admin", PASSWORD)
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        sign_in_with_code(&app, "admin", &code).await,
        StatusCode::UNAUTHORIZED
    );
    let next = totp::code_at(&secret, now + 30).unwrap();
    assert_eq!(
        sign_in_with_code(&app, "admin", &next).await,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        sign_in_with_code(&app, "admin", &next).await,
        StatusCode::UNAUTHORIZED
    );
    let succeeded = audited(&app, "login.succeeded");
    assert_eq!(succeeded[0].details, "signed in with a sign-in code");
    // The required code cannot be removed on the account page…
    let (status, _) =
        post_from_account(&app, &admin, "/account/code/remove", &[("code", &next)]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // …but a lost phone is dealt with on the command line: the admin signs in with the
    // password again and must set up a new code first.
    app.env.ok(&["user", "code-off", "admin"]);
    assert_eq!(audited(&app, "user.code_removed").len(), 1);
    let again = app.login("admin").await;
    let response = again.get(app.url("/")).send().await.unwrap();
    assert_eq!(response.headers()["location"], "/account");

    // Someone whose role needs none may set one up and remove it, with a current code.
    let page = app.page(&viewer, "/account").await;
    assert!(!page.contains("Your role must"), "{page}");
    let secret = offered_secret(&page);
    let code = totp::code_at(&secret, now).unwrap();
    let set = [("secret", secret.as_str()), ("code", code.as_str())];
    let (status, _) = post_from_account(&app, &viewer, "/account/code", &set).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _) =
        post_from_account(&app, &viewer, "/account/code/remove", &[("code", &code)]).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a spent code removes nothing"
    );
    let next = totp::code_at(&secret, now + 30).unwrap();
    let (status, _) =
        post_from_account(&app, &viewer, "/account/code/remove", &[("code", &next)]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(audited(&app, "user.code_removed").len(), 2);
    assert_eq!(
        app.try_login(&app.client(), "viewer", PASSWORD)
            .await
            .status(),
        StatusCode::SEE_OTHER
    );
}
