//! Issue 20, points 3 and on: the panel names clubs and jobs as staff know them, and says who
//! else is deploying, at hundreds of clubs.

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
