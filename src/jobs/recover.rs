//! Recovering what a dead process left: jobs still marked `running` when the deploy lock is
//! free were interrupted. Their leftovers are cleared, every club's link is read back from
//! disk, the web server reloaded where needed, and each job is marked `interrupted` with
//! what it left and what to do.

use std::path::PathBuf;

use super::log::JobLog;
use super::queue::{anchor_audit, record_end};
use super::run::{self, Job};
use crate::config::Settings;
use crate::db::Conn;
use crate::db::{self, DbPool, audit, clubs, jobs, switches};
use crate::domain::{JobSpec, JobStatus};
use crate::pipeline::lock::DeployLock;
use crate::pipeline::recovery;
use crate::pipeline::release;
use crate::pipeline::switch::{self, Webroot};

/// Clears what a dead worker left behind. Holding the deploy lock proves no other process is
/// running a job, so every job still marked `running` was interrupted: its build and trash
/// directories and temporary links are removed, every club's link is read back from disk and
/// recorded, the web server is reloaded when the job had switched clubs without reloading,
/// and the job is marked `interrupted` with the steps it had completed. Returns what it did.
pub fn recover(
    settings: &Settings,
    pool: &DbPool,
    _lock: &DeployLock,
) -> anyhow::Result<Vec<String>> {
    let mut done = Vec::new();
    // Leftovers exist only where a job stopped while running: with none, nothing is read
    // (the check runs before every command and on every poll of the worker).
    let interrupted = jobs::with_status(&mut *pool.get()?, JobStatus::Running)?;
    if interrupted.is_empty() {
        return Ok(done);
    }
    let clubs = clubs::webroots(&mut *pool.get()?, None)?;
    let mut found = recovery::Leftovers::default();
    // What a build user made in an interrupted build, it hands over to be deleted.
    let build_user = settings
        .build_user
        .as_deref()
        .and_then(|name| crate::pipeline::build_user::BuildUser::look_up(name).ok());
    for app in settings.apps() {
        let webroots: Vec<(String, PathBuf)> = clubs
            .iter()
            .filter(|c| c.app == app.name.as_str())
            .map(|c| (c.slug.clone(), PathBuf::from(&c.webroot)))
            .collect();
        let cleared = recovery::clean_leftovers(
            &app.releases_dir,
            &app.legacy_dir,
            &webroots,
            &settings.webroot_base,
            build_user.as_ref(),
        )?;
        found.removed.extend(cleared.removed);
        found.kept.extend(cleared.kept);
    }
    for path in found.removed {
        done.push(format!("removed leftover {}", path.display()));
    }
    for path in found.kept {
        done.push(format!(
            "kept a legacy copy left beside its webroot at {}",
            path.display()
        ));
    }
    // Connections are taken per step: recovery may reload the web server meanwhile.
    for job in interrupted {
        done.extend(recover_job(settings, pool, &job)?);
    }
    Ok(done)
}

