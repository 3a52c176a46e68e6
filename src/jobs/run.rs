//! Runs one job from start to end: the pipeline steps in order, recording every club switched
//! and auditing every change. The caller holds the deploy lock; the steps live in `pipeline`.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use diesel::SqliteConnection;

use crate::config::{App, OnFailure, Settings};
use crate::db::clubs::ClubApp;
use crate::db::{self, DbConn, DbPool, audit, clubs, switches};
use crate::domain::{ClubSlug, ReleaseName, ReleaseTag, SwitchKind, SwitchScope, Targets};
use crate::inventory;
use crate::pipeline::git::{self, Mirror};
use crate::pipeline::release::{self, BuildSpec, Built, Release};
use crate::pipeline::switch::{self, Webroot};
use crate::pipeline::{Progress, Step, command, health};

/// Everything a job needs to run.
pub struct Job<'a> {
    pub settings: &'a Settings,
    /// Where the job takes a connection for each piece of database work (never across slow
    /// work: building, fetching, reloading, waiting).
    pub pool: &'a DbPool,
    /// The job's id in the queue.
    pub id: i32,
    /// Who asked: a staff user name, or `cli:<unix user>`.
    pub actor: &'a str,
    pub progress: &'a mut dyn Progress,
}

impl Job<'_> {
    /// A connection for one piece of database work; give it back (drop it) before slow work.
    fn conn(&self) -> anyhow::Result<DbConn> {
        self.pool.get().context("cannot connect to the database")
    }

    /// Appends an audit row in the job's name, about `app` where there is one.
    fn audit(
        &mut self,
        app: Option<&App>,
        action: &str,
        target_kind: &str,
        target: &str,
        details: &str,
    ) -> anyhow::Result<()> {
        let details = format!("{details} (job #{})", self.id);
        let entry = audit::Entry::new(self.actor, action, target_kind, target, &details);
        let entry = audit::Entry {
            app: app.map(|a| a.name.as_str()),
            ..entry
        };
        let mut conn = self.conn()?;
        audit::record(&mut conn, &entry).context("cannot write the audit log")
    }
}

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

    let releases_dir = &app.releases_dir;
    let any_to_switch = clubs.iter().any(|club| {
        let on_disk = switch::linked_release(club.webroot.as_ref(), releases_dir);
        !matches!(on_disk, Ok(Webroot::Release(name)) if name == release.name)
    });
    let reload = job.settings.reload.policy.reloads(targets.switch_scope());
    if reload && any_to_switch {
        preflight(job)?;
    }
    // The whole job's count across its waves.
    let mut count = SwitchRun {
        header: None,
        done: 0,
        total: clubs.len(),
    };
    let mut switched = 0;
    let mut reloaded_at = None;
    let mut unchecked = 0;
    let mut not_live = 0;
    let mut ignored = 0;
    for (n, wave) in waves.iter().enumerate() {
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
                    clubs.len(),
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

/// A group of clubs switched, reloaded and checked together.
type Wave = crate::domain::rollout::Wave<ClubApp>;

/// The waves of a deploy to `clubs` (see [`crate::domain::rollout::waves`]).
fn waves(
    configured: &[String],
    settings: &Settings,
    clubs: &[ClubApp],
    canary: Option<&[ClubSlug]>,
) -> anyhow::Result<Vec<Wave>> {
    Ok(crate::domain::rollout::waves(
        clubs,
        |c| c.slug.as_str(),
        canary,
        configured,
        settings.rollout.batch_size,
    )?)
}

/// Whether the health step will prove the release through the probe (then the reload needs
/// no fixed settle wait): probes on, the release has one, Apache reloaded, and some club has
/// an address.
fn will_prove(settings: &Settings, release: &Release, reloaded: bool, clubs: &[ClubApp]) -> bool {
    settings.probe.enabled
        && release.manifest.probe.is_some()
        && reloaded
        && clubs.iter().any(|c| c.url.is_some())
}

/// What the health step found.
struct Checked {
    /// The clubs that failed, with the switch that put them on the release.
    failed: Vec<(ClubApp, switches::NewSwitch)>,
    /// Clubs without an address.
    unchecked: usize,
    /// Clubs switched but still served from another release (no reload).
    not_live: usize,
}

/// Proves each club of `done` (switched among `clubs`) live on `release` and healthy,
/// logging every verdict and the failing responses.
fn check_health(
    job: &mut Job<'_>,
    release: &Release,
    done: &[switches::NewSwitch],
    clubs: &[ClubApp],
    reloaded: bool,
) -> anyhow::Result<Checked> {
    job.progress.step(Step::Health);
    let by_id = by_id(clubs);
    let switched: Vec<(ClubApp, switches::NewSwitch)> = done
        .iter()
        .filter_map(|s| {
            let club = by_id.get(&s.club_id)?;
            Some(((*club).clone(), s.clone()))
        })
        .collect();
    let key = if !job.settings.probe.enabled {
        None
    } else if release.manifest.probe.is_none() {
        job.progress.progress(&format!(
            "{} has no health probe (built before probes, or with them off): each club's page \
             is checked, but not which release serves it",
            release.name
        ));
        None
    } else {
        if !reloaded {
            job.progress.progress(
                "the web server was not reloaded (reload policy), so PHP may serve the old \
                 release for a while: the probe is asked once, and a club it does not show on \
                 the new release is switched but not live yet",
            );
        }
        Some(crate::pipeline::probe::ProbeKey::load_or_create(
            &job.settings.data_dir,
        )?)
    };
    let release_dir = release
        .dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", release.dir.display()))?;
    let targets: Vec<health::Target> = switched
        .iter()
        .map(|(club, _)| health::Target {
            label: label(job.settings, club),
            url: club.url.clone(),
        })
        .collect();
    let check = health::Check {
        settings: &job.settings.health,
        release_dir: &release_dir,
        probe: key.as_ref(),
        reloaded,
    };
    let name = &release.name;
    let progress = &mut *job.progress;
    let verdicts = health::check_all(&targets, &check, |target, verdict| {
        report_verdict(progress, &target.label, name, verdict)
    });
    {
        let mut conn = job.conn()?;
        let at = db::now();
        for ((club, _), verdict) in switched.iter().zip(&verdicts) {
            let (health, note) = verdict.recorded();
            crate::db::clubs::set_health(&mut conn, club.webroot_id, health, note, at)?;
        }
    }
    let mut checked = Checked {
        failed: Vec::new(),
        unchecked: 0,
        not_live: 0,
    };
    for ((club, switch), verdict) in switched.into_iter().zip(verdicts) {
        match verdict {
            health::Verdict::Failed { .. } => checked.failed.push((club, switch)),
            health::Verdict::NotChecked(_) => checked.unchecked += 1,
            health::Verdict::NotLive(_) => checked.not_live += 1,
            health::Verdict::Healthy { .. } => {}
        }
    }
    Ok(checked)
}

/// One verdict as a line of the job's log (a failure with the response behind it).
fn report_verdict(
    progress: &mut dyn Progress,
    label: &str,
    release: &ReleaseName,
    verdict: &health::Verdict,
) {
    match verdict {
        health::Verdict::Healthy { proven: true, took } => progress.progress(&format!(
            "{label} is live on {release}, proven in {:.2} s, and its page answers",
            took.as_secs_f64()
        )),
        health::Verdict::Healthy { proven: false, .. } => {
            progress.progress(&format!("{label}: its page answers"))
        }
        health::Verdict::NotChecked(why) => {
            progress.progress(&format!("{label} was not checked: {why}"))
        }
        health::Verdict::NotLive(why) => progress.progress(&format!("{label}: {why}")),
        health::Verdict::Failed {
            reason,
            response: Some(response),
        } => progress.evidence(
            &format!("{label} FAILED its health check: {reason}"),
            response,
        ),
        health::Verdict::Failed {
            reason,
            response: None,
        } => progress.progress(&format!("{label} FAILED its health check: {reason}")),
    }
}

/// Ends a deploy whose clubs `failed` their health check: with `rollback`, puts them back on
/// the release each ran before (one reload; the release is marked bad for them) and checks
/// them again; with `stop`, leaves them. Returns the job's error: a plain summary.
fn health_failure(
    job: &mut Job<'_>,
    app: &App,
    release: &Release,
    failed: &[(ClubApp, switches::NewSwitch)],
    total: usize,
    not_reached: usize,
    on_failure: OnFailure,
) -> anyhow::Error {
    let n = failed.len();
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
        let now = running(job, app, release);
        return anyhow::anyhow!(
            "{failing} and {} left on {} (on_failure = \"stop\"); {now} run {}{reached}",
            if n == 1 { "was" } else { "were" },
            release.name,
            release.name
        );
    }
    match put_back(job, app, release, failed, SwitchKind::HealthRollback) {
        Ok(back) => {
            let now = running(job, app, release);
            anyhow::anyhow!("{failing}{back}; {now} run {}{reached}", release.name)
        }
        Err(e) => e.context(format!("{failing}; putting them back failed{reached}")),
    }
}

