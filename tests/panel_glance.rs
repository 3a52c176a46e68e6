//! Issue 20: the panel tells the truth at a glance, in a real headless Chromium at desktop
//! (1280 px) and phone (390 px) width, with hundreds of clubs. Screenshots go to
//! `target/e2e-screenshots/` (`glance-<width>-<page>`).

use fantoccini::error::CmdError;
use serde_json::Value;

use crate::browser::{Browser, Screen, available, each_page};
use crate::helpers::TestEnv;
use crate::web::TestApp;

/// Club names as clubs have them: several words, accents, one long compound word.
const NAMES: &[&str] = &[
    "Skiclub Kitzbühel",
    "FC Andermatt 1921",
    "Tennisclub Adelboden-Lenk",
    "Schwimmverein Arosa",
    "Eishockeyclub Davos",
    "Snowboardvereinigung Obermattertal",
];

/// 240 clubs with realistic names, all on v1, 60 on v2 (a deploy naming each), a dozen in a
/// group; a failed job.
pub fn crowded_world() -> TestEnv {
    let mut env = TestEnv::new();
    let mut csv = String::from("slug,name,webroot\n");
    for i in 0..240 {
        let slug = format!("club-{i:03}");
        csv.push_str(&format!(
            "{slug},{} {i},{}\n",
            NAMES[i % NAMES.len()],
            env.webroot(&slug).display()
        ));
    }
    let file = env.www.join("clubs.csv");
    std::fs::write(&file, csv).unwrap();
    env.ok(&["club", "import", file.to_str().unwrap()]);
    env.ok(&["deploy", "v1", "--all"]);
    let first: Vec<String> = (0..60).map(|i| format!("club-{i:03}")).collect();
    let mut args = vec!["deploy", "v2"];
    for slug in &first {
        args.extend(["--club", slug.as_str()]);
    }
    env.ok(&args);
    let mut group = vec!["club", "group", "region-east"];
    group.extend(first[..12].iter().map(String::as_str));
    env.ok(&group);
    // A job that failed, with its reason in the jobs list.
    env.config.build_commands = vec![crate::helpers::sh(
        "echo 'composer: lock file out of date' >&2; exit 3",
    )];
    env.configure();
    env.fails(&["deploy", "v3", "--club", "club-001"]);
    env.config.build_commands = Vec::new();
    env.configure();
    env
}

/// The words of table cells the browser split inside (not after a hyphen or a slash) although
/// the word alone fits its cell: `[word, its width, the cell's width]`, at most 12.
const SPLIT_WORDS: &str = r#"
const bad = [];
const probe = document.createElement('span');
probe.style.whiteSpace = 'nowrap';
probe.style.position = 'absolute';
probe.style.visibility = 'hidden';
document.body.appendChild(probe);
for (const cell of document.querySelectorAll('main td, main th')) {
  if (cell.offsetParent === null) continue;
  const style = getComputedStyle(cell);
  const room = cell.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
  const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const re = /\S+/g;
    for (let m = re.exec(node.textContent); m; m = re.exec(node.textContent)) {
      const range = document.createRange();
      range.setStart(node, m.index);
      range.setEnd(node, m.index + m[0].length);
      const tops = new Set(Array.from(range.getClientRects())
        .filter(r => r.width > 0).map(r => Math.round(r.top)));
      if (tops.size < 2) continue;
      // A line may end after a hyphen or a slash (Adelboden-Lenk, a path): a word boundary;
      // but not inside a date or a release name (2026-12-03, v2-54105769).
      const word = m[0];
      const id = /\d{4}-\d\d-\d\d|-[0-9a-f]{8}\b/.test(word);
      const top = i => {
        const r = document.createRange();
        r.setStart(node, m.index + i);
        r.setEnd(node, m.index + i + 1);
        const rect = r.getClientRects()[0];
        return rect ? Math.round(rect.top) : null;
      };
      let inside = false;
      for (let i = 1; i < word.length; i++) {
        const [before, here] = [top(i - 1), top(i)];
        if (before !== null && here !== null && here !== before && (id || !'-/'.includes(word[i - 1]))) inside = true;
      }
      if (!inside) continue;
      probe.style.font = getComputedStyle(node.parentElement).font;
      probe.textContent = m[0];
      const width = probe.getBoundingClientRect().width;
      if (width <= room + 1) bad.push([m[0], Math.round(width), Math.round(room)]);
    }
  }
}
probe.remove();
return bad.slice(0, 12);
"#;

