//! What OPcache holds, as the probe of a live release reports it (OPcache is one shared cache
//! for the whole Apache): memory, cached scripts, hit rate, restarts, and the cached scripts
//! per release directory, with the releases no club runs any more. And the warnings staff must
//! see before the cache silently overflows (DESIGN §7: ~26× slower, no error anywhere).

use std::collections::{HashMap, HashSet};

use anyhow::Context;
use serde::Serialize;

use crate::config::Settings;
use crate::db::clubs;
use crate::domain::ReloadPolicy;
use crate::pipeline::health;
use crate::pipeline::probe::ProbeKey;
use crate::pipeline::release;

/// OPcache's figures.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Insight {
    /// The site whose probe answered.
    pub asked: String,
    pub enabled: bool,
    /// OPcache ran out of room and caches no more scripts.
    pub cache_full: bool,
    pub used_memory: u64,
    pub free_memory: u64,
    pub wasted_memory: u64,
    pub cached_scripts: u64,
    pub max_cached_keys: u64,
    /// Hits per 100 lookups.
    pub hit_rate: f64,
    pub oom_restarts: u64,
    pub hash_restarts: u64,
    /// Cached scripts per release directory, most memory first.
    pub releases: Vec<CachedRelease>,
    /// PHP's settings that matter to the method (`opcache.memory_consumption`,
    /// `realpath_cache_ttl` …) as the probe read them; empty from a release built before the
    /// probe reported them.
    pub ini: std::collections::BTreeMap<String, String>,
    /// What staff should know, in words (empty when all is well).
    pub warnings: Vec<String>,
}

/// One release directory's scripts in the cache.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CachedRelease {
    pub dir: String,
    /// `<tag>-<sha8>`, or empty for scripts outside any release.
    pub name: String,
    /// The application whose releases directory holds it (empty when none does).
    pub app: String,
    pub scripts: u64,
    pub memory: u64,
    /// Whether some club's webroot runs it.
    pub in_use: bool,
}

impl Insight {
    /// What one release takes in OPcache: the most any cached release directory takes (0
    /// when none is cached).
    pub fn footprint(&self) -> u64 {
        self.releases
            .iter()
            .filter(|r| !r.dir.is_empty())
            .map(|r| r.memory)
            .max()
            .unwrap_or(0)
    }
}

/// A site whose release has a probe: its address, and whether the probe takes the site's
/// token (else the secret: a release built before tokens).
#[derive(Debug, Clone)]
pub struct Site {
    pub url: String,
    pub per_host: bool,
}

/// Where to ask, from the clubs' webroots as recorded: the sites whose release has a probe,
/// and the release directories some club runs. Reads each release's manifest once, whatever
/// the number of clubs on it, and holds no database connection.
pub fn sites(
    settings: &Settings,
    webroots: &[clubs::ClubApp],
) -> anyhow::Result<(Vec<Site>, HashSet<String>)> {
    let mut urls = Vec::new();
    let mut in_use = HashSet::new();
    // Per release: None, no probe; Some(per_host).
    let mut has_probe: HashMap<std::path::PathBuf, Option<bool>> = HashMap::new();
    for club in webroots {
        let Ok(app) = settings.app(Some(&club.app)) else {
            continue;
        };
        if let Some(current) = &club.current_release {
            let dir = app.releases_dir.join(current);
            let probed = match has_probe.get(&dir) {
                Some(probed) => *probed,
                None => {
                    let name = crate::domain::ReleaseName::parse(current)?;
                    let probed = release::read(&dir, &name)
                        .filter(|r| r.manifest.probe.is_some())
                        .map(|r| r.manifest.probe_per_host);
                    has_probe.insert(dir.clone(), probed);
                    probed
                }
            };
            if let Some(url) = &club.url
                && let Some(per_host) = probed
            {
                urls.push(Site {
                    url: url.clone(),
                    per_host,
                });
            }
            in_use.insert(dir.display().to_string());
        }
    }
    Ok((urls, in_use))
}

