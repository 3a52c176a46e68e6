//! The append-only audit log. Each row stores a MAC over its own content and the previous
//! row's hash (HMAC-SHA-256 under the key in `audit.key`; plain SHA-256 for rows written
//! before the key existed), and `audit_head` names the newest row, so an edited, inserted or
//! deleted row breaks the chain where it happened. Anchors ([`super::audit_anchor`]) outside
//! the database pin the chain's head from time to time.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::audit_anchor::Anchor;
use super::audit_key::{self, AuditKey};

use super::schema::{audit_events, audit_head};

/// Rows read at a time while verifying.
const VERIFY_PAGE: i64 = 1000;

/// The `prev_hash` of the first row.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// An audit row as stored.
#[derive(Debug, Clone, Queryable, Selectable, serde::Serialize)]
#[diesel(table_name = audit_events)]
pub struct AuditEvent {
    pub id: i32,
    pub at: NaiveDateTime,
    pub actor: String,
    pub action: String,
    pub target_kind: String,
    pub target: String,
    pub details: String,
    pub address: Option<String>,
    pub prev_hash: String,
    pub hash: String,
    /// The application the row concerns, if one.
    pub app: Option<String>,
}

/// What happened, by whom, to what.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    pub actor: &'a str,
    /// A dotted verb: `job.queued`, `club.switched`, `release.built` …
    pub action: &'a str,
    /// `club`, `release`, `job` or `user`.
    pub target_kind: &'a str,
    pub target: &'a str,
    /// Plain words: "from v1-… to v2-…".
    pub details: &'a str,
    /// The actor's network address, where there is one.
    pub address: Option<&'a str>,
    /// The application concerned, where there is one.
    pub app: Option<&'a str>,
}

impl<'a> Entry<'a> {
    /// An entry with no network address (the command line, a job).
    pub fn new(
        actor: &'a str,
        action: &'a str,
        target_kind: &'a str,
        target: &'a str,
        details: &'a str,
    ) -> Entry<'a> {
        Entry {
            actor,
            action,
            target_kind,
            target,
            details,
            address: None,
            app: None,
        }
    }

    /// The same entry, about application `app`.
    pub fn for_app(self, app: &'a str) -> Entry<'a> {
        Entry {
            app: Some(app),
            ..self
        }
    }
}

#[derive(Insertable)]
#[diesel(table_name = audit_events)]
struct NewRow<'a> {
    id: i32,
    at: NaiveDateTime,
    actor: &'a str,
    action: &'a str,
    target_kind: &'a str,
    target: &'a str,
    details: &'a str,
    address: Option<&'a str>,
    prev_hash: &'a str,
    hash: &'a str,
    app: Option<&'a str>,
}

/// Appends one row. Call inside an immediate transaction (as [`record`] does), so that no
/// other writer extends the chain between reading its head and writing the new row.
pub fn append(conn: &mut SqliteConnection, entry: &Entry<'_>) -> QueryResult<()> {
    append_all(conn, std::slice::from_ref(entry))
}

