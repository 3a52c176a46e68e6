//! Fault injection for the crash-recovery tests: when `CLUBDEPLOY_CRASH_AT` names a point the
//! process reaches, it aborts there, as a power cut or `kill -9` would stop it.

use std::sync::OnceLock;

/// The variable naming the point: `build:before-publish`, `switch:after-N`, `reload:before`,
/// `health:check-N` (the N-th health check) or `prune:after-trash`.
pub const CRASH_AT: &str = "CLUBDEPLOY_CRASH_AT";

/// The point `CLUBDEPLOY_CRASH_AT` names, read once.
fn wanted() -> Option<&'static str> {
    static CRASH_AT_POINT: OnceLock<Option<String>> = OnceLock::new();
    CRASH_AT_POINT
        .get_or_init(|| std::env::var(CRASH_AT).ok())
        .as_deref()
}

/// Whether any crash point is set: a loop over thousands of clubs names its points only then.
pub fn armed() -> bool {
    wanted().is_some()
}

/// Aborts the process if `CLUBDEPLOY_CRASH_AT` names `point`.
pub fn point(point: &str) {
    if wanted() == Some(point) {
        eprintln!("{CRASH_AT}={point}: aborting here on purpose");
        std::process::abort();
    }
}
