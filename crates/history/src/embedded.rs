//! The embedded store: one SQLite file, for single-machine deployments and
//! `standalone`.
//!
//! One writer connection (every [`WriteBatch`] is one transaction, so a batch
//! is all-or-nothing) and one reader connection; SQLite's write-ahead log lets
//! reads run beside writes. `synchronous=FULL` means a committed write survives
//! a crash or a power loss. Calls block, so the async trait methods run them on
//! tokio's blocking pool; [`EmbeddedStore::write_blocking`] and friends are for
//! callers already on a blocking thread.
//!
//! Schema versions (`embedded_schema.rs`; rows in `embedded_rows.rs`) are
//! the files in `migrations/sqlite/`, applied in order
//! inside a transaction and recorded in `PRAGMA user_version`.

use crate::embedded_rows::*;
use crate::embedded_schema::{migrate, open_conn};
use crate::error::HistoryError;
use crate::model::*;
use crate::store::HistoryStore;
use async_trait::async_trait;
use dolbom_domain::{SharedClock, WallClock};
use dolbom_proto::v1::IncidentEvent;
use dolbom_snapshots::ShardSnapshot;
use rusqlite::{params, Connection, OptionalExtension};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

struct Inner {
    path: PathBuf,
    clock: SharedClock,
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
    retention: Retention,
}

impl Inner {
    /// Writes `batch` in one transaction, at the store clock's now.
    fn write(&self, batch: &WriteBatch) -> Result<(), HistoryError> {
        let mut conn = self.writer.lock().expect("writer lock");
        write(&mut conn, self.retention, batch, self.clock.now().millis())
    }
}

/// History in one SQLite file.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.inner.path)
            .finish()
    }
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store `history.sqlite` in `dir` and
    /// applies pending migrations.
    pub fn open_dir(dir: impl AsRef<Path>, retention: Retention) -> Result<Self, HistoryError> {
        Self::open_dir_with_clock(dir, retention, WallClock::shared())
    }

    /// [`EmbeddedStore::open_dir`] with the clock retention is measured against.
    pub fn open_dir_with_clock(
        dir: impl AsRef<Path>,
        retention: Retention,
        clock: SharedClock,
    ) -> Result<Self, HistoryError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|source| HistoryError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        Self::open_with_clock(dir.join("history.sqlite"), retention, clock)
    }

    /// Opens (creating if needed) the store file and applies pending migrations.
    pub fn open(path: impl AsRef<Path>, retention: Retention) -> Result<Self, HistoryError> {
        Self::open_with_clock(path, retention, WallClock::shared())
    }

    /// [`EmbeddedStore::open`] with the clock retention is measured against.
    pub fn open_with_clock(
        path: impl AsRef<Path>,
        retention: Retention,
        clock: SharedClock,
    ) -> Result<Self, HistoryError> {
        retention.validate()?;
        let path = path.as_ref().to_path_buf();
        let mut writer = open_conn(&path)?;
        migrate(&mut writer)?;
        let reader = open_conn(&path)?;
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                clock,
                writer: Mutex::new(writer),
                reader: Mutex::new(reader),
                retention,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The applied schema version.
    pub fn schema_version(&self) -> Result<u32, HistoryError> {
        let conn = self.inner.reader.lock().expect("reader lock");
        Ok(conn.pragma_query_value(None, "user_version", |r| r.get(0))?)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T, HistoryError> + Send + 'static,
    ) -> Result<T, HistoryError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| HistoryError::Join(e.to_string()))?
    }

    /// [`HistoryStore::write`], on the calling thread.
    pub fn write_blocking(&self, batch: &WriteBatch) -> Result<(), HistoryError> {
        self.inner.write(batch)
    }

    /// [`HistoryStore::put_snapshot`], on the calling thread.
    pub fn put_snapshot_blocking(&self, s: &ShardSnapshot) -> Result<(), HistoryError> {
        let conn = self.inner.writer.lock().expect("writer lock");
        conn.execute(
            "INSERT OR REPLACE INTO snapshots (group_id, partition, readings_offset, \
             households_offset, incidents_offset, taken_at_ms, state) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                s.group,
                s.partition,
                s.readings_offset,
                s.households_offset,
                s.incidents_offset,
                s.taken_at_ms,
                s.state
            ],
        )?;
        Ok(())
    }

    /// [`HistoryStore::get_snapshot`], on the calling thread.
    pub fn get_snapshot_blocking(
        &self,
        group: &str,
        partition: i32,
    ) -> Result<Option<ShardSnapshot>, HistoryError> {
        let conn = self.inner.reader.lock().expect("reader lock");
        Ok(conn
            .query_row(
                "SELECT readings_offset, households_offset, incidents_offset, taken_at_ms, state \
                 FROM snapshots WHERE group_id = ?1 AND partition = ?2",
                params![group, partition],
                |r| {
                    Ok(ShardSnapshot {
                        group: group.to_string(),
                        partition,
                        readings_offset: r.get(0)?,
                        households_offset: r.get(1)?,
                        incidents_offset: r.get(2)?,
                        taken_at_ms: r.get(3)?,
                        state: r.get(4)?,
                    })
                },
            )
            .optional()?)
    }
}