/// Appends rows in order, each chained onto the one before, reading the chain's head and key
/// once and writing the head once: a job's thousands of rows cost one statement each
/// instead of four. Call inside an immediate transaction, as for [`append`].
pub fn append_all(conn: &mut SqliteConnection, entries: &[Entry<'_>]) -> QueryResult<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let head: Option<(i32, String)> = audit_head::table
        .find(1)
        .select((audit_head::last_id, audit_head::hash))
        .first(conn)
        .optional()?;
    let (last_id, mut prev_hash) = head.unwrap_or((0, GENESIS.to_owned()));
    let key = audit_key::for_append(conn, last_id + 1)?;
    for (n, entry) in entries.iter().enumerate() {
        let id = last_id + 1 + n as i32;
        let at = super::now();
        let hash = hash_of(
            key.as_deref(),
            id,
            at,
            entry.actor,
            entry.action,
            entry.target_kind,
            entry.target,
            entry.details,
            entry.address,
            entry.app,
            &prev_hash,
        );
        diesel::insert_into(audit_events::table)
            .values(&NewRow {
                id,
                at,
                actor: entry.actor,
                action: entry.action,
                target_kind: entry.target_kind,
                target: entry.target,
                details: entry.details,
                address: entry.address,
                prev_hash: &prev_hash,
                hash: &hash,
                app: entry.app,
            })
            .execute(conn)?;
        prev_hash = hash;
    }
    let id = last_id + entries.len() as i32;
    diesel::insert_into(audit_head::table)
        .values((
            audit_head::id.eq(1),
            audit_head::last_id.eq(id),
            audit_head::hash.eq(&prev_hash),
        ))
        .on_conflict(audit_head::id)
        .do_update()
        .set((audit_head::last_id.eq(id), audit_head::hash.eq(&prev_hash)))
        .execute(conn)?;
    Ok(())
}

/// The newest row's id (changes whenever clubdeploy changes anything).
pub fn last_id(conn: &mut SqliteConnection) -> QueryResult<Option<i32>> {
    audit_events::table
        .select(diesel::dsl::max(audit_events::id))
        .first(conn)
}

/// Appends one row in its own transaction.
pub fn record(conn: &mut SqliteConnection, entry: &Entry<'_>) -> QueryResult<()> {
    conn.immediate_transaction(|conn| append(conn, entry))
}

/// The row's MAC: HMAC-SHA-256 under `key` for rows it covers, plain SHA-256 otherwise.
#[allow(clippy::too_many_arguments)]
fn hash_of(
    key: Option<&AuditKey>,
    id: i32,
    at: NaiveDateTime,
    actor: &str,
    action: &str,
    target_kind: &str,
    target: &str,
    details: &str,
    address: Option<&str>,
    app: Option<&str>,
    prev_hash: &str,
) -> String {
    // Length-prefixed fields: no two different rows hash the same bytes.
    let at = at.format("%Y-%m-%dT%H:%M:%S%.f").to_string();
    let row = id;
    let id = id.to_string();
    let fields = [
        id.as_str(),
        at.as_str(),
        actor,
        action,
        target_kind,
        target,
        details,
        address.unwrap_or("\u{0}none"),
        prev_hash,
    ];
    // The application came later: a row without one hashes exactly as rows always did, so
    // the rows written before it still verify.
    let mut bytes = Vec::new();
    for field in fields.into_iter().chain(app) {
        bytes.extend_from_slice(&(field.len() as u64).to_le_bytes());
        bytes.extend_from_slice(field.as_bytes());
    }
    let digest: Vec<u8> = match key.filter(|k| row >= k.keyed_from) {
        Some(key) => {
            let mut mac = hmac::Hmac::<Sha256>::new_from_slice(key.bytes())
                .expect("HMAC takes a key of any length");
            mac.update(&bytes);
            mac.finalize().into_bytes().to_vec()
        }
        None => Sha256::digest(&bytes).to_vec(),
    };
    crate::secret::hex(&digest)
}

/// Where the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    #[error("audit row {0} does not match its hash: it was edited, or inserted outside clubdeploy")]
    Altered(i32),
    #[error(
        "audit row {missing} is missing: it was deleted (found row {found} after row {before})"
    )]
    Deleted {
        missing: i32,
        before: i32,
        found: i32,
    },
    #[error(
        "audit row {0} does not follow the row before it: a row before it was deleted or it was inserted"
    )]
    Unlinked(i32),
    #[error(
        "the audit log ends at row {found}, but row {expected} was written: the newest rows were deleted"
    )]
    Truncated { expected: i32, found: i32 },
    #[error("audit row {0} was added after the newest row clubdeploy wrote: it was inserted")]
    Appended(i32),
    #[error(
        "the audit log ends at row {found}, but an anchor written {at} vouches for row \
         {anchored}: rows were deleted"
    )]
    BehindAnchor {
        found: i32,
        anchored: i32,
        at: String,
    },
    #[error("audit row {0} differs from the anchor written {1}: the log was rewritten since")]
    AnchorMismatch(i32, String),
    #[error(
        "the audit log has {0} rows but no anchor vouches for any of them: the anchor file \
         was removed or emptied, so rows may have been removed from the end"
    )]
    Unanchored(usize),
    #[error(
        "the audit log is empty, but {staff} staff and {jobs} jobs exist: its rows were deleted"
    )]
    Emptied { staff: i64, jobs: i64 },
    #[error("the audit key file cannot be read: {0}")]
    Key(String),
    #[error("the audit anchor file cannot be read: {0}")]
    Anchors(String),
}

/// What a check of the chain proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Rows checked.
    pub rows: usize,
    /// The first row under the key (`None`: no key file, every row by plain SHA-256).
    pub keyed_from: Option<i32>,
    /// The newest anchor, which the chain matched.
    pub anchor: Option<Anchor>,
    /// The newest row.
    pub last_id: i32,
}

