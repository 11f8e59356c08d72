//! The embedded store's rows: a [`WriteBatch`] written in one transaction
//! (rows past retention are not written), and rows read back into the model.

use crate::error::HistoryError;
use crate::model::*;
use dolbom_proto::v1::IncidentEvent;
use prost::Message;
use rusqlite::{params, Connection, Row};

/// Is a record of this time still kept?
pub(crate) fn kept(now: i64, at_ms: i64, keep_ms: i64) -> bool {
    at_ms > now - keep_ms
}

pub(crate) fn table(r: Resolution) -> &'static str {
    match r {
        Resolution::Minute => "readings_minute",
        Resolution::Hour => "readings_hour",
    }
}

pub(crate) fn insert_aggregate(
    tx: &rusqlite::Transaction<'_>,
    a: &Aggregate,
) -> rusqlite::Result<()> {
    let sql = match a.resolution {
        Resolution::Minute => {
            "INSERT OR REPLACE INTO readings_minute VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11)"
        }
        Resolution::Hour => {
            "INSERT OR REPLACE INTO readings_hour VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11)"
        }
    };
    let mut st = tx.prepare_cached(sql)?;
    let w = a.watts;
    let l = a.lux;
    st.execute(params![
        a.household_id,
        a.bucket_start_ms,
        a.readings,
        w.map(|s| s.count),
        w.map(|s| s.min),
        w.map(|s| s.max),
        w.map(|s| s.sum),
        l.map(|s| s.count),
        l.map(|s| s.min),
        l.map(|s| s.max),
        l.map(|s| s.sum),
    ])?;
    Ok(())
}

pub(crate) fn summary(r: &Row<'_>, at: usize) -> rusqlite::Result<Option<Summary>> {
    let count: Option<u32> = r.get(at)?;
    Ok(match count {
        None => None,
        Some(count) => Some(Summary {
            count,
            min: r.get(at + 1)?,
            max: r.get(at + 2)?,
            sum: r.get(at + 3)?,
        }),
    })
}

pub(crate) fn aggregate_row(r: &Row<'_>, resolution: Resolution) -> rusqlite::Result<Aggregate> {
    Ok(Aggregate {
        household_id: r.get(0)?,
        resolution,
        bucket_start_ms: r.get(1)?,
        readings: r.get(2)?,
        watts: summary(r, 3)?,
        lux: summary(r, 7)?,
    })
}

pub(crate) const AGGREGATE_COLUMNS: &str =
    "household_id, bucket_start, readings, watts_count, watts_min, \
     watts_max, watts_sum, lux_count, lux_min, lux_max, lux_sum";

pub(crate) fn decode_event(bytes: Vec<u8>) -> Result<IncidentEvent, HistoryError> {
    IncidentEvent::decode(bytes.as_slice()).map_err(|e| HistoryError::Corrupt(e.to_string()))
}

/// Writes `batch` in one transaction on the writer connection `conn`.
pub(crate) fn write(
    conn: &mut Connection,
    ret: Retention,
    batch: &WriteBatch,
    now: i64,
) -> Result<(), HistoryError> {
    let tx = conn.transaction()?;
    for a in &batch.aggregates {
        if kept(now, a.bucket_start_ms, ret.aggregates_ms(a.resolution)) {
            insert_aggregate(&tx, a)?;
        }
    }
    for h in &batch.roll_up_hours {
        if !kept(now, h.hour_start_ms, ret.aggregates_ms(Resolution::Hour)) {
            continue;
        }
        let minutes = {
            let mut st = tx.prepare_cached(&format!(
                "SELECT {AGGREGATE_COLUMNS} FROM readings_minute \
                 WHERE household_id = ?1 AND bucket_start >= ?2 AND bucket_start < ?3"
            ))?;
            let rows = st.query_map(
                params![h.household_id, h.hour_start_ms, h.hour_start_ms + HOUR_MS],
                |r| aggregate_row(r, Resolution::Minute),
            )?;
            rows.collect::<Result<Vec<_>, _>>()?
        };
        if let Some(hour) = Aggregate::roll_up(&h.household_id, h.hour_start_ms, &minutes) {
            insert_aggregate(&tx, &hour)?;
        }
    }
    {
        let mut st = tx.prepare_cached(
            "INSERT OR REPLACE INTO incident_events (event_id, incident_id, household_id, \
             municipality_code, dong_code, kind, type, stage, at_ms, payload) \
             VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)",
        )?;
        for e in &batch.incident_events {
            let at = event_time_ms(e);
            if !kept(now, at, Retention::days_ms(ret.incident_days)) {
                continue;
            }
            st.execute(params![
                e.event_id,
                e.incident_id,
                e.household_id,
                e.municipality_code,
                e.dong_code,
                e.kind,
                e.r#type,
                e.stage,
                at,
                e.encode_to_vec()
            ])?;
        }
    }
    {
        let mut st = tx.prepare_cached(
            "INSERT OR REPLACE INTO state_changes (household_id, at_ms, state, cause) \
             VALUES (?1,?2,?3,?4)",
        )?;
        for s in &batch.state_changes {
            if kept(now, s.at_ms, Retention::days_ms(ret.state_days)) {
                st.execute(params![s.household_id, s.at_ms, s.state.as_str(), s.cause])?;
            }
        }
    }
    {
        let mut st = tx.prepare_cached(
            "INSERT OR REPLACE INTO escalation_log (incident_id, entry_id, municipality_code, \
             at_ms, action, policy_version, step, attempt, tier, channel, message_id, result, \
             detail) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13)",
        )?;
        for e in &batch.escalation {
            if kept(now, e.at_ms, Retention::days_ms(ret.escalation_days)) {
                st.execute(params![
                    e.incident_id,
                    e.entry_id,
                    e.municipality_code,
                    e.at_ms,
                    e.action.as_str(),
                    e.policy_version,
                    e.step,
                    e.attempt,
                    e.tier,
                    e.channel,
                    e.message_id,
                    e.result,
                    e.detail
                ])?;
            }
        }
    }
    {
        let mut st = tx.prepare_cached(
            "INSERT OR REPLACE INTO audit_log (audit_id, municipality_code, at_ms, principal, \
             action, subject, detail) VALUES (?1,?2,?3,?4,?5,?6,?7)",
        )?;
        for a in &batch.audit {
            if kept(now, a.at_ms, Retention::days_ms(ret.audit_days)) {
                st.execute(params![
                    a.audit_id,
                    a.municipality_code,
                    a.at_ms,
                    a.principal,
                    a.action,
                    a.subject,
                    a.detail
                ])?;
            }
        }
    }
    tx.commit()?;
    Ok(())
}

pub(crate) fn escalation_row(r: &Row<'_>) -> rusqlite::Result<(EscalationEntry, String)> {
    let action: String = r.get(4)?;
    Ok((
        EscalationEntry {
            incident_id: r.get(0)?,
            entry_id: r.get(1)?,
            municipality_code: r.get(2)?,
            at_ms: r.get(3)?,
            action: EscalationAction::StepStarted,
            policy_version: r.get(5)?,
            step: r.get(6)?,
            attempt: r.get(7)?,
            tier: r.get(8)?,
            channel: r.get(9)?,
            message_id: r.get(10)?,
            result: r.get(11)?,
            detail: r.get(12)?,
        },
        action,
    ))
}