/// Point 1: on every page, at desktop and phone width, with 240 clubs, no table cell's word
/// is split over two lines when it would fit its cell whole ("succe eded", "Jo b",
/// "127. 0.0.1" before), and the page still fits its window.
#[tokio::test]
async fn tables_never_split_a_word_that_fits_at_desktop_and_phone_width() {
    if !available() {
        return;
    }
    let app = TestApp::spawn(crowded_world()).await;
    let pages = [
        ("dashboard", "/"),
        ("clubs", "/clubs"),
        ("releases", "/releases"),
        ("deploy", "/deploy"),
        (
            "deploy-confirm",
            "/deploy/confirm?app=main&tag=v2&target=all&canary_field=1&canary=",
        ),
        ("rollback-confirm", "/clubs/club-000/rollback?app=main"),
        ("jobs", "/jobs"),
        ("job", "/jobs/2"),
        ("failed-job", "/jobs/3"),
        ("audit", "/audit"),
        ("staff", "/staff"),
        ("opcache", "/opcache"),
        ("doctor", "/doctor"),
    ];
    for screen in [Screen::DESKTOP, Screen::PHONE] {
        let browser = Browser::open(&screen).await;
        let result = async {
            browser.sign_in(&app, "admin").await?;
            each_page(
                &browser,
                &app,
                &screen,
                &pages,
                "glance",
                async |b, path| {
                    let split: Value = b.execute(SPLIT_WORDS, vec![]).await?;
                    assert_eq!(
                        split,
                        serde_json::json!([]),
                        "{path} at {} px splits words that fit their cell ([word, width, cell])",
                        screen.width
                    );
                    let fits: Value = b
                        .execute(
                            "return document.documentElement.scrollWidth <= window.innerWidth;",
                            vec![],
                        )
                        .await?;
                    assert_eq!(
                        fits,
                        Value::Bool(true),
                        "{path} at {} px scrolls sideways",
                        screen.width
                    );
                    Ok(())
                },
            )
            .await?;
            Ok::<_, CmdError>(())
        }
        .await;
        browser.close().await;
        result.unwrap();
    }
}

/// The steps a job page lists that the job began, in the page's order.
fn steps_begun_on_page(page: &str) -> Vec<String> {
    page.split("<li class=\"step-")
        .skip(1)
        .filter_map(|li| {
            let tag = &li[..li.find('>')?];
            let name = tag.split("data-step=\"").nth(1)?.split('"').next()?;
            tag.contains("data-start=").then(|| name.to_owned())
        })
        .collect()
}

/// Point 13: for every kind of job that switches clubs, the job page lists its steps in the
/// order the job ran them (a put-back tested the configuration after switching before).
#[tokio::test]
async fn job_pages_list_steps_in_the_order_each_kind_of_job_runs_them() {
    let env = TestEnv::new();
    env.add_clubs(&["a", "b"]);
    env.ok(&["deploy", "v1", "--all"]);
    env.ok(&["deploy", "v2", "--all"]);
    env.ok(&["rollback", "a"]);
    env.queue_put_back(2);
    env.ok(&["prune"]);
    let app = TestApp::spawn(env).await;
    let admin = app.login("admin").await;
    for (id, kind) in [(2, "deploy"), (3, "rollback"), (4, "put_back")] {
        let job: Value =
            serde_json::from_str(&app.env.ok(&["job", &id.to_string(), "--json"])).unwrap();
        assert_eq!(job["kind"], kind, "{job}");
        let mut ran: Vec<String> = Vec::new();
        for event in job["events"].as_array().unwrap() {
            if let (Some("step"), Some(step)) = (event["kind"].as_str(), event["step"].as_str())
                && !ran.iter().any(|s| s == step)
            {
                ran.push(step.to_owned());
            }
        }
        let page = app.page(&admin, &format!("/jobs/{id}")).await;
        assert_eq!(steps_begun_on_page(&page), ran, "job #{id} ({kind})");
        assert!(ran.contains(&"switch".to_owned()), "job #{id}: {ran:?}");
    }
}

