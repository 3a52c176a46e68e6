//! Issue 20, points 3 and on: the panel names clubs and jobs as staff know them, and says who
//! else is deploying, at hundreds of clubs.

use crate::helpers::TestEnv;
use crate::panel_glance::crowded_world;
use crate::web::{TestApp, job_id};

/// Point 3: a job's title names a count, the group picked and how many go first, never every
/// club ("deploy v3 to 12 clubs (group region-east), 3 first"), in the jobs list, on the job's
/// page and in the audit log; the confirmation names the group and its clubs by display name;
/// a job to a few clubs names them by display name.
#[tokio::test]
async fn a_jobs_title_names_a_count_a_group_and_the_first_clubs_by_display_name() {
    let app = TestApp::spawn_driven(crowded_world()).await;
    let admin = app.login("admin").await;
    let east: Vec<String> = (0..12).map(|i| format!("club-{i:03}")).collect();
    let mut fields = vec![
        ("app", "main"),
        ("tag", "v3"),
        ("target", "some"),
        ("canary_field", "1"),
        ("canary", "club-000, club-001, club-002"),
    ];
    fields.extend(east.iter().map(|s| ("clubs", s.as_str())));
    let confirm = app.confirm_text(&admin, &fields).await;
    assert!(
        confirm.contains("The clubs ticked are group <strong>region-east</strong>."),
        "{confirm}"
    );
    assert!(
        confirm.contains("First on <strong>Skiclub Kitzbühel 0, FC Andermatt 1921 1 and"),
        "{confirm}"
    );
    assert!(confirm.contains("Eishockeyclub Davos 10"), "{confirm}");
    assert!(
        !confirm.contains("club-010,") && !confirm.contains("club-010<"),
        "the confirmation names clubs by short name: {confirm}"
    );

    let response = app.post(&admin, "/deploy", &fields).await;
    let id = job_id(&response);
    let title = "deploy v3 to 12 clubs (group region-east), 3 first (main)";
    for path in ["/jobs".to_owned(), format!("/jobs/{id}")] {
        let page = app.page(&admin, &path).await;
        assert!(page.contains(title), "{path}: {page}");
        assert!(!page.contains("club-011"), "{path} lists the clubs: {page}");
    }
    let audit = app.page(&admin, "/audit?action=job.queued").await;
    assert!(
        audit.contains(&format!("admin asked for job #{id}: {title}")),
        "{audit}"
    );
    assert_eq!(app.run_job(id).await, "succeeded");

    // Not a whole group: no group named; a few clubs are named by display name.
    let few = [
        ("app", "main"),
        ("tag", "v3"),
        ("target", "some"),
        ("clubs", "club-100"),
        ("clubs", "club-101"),
    ];
    let confirm = app.confirm_text(&admin, &few).await;
    assert!(!confirm.contains("are group"), "{confirm}");
    let response = app.post(&admin, "/deploy", &few).await;
    let id = job_id(&response);
    let page = app.page(&admin, &format!("/jobs/{id}")).await;
    assert!(
        page.contains(
            "deploy v3 to Eishockeyclub Davos 100 and Snowboardvereinigung Obermattertal 101 (main)"
        ),
        "{page}"
    );
}

