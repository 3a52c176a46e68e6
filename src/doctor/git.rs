//! git: each application's repository answers; tags that cannot be deployed.

use super::*;

pub(super) fn git(settings: &Settings, report: &mut Report) {
    for app in settings.apps() {
        let skipped = crate::pipeline::git::open_mirror(app)
            .and_then(|mirror| mirror.skipped_tags())
            .unwrap_or_default();
        if let Some(listed) = crate::pipeline::git::skipped_listed(&skipped) {
            report.add(
                "git",
                Level::Warning,
                format!("{}: {listed}", app.name),
                "give each commit to deploy a tag clubdeploy can use (git tag NEW OLD; git push \
                 origin NEW), then fetch the tags",
            );
        }
        match crate::pipeline::fetch::ls_remote(&app.repo_url, &app.git) {
            Ok(tags) => report.ok(
                "git",
                format!(
                    "the repository of {} answers ({} tag{})",
                    app.name,
                    tags,
                    if tags == 1 { "" } else { "s" }
                ),
            ),
            Err(e) => report.add(
                "git",
                Level::Problem,
                format!(
                    "the repository of {} ({}) cannot be read: {e:#}",
                    app.name,
                    app.repo_url.redacted()
                ),
                "check the address, the deploy key and known_hosts ([git]) as the service user",
            ),
        }
    }
}
