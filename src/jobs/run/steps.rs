//! The steps the job kinds are made of: waves, build, preflight, switch, reload, health,
//! putting clubs back and prune, each used by every kind that runs it.

use super::*;

/// A group of clubs switched, reloaded and checked together.
pub(super) type Wave = crate::domain::rollout::Wave<ClubApp>;

/// The waves of a deploy to `clubs` (see [`crate::domain::rollout::waves`]).
pub(super) fn waves(
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
pub(super) fn will_prove(
    settings: &Settings,
    release: &Release,
    reloaded: bool,
    clubs: &[ClubApp],
) -> bool {
    settings.probe.enabled
        && release.manifest.probe.is_some()
        && reloaded
        && clubs.iter().any(|c| c.url.is_some())
}

/// What the health step found.
pub(super) struct Checked {
    /// The clubs that failed, with the switch that put them on the release.
    pub(super) failed: Vec<(ClubApp, switches::NewSwitch)>,
    /// Why each failed, in plain words, by club id ("did not answer (connection refused)").
    pub(super) why: std::collections::HashMap<i32, String>,
    /// Clubs without an address.
    pub(super) unchecked: usize,
    /// Clubs switched but still served from another release (no reload).
    pub(super) not_live: usize,
}

/// Proves each club of `done` (switched among `clubs`) live on `release` and healthy,
/// logging every verdict and the failing responses.
pub(super) fn check_health(
    job: &mut Job<'_>,
    release: &Release,
    done: &[switches::NewSwitch],
    clubs: &[ClubApp],
    reloaded: bool,
) -> anyhow::Result<Checked> {
    job.progress.step(Step::Health);
    if crate::crash::armed() {
        // The n-th health check of this process (a deploy checks each wave).
        static CHECKS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = CHECKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        crate::crash::point(&format!("health:check-{n}"));
    }
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
        per_host: release.manifest.probe_per_host,
        reloaded,
    };
    let name = &release.name;
    let progress = &mut *job.progress;
    // A large job says each failure, and the rest in one line at the end.
    let every_club = targets.len() <= crate::pipeline::EVERY_CLUB_UP_TO;
    let verdicts = job
        .host
        .check_health(&targets, &check, &mut |target, verdict| {
            if every_club || verdict.failed() {
                report_verdict(progress, &target.label, name, verdict)
            }
        });
    if !every_club {
        let of =
            |wanted: fn(&health::Verdict) -> bool| verdicts.iter().filter(|v| wanted(v)).count();
        let healthy = of(|v| matches!(v, health::Verdict::Healthy { .. }));
        let unchecked = of(|v| matches!(v, health::Verdict::NotChecked(_)));
        let not_live = of(|v| matches!(v, health::Verdict::NotLive(_)));
        let failed = of(health::Verdict::failed);
        job.progress.progress(&format!(
            "of {} clubs: {healthy} healthy, {failed} failed, {unchecked} not checked (no \
             address), {not_live} switched but not live yet (no reload)",
            verdicts.len()
        ));
    }
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
        why: Default::default(),
        unchecked: 0,
        not_live: 0,
    };
    for ((club, switch), verdict) in switched.into_iter().zip(verdicts) {
        match verdict {
            health::Verdict::Failed { plain, .. } => {
                checked.why.insert(club.club_id, plain);
                checked.failed.push((club, switch));
            }
            health::Verdict::NotChecked(_) => checked.unchecked += 1,
            health::Verdict::NotLive(_) => checked.not_live += 1,
            health::Verdict::Healthy { .. } => {}
        }
    }
    Ok(checked)
}

/// One verdict as a line of the job's log (a failure with the response behind it).
pub(super) fn report_verdict(
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
            ..
        } => progress.evidence(
            &format!("{label} FAILED its health check: {reason}"),
            response,
        ),
        health::Verdict::Failed {
            reason,
            response: None,
            ..
        } => progress.progress(&format!("{label} FAILED its health check: {reason}")),
    }
}

/// Switches each failed club back to the release it ran before, marking `release` bad for
/// it, then reloads once and checks them again; `run` counts them (the job's count, or
/// [`SwitchRun::within`] another job). Returns what became of them.
pub(super) fn put_back(
    job: &mut Job<'_>,
    app: &App,
    release: &Release,
    failed: &[(ClubApp, switches::NewSwitch)],
    kind: SwitchKind,
    mut run: SwitchRun,
) -> anyhow::Result<Back> {
    let mut by_release: std::collections::BTreeMap<String, Vec<ClubApp>> = Default::default();
    let mut stranded = Vec::new();
    for (club, switch) in failed {
        match &switch.from_release {
            Some(from) => by_release
                .entry(from.clone())
                .or_default()
                .push(club.clone()),
            None => stranded.push(club.name.clone()),
        }
    }
    // The configuration is tested before any club goes back: a failing test changes nothing.
    let reload = job.settings.reload.policy.reloads(SwitchScope::Repair);
    if reload && !by_release.is_empty() {
        preflight(job)?;
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
            &mut run,
        )?;
        back.push((previous, done, group.clone()));
    }
    if reload && !back.is_empty() {
        let proving = back.iter().all(|(p, ..)| p.manifest.probe.is_some());
        reload_apache(job, !(proving && job.settings.probe.enabled))?;
    }
    for (previous, done, group) in &back {
        // Reported, not acted on: the rollback is as far back as a job goes.
        check_health(job, previous, done, group, reload)?;
    }
    Ok(Back {
        put: back.iter().map(|(_, done, _)| done.len()).sum(),
        onto: back.iter().map(|(p, ..)| p.name.to_string()).collect(),
        stranded,
        left_on: release.name.to_string(),
    })
}