/// Point 2 (its last part): a job page watched live says when each step ended and how long
/// it took once, even for a step each wave runs again (switch, reload, health): `ended()` in
/// `static/job.js` appended a second " · ended … · took …" before.
#[tokio::test]
async fn a_live_job_page_says_each_steps_end_once_across_waves() {
    if !available() {
        return;
    }
    let mut env = TestEnv::new();
    env.add_clubs(&["a", "b", "c"]);
    env.ok(&["deploy", "v1", "--all"]);
    // The build takes long enough for the page to be watching when the waves run.
    env.config.build_commands = vec![crate::helpers::sh("sleep 2")];
    env.configure();
    let app = TestApp::spawn(env).await;
    let browser = Browser::open(&Screen::DESKTOP).await;
    let result = async {
        let b = &browser.client;
        watch_a_canary_deploy(&browser, &app, "succeeded", "glance-1280-live-job").await?;
        let times: Value = b
            .execute(
                "return Array.from(document.querySelectorAll('#steps li')).map(li => \
                   [li.dataset.step, li.querySelector('.step-times').textContent]);",
                vec![],
            )
            .await?;
        let times = times.as_array().unwrap();
        for row in times {
            let (step, said) = (row[0].as_str().unwrap(), row[1].as_str().unwrap());
            assert!(said.matches("ended").count() <= 1, "{step}: {said}");
            assert!(said.matches("took").count() <= 1, "{step}: {said}");
        }
        // The count is the whole job's, across both waves.
        let counted: Value = b
            .execute(
                "return document.getElementById('progress-text').textContent;",
                vec![],
            )
            .await?;
        assert_eq!(counted, "3 of 3 clubs on v2");
        // Nor does a finished job still offer to stop it.
        let stop: Value = b
            .execute("return document.getElementById('stop') !== null;", vec![])
            .await?;
        assert_eq!(stop, Value::Bool(false), "a finished job offers Stop");
        // The waves did run the switch twice, live.
        let log: Value = b
            .execute("return document.getElementById('log').textContent;", vec![])
            .await?;
        assert!(
            log.as_str().unwrap().matches("switch:").count() >= 2,
            "{log}"
        );
        Ok::<_, CmdError>(())
    }
    .await;
    browser.close().await;
    result.unwrap();
}

/// Signs in as admin, deploys v2 to all clubs with club a first (job #2, worked apart), and
/// watches its page live until the job is `status`; a screenshot `snap` of the end.
async fn watch_a_canary_deploy(
    browser: &Browser,
    app: &TestApp,
    status: &str,
    snap: &str,
) -> Result<(), CmdError> {
    let b = &browser.client;
    browser.sign_in(app, "admin").await?;
    app.env
        .ok(&["deploy", "v2", "--all", "--canary", "a", "--detach"]);
    b.goto(&app.url("/jobs/2")).await?;
    crate::browser::wait_for_status(b, status).await?;
    crate::browser::snap(b, snap).await;
    Ok(())
}

/// Point 2: a job's count is one honest sentence for the whole job. A deploy that reached
/// every club says what they run and how many already did ("3 of 3 clubs on v2 (1 already
/// was)", where the old page said "2 of 3 clubs switched" for a job that succeeded
/// everywhere), on its page and in its summary.
#[tokio::test]
async fn a_deploy_counts_every_club_it_reached_and_those_already_on_the_version() {
    let env = TestEnv::new();
    env.add_clubs(&["a", "b", "c"]);
    env.ok(&["deploy", "v1", "--all"]);
    env.ok(&["deploy", "v2", "--club", "b"]);
    let out = env.ok(&["deploy", "v2", "--all"]);
    assert!(out.contains("3 of 3 clubs on v2 (1 already was)"), "{out}");
    let app = TestApp::spawn(env).await;
    let admin = app.login("admin").await;
    let page = app.page(&admin, "/jobs/3").await;
    assert!(
        page.contains("<p id=\"progress-text\">3 of 3 clubs on v2 (1 already was)</p>"),
        "{page}"
    );
    assert!(page.contains("max=\"3\" value=\"3\""), "{page}");
    assert!(!page.contains("switched</p>"), "{page}");
}

/// A health check that finds nothing listening: every club's site refuses the connection.
pub fn sites_refuse(env: &mut TestEnv) {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    env.config.tables.push((
        "health".into(),
        vec![
            format!("connect_to = \"127.0.0.1:{port}\""),
            "timeout_secs = 1".into(),
        ],
    ));
    env.configure();
}

