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
//! - the escalation policies by municipality and version.
//!
//! All functions take a `&Connection` so the core can run several of them in
//! one transaction.

use crate::NotifyError;
use dolbom_escalation::{Escalation, Policy};
use dolbom_proto::v1 as pb;
use prost::Message;
use rusqlite::{params, Connection, OptionalExtension};
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
CREATE TABLE IF NOT EXISTS devices (
    device_id TEXT PRIMARY KEY,
    household_id TEXT NOT NULL
);
-- Deleted households whose tombstone has not reached care.households yet.
CREATE TABLE IF NOT EXISTS tombstones (household_id TEXT PRIMARY KEY);
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
    Ok(conn)
}

fn decode<M: Message + Default>(b: &[u8], what: &str) -> Result<M, NotifyError> {
    M::decode(b).map_err(|e| NotifyError::Corrupt(format!("{what}: {e}")))
}

// ------------------------------------------------------------------ registry

#[derive(Clone, Debug)]
pub struct HouseholdRow {
    pub config: pb::HouseholdConfig,
    pub contact: Option<Vec<u8>>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// (config, sealed contact, created_ms, updated_ms) as stored.
type RawHousehold = (Vec<u8>, Option<Vec<u8>>, i64, i64);

fn household_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawHousehold> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

fn to_household(t: RawHousehold) -> Result<HouseholdRow, NotifyError> {
    Ok(HouseholdRow {
        config: decode(&t.0, "household config")?,
        contact: t.1,
        created_ms: t.2,
        updated_ms: t.3,
    })
}

pub fn household(c: &Connection, id: &str) -> Result<Option<HouseholdRow>, NotifyError> {
    c.prepare_cached(
        "SELECT config, contact, created_ms, updated_ms FROM households WHERE household_id = ?1",
    )?
    .query_row([id], household_row)
    .optional()?
    .map(to_household)
    .transpose()
}

/// Inserts or replaces a household and its plugs.
pub fn put_household(c: &Connection, row: &HouseholdRow) -> Result<(), NotifyError> {
    let cfg = &row.config;
    c.prepare_cached(
        "INSERT INTO households (household_id, municipality, dong, version, config, contact, created_ms, updated_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (household_id) DO UPDATE SET municipality = ?2, dong = ?3, version = ?4,
           config = ?5, contact = ?6, updated_ms = ?8",
    )?
    .execute(params![
        cfg.household_id,
        cfg.municipality_code,
        cfg.dong_code,
        cfg.version as i64,
        cfg.encode_to_vec(),
        row.contact,
        row.created_ms,
        row.updated_ms
    ])?;
    c.prepare_cached("DELETE FROM devices WHERE household_id = ?1")?
        .execute([&cfg.household_id])?;
    let mut ins =
        c.prepare_cached("INSERT INTO devices (device_id, household_id) VALUES (?1, ?2)")?;
    for d in &cfg.device_ids {
        ins.execute([d, &cfg.household_id])?;
    }
    c.prepare_cached("DELETE FROM tombstones WHERE household_id = ?1")?
        .execute([&cfg.household_id])?;
    Ok(())
}

pub fn delete_household(c: &Connection, id: &str) -> Result<(), NotifyError> {
    c.prepare_cached("DELETE FROM households WHERE household_id = ?1")?
        .execute([id])?;
    c.prepare_cached("DELETE FROM devices WHERE household_id = ?1")?
        .execute([id])?;
    c.prepare_cached("INSERT OR IGNORE INTO tombstones (household_id) VALUES (?1)")?
        .execute([id])?;
    Ok(())
}

/// The household a plug is registered to.
pub fn device_owner(c: &Connection, device: &str) -> Result<Option<String>, NotifyError> {
    Ok(
        c.prepare_cached("SELECT household_id FROM devices WHERE device_id = ?1")?
            .query_row([device], |r| r.get(0))
            .optional()?,
    )
}

/// One page of a municipality's households (optionally one dong), by id.
pub fn list_households(
    c: &Connection,
    municipality: &str,
    dong: Option<&str>,
    after: &str,
    limit: usize,
) -> Result<Vec<HouseholdRow>, NotifyError> {
    let mut st = c.prepare_cached(
        "SELECT config, contact, created_ms, updated_ms FROM households
         WHERE municipality = ?1 AND (?2 IS NULL OR dong = ?2) AND household_id > ?3
         ORDER BY household_id LIMIT ?4",
    )?;
    let rows = st.query_map(
        params![municipality, dong, after, limit as i64],
        household_row,
    )?;
    rows.map(|r| to_household(r?)).collect()
}

/// Registry changes not yet on `care.households`: (id, config or `None` for
/// a tombstone).
pub fn unpublished_households(
    c: &Connection,
    limit: usize,
) -> Result<Vec<(String, Option<pb::HouseholdConfig>)>, NotifyError> {
    let mut out = Vec::new();
    let mut st = c.prepare_cached(
        "SELECT household_id, config FROM households WHERE published_version < version LIMIT ?1",
    )?;
    for r in st.query_map([limit as i64], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
    })? {
        let (id, b) = r?;
        out.push((id, Some(decode(&b, "household config")?)));
    }
    let mut st = c.prepare_cached("SELECT household_id FROM tombstones LIMIT ?1")?;
    for r in st.query_map([limit as i64], |r| r.get::<_, String>(0))? {
        out.push((r?, None));
    }
    Ok(out)
}

