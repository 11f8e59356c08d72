//! The incident views the API lists.

use super::decode;
use crate::error::NotifyError;
use dolbom_proto::v1 as pb;
use prost::Message;
use rusqlite::{params, Connection, OptionalExtension};

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

/// Keeps the trace an incident was opened in (the first one wins).
pub fn put_incident_trace(c: &Connection, id: &str, traceparent: &str) -> Result<(), NotifyError> {
    c.prepare_cached(
        "INSERT INTO incident_traces (incident_id, traceparent) VALUES (?1, ?2)
         ON CONFLICT (incident_id) DO NOTHING",
    )?
    .execute(params![id, traceparent])?;
    Ok(())
}

/// The trace an incident was opened in, if it was sampled.
pub fn incident_trace(c: &Connection, id: &str) -> Result<Option<String>, NotifyError> {
    Ok(
        c.prepare_cached("SELECT traceparent FROM incident_traces WHERE incident_id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?,
    )
}
