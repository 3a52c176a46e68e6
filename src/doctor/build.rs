//! Who build commands run as: a user of their own (`build_user`), or the service itself.

use super::{Level, Report, user_name};
use crate::config::Settings;
use crate::pipeline::build_user::BuildUser;

/// Whether a tag's build script could read the service's database and keys: it can when
/// build commands or checks run as the service; with `build_user`, that the user is there
/// and shares build folders with the service.
pub(super) fn build_user(settings: &Settings, report: &mut Report) {
    let builds = settings
        .apps()
        .iter()
        .any(|app| !app.build.commands.is_empty() || app.build.check.is_some());
    let Some(name) = &settings.build_user else {
        if builds {
            report.add(
                "build",
                Level::Warning,
                format!(
                    "build commands and checks run as the service's user ({}): a tag's build \
                     script can read the database, audit.key and probe.key, and print them \
                     into a job's log",
                    user_name(super::me())
                ),
                "set build_user to a user for builds alone (the package makes \
                 clubdeploy-build, with the sudoers rule that lets the service run its build \
                 steps as it)",
            );
        }
        return;
    };
    match BuildUser::look_up(name).and_then(|user| user.shares_group().map(|()| user)) {
        Ok(user) => report.ok(
            "build",
            format!(
                "build commands and checks run as {name} (uid {}), not as the \
                 service",
                user.account.uid
            ),
        ),
        Err(e) => report.add("build", Level::Problem, format!("{e:#}"), ""),
    }
}