pub fn mark_household_published(
    c: &Connection,
    id: &str,
    version: Option<u64>,
) -> Result<(), NotifyError> {
    match version {
        Some(v) => c
            .prepare_cached(
                "UPDATE households SET published_version = max(published_version, ?2) WHERE household_id = ?1",
            )?
            .execute(params![id, v as i64])?,
        None => c
            .prepare_cached("DELETE FROM tombstones WHERE household_id = ?1")?
            .execute([id])?,
    };
    Ok(())
}

// ----------------------------------------------------------------- incidents

#[derive(Clone, Debug)]
pub struct IncidentRow {
    /// The view without its outcome note.
    pub view: pb::Incident,
    /// The sealed outcome note.
    pub note: Option<Vec<u8>>,
}

pub fn incident(c: &Connection, id: &str) -> Result<Option<IncidentRow>, NotifyError> {
    c.prepare_cached("SELECT view, note FROM incidents WHERE incident_id = ?1")?
        .query_row([id], |r| {
            Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Option<Vec<u8>>>(1)?))
        })
        .optional()?
        .map(|(v, note)| {
            Ok(IncidentRow {
                view: decode(&v, "incident view")?,
                note,
            })
        })
        .transpose()
}

pub fn put_incident(c: &Connection, row: &IncidentRow) -> Result<(), NotifyError> {
    let v = &row.view;
    let opened = v
        .opened_at
        .as_ref()
        .map(dolbom_domain::convert::ts)
        .unwrap_or_default()
        .millis();
    c.prepare_cached(
        "INSERT INTO incidents (incident_id, municipality, dong, household_id, kind, stage, state, opened_ms, view, note)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (incident_id) DO UPDATE SET stage = ?6, state = ?7, view = ?9, note = ?10",
    )?
    .execute(params![
        v.incident_id,
        v.municipality_code,
        v.dong_code,
        v.household_id,
        v.kind,
        v.stage,
        v.state,
        opened,
        v.encode_to_vec(),
        row.note
    ])?;
    Ok(())
}

/// Which incidents to list (the municipality is required and already
/// checked against the caller).
#[derive(Clone, Debug, Default)]
pub struct IncidentListing {
    pub municipality: String,
    pub dong: Option<String>,
    pub household: Option<String>,
    pub kind: Option<i32>,
    pub min_stage: Option<i32>,
    pub state: Option<i32>,
    pub opened_after_ms: Option<i64>,
    pub opened_before_ms: Option<i64>,
    /// Newest first; continue strictly before (opened_ms, incident_id).
    pub before: Option<(i64, String)>,
    pub limit: usize,
}