/// Point 14: while a deploy runs, the dashboard, the deploy form and the confirmation say
/// whose job it is, what it does, at which step and for how long, and that a deploy asked for
/// now will wait; an administrator is offered to stop it after the wave it is in.
#[tokio::test]
async fn a_running_deploy_is_said_on_the_dashboard_and_the_deploy_form() {
    let mut env = crate::helpers::TestEnv::new();
    env.add_clubs(&["a", "b"]);
    env.ok(&["deploy", "v1", "--all"]);
    env.config.build_commands = vec![crate::helpers::sh("sleep 4")];
    env.configure();
    let app = TestApp::spawn(env).await;
    let deployer = app.login("deployer").await;
    let admin = app.login("admin").await;
    let form = app.page(&admin, "/deploy").await;
    assert!(!form.contains("running-now"), "nothing runs yet: {form}");
    let id = job_id(
        &app.post(&deployer, "/deploy", &[("tag", "v2"), ("target", "all")])
            .await,
    );
    let building = format!(
        "Job #{id}: deploy v2 to all clubs (main)</a>, asked by deployer, is running: step 2 of \
         7 (Build the release), for "
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let dashboard = loop {
        let page = app.page(&admin, "/").await;
        if page.contains(&building) {
            break page;
        }
        assert!(std::time::Instant::now() < deadline, "never said: {page}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(dashboard.contains(" s.</p>"), "{dashboard}");
    let form = app.page(&admin, "/deploy").await;
    assert!(form.contains(&building), "{form}");
    assert!(form.contains("Yours will wait until it ends."), "{form}");
    let confirm = app
        .confirm_text(&admin, &[("tag", "v2"), ("target", "all")])
        .await;
    assert!(confirm.contains(&building), "{confirm}");
    assert!(
        confirm.contains("Yours will wait until it ends."),
        "{confirm}"
    );
    let page = app.page(&admin, &format!("/jobs/{id}")).await;
    assert!(page.contains("Stop after this wave…"), "{page}");
    let ask = app.page(&admin, &format!("/jobs/{id}/cancel")).await;
    assert!(
        ask.contains("clubs it has not reached are not touched"),
        "{ask}"
    );
    // The job ends before the test does (its build must not outlive the directories).
    let ended = || {
        let conn = &mut app.pool.get().unwrap();
        clubdeploy::db::jobs::by_id(conn, id)
            .unwrap()
            .unwrap()
            .status
            .is_finished()
    };
    while !ended() {
        assert!(std::time::Instant::now() < deadline, "the job never ended");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(!app.page(&admin, "/deploy").await.contains("running-now"));
}

/// Point 5 and point 7's dashboard: the job that failed and the clubs whose site failed come
/// first, in red, with what to do; clubs that await their first deploy are one grey line with
/// a button that ticks exactly them, not problems; versions are counts linking to the clubs
/// list filtered by them, not every club's name. A job like the failed one succeeding clears
/// it.
#[tokio::test]
async fn the_dashboard_leads_with_failures_and_counts_the_rest() {
    let mut env = crate::helpers::TestEnv::new();
    for slug in ["a", "b", "c", "d", "e"] {
        env.add_club(slug, &["--name", &format!("Club {}", slug.to_uppercase())]);
    }
    env.ok(&["deploy", "v1", "--club", "a", "--club", "b", "--club", "c"]);
    crate::panel_glance::sites_refuse(&mut env);
    env.ok(&["club", "url", "a", "http://a.example.org/"]);
    env.fails(&["deploy", "v2", "--club", "a"]);
    let app = TestApp::spawn(env).await;
    let admin = app.login("admin").await;
    let doctor = app.post(&admin, "/doctor", &[]).await;
    assert!(doctor.status().is_redirection(), "{}", doctor.status());
    let page = app.page(&admin, "/").await;
    let part = |id: &str| -> String {
        let start = page
            .find(&format!("id=\"{id}\""))
            .unwrap_or_else(|| panic!("no #{id}: {page}"));
        page[start..start + page[start..].find("</div>").unwrap()].to_owned()
    };
    let failure = part("last-failure");
    assert!(
        failure.contains("Job #2</a> (deploy v2 to Club A (main)) failed</strong>"),
        "{failure}"
    );
    assert!(failure.contains("What to do"), "{failure}");
    let unhealthy = part("unhealthy");
    assert!(
        unhealthy.contains("1 club failed its last health check"),
        "{unhealthy}"
    );
    assert!(
        unhealthy.contains(">Club A</a>: did not answer (connection refused)</li>"),
        "{unhealthy}"
    );
    assert!(unhealthy.contains("/clubs?health=failed"), "{unhealthy}");
    // Failures come before everything else.
    assert!(page.find("last-failure") < page.find("Running now"));
    assert!(page.find("unhealthy") < page.find("Running now"));
    // Clubs awaiting their first deploy: one grey line, no problem.
    assert!(
        page.contains("2 clubs wait for their first deploy."),
        "{page}"
    );
    assert!(
        !page.contains("does not exist or cannot be read"),
        "a folder not made yet is reported: {page}"
    );
    // Versions are counts with a link, not names.
    let v1 = app.env.release_name("v1");
    let link = format!("/clubs?app=main&#38;release={v1}");
    assert!(
        page.contains(&format!("<a href=\"{link}\">3 clubs</a>")),
        "{page}"
    );
    assert!(!page.contains("Club B, Club C"), "{page}");
    let listed = app.page(&admin, &link.replace("&#38;", "&")).await;
    for (name, shown) in [("Club A", true), ("Club B", true), ("Club D", false)] {
        assert_eq!(
            listed.contains(name),
            shown,
            "{name} on the v1 list: {listed}"
        );
    }
    // The grey line's button ticks exactly the clubs awaiting their first deploy.
    let form = app.page(&admin, "/deploy?app=main&release=(none)").await;
    for (slug, ticked) in [("a", false), ("c", false), ("d", true), ("e", true)] {
        let checkbox = format!("value=\"{slug}\" checked");
        assert_eq!(form.contains(&checkbox), ticked, "{slug}: {form}");
    }
    assert!(form.contains(">2 clubs ticked</span>"), "{form}");
    assert!(form.contains("awaiting their first deploy (2)"), "{form}");
    // A deploy that succeeds after it clears the failed one; a's site still failed.
    app.env.ok(&["deploy", "v2", "--club", "b"]);
    let page = app.page(&admin, "/").await;
    assert!(!page.contains("last-failure"), "{page}");
    assert!(page.contains("id=\"unhealthy\""), "{page}");
}

/// Point 5: the panel's installation check runs again soon after a job ends (here one the
/// command line ran), not only hourly.
#[tokio::test]
async fn the_installation_check_runs_again_after_a_job() {
    let mut env = crate::helpers::TestEnv::new();
    env.add_clubs(&["a", "b"]);
    env.config.doctor_every_secs = 3600;
    env.configure();
    let app = TestApp::spawn(env).await;
    let admin = app.login("admin").await;
    let waiting = "2 clubs have no link yet";
    let check = |shown: bool| {
        let (app, admin) = (&app, &admin);
        async move {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            loop {
                let page = app.page(admin, "/doctor").await;
                if page.contains(waiting) == shown {
                    return;
                }
                assert!(std::time::Instant::now() < deadline, "{page}");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    };
    check(true).await;
    app.env.ok(&["deploy", "v1", "--all"]);
    check(false).await;
}

/// Point 4: a version put back on a club is said where someone could deploy it there again
/// (the releases page, the deploy form, the confirmation), and deploying it to that club
/// again needs a tick on purpose, in the panel as on the command line (`--again`).
#[tokio::test]
async fn a_version_put_back_on_a_club_needs_a_tick_to_go_there_again() {
    let env = crate::helpers::TestEnv::new();
    env.add_club("a", &["--name", "Club Davos"]);
    env.add_club("b", &["--name", "Club Arosa"]);
    env.ok(&["deploy", "v1", "--all"]);
    env.ok(&["deploy", "v2", "--club", "a"]);
    env.ok(&["rollback", "a"]);
    let error = env.fails(&["deploy", "v2", "--club", "a"]);
    assert!(
        error.contains("v2 was put back on Club Davos by "),
        "{error}"
    );
    assert!(error.contains("--again"), "{error}");
    let app = TestApp::spawn_driven(env).await;
    let admin = app.login("admin").await;
    let said = "v2 was put back on Club Davos by cli:";
    let releases = app.page(&admin, "/releases").await;
    assert!(releases.contains(said), "{releases}");
    assert!(releases.contains("just now (job #3)"), "{releases}");
    let form = app.page(&admin, "/deploy?tag=v2").await;
    assert!(form.contains(said), "{form}");
    let to_a = [("tag", "v2"), ("target", "some"), ("clubs", "a")];
    let confirm = app.confirm_text(&admin, &to_a).await;
    assert!(confirm.contains(said), "{confirm}");
    assert!(
        confirm.contains("name=\"again\" value=\"1\" required"),
        "{confirm}"
    );
    // Elsewhere it was never put back: nothing to tick.
    let to_b = [("tag", "v2"), ("target", "some"), ("clubs", "b")];
    let confirm = app.confirm_text(&admin, &to_b).await;
    assert!(!confirm.contains("put back"), "{confirm}");
    // Without the tick: refused, nothing queued; with it, deployed.
    let refused = app.post(&admin, "/deploy", &to_a).await;
    assert_eq!(refused.status(), reqwest::StatusCode::CONFLICT);
    let text = refused.text().await.unwrap();
    assert!(text.contains("tick “Deploy it again”"), "{text}");
    assert!(app.run_pending_jobs().await.is_empty(), "a job was queued");
    let mut again = to_a.to_vec();
    again.push(("again", "1"));
    let id = job_id(&app.post(&admin, "/deploy", &again).await);
    assert_eq!(app.run_job(id).await, "succeeded");
    assert_eq!(app.env.release_of("a"), app.env.release_name("v2"));
    // Deployed on purpose, the mark is lifted.
    let releases = app.page(&admin, "/releases").await;
    assert!(!releases.contains(said), "{releases}");
}

/// A club office's installation: a dozen clubs with real names, a group that tries releases
/// first, all on v1 but the group on v2 (job #2, in two waves), two clubs awaiting their first
/// deploy.
pub fn a_club_office() -> TestEnv {
    let env = TestEnv::new();
    let clubs = [
        ("zermatt", "Skiclub Zermatt"),
        ("davos", "Eishockeyclub Davos"),
        ("arosa", "Schwimmverein Arosa"),
        ("kitzbuehel", "Skiclub Kitzbühel"),
        ("andermatt", "FC Andermatt 1921"),
        ("adelboden", "Tennisclub Adelboden-Lenk"),
        ("grindelwald", "Curling Club Grindelwald"),
        ("wengen", "Ski Club Wengen"),
        ("laax", "Snowboard Club Laax"),
        ("saas-fee", "Alpine Club Saas-Fee"),
    ];
    for (slug, name) in clubs {
        env.add_club(slug, &["--name", name]);
    }
    env.ok(&[
        "club",
        "group",
        "early-adopters",
        "zermatt",
        "davos",
        "arosa",
    ]);
    env.ok(&["deploy", "v1", "--all"]);
    env.ok(&[
        "deploy", "v2", "--club", "zermatt", "--club", "davos", "--club", "arosa", "--canary",
        "zermatt",
    ]);
    env.add_club(
        "obermatt",
        &["--name", "Snowboardvereinigung Obermattertal"],
    );
    env.add_club("chamonix", &["--name", "Club Alpin Chamonix"]);
    env
}

/// Point 7 at 1,000 clubs: the dashboard and the releases page count the clubs on each
/// version instead of naming them; the deploy form, which must list every club, weighs well
/// under the 280 KB it did (270 KB in this world before: a label of four data attributes per
/// club), and far less on the wire.
#[tokio::test]
async fn at_a_thousand_clubs_pages_count_and_the_deploy_form_stays_light() {
    let env = TestEnv::new();
    let mut csv = String::from("slug,name,webroot\n");
    for i in 0..1000 {
        let slug = format!("club-{i:04}");
        csv.push_str(&format!(
            "{slug},Skiclub Kitzbühel {i},{}\n",
            env.webroot(&slug).display()
        ));
    }
    let file = env.www.join("clubs.csv");
    std::fs::write(&file, csv).unwrap();
    env.ok(&["club", "import", file.to_str().unwrap()]);
    env.ok(&["deploy", "v1", "--all"]);
    let app = TestApp::spawn(env).await;
    let admin = app.login("admin").await;
    let size = |path: &'static str, encoding: &'static str| {
        let request = admin
            .get(app.url(path))
            .header("Accept-Encoding", encoding)
            .send();
        async move { request.await.unwrap().bytes().await.unwrap().len() }
    };
    for path in ["/", "/releases"] {
        let page = app.page(&admin, path).await;
        assert!(page.contains(">1000 clubs</a>"), "{path}: {page}");
        assert!(!page.contains("Kitzbühel 999"), "{path} names every club");
        assert!(size(path, "identity").await < 10_000, "{path}");
    }
    let plain = size("/deploy", "identity").await;
    let packed = size("/deploy", "gzip").await;
    assert!(plain < 200_000, "the deploy form weighs {plain} bytes");
    assert!(
        packed < 20_000,
        "the deploy form sends {packed} bytes compressed"
    );
}

/// Point 8: the audit filter speaks the staff's language: a club by display name or short
/// name (accents aside), what happened from a list in words, a date range; a deploy to many
/// clubs is one row with its clubs folded, not a row per club.
#[tokio::test]
async fn the_audit_log_is_filtered_in_words_and_folds_a_deploys_clubs() {
    let env = crowded_world();
    env.ok(&["rollback", "club-003"]);
    let app = TestApp::spawn(env).await;
    let admin = app.login("admin").await;
    let page = app.page(&admin, "/audit?kind=deploy").await;
    // The deploy to 240 clubs is one row (and the 60 of v2 another), their clubs folded.
    assert!(
        page.contains("cli:root put 240 clubs (main) on v1 (job #1)"),
        "{page}"
    );
    assert!(page.contains("<summary>240 clubs</summary>"), "{page}");
    assert!(
        page.contains("cli:root moved 60 clubs (main) from v1 to v2 (job #2)"),
        "{page}"
    );
    assert!(page.matches("<tr>").count() < 20, "{page}");
    assert!(
        !page.contains("signed in"),
        "a sign-in is no deploy: {page}"
    );
    // A club by its name typed without accents: its rows only, named by display name.
    let page = app
        .page(&admin, "/audit?club=kitzbuhel+120&kind=deploy")
        .await;
    assert!(
        page.contains("cli:root put Skiclub Kitzbühel 120 (main) on v1 (job #1)"),
        "{page}"
    );
    assert!(!page.contains("240 clubs"), "{page}");
    // What happened, in words.
    let page = app.page(&admin, "/audit?kind=roll-back").await;
    assert!(
        page.contains("rolled Schwimmverein Arosa 3 (main) back from"),
        "{page}"
    );
    assert!(!page.contains(" put "), "{page}");
    let form = app.page(&admin, "/audit").await;
    for words in ["Deploy", "Roll back", "Sign-in", "Staff changes"] {
        assert!(
            form.contains(&format!(">{words}</option>")),
            "{words}: {form}"
        );
    }
    // A date range: nothing before today.
    let yesterday = (chrono::Utc::now() - chrono::Duration::days(1)).format("%Y-%m-%d");
    let today = chrono::Utc::now().format("%Y-%m-%d");
    let page = app.page(&admin, &format!("/audit?until={yesterday}")).await;
    assert!(page.contains("No events match."), "{page}");
    let page = app
        .page(
            &admin,
            &format!("/audit?since={today}&until={today}&kind=roll-back"),
        )
        .await;
    assert!(page.contains("rolled Schwimmverein Arosa 3"), "{page}");
    // A club no one is called.
    let page = app.page(&admin, "/audit?club=Atlantis").await;
    assert!(page.contains("No club is called “Atlantis”"), "{page}");
}

/// Point 9: a club's page shows what it runs, its last health check and its history (versions,
/// how, by whom); an admin edits its display name, site address and groups there, each change
/// audited, and bad input changes nothing; the command line renames by the same rule.
#[tokio::test]
async fn a_club_is_edited_in_the_panel_and_its_page_shows_its_history() {
    let env = TestEnv::new();
    env.add_club("a", &["--name", "Club Davos"]);
    env.add_clubs(&["b"]);
    env.ok(&["deploy", "v1", "--all"]);
    env.ok(&["deploy", "v2", "--club", "a"]);
    env.ok(&["rollback", "a"]);
    let app = TestApp::spawn(env).await;
    let admin = app.login("admin").await;
    let page = app.page(&admin, "/clubs/a").await;
    let history = &page[page.find("id=\"history\"").expect("a history")..];
    let rows: Vec<&str> = history.split("<tr><td").skip(1).collect();
    assert_eq!(rows.len(), 3, "{history}");
    for (row, (from, to, how)) in rows.iter().zip([
        ("v2", "v1", "rolled back"),
        ("v1", "v2", "deploy"),
        ("no release", "v1", "deploy"),
    ]) {
        assert!(
            row.contains(&format!("data-label=\"From\">{from}</td>")),
            "{row}"
        );
        assert!(row.contains(&format!("<strong>{to}</strong>")), "{row}");
        assert!(row.contains(how) && row.contains("cli:root"), "{row}");
    }
    let clubs = app.page(&admin, "/clubs").await;
    assert!(
        clubs.contains("<a href=\"/clubs/a\">Club Davos</a>"),
        "{clubs}"
    );

    // Bad input: refused, nothing changed (not even the good name beside it).
    let bad = [
        ("name", "Eishockeyclub Davos"),
        ("app", "main"),
        ("url", ""),
        ("groups", "Bad Group!"),
    ];
    let refused = app.post(&admin, "/clubs/a", &bad).await;
    assert_eq!(refused.status(), reqwest::StatusCode::BAD_REQUEST);
    assert!(
        app.page(&admin, "/clubs/a")
            .await
            .contains("<h1>Club Davos")
    );
    let deployer = app.login("deployer").await;
    let forbidden = app.post(&deployer, "/clubs/a", &bad).await;
    assert_eq!(forbidden.status(), reqwest::StatusCode::FORBIDDEN);

    let good = [
        ("name", "Eishockeyclub Davos"),
        ("app", "main"),
        ("url", "http://davos.example.org/"),
        ("groups", "early-adopters, region-east"),
    ];
    let saved = app.post(&admin, "/clubs/a", &good).await;
    assert_eq!(saved.status(), reqwest::StatusCode::SEE_OTHER);
    let page = app.page(&admin, "/clubs/a").await;
    assert!(page.contains("<h1>Eishockeyclub Davos"), "{page}");
    assert!(page.contains("4 changes saved."), "{page}");
    assert!(
        page.contains("value=\"http://davos.example.org/\""),
        "{page}"
    );
    assert!(
        page.contains("value=\"early-adopters, region-east\""),
        "{page}"
    );
    let audit = app.page(&admin, "/audit?club=a&kind=clubs").await;
    for said in [
        "display name changed from &#34;Club Davos&#34; to &#34;Eishockeyclub Davos&#34;",
        "address set to http://davos.example.org/",
        "put Eishockeyclub Davos in group early-adopters",
        "put Eishockeyclub Davos in group region-east",
    ] {
        assert!(audit.contains(said), "{said}: {audit}");
    }
    // Out of one group, the same page.
    let fewer = [
        ("name", "Eishockeyclub Davos"),
        ("app", "main"),
        ("url", "http://davos.example.org/"),
        ("groups", "region-east"),
    ];
    app.post(&admin, "/clubs/a", &fewer).await;
    let audit = app.page(&admin, "/audit?club=a&kind=clubs").await;
    assert!(
        audit.contains("took Eishockeyclub Davos out of group early-adopters"),
        "{audit}"
    );
    // The command line renames by the same rule.
    let out = app.env.ok(&["club", "rename", "b", "Schwimmverein Arosa"]);
    assert!(
        out.contains("club b is called Schwimmverein Arosa now"),
        "{out}"
    );
    let error = app.env.fails(&["club", "rename", "b", "  "]);
    assert!(error.contains("empty"), "{error}");
}

/// Point 10: the import hint shows a header that works here (one application, or several);
/// a list to fill in and every club (the same columns) download as CSV, and the export imports
/// back changing nothing; a semicolon-separated list is read; the preview names clubs by
/// display name.
#[tokio::test]
async fn clubs_import_from_a_template_an_export_or_a_semicolon_list() {
    let env = TestEnv::new();
    env.add_club("a", &["--name", "Club Arosa"]);
    env.add_club("b", &["--name", "=HYPERLINK(\"x\")"]);
    let c = env.webroot("c").display().to_string();
    let app = TestApp::spawn_driven(env).await;
    let admin = app.login("admin").await;
    let clubs = app.page(&admin, "/clubs").await;
    assert!(
        clubs.contains("<code id=\"import-header\">slug,name,url,webroot</code>"),
        "{clubs}"
    );
    let template = app.page(&admin, "/clubs/import/template.csv").await;
    let mut lines = template.lines();
    assert_eq!(lines.next(), Some("slug,name,url,webroot"));
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("zermatt,Club Zermatt,https://zermatt.example.org/,")
    );
    let preview = app
        .post_text(&admin, "/clubs/import/preview", &[("csv", &template)])
        .await;
    assert!(
        preview
            .contains("Add <strong>Club Zermatt</strong> <span class=\"muted\">(zermatt)</span>"),
        "{preview}"
    );
    // The export: every club, the same columns, a formula made inert; it imports back as is
    // (but for the name made inert).
    let export = app.page(&admin, "/clubs/export.csv").await;
    let lines: Vec<&str> = export.lines().collect();
    assert_eq!(lines[0], "slug,name,url,webroot");
    assert!(lines[1].starts_with("a,Club Arosa,,"), "{export}");
    assert!(
        lines[2].starts_with("b,\"'=HYPERLINK(\"\"x\"\")\","),
        "{export}"
    );
    let again = format!("{}\n{}\n", lines[0], lines[1]);
    let preview = app
        .post_text(&admin, "/clubs/import/preview", &[("csv", &again)])
        .await;
    assert!(
        preview.contains("0 clubs added, 0 updated, 1 unchanged"),
        "{preview}"
    );
    // A list a spreadsheet saved with semicolons.
    let semicolons = format!("slug;name;webroot\nc;Club Chamonix;{c}\n");
    let preview = app
        .post_text(&admin, "/clubs/import/preview", &[("csv", &semicolons)])
        .await;
    assert!(
        preview.contains("Add <strong>Club Chamonix</strong> <span class=\"muted\">(c)</span>"),
        "{preview}"
    );
    let deployer = app.login("deployer").await;
    let refused = deployer
        .get(app.url("/clubs/export.csv"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), reqwest::StatusCode::FORBIDDEN);
}

/// Point 10 with several applications: the hint and the template name each one's columns.
#[tokio::test]
async fn the_import_hint_names_each_applications_columns() {
    let mut env = TestEnv::new();
    env.add_app("mobile");
    let app = TestApp::spawn_driven(env).await;
    let admin = app.login("admin").await;
    let header = "slug,name,url:main,webroot:main,url:mobile,webroot:mobile";
    let clubs = app.page(&admin, "/clubs").await;
    assert!(
        clubs.contains(&format!("<code id=\"import-header\">{header}</code>")),
        "{clubs}"
    );
    let template = app.page(&admin, "/clubs/import/template.csv").await;
    assert_eq!(template.lines().next(), Some(header));
    let preview = app
        .post_text(&admin, "/clubs/import/preview", &[("csv", &template)])
        .await;
    assert!(
        preview.contains("Add <strong>Club Zermatt</strong>"),
        "{preview}"
    );
}

/// Point 14: a running deploy stopped from the panel (*Stop after this wave…*) ends after the
/// wave it is in: the canary it switched stays on the new version, the clubs of the next wave
/// are not touched, and the stop is audited.
#[tokio::test]
async fn a_deploy_stopped_from_the_panel_ends_after_its_wave() {
    let mut env = TestEnv::new();
    env.add_clubs(&["a", "b", "c"]);
    env.ok(&["deploy", "v1", "--all"]);
    let (serving, _site) =
        crate::engine::checks_go_to_a_fake_site(&mut env, &["timeout_secs = 30"]);
    // The site still serves v1: the canary's check waits for it to serve v2.
    crate::engine::serve(&serving, &env, "v1");
    for slug in ["a", "b", "c"] {
        env.ok(&["club", "url", slug, &format!("http://{slug}.example.org/")]);
    }
    let app = TestApp::spawn(env).await;
    let admin = app.login("admin").await;
    let fields = [
        ("tag", "v2"),
        ("target", "all"),
        ("canary_field", "1"),
        ("canary", "a"),
    ];
    let id = job_id(&app.post(&admin, "/deploy", &fields).await);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let page = app.page(&admin, &format!("/jobs/{id}")).await;
        if page.contains("wave 1 of 2 (canary): a") && page.contains("Stop after this wave…") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{page}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let asked = app.post(&admin, &format!("/jobs/{id}/cancel"), &[]).await;
    assert_eq!(asked.status(), reqwest::StatusCode::SEE_OTHER);
    // The canary proves healthy on v2; the job stops before the next wave.
    crate::engine::serve(&serving, &app.env, "v2");
    let page = loop {
        let page = app.page(&admin, &format!("/jobs/{id}")).await;
        if page.contains("stopped at admin&#39;s request") {
            break page;
        }
        assert!(std::time::Instant::now() < deadline, "{page}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(page.contains("after wave 1 of 2"), "{page}");
    assert_eq!(app.env.release_of("a"), app.env.release_name("v2"));
    for slug in ["b", "c"] {
        assert_eq!(
            app.env.release_of(slug),
            app.env.release_name("v1"),
            "{slug} was touched"
        );
    }
    let audit = app.page(&admin, "/audit?kind=jobs").await;
    assert!(
        audit.contains(&format!("admin cancelled job #{id}")) && audit.contains("asked to stop"),
        "{audit}"
    );
}
