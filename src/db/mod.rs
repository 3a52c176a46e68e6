//! The database: pool set-up, embedded migrations and the query functions. Only this module
//! names diesel's schema.

pub mod audit;
pub mod audit_anchor;
pub mod audit_key;
pub mod clubs;
pub mod jobs;
pub mod schema;
pub mod switches;
pub mod users;

use std::path::Path;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool};
use diesel::sqlite::SqliteConnection;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

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
    let lock_path = path.with_extension("migrate.lock");
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

/// Runs the migrations that have not run yet.
pub fn migrate(conn: &mut SqliteConnection) -> anyhow::Result<()> {
    conn.run_pending_migrations(MIGRATIONS)
        .map_err(|e| anyhow::anyhow!("cannot migrate the database: {e}"))?;
    Ok(())
}

/// The current time as stored in the database (UTC, no zone), to the microsecond, so a value
/// reads back exactly as written (the audit log hashes it).
pub fn now() -> chrono::NaiveDateTime {
    use chrono::SubsecRound;
    chrono::Utc::now().naive_utc().trunc_subsecs(6)
}