/// Point 2, a failed canary: its live page ends saying where the job stopped ("1 of 3 clubs
/// tried, 2 not reached") with the bar at a third, not full (the put-back of the canary
/// counted as the job's "1 of 1").
#[tokio::test]
async fn a_failed_canary_job_says_where_it_stopped_live_and_after() {
    if !available() {
        return;
    }
    let mut env = TestEnv::new();
    env.add_clubs(&["a", "b", "c"]);
    env.ok(&["deploy", "v1", "--all"]);
    sites_refuse(&mut env);
    for slug in ["a", "b", "c"] {
        env.ok(&["club", "url", slug, &format!("http://{slug}.example.org/")]);
    }
    env.config.build_commands = vec![crate::helpers::sh("sleep 2")];
    env.configure();
    let app = TestApp::spawn(env).await;
    let browser = Browser::open(&Screen::DESKTOP).await;
    let result = async {
        let b = &browser.client;
        watch_a_canary_deploy(&browser, &app, "failed", "glance-1280-failed-canary").await?;
        let bar: Value = b
            .execute(
                "var p = document.getElementById('progress'); \
                 return [p.value, p.max, document.getElementById('progress-text').textContent];",
                vec![],
            )
            .await?;
        assert_eq!(
            bar,
            serde_json::json!([1, 3, "1 of 3 clubs tried, 2 not reached"])
        );
        Ok::<_, CmdError>(())
    }
    .await;
    browser.close().await;
    result.unwrap();
    // A reload says the same.
    let admin = app.login("admin").await;
    let page = app.page(&admin, "/jobs/2").await;
    assert!(
        page.contains("<p id=\"progress-text\">1 of 3 clubs tried, 2 not reached</p>"),
        "{page}"
    );
    // Point 6: its summary says what happened in plain words; the technical line stays in
    // the log.
    let v1 = app.env.release_name("v1");
    let summary = format!(
        "a&#39;s site did not answer (connection refused), so it was put back on {v1}; b and \
         c were not touched"
    );
    let outcome = &page[page.find("id=\"outcome\"").unwrap()..];
    let outcome = &outcome[..outcome.find("</p>").unwrap()];
    assert!(outcome.contains(&summary), "{outcome}");
    assert!(!outcome.contains("os error"), "{outcome}");
    let log = &page[page.find("id=\"log\"").unwrap()..];
    assert!(log.contains("club a FAILED its health check"), "{log}");
    assert!(log.to_lowercase().contains("connection refused"), "{log}");
}

/// Point 15 (its panel parts): a club's row offers Deploy… first as the main button and Roll
/// back as a secondary one; on a phone a club's card does not start "Club: Club Chamonix"
/// (the name cell has no column label); the jobs filter's kinds and states read as words
/// ("Put back", "Undo adopt", "Succeeded").
#[tokio::test]
async fn club_rows_lead_with_deploy_cards_with_the_name_and_filters_speak_words() {
    let env = TestEnv::new();
    env.add_clubs(&["a"]);
    env.ok(&["deploy", "v1", "--all"]);
    env.ok(&["deploy", "v2", "--all"]);
    let app = TestApp::spawn(env).await;
    let admin = app.login("admin").await;
    let clubs = app.page(&admin, "/clubs").await;
    let row = &clubs[clubs.find("<tr id=\"club-a\">").expect("a's row")..];
    let row = &row[..row.find("</tr>").unwrap()];
    let deploy = row
        .find("<a class=\"button\" href=\"/deploy?app=main&amp;club=a\">Deploy…</a>")
        .unwrap_or_else(|| panic!("Deploy… is not the main button: {row}"));
    let back = row
        .find("<a class=\"button secondary\" href=\"/clubs/a/rollback?app=main\">Roll back to")
        .unwrap_or_else(|| panic!("Roll back is not a secondary button: {row}"));
    assert!(deploy < back, "{row}");
    assert!(
        row.starts_with("<tr id=\"club-a\">\n    <td class=\"name\">"),
        "{row}"
    );
    let jobs = app.page(&admin, "/jobs").await;
    for words in [
        "Put back",
        "Undo adopt",
        "Delete legacy copy",
        "Succeeded",
        "Failed",
    ] {
        assert!(
            jobs.contains(&format!(">{words}</option>")),
            "{words}: {jobs}"
        );
    }
}

