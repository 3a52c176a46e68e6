//! The health probe clubdeploy writes into every release: a PHP script that, asked through a
//! club's site with that site's token, says which release directory it runs from and what
//! OPcache holds. Without it the probe answers the web server's own "404 Not Found".
//!
//! A site's token is an Ed25519 signature of its host name by a key derived from the probe
//! secret; the script holds only the public key and checks the signature (PHP's sodium). So a
//! release's PHP that reads the header learns one site's token, which opens no other site's
//! probe, and a release served as plain text (PHP broken) shows nothing usable. Releases built
//! before tokens ([`Manifest::probe_per_host`](super::release::Manifest) false) hold a SHA-256
//! of the secret and are asked with the secret itself until they are redeployed.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, bail};
use hmac::{KeyInit, Mac};
use ring::signature::{Ed25519KeyPair, KeyPair};
use sha2::Sha256;

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

    /// The secret itself: what a release built before per-site tokens is asked with.
    pub fn secret(&self) -> &str {
        &self.0
    }

    /// The signing key, derived from the secret (the same on every start).
    fn signer(&self) -> Ed25519KeyPair {
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(self.0.as_bytes())
            .expect("HMAC takes a key of any length");
        mac.update(b"clubdeploy probe: the key that signs each site's token");
        let seed = mac.finalize().into_bytes();
        Ed25519KeyPair::from_seed_unchecked(&seed).expect("any 32 bytes are an Ed25519 seed")
    }

    /// The public key, hex: all a probe holds.
    pub fn public_key(&self) -> String {
        hex(self.signer().public_key().as_ref())
    }

    /// The token that opens the probe of the site named `host` (and no other): the signature
    /// of [`signed_text`]`(host)`, hex.
    pub fn token_for(&self, host: &str) -> String {
        hex(self.signer().sign(signed_text(host).as_bytes()).as_ref())
    }

    /// What to send, in [`HEADER`], to the probe of the site at `url`: its token, or for a
    /// release built before tokens (`per_host` false) the secret.
    pub fn credential(&self, url: &str, per_host: bool) -> String {
        match per_host {
            true => self.token_for(&crate::domain::url_host(url).unwrap_or_default()),
            false => self.0.clone(),
        }
    }
}

/// What a site's token signs: its host name, lower case, without port or trailing dot.
pub fn signed_text(host: &str) -> String {
    format!("clubdeploy-probe {host}")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The probe's PHP source for the public key `public_key` (hex).
pub fn script(public_key: &str) -> String {
    format!(
        r#"<?php
// clubdeploy probe 2. Written by clubdeploy into every release: asked with the token of the
// site it is asked through, it says which release this site runs from and what OPcache holds.
// Otherwise it answers as the web server does for a file that is not there.
function clubdeploy_not_found() {{
    header_remove();
    http_response_code(404);
    $software = (string)($_SERVER['SERVER_SOFTWARE'] ?? '');
    if (strncmp($software, 'Apache', 6) === 0) {{
        // Apache's own page: HTML 4.01 from 2.4.66 (and when it hides its version), 2.0 before.
        $old = preg_match('#^Apache/2\.(\d+)\.(\d+)#', $software, $v)
            && ((int)$v[1] < 4 || ((int)$v[1] === 4 && (int)$v[2] < 66));
        header('Content-Type: text/html; charset=iso-8859-1');
        echo $old
            ? "<!DOCTYPE HTML PUBLIC \"-//IETF//DTD HTML 2.0//EN\">\n"
            : "<!DOCTYPE HTML PUBLIC \"-//W3C//DTD HTML 4.01//EN\" \"http://www.w3.org/TR/html4/strict.dtd\">\n";
        echo "<html><head>\n<title>404 Not Found</title>\n</head><body>\n<h1>Not Found</h1>\n",
            "<p>The requested URL was not found on this server.</p>\n";
        $signature = (string)($_SERVER['SERVER_SIGNATURE'] ?? '');
        if ($signature !== '') {{
            echo "<hr>\n", $signature;
        }}
        echo "</body></html>\n";
    }}
    exit;
}}
$given = $_SERVER['HTTP_X_CLUBDEPLOY_PROBE'] ?? '';
$host = strtolower((string)($_SERVER['HTTP_HOST'] ?? ''));
$host = preg_match('/^\[([^\]]*)\]/', $host, $m) ? $m[1] : preg_replace('/:\d*$/', '', $host);
$host = rtrim($host, '.');
if (!function_exists('sodium_crypto_sign_verify_detached')) {{
    http_response_code(500);
    header('Content-Type: text/plain');
    echo "clubdeploy's probe needs PHP's sodium extension (bundled with PHP since 7.2)\n";
    exit;
}}
if (!is_string($given) || strlen($given) !== 128 || !ctype_xdigit($given)
    || !sodium_crypto_sign_verify_detached(hex2bin($given), 'clubdeploy-probe ' . $host,
                                           hex2bin('{public_key}'))) {{
    clubdeploy_not_found();
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

/// Writes the probe for `public_key` into `tree` (a release being built), refusing a tree
/// that has its own `.clubdeploy`.
pub fn write_into(tree: &Path, public_key: &str) -> anyhow::Result<()> {
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
    file.write_all(script(public_key).as_bytes())?;
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
        let script = script(&key.public_key());
        assert!(script.contains(&key.public_key()));
        assert!(!script.contains(key.secret()));
        assert!(!format!("{key:?}").contains(key.secret()));
    }

    #[test]
    fn each_site_has_its_own_token_that_only_the_public_key_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let key = ProbeKey::load_or_create(dir.path()).unwrap();
        let public = key.public_key();
        let bytes: Vec<u8> = (0..public.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&public[i..i + 2], 16).unwrap())
            .collect();
        let verifier = ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, bytes);
        let token = key.credential("https://Alpha.Example:8443/x", true);
        assert_eq!(token, key.token_for("alpha.example"));
        let signature: Vec<u8> = (0..token.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&token[i..i + 2], 16).unwrap())
            .collect();
        assert!(
            verifier
                .verify(signed_text("alpha.example").as_bytes(), &signature)
                .is_ok()
        );
        // Not another site's, and not the secret.
        assert!(
            verifier
                .verify(signed_text("beta.example").as_bytes(), &signature)
                .is_err()
        );
        assert_ne!(key.token_for("beta.example"), token);
        assert!(!token.contains(key.secret()));
        // The same key on every start; an old release is asked with the secret.
        assert_eq!(
            ProbeKey::load_or_create(dir.path()).unwrap().public_key(),
            public
        );
        assert_eq!(
            key.credential("https://alpha.example/", false),
            key.secret()
        );
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
