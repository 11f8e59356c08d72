//! Running escalations (JSON of [`Escalation`]) with their next due time,
//! and the escalation policies by municipality and version.

use crate::error::NotifyError;
use dolbom_escalation::{Escalation, Policy};
use rusqlite::{params, Connection, OptionalExtension};

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
