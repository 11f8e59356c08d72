//! The incident event log behind `WatchIncidents` (`seq` is the cursor), and
//! the service's own events still to be published.

use super::decode;
use crate::error::NotifyError;
use dolbom_proto::v1 as pb;
use prost::Message;
use rusqlite::{params, Connection};

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