pub fn list_incidents(
    c: &Connection,
    q: &IncidentListing,
) -> Result<Vec<pb::Incident>, NotifyError> {
    let (b_ms, b_id) = q.before.clone().unwrap_or((i64::MAX, String::new()));
    let mut st = c.prepare_cached(
        "SELECT view FROM incidents
         WHERE municipality = ?1
           AND (?2 IS NULL OR dong = ?2)
           AND (?3 IS NULL OR household_id = ?3)
           AND (?4 IS NULL OR kind = ?4)
           AND (?5 IS NULL OR stage >= ?5)
           AND (?6 IS NULL OR state = ?6)
           AND opened_ms >= ?7 AND opened_ms < ?8
           AND (opened_ms < ?9 OR (opened_ms = ?9 AND (?10 = '' OR incident_id < ?10)))
         ORDER BY opened_ms DESC, incident_id DESC LIMIT ?11",
    )?;
    let rows = st.query_map(
        params![
            q.municipality,
            q.dong,
            q.household,
            q.kind,
            q.min_stage,
            q.state,
            q.opened_after_ms.unwrap_or(i64::MIN),
            q.opened_before_ms.unwrap_or(i64::MAX),
            b_ms,
            b_id,
            q.limit as i64
        ],
        |r| r.get::<_, Vec<u8>>(0),
    )?;
    rows.map(|r| decode(&r?, "incident view")).collect()
}

// -------------------------------------------------------------------- events

/// Appends an event to the log; `None` when its `event_id` is already there.
pub fn append_event(
    c: &Connection,
    ev: &pb::IncidentEvent,
    unpublished: bool,
    now_ms: i64,
) -> Result<Option<i64>, NotifyError> {
    let n = c
        .prepare_cached(
            "INSERT INTO events (event_id, municipality, event, unpublished, logged_ms) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (event_id) DO NOTHING",
        )?
        .execute(params![
            ev.event_id,
            ev.municipality_code,
            ev.encode_to_vec(),
            unpublished as i64,
            now_ms
        ])?;
    Ok((n == 1).then(|| c.last_insert_rowid()))
}

/// Events after `seq`, oldest first, optionally of one municipality.
pub fn events_after(
    c: &Connection,
    seq: i64,
    municipality: Option<&str>,
    limit: usize,
) -> Result<Vec<(i64, pb::IncidentEvent)>, NotifyError> {
    let mut st = c.prepare_cached(
        "SELECT seq, event FROM events WHERE seq > ?1 AND (?2 IS NULL OR municipality = ?2)
         ORDER BY seq LIMIT ?3",
    )?;
    let rows = st.query_map(params![seq, municipality, limit as i64], seq_event)?;
    rows.map(decode_seq_event).collect()
}

fn seq_event(r: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, Vec<u8>)> {
    Ok((r.get(0)?, r.get(1)?))
}

fn decode_seq_event(
    r: rusqlite::Result<(i64, Vec<u8>)>,
) -> Result<(i64, pb::IncidentEvent), NotifyError> {
    let (s, b) = r?;
    Ok((s, decode(&b, "incident event")?))
}

/// The last sequence number ever given out (also when retention has emptied
/// the log).
pub fn max_seq(c: &Connection) -> Result<i64, NotifyError> {
    Ok(c.query_row(
        "SELECT max(coalesce((SELECT max(seq) FROM events), 0),
                    coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0))",
        [],
        |r| r.get(0),
    )?)
}

/// The oldest sequence number still in the log, if any.
pub fn min_seq(c: &Connection) -> Result<Option<i64>, NotifyError> {
    Ok(c.query_row("SELECT min(seq) FROM events", [], |r| r.get(0))?)
}

