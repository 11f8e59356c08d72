//! The embedded store's schema: the files in `migrations/sqlite/`, applied
//! in order inside a transaction and recorded in `PRAGMA user_version`, and
//! how its connections are opened (WAL, `synchronous=FULL`).

use crate::error::HistoryError;
use rusqlite::Connection;
use std::path::Path;

/// The schema, in order. Never edit a released file: add the next one.
pub(crate) const MIGRATIONS: &[(u32, &str, &str)] = &[(
    1,
    "init",
    include_str!("../migrations/sqlite/0001_init.sql"),
)];

pub(crate) fn open_conn(path: &Path) -> Result<Connection, HistoryError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    // Switching a new file to WAL takes an exclusive lock and does not wait
    // on the busy handler: two processes opening one fresh store at once
    // retry here instead of failing.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            r => break r?,
        }
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // 64 MiB of page cache, and checkpoints every 64 MiB of WAL rather than
    // every 4 MiB: bulk aggregate writes are bound by checkpoint fsyncs.
    conn.pragma_update(None, "cache_size", -65_536)?;
    conn.pragma_update(None, "wal_autocheckpoint", 16_384)?;
    Ok(conn)
}

/// Applies pending migrations. The version is read inside an immediate
/// (write-locked) transaction, so two processes opening one store at once
/// (notify and the history ingest on one data directory) take turns: the
/// second waits for the lock (busy timeout) and finds nothing to do.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), HistoryError> {
    for &(version, name, sql) in MIGRATIONS {
        let fail = |e: rusqlite::Error| HistoryError::Migration {
            version,
            name: name.to_string(),
            reason: e.to_string(),
        };
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(fail)?;
        let current: u32 = tx
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(fail)?;
        if version <= current {
            continue;
        }
        tx.execute_batch(sql).map_err(fail)?;
        tx.pragma_update(None, "user_version", version)
            .map_err(fail)?;
        tx.commit().map_err(fail)?;
        tracing::info!(version, name, "history: applied embedded schema migration");
    }
    Ok(())
}
