//! A deploy: fetch, build, preflight, then wave by wave switch, reload and prove healthy;
//! prune after a deploy to all clubs.

use super::*;

/// Deploys `tag` of `app` to the target clubs' webroots of it: fetch, build, preflight, then
/// wave by wave (the canaries first, then batches of `[rollout] batch_size`) switch, reload
/// and prove every switched club healthy; a failure stops the rollout where it is and follows
/// `[health] on_failure`. After a whole deploy to all clubs, prune that application's
/// releases. Returns a one-line summary.
pub fn deploy(
    job: &mut Job<'_>,
    app: &App,
    tag: &ReleaseTag,
    targets: &Targets,
    canary: Option<&[ClubSlug]>,
    rebuild: bool,
) -> anyhow::Result<String> {
    let all = *targets == Targets::All;
    let clubs = target_clubs(&mut *job.conn()?, app, targets)?;
    // A deploy to all clubs leaves legacy copies out (they must be adopted first); one named
    // on purpose is refused.
    let (clubs, legacy) = check_webroots(job.settings, app, clubs, all)?;
    for club in &legacy {
        job.progress.progress(&format!(
            "left out: {}'s webroot is a legacy copy; adopt it first",
            label(job.settings, club)
        ));
    }
    if clubs.is_empty() {
        bail!(
            "every club's webroot of {} is a legacy copy: adopt them first",
            app.name
        );
    }
    // `[rollout] canary` may name groups: each stands for its clubs.
    let configured =
        crate::db::groups::expand(&mut *job.conn()?, &job.settings.rollout.canary, None)?;
    let waves = waves(&configured, job.settings, &clubs, canary)?;
    let mirror = git::open_mirror(app)?;

    job.progress.step(Step::Fetch);
    let (commit, fetched) = mirror.ensure_tag(tag, job.progress)?;
    job.progress.progress(&format!(
        "tag {tag} is commit {} ({})",
        &commit[..8],
        if fetched { "fetched" } else { "already known" }
    ));
    let release = build(job, app, &mirror, tag, &commit, Wanted::Fresh { rebuild })?;
    job.host.stage(&release)?;

    let releases_dir = &app.releases_dir;
    let any_to_switch = clubs.iter().any(|club| {
        let on_disk = job.host.linked(club.webroot.as_ref(), releases_dir);
        !matches!(on_disk, Ok(Webroot::Release(name)) if name == release.name)
    });
    let reload = job.settings.reload.policy.reloads(targets.switch_scope());
    if reload && any_to_switch {
        preflight(job)?;
    }
    // The whole job's count across its waves.
    let mut count = SwitchRun::alone(clubs.len());
    let mut switched = 0;
    let mut reloaded_at = None;
    let mut unchecked = 0;
    let mut not_live = 0;
    let mut ignored = 0;
    for (n, wave) in waves.iter().enumerate() {
        job.stop_point(|| match switched {
            0 => "before any club was switched; nothing was changed".to_owned(),
            s => format!(
                "after wave {n} of {}: the {s} club{} it switched stay on {} (Put back offers \
                 to undo that); the other waves did not run",
                waves.len(),
                plural(s),
                release.name
            ),
        })?;
        let header = (waves.len() > 1).then(|| {
            let slugs: Vec<&str> = wave.clubs.iter().map(|c| c.slug.as_str()).collect();
            format!(
                "wave {} of {}{}: {}",
                n + 1,
                waves.len(),
                if wave.canary { " (canary)" } else { "" },
                slugs.join(", ")
            )
        });
        let done = switch_clubs(
            job,
            app,
            &wave.clubs,
            &release,
            SwitchKind::Deploy,
            None,
            &mut SwitchRun { header, ..count },
        )?;
        count.done += wave.clubs.len();
        switched += done.len();
        if done.is_empty() {
            continue;
        }
        let proving = will_prove(job.settings, &release, reload, &wave.clubs);
        if reload {
            reload_apache(job, !proving)?;
            reloaded_at = Some(Instant::now());
        }
        let checked = check_health(job, &release, &done, &wave.clubs, reload)?;
        unchecked += checked.unchecked;
        not_live += checked.not_live;
        if checked.failed.is_empty() {
            continue;
        }
        let not_reached: usize = waves[n + 1..].iter().map(|w| w.clubs.len()).sum();
        match job.settings.health.on_failure {
            OnFailure::Ignore => ignored += checked.failed.len(),
            on_failure => {
                return Err(health_failure(
                    job,
                    app,
                    &release,
                    &checked.failed,
                    &clubs,
                    not_reached,
                    on_failure,
                ));
            }
        }
    }
    let mut summary = format!(
        "{switched} of {} club{} switched to {}",
        clubs.len(),
        plural(clubs.len()),
        release.name
    );
    if reloaded_at.is_some() {
        summary.push_str("; Apache reloaded");
    }
    if unchecked > 0 {
        summary.push_str(&format!(
            "; {unchecked} club{} not checked (no address)",
            plural(unchecked)
        ));
    }
    if not_live > 0 {
        summary.push_str(&format!(
            "; {not_live} club{} switched, not live yet (no reload)",
            plural(not_live)
        ));
    }
    if ignored > 0 {
        summary.push_str(&format!(
            "; {ignored} club{} failed {} health check (ignored: on_failure = \"ignore\")",
            plural(ignored),
            if ignored == 1 { "its" } else { "their" }
        ));
    }
    if all {
        let deleted = prune_releases(job, app, reloaded_at)?;
        summary.push_str(&format!(
            "; {deleted} old release{} deleted",
            plural(deleted)
        ));
    }
    Ok(summary)
}

/// Ends a deploy whose clubs `failed` their health check: with `rollback`, puts them back on
/// the release each ran before (one reload; the release is marked bad for them) and checks
/// them again; with `stop`, leaves them (`clubs`: the job's). Returns the job's error: a
/// plain summary.
pub(super) fn health_failure(
    job: &mut Job<'_>,
    app: &App,
    release: &Release,
    failed: &[(ClubApp, switches::NewSwitch)],
    clubs: &[ClubApp],
    not_reached: usize,
    on_failure: OnFailure,
) -> anyhow::Error {
    let (n, total) = (failed.len(), clubs.len());
    let failing = format!(
        "{n} of {total} club{} failed {} health check",
        plural(total),
        if n == 1 { "its" } else { "their" }
    );
    let reached = if not_reached > 0 {
        format!(
            "; the rollout stopped: {not_reached} club{} not reached {} not touched",
            plural(not_reached),
            if not_reached == 1 { "was" } else { "were" }
        )
    } else {
        String::new()
    };
    if on_failure == OnFailure::Stop {
        let now = running(job, app, release, clubs);
        return anyhow::anyhow!(
            "{failing} and {} left on {} (on_failure = \"stop\"); {now} run {}{reached}",
            if n == 1 { "was" } else { "were" },
            release.name,
            release.name
        );
    }
    match put_back(job, app, release, failed, SwitchKind::HealthRollback) {
        Ok(back) => {
            let now = running(job, app, release, clubs);
            anyhow::anyhow!("{failing}{back}; {now} run {}{reached}", release.name)
        }
        Err(e) => e.context(format!("{failing}; putting them back failed{reached}")),
    }
}