pub fn unpublished_events(
    c: &Connection,
    limit: usize,
) -> Result<Vec<(i64, pb::IncidentEvent)>, NotifyError> {
    let mut st = c.prepare_cached(
        "SELECT seq, event FROM events WHERE unpublished = 1 ORDER BY seq LIMIT ?1",
    )?;
    let rows = st.query_map([limit as i64], seq_event)?;
    rows.map(decode_seq_event).collect()
}

pub fn mark_event_published(c: &Connection, seq: i64) -> Result<(), NotifyError> {
    c.prepare_cached("UPDATE events SET unpublished = 0 WHERE seq = ?1")?
        .execute([seq])?;
    Ok(())
}

// --------------------------------------------------------------- escalations

pub fn escalation(c: &Connection, incident_id: &str) -> Result<Option<Escalation>, NotifyError> {
    c.prepare_cached("SELECT state FROM escalations WHERE incident_id = ?1")?
        .query_row([incident_id], |r| r.get::<_, String>(0))
        .optional()?
        .map(|s| {
            serde_json::from_str(&s).map_err(|e| NotifyError::Corrupt(format!("escalation: {e}")))
        })
        .transpose()
}

pub fn put_escalation(
    c: &Connection,
    municipality: &str,
    e: &Escalation,
    now_ms: i64,
) -> Result<(), NotifyError> {
    let json = serde_json::to_string(e).map_err(|e| NotifyError::Corrupt(e.to_string()))?;
    c.prepare_cached(
        "INSERT INTO escalations (incident_id, municipality, due_ms, state, updated_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (incident_id) DO UPDATE SET due_ms = ?3, state = ?4, updated_ms = ?5",
    )?
    .execute(params![
        e.incident_id,
        municipality,
        e.next_due().map(|t| t.millis()),
        json,
        now_ms
    ])?;
    Ok(())
}

/// Escalations whose clock is due at `now_ms`: (municipality, escalation).
pub fn due_escalations(
    c: &Connection,
    now_ms: i64,
    limit: usize,
) -> Result<Vec<(String, Escalation)>, NotifyError> {
    let mut st = c.prepare_cached(
        "SELECT municipality, state FROM escalations WHERE due_ms IS NOT NULL AND due_ms <= ?1
         ORDER BY due_ms LIMIT ?2",
    )?;
    let rows = st.query_map(params![now_ms, limit as i64], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })?;
    rows.map(|r| {
        let (m, s) = r?;
        let e = serde_json::from_str(&s)
            .map_err(|e| NotifyError::Corrupt(format!("escalation: {e}")))?;
        Ok((m, e))
    })
    .collect()
}

/// The running escalations of a household's incidents.
pub fn running_escalations_of(
    c: &Connection,
    household_id: &str,
) -> Result<Vec<Escalation>, NotifyError> {
    let mut st = c.prepare_cached(
        "SELECT e.state FROM escalations e JOIN incidents i ON i.incident_id = e.incident_id
         WHERE i.household_id = ?1 AND e.due_ms IS NOT NULL",
    )?;
    let rows = st.query_map([household_id], |r| r.get::<_, String>(0))?;
    rows.map(|r| {
        serde_json::from_str(&r?).map_err(|e| NotifyError::Corrupt(format!("escalation: {e}")))
    })
    .collect()
}

pub fn running_escalations(c: &Connection) -> Result<i64, NotifyError> {
    Ok(c.query_row(
        "SELECT count(*) FROM escalations WHERE due_ms IS NOT NULL",
        [],
        |r| r.get(0),
    )?)
}

// -------------------------------------------------------------------- outbox

#[derive(Clone, Debug, PartialEq)]
pub struct OutboxRow {
    pub message_id: String,
    pub channel: String,
    pub incident_id: String,
    pub municipality: String,
    /// JSON of [`crate::channels::Notification`].
    pub notification: String,
}

