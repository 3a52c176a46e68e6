//! The append-only audit log. Each row stores a SHA-256 over its own content and the previous
//! row's hash, and `audit_head` names the newest row, so an edited, inserted or deleted row
//! breaks the chain where it happened.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use sha2::{Digest, Sha256};

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
}

/// Appends one row. Call inside an immediate transaction (as [`record`] does), so that no
/// other writer extends the chain between reading its head and writing the new row.
pub fn append(conn: &mut SqliteConnection, entry: &Entry<'_>) -> QueryResult<()> {
    let head: Option<(i32, String)> = audit_head::table
        .find(1)
        .select((audit_head::last_id, audit_head::hash))
        .first(conn)
        .optional()?;
    let (last_id, prev_hash) = head.unwrap_or((0, GENESIS.to_owned()));
    let id = last_id + 1;
    let at = super::now();
    let hash = hash_of(
        id,
        at,
        entry.actor,
        entry.action,
        entry.target_kind,
        entry.target,
        entry.details,
        entry.address,
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
        })
        .execute(conn)?;
    diesel::insert_into(audit_head::table)
        .values((
            audit_head::id.eq(1),
            audit_head::last_id.eq(id),
            audit_head::hash.eq(&hash),
        ))
        .on_conflict(audit_head::id)
        .do_update()
        .set((audit_head::last_id.eq(id), audit_head::hash.eq(&hash)))
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

#[allow(clippy::too_many_arguments)]
fn hash_of(
    id: i32,
    at: NaiveDateTime,
    actor: &str,
    action: &str,
    target_kind: &str,
    target: &str,
    details: &str,
    address: Option<&str>,
    prev_hash: &str,
) -> String {
    let mut hasher = Sha256::new();
    // Length-prefixed fields: no two different rows hash the same bytes.
    let at = at.format("%Y-%m-%dT%H:%M:%S%.f").to_string();
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
    for field in fields {
        hasher.update((field.len() as u64).to_le_bytes());
        hasher.update(field.as_bytes());
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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
}

/// Walks the whole chain; `Ok(rows checked)` or the first break.
pub fn verify(conn: &mut SqliteConnection) -> QueryResult<Result<usize, ChainBreak>> {
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
                row.id,
                row.at,
                &row.actor,
                &row.action,
                &row.target_kind,
                &row.target,
                &row.details,
                row.address.as_deref(),
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
    Ok(Ok(verified))
}

/// What to list.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub club: Option<String>,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub since: Option<NaiveDateTime>,
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
    if let Some(club) = &filter.club {
        query = query
            .filter(audit_events::target_kind.eq("club"))
            .filter(audit_events::target.eq(club));
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
