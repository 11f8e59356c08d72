//! The history outbox: escalation, delivery and audit records the history
//! writer's queue could not take (the history store is down or slow),
//! forwarded to the history store later (see [`crate::forward`]). They wait
//! here — on disk, across restarts — and nothing that alerts a person waits
//! for them.

use crate::error::NotifyError;
use dolbom_history::{AuditEntry, EscalationEntry, Record};
use rusqlite::{params, Connection};
use serde::{Deserialize, Serialize};

/// What notify records in the history (the other record kinds are the
/// monitor's and the history ingest's).
#[derive(Serialize, Deserialize)]
enum Spilled {
    Escalation(EscalationEntry),
    Audit(AuditEntry),
}

/// Queues a record for the history store. Records of other kinds are not
/// notify's to write and are refused.
pub fn spill(c: &Connection, r: Record) -> Result<(), NotifyError> {
    let s = match r {
        Record::Escalation(e) => Spilled::Escalation(e),
        Record::Audit(a) => Spilled::Audit(a),
        other => {
            return Err(NotifyError::Internal(format!(
                "notify does not record {} in the history",
                other.kind()
            )))
        }
    };
    let json = serde_json::to_string(&s).map_err(|e| NotifyError::Internal(e.to_string()))?;
    c.prepare_cached("INSERT INTO history_outbox (record) VALUES (?1)")?
        .execute([json])?;
    Ok(())
}

/// Up to `limit` queued records, oldest first, with their sequence numbers.
pub fn spilled(c: &Connection, limit: usize) -> Result<Vec<(i64, Record)>, NotifyError> {
    let mut st =
        c.prepare_cached("SELECT seq, record FROM history_outbox ORDER BY seq LIMIT ?1")?;
    let rows = st.query_map([limit as i64], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
    })?;
    rows.map(|r| {
        let (seq, json) = r?;
        let s: Spilled = serde_json::from_str(&json)
            .map_err(|e| NotifyError::Corrupt(format!("history outbox: {e}")))?;
        Ok((
            seq,
            match s {
                Spilled::Escalation(e) => Record::Escalation(e),
                Spilled::Audit(a) => Record::Audit(a),
            },
        ))
    })
    .collect()
}

/// Forgets the records up to `seq`: the history store holds them.
pub fn forwarded(c: &Connection, seq: i64) -> Result<(), NotifyError> {
    c.prepare_cached("DELETE FROM history_outbox WHERE seq <= ?1")?
        .execute(params![seq])?;
    Ok(())
}

/// Records waiting for the history store.
pub fn spilled_count(c: &Connection) -> Result<i64, NotifyError> {
    Ok(c.query_row("SELECT count(*) FROM history_outbox", [], |r| r.get(0))?)
}
