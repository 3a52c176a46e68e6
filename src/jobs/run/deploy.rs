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
    let mut count = SwitchRun::new(JobKind::Deploy, clubs.len(), Some(tag));
    let mut reloaded_at = None;
    let mut unchecked = 0;
    let mut not_live = 0;
    let mut ignored = 0;
    for (n, wave) in waves.iter().enumerate() {
        job.stop_point(|| match count.switched() {
            0 => "before any club was switched; nothing was changed".to_owned(),
            s => format!(
                "after wave {n} of {}: the {s} club{} it switched stay on {} (Put back offers \
                 to undo that); the other waves did not run",
                waves.len(),
                plural(s),
                release.name
            ),
        })?;
        count.header = (waves.len() > 1).then(|| {
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
            &mut count,
        )?;
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
        match job.settings.health.on_failure {
            OnFailure::Ignore => ignored += checked.failed.len(),
            on_failure => {
                let not_reached: Vec<ClubApp> = waves[n + 1..]
                    .iter()
                    .flat_map(|w| w.clubs.clone())
                    .collect();
                return Err(health_failure(
                    job,
                    app,
                    &release,
                    &checked,
                    &clubs,
                    &not_reached,
                    on_failure,
                ));
            }
        }
    }
    // The count a finished job's page says too.
    let mut summary = count.words(JobStatus::Succeeded);
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

/// Ends a deploy whose clubs failed their health check (`checked`): with `rollback`, puts
/// them back on the release each ran before (one reload; the release is marked bad for them)
/// and checks them again; with `stop`, leaves them. Returns the job's error: a summary in
/// plain words ("Schwimmverein Arosa's site did not answer (connection refused), so it was
/// put back on v1-…; FC Andermatt and Adelboden were not touched"), the job's clubs
/// (`clubs`) only, by display name; the technical lines stay in the log.
pub(super) fn health_failure(
    job: &mut Job<'_>,
    app: &App,
    release: &Release,
    checked: &Checked,
    clubs: &[ClubApp],
    not_reached: &[ClubApp],
    on_failure: OnFailure,
) -> anyhow::Error {
    let failed = &checked.failed;
    let n = failed.len();
    let failures = failures_in_words(job.settings, checked, clubs.len());
    let it = if n == 1 { "it was" } else { "they were" };
    let untouched = match not_reached.len() {
        0 => String::new(),
        left => {
            let names: Vec<&str> = not_reached.iter().map(|c| c.name.as_str()).collect();
            let were = if left == 1 { "was" } else { "were" };
            format!(
                "; {} {were} not touched",
                crate::domain::named(&names, NAMED)
            )
        }
    };
    // The job's other clubs that run the release (earlier waves, or already did).
    let others: Vec<ClubApp> = clubs
        .iter()
        .filter(|c| !failed.iter().any(|(f, _)| f.club_id == c.club_id))
        .cloned()
        .collect();
    let runs = |names: Vec<String>| match names.len() {
        0 => String::new(),
        k => format!(
            "; {} {} {}",
            crate::domain::named(&names, NAMED),
            if k == 1 { "runs" } else { "run" },
            release.name
        ),
    };
    if on_failure == OnFailure::Stop {
        let now = runs(running(job, app, release, &others));
        return anyhow::anyhow!(
            "{failures}, and {it} left on {} (on_failure = \"stop\"){now}{untouched}",
            release.name,
        );
    }
    let run = SwitchRun::within(n);
    match put_back(job, app, release, failed, SwitchKind::HealthRollback, run) {
        Ok(back) => {
            let now = runs(running(job, app, release, &others));
            let onto = back
                .onto()
                .map_or_else(String::new, |o| format!(", so {it} {o}"));
            let stranded = back.stranded();
            anyhow::anyhow!("{failures}{onto}{stranded}{now}{untouched}")
        }
        Err(e) => e.context(format!(
            "{failures}; putting {} back failed{untouched}",
            if n == 1 { "it" } else { "them" }
        )),
    }
}

/// The failures of `checked` in plain words, the clubs that failed alike together: "FC
/// Andermatt's site did not answer (connection refused)", "the sites of Arosa and Davos
/// answered with an error (HTTP 500)"; led by the count when there are more than
/// [`NAMED`] ("30 of 30 clubs failed their health check: …"; `total`: the job's clubs).
fn failures_in_words(settings: &Settings, checked: &Checked, total: usize) -> String {
    let site: fn(&ClubApp) -> String = if settings.several_apps() {
        |club: &ClubApp| format!("{} site", club.app)
    } else {
        |_: &ClubApp| "site".to_owned()
    };
    // Each way of failing, in the order first seen, with its clubs.
    let mut ways: Vec<(&str, Vec<&ClubApp>)> = Vec::new();
    for (club, _) in &checked.failed {
        let why = checked
            .why
            .get(&club.club_id)
            .map_or("failed its health check", String::as_str);
        match ways.iter_mut().find(|(w, _)| *w == why) {
            Some((_, clubs)) => clubs.push(club),
            None => ways.push((why, vec![club])),
        }
    }
    let said: Vec<String> = ways
        .iter()
        .map(|(why, clubs)| match clubs.as_slice() {
            [club] => format!("{}'s {} {why}", club.name, site(club)),
            clubs => {
                let names: Vec<&str> = clubs.iter().map(|c| c.name.as_str()).collect();
                let sites = format!("{}s", site(clubs[0]));
                format!(
                    "the {sites} of {} {why}",
                    crate::domain::named(&names, NAMED)
                )
            }
        })
        .collect();
    let n = checked.failed.len();
    let lead = if n > NAMED {
        format!("{n} of {total} clubs failed their health check: ")
    } else {
        String::new()
    };
    format!("{lead}{}", said.join("; "))
}
