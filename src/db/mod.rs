//! The database: pool set-up, embedded migrations and the query functions. Only this module
//! names diesel's schema.

pub mod audit;
pub mod audit_anchor;
pub mod audit_key;
pub mod clubs;
mod columns;
pub mod groups;
pub mod hosts;
pub mod housekeeping;
pub mod jobs;
pub mod schema;
pub mod switches;
pub mod users;

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use diesel::connection::SimpleConnection;
use diesel::migration::Migration;
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool};
use diesel::sqlite::SqliteConnection;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

/// The connection every query takes. This module is the one place that names the database
/// backend (SQLite today); the rest of the code says `Conn`.
pub type Conn = SqliteConnection;

/// A pool of SQLite connections, each set up by [`ConnectionSetup`].
pub type DbPool = Pool<ConnectionManager<SqliteConnection>>;

/// A connection taken from the pool (given back when dropped).
pub type DbConn = diesel::r2d2::PooledConnection<ConnectionManager<SqliteConnection>>;

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Sets every new connection up for concurrent use by the server and the command line.
#[derive(Debug, Clone, Copy)]
struct ConnectionSetup;

impl CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for ConnectionSetup {
    fn on_acquire(&self, conn: &mut SqliteConnection) -> Result<(), diesel::r2d2::Error> {
        conn.batch_execute(
            "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; \
             PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
        )
        .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// The lock beside the database at `path` that orders processes migrating it.
pub fn migrate_lock_path(path: &Path) -> std::path::PathBuf {
    path.with_extension("migrate.lock")
}

/// Opens (creating if needed) the database at `path` and brings its schema up to date.
pub fn open(path: &Path) -> anyhow::Result<DbPool> {
    let url = path
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("the database path {} is not UTF-8", path.display()))?;
    let pool = Pool::builder()
        .max_size(4)
        .connection_timeout(Duration::from_secs(30))
        .connection_customizer(Box::new(ConnectionSetup))
        .build(ConnectionManager::<SqliteConnection>::new(url))
        .map_err(|e| anyhow::anyhow!("cannot open the database {}: {e}", path.display()))?;
    // Two processes starting on a new database must not both run the same migration: the
    // second would fail on tables the first created. An OS lock beside the file orders them.
    let lock_path = migrate_lock_path(path);
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| anyhow::anyhow!("cannot lock {}: {e}", lock_path.display()))?;
    let mut conn = pool.get()?;
    migrate(&mut conn)?;
    drop(conn);
    drop(lock);
    Ok(pool)
}

/// A connection of its own (outside the pool) that only watches the database for changes
/// made by any other connection, of this process or another: see [`DataVersion`].
pub struct Watcher(SqliteConnection);

impl Watcher {
    /// Opens the database at `path` (already migrated by [`open`]) to watch it.
    pub fn open(path: &Path) -> anyhow::Result<Watcher> {
        let url = path
            .to_str()
            .ok_or_else(|| anyhow::anyhow!("the database path {} is not UTF-8", path.display()))?;
        let mut conn = SqliteConnection::establish(url)
            .map_err(|e| anyhow::anyhow!("cannot open the database {}: {e}", path.display()))?;
        conn.batch_execute("PRAGMA busy_timeout = 10000;")?;
        Ok(Watcher(conn))
    }

    /// A number that changes whenever another connection has committed a change (SQLite's
    /// `PRAGMA data_version`: read from shared memory, no disk read).
    pub fn version(&mut self) -> QueryResult<i64> {
        #[derive(QueryableByName)]
        struct Version {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            data_version: i64,
        }
        Ok(diesel::sql_query("PRAGMA data_version")
            .get_result::<Version>(&mut self.0)?
            .data_version)
    }

    /// The connection, for the queries that follow a change.
    pub fn conn(&mut self) -> &mut SqliteConnection {
        &mut self.0
    }
}

/// Runs the migrations that have not run yet, each as a [`schema_change`].
pub fn migrate(conn: &mut SqliteConnection) -> anyhow::Result<()> {
    let pending = conn
        .pending_migrations(MIGRATIONS)
        .map_err(|e| anyhow::anyhow!("cannot read the database's migrations: {e}"))?;
    for migration in pending {
        let name = migration.name().to_string();
        schema_change(conn, |conn| {
            conn.run_migration(&*migration)
                .map(|_| ())
                .map_err(|e| anyhow::anyhow!("{e}"))
        })
        .with_context(|| format!("cannot migrate the database ({name})"))?;
    }
    Ok(())
}

