//! The panel as staff use it, in a real headless Chromium at desktop (1280 px) and phone
//! (390 px) width: layout, the clubs list's search, filters and pages, the deploy form's
//! picks and groups, the confirmation, one-time forms, messages, error pages, local times,
//! the live dashboard and the job page. Screenshots go to `target/e2e-screenshots/`.

use std::time::{Duration, Instant};

use fantoccini::Locator;
use fantoccini::error::CmdError;
use serde_json::Value;

use crate::browser::{Browser, Screen, available, each_page, snap, wait_for_status};
use crate::helpers::TestEnv;
use crate::web::TestApp;

/// Runs `script` in the page and returns what it returns.
async fn js(b: &fantoccini::Client, script: &str) -> Result<Value, CmdError> {
    b.execute(script, vec![]).await
}

/// Whether the page is no wider than the window: nothing to scroll sideways to.
async fn fits(b: &fantoccini::Client) -> Result<(i64, i64), CmdError> {
    let found = js(
        b,
        "return [document.documentElement.scrollWidth, window.innerWidth];",
    )
    .await?;
    Ok((found[0].as_i64().unwrap(), found[1].as_i64().unwrap()))
}

/// The text of the first element `css` finds.
async fn text(b: &fantoccini::Client, css: &str) -> Result<String, CmdError> {
    b.find(Locator::Css(css)).await?.text().await
}