/// Point 11: search ignores accents and case: "Kitzbuhel" finds Skiclub Kitzbühel in the
/// clubs list and in the deploy form (typed in a real browser), and "KITZBÜHEL" too.
#[tokio::test]
async fn search_finds_a_club_however_its_accents_are_typed() {
    let env = TestEnv::new();
    for (slug, name) in [("ski", "Skiclub Kitzbühel"), ("fc", "FC Andermatt 1921")] {
        env.add_club(slug, &["--name", name]);
    }
    env.ok(&["deploy", "v1", "--all"]);
    let app = TestApp::spawn(env).await;
    let admin = app.login("admin").await;
    for q in ["Kitzbuhel", "KITZB%C3%9CHEL", "kitzbühel"] {
        let found = app.page(&admin, &format!("/clubs?q={q}")).await;
        assert!(found.contains("<tr id=\"club-ski\">"), "{q}: {found}");
        assert!(!found.contains("<tr id=\"club-fc\">"), "{q}: {found}");
    }
    if !available() {
        return;
    }
    let browser = Browser::open(&Screen::DESKTOP).await;
    let result = async {
        let b = &browser.client;
        browser.sign_in(&app, "admin").await?;
        b.goto(&app.url("/deploy")).await?;
        b.find(fantoccini::Locator::Id("club-search"))
            .await?
            .send_keys("Kitzbuhel")
            .await?;
        let shown: Value = b
            .execute(
                "return Array.from(document.querySelectorAll('#club-picker .choices label.check')) \
                 .filter(c => !c.hidden).map(c => c.querySelector('input').value);",
                vec![],
            )
            .await?;
        assert_eq!(shown, serde_json::json!(["ski"]));
        Ok::<_, CmdError>(())
    }
    .await;
    browser.close().await;
    result.unwrap();
}

/// Point 7 (its compression): pages go out compressed to a browser that accepts it, several
/// times smaller; a live job page's event stream does not (each event must go out as it
/// comes).
#[tokio::test]
async fn pages_are_compressed_and_the_live_stream_is_not() {
    let env = TestEnv::new();
    let slugs: Vec<String> = (0..40).map(|i| format!("club-{i:02}")).collect();
    env.add_clubs(&slugs.iter().map(String::as_str).collect::<Vec<_>>());
    env.ok(&["deploy", "v1", "--all"]);
    let app = TestApp::spawn(env).await;
    let admin = app.login("admin").await;
    let get = |path: &str, encoding: &'static str| {
        admin
            .get(app.url(path))
            .header("Accept-Encoding", encoding)
            .send()
    };
    let plain = get("/clubs", "identity").await.unwrap();
    assert!(plain.headers().get("content-encoding").is_none());
    let plain = plain.bytes().await.unwrap().len();
    let packed = get("/clubs", "gzip").await.unwrap();
    assert_eq!(packed.headers()["content-encoding"], "gzip");
    let packed = packed.bytes().await.unwrap().len();
    assert!(packed * 4 < plain, "{packed} bytes compressed of {plain}");
    let stream = get("/jobs/1/events?after=0", "gzip, br").await.unwrap();
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let encoding = stream.headers().get("content-encoding");
    assert!(
        encoding.is_none_or(|e| e == "identity"),
        "the stream is compressed: {encoding:?}"
    );
    let body = stream.text().await.unwrap();
    assert!(body.contains("event: end"), "{body}");
}

/// Point 7 (the deploy form): with 240 clubs, *Next* stays in view at the top of the form and
/// after scrolling, at desktop and phone width; beside it the form says how many clubs are
/// ticked, and a pick ("every club on v2") or a tick updates it.
#[tokio::test]
async fn the_deploy_forms_next_stays_in_view_and_counts_the_clubs_ticked() {
    if !available() {
        return;
    }
    let app = TestApp::spawn(crowded_world()).await;
    for screen in [Screen::DESKTOP, Screen::PHONE] {
        let browser = Browser::open(&screen).await;
        let result = async {
            let b = &browser.client;
            browser.sign_in(&app, "admin").await?;
            b.goto(&app.url("/deploy")).await?;
            let in_view = "var r = document.querySelector('.sticky-next button') \
                           .getBoundingClientRect(); \
                           return r.top >= 0 && r.bottom <= window.innerHeight;";
            let counted = "return document.getElementById('clubs-ticked').textContent;";
            assert_eq!(b.execute(in_view, vec![]).await?, Value::Bool(true));
            assert_eq!(b.execute(counted, vec![]).await?, "0 clubs ticked");
            b.find(fantoccini::Locator::Css("[data-tick-release='v2']"))
                .await?
                .click()
                .await?;
            assert_eq!(b.execute(counted, vec![]).await?, "60 clubs ticked");
            b.execute(
                "window.scrollTo(0, document.body.scrollHeight / 2);",
                vec![],
            )
            .await?;
            crate::browser::snap(b, &format!("glance-{}-deploy-sticky", screen.width)).await;
            assert_eq!(b.execute(in_view, vec![]).await?, Value::Bool(true));
            b.find(fantoccini::Locator::Css(
                "input[name=clubs][value='club-100']",
            ))
            .await?
            .click()
            .await?;
            assert_eq!(b.execute(counted, vec![]).await?, "61 clubs ticked");
            Ok::<_, CmdError>(())
        }
        .await;
        browser.close().await;
        result.unwrap();
    }
}
