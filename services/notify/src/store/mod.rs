//! The notify service's own store: one SQLite file (`notify.sqlite`).
//!
//! Holds what only notify knows and what must survive a restart:
//! - the registry: household configs, their plugs, and the sealed contacts
//!   (see [`crate::crypto`]); `published_version` tracks what reached
//!   `care.households`;
//! - the incident views the API lists (state, acknowledgement, resolution;
//!   the outcome note sealed);
//! - the incident event log behind `WatchIncidents` (`seq` is the cursor);
//! - every running escalation (JSON of [`Escalation`]) with its next due
//!   time, and the outbox of messages to deliver (keyed by message id and
//!   channel, so a message is queued once however often it is asked for);
//! - the escalation policies by municipality and version;
//! - the history outbox: escalation, delivery and audit records on their
//!   way to the history store (written with the change they record).
//!
//! All functions take a `&Connection` so the core can run several of them in
//! one transaction.

mod escalations;
mod events;
mod history;
mod incidents;
mod outbox;
mod registry;

pub use escalations::*;
pub use events::*;
pub use history::*;
pub use incidents::*;
pub use outbox::*;
pub use registry::*;

use crate::error::NotifyError;
use prost::Message;
use rusqlite::Connection;
use std::path::Path;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS households (
    household_id TEXT PRIMARY KEY,
    municipality TEXT NOT NULL,
    dong TEXT NOT NULL,
    version INTEGER NOT NULL,
    config BLOB NOT NULL,
    contact BLOB,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    published_version INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS households_by_area ON households (municipality, dong, household_id);
-- A plug serial is unique within a municipality only: one municipality can
-- neither see nor block another's plugs.
CREATE TABLE IF NOT EXISTS plugs (
    municipality TEXT NOT NULL,
    device_id TEXT NOT NULL,
    household_id TEXT NOT NULL,
    PRIMARY KEY (municipality, device_id)
);
CREATE INDEX IF NOT EXISTS plugs_by_household ON plugs (household_id);
-- Deleted households whose tombstone has not reached care.households yet.
CREATE TABLE IF NOT EXISTS tombstones (household_id TEXT PRIMARY KEY);
-- The last version of every deleted household: a re-created one goes on
-- from there, so the monitor never takes it for a stale config.
CREATE TABLE IF NOT EXISTS retired_households (
    household_id TEXT PRIMARY KEY,
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS incidents (
    incident_id TEXT PRIMARY KEY,
    municipality TEXT NOT NULL,
    dong TEXT NOT NULL,
    household_id TEXT NOT NULL,
    kind INTEGER NOT NULL,
    stage INTEGER NOT NULL,
    state INTEGER NOT NULL,
    opened_ms INTEGER NOT NULL,
    view BLOB NOT NULL,
    note BLOB
);
CREATE INDEX IF NOT EXISTS incidents_by_time ON incidents (municipality, opened_ms, incident_id);
-- The trace an incident was opened in (W3C traceparent), when it was
-- sampled: later escalation steps join it, acknowledgements link to it.
CREATE TABLE IF NOT EXISTS incident_traces (
    incident_id TEXT PRIMARY KEY,
    traceparent TEXT NOT NULL
);
-- The trace of a registry change not yet on care.households: its publish
-- joins it, and the record carries it to the monitor.
CREATE TABLE IF NOT EXISTS household_traces (
    household_id TEXT PRIMARY KEY,
    traceparent TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    municipality TEXT NOT NULL,
    event BLOB NOT NULL,
    -- 1 when this service made the event (acknowledge, resolve) and it has
    -- not reached care.incidents yet.
    unpublished INTEGER NOT NULL DEFAULT 0,
    -- When this service logged it (its clock), for retention.
    logged_ms INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS events_unpublished ON events (unpublished) WHERE unpublished = 1;
CREATE TABLE IF NOT EXISTS escalations (
    incident_id TEXT PRIMARY KEY,
    municipality TEXT NOT NULL,
    due_ms INTEGER,
    state TEXT NOT NULL,
    updated_ms INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS escalations_due ON escalations (due_ms) WHERE due_ms IS NOT NULL;
CREATE TABLE IF NOT EXISTS outbox (
    message_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    incident_id TEXT NOT NULL,
    municipality TEXT NOT NULL,
    notification TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (message_id, channel)
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (status) WHERE status = 'pending';
CREATE TABLE IF NOT EXISTS history_outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS policies (
    municipality TEXT NOT NULL,
    version INTEGER NOT NULL,
    policy TEXT NOT NULL,
    PRIMARY KEY (municipality, version)
);
"#;

pub fn open(path: &Path) -> Result<Connection, NotifyError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "cache_size", -65536)?;
    conn.pragma_update(None, "wal_autocheckpoint", 16384)?;
    conn.execute_batch(SCHEMA)?;
    migrate_devices(&conn)?;
    Ok(conn)
}

/// Stores from before plugs were scoped by municipality kept them in a
/// global `devices` table: moved into `plugs` once, in one transaction.
fn migrate_devices(conn: &Connection) -> Result<(), NotifyError> {
    let old: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'devices'",
        [],
        |r| r.get(0),
    )?;
    if old {
        conn.execute_batch(
            "BEGIN IMMEDIATE;
             INSERT OR IGNORE INTO plugs (municipality, device_id, household_id)
               SELECT h.municipality, d.device_id, d.household_id
               FROM devices d JOIN households h USING (household_id);
             DROP TABLE devices;
             COMMIT;",
        )?;
        tracing::info!("moved plugs into the per-municipality plugs table");
    }
    Ok(())
}

/// Takes the store's exclusive lock (`notify.lock` beside it) for as long
/// as the returned file is held. One notify instance per store: a second
/// one would send every step twice and split the escalation clocks, so it
/// is refused here, before it opens anything.
pub fn lock(dir: &Path) -> Result<std::fs::File, NotifyError> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("notify.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(NotifyError::Config(format!(
            "{} is held by another notify instance: one instance per store (it would double-send)",
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
    }
}

pub(crate) fn decode<M: Message + Default>(b: &[u8], what: &str) -> Result<M, NotifyError> {
    M::decode(b).map_err(|e| NotifyError::Corrupt(format!("{what}: {e}")))
}

/// What the store holds, for summaries and gauges.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub households: i64,
    pub incidents: i64,
    pub open_incidents: i64,
    pub running_escalations: i64,
    /// Escalations whose step waits for the dong office's next opening, and
    /// the store time (ms) at which the longest-held one was put on hold.
    pub held_escalations: i64,
    pub held_since_ms: Option<i64>,
    /// Messages (one per channel) queued, delivered, failed.
    pub messages_pending: i64,
    pub messages_delivered: i64,
    pub messages_failed: i64,
}