/// How many clubs' webroots of `app` run `release`, as recorded.
fn running(job: &Job<'_>, app: &App, release: &Release) -> usize {
    let recorded = job
        .conn()
        .and_then(|mut conn| Ok(clubs::webroots(&mut conn, Some(app.name.as_str()))?));
    recorded.map_or(0, |all| {
        all.iter()
            .filter(|c| c.current_release.as_deref() == Some(release.name.as_str()))
            .count()
    })
}

/// Switches each failed club back to the release it ran before, marking `release` bad for
/// it, then reloads once and checks them again. Returns the end of the summary sentence
/// (" and were put back on …").
fn put_back(
    job: &mut Job<'_>,
    app: &App,
    release: &Release,
    failed: &[(ClubApp, switches::NewSwitch)],
    kind: SwitchKind,
) -> anyhow::Result<String> {
    let mut by_release: std::collections::BTreeMap<String, Vec<ClubApp>> = Default::default();
    let mut stranded = Vec::new();
    for (club, switch) in failed {
        match &switch.from_release {
            Some(from) => by_release
                .entry(from.clone())
                .or_default()
                .push(club.clone()),
            None => stranded.push(club.slug.clone()),
        }
    }
    let mut back = Vec::new();
    for (from, group) in &by_release {
        let name = ReleaseName::parse(from)?;
        let previous = release::read(&app.releases_dir.join(from), &name)
            .with_context(|| format!("{from} is no longer built, so nothing was put back on it"))?;
        let done = switch_clubs(
            job,
            app,
            group,
            &previous,
            kind,
            Some(&release.name),
            &mut SwitchRun::alone(group.len()),
        )?;
        back.push((previous, done, group.clone()));
    }
    let reload = job.settings.reload.policy.reloads(SwitchScope::Repair);
    if reload && !back.is_empty() {
        preflight(job)?;
        let proving = back.iter().all(|(p, ..)| p.manifest.probe.is_some());
        reload_apache(job, !(proving && job.settings.probe.enabled))?;
    }
    for (previous, done, group) in &back {
        // Reported, not acted on: the rollback is as far back as a job goes.
        check_health(job, previous, done, group, reload)?;
    }
    let put: usize = back.iter().map(|(_, done, _)| done.len()).sum();
    let mut words = String::new();
    if put > 0 {
        let names: Vec<String> = back.iter().map(|(p, ..)| p.name.to_string()).collect();
        words.push_str(&format!(
            " and {} put back on {}",
            if put == 1 { "was" } else { "were" },
            names.join(" and ")
        ));
    }
    if !stranded.is_empty() {
        words.push_str(&format!(
            "; {} ran no release before, so {} left on {}",
            stranded.join(", "),
            if stranded.len() == 1 {
                "it was"
            } else {
                "they were"
            },
            release.name
        ));
    }
    Ok(words)
}

