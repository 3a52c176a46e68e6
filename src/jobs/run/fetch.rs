//! A fetch job: new tags from each application's repository.

use super::*;

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

pub(super) fn fetch_app(job: &mut Job<'_>, app: &App) -> anyhow::Result<String> {
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
