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
