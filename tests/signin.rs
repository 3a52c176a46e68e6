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

/// Posts the sign-in form as the proxy would for a client at `from` (with `secret` in the
/// proxy's header, if any): the status and the page.
async fn sign_in(
    app: &TestApp,
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
        .post(app.url("/login"))
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
    let (status, _) = sign_in(&app, office, Some(SECRET), "admin", PASSWORD).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    // Wrong guesses at admin, each from a new address: under every per-address limit.
    for n in 0..FREE_FAILURES_ACROSS_ADDRESSES {
        let from = format!("203.0.113.{}", n + 1);
        let (status, _) = sign_in(&app, &from, Some(SECRET), "admin", "a wrong guess").await;
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
        let app_url = move |path: &str| format!("{base}{path}");
        let token = "t".repeat(64);
        tokio::spawn(async move {
            let response = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap()
                .post(app_url("/login"))
                .header("Cookie", format!("clubdeploy_login={token}"))
                .header("X-Forwarded-For", "2001:db8:1:2::1")
                .header("X-Clubdeploy-Proxy", SECRET)
                .form(&[
                    ("name", "admin"),
                    ("password", PASSWORD),
                    ("csrf", &token),
                    ("next", "/"),
                ])
                .send()
                .await
                .unwrap();
            (response.status(), started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!slowed.is_finished(), "the stranger's sign-in waits");
    // Meanwhile another stranger's guess at admin is turned away at once, unchecked…
    let (status, page) = sign_in(&app, "192.0.2.50", Some(SECRET), "admin", "guess").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{page}");
    assert!(page.contains("Another sign-in for this account"), "{page}");
    // …and so is a second sign-in from the same IPv6 /64, even to another account.
    let (status, page) = sign_in(&app, "2001:db8:1:2::99", Some(SECRET), "viewer", "x").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{page}");
    assert!(page.contains("from your address"), "{page}");
    // The owner, from where they signed in before, gets straight in.
    let owner = Instant::now();
    let (status, _) = sign_in(&app, office, Some(SECRET), "admin", PASSWORD).await;
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
        let (status, _) = sign_in(&app, &from, Some(SECRET), &format!("guess{n}"), "x").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "guess {n}");
    }
    let (status, page) = sign_in(&app, "2001:db8:5:6:ffff::1", Some(SECRET), "other", "x").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{page}");
    assert!(page.contains("too many failed sign-in attempts"), "{page}");
    // The next network is someone else.
    let (status, _) = sign_in(&app, "2001:db8:5:7::1", Some(SECRET), "other", "x").await;
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
        let (status, _) = sign_in(&app, "203.0.113.5", secret, "viewer", PASSWORD).await;
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