/// Waits (bounded) until `check` on the page's main text holds, without navigating.
async fn wait_for_text(
    b: &fantoccini::Client,
    css: &str,
    check: impl Fn(&str) -> bool,
) -> Result<String, CmdError> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found = text(b, css).await.unwrap_or_default();
        if check(&found) {
            return Ok(found);
        }
        assert!(Instant::now() < deadline, "{css} still reads {found:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A world with clubs a, b and c (whose name is one 100-character
/// word), a on v2 and the others on v1, a and c in group early-adopters.
fn small_world() -> TestEnv {
    let env = TestEnv::new();
    env.add_clubs(&["a", "b"]);
    let long_name =
        "Zermattbergbahnenskiclubundsnowboardvereinigungobermattertalfreundeskreis".repeat(2);
    env.add_club("c", &["--name", &long_name[..100]]);
    env.ok(&["deploy", "v1", "--all"]);
    env.ok(&["deploy", "v2", "--club", "a"]);
    env.ok(&["club", "group", "early-adopters", "a", "c"]);
    env
}

/// Issue 12 point 1 (and 2, 4): at desktop and phone width every page fits its window
/// (asserted on `scrollWidth`), checkboxes and radio buttons sit beside their labels, a
/// table's cells line up in their row, and a 100-character name wraps.
#[tokio::test]
async fn every_page_fits_desktop_and_phone_widths_with_controls_beside_their_labels() {
    if !available() {
        return;
    }
    let app = TestApp::spawn(small_world()).await;
    let pages = [
        ("dashboard", "/"),
        ("clubs", "/clubs"),
        ("releases", "/releases"),
        ("deploy", "/deploy"),
        (
            "deploy-confirm",
            "/deploy/confirm?app=main&tag=v3&target=all&canary_field=1&canary=",
        ),
        ("rollback-confirm", "/clubs/a/rollback?app=main"),
        ("jobs", "/jobs"),
        ("job", "/jobs/1"),
        ("audit", "/audit"),
        ("staff", "/staff"),
        ("opcache", "/opcache"),
        ("doctor", "/doctor"),
        ("not-found", "/jobs/abc"),
    ];
    for screen in [Screen::DESKTOP, Screen::PHONE] {
        let browser = Browser::open(&screen).await;
        let result = async {
            let b = &browser.client;
            browser.sign_in(&app, "admin").await?;
            each_page(&browser, &app, &screen, &pages, "layout", async |b, path| {
                let (scroll, inner) = fits(b).await?;
                assert_eq!(
                    inner,
                    screen.width as i64,
                    "{path}: the window is not {} px wide",
                    screen.width
                );
                assert!(
                    scroll <= inner,
                    "{path} at {} px scrolls sideways: {scroll} > {inner}",
                    screen.width
                );
                // Each checkbox and radio button sits at the start of its label's first
                // line, the label's text beside it on that line.
                let misplaced = js(
                    b,
                    "return Array.from(document.querySelectorAll('label')).filter(l => \
                       l.offsetParent !== null && l.querySelector('input[type=checkbox], input[type=radio]')) \
                     .map(l => { const i = l.querySelector('input').getBoundingClientRect(); \
                       const r = document.createRange(); r.setStartAfter(l.querySelector('input')); \
                       r.setEndAfter(l.lastChild); const t = r.getClientRects()[0]; \
                       const line = parseFloat(getComputedStyle(l).lineHeight); \
                       return [l.textContent.trim().slice(0, 40), t ? t.left - i.right : -1, \
                               t ? Math.abs((i.top + i.bottom) / 2 - (t.top + line / 2)) : 99]; }) \
                     .filter(([_, gap, off]) => gap < 0 || gap > 24 || off > 8);",
                )
                .await?;
                assert_eq!(
                    misplaced,
                    serde_json::json!([]),
                    "{path} at {} px: controls not beside their labels ([label, gap, offset])",
                    screen.width
                );
                Ok(())
            })
            .await?;
            // At desktop width a table row's cells start on one line.
            if screen.width == 1280 {
                b.goto(&app.url("/clubs")).await?;
                let ragged = js(
                    b,
                    "return Array.from(document.querySelectorAll('main table tbody tr')).filter(tr => \
                       new Set(Array.from(tr.cells).map(c => Math.round(c.getBoundingClientRect().top))).size > 1).length;",
                )
                .await?;
                assert_eq!(ragged, serde_json::json!(0), "rows whose cells do not line up");
            } else {
                // At phone width the Roll back button is whole inside the window.
                b.goto(&app.url("/clubs")).await?;
                let button = js(
                    b,
                    "const r = document.querySelector(\"a.button[href^='/clubs/a/rollback']\").getBoundingClientRect(); \
                     return [r.left, r.right, window.innerWidth];",
                )
                .await?;
                let (left, right, inner) = (
                    button[0].as_f64().unwrap(),
                    button[1].as_f64().unwrap(),
                    button[2].as_f64().unwrap(),
                );
                assert!(left >= 0.0 && right <= inner, "Roll back is cut off: {button}");
            }
            Ok::<_, CmdError>(())
        }
        .await;
        browser.close().await;
        result.unwrap();
    }
}

/// Issue 12 point 5: the clubs list searches, filters by group and pages, every view at its
/// own address (reloading it shows the same).
#[tokio::test]
async fn the_clubs_list_searches_filters_and_pages_at_stable_addresses() {
    if !available() {
        return;
    }
    let env = TestEnv::new();
    let mut csv = String::from("slug,name,url,webroot\n");
    for n in 1..=60 {
        let slug = format!("club-{n:02}");
        csv.push_str(&format!(
            "{slug},Club {n},,{}\n",
            env.webroot(&slug).display()
        ));
    }
    let file = env.root.path().join("clubs.csv");
    std::fs::write(&file, csv).unwrap();
    env.ok(&["club", "import", file.to_str().unwrap()]);
    env.ok(&["deploy", "v1", "--all"]);
    env.ok(&[
        "club",
        "group",
        "region-east",
        "club-07",
        "club-21",
        "club-55",
    ]);
    let app = TestApp::spawn(env).await;
    let browser = Browser::open(&Screen::DESKTOP).await;
    let result = async {
        let b = &browser.client;
        browser.sign_in(&app, "viewer").await?;
        b.goto(&app.url("/clubs")).await?;
        let rows = "main table tbody tr";
        assert_eq!(b.find_all(Locator::Css(rows)).await?.len(), 50);
        assert_eq!(text(b, "#clubs-count").await?, "60 clubs; showing 1 to 50");
        b.find(Locator::Css("a[rel=next]")).await?.click().await?;
        b.wait().for_element(Locator::Css("a[rel=prev]")).await?;
        assert!(b.current_url().await?.as_str().ends_with("/clubs?page=2"));
        assert_eq!(b.find_all(Locator::Css(rows)).await?.len(), 10);
        assert_eq!(text(b, "#clubs-count").await?, "60 clubs; showing 51 to 60");

        // Search by slug: type and press Enter.
        let search = b.find(Locator::Css("input[type=search][name=q]")).await?;
        search.send_keys("club-0\u{E007}").await?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !b.current_url().await?.as_str().contains("q=club-0") {
            assert!(Instant::now() < deadline, "the search did not load");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        b.wait().for_element(Locator::Css("main table")).await?;
        assert_eq!(b.find_all(Locator::Css(rows)).await?.len(), 9);
        snap(b, "clubs-search").await;

        // Filter by group, then reload the address: the same clubs.
        b.goto(&app.url("/clubs")).await?;
        b.find(Locator::Css("select[name=group] option[value=region-east]"))
            .await?
            .click()
            .await?;
        b.find(Locator::Css("form[role=search] button[type=submit]"))
            .await?
            .click()
            .await?;
        b.wait()
            .for_element(Locator::XPath(
                "//p[@id='clubs-count'][contains(., '3 of 60')]",
            ))
            .await?;
        let address = b.current_url().await?;
        assert!(address.as_str().contains("group=region-east"), "{address}");
        b.goto(address.as_str()).await?;
        let slugs = js(
            b,
            "return Array.from(document.querySelectorAll('main table tbody tr')).map(tr => tr.id);",
        )
        .await?;
        assert_eq!(
            slugs,
            serde_json::json!(["club-club-07", "club-club-21", "club-club-55"])
        );
        snap(b, "clubs-group").await;

        // No club has failed a health check.
        b.goto(&app.url("/clubs?health=failed")).await?;
        assert!(text(b, "main").await?.contains("No club matches"));
        Ok::<_, CmdError>(())
    }
    .await;
    browser.close().await;
    result.unwrap();
}

/// Issue 12 points 6, 8, 9, 10, 11: the deploy form's picks (by version, by group, by
/// search), a group as the clubs to try first, the confirmation naming clubs and warning of
/// an older version, a double click queuing one job, Back landing on the question without a
/// resubmission, the one-time message, an unknown tag named.
#[tokio::test]
async fn the_deploy_form_picks_clubs_and_a_double_click_queues_one_job() {
    if !available() {
        return;
    }
    let env = small_world();
    env.ok(&[
        "club",
        "add",
        "d",
        "--webroot",
        env.webroot("d").to_str().unwrap(),
    ]);
    env.ok(&["deploy", "v2", "--club", "d"]);
    let app = TestApp::spawn(env).await;
    let browser = Browser::open(&Screen::DESKTOP).await;
    let result = async {
        let b = &browser.client;
        browser.sign_in(&app, "deployer").await?;

        // An unknown tag is named, and nothing is chosen for it.
        b.goto(&app.url("/deploy?tag=v9.9.9")).await?;
        assert!(text(b, "main .warning").await?.contains("There is no version v9.9.9"));
        let chosen = js(b, "return document.querySelector('select[name=tag]').value;").await?;
        assert_eq!(chosen, serde_json::json!(""));

        b.goto(&app.url("/deploy")).await?;
        let ticked = || async {
            let found = js(
                b,
                "return Array.from(document.querySelectorAll('input[name=clubs]:checked')).map(i => i.value);",
            )
            .await?;
            Ok::<_, CmdError>(serde_json::from_value::<Vec<String>>(found).unwrap())
        };
        // By version: the clubs on v2.
        b.find(Locator::Css("a[data-tick-release=v2]")).await?.click().await?;
        assert_eq!(ticked().await?, ["a", "d"]);
        b.find(Locator::Id("untick-all")).await?.click().await?;
        // By group.
        b.find(Locator::Css("a[data-tick-group=early-adopters]"))
            .await?
            .click()
            .await?;
        assert_eq!(ticked().await?, ["a", "c"]);
        b.find(Locator::Id("untick-all")).await?.click().await?;
        // By search: only the clubs shown are ticked.
        b.find(Locator::Id("club-search")).await?.send_keys("zermatt").await?;
        assert_eq!(text(b, "#clubs-shown").await?, "1 of 4 shown");
        b.find(Locator::Id("tick-shown")).await?.click().await?;
        assert_eq!(ticked().await?, ["c"]);
        snap(b, "deploy-picks").await;

        // Back to v1 for the clubs on v2, the early adopters first.
        b.find(Locator::Id("untick-all")).await?.click().await?;
        b.find(Locator::Css("select[name=tag] option[value=v1]")).await?.click().await?;
        b.find(Locator::Css("a[data-tick-release=v2]")).await?.click().await?;
        let canary = b.find(Locator::Css("input[name=canary]")).await?;
        canary.clear().await?;
        canary.send_keys("early-adopters").await?;
        b.find(Locator::Css("main form button[type=submit]")).await?.click().await?;
        let notice = wait_for_text(b, "main .notice", |t| !t.is_empty()).await?;
        assert!(notice.contains("2 clubs will move to"), "{notice}");
        assert!(notice.contains("a, d"), "the clubs are named: {notice}");
        assert!(notice.contains("older version"), "{notice}");
        // The group stands for its clubs among those ticked.
        assert!(notice.contains("First on a: "), "{notice}");
        snap(b, "deploy-confirm-older").await;

        // A double click queues one job; the job page says so once.
        let before = app.env.ok(&["jobs", "--json"]);
        let before: Vec<Value> = serde_json::from_str(&before).unwrap_or_default();
        js(
            b,
            "const button = document.querySelector('main form button[type=submit]'); \
             button.click(); button.click(); return true;",
        )
        .await?;
        b.wait().for_element(Locator::Id("job")).await?;
        let flash = text(b, ".flash").await?;
        assert!(flash.contains("2 clubs will move to v1: job #"), "{flash}");
        wait_for_status(b, "succeeded").await?;
        let after = app.env.ok(&["jobs", "--json"]);
        let after: Vec<Value> = serde_json::from_str(&after).unwrap_or_default();
        assert_eq!(after.len(), before.len() + 1, "one job was queued: {after:?}");

        // Back returns to the question (a GET): no "Confirm Form Resubmission".
        b.back().await?;
        b.wait()
            .for_element(Locator::XPath("//h1[starts-with(., 'Deploy v1')]"))
            .await?;
        assert_eq!(app.env.release_of("a"), app.env.release_name("v1"));
        Ok::<_, CmdError>(())
    }
    .await;
    browser.close().await;
    result.unwrap();
}

/// Issue 12 point 11: Cancel asks first and says what happened; an error page keeps the
/// navigation, and Back from it keeps what was typed; an unknown job is a plain 404 page.
#[tokio::test]
async fn cancelling_asks_first_and_error_pages_keep_navigation_and_input() {
    if !available() {
        return;
    }
    let app = TestApp::spawn(small_world()).await;
    let browser = Browser::open(&Screen::DESKTOP).await;
    let result = async {
        let b = &browser.client;
        browser.sign_in(&app, "admin").await?;

        // A job that cannot start yet: Cancel asks, then cancels.
        let lock = app.hold_worker().await;
        b.goto(&app.url("/clubs/a/rollback?app=main")).await?;
        b.find(Locator::Css("main form button[type=submit]"))
            .await?
            .click()
            .await?;
        b.wait()
            .for_element(Locator::Css("#cancel a"))
            .await?
            .click()
            .await?;
        let question = text(b, "main h1").await?;
        assert!(question.starts_with("Cancel job #"), "{question}");
        b.find(Locator::Css("main form button[type=submit]"))
            .await?
            .click()
            .await?;
        let flash = wait_for_text(b, ".flash", |t| !t.is_empty()).await?;
        assert!(flash.contains("was cancelled; it will not run"), "{flash}");
        drop(lock);

        // A refused form: the error page has the navigation; Back keeps the input.
        b.goto(&app.url("/clubs")).await?;
        let form = b
            .find(Locator::Css("form[action='/clubs'][method=post]"))
            .await?;
        form.find(Locator::Css("input[name=slug]"))
            .await?
            .send_keys("newclub")
            .await?;
        form.find(Locator::Css("input[name=name]"))
            .await?
            .send_keys("New Club")
            .await?;
        form.find(Locator::Css("input[name=webroot]"))
            .await?
            .send_keys("/etc/newclub")
            .await?;
        form.find(Locator::Css("button[type=submit]"))
            .await?
            .click()
            .await?;
        b.wait().for_element(Locator::Id("error-message")).await?;
        let message = text(b, "#error-message").await?;
        assert!(
            message.contains("outside the folder that holds the clubs' sites"),
            "{message}"
        );
        assert!(!message.contains("webroot_base"), "{message}");
        b.find(Locator::Css("header nav a[href='/clubs']")).await?;
        snap(b, "error-page").await;
        b.find(Locator::Id("go-back")).await?.click().await?;
        b.wait()
            .for_element(Locator::Css("form[action='/clubs'][method=post]"))
            .await?;
        let kept = js(
            b,
            "const f = document.querySelector(\"form[action='/clubs'][method=post]\"); \
             return [f.slug.value, f.name.value, f.webroot.value];",
        )
        .await?;
        assert_eq!(
            kept,
            serde_json::json!(["newclub", "New Club", "/etc/newclub"])
        );

        // No framework message for an address that is not a job.
        b.goto(&app.url("/jobs/abc")).await?;
        assert_eq!(text(b, "main h1").await?, "Not found");
        b.find(Locator::Css("header nav a[href='/jobs']")).await?;
        Ok::<_, CmdError>(())
    }
    .await;
    browser.close().await;
    result.unwrap();
}

/// Issue 12 points 12, 13, 14: times in the viewer's time zone; the dashboard follows a
/// deploy without a reload; the job page lists every step with its state, and "Put these
/// clubs back" returns exactly the clubs the deploy switched.
#[tokio::test]
async fn local_times_live_dashboard_and_putting_a_deploy_back() {
    if !available() {
        return;
    }
    let env = small_world();
    let app = TestApp::spawn(env).await;
    let screen = Screen {
        tz: "Asia/Tokyo",
        ..Screen::DESKTOP
    };
    let browser = Browser::open(&screen).await;
    let result = async {
        let b = &browser.client;
        browser.sign_in(&app, "admin").await?;

        // The audit log's times: Tokyo's, "… ago", the UTC time kept in the tooltip.
        b.goto(&app.url("/audit")).await?;
        let first = js(
            b,
            "const t = document.querySelector('main time'); \
             return [t.getAttribute('datetime'), t.textContent, t.title, \
                     Intl.DateTimeFormat().resolvedOptions().timeZone];",
        )
        .await?;
        let (at, shown, title) = (
            first[0].as_str().unwrap(),
            first[1].as_str().unwrap(),
            first[2].as_str().unwrap(),
        );
        assert_eq!(first[3], "Asia/Tokyo");
        let utc = chrono::DateTime::parse_from_rfc3339(at).unwrap();
        let tokyo = utc + chrono::Duration::hours(9);
        let clock = tokyo.format("%-I:%M").to_string();
        assert!(shown.contains(&clock), "{shown:?} is not Tokyo's {clock}");
        // Moments ago: "12 seconds ago", or "now" within the second.
        assert!(shown.contains("ago") || shown.starts_with("now"), "{shown:?}");
        assert!(!shown.contains("UTC") && title.ends_with("UTC"), "{shown:?} / {title:?}");

        // The dashboard follows a deploy made elsewhere, without a reload.
        b.goto(&app.url("/")).await?;
        b.execute("window.stillTheSamePage = true;", vec![]).await?;
        let before = text(b, "[data-live=releases]").await?;
        assert!(!before.contains("v3"), "{before}");
        let deploy = app.env.ok(&["deploy", "v3", "--club", "a", "--club", "b"]);
        assert!(deploy.contains("v3"), "{deploy}");
        let after = wait_for_text(b, "[data-live=releases]", |t| t.contains("v3")).await?;
        assert!(after.contains("v3"), "{after}");
        let same = js(b, "return window.stillTheSamePage === true;").await?;
        assert_eq!(same, Value::Bool(true), "the dashboard was reloaded");
        snap(b, "dashboard-live").await;

        // That deploy's job page: every step listed with its state; put its clubs back.
        b.goto(&app.url("/jobs")).await?;
        b.find(Locator::Css("main table tbody tr td a")).await?.click().await?;
        b.wait().for_element(Locator::Id("steps")).await?;
        let steps = js(
            b,
            "return Array.from(document.querySelectorAll('#steps li')).map(li => [li.dataset.step, li.className]);",
        )
        .await?;
        let steps: Vec<(String, String)> = serde_json::from_value(steps).unwrap();
        assert!(steps.contains(&("switch".into(), "step-done".into())), "{steps:?}");
        // A deploy to some clubs prunes nothing: the step shows as skipped.
        assert!(steps.contains(&("prune".into(), "step-skipped".into())), "{steps:?}");
        snap(b, "job-steps").await;
        b.find(Locator::Css("#put-back a")).await?.click().await?;
        let question = wait_for_text(b, "main .notice", |t| !t.is_empty()).await?;
        assert!(question.starts_with("2 clubs will go back"), "{question}");
        assert!(question.contains("(v3 → v2)") && question.contains("(v3 → v1)"), "{question}");
        snap(b, "put-back-confirm").await;
        b.find(Locator::Css("main form button[type=submit]")).await?.click().await?;
        b.wait().for_element(Locator::Id("job")).await?;
        wait_for_status(b, "succeeded").await?;
        assert_eq!(app.env.release_of("a"), app.env.release_name("v2"));
        assert_eq!(app.env.release_of("b"), app.env.release_name("v1"));
        assert_eq!(app.env.release_of("c"), app.env.release_name("v1"));
        // The jobs list's filter knows every kind of job, put-backs too (built from JobKind).
        b.goto(&app.url("/jobs?kind=put_back")).await?;
        let listed = js(
            b,
            "return [document.querySelector('select[name=kind] option:checked').textContent, \
             Array.from(document.querySelectorAll('main table tbody tr')).length, \
             document.querySelector('main table tbody').textContent];",
        )
        .await?;
        assert_eq!(listed[0], "Put back", "{listed}");
        assert_eq!(listed[1], 1, "{listed}");
        assert!(listed[2].as_str().unwrap().contains("put"), "{listed}");
        Ok::<_, CmdError>(())
    }
    .await;
    browser.close().await;
    result.unwrap();
}

/// Issue 12 point 7: an admin picks a CSV file on the clubs page, sees what will change (or
/// every bad line named), and imports it in one go.
#[tokio::test]
async fn an_admin_imports_clubs_from_a_csv_file_after_a_preview() {
    if !available() {
        return;
    }
    let env = TestEnv::new();
    env.add_clubs(&["a"]);
    let good = env.root.path().join("clubs.csv");
    let bad = env.root.path().join("bad.csv");
    std::fs::write(
        &good,
        format!(
            "slug,name,url,webroot\na,Club A renamed,,{}\nnew-1,New One,https://new-1.example/,{}\nnew-2,New Two,,{}\n",
            env.webroot("a").display(),
            env.webroot("new-1").display(),
            env.webroot("new-2").display()
        ),
    )
    .unwrap();
    std::fs::write(&bad, "slug,name,url,webroot\nBad/Slug,x,,/etc/x\n").unwrap();
    let app = TestApp::spawn(env).await;
    let browser = Browser::open(&Screen::DESKTOP).await;
    let result = async {
        let b = &browser.client;
        browser.sign_in(&app, "admin").await?;
        preview_import(b, &app, &bad).await?;
        let refused = text(b, "main").await?;
        assert!(
            refused.contains("Nothing can be imported from this file"),
            "{refused}"
        );
        assert!(refused.contains("Line 2:"), "{refused}");
        snap(b, "import-refused").await;

        preview_import(b, &app, &good).await?;
        let preview = text(b, "main .notice").await?;
        assert!(preview.contains("Add New One (new-1)"), "{preview}");
        assert!(preview.contains("Add New Two (new-2)"), "{preview}");
        assert!(preview.contains("Update Club A renamed (a)"), "{preview}");
        snap(b, "import-preview").await;
        // Nothing changed yet.
        assert!(!app.env.ok(&["club", "list"]).contains("new-1"));
        b.find(Locator::Css("form[action='/clubs/import'] button"))
            .await?
            .click()
            .await?;
        let flash = wait_for_text(b, ".flash", |t| !t.is_empty()).await?;
        assert!(flash.starts_with("Imported:"), "{flash}");
        let list = app.env.ok(&["club", "list"]);
        assert!(list.contains("new-1") && list.contains("new-2"), "{list}");
        assert!(text(b, "main table").await?.contains("Club A renamed"));
        Ok::<_, CmdError>(())
    }
    .await;
    browser.close().await;
    result.unwrap();
}

/// Picks `file` in the clubs page's import form (read into its text box by the page's script)
/// and asks for the preview.
async fn preview_import(
    b: &fantoccini::Client,
    app: &TestApp,
    file: &std::path::Path,
) -> Result<(), CmdError> {
    b.goto(&app.url("/clubs")).await?;
    b.find(Locator::Id("import-file"))
        .await?
        .send_keys(file.to_str().unwrap())
        .await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while js(b, "return document.getElementById('import-csv').value;")
        .await?
        .as_str()
        .unwrap_or_default()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "the file was not read");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    b.find(Locator::Css("form[action='/clubs/import/preview'] button"))
        .await?
        .click()
        .await?;
    b.wait().for_element(Locator::Css("main h1")).await?;
    Ok(())
}