/// The longest one site's probe may take to answer a reading of OPcache's figures.
pub const READ_TIMEOUT_MS: u64 = 1000;

/// Asks the first site whose probe answers (at most three, a second each).
pub fn read(
    settings: &Settings,
    urls: &[Site],
    in_use: &HashSet<String>,
) -> anyhow::Result<Insight> {
    if !settings.probe.enabled {
        anyhow::bail!("probes are off ([probe] enabled = false), so OPcache cannot be read");
    }
    let key = ProbeKey::load_or_create(&settings.data_dir)?;
    // A site that is slow to answer gets a second, not the health checks' patience.
    let asking = crate::config::HealthSettings {
        request_timeout_ms: settings.health.request_timeout_ms.min(READ_TIMEOUT_MS),
        ..settings.health.clone()
    };
    let mut last = None;
    for site in urls.iter().take(3) {
        match health::ask_probe(&asking, &site.url, &key, site.per_host, true) {
            Ok(answer) => return insight(settings, &site.url, &answer, in_use),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        anyhow::anyhow!(
            "no club with an address runs a release with a probe, so OPcache cannot be read \
             (give clubs their address with `clubdeploy club url`, and deploy once)"
        )
    }))
}

fn insight(
    settings: &Settings,
    url: &str,
    answer: &serde_json::Value,
    in_use: &HashSet<String>,
) -> anyhow::Result<Insight> {
    let opcache = &answer["opcache"];
    if opcache.is_null() {
        anyhow::bail!("OPcache is not loaded in the PHP that serves {url}");
    }
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    let memory = &opcache["memory_usage"];
    let stats = &opcache["opcache_statistics"];
    // PHP encodes an empty list of directories as `[]`: nothing cached yet.
    let per_dir = &answer["scripts_per_dir"];
    let empty = serde_json::Map::new();
    let per_dir = match per_dir.as_array() {
        Some(list) if list.is_empty() => &empty,
        _ => per_dir.as_object().context("the probe listed no scripts")?,
    };
    let mut releases: Vec<CachedRelease> = per_dir
        .iter()
        .map(|(dir, figures)| CachedRelease {
            name: dir.rsplit('/').next().unwrap_or_default().to_owned(),
            app: settings
                .apps()
                .iter()
                .find(|app| std::path::Path::new(dir).parent() == Some(app.releases_dir.as_path()))
                .map(|app| app.name.to_string())
                .unwrap_or_default(),
            in_use: in_use.contains(dir),
            scripts: n(&figures["scripts"]),
            memory: n(&figures["memory"]),
            dir: dir.clone(),
        })
        .collect();
    releases.sort_by(|a, b| b.memory.cmp(&a.memory).then(a.dir.cmp(&b.dir)));
    for release in releases.iter_mut().filter(|r| r.dir.is_empty()) {
        release.in_use = true;
    }
    let mut found = Insight {
        asked: url.to_owned(),
        enabled: opcache["enabled"].as_bool().unwrap_or(false),
        cache_full: opcache["cache_full"].as_bool().unwrap_or(false),
        used_memory: n(&memory["used_memory"]),
        free_memory: n(&memory["free_memory"]),
        wasted_memory: n(&memory["wasted_memory"]),
        cached_scripts: n(&stats["num_cached_scripts"]),
        max_cached_keys: n(&stats["max_cached_keys"]),
        hit_rate: stats["opcache_hit_rate"].as_f64().unwrap_or(0.0),
        oom_restarts: n(&stats["oom_restarts"]),
        hash_restarts: n(&stats["hash_restarts"]),
        releases,
        ini: answer["ini"]
            .as_object()
            .map(|ini| {
                ini.iter()
                    .map(|(k, v)| {
                        let v = match v {
                            serde_json::Value::String(s) => s.clone(),
                            serde_json::Value::Bool(b) => if *b { "1" } else { "0" }.to_owned(),
                            other => other.to_string(),
                        };
                        (k.clone(), v)
                    })
                    .collect()
            })
            .unwrap_or_default(),
        warnings: Vec::new(),
    };
    found.warnings = warnings(&found, settings.reload.policy);
    Ok(found)
}

