//! Adopting a legacy copy, undoing that, and deleting a kept copy.

use super::*;

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
    if job.host.inspect(&webroot, &app.releases_dir)? != Webroot::NotALink {
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
        kind: SwitchKind::Adopt,
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
pub(super) fn report_differences(
    job: &mut Job<'_>,
    diff: &crate::pipeline::tree_diff::TreeDiff,
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