fn recover_job(settings: &Settings, pool: &DbPool, job: &jobs::Job) -> anyhow::Result<Vec<String>> {
    let mut completed: Vec<String> = Vec::new();
    let mut during = "start".to_owned();
    for event in jobs::events_after(&mut *pool.get()?, job.id, 0)? {
        match (event.kind.as_str(), event.step) {
            ("step", Some(step)) => during = step,
            ("done", Some(step)) if !completed.contains(&step) => completed.push(step),
            _ => {}
        }
    }
    let mut log = JobLog::new(pool, job.id, false);
    log.write(
        "progress",
        &format!("recovery: the process running this job stopped during {during}"),
        None,
    );
    let mut messages = resync_clubs(settings, &mut *pool.get()?, job)?;
    for message in &messages {
        log.write("progress", &format!("recovery: {message}"), None);
    }
    let spec = JobSpec::from_json(&job.params).ok();
    // A deploy stopped while it checked a wave: those clubs run a release nobody proved.
    let mut unproven = None;
    if during == "health"
        && let Some(JobSpec::Deploy { app, .. }) = &spec
    {
        let app = settings.app(Some(app.as_str()))?;
        unproven = settle_unproven(settings, pool, job, app, &mut log)?;
        if let Some(settled) = &unproven {
            messages.push(settled.said());
        }
    }
    // A switch without its reload leaves PHP serving old and new code mixed: after any job
    // that switched a club (a put-back too), reload, unless recovery's put-back just did.
    let reloads = spec
        .as_ref()
        .is_some_and(|spec| settings.reload.policy.reloads(spec.switch_scope()));
    let switched_any = !switches::of_job(&mut *pool.get()?, job.id)?.is_empty();
    let put_back_reloaded = unproven.as_ref().is_some_and(|u| u.put_back.is_some());
    let mut reloaded = None;
    if reloads && !put_back_reloaded && (during == "switch" || during == "reload" || switched_any) {
        let mut run_job = Job::here(settings, pool, job, &mut log);
        let done = run::reload_after_interruption(&mut run_job);
        match &done {
            Ok(()) => {
                log.end_step();
                messages.push("reloaded the web server the job had not reloaded".into())
            }
            Err(e) => messages.push(format!("could not reload the web server: {e:#}")),
        }
        reloaded = Some(done.is_ok());
    }
    let completed = if completed.is_empty() {
        "none".to_owned()
    } else {
        completed.join(", ")
    };
    let outcome = format!("interrupted during {during}; steps completed: {completed}");
    let left = match &spec {
        Some(JobSpec::Deploy { tag, targets, .. }) => {
            let mut conn = pool.get()?;
            let put_back = unproven
                .as_ref()
                .filter(|u| matches!(u.put_back, Some(Ok(_))))
                .map_or(0, |u| u.clubs.len());
            let switched = switches::of_job(&mut conn, job.id)?
                .into_iter()
                .filter(|s| s.kind.made_by_the_deploy())
                .count()
                - put_back;
            let total = match targets {
                crate::domain::Targets::Clubs(slugs) => slugs.len(),
                crate::domain::Targets::All => {
                    let app = job.app.as_deref().unwrap_or("main");
                    clubs::webroots(&mut conn, Some(app))?.len()
                }
            };
            interrupted_deploy(switched, total, tag.as_str(), reloaded, reloads)
        }
        _ => "every club was left on a complete release".to_owned(),
    };
    let left = match &unproven {
        Some(settled) => format!("{left}. {}", settled.said()),
        None => left,
    };
    let error = format!(
        "the process running this job ({}) stopped during {during}; {left}",
        job.worker.as_deref().unwrap_or("unknown")
    );
    log.write("error", &error, None);
    record_end(
        &mut *pool.get()?,
        job,
        JobStatus::Interrupted,
        Some(&outcome),
        Some(&error),
        "job.interrupted",
        &outcome,
    )?;
    anchor_audit(settings, pool);
    messages.push(format!("job #{} marked interrupted ({outcome})", job.id));
    Ok(messages)
}

/// What recovery did with the wave an interrupted deploy was checking.
struct Unproven {
    clubs: Vec<String>,
    release: String,
    /// Put back (`[health] on_failure = "rollback"`): how that went; `None`: left in place.
    put_back: Option<Result<String, String>>,
}

impl Unproven {
    fn said(&self) -> String {
        let clubs = self.clubs.join(", ");
        let (were, they) = match self.clubs.len() {
            1 => ("was", "it"),
            _ => ("were", "them"),
        };
        let first = format!(
            "{clubs} {were} switched to {} and never proven (the process stopped during the \
             health check)",
            self.release
        );
        match &self.put_back {
            // " and were put back on …"
            Some(Ok(words)) => format!("{first}{words}"),
            Some(Err(why)) => format!("{first}; putting {they} back failed: {why}"),
            None => format!(
                "{first}: {they} {were} left on it, marked unproven and the release bad for \
                 {they}; Put back undoes it"
            ),
        }
    }
}

/// The clubs an interrupted deploy switched that still run what it gave them (`still`) and
/// whose health was never recorded since their switch (`health`): the wave it was checking.
pub fn unproven_of(
    still: crate::service::preview::StillSwitched,
    health: &[clubs::Health],
) -> crate::service::preview::StillSwitched {
    still
        .into_iter()
        .filter(|(club, switch)| {
            !health.iter().any(|h| {
                h.club_id == club.club_id
                    && h.app == club.app
                    && h.at.is_some_and(|at| at >= switch.switched_at)
            })
        })
        .collect()
}