/// A held escalation's phase is `{"Held":{"until":…}}` in its JSON.
const HELD: &str = "SELECT count(*), min(updated_ms) FROM escalations
     WHERE due_ms IS NOT NULL AND json_extract(state, '$.phase.Held') IS NOT NULL";

pub fn counts(c: &Connection) -> Result<Counts, NotifyError> {
    let one = |sql: &str| -> Result<i64, NotifyError> { Ok(c.query_row(sql, [], |r| r.get(0))?) };
    let (held_escalations, held_since_ms) =
        c.query_row(HELD, [], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(Counts {
        households: one("SELECT count(*) FROM households")?,
        incidents: one("SELECT count(*) FROM incidents")?,
        open_incidents: one("SELECT count(*) FROM incidents WHERE state != 3")?,
        running_escalations: one("SELECT count(*) FROM escalations WHERE due_ms IS NOT NULL")?,
        held_escalations,
        held_since_ms,
        messages_pending: one("SELECT count(*) FROM outbox WHERE status = 'pending'")?,
        messages_delivered: one("SELECT count(*) FROM outbox WHERE status = 'delivered'")?,
        messages_failed: one("SELECT count(*) FROM outbox WHERE status = 'failed'")?,
    })
}

/// What one retention sweep removed.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Swept {
    pub events: usize,
    pub messages: usize,
    pub escalations: usize,
    pub incidents: usize,
}

/// Removes what notify no longer needs (the history store keeps the record):
/// watch-log events and finished messages logged before `log_cutoff_ms`
/// (never an event still to be published), escalations of resolved incidents
/// last moved before it, and resolved incidents opened before
/// `incident_cutoff_ms`.
pub fn sweep(
    c: &Connection,
    log_cutoff_ms: i64,
    incident_cutoff_ms: i64,
) -> Result<Swept, NotifyError> {
    let events = c.execute(
        "DELETE FROM events WHERE unpublished = 0 AND seq <= coalesce(
             (SELECT max(seq) FROM events WHERE logged_ms < ?1), 0)",
        [log_cutoff_ms],
    )?;
    let messages = c.execute(
        "DELETE FROM outbox WHERE status != 'pending' AND created_ms < ?1",
        [log_cutoff_ms],
    )?;
    let escalations = c.execute(
        "DELETE FROM escalations WHERE due_ms IS NULL AND updated_ms < ?1
           AND incident_id IN (SELECT incident_id FROM incidents WHERE state = 3)",
        [log_cutoff_ms],
    )?;
    let incidents = c.execute(
        "DELETE FROM incidents WHERE state = 3 AND opened_ms < ?1
           AND incident_id NOT IN (SELECT incident_id FROM escalations)",
        [incident_cutoff_ms],
    )?;
    c.execute(
        "DELETE FROM incident_traces WHERE incident_id NOT IN (SELECT incident_id FROM incidents)",
        [],
    )?;
    Ok(Swept {
        events,
        messages,
        escalations,
        incidents,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_with_global_plug_serials_moves_them_to_per_municipality_plugs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sqlite");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE households (household_id TEXT PRIMARY KEY, municipality TEXT NOT NULL,
                   dong TEXT NOT NULL, version INTEGER NOT NULL, config BLOB NOT NULL, contact BLOB,
                   created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL,
                   published_version INTEGER NOT NULL DEFAULT 0);
                 CREATE TABLE devices (device_id TEXT PRIMARY KEY, household_id TEXT NOT NULL);
                 INSERT INTO households VALUES ('11110-a', '11110', '1111051500', 1, x'', NULL, 0, 0, 1);
                 INSERT INTO devices VALUES ('PLUG-1', '11110-a');",
            )
            .unwrap();
        }
        let c = open(&path).unwrap();
        assert_eq!(
            device_owner(&c, "11110", "PLUG-1").unwrap().as_deref(),
            Some("11110-a")
        );
        assert_eq!(device_owner(&c, "26110", "PLUG-1").unwrap(), None);
        let old: i64 = c
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'devices'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(old, 0);
        drop(c);
        // Opening again changes nothing.
        let c = open(&path).unwrap();
        assert!(device_owner(&c, "11110", "PLUG-1").unwrap().is_some());
    }
}
