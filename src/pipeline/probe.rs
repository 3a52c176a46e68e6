//! The health probe clubdeploy writes into every release: a PHP script that, asked through a
//! club's site with the probe secret, says which release directory it runs from and what
//! OPcache holds. Without the secret it answers 404 and nothing else. The script holds only a
//! SHA-256 of the secret, so a release served as plain text (PHP broken) leaks nothing usable.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

/// Where the probe lives in a release.
pub const PROBE_PATH: &str = ".clubdeploy/probe.php";

/// The directory of [`PROBE_PATH`], which a repository may not hold itself.
pub const PROBE_DIR: &str = ".clubdeploy";

/// The request header that carries the secret.
pub const HEADER: &str = "X-Clubdeploy-Probe";

/// The secret file in `data_dir` (mode 0600).
pub const KEY_FILE: &str = "probe.key";

/// The probe secret: 32 random bytes, hex.
#[derive(Clone)]
pub struct ProbeKey(String);

impl std::fmt::Debug for ProbeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProbeKey(***)")
    }
}

impl ProbeKey {
    /// The key in `<data_dir>/probe.key`, made (mode 0600) the first time.
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<ProbeKey> {
        let path = data_dir.join(KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => return ProbeKey::parse(text.trim(), &path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
        // Written whole under a temporary name, then linked into place: a process starting
        // at the same moment sees no file or a complete one, and the first link wins.
        let secret = crate::secret::random_token();
        let temp = data_dir.join(format!(
            "{KEY_FILE}.tmp-{}",
            &crate::secret::random_token()[..12]
        ));
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .and_then(|mut file| {
                file.write_all(secret.as_bytes())?;
                file.write_all(b"\n")?;
                file.sync_all()
            })
            .and_then(|()| std::fs::hard_link(&temp, &path));
        let _ = std::fs::remove_file(&temp);
        match written {
            Ok(()) => Ok(ProbeKey(secret)),
            // Another process made it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                ProbeKey::parse(std::fs::read_to_string(&path)?.trim(), &path)
            }
            Err(e) => Err(e).with_context(|| format!("cannot write {}", path.display())),
        }
    }

    fn parse(text: &str, path: &Path) -> anyhow::Result<ProbeKey> {
        if text.len() < 32 || !text.chars().all(|c| c.is_ascii_hexdigit()) {
            bail!(
                "{} does not hold a probe secret (hex); move it away and a new one is made",
                path.display()
            );
        }
        Ok(ProbeKey(text.to_owned()))
    }

    /// The secret, for the request header.
    pub fn secret(&self) -> &str {
        &self.0
    }

    /// The SHA-256 of the secret, hex: all the probe holds.
    pub fn hash(&self) -> String {
        Sha256::digest(self.0.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// The probe's PHP source for the secret hashed as `hash`.
pub fn script(hash: &str) -> String {
    format!(
        r#"<?php
// Written by clubdeploy into every release: asked with the probe secret, it says which release
// this site runs from and what OPcache holds. Without the secret: 404, nothing else.
$expected = '{hash}';
$given = $_SERVER['HTTP_X_CLUBDEPLOY_PROBE'] ?? '';
if (!is_string($given) || !hash_equals($expected, hash('sha256', $given))) {{
    http_response_code(404);
    exit;
}}
header('Content-Type: application/json');
header('Cache-Control: no-store');
$scripts = !empty($_GET['scripts']);
$status = function_exists('opcache_get_status') ? @opcache_get_status($scripts) : false;
$answer = [
    'release_dir' => realpath(dirname(__DIR__)),
    'php_version' => PHP_VERSION,
    'opcache' => null,
    'ini' => [],
];
foreach (['opcache.enable', 'opcache.memory_consumption', 'opcache.max_accelerated_files',
          'opcache.validate_timestamps', 'opcache.revalidate_freq', 'opcache.revalidate_path',
          'realpath_cache_ttl', 'realpath_cache_size'] as $name) {{
    $answer['ini'][$name] = ini_get($name);
}}
if (is_array($status)) {{
    $answer['opcache'] = [
        'enabled' => $status['opcache_enabled'] ?? false,
        'cache_full' => $status['cache_full'] ?? false,
        'memory_usage' => $status['memory_usage'] ?? null,
        'opcache_statistics' => $status['opcache_statistics'] ?? null,
        'interned_strings_usage' => $status['interned_strings_usage'] ?? null,
    ];
    if ($scripts) {{
        // Cached scripts counted per release directory (…/releases/<name>), the rest as "".
        $per = [];
        foreach (($status['scripts'] ?? []) as $path => $info) {{
            $dir = preg_match('#^(.*/releases/[^/]+)/#', $path, $m) ? $m[1] : '';
            if (!isset($per[$dir])) {{
                $per[$dir] = ['scripts' => 0, 'memory' => 0];
            }}
            $per[$dir]['scripts'] += 1;
            $per[$dir]['memory'] += $info['memory_consumption'] ?? 0;
        }}
        $answer['scripts_per_dir'] = $per;
    }}
}}
echo json_encode($answer);
"#
    )
}

/// Writes the probe into `tree` (a release being built), refusing a tree that has its own
/// `.clubdeploy`.
pub fn write_into(tree: &Path, hash: &str) -> anyhow::Result<()> {
    let dir = tree.join(PROBE_DIR);
    if std::fs::symlink_metadata(&dir).is_ok() {
        bail!(
            "the repository holds {PROBE_DIR} itself; clubdeploy writes its health probe there, \
             so rename it in the repository (or set [probe] enabled = false)"
        );
    }
    std::fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let path = tree.join(PROBE_PATH);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(script(hash).as_bytes())?;
    // Apache reads it; the service's umask (077) would hide it.
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    file.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_made_once_private_and_the_probe_holds_only_its_hash() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let key = ProbeKey::load_or_create(dir.path()).unwrap();
        let again = ProbeKey::load_or_create(dir.path()).unwrap();
        assert_eq!(key.secret(), again.secret());
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let script = script(&key.hash());
        assert!(script.contains(&key.hash()));
        assert!(!script.contains(key.secret()));
        assert!(!format!("{key:?}").contains(key.secret()));
    }

    #[test]
    fn a_tree_with_its_own_clubdeploy_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        // Whatever the umask, Apache may read it.
        let umask = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
        write_into(dir.path(), "ab").unwrap();
        rustix::process::umask(umask);
        use std::os::unix::fs::PermissionsExt;
        for (path, mode) in [(PROBE_DIR, 0o755), (PROBE_PATH, 0o644)] {
            let found = std::fs::metadata(dir.path().join(path))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(found & 0o777, mode, "{path}");
        }
        let error = write_into(dir.path(), "ab").unwrap_err().to_string();
        assert!(error.contains("holds .clubdeploy itself"), "{error}");
    }
}