/// Deals with the wave an interrupted deploy was checking, as a failed check would have:
/// under `on_failure = "rollback"` it is put back (the release marked bad for it); otherwise
/// it stays, its health recorded as unproven and the release marked bad for it, and the
/// job's Put back offers to undo it. `None` when no club is unproven.
fn settle_unproven(
    settings: &Settings,
    pool: &DbPool,
    job: &jobs::Job,
    app: &crate::config::App,
    log: &mut JobLog,
) -> anyhow::Result<Option<Unproven>> {
    let (switched, webroots, health) = {
        let mut conn = pool.get()?;
        (
            switches::of_job(&mut conn, job.id)?,
            clubs::webroots(&mut conn, Some(app.name.as_str()))?,
            clubs::health(&mut conn)?,
        )
    };
    let (still, _) = crate::service::preview::still_switched(app, &switched, &webroots)?;
    let wave = unproven_of(still, &health);
    let Some((_, first)) = wave.first() else {
        return Ok(None);
    };
    let mut settled = Unproven {
        clubs: wave.iter().map(|(club, _)| club.slug.clone()).collect(),
        release: first.to_release.clone(),
        put_back: None,
    };
    log.write("progress", &format!("recovery: {}", settled.said()), None);
    if settings.health.on_failure == crate::config::OnFailure::Rollback {
        let mut run_job = Job::here(settings, pool, job, log);
        settled.put_back =
            Some(run::put_back_unproven(&mut run_job, app, wave).map_err(|e| format!("{e:#}")));
        return Ok(Some(settled));
    }
    let note = format!(
        "switched to {}, never proven: job #{} stopped during its health check (Put back \
         undoes it)",
        settled.release, job.id
    );
    let details = format!(
        "{} was never proven (job #{} stopped during its health check); marked bad for it",
        settled.release, job.id
    );
    let marks: Vec<switches::BadMark> = wave
        .iter()
        .map(|(club, switch)| switches::BadMark {
            club_id: club.club_id,
            app: club.app.clone(),
            release: switch.to_release.clone(),
        })
        .collect();
    let entries: Vec<audit::Entry<'_>> = wave
        .iter()
        .map(|(club, _)| {
            audit::Entry::new(
                &job.requested_by,
                "club.unproven",
                "club",
                &club.slug,
                &details,
            )
            .for_app(&club.app)
        })
        .collect();
    let mut conn = pool.get()?;
    switches::record(&mut conn, &[], &marks, &entries)?;
    conn.immediate_transaction(|conn| {
        let at = db::now();
        for (club, _) in &wave {
            clubs::set_health(conn, club.webroot_id, "unchecked", Some(&note), at)?;
        }
        Ok::<_, diesel::result::Error>(())
    })?;
    Ok(Some(settled))
}

/// What an interrupted deploy left and what to do about it: `switched` of `total` clubs on
/// the new release; `reloaded`: whether recovery's reload worked (`None`: none was needed or
/// tried), `reloads`: whether the policy reloads after such a deploy.
pub fn interrupted_deploy(
    switched: usize,
    total: usize,
    tag: &str,
    reloaded: Option<bool>,
    reloads: bool,
) -> String {
    if switched == 0 {
        return format!(
            "no club was switched before the process stopped: every club still runs what it \
             ran. Deploy {tag} again"
        );
    }
    let clubs = |n: usize| if n == 1 { "club" } else { "clubs" };
    let server = match (reloaded, reloads) {
        (Some(true), _) => "the web server was reloaded, so they serve it",
        (Some(false), _) => "the web server could not be reloaded: reload it by hand",
        (None, true) => "the web server had been reloaded",
        (None, false) => "the web server was not reloaded (reload policy)",
    };
    let were = if switched == 1 { "was" } else { "were" };
    let these = if switched == 1 {
        "this club"
    } else {
        "these clubs"
    };
    format!(
        "{switched} of {total} {} {were} switched to {tag} before the process stopped; \
         {server}. Deploy {tag} again to finish, or put {these} back",
        clubs(total)
    )
}