impl std::fmt::Display for Verified {
    /// What was proven and what was not, in plain words.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} rows, hash chain verified", self.rows)?;
        match self.keyed_from {
            Some(1) => write!(f, "; every row carries a MAC under the audit key")?,
            Some(from) if from <= self.last_id => write!(
                f,
                "; rows 1 to {} by the plain SHA-256 chain (written before the audit key \
                 existed), rows {from} to {} by the keyed chain",
                from - 1,
                self.last_id
            )?,
            Some(_) => write!(
                f,
                "; every row by the plain SHA-256 chain (written before the audit key existed)"
            )?,
            None => write!(
                f,
                "; no audit key file, so only the plain SHA-256 chain was checked"
            )?,
        }
        match &self.anchor {
            Some(anchor) if anchor.last_id == self.last_id => write!(
                f,
                "; the anchor of {} vouches for every row",
                anchor.at.format("%Y-%m-%d %H:%M UTC")
            ),
            Some(anchor) => write!(
                f,
                "; anchored up to row {} ({}): rows after it are unverified by any anchor",
                anchor.last_id,
                anchor.at.format("%Y-%m-%d %H:%M UTC")
            ),
            None => write!(
                f,
                "; no anchor yet, so nothing outside the database proves rows were not \
                 removed from the end"
            ),
        }
    }
}

/// Walks the whole chain against the key and the newest anchor in `anchor_file` (if any); what it proved,
/// or the first break. An empty or truncated log behind an anchor is a break, never intact;
/// so are rows no anchor vouches for at all (clubdeploy anchors an old installation's log
/// when it first opens it, see `audit_anchor::adopt`) and an empty log while staff or jobs
/// exist.
pub fn verify(
    conn: &mut SqliteConnection,
    anchor_file: &std::path::Path,
) -> QueryResult<Result<Verified, ChainBreak>> {
    let anchor = match super::audit_anchor::newest(anchor_file) {
        Ok(anchor) => anchor,
        Err(e) => {
            return Ok(Err(ChainBreak::Anchors(format!(
                "{}: {e}",
                anchor_file.display()
            ))));
        }
    };
    let key = match audit_key::key_path(conn)? {
        Some(path) => match audit_key::read(&path) {
            Ok(key) => key,
            Err(e) => return Ok(Err(ChainBreak::Key(e.to_string()))),
        },
        None => None,
    };
    let head: Option<(i32, String)> = audit_head::table
        .find(1)
        .select((audit_head::last_id, audit_head::hash))
        .first(conn)
        .optional()?;
    let mut prev_id = 0;
    let mut prev_hash = GENESIS.to_owned();
    let mut verified = 0;
    // A page of rows at a time: memory stays constant however long the log is.
    loop {
        let rows: Vec<AuditEvent> = audit_events::table
            .filter(audit_events::id.gt(prev_id))
            .order(audit_events::id)
            .limit(VERIFY_PAGE)
            .select(AuditEvent::as_select())
            .load(conn)?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            let expected = hash_of(
                key.as_deref(),
                row.id,
                row.at,
                &row.actor,
                &row.action,
                &row.target_kind,
                &row.target,
                &row.details,
                row.address.as_deref(),
                row.app.as_deref(),
                &row.prev_hash,
            );
            if expected != row.hash {
                return Ok(Err(ChainBreak::Altered(row.id)));
            }
            if row.id != prev_id + 1 {
                return Ok(Err(ChainBreak::Deleted {
                    missing: prev_id + 1,
                    before: prev_id,
                    found: row.id,
                }));
            }
            if row.prev_hash != prev_hash {
                return Ok(Err(ChainBreak::Unlinked(row.id)));
            }
            if let Some(anchor) = anchor.as_ref().filter(|a| a.last_id == row.id)
                && anchor.hash != row.hash
            {
                return Ok(Err(ChainBreak::AnchorMismatch(
                    row.id,
                    anchor.at.format("%Y-%m-%d %H:%M UTC").to_string(),
                )));
            }
            prev_id = row.id;
            prev_hash = row.hash.clone();
            verified += 1;
        }
    }
    let (head_id, head_hash) = head.unwrap_or((0, GENESIS.to_owned()));
    if prev_id < head_id {
        return Ok(Err(ChainBreak::Truncated {
            expected: head_id,
            found: prev_id,
        }));
    }
    if prev_id > head_id || prev_hash != head_hash {
        return Ok(Err(ChainBreak::Appended(prev_id)));
    }
    if let Some(anchor) = anchor.as_ref().filter(|a| a.last_id > prev_id) {
        return Ok(Err(ChainBreak::BehindAnchor {
            found: prev_id,
            anchored: anchor.last_id,
            at: anchor.at.format("%Y-%m-%d %H:%M UTC").to_string(),
        }));
    }
    if anchor.is_none() && verified > 0 {
        return Ok(Err(ChainBreak::Unanchored(verified)));
    }
    if verified == 0 {
        let staff = super::schema::users::table.count().get_result(conn)?;
        let jobs = super::schema::jobs::table.count().get_result(conn)?;
        if staff + jobs > 0 {
            return Ok(Err(ChainBreak::Emptied { staff, jobs }));
        }
    }
    Ok(Ok(Verified {
        rows: verified,
        keyed_from: key.map(|k| k.keyed_from),
        anchor,
        last_id: prev_id,
    }))
}

