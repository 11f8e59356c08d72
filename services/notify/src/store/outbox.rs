//! The outbox: messages to deliver, keyed by message id and channel, so a
//! message is queued once however often it is asked for.

use crate::error::NotifyError;
use rusqlite::{params, Connection, OptionalExtension};

#[derive(Clone, Debug)]
pub struct OutboxRow {
    /// The escalation step that queued it (not stored: a row delivered
    /// after a restart starts a trace of its own).
    pub span: tracing::Span,
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
            span: tracing::Span::none(),
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
