//! Putting a deploy's clubs back on what each ran before it.

use super::*;
use crate::service::preview::still_switched;

/// Switches the clubs deploy job `of` switched, those still on the release it gave them, back
/// to the release each ran before (marking it bad for them, as a rollback does), with one
/// reload and a health check: of them only `confirmed`, the clubs staff were shown, where the
/// job names them. Clubs moved since are left as they are, and said so.
pub fn put_back_job(
    job: &mut Job<'_>,
    app: &App,
    of: i32,
    confirmed: Option<&[ClubSlug]>,
) -> anyhow::Result<String> {
    let (switched, clubs) = {
        let mut conn = job.conn()?;
        (
            switches::of_job(&mut conn, of)?,
            crate::db::clubs::webroots(&mut conn, Some(app.name.as_str()))?,
        )
    };
    let (mut still, moved) = still_switched(app, &switched, &clubs)?;
    if let Some(confirmed) = confirmed {
        // A club staff were not shown (switched back since, then again) is not theirs to move.
        let shown = |club: &ClubApp| confirmed.iter().any(|c| c.as_str() == club.slug);
        for (club, _) in still.iter().filter(|(club, _)| !shown(club)) {
            job.progress.progress(&format!(
                "{} was not among the clubs confirmed to go back: left as it is",
                label(job.settings, club)
            ));
        }
        still.retain(|(club, _)| shown(club));
    }
    for club in &moved {
        job.progress.progress(&format!(
            "{} has moved on since job #{of}: left as it is",
            label(job.settings, club)
        ));
    }
    let Some((release, back)) = to_put_back(job, app, still)? else {
        bail!(
            "none of the clubs job #{of} switched still runs what it gave them; nothing was changed"
        );
    };
    let run = SwitchRun::new(JobKind::PutBack, back.len(), None);
    let words = put_back(job, app, &release, &back, SwitchKind::Rollback, run)?.said();
    Ok(format!(
        "{} switched by job #{of} left {}{words}",
        crate::domain::count(back.len(), "club"),
        release.name
    ))
}

/// Puts back the clubs of an interrupted deploy whose health check never ended (`wave`: each
/// with the deploy's switch), as a failed health check does: on the release each ran before,
/// that release marked bad for them, one reload and a check. The end of the sentence saying so.
pub fn put_back_unproven(
    job: &mut Job<'_>,
    app: &App,
    wave: crate::service::preview::StillSwitched,
) -> anyhow::Result<String> {
    match to_put_back(job, app, wave)? {
        Some((release, back)) => {
            let run = SwitchRun::within(back.len());
            Ok(put_back(job, app, &release, &back, SwitchKind::HealthRollback, run)?.said())
        }
        None => Ok(String::new()),
    }
}

/// Each club going back, with its switch back.
type Backs = Vec<(ClubApp, switches::NewSwitch)>;

/// The release `still` (clubs, each with the deploy's switch) was switched to, and each
/// club's switch back; `None` when there are none.
fn to_put_back(
    job: &Job<'_>,
    app: &App,
    still: crate::service::preview::StillSwitched,
) -> anyhow::Result<Option<(Release, Backs)>> {
    let Some(to) = still.first().map(|(_, switch)| switch.to_release.clone()) else {
        return Ok(None);
    };
    let back: Vec<(ClubApp, switches::NewSwitch)> = still
        .into_iter()
        .map(|(club, switch)| {
            let new = switches::NewSwitch {
                club_id: club.club_id,
                app: app.name.to_string(),
                from_release: switch.from_release,
                to_release: switch.to_release,
                commit_id: switch.commit_id,
                kind: switch.kind,
                actor: job.actor.to_owned(),
                switched_at: db::now(),
                job_id: Some(job.id),
            };
            (club, new)
        })
        .collect();
    let name = ReleaseName::parse(&to)?;
    let release = release::read(&app.releases_dir.join(name.as_str()), &name)
        .with_context(|| format!("{name} is no longer built; nothing was changed"))?;
    Ok(Some((release, back)))
}