/// Applies `change` the way SQLite documents for schema changes: with foreign keys off (a
/// table rebuilt as create-copy-drop-rename would otherwise cascade its drop, and rebuilding
/// `clubs` would silently delete the rollback history in `switches`), inside one transaction
/// that ends with `PRAGMA foreign_key_check`, so a change that leaves a dangling reference is
/// rolled back whole. Foreign keys are on again afterwards, whatever happened.
pub fn schema_change(
    conn: &mut SqliteConnection,
    change: impl FnOnce(&mut SqliteConnection) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    // Must be outside a transaction: inside one, SQLite ignores it.
    conn.batch_execute("PRAGMA foreign_keys = OFF")?;
    let result = conn.immediate_transaction(|conn| {
        change(conn)?;
        let broken: Vec<ForeignKeyProblem> =
            diesel::sql_query("PRAGMA foreign_key_check").load(conn)?;
        if let Some(first) = broken.first() {
            anyhow::bail!(
                "{} row(s) would point nowhere, e.g. row {} of table {} to table {}",
                broken.len(),
                first
                    .rowid
                    .map_or_else(|| "?".to_owned(), |r| r.to_string()),
                first.table,
                first.parent
            );
        }
        Ok(())
    });
    conn.batch_execute("PRAGMA foreign_keys = ON")?;
    result
}

/// A row of `PRAGMA foreign_key_check`.
#[derive(diesel::QueryableByName)]
struct ForeignKeyProblem {
    #[diesel(sql_type = diesel::sql_types::Text)]
    table: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
    rowid: Option<i64>,
    #[diesel(sql_type = diesel::sql_types::Text)]
    parent: String,
}

/// The current time as stored in the database (UTC, no zone), to the microsecond, so a value
/// reads back exactly as written (the audit log hashes it).
pub fn now() -> chrono::NaiveDateTime {
    use chrono::SubsecRound;
    chrono::Utc::now().naive_utc().trunc_subsecs(6)
}

#[cfg(test)]
mod tests {
    use diesel::connection::SimpleConnection;
    use diesel::prelude::*;

    use super::*;

    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }

    fn count(conn: &mut SqliteConnection, table: &str) -> i64 {
        diesel::sql_query(format!("SELECT COUNT(*) AS n FROM {table}"))
            .get_result::<Count>(conn)
            .unwrap()
            .n
    }

    /// A migrated database with a club and one switch in its history.
    fn with_history() -> (tempfile::TempDir, DbPool) {
        let dir = tempfile::tempdir().unwrap();
        let pool = open(&dir.path().join("db.sqlite3")).unwrap();
        pool.get()
            .unwrap()
            .batch_execute(
                "INSERT INTO clubs (id, slug, name, created_at) \
                 VALUES (1, 'a', 'A', '2026-01-01 00:00:00'); \
                 INSERT INTO switches (club_id, to_release, commit_id, kind, actor, switched_at) \
                 VALUES (1, 'v1-00000000', '00', 'deploy', 't', '2026-01-01 00:00:00');",
            )
            .unwrap();
        (dir, pool)
    }

    const REBUILD_CLUBS: &str = "CREATE TABLE clubs_new (id INTEGER PRIMARY KEY NOT NULL, \
         slug TEXT NOT NULL UNIQUE, name TEXT NOT NULL, url TEXT, \
         created_at TIMESTAMP NOT NULL); \
         INSERT INTO clubs_new SELECT * FROM clubs; DROP TABLE clubs; \
         ALTER TABLE clubs_new RENAME TO clubs;";

    #[test]
    fn rebuilding_a_table_keeps_the_history_that_references_it() {
        // The danger is real: with foreign keys on, the rebuild deletes the history.
        let (_dir, pool) = with_history();
        let conn = &mut pool.get().unwrap();
        conn.immediate_transaction(|conn| conn.batch_execute(REBUILD_CLUBS))
            .unwrap();
        assert_eq!(count(conn, "switches"), 0);

        let (_dir, pool) = with_history();
        let conn = &mut pool.get().unwrap();
        schema_change(conn, |conn| Ok(conn.batch_execute(REBUILD_CLUBS)?)).unwrap();
        assert_eq!(count(conn, "switches"), 1);
        assert_eq!(count(conn, "clubs"), 1);
        // Foreign keys are on again afterwards.
        conn.batch_execute("DELETE FROM clubs").unwrap();
        assert_eq!(count(conn, "switches"), 0);
    }

    #[test]
    fn a_change_that_leaves_a_dangling_reference_is_rolled_back() {
        let (_dir, pool) = with_history();
        let conn = &mut pool.get().unwrap();
        let error = schema_change(conn, |conn| Ok(conn.batch_execute("DELETE FROM clubs")?))
            .unwrap_err()
            .to_string();
        assert!(error.contains("would point nowhere"), "{error}");
        assert!(error.contains("table switches to table clubs"), "{error}");
        assert_eq!(count(conn, "clubs"), 1);
        assert_eq!(count(conn, "switches"), 1);
    }
}