/// Queues a message for a channel; false when it was queued before.
pub fn outbox_insert(c: &Connection, row: &OutboxRow, now_ms: i64) -> Result<bool, NotifyError> {
    let n = c
        .prepare_cached(
            "INSERT INTO outbox (message_id, channel, incident_id, municipality, notification, status, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6) ON CONFLICT DO NOTHING",
        )?
        .execute(params![
            row.message_id,
            row.channel,
            row.incident_id,
            row.municipality,
            row.notification,
            now_ms
        ])?;
    Ok(n == 1)
}

pub fn outbox_finish(
    c: &Connection,
    message_id: &str,
    channel: &str,
    status: &str,
    attempts: u32,
) -> Result<(), NotifyError> {
    c.prepare_cached(
        "UPDATE outbox SET status = ?3, attempts = ?4 WHERE message_id = ?1 AND channel = ?2",
    )?
    .execute(params![message_id, channel, status, attempts])?;
    Ok(())
}

pub fn outbox_pending(c: &Connection) -> Result<Vec<OutboxRow>, NotifyError> {
    let mut st = c.prepare_cached(
        "SELECT message_id, channel, incident_id, municipality, notification FROM outbox
         WHERE status = 'pending' ORDER BY created_ms, message_id",
    )?;
    let rows = st.query_map([], |r| {
        Ok(OutboxRow {
            message_id: r.get(0)?,
            channel: r.get(1)?,
            incident_id: r.get(2)?,
            municipality: r.get(3)?,
            notification: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// (status, attempts) of one message on one channel.
pub fn outbox_status(
    c: &Connection,
    message_id: &str,
    channel: &str,
) -> Result<Option<(String, u32)>, NotifyError> {
    Ok(c.prepare_cached(
        "SELECT status, attempts FROM outbox WHERE message_id = ?1 AND channel = ?2",
    )?
    .query_row([message_id, channel], |r| Ok((r.get(0)?, r.get(1)?)))
    .optional()?)
}

// ------------------------------------------------------------------ policies

pub fn policy(
    c: &Connection,
    municipality: &str,
    version: u32,
) -> Result<Option<Policy>, NotifyError> {
    c.prepare_cached("SELECT policy FROM policies WHERE municipality = ?1 AND version = ?2")?
        .query_row(params![municipality, version], |r| r.get::<_, String>(0))
        .optional()?
        .map(|s| serde_json::from_str(&s).map_err(|e| NotifyError::Corrupt(format!("policy: {e}"))))
        .transpose()
}

/// Records a configured policy version. The same version with other content
/// is an error: a released version never changes.
pub fn put_policy(c: &Connection, municipality: &str, p: &Policy) -> Result<(), NotifyError> {
    if let Some(existing) = policy(c, municipality, p.version)? {
        if &existing != p {
            return Err(NotifyError::Config(format!(
                "escalation policy {municipality} v{} changed after it was used; give it a new version",
                p.version
            )));
        }
        return Ok(());
    }
    let json = serde_json::to_string(p).map_err(|e| NotifyError::Corrupt(e.to_string()))?;
    c.execute(
        "INSERT INTO policies (municipality, version, policy) VALUES (?1, ?2, ?3)",
        params![municipality, p.version, json],
    )?;
    Ok(())
}

/// What the store holds, for summaries and gauges.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub households: i64,
    pub incidents: i64,
    pub open_incidents: i64,
    pub running_escalations: i64,
    /// Messages (one per channel) queued, delivered, failed.
    pub messages_pending: i64,
    pub messages_delivered: i64,
    pub messages_failed: i64,
}

pub fn counts(c: &Connection) -> Result<Counts, NotifyError> {
    let one = |sql: &str| -> Result<i64, NotifyError> { Ok(c.query_row(sql, [], |r| r.get(0))?) };
    Ok(Counts {
        households: one("SELECT count(*) FROM households")?,
        incidents: one("SELECT count(*) FROM incidents")?,
        open_incidents: one("SELECT count(*) FROM incidents WHERE state != 3")?,
        running_escalations: one("SELECT count(*) FROM escalations WHERE due_ms IS NOT NULL")?,
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
    Ok(Swept {
        events,
        messages,
        escalations,
        incidents,
    })
}
