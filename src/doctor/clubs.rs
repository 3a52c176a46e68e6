//! Clubs: links changed by hand, legacy copies, clubs awaiting their first deploy, releases
//! prune would delete.

use super::*;

pub(super) fn clubs(
    settings: &Settings,
    statuses: &[ClubStatus],
    unused: &Unused,
    report: &mut Report,
) {
    let mut fine = true;
    // Clubs that await their first deploy: one line per application, not one per club.
    for app in settings.apps() {
        let waiting: Vec<&str> = statuses
            .iter()
            .filter(|c| c.no_link_yet && c.app == app.name.as_str())
            .map(|c| c.slug.as_str())
            .collect();
        if waiting.is_empty() {
            continue;
        }
        fine = false;
        let shown: Vec<&str> = waiting.iter().take(5).copied().collect();
        let more = waiting.len() - shown.len();
        report.add(
            "clubs",
            Level::Warning,
            format!(
                "{} club{} {} no link{} yet ({}{}): {} their first deploy",
                waiting.len(),
                if waiting.len() == 1 { "" } else { "s" },
                if waiting.len() == 1 { "has" } else { "have" },
                if settings.several_apps() {
                    format!(" of {}", app.name)
                } else {
                    String::new()
                },
                shown.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                },
                if waiting.len() == 1 {
                    "it awaits"
                } else {
                    "they await"
                }
            ),
            if settings.several_apps() {
                format!("clubdeploy deploy <tag> --app {} --all", app.name)
            } else {
                "clubdeploy deploy <tag> --all".to_owned()
            },
        );
    }
    for club in statuses.iter().filter(|c| !c.no_link_yet) {
        let label = if settings.several_apps() {
            format!("club {}'s {}", club.slug, club.app)
        } else {
            format!("club {}", club.slug)
        };
        if club.legacy {
            fine = false;
            report.add(
                "clubs",
                Level::Warning,
                format!(
                    "{label} still runs its own copy of the site ({}), which deploys cannot switch",
                    club.webroot
                ),
                format!("adopt it: clubdeploy adopt {} <tag>", club.slug),
            );
        } else if let Some(problem) = &club.problem {
            fine = false;
            report.add(
                "clubs",
                Level::Problem,
                format!("{label}: {problem}"),
                format!("deploy to it: clubdeploy deploy <tag> --club {}", club.slug),
            );
        } else if club.drift {
            fine = false;
            report.add(
                "clubs",
                Level::Warning,
                format!(
                    "{label}'s link was changed by hand: it runs {}, clubdeploy last put {} there",
                    club.release.as_deref().unwrap_or("nothing"),
                    club.recorded_release.as_deref().unwrap_or("nothing")
                ),
                "deploy to it again, or leave it if that was meant",
            );
        }
    }
    for (app, idle) in unused {
        if !idle.is_empty() {
            fine = false;
            let bytes: u64 = idle.iter().filter_map(|(_, b)| *b).sum();
            report.add(
                "clubs",
                Level::Warning,
                format!(
                    "{} built release{} of {app} ({}) no club runs or would roll back to, \
                     beyond the keep_releases = {} kept",
                    idle.len(),
                    if idle.len() == 1 { "" } else { "s" },
                    crate::service::opcache::mb(bytes),
                    settings.keep_releases
                ),
                "clubdeploy prune",
            );
        }
    }
    if fine {
        report.ok(
            "clubs",
            format!(
                "{} webroot{} as clubdeploy left {}",
                statuses.len(),
                if statuses.len() == 1 { "" } else { "s" },
                if statuses.len() == 1 { "it" } else { "them" }
            ),
        );
    }
}
