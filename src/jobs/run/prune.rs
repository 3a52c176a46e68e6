//! A prune job: releases no club needs, deleted once no request can use them.

use super::*;

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

/// Deletes unused releases beyond `keep_releases`, but only when no request can still run on
/// them: `prune_grace_secs` after a reload, reloading first when the policy allows, or else
/// after PHP's realpath cache has expired since the last switch.
pub(super) fn prune_releases(
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