#[async_trait]
impl HistoryStore for EmbeddedStore {
    fn backend(&self) -> &'static str {
        "embedded"
    }

    async fn write(&self, batch: &WriteBatch) -> Result<(), HistoryError> {
        if batch.is_empty() {
            return Ok(());
        }
        let batch = batch.clone();
        self.blocking(move |inner| inner.write(&batch)).await
    }

    async fn put_snapshot(&self, snapshot: &ShardSnapshot) -> Result<(), HistoryError> {
        let this = self.clone();
        let snapshot = snapshot.clone();
        self.blocking(move |_| this.put_snapshot_blocking(&snapshot))
            .await
    }

    async fn get_snapshot(
        &self,
        group: &str,
        partition: i32,
    ) -> Result<Option<ShardSnapshot>, HistoryError> {
        let this = self.clone();
        let group = group.to_string();
        self.blocking(move |_| this.get_snapshot_blocking(&group, partition))
            .await
    }

    async fn timeline(
        &self,
        household_id: &str,
        from_ms: i64,
        to_ms: i64,
        resolution: Resolution,
    ) -> Result<Timeline, HistoryError> {
        validate_range(from_ms, to_ms)?;
        let household_id = household_id.to_string();
        self.blocking(move |inner| {
            let conn = inner.reader.lock().expect("reader lock");
            let mut st = conn.prepare_cached(&format!(
                "SELECT {AGGREGATE_COLUMNS} FROM {} WHERE household_id = ?1 \
                 AND bucket_start >= ?2 AND bucket_start < ?3 ORDER BY bucket_start",
                table(resolution)
            ))?;
            let aggregates = st
                .query_map(params![household_id, from_ms, to_ms], |r| {
                    aggregate_row(r, resolution)
                })?
                .collect::<Result<Vec<_>, _>>()?;
            let mut st = conn.prepare_cached(
                "SELECT at_ms, state, cause FROM state_changes WHERE household_id = ?1 \
                 AND at_ms >= ?2 AND at_ms < ?3 ORDER BY at_ms, state",
            )?;
            let mut state_changes = Vec::new();
            let rows = st.query_map(params![household_id, from_ms, to_ms], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get(2)?))
            })?;
            for row in rows {
                let (at_ms, state, cause) = row?;
                state_changes.push(StateChange {
                    household_id: household_id.clone(),
                    at_ms,
                    state: StateKind::parse(&state)
                        .ok_or_else(|| HistoryError::Corrupt(format!("state {state}")))?,
                    cause,
                });
            }
            let mut st = conn.prepare_cached(
                "SELECT payload FROM incident_events WHERE household_id = ?1 \
                 AND at_ms >= ?2 AND at_ms < ?3 ORDER BY at_ms, event_id",
            )?;
            let incident_events = st
                .query_map(params![household_id, from_ms, to_ms], |r| r.get(0))?
                .map(|b| decode_event(b?))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Timeline {
                aggregates,
                state_changes,
                incident_events,
            })
        })
        .await
    }

    async fn incidents(&self, query: &IncidentQuery) -> Result<IncidentPage, HistoryError> {
        query.validate()?;
        let q = query.clone();
        self.blocking(move |inner| {
            let (start, after) = q.start()?;
            let limit = q.effective_limit();
            let conn = inner.reader.lock().expect("reader lock");
            let mut st = conn.prepare_cached(
                "SELECT payload FROM incident_events WHERE municipality_code = ?1 \
                 AND (at_ms, event_id) > (?2, ?3) AND at_ms < ?4 \
                 AND (?5 IS NULL OR dong_code = ?5) AND (?6 IS NULL OR household_id = ?6) \
                 AND (?7 IS NULL OR kind = ?7) ORDER BY at_ms, event_id LIMIT ?8",
            )?;
            // Without a token, start at from_ms inclusive: after (from-1, max).
            let (start_at, after_id) = match after {
                Some(id) => (start, id),
                None => (start - 1, "\u{10FFFF}".to_string()),
            };
            let mut events = st
                .query_map(
                    params![
                        q.municipality_code,
                        start_at,
                        after_id,
                        q.to_ms,
                        q.dong_code,
                        q.household_id,
                        q.kind,
                        (limit + 1) as i64
                    ],
                    |r| r.get(0),
                )?
                .map(|b| decode_event(b?))
                .collect::<Result<Vec<_>, _>>()?;
            let next_page_token = if events.len() > limit {
                events.truncate(limit);
                events.last().map(page_token)
            } else {
                None
            };
            Ok(IncidentPage {
                events,
                next_page_token,
            })
        })
        .await
    }

    async fn incident_events(&self, incident_id: &str) -> Result<Vec<IncidentEvent>, HistoryError> {
        let id = incident_id.to_string();
        self.blocking(move |inner| {
            let conn = inner.reader.lock().expect("reader lock");
            let mut st = conn.prepare_cached(
                "SELECT payload FROM incident_events WHERE incident_id = ?1 \
                 ORDER BY at_ms, event_id",
            )?;
            let events = st
                .query_map(params![id], |r| r.get(0))?
                .map(|b| decode_event(b?))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(events)
        })
        .await
    }

    async fn escalation(&self, incident_id: &str) -> Result<Vec<EscalationEntry>, HistoryError> {
        let id = incident_id.to_string();
        self.blocking(move |inner| {
            let conn = inner.reader.lock().expect("reader lock");
            let mut st = conn.prepare_cached(
                "SELECT incident_id, entry_id, municipality_code, at_ms, action, policy_version, \
                 step, attempt, tier, channel, message_id, result, detail FROM escalation_log \
                 WHERE incident_id = ?1 ORDER BY at_ms, entry_id",
            )?;
            let rows = st.query_map(params![id], escalation_row)?;
            let mut out = Vec::new();
            for row in rows {
                let (mut e, action) = row?;
                e.action = EscalationAction::parse(&action)
                    .ok_or_else(|| HistoryError::Corrupt(format!("escalation action {action}")))?;
                out.push(e);
            }
            Ok(out)
        })
        .await
    }

    async fn audit(
        &self,
        municipality_code: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<AuditEntry>, HistoryError> {
        validate_range(from_ms, to_ms)?;
        let m = municipality_code.to_string();
        self.blocking(move |inner| {
            let conn = inner.reader.lock().expect("reader lock");
            let mut st = conn.prepare_cached(
                "SELECT audit_id, municipality_code, at_ms, principal, action, subject, detail \
                 FROM audit_log WHERE municipality_code = ?1 AND at_ms >= ?2 AND at_ms < ?3 \
                 ORDER BY at_ms, audit_id",
            )?;
            let rows = st.query_map(params![m, from_ms, to_ms], |r| {
                Ok(AuditEntry {
                    audit_id: r.get(0)?,
                    municipality_code: r.get(1)?,
                    at_ms: r.get(2)?,
                    principal: r.get(3)?,
                    action: r.get(4)?,
                    subject: r.get(5)?,
                    detail: r.get(6)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn enforce_retention(&self, now_ms: i64) -> Result<RetentionReport, HistoryError> {
        self.blocking(move |inner| {
            let r = inner.retention;
            let mut conn = inner.writer.lock().expect("writer lock");
            let tx = conn.transaction()?;
            let mut deleted = 0u64;
            for (sql, keep_ms) in [
                (
                    "DELETE FROM readings_minute WHERE bucket_start <= ?1",
                    r.aggregates_ms(Resolution::Minute),
                ),
                (
                    "DELETE FROM readings_hour WHERE bucket_start <= ?1",
                    r.aggregates_ms(Resolution::Hour),
                ),
                (
                    "DELETE FROM incident_events WHERE at_ms <= ?1",
                    Retention::days_ms(r.incident_days),
                ),
                (
                    "DELETE FROM state_changes WHERE at_ms <= ?1",
                    Retention::days_ms(r.state_days),
                ),
                (
                    "DELETE FROM escalation_log WHERE at_ms <= ?1",
                    Retention::days_ms(r.escalation_days),
                ),
                (
                    "DELETE FROM audit_log WHERE at_ms <= ?1",
                    Retention::days_ms(r.audit_days),
                ),
            ] {
                deleted += tx.execute(sql, params![now_ms - keep_ms])? as u64;
            }
            tx.commit()?;
            Ok(RetentionReport {
                deleted_rows: deleted,
            })
        })
        .await
    }
}
