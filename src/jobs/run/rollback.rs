//! A rollback of one club to its previous release or a chosen one.

use super::*;

/// Returns a club's webroot of `app` to the release it ran before (skipping releases it was
/// rolled back from), or to `to` (a release name or a tag), rebuilding the release if it was
/// pruned.
pub fn rollback(
    job: &mut Job<'_>,
    app: &App,
    slug: &ClubSlug,
    to: Option<&str>,
) -> anyhow::Result<String> {
    let club = club_named(job, app, slug)?;
    check_webroots(job.settings, app, vec![club.clone()], false)?;
    let current = match job.host.inspect(club.webroot.as_ref(), &app.releases_dir)? {
        Webroot::Release(name) => name,
        _ => bail!(
            "club {slug} does not run a release of {} now, so there is nothing to roll back",
            app.name
        ),
    };
    let mirror = git::open_mirror(app)?;
    let (target, commit) = match to {
        Some(to) => chosen_release(job, app, &mirror, to)?,
        None => previous_release(&mut *job.conn()?, &club, &current)?,
    };
    if target == current {
        bail!("club {slug} already runs {target}");
    }
    let release = build(
        job,
        app,
        &mirror,
        &target.tag(),
        &commit,
        Wanted::Exactly(&target),
    )?;
    let reload = preflight_single_club(job)?;
    let clubs = std::slice::from_ref(&club);
    let done = switch_clubs(
        job,
        app,
        clubs,
        &release,
        SwitchKind::Rollback,
        Some(&current),
        &mut SwitchRun::new(JobKind::Rollback, clubs.len(), None),
    )?;
    let mut summary = format!("club {slug} rolled back from {current} to {}", release.name);
    let proving = will_prove(job.settings, &release, reload, clubs);
    if reload {
        reload_apache(job, !proving)?;
        summary.push_str("; Apache reloaded");
    }
    // A rollback is checked like a deploy; a failure is reported, not rolled back again.
    let checked = check_health(job, &release, &done, clubs, reload)?;
    if !checked.failed.is_empty() {
        bail!(
            "{summary}, but it failed its health check on {} (see the log)",
            release.name
        );
    }
    if checked.unchecked > 0 {
        summary.push_str("; not checked (no address)");
    }
    if checked.not_live > 0 {
        summary.push_str("; switched, not live yet (no reload)");
    }
    Ok(summary)
}

/// The rollback target when none is named: the newest release in the club's history that it
/// does not run now and was not rolled back from.
pub(super) fn previous_release(
    conn: &mut Conn,
    club: &ClubApp,
    current: &ReleaseName,
) -> anyhow::Result<(ReleaseName, String)> {
    if let Some(switch) = switches::previous(conn, club.club_id, &club.app, current.as_str())? {
        return Ok((ReleaseName::parse(&switch.to_release)?, switch.commit_id));
    }
    bail!(
        "club {} has no earlier release of {} to roll back to; name one with --to",
        club.slug,
        club.app
    )
}

/// A release named by `--to`: a release name known on disk or in the history, or a tag.
pub(super) fn chosen_release(
    job: &mut Job<'_>,
    app: &App,
    mirror: &Mirror,
    to: &str,
) -> anyhow::Result<(ReleaseName, String)> {
    if let Ok(name) = ReleaseName::parse(to) {
        if let Some(found) = release::read(&app.releases_dir.join(to), &name) {
            return Ok((name, found.manifest.commit));
        }
        if let Some(commit) = switches::commit_of(&mut *job.conn()?, app.name.as_str(), to)? {
            return Ok((name, commit));
        }
    }
    let tag = ReleaseTag::parse(to).map_err(|_| {
        anyhow::anyhow!("{to:?} is neither a release (e.g. v2.4.1-3f2a9c1d) nor a tag")
    })?;
    job.progress.step(Step::Fetch);
    let (commit, _) = mirror.ensure_tag(&tag, job.progress)?;
    Ok((ReleaseName::new(&tag, &commit)?, commit))
}