/// The warnings: free memory below one release's footprint (the next deploy without a
/// reload would overflow), any out-of-memory restart, and with a policy that does not always
/// reload, the releases cached that no club runs.
pub fn warnings(insight: &Insight, policy: ReloadPolicy) -> Vec<String> {
    let mut warnings = Vec::new();
    if !insight.enabled {
        warnings.push("OPcache is off: every request compiles the code again.".to_owned());
    }
    let footprint = insight.footprint();
    if footprint > 0 && insight.free_memory < footprint {
        warnings.push(format!(
            "OPcache has {} free, less than one release needs ({}): a deploy without a reload \
             would overflow it, and PHP would get many times slower without any error. Raise \
             opcache.memory_consumption, or keep the reload policy \"always\".",
            mb(insight.free_memory),
            mb(footprint)
        ));
    }
    if insight.oom_restarts > 0 {
        warnings.push(format!(
            "OPcache ran out of memory and restarted {} time{}: raise \
             opcache.memory_consumption.",
            insight.oom_restarts,
            if insight.oom_restarts == 1 { "" } else { "s" }
        ));
    }
    let dead: Vec<&CachedRelease> = insight
        .releases
        .iter()
        .filter(|r| !r.in_use && !r.dir.is_empty())
        .collect();
    if policy != ReloadPolicy::Always && !dead.is_empty() {
        warnings.push(format!(
            "{} release{} cached that no club runs ({}): OPcache never frees them until Apache \
             is reloaded.",
            dead.len(),
            if dead.len() == 1 { " is" } else { "s are" },
            mb(dead.iter().map(|r| r.memory).sum())
        ));
    }
    warnings
}

/// "12.3 MB".
pub fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cached(dir: &str, memory: u64, in_use: bool) -> CachedRelease {
        CachedRelease {
            dir: dir.into(),
            name: dir.rsplit('/').next().unwrap().into(),
            app: "main".into(),
            scripts: 10,
            memory,
            in_use,
        }
    }

    fn insight(free: u64, oom: u64, releases: Vec<CachedRelease>) -> Insight {
        Insight {
            asked: "http://a".into(),
            enabled: true,
            cache_full: false,
            used_memory: 1,
            free_memory: free,
            wasted_memory: 0,
            cached_scripts: 20,
            max_cached_keys: 100,
            hit_rate: 99.0,
            oom_restarts: oom,
            hash_restarts: 0,
            releases,
            ini: Default::default(),
            warnings: Vec::new(),
        }
    }

    #[test]
    fn staff_are_warned_before_the_cache_overflows() {
        let releases = vec![
            cached("/d/releases/v2-1", 30_000_000, true),
            cached("/d/releases/v1-1", 20_000_000, false),
        ];
        let calm = insight(100_000_000, 0, releases.clone());
        assert!(warnings(&calm, ReloadPolicy::Always).is_empty());
        let tight = insight(29_000_000, 0, releases.clone());
        let said = warnings(&tight, ReloadPolicy::Always);
        assert!(
            said[0].contains("less than one release needs (30.0 MB)"),
            "{said:?}"
        );
        let oom = warnings(
            &insight(100_000_000, 2, releases.clone()),
            ReloadPolicy::Always,
        );
        assert!(oom[0].contains("restarted 2 times"), "{oom:?}");
        let dead = warnings(&calm, ReloadPolicy::Never);
        assert!(
            dead[0].contains("1 release is cached that no club runs (20.0 MB)"),
            "{dead:?}"
        );
        assert_eq!(warnings(&calm, ReloadPolicy::AfterAll).len(), 1);
    }
}