/// What to list.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Rows about these clubs (by slug).
    pub clubs: Option<Vec<String>>,
    pub app: Option<String>,
    pub actor: Option<String>,
    /// One action code (`club.switched`).
    pub action: Option<String>,
    /// Rows of one kind as staff say it ([`crate::domain::AuditKind::patterns`]).
    pub kind: Option<crate::domain::AuditKind>,
    pub since: Option<NaiveDateTime>,
    /// Only rows before this time.
    pub until: Option<NaiveDateTime>,
    /// Only rows older than this id (the next page).
    pub before: Option<i32>,
    pub limit: i64,
}

/// Rows matching the filter, newest first.
pub fn list(conn: &mut SqliteConnection, filter: &Filter) -> QueryResult<Vec<AuditEvent>> {
    let mut query = audit_events::table
        .select(AuditEvent::as_select())
        .order(audit_events::id.desc())
        .limit(filter.limit)
        .into_boxed();
    if let Some(clubs) = &filter.clubs {
        query = query
            .filter(audit_events::target_kind.eq("club"))
            .filter(audit_events::target.eq_any(clubs.clone()));
    }
    if let Some(kind) = filter.kind {
        use diesel::sql_types::Bool;
        type Condition =
            Box<dyn BoxableExpression<audit_events::table, diesel::sqlite::Sqlite, SqlType = Bool>>;
        let mut any: Option<Condition> = None;
        for (action, begins) in kind.patterns() {
            let one: Condition = match begins {
                Some(begins) => Box::new(
                    audit_events::action
                        .like(*action)
                        .and(audit_events::details.like(format!("{begins}%"))),
                ),
                None => Box::new(audit_events::action.like(*action)),
            };
            any = Some(match any {
                None => one,
                Some(before) => Box::new(before.or(one)),
            });
        }
        if let Some(any) = any {
            query = query.filter(any);
        }
    }
    if let Some(until) = filter.until {
        query = query.filter(audit_events::at.lt(until));
    }
    if let Some(app) = &filter.app {
        query = query.filter(audit_events::app.eq(app));
    }
    if let Some(actor) = &filter.actor {
        query = query.filter(audit_events::actor.eq(actor));
    }
    if let Some(action) = &filter.action {
        query = query.filter(audit_events::action.eq(action));
    }
    if let Some(since) = filter.since {
        query = query.filter(audit_events::at.ge(since));
    }
    if let Some(before) = filter.before {
        query = query.filter(audit_events::id.lt(before));
    }
    query.load(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows appended one by one and then in a batch form one chain that verifies, numbered
    /// without a gap, the head naming the last.
    #[test]
    fn a_batch_chains_on_from_the_head_exactly_as_single_appends_do() {
        let dir = tempfile::tempdir().unwrap();
        let pool = super::super::open(&dir.path().join("clubdeploy.sqlite3")).unwrap();
        let conn = &mut pool.get().unwrap();
        let single = Entry::new("cli:ana", "job.queued", "job", "1", "deploy v1");
        conn.immediate_transaction(|conn| append(conn, &single))
            .unwrap();
        let texts: Vec<String> = (0..450)
            .map(|n| format!("deploy: from v1 to v2 (club {n})"))
            .collect();
        let batch: Vec<Entry<'_>> = texts
            .iter()
            .map(|text| Entry::new("job", "club.switched", "club", "c", text).for_app("main"))
            .collect();
        conn.immediate_transaction(|conn| append_all(conn, &batch))
            .unwrap();
        conn.immediate_transaction(|conn| append_all(conn, &[]))
            .unwrap();
        record(conn, &single).unwrap();

        let rows: Vec<AuditEvent> = audit_events::table
            .order(audit_events::id)
            .select(AuditEvent::as_select())
            .load(conn)
            .unwrap();
        let total = batch.len() + 2;
        assert_eq!(rows.len(), total);
        for (n, pair) in rows.windows(2).enumerate() {
            assert_eq!(pair[1].id, n as i32 + 2);
            assert_eq!(pair[1].prev_hash, pair[0].hash);
        }
        assert_eq!(rows[1].details, "deploy: from v1 to v2 (club 0)");
        assert_eq!(rows[total - 2].app.as_deref(), Some("main"));
        let head: (i32, String) = audit_head::table
            .find(1)
            .select((audit_head::last_id, audit_head::hash))
            .first(conn)
            .unwrap();
        assert_eq!(head, (total as i32, rows[total - 1].hash.clone()));
        let anchors = dir.path().join("anchors");
        super::super::audit_anchor::write(conn, &anchors, false).unwrap();
        let verified = verify(conn, &anchors).unwrap().unwrap();
        assert_eq!((verified.rows, verified.last_id), (total, total as i32));
    }
}
