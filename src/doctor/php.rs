//! PHP and OPcache as the PHP serving the clubs reports them through the probe.

use super::*;

/// PHP and OPcache through the probe; `largest`: the largest release's (size, PHP files).
pub(super) fn php(
    settings: &Settings,
    webroots: &[ClubApp],
    largest: (u64, u64),
    report: &mut Report,
) {
    let insight = crate::service::opcache::sites(settings, webroots).and_then(|(urls, in_use)| {
        // One visit to the sites asked, so that OPcache holds their release (after a reload
        // it holds nothing until someone visits) and a release's footprint can be measured.
        for site in urls.iter().take(3) {
            let _ = crate::pipeline::health::status_of(&settings.health, &site.url);
        }
        crate::service::opcache::read(settings, &urls, &in_use)
    });
    let insight = match insight {
        Ok(insight) => insight,
        Err(e) => {
            report.add(
                "php",
                Level::Warning,
                format!("PHP and OPcache were not checked: {e:#}"),
                "give the clubs their address (clubdeploy club url) and deploy once with \
                 probes on",
            );
            return;
        }
    };
    let mb = crate::service::opcache::mb;
    if !insight.enabled {
        report.add(
            "php",
            Level::Problem,
            format!(
                "OPcache is off in the PHP that serves {}: every request compiles every script",
                insight.asked
            ),
            "set opcache.enable=1 in PHP's configuration for Apache and reload Apache",
        );
        return;
    }
    let total = insight.used_memory + insight.free_memory + insight.wasted_memory;
    if insight.cache_full {
        report.add(
            "php",
            Level::Problem,
            format!(
                "OPcache is full ({} in all): it caches no more scripts, so the clubs' PHP is \
                 compiled on every request, and a deploy needs room for two releases at once",
                mb(total)
            ),
            "raise opcache.memory_consumption (and opcache.max_accelerated_files) and reload \
             Apache",
        );
    }
    let footprint = insight.footprint();
    if let Some(fit) = total.checked_div(footprint) {
        if fit < 2 {
            report.add(
                "php",
                Level::Problem,
                format!(
                    "OPcache has {} in all and a release takes {}: {} fit{}. During a deploy \
                     the old and the new release are both cached, so OPcache runs full and PHP \
                     slows down without an error",
                    mb(total),
                    mb(footprint),
                    if fit == 0 {
                        "not even one".to_owned()
                    } else {
                        fit.to_string()
                    },
                    if fit == 1 { "s" } else { "" }
                ),
                format!(
                    "raise opcache.memory_consumption to at least {} (MB) and reload Apache",
                    (3 * footprint).div_ceil(1 << 20)
                ),
            );
        } else {
            report.ok(
                "php",
                format!(
                    "OPcache has room for {fit} releases ({} in all, {} per release)",
                    mb(total),
                    mb(footprint)
                ),
            );
        }
    }
    // PHP files per release: as built on disk (every one may be cached), or as cached.
    let (_, on_disk) = largest;
    let cached = insight
        .releases
        .iter()
        .filter(|r| !r.dir.is_empty())
        .map(|r| r.scripts)
        .max()
        .unwrap_or(0);
    let scripts = on_disk.max(cached);
    if scripts > 0 && insight.max_cached_keys < 2 * scripts {
        report.add(
            "php",
            Level::Problem,
            format!(
                "OPcache may hold {} scripts (opcache.max_accelerated_files) and a release has \
                 {scripts} PHP files: two releases do not fit",
                insight.max_cached_keys
            ),
            format!(
                "raise opcache.max_accelerated_files to at least {} and reload Apache",
                4 * scripts
            ),
        );
    } else if scripts > 0 {
        report.ok(
            "php",
            format!(
                "OPcache may hold {} scripts; a release has {scripts} PHP files",
                insight.max_cached_keys
            ),
        );
    }
    if insight.ini.is_empty() {
        report.add(
            "php",
            Level::Warning,
            "PHP's settings were not read: the release asked was built before its probe \
             reported them"
                .into(),
            "deploy a release built by this version",
        );
        return;
    }
    let ini = |name: &str| insight.ini.get(name).cloned().unwrap_or_default();
    let ttl: u64 = ini("realpath_cache_ttl").parse().unwrap_or(0);
    let policy = settings.reload.policy;
    if policy != crate::domain::ReloadPolicy::Always
        && ttl > settings.reload.realpath_cache_ttl_secs
    {
        report.add(
            "php",
            Level::Problem,
            format!(
                "PHP remembers where a path leads for {ttl} s (realpath_cache_ttl), but \
                 clubdeploy counts on {} s (reload.realpath_cache_ttl_secs): without a reload, \
                 a release could be deleted while a club still reads from it",
                settings.reload.realpath_cache_ttl_secs
            ),
            format!("set reload.realpath_cache_ttl_secs = {ttl} (or more)"),
        );
    } else {
        report.ok(
            "php",
            format!(
                "realpath_cache_ttl is {ttl} s; {}",
                if policy == crate::domain::ReloadPolicy::Always {
                    "every switch reloads Apache, which empties it"
                } else {
                    "clubdeploy waits at least that long before pruning"
                }
            ),
        );
    }
    let never_revalidates = insight
        .ini
        .get("opcache.validate_timestamps")
        .is_some_and(|v| ini_off(v));
    if never_revalidates && policy != crate::domain::ReloadPolicy::Always {
        report.add(
            "php",
            Level::Problem,
            format!(
                "OPcache never looks at a file again once cached (opcache.validate_timestamps \
                 = 0), and reload.policy is \"{}\": a club switched without a reload keeps \
                 serving its old release until the web server restarts",
                match policy {
                    crate::domain::ReloadPolicy::AfterAll => "after_all",
                    _ => "never",
                }
            ),
            "set [reload] policy = \"always\" (or opcache.validate_timestamps = 1)",
        );
    }
    report.ok(
        "php",
        format!(
            "opcache.memory_consumption {} MB, max_accelerated_files {}, validate_timestamps {}",
            ini("opcache.memory_consumption"),
            ini("opcache.max_accelerated_files"),
            ini("opcache.validate_timestamps")
        ),
    );
}

/// Whether PHP's `ini_get` value of a boolean setting says off (`0`, `""`, `off` …).
pub(super) fn ini_off(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "" | "0" | "off" | "false" | "no"
    )
}