/// What became of clubs put back: how many went back, onto which releases, and the display
/// names of those that ran nothing before (left on `left_on`).
pub(super) struct Back {
    pub(super) put: usize,
    onto: Vec<String>,
    stranded: Vec<String>,
    left_on: String,
}

impl Back {
    /// "put back on v1" ("… on v1 and v0"), if any club went back.
    pub(super) fn onto(&self) -> Option<String> {
        (self.put > 0).then(|| format!("put back on {}", self.onto.join(" and ")))
    }

    /// "; Arosa ran no release before, so it was left on v2", if any club ran nothing before.
    pub(super) fn stranded(&self) -> String {
        match self.stranded.len() {
            0 => String::new(),
            n => format!(
                "; {} ran no release before, so {} left on {}",
                crate::domain::named(&self.stranded, NAMED),
                if n == 1 { "it was" } else { "they were" },
                self.left_on
            ),
        }
    }

    /// The end of a sentence whose subject is the clubs: " and were put back on v1", then
    /// [`Back::stranded`].
    pub(super) fn said(&self) -> String {
        let mut words = String::new();
        if let Some(onto) = self.onto() {
            let were = if self.put == 1 { "was" } else { "were" };
            words.push_str(&format!(" and {were} {onto}"));
        }
        words.push_str(&self.stranded());
        words
    }
}

/// The display names of those of `among` (a job's clubs) that run `release` of `app`, as
/// recorded: a summary names the job's clubs only, not others that ran the release before it.
pub(super) fn running(
    job: &Job<'_>,
    app: &App,
    release: &Release,
    among: &[ClubApp],
) -> Vec<String> {
    let recorded = job
        .conn()
        .and_then(|mut conn| Ok(clubs::webroots(&mut conn, Some(app.name.as_str()))?));
    recorded.map_or_else(
        |_| Vec::new(),
        |all| {
            all.into_iter()
                .filter(|c| among.iter().any(|m| m.club_id == c.club_id))
                .filter(|c| c.current_release.as_deref() == Some(release.name.as_str()))
                .map(|c| c.name)
                .collect()
        },
    )
}

/// The webroots of `app` a deploy switches: every club's that runs it, or the named clubs'
/// (each must exist and run it).
pub(super) fn target_clubs(
    conn: &mut Conn,
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
pub(super) fn check_webroots(
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
pub(super) enum Wanted<'a> {
    /// One made with the configured recipe (built anew when `rebuild`).
    Fresh { rebuild: bool },
    /// This one when it is there (a rollback's target), whatever its recipe; else as `Fresh`.
    Exactly(&'a ReleaseName),
}

pub(super) fn build(
    job: &mut Job<'_>,
    app: &App,
    mirror: &Mirror,
    tag: &ReleaseTag,
    commit: &str,
    wanted: Wanted<'_>,
) -> anyhow::Result<Release> {
    job.progress.step(Step::Build);
    let started = Instant::now();
    let probe_key = match job.settings.probe.enabled {
        true => Some(
            crate::pipeline::probe::ProbeKey::load_or_create(&job.settings.data_dir)?.public_key(),
        ),
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
        probe: probe_key.as_deref(),
        recipe: recipe.as_deref(),
        rebuild: matches!(wanted, Wanted::Fresh { rebuild: true }),
        timeout: std::time::Duration::from_secs(app.build.timeout_secs),
        cap: crate::pipeline::git::TreeStats {
            files: app.build.max_files,
            bytes: app.build.max_bytes,
        },
        build_user: job.settings.build_user.as_deref(),
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
pub(super) fn preflight_single_club(job: &mut Job<'_>) -> anyhow::Result<bool> {
    let reload = job.settings.reload.policy.reloads(SwitchScope::SomeClubs);
    if reload {
        preflight(job)?;
    }
    Ok(reload)
}

/// Reloads the web server when `reload` (waiting the settle time), saying so in `summary`.
pub(super) fn reload_if(
    job: &mut Job<'_>,
    reload: bool,
    summary: &mut String,
) -> anyhow::Result<()> {
    if reload {
        reload_apache(job, true)?;
        summary.push_str("; Apache reloaded");
    }
    Ok(())
}

pub(super) fn preflight(job: &mut Job<'_>) -> anyhow::Result<()> {
    job.progress.step(Step::Preflight);
    let ran = job.host.run(&job.settings.reload.configtest)?;
    job.progress.output(&ran);
    ran.ok()
        .context("the web server's configuration test failed; no club was changed")?;
    job.progress.progress("web server configuration is OK");
    Ok(())
}

/// Reloads Apache gracefully; with `settle`, then waits `settle_ms` for its old children to
/// go (without it, the health step proves each club on the new release instead).
pub(super) fn reload_apache(job: &mut Job<'_>, settle: bool) -> anyhow::Result<()> {
    job.progress.step(Step::Reload);
    crate::crash::point("reload:before");
    let ran = job.host.run(&job.settings.reload.command)?;
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