/// Clubs a deploy switched that still run what it gave them, each with that switch.
pub type StillSwitched = Vec<(ClubApp, switches::Switch)>;

/// Of the switches a deploy job made (`switched`), those of `app` whose club (among `clubs`)
/// still runs the release the deploy gave it, each with its club; and the clubs that have
/// moved on since. What "Put these clubs back" shows, and what its job switches.
pub fn still_switched(
    app: &App,
    switched: &[switches::Switch],
    clubs: &[ClubApp],
) -> anyhow::Result<(StillSwitched, Vec<ClubApp>)> {
    let (mut still, mut moved) = (Vec::new(), Vec::new());
    let by_id = by_id(clubs);
    for switch in switched.iter().filter(|s| {
        SwitchKind::parse(&s.kind).is_ok_and(SwitchKind::made_by_the_deploy)
            && s.app == app.name.as_str()
    }) {
        let Some(club) = by_id.get(&switch.club_id).copied() else {
            continue;
        };
        let runs = switch::inspect(club.webroot.as_ref(), &app.releases_dir)?;
        if matches!(&runs, Webroot::Release(now) if now.as_str() == switch.to_release) {
            still.push((club.clone(), switch.clone()));
        } else {
            moved.push(club.clone());
        }
    }
    Ok((still, moved))
}

