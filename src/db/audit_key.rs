//! The audit chain's secret key: `audit.key` beside the database, readable by the service
//! user only. Rows from `keyed_from` on carry an HMAC-SHA-256 under it, so whoever can write
//! the database but not read this file cannot re-chain edited rows; rows written before the
//! key existed (an installation upgraded from 0.1) keep their plain SHA-256 chain, and the
//! first keyed row chains onto the last of them.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use diesel::prelude::*;
use diesel::sql_types::Text;

/// The file's name, beside the database.
pub const KEY_FILE: &str = "audit.key";

/// The key and the first row it covers.
#[derive(Clone)]
pub struct AuditKey {
    key: [u8; 32],
    /// Rows with this id and later carry an HMAC under the key.
    pub keyed_from: i32,
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuditKey(keyed from row {})", self.keyed_from)
    }
}

impl AuditKey {
    /// The key's bytes, for the MAC.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.key
    }
}

/// Keys already read, by file: a process reads its key file once.
static KEYS: Mutex<Option<HashMap<PathBuf, Arc<AuditKey>>>> = Mutex::new(None);

#[derive(QueryableByName)]
struct DatabaseFile {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    file: String,
}

/// Where the key of the database behind `conn` lives (`None` for an in-memory database).
pub fn key_path(conn: &mut SqliteConnection) -> QueryResult<Option<PathBuf>> {
    let files: Vec<DatabaseFile> = diesel::sql_query("PRAGMA database_list").load(conn)?;
    Ok(files
        .into_iter()
        .find(|f| f.name == "main" && !f.file.is_empty())
        .and_then(|f| Path::new(&f.file).parent().map(|dir| dir.join(KEY_FILE))))
}

/// The key at `path`, if the file exists; an unreadable or malformed file is an error.
pub fn read(path: &Path) -> std::io::Result<Option<Arc<AuditKey>>> {
    if let Some(found) = cached(path) {
        return Ok(Some(found));
    }
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let malformed = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} is not an audit key file", path.display()),
        )
    };
    let mut key = None;
    let mut keyed_from = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        match line.split_once('=') {
            Some(("key", hex)) => key = decode_hex(hex.trim()),
            Some(("keyed_from", n)) => keyed_from = n.trim().parse::<i32>().ok(),
            _ => {}
        }
    }
    let key = AuditKey {
        key: key.ok_or_else(malformed)?,
        keyed_from: keyed_from.filter(|n| *n >= 1).ok_or_else(malformed)?,
    };
    Ok(Some(remember(path, key)))
}

/// The key for appending row `next_id`: the existing one, or a new one covering rows from
/// `next_id` on (written 0600 through a temporary file and a rename). Call inside the
/// append's immediate transaction: it orders processes creating the key.
pub fn for_append(conn: &mut SqliteConnection, next_id: i32) -> QueryResult<Option<Arc<AuditKey>>> {
    let Some(path) = key_path(conn)? else {
        return Ok(None);
    };
    let io = |e: std::io::Error| diesel::result::Error::QueryBuilderError(Box::new(e));
    if let Some(key) = read(&path).map_err(io)? {
        return Ok(Some(key));
    }
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    let key = AuditKey {
        key: bytes,
        keyed_from: next_id,
    };
    write(&path, &key).map_err(io)?;
    Ok(Some(remember(&path, key)))
}

fn write(path: &Path, key: &AuditKey) -> std::io::Result<()> {
    let temp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)?;
    let hex = crate::secret::hex(&key.key);
    write!(
        file,
        "# clubdeploy's audit chain key. Keep it secret and keep it: without it the audit log\n\
         # cannot be verified. Back it up with the database.\nkey={hex}\nkeyed_from={}\n",
        key.keyed_from
    )?;
    file.sync_all()?;
    std::fs::rename(&temp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn cached(path: &Path) -> Option<Arc<AuditKey>> {
    let keys = KEYS.lock().unwrap_or_else(|e| e.into_inner());
    keys.as_ref()?.get(path).cloned()
}

fn remember(path: &Path, key: AuditKey) -> Arc<AuditKey> {
    let key = Arc::new(key);
    let mut keys = KEYS.lock().unwrap_or_else(|e| e.into_inner());
    keys.get_or_insert_with(HashMap::new)
        .insert(path.to_path_buf(), key.clone());
    key
}

fn decode_hex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}