/// Reads every club's links from disk and records any switch the interrupted job made but
/// did not get to record.
fn resync_clubs(
    settings: &Settings,
    conn: &mut Conn,
    job: &jobs::Job,
) -> anyhow::Result<Vec<String>> {
    let mut messages = Vec::new();
    for club in clubs::webroots(conn, None)? {
        // A webroot of an application no longer configured is left as recorded.
        let Ok(app) = settings.app(Some(&club.app)) else {
            continue;
        };
        let releases_dir = &app.releases_dir;
        let on_disk = switch::inspect(club.webroot.as_ref(), releases_dir)?;
        let release = on_disk.release().map(|r| r.to_string());
        if release == club.current_release {
            continue;
        }
        let from = club.current_release.as_deref().unwrap_or("no release");
        let to = release.as_deref().unwrap_or("no release");
        let details = format!(
            "found on disk after job #{} stopped: from {from} to {to}",
            job.id
        );
        let manifest = match &on_disk {
            Webroot::Release(name) => release::read(&releases_dir.join(name.as_str()), name),
            _ => None,
        };
        let entry = audit::Entry::new(
            &job.requested_by,
            "club.switched",
            "club",
            &club.slug,
            &details,
        )
        .for_app(&club.app);
        match manifest {
            Some(found) => switches::record(
                conn,
                &[switches::NewSwitch {
                    club_id: club.club_id,
                    app: club.app.clone(),
                    from_release: club.current_release.clone(),
                    to_release: found.name.to_string(),
                    commit_id: found.manifest.commit,
                    kind: crate::domain::SwitchKind::Recovered,
                    actor: job.requested_by.clone(),
                    switched_at: db::now(),
                    job_id: Some(job.id),
                }],
                &[],
                &[entry],
            )?,
            None => conn.immediate_transaction(|conn| {
                clubs::set_current_release(conn, club.webroot_id, release.as_deref())?;
                audit::append(conn, &entry)
            })?,
        }
        messages.push(format!("club {} ({}): {details}", club.slug, club.app));
    }
    Ok(messages)
}

#[cfg(test)]
mod tests {
    use super::{interrupted_deploy, unproven_of};
    use crate::db::{clubs, switches};

    #[test]
    fn the_wave_under_test_is_the_clubs_switched_and_not_checked_since() {
        let at = |s: i64| chrono::DateTime::from_timestamp(s, 0).unwrap().naive_utc();
        let club = |id: i32| clubs::ClubApp {
            club_id: id,
            slug: format!("c{id}"),
            name: format!("C{id}"),
            url: None,
            webroot_id: id,
            app: "main".into(),
            webroot: format!("/www/c{id}/htdocs"),
            current_release: Some("v2-0".into()),
        };
        let switch = |id: i32, when: i64| switches::Switch {
            id,
            club_id: id,
            app: "main".into(),
            from_release: Some("v1-0".into()),
            to_release: "v2-0".into(),
            commit_id: "0".into(),
            kind: crate::domain::SwitchKind::Deploy,
            actor: "t".into(),
            switched_at: at(when),
        };
        let health = |id: i32, app: &str, when: Option<i64>| clubs::Health {
            club_id: id,
            app: app.into(),
            health: "healthy".into(),
            note: None,
            at: when.map(at),
        };
        let still = (1..=5).map(|id| (club(id), switch(id, 100))).collect();
        let checks = [
            health(1, "main", Some(150)),   // checked after its switch: proven
            health(2, "main", Some(100)),   // in the same instant: checked
            health(3, "main", Some(50)),    // before its switch: from the old release
            health(4, "mobile", Some(150)), // another application's webroot
        ];
        let wave: Vec<i32> = unproven_of(still, &checks)
            .into_iter()
            .map(|(c, _)| c.club_id)
            .collect();
        assert_eq!(wave, [3, 4, 5]);
    }

    #[test]
    fn an_interrupted_deploy_says_what_it_left_and_what_to_do() {
        assert_eq!(
            interrupted_deploy(15, 30, "v2", Some(true), true),
            "15 of 30 clubs were switched to v2 before the process stopped; the web server was \
             reloaded, so they serve it. Deploy v2 again to finish, or put these clubs back"
        );
        assert!(interrupted_deploy(1, 1, "v2", None, false).contains(
            "1 of 1 club was switched to v2 before the process stopped; the web server was \
             not reloaded (reload policy)"
        ));
        assert!(interrupted_deploy(3, 9, "v2", Some(false), true).contains("reload it by hand"));
        assert!(interrupted_deploy(0, 9, "v2", None, true).starts_with("no club was switched"));
    }
}
