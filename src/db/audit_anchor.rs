//! Anchors of the audit chain: `(last id, chain hash, time)` lines appended to a file outside
//! the database (`[audit] anchor_file`; point it at an append-only file, `chattr +a`, or
//! another host's mount) and, if configured, sent to syslog. Whoever rewrites the database
//! and its key cannot rewrite what an anchor already vouched for without the anchor showing it.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use super::schema::audit_head;

/// One line of the anchor file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    /// The newest audit row when the anchor was written.
    pub last_id: i32,
    /// That row's hash.
    pub hash: String,
    pub at: DateTime<Utc>,
}

impl Anchor {
    fn line(&self) -> String {
        format!(
            "anchor last_id={} hash={} at={}\n",
            self.last_id,
            self.hash,
            self.at.to_rfc3339()
        )
    }

    fn parse(line: &str) -> Option<Anchor> {
        let mut fields = line.strip_prefix("anchor ")?.split(' ');
        let last_id = fields.next()?.strip_prefix("last_id=")?.parse().ok()?;
        let hash = fields.next()?.strip_prefix("hash=")?.to_owned();
        let at = DateTime::parse_from_rfc3339(fields.next()?.strip_prefix("at=")?).ok()?;
        (hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit())).then(|| Anchor {
            last_id,
            hash,
            at: at.with_timezone(&Utc),
        })
    }
}

/// Appends an anchor for the chain's newest row to `file` (and syslog when `syslog`), unless
/// the log is empty or the file's newest anchor already names that row. Returns what it wrote.
pub fn write(
    conn: &mut SqliteConnection,
    file: &Path,
    syslog: bool,
) -> anyhow::Result<Option<Anchor>> {
    let head: Option<(i32, String)> = audit_head::table
        .find(1)
        .select((audit_head::last_id, audit_head::hash))
        .first(conn)
        .optional()?;
    let Some((last_id, hash)) = head else {
        return Ok(None);
    };
    if newest(file)?.is_some_and(|a| a.last_id == last_id && a.hash == hash) {
        return Ok(None);
    }
    let anchor = Anchor {
        last_id,
        hash,
        at: Utc::now(),
    };
    let mut out = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(file)
        .map_err(|e| {
            anyhow::anyhow!("cannot open the audit anchor file {}: {e}", file.display())
        })?;
    out.write_all(anchor.line().as_bytes())?;
    out.sync_data()?;
    if syslog {
        send_to_syslog(&anchor);
    }
    Ok(Some(anchor))
}

/// An installation made before anchors existed (rows in its log, no audit key file yet, no
/// anchor) gets its first anchor, vouching for the log as it found it; any other is left as
/// it is. Run when clubdeploy opens its database, so that a log with rows and no anchor
/// means, from then on, that the anchors were removed (see `audit::verify`).
pub fn adopt(
    conn: &mut SqliteConnection,
    file: &Path,
    syslog: bool,
) -> anyhow::Result<Option<Anchor>> {
    let keyed = super::audit_key::key_path(conn)?.is_some_and(|key| key.exists());
    if keyed || newest(file)?.is_some() {
        return Ok(None);
    }
    write(conn, file, syslog)
}

/// The newest well-formed anchor in `file`, if it has any (a missing file has none).
pub fn newest(file: &Path) -> std::io::Result<Option<Anchor>> {
    match std::fs::read_to_string(file) {
        Ok(text) => Ok(text.lines().rev().find_map(Anchor::parse)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Best effort: the local syslog socket, facility `auth`, severity `notice`.
fn send_to_syslog(anchor: &Anchor) {
    let message = format!(
        "<37>clubdeploy[{}]: audit {}",
        std::process::id(),
        anchor.line().trim_end()
    );
    if let Ok(socket) = std::os::unix::net::UnixDatagram::unbound() {
        let _ = socket.send_to(message.as_bytes(), "/dev/log");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_read_back_and_garbage_is_skipped() {
        let anchor = Anchor {
            last_id: 42,
            hash: "ab".repeat(32),
            at: DateTime::from_timestamp(1_767_225_600, 0).unwrap(),
        };
        assert_eq!(
            Anchor::parse(anchor.line().trim_end()),
            Some(anchor.clone())
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("anchors.log");
        std::fs::write(&file, format!("{}junk\nanchor last_id=x\n", anchor.line())).unwrap();
        assert_eq!(newest(&file).unwrap(), Some(anchor));
        assert_eq!(newest(&dir.path().join("missing")).unwrap(), None);
    }
}