/// Switches the clubs deploy job `of` switched, those still on the release it gave them, back
/// to the release each ran before (marking it bad for them, as a rollback does), with one
/// reload and a health check. Clubs moved since are left as they are, and said so.
pub fn put_back_job(job: &mut Job<'_>, app: &App, of: i32) -> anyhow::Result<String> {
    let (switched, clubs) = {
        let mut conn = job.conn()?;
        (
            switches::of_job(&mut conn, of)?,
            crate::db::clubs::webroots(&mut conn, Some(app.name.as_str()))?,
        )
    };
    let (still, moved) = still_switched(app, &switched, &clubs)?;
    for club in &moved {
        job.progress.progress(&format!(
            "{} has moved on since job #{of}: left as it is",
            label(job.settings, club)
        ));
    }
    let to = still.first().map(|(_, switch)| switch.to_release.clone());
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
    let Some(to) = to else {
        bail!(
            "none of the clubs job #{of} switched still runs what it gave them; nothing was changed"
        );
    };
    let name = ReleaseName::parse(&to)?;
    let release = release::read(&app.releases_dir.join(name.as_str()), &name)
        .with_context(|| format!("{name} is no longer built; nothing was changed"))?;
    let words = put_back(job, app, &release, &back, SwitchKind::Rollback)?;
    Ok(format!(
        "{} switched by job #{of} left {}{words}",
        crate::preview::count(back.len(), "club"),
        release.name
    ))
}

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
    let current = match switch::inspect(club.webroot.as_ref(), &app.releases_dir)? {
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
        &mut SwitchRun::alone(clubs.len()),
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

/// Deletes the releases of `app` (of each application, when `None`) that no club runs,
/// beyond the newest `keep_releases` of them, once no request can still be using them.
pub fn prune(job: &mut Job<'_>, app: Option<&App>) -> anyhow::Result<String> {
    let apps = one_or_every(job.settings, app);
    let mut counts = Vec::new();
    for app in apps {
        let deleted = prune_releases(job, app, None)?;
        counts.push((app, deleted));
    }
    Ok(match counts.as_slice() {
        [(_, deleted)] => format!("{deleted} release{} deleted", plural(*deleted)),
        counts => counts
            .iter()
            .map(|(app, deleted)| {
                format!(
                    "{}: {deleted} release{} deleted",
                    app.name,
                    plural(*deleted)
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
    })
}

/// Replaces club `slug`'s legacy copy (its webroot is a real directory) by a link to the
/// release of `tag`, in one atomic exchange, keeping the copy whole under `<data_dir>/legacy`.
/// The differences between the copy and the release are listed in the job log first.
pub fn adopt(
    job: &mut Job<'_>,
    app: &App,
    slug: &ClubSlug,
    tag: &ReleaseTag,
) -> anyhow::Result<String> {
    let club = club_named(job, app, slug)?;
    let webroot = webroot_of(job.settings, &club)?;
    if switch::inspect(&webroot, &app.releases_dir)? != Webroot::NotALink {
        bail!(
            "club {slug}'s webroot {} is not a legacy copy (a real directory): deploy to it \
             instead; nothing was changed",
            webroot.display()
        );
    }
    let mirror = git::open_mirror(app)?;
    job.progress.step(Step::Fetch);
    let (commit, _) = mirror.ensure_tag(tag, job.progress)?;
    let release = build(
        job,
        app,
        &mirror,
        tag,
        &commit,
        Wanted::Fresh { rebuild: false },
    )?;

    job.progress.step(Step::Compare);
    let diff = crate::pipeline::legacy::compare_trees(&webroot, &release.dir)
        .with_context(|| format!("cannot compare {} with {}", webroot.display(), release.name))?;
    report_differences(job, &diff, &release.name);

    let reload = preflight_single_club(job)?;
    job.progress.step(Step::Switch);
    let name = crate::pipeline::legacy::backup_name(slug.as_str(), chrono::Utc::now());
    let backup = crate::pipeline::legacy::adopt(
        &job.settings.webroot_base,
        &webroot,
        &release.dir,
        &app.legacy_dir,
        &name,
    )?;
    let details = format!(
        "adopt: the legacy copy was replaced by {} and kept whole at {} ({} only in the copy, \
         {} only in the release, {} differing) (job #{})",
        release.name,
        backup.path.display(),
        diff.only_in_copy.len(),
        diff.only_in_release.len(),
        diff.differing.len(),
        job.id
    );
    let switched = switches::NewSwitch {
        club_id: club.club_id,
        app: app.name.to_string(),
        from_release: None,
        to_release: release.name.to_string(),
        commit_id: release.manifest.commit.clone(),
        kind: SwitchKind::Adopt.as_str().to_owned(),
        actor: job.actor.to_owned(),
        switched_at: db::now(),
        job_id: Some(job.id),
    };
    let entry = audit::Entry::new(job.actor, "club.adopted", "club", slug.as_str(), &details)
        .for_app(app.name.as_str());
    switches::record(&mut *job.conn()?, &[switched], &[], &[entry])
        .context("cannot record the adoption")?;
    job.progress.progress(&format!(
        "club {slug} now runs {}; its legacy copy is kept at {}",
        release.name,
        backup.path.display()
    ));
    let mut summary = format!(
        "club {slug}'s legacy copy was replaced by {} and kept at {}",
        release.name,
        backup.path.display()
    );
    reload_if(job, reload, &mut summary)?;
    Ok(summary)
}

/// Puts club `slug`'s newest kept legacy copy back in place of its link, in one atomic
/// exchange.
pub fn undo_adopt(job: &mut Job<'_>, app: &App, slug: &ClubSlug) -> anyhow::Result<String> {
    let club = club_named(job, app, slug)?;
    let webroot = webroot_of(job.settings, &club)?;
    let kept = crate::pipeline::legacy::kept_copies(&app.legacy_dir, Some(slug.as_str()))?;
    let Some(newest) = kept.last() else {
        bail!("no legacy copy of club {slug} is kept, so there is nothing to put back");
    };
    let reload = preflight_single_club(job)?;
    job.progress.step(Step::Switch);
    crate::pipeline::legacy::undo(&job.settings.webroot_base, &webroot, &newest.backup)?;
    let details = format!(
        "the legacy copy kept at {} is the webroot again (job #{})",
        newest.backup.path.display(),
        job.id
    );
    job.conn()?
        .immediate_transaction(|conn| {
            clubs::set_current_release(conn, club.webroot_id, None)?;
            let entry = audit::Entry::new(
                job.actor,
                "club.adoption_undone",
                "club",
                slug.as_str(),
                &details,
            )
            .for_app(app.name.as_str());
            audit::append(conn, &entry)
        })
        .context("cannot record the undo")?;
    job.progress
        .progress(&format!("club {slug} serves its legacy copy again"));
    let mut summary = format!("club {slug} serves its legacy copy again");
    reload_if(job, reload, &mut summary)?;
    Ok(summary)
}

/// Deletes club `slug`'s kept legacy copy named `copy`, and audits it.
pub fn purge_legacy(
    job: &mut Job<'_>,
    app: &App,
    slug: &ClubSlug,
    copy: &str,
) -> anyhow::Result<String> {
    let legacy_dir = &app.legacy_dir;
    let kept = crate::pipeline::legacy::kept_copies(legacy_dir, Some(slug.as_str()))?;
    let Some(found) = kept
        .iter()
        .find(|k| k.backup.path.file_name().is_some_and(|n| n == copy))
    else {
        return Err(crate::domain::Refusal::NotFound(format!(
            "club {slug} has no kept legacy copy {copy}"
        ))
        .into());
    };
    crate::pipeline::legacy::purge(legacy_dir, &found.backup)?;
    let details = format!(
        "deleted the kept legacy copy {} ({} bytes)",
        found.backup.path.display(),
        found.bytes
    );
    job.audit(Some(app), "legacy.purged", "club", slug.as_str(), &details)?;
    job.progress.progress(&details);
    Ok(format!(
        "club {slug}'s kept legacy copy {copy} ({} bytes) was deleted",
        found.bytes
    ))
}

/// Lists what differs between a legacy copy and the release replacing it.
fn report_differences(
    job: &mut Job<'_>,
    diff: &crate::pipeline::legacy::TreeDiff,
    release: &ReleaseName,
) {
    if diff.is_empty() {
        job.progress
            .progress(&format!("the legacy copy is exactly {release}"));
        return;
    }
    for (paths, what) in [
        (
            &diff.only_in_copy,
            "only in the legacy copy (no longer served after the switch: uploads? local files?)",
        ),
        (&diff.only_in_release, &*format!("only in {release}")),
        (
            &diff.differing,
            "different in the legacy copy (local changes?)",
        ),
    ] {
        if paths.is_empty() {
            continue;
        }
        const SHOWN: usize = 50;
        let mut line = format!("{} file{} {what}: ", paths.len(), plural(paths.len()));
        line.push_str(
            &paths
                .iter()
                .take(SHOWN)
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
        );
        if paths.len() > SHOWN {
            line.push_str(&format!(" and {} more", paths.len() - SHOWN));
        }
        job.progress.progress(&line);
    }
}

/// Club `slug`'s webroot of `app`.
fn club_named(job: &Job<'_>, app: &App, slug: &ClubSlug) -> anyhow::Result<ClubApp> {
    let conn = &mut *job.conn()?;
    if let Some(found) = clubs::webroot(conn, slug.as_str(), app.name.as_str())? {
        return Ok(found);
    }
    let message = match clubs::by_slug(conn, slug.as_str())? {
        None => format!("there is no club {slug}"),
        Some(_) => format!("club {slug} does not run the application {}", app.name),
    };
    Err(crate::domain::Refusal::NotFound(message).into())
}

/// A club's webroot, checked to lie under `webroot_base` as recorded.
fn webroot_of(settings: &Settings, club: &ClubApp) -> anyhow::Result<std::path::PathBuf> {
    let resolved = switch::resolve_under(&settings.webroot_base, club.webroot.as_ref())
        .with_context(|| format!("club {}: nothing was changed", club.slug))?;
    if resolved.as_os_str() != club.webroot.as_str() {
        bail!(
            "club {}: webroot {} now resolves to {}; nothing was changed",
            club.slug,
            club.webroot,
            resolved.display()
        );
    }
    Ok(resolved)
}

/// Fetches the tags of `app`'s repository (of each application's, when `None`) into its
/// mirror (the releases page's Refresh).
pub fn fetch(job: &mut Job<'_>, app: Option<&App>) -> anyhow::Result<String> {
    let apps = one_or_every(job.settings, app);
    let mut summaries = Vec::new();
    for app in apps {
        let summary = fetch_app(job, app)?;
        summaries.push(if apps.len() > 1 {
            format!("{}: {summary}", app.name)
        } else {
            summary
        });
    }
    Ok(summaries.join("; "))
}

/// `app` alone, or every application when `None`.
fn one_or_every<'s>(settings: &'s Settings, app: Option<&'s App>) -> &'s [App] {
    match app {
        Some(app) => std::slice::from_ref(app),
        None => settings.apps(),
    }
}

fn fetch_app(job: &mut Job<'_>, app: &App) -> anyhow::Result<String> {
    job.progress.step(Step::Fetch);
    let mirror = git::open_mirror(app)?;
    let before: HashSet<String> = mirror
        .tags()?
        .into_iter()
        .map(|t| t.tag.to_string())
        .collect();
    mirror.fetch(job.progress)?;
    let after = mirror.tags()?;
    let new: Vec<&str> = after
        .iter()
        .map(|t| t.tag.as_str())
        .filter(|t| !before.contains(*t))
        .collect();
    let skipped = mirror.skipped_tags()?;
    if let Some(words) = git::skipped_in_words(&skipped) {
        job.progress.progress(&words);
    }
    let mut summary = match new.as_slice() {
        [] => format!("{} tags known; no new tag", after.len()),
        new => format!("{} tags known; new: {}", after.len(), new.join(", ")),
    };
    if !skipped.is_empty() {
        summary.push_str(&format!("; {} skipped (see the log)", skipped.len()));
    }
    Ok(summary)
}

/// The webroots of `app` a deploy switches: every club's that runs it, or the named clubs'
/// (each must exist and run it).
fn target_clubs(
    conn: &mut SqliteConnection,
    app: &App,
    targets: &Targets,
) -> anyhow::Result<Vec<ClubApp>> {
    let running = clubs::webroots(conn, Some(app.name.as_str()))?;
    let chosen: Vec<ClubApp> = match targets {
        Targets::All => running,
        Targets::Clubs(slugs) => {
            let all = clubs::all(conn)?;
            let unknown: Vec<&str> = slugs
                .iter()
                .map(ClubSlug::as_str)
                .filter(|s| !all.iter().any(|c| c.slug == *s))
                .collect();
            if !unknown.is_empty() {
                bail!("no such club: {}; nothing was changed", unknown.join(", "));
            }
            let without: Vec<&str> = slugs
                .iter()
                .map(ClubSlug::as_str)
                .filter(|s| !running.iter().any(|c| c.slug == *s))
                .collect();
            if !without.is_empty() {
                bail!(
                    "{} {} not run the application {}; nothing was changed",
                    without.join(", "),
                    if without.len() == 1 { "does" } else { "do" },
                    app.name
                );
            }
            running
                .into_iter()
                .filter(|c| slugs.iter().any(|s| s.as_str() == c.slug))
                .collect()
        }
    };
    if chosen.is_empty() {
        bail!(
            "no club runs the application {}; give a club a webroot for it with `clubdeploy \
             club add` or `clubdeploy club webroot`",
            app.name
        );
    }
    Ok(chosen)
}

/// Every webroot must still lie under `webroot_base` and be a link or nothing, before
/// anything is built or switched: read once each. A legacy copy must be adopted first: with
/// `leave_out_legacy` it is set apart (returned second), otherwise refused.
fn check_webroots(
    settings: &Settings,
    app: &App,
    clubs: Vec<ClubApp>,
    leave_out_legacy: bool,
) -> anyhow::Result<(Vec<ClubApp>, Vec<ClubApp>)> {
    let app_flag = if settings.several_apps() {
        format!(" --app {}", app.name)
    } else {
        String::new()
    };
    let (mut switchable, mut legacy) = (Vec::new(), Vec::new());
    for club in clubs {
        let resolved = webroot_of(settings, &club)?;
        // A real directory (not a link, not missing) is a legacy copy; nothing more is read.
        let legacy_copy = match std::fs::symlink_metadata(&resolved) {
            Ok(meta) => !meta.file_type().is_symlink(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(e.into()),
        };
        if !legacy_copy {
            switchable.push(club);
        } else if leave_out_legacy {
            legacy.push(club);
        } else {
            bail!(
                "club {}: its webroot {} is a legacy copy (a real directory); adopt it first \
                 (clubdeploy adopt {}{app_flag} --tag <tag>, or Adopt… on the clubs page); \
                 nothing was changed",
                club.slug,
                resolved.display(),
                club.slug
            );
        }
    }
    Ok((switchable, legacy))
}

/// Which build of a tag a job wants.
enum Wanted<'a> {
    /// One made with the configured recipe (built anew when `rebuild`).
    Fresh { rebuild: bool },
    /// This one when it is there (a rollback's target), whatever its recipe; else as `Fresh`.
    Exactly(&'a ReleaseName),
}

fn build(
    job: &mut Job<'_>,
    app: &App,
    mirror: &Mirror,
    tag: &ReleaseTag,
    commit: &str,
    wanted: Wanted<'_>,
) -> anyhow::Result<Release> {
    job.progress.step(Step::Build);
    let started = Instant::now();
    let probe_hash = match job.settings.probe.enabled {
        true => {
            Some(crate::pipeline::probe::ProbeKey::load_or_create(&job.settings.data_dir)?.hash())
        }
        false => None,
    };
    let recipe = release::recipe_hash(
        &app.build.commands,
        app.build.check.as_deref(),
        &app.build.env,
    );
    let spec = BuildSpec {
        releases_dir: &app.releases_dir,
        tag,
        commit,
        commands: &app.build.commands,
        check: app.build.check.as_deref(),
        env: &release::build_environment(&app.build.env),
        probe: probe_hash.as_deref(),
        recipe: recipe.as_deref(),
        rebuild: matches!(wanted, Wanted::Fresh { rebuild: true }),
        prefer: match wanted {
            Wanted::Exactly(name) => Some(name),
            Wanted::Fresh { .. } => None,
        },
    };
    let built = release::build(mirror, &spec, job.progress)
        .with_context(|| format!("building {tag} failed; no club was changed"))?;
    match &built {
        Built::New(r) => {
            let details = format!(
                "built {} from tag {tag} (commit {}): {} files, {} bytes in {:.1} s",
                r.name,
                &r.manifest.commit[..8],
                r.manifest.files,
                r.manifest.bytes,
                started.elapsed().as_secs_f64()
            );
            job.progress.progress(&details);
            job.audit(
                Some(app),
                "release.built",
                "release",
                r.name.as_str(),
                &details,
            )?;
        }
        Built::Reused(r) => job
            .progress
            .progress(&format!("release {} is already built; reusing it", r.name)),
    }
    Ok(built.release().clone())
}

/// Before a job that changes one club (rollback, adopt, undo): the configtest, when the
/// policy reloads after it. Returns whether it will reload.
fn preflight_single_club(job: &mut Job<'_>) -> anyhow::Result<bool> {
    let reload = job.settings.reload.policy.reloads(SwitchScope::SomeClubs);
    if reload {
        preflight(job)?;
    }
    Ok(reload)
}

/// Reloads the web server when `reload` (waiting the settle time), saying so in `summary`.
fn reload_if(job: &mut Job<'_>, reload: bool, summary: &mut String) -> anyhow::Result<()> {
    if reload {
        reload_apache(job, true)?;
        summary.push_str("; Apache reloaded");
    }
    Ok(())
}

fn preflight(job: &mut Job<'_>) -> anyhow::Result<()> {
    job.progress.step(Step::Preflight);
    let ran = command::run(&job.settings.reload.configtest, None)?;
    job.progress.output(&ran);
    ran.ok()
        .context("the web server's configuration test failed; no club was changed")?;
    job.progress.progress("web server configuration is OK");
    Ok(())
}

/// Switches each club not yet on `release`, then records the switches in one transaction.
/// On a failure part-way, the switches already made are recorded before the error returns.
/// Where one call of [`switch_clubs`] stands in its job: a line to say first (a wave's), and
/// the job's count of clubs handled before it, of all it will handle.
#[derive(Debug, Clone)]
struct SwitchRun {
    header: Option<String>,
    done: usize,
    total: usize,
}

impl SwitchRun {
    /// A job that switches these `total` clubs in one go.
    fn alone(total: usize) -> SwitchRun {
        SwitchRun {
            header: None,
            done: 0,
            total,
        }
    }
}

fn switch_clubs(
    job: &mut Job<'_>,
    app: &App,
    clubs: &[ClubApp],
    release: &Release,
    kind: SwitchKind,
    rolled_back_from: Option<&ReleaseName>,
    run: &mut SwitchRun,
) -> anyhow::Result<Vec<switches::NewSwitch>> {
    job.progress.step(Step::Switch);
    if let Some(header) = run.header.take() {
        job.progress.progress(&header);
    }
    let total = run.total;
    let counted = |done: usize| format!("{done} of {total} club{} switched", plural(total));
    let mut told = run.done;
    let releases_dir = &app.releases_dir;
    let switcher = switch::Switcher::new(&release.dir, &job.settings.webroot_base);
    let mut done = Vec::new();
    let mut failure = None;
    for club in clubs {
        let webroot: &std::path::Path = club.webroot.as_ref();
        // One read of the link decides whether to switch and what the club ran before.
        let from = match switcher.switch(webroot, releases_dir) {
            Ok(Some(from)) if from.release() != Some(&release.name) => from,
            Ok(_) => {
                run.done += 1;
                if total <= crate::pipeline::EVERY_CLUB_UP_TO {
                    let line = format!(
                        "{} already runs {} ({})",
                        label(job.settings, club),
                        release.name,
                        counted(run.done)
                    );
                    job.progress.count(&line, run.done, total);
                    told = run.done;
                } else if crate::pipeline::worth_telling(run.done, total) {
                    job.progress.count(&counted(run.done), run.done, total);
                    told = run.done;
                }
                continue;
            }
            Err(e) => {
                failure = Some(e.context(format!("club {}", club.slug)));
                break;
            }
        };
        done.push(switches::NewSwitch {
            club_id: club.club_id,
            app: app.name.to_string(),
            from_release: from.release().map(|r| r.to_string()),
            to_release: release.name.to_string(),
            commit_id: release.manifest.commit.clone(),
            kind: kind.as_str().to_owned(),
            actor: job.actor.to_owned(),
            switched_at: db::now(),
            job_id: Some(job.id),
        });
        run.done += 1;
        if total <= crate::pipeline::EVERY_CLUB_UP_TO {
            let line = format!(
                "{} now runs {} ({})",
                label(job.settings, club),
                release.name,
                counted(run.done)
            );
            job.progress.count(&line, run.done, total);
            told = run.done;
        } else if crate::pipeline::worth_telling(run.done, total) {
            job.progress.count(&counted(run.done), run.done, total);
            told = run.done;
        }
        crate::crash::point(&format!("switch:after-{}", done.len()));
    }
    drop(switcher);
    // A wave ends with its count said, whatever the percent.
    if told != run.done && failure.is_none() {
        job.progress.count(&counted(run.done), run.done, total);
    }
    let marks: Vec<switches::BadMark> = match rolled_back_from {
        Some(from) => done
            .iter()
            .map(|switch| switches::BadMark {
                club_id: switch.club_id,
                app: app.name.to_string(),
                release: from.to_string(),
            })
            .collect(),
        None => Vec::new(),
    };
    let by_id = by_id(clubs);
    let details: Vec<(String, String)> = done
        .iter()
        .map(|switch| {
            let slug = by_id
                .get(&switch.club_id)
                .map_or_else(String::new, |c| c.slug.clone());
            let from = switch.from_release.as_deref().unwrap_or("no release");
            let text = format!(
                "{kind}: from {from} to {} (job #{})",
                switch.to_release, job.id
            );
            (slug, text)
        })
        .collect();
    let entries: Vec<audit::Entry<'_>> = details
        .iter()
        .map(|(slug, text)| {
            audit::Entry::new(job.actor, "club.switched", "club", slug, text)
                .for_app(app.name.as_str())
        })
        .collect();
    switches::record(&mut *job.conn()?, &done, &marks, &entries)
        .context("cannot record the switches")?;
    match failure {
        Some(e) => Err(e.context(format!(
            "switched {} of {} clubs, then stopped",
            done.len(),
            clubs.len()
        ))),
        None => Ok(done),
    }
}

/// Reloads Apache gracefully; with `settle`, then waits `settle_ms` for its old children to
/// go (without it, the health step proves each club on the new release instead).
fn reload_apache(job: &mut Job<'_>, settle: bool) -> anyhow::Result<()> {
    job.progress.step(Step::Reload);
    crate::crash::point("reload:before");
    let ran = command::run(&job.settings.reload.command, None)?;
    job.progress.output(&ran);
    if let Err(e) = ran.ok() {
        job.audit(
            None,
            "server.reload_failed",
            "job",
            &job.id.to_string(),
            &format!("{e:#}"),
        )?;
        return Err(e.context(
            "the clubs were switched, but the web server reload failed: PHP may serve old code \
             for up to 2 minutes, and no release was deleted",
        ));
    }
    // The command returns once the restart is signalled; its old children go a moment later.
    if settle {
        std::thread::sleep(std::time::Duration::from_millis(
            job.settings.reload.settle_ms,
        ));
    }
    job.audit(
        None,
        "server.reloaded",
        "job",
        &job.id.to_string(),
        "web server reloaded gracefully",
    )?;
    job.progress.progress("web server reloaded gracefully");
    Ok(())
}

/// Finishes a switch that an interrupted job did not get to reload: configtest, then reload.
pub fn reload_after_interruption(job: &mut Job<'_>) -> anyhow::Result<()> {
    preflight(job)?;
    reload_apache(job, true)
}

/// The rollback target when none is named: the newest release in the club's history that it
/// does not run now and was not rolled back from.
fn previous_release(
    conn: &mut SqliteConnection,
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
fn chosen_release(
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

/// Deletes unused releases beyond `keep_releases`, but only when no request can still run on
/// them: `prune_grace_secs` after a reload, reloading first when the policy allows, or else
/// after PHP's realpath cache has expired since the last switch.
fn prune_releases(
    job: &mut Job<'_>,
    app: &App,
    reloaded_at: Option<Instant>,
) -> anyhow::Result<usize> {
    job.progress.step(Step::Prune);
    let releases_dir = &app.releases_dir;
    let keep = job.settings.keep_releases;
    let candidates = {
        let releases = release::list(releases_dir)?;
        let facts = inventory::prune_facts(job.settings, app, &mut *job.conn()?)?;
        release::prunable(&releases, &facts, keep).len()
    };
    if candidates == 0 {
        job.progress
            .progress(&format!("no release of {} to delete", app.name));
        return Ok(0);
    }
    let grace = Duration::from_secs(job.settings.prune_grace_secs);
    let safe_at = match reloaded_at {
        Some(at) => at + grace,
        None if job.settings.reload.policy.reloads(SwitchScope::Repair) => {
            preflight(job)?;
            reload_apache(job, true)?;
            job.progress.step(Step::Prune);
            Instant::now() + grace
        }
        None => {
            let ttl = Duration::from_secs(job.settings.reload.realpath_cache_ttl_secs);
            let since_switch = switches::last_switched_at(&mut *job.conn()?, app.name.as_str())?
                .and_then(|at| (db::now() - at).to_std().ok())
                .unwrap_or(Duration::MAX);
            Instant::now() + (ttl + grace).saturating_sub(since_switch)
        }
    };
    let wait = safe_at.saturating_duration_since(Instant::now());
    if !wait.is_zero() {
        job.progress.progress(&format!(
            "waiting {:.0} s for requests still running on old releases",
            wait.as_secs_f64().ceil()
        ));
        std::thread::sleep(wait);
    }
    // Read the links again: the disk, not any earlier reading, decides what is in use.
    let releases = release::list(releases_dir)?;
    let facts = inventory::prune_facts(job.settings, app, &mut *job.conn()?)?;
    let doomed = release::prunable(&releases, &facts, keep);
    for release in &doomed {
        release::delete(releases_dir, release)?;
        job.progress
            .progress(&format!("deleted release {}", release.name));
    }
    Ok(doomed.len())
}

/// The clubs by id: one look-up per club, not a search of the list (10,000 clubs).
fn by_id(clubs: &[ClubApp]) -> std::collections::HashMap<i32, &ClubApp> {
    clubs.iter().map(|c| (c.club_id, c)).collect()
}

/// "club zermatt", or with several applications "club zermatt's mobile": how progress lines
/// name a webroot.
fn label(settings: &Settings, club: &ClubApp) -> String {
    if settings.several_apps() {
        format!("club {}'s {}", club.slug, club.app)
    } else {
        format!("club {}", club.slug)
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
