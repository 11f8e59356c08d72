//! The ScyllaDB store, for the nation.
//!
//! Schema (`scylla_schema.rs`, rows in `scylla_rows.rs`):
//! `migrations/scylla/*.cql`, applied in order on start and recorded
//! (with a checksum: an edited released file is an error) in
//! `schema_migrations`. Keyspace creation is done here because replication
//! is per deployment (`NetworkTopologyStrategy`, `replication_factor` from the
//! options).
//!
//! Routing: every statement is prepared, so the driver's default load
//! balancing policy routes it to a replica of its partition (token-aware) and,
//! on ScyllaDB, to the shard that owns the token (shard-aware); with
//! `local_dc` set it stays in that datacenter. Batches are UNLOGGED and only
//! ever hold rows of one partition (minute and hour aggregates of one
//! household-day or household-month); everything else is written as
//! concurrent single statements, at most `concurrency` in flight.
//!
//! Consistency, per table:
//! - `LOCAL_QUORUM`: incidents (all three tables), state changes, escalation
//!   log, audit log and snapshots — records people and restarts depend on; a
//!   write acknowledged at LOCAL_QUORUM is read back at LOCAL_QUORUM.
//! - `ONE`: reading aggregates — high volume, rebuilt from Kafka if a replica
//!   misses a write, and read only for charts.
//!
//! TTLs: each row is written with the time its kind's retention has left,
//! measured from the record's own time (rows already past it are not written),
//! so ScyllaDB expires exactly what the embedded store deletes.

use crate::error::HistoryError;
use crate::model::*;
use crate::scylla_options::ScyllaOptions;
use crate::scylla_rows::*;
use crate::scylla_schema::{migrate, prepare, Statements};
use crate::store::HistoryStore;
use async_trait::async_trait;
use dolbom_proto::v1::IncidentEvent;
use dolbom_snapshots::ShardSnapshot;
use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use prost::Message;
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::policies::load_balancing::DefaultPolicy;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::Consistency;
use std::collections::BTreeMap;
use std::time::Duration;

/// A snapshot is written in chunks of this size (rows stay small).
const SNAPSHOT_CHUNK: usize = 512 * 1024;

/// History in a ScyllaDB keyspace.
pub struct ScyllaStore {
    session: Session,
    st: Statements,
    retention: Retention,
    concurrency: usize,
}

impl ScyllaStore {
    /// Connects, creates the keyspace if missing, applies pending migrations
    /// and prepares every statement.
    pub async fn connect(opts: &ScyllaOptions, retention: Retention) -> Result<Self, HistoryError> {
        opts.validate()?;
        retention.validate()?;
        let mut policy = DefaultPolicy::builder().token_aware(true);
        if let Some(dc) = &opts.local_dc {
            policy = policy
                .prefer_datacenter(dc.clone())
                .permit_dc_failover(false);
        }
        let profile = ExecutionProfile::builder()
            .consistency(Consistency::LocalQuorum)
            .request_timeout(Some(Duration::from_millis(opts.request_timeout_ms)))
            .load_balancing_policy(policy.build())
            .build();
        let mut builder = SessionBuilder::new()
            .known_nodes(opts.nodes())
            .connection_timeout(Duration::from_millis(opts.request_timeout_ms))
            .default_execution_profile_handle(profile.into_handle());
        if let Some((user, password)) = opts.credentials()? {
            builder = builder.user(user, password.expose());
        }
        if let Some(tls) = &opts.tls {
            builder = builder.tls_context(Some(tls.client_config()?));
        }
        let session = builder.build().await.map_err(HistoryError::scylla)?;
        session
            .query_unpaged(
                format!(
                    "CREATE KEYSPACE IF NOT EXISTS {} WITH replication = \
                     {{'class': 'NetworkTopologyStrategy', 'replication_factor': {}}}",
                    opts.keyspace, opts.replication_factor
                ),
                &[],
            )
            .await
            .map_err(HistoryError::scylla)?;
        session
            .use_keyspace(&opts.keyspace, false)
            .await
            .map_err(HistoryError::scylla)?;
        migrate(&session).await?;
        let st = prepare(&session).await?;
        Ok(Self {
            session,
            st,
            retention,
            concurrency: opts.concurrency,
        })
    }

    async fn run_all(
        &self,
        futures: Vec<BoxFuture<'_, Result<(), HistoryError>>>,
    ) -> Result<(), HistoryError> {
        futures::stream::iter(futures)
            .buffer_unordered(self.concurrency)
            .try_collect::<()>()
            .await
    }

    async fn exec(
        &self,
        st: &PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow,
    ) -> Result<(), HistoryError> {
        self.session
            .execute_unpaged(st, values)
            .await
            .map(|_| ())
            .map_err(HistoryError::scylla)
    }

    async fn rows<R>(
        &self,
        st: &PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow,
    ) -> Result<Vec<R>, HistoryError>
    where
        R: for<'f, 'm> scylla::deserialize::row::DeserializeRow<'f, 'm> + Send + 'static,
    {
        self.session
            .execute_iter(st.clone(), values)
            .await
            .map_err(HistoryError::scylla)?
            .rows_stream::<R>()
            .map_err(HistoryError::scylla)?
            .map_err(HistoryError::scylla)
            .try_collect()
            .await
    }

    async fn write_aggregates(&self, rows: &[&Aggregate], now: i64) -> Result<(), HistoryError> {
        // Group by partition: one UNLOGGED batch per household-day or month.
        let mut parts: BTreeMap<(Resolution, &str, i32), Vec<AggValues>> = BTreeMap::new();
        for a in rows {
            let Some(ttl) = ttl(
                now,
                a.bucket_start_ms,
                self.retention.aggregates_ms(a.resolution),
            ) else {
                continue;
            };
            let bucket = match a.resolution {
                Resolution::Minute => utc_day(a.bucket_start_ms),
                Resolution::Hour => utc_month(a.bucket_start_ms),
            };
            parts
                .entry((a.resolution, &a.household_id, bucket))
                .or_default()
                .push(aggregate_values(a, bucket, ttl));
        }
        let mut futs: Vec<BoxFuture<'_, Result<(), HistoryError>>> = Vec::new();
        for ((resolution, _, _), values) in parts {
            let st = match resolution {
                Resolution::Minute => &self.st.insert_minute,
                Resolution::Hour => &self.st.insert_hour,
            };
            futs.push(Box::pin(async move {
                // The statements are prepared with ONE; a batch carries its own.
                if values.len() == 1 {
                    return self.exec(st, &values[0]).await;
                }
                let mut batch = Batch::new(BatchType::Unlogged);
                batch.set_consistency(Consistency::One);
                for _ in &values {
                    batch.append_statement(st.clone());
                }
                self.session
                    .batch(&batch, &values)
                    .await
                    .map(|_| ())
                    .map_err(HistoryError::scylla)
            }));
        }
        self.run_all(futs).await
    }

    async fn roll_up(&self, key: &HourKey, now: i64) -> Result<(), HistoryError> {
        let minutes: Vec<AggRow> = self
            .rows(
                &self.st.select_minute,
                (
                    &key.household_id,
                    utc_day(key.hour_start_ms),
                    key.hour_start_ms,
                    key.hour_start_ms + HOUR_MS,
                ),
            )
            .await?;
        let minutes: Vec<Aggregate> = minutes
            .into_iter()
            .map(|r| aggregate_from(r, Resolution::Minute))
            .collect();
        if let Some(hour) = Aggregate::roll_up(&key.household_id, key.hour_start_ms, &minutes) {
            self.write_aggregates(&[&hour], now).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl HistoryStore for ScyllaStore {
    fn backend(&self) -> &'static str {
        "scylla"
    }

    async fn write(&self, batch: &WriteBatch) -> Result<(), HistoryError> {
        let now = dolbom_domain::Ts::now().millis();
        let r = self.retention;
        let aggregates: Vec<&Aggregate> = batch.aggregates.iter().collect();
        self.write_aggregates(&aggregates, now).await?;
        let mut futs: Vec<BoxFuture<'_, Result<(), HistoryError>>> = Vec::new();
        for h in &batch.roll_up_hours {
            futs.push(Box::pin(self.roll_up(h, now)));
        }
        for e in &batch.incident_events {
            let at = event_time_ms(e);
            let Some(ttl) = ttl(now, at, Retention::days_ms(r.incident_days)) else {
                continue;
            };
            let payload = e.encode_to_vec();
            futs.push(Box::pin(self.exec(
                &self.st.insert_inc_muni,
                (
                    &e.municipality_code,
                    utc_day(at),
                    at,
                    &e.event_id,
                    &e.incident_id,
                    &e.household_id,
                    &e.dong_code,
                    e.kind,
                    e.r#type,
                    e.stage,
                    payload.clone(),
                    ttl,
                ),
            )));
            if !e.household_id.is_empty() {
                futs.push(Box::pin(self.exec(
                    &self.st.insert_inc_household,
                    (
                        &e.household_id,
                        utc_month(at),
                        at,
                        &e.event_id,
                        payload.clone(),
                        ttl,
                    ),
                )));
            }
            futs.push(Box::pin(self.exec(
                &self.st.insert_inc_id,
                (&e.incident_id, at, &e.event_id, payload, ttl),
            )));
        }
        for s in &batch.state_changes {
            let Some(ttl) = ttl(now, s.at_ms, Retention::days_ms(r.state_days)) else {
                continue;
            };
            futs.push(Box::pin(self.exec(
                &self.st.insert_state,
                (
                    &s.household_id,
                    utc_month(s.at_ms),
                    s.at_ms,
                    s.state.as_str(),
                    &s.cause,
                    ttl,
                ),
            )));
        }
        for e in &batch.escalation {
            let Some(ttl) = ttl(now, e.at_ms, Retention::days_ms(r.escalation_days)) else {
                continue;
            };
            futs.push(Box::pin(self.exec(
                &self.st.insert_escalation,
                (
                    &e.incident_id,
                    e.at_ms,
                    &e.entry_id,
                    &e.municipality_code,
                    e.action.as_str(),
                    e.policy_version as i32,
                    e.step as i32,
                    e.attempt as i32,
                    &e.tier,
                    &e.channel,
                    &e.message_id,
                    &e.result,
                    &e.detail,
                    ttl,
                ),
            )));
        }
        for a in &batch.audit {
            let Some(ttl) = ttl(now, a.at_ms, Retention::days_ms(r.audit_days)) else {
                continue;
            };
            futs.push(Box::pin(self.exec(
                &self.st.insert_audit,
                (
                    &a.municipality_code,
                    utc_day(a.at_ms),
                    a.at_ms,
                    &a.audit_id,
                    &a.principal,
                    &a.action,
                    &a.subject,
                    &a.detail,
                    ttl,
                ),
            )));
        }
        self.run_all(futs).await
    }

    async fn put_snapshot(&self, s: &ShardSnapshot) -> Result<(), HistoryError> {
        let previous: Option<HeadRow> = self
            .rows::<HeadRow>(&self.st.select_head, (&s.group, s.partition))
            .await?
            .into_iter()
            .next();
        // Monotonic per partition: never collides with the previous id.
        let id = previous
            .map_or(0, |p| p.0 + 1)
            .max(dolbom_domain::Ts::now().millis() * 1000);
        let chunks: Vec<&[u8]> = s.state.chunks(SNAPSHOT_CHUNK).collect();
        let futs: Vec<BoxFuture<'_, Result<(), HistoryError>>> = chunks
            .iter()
            .enumerate()
            .map(|(i, data)| -> BoxFuture<'_, Result<(), HistoryError>> {
                Box::pin(self.exec(
                    &self.st.insert_chunk,
                    (&s.group, s.partition, id, i as i32, data.to_vec()),
                ))
            })
            .collect();
        self.run_all(futs).await?;
        self.exec(
            &self.st.insert_head,
            (
                &s.group,
                s.partition,
                id,
                s.readings_offset,
                s.households_offset,
                s.incidents_offset,
                s.taken_at_ms,
                chunks.len() as i32,
                s.state.len() as i64,
                xxhash_rust::xxh3::xxh3_64(&s.state) as i64,
            ),
        )
        .await?;
        if let Some(prev) = previous {
            if let Err(e) = self
                .exec(&self.st.delete_chunks, (&s.group, s.partition, prev.0))
                .await
            {
                tracing::warn!(error = %e, partition = s.partition, "could not delete an old snapshot's chunks");
            }
        }
        Ok(())
    }

    async fn get_snapshot(
        &self,
        group: &str,
        partition: i32,
    ) -> Result<Option<ShardSnapshot>, HistoryError> {
        let Some((
            id,
            readings_offset,
            households_offset,
            incidents_offset,
            taken_at_ms,
            chunks,
            size,
            checksum,
        )) = self
            .rows::<HeadRow>(&self.st.select_head, (group, partition))
            .await?
            .into_iter()
            .next()
        else {
            return Ok(None);
        };
        let rows: Vec<(i32, Vec<u8>)> = self
            .rows(&self.st.select_chunks, (group, partition, id))
            .await?;
        let mut state = Vec::with_capacity(size.max(0) as usize);
        for (i, (chunk, data)) in rows.into_iter().enumerate() {
            if chunk != i as i32 {
                return Err(HistoryError::Corrupt(format!(
                    "snapshot {group}/{partition}: chunk {i} missing"
                )));
            }
            state.extend_from_slice(&data);
        }
        if state.len() as i64 != size
            || (chunks as usize) != state.len().div_ceil(SNAPSHOT_CHUNK)
            || xxhash_rust::xxh3::xxh3_64(&state) as i64 != checksum
        {
            return Err(HistoryError::Corrupt(format!(
                "snapshot {group}/{partition}: size or checksum mismatch"
            )));
        }
        Ok(Some(ShardSnapshot {
            group: group.to_string(),
            partition,
            readings_offset,
            households_offset,
            incidents_offset,
            taken_at_ms,
            state,
        }))
    }

    async fn timeline(
        &self,
        household_id: &str,
        from_ms: i64,
        to_ms: i64,
        resolution: Resolution,
    ) -> Result<Timeline, HistoryError> {
        validate_range(from_ms, to_ms)?;
        let mut timeline = Timeline::default();
        let (st, buckets): (&PreparedStatement, Vec<i32>) = match resolution {
            Resolution::Minute => (
                &self.st.select_minute,
                (utc_day(from_ms)..=utc_day(to_ms - 1)).collect(),
            ),
            Resolution::Hour => (
                &self.st.select_hour,
                (utc_month(from_ms)..=utc_month(to_ms - 1)).collect(),
            ),
        };
        for b in buckets {
            let rows: Vec<AggRow> = self.rows(st, (household_id, b, from_ms, to_ms)).await?;
            timeline
                .aggregates
                .extend(rows.into_iter().map(|r| aggregate_from(r, resolution)));
        }
        let mut month = utc_month(from_ms);
        while month_start_ms(month) < to_ms {
            let rows: Vec<(i64, String, String)> = self
                .rows(&self.st.select_state, (household_id, month, from_ms, to_ms))
                .await?;
            for (at_ms, state, cause) in rows {
                timeline.state_changes.push(StateChange {
                    household_id: household_id.to_string(),
                    at_ms,
                    state: StateKind::parse(&state)
                        .ok_or_else(|| HistoryError::Corrupt(format!("state {state}")))?,
                    cause,
                });
            }
            let rows: Vec<(Vec<u8>,)> = self
                .rows(
                    &self.st.select_inc_household,
                    (household_id, month, from_ms, to_ms),
                )
                .await?;
            for (payload,) in rows {
                timeline.incident_events.push(decode_event(&payload)?);
            }
            month += 1;
        }
        Ok(timeline)
    }

    async fn incidents(&self, q: &IncidentQuery) -> Result<IncidentPage, HistoryError> {
        q.validate()?;
        let (start, after) = q.start()?;
        let limit = q.effective_limit();
        let mut events: Vec<IncidentEvent> = Vec::new();
        let mut day = utc_day(start);
        let last_day = utc_day(q.to_ms - 1);
        'days: while day <= last_day {
            type IncRow = (i64, String, String, String, i32, Vec<u8>);
            let rows: Vec<IncRow> = match (&after, utc_day(start) == day) {
                (Some(id), true) => {
                    self.rows(
                        &self.st.select_inc_muni_after,
                        (&q.municipality_code, day, start, id, q.to_ms),
                    )
                    .await?
                }
                _ => {
                    let from = if after.is_none() { start } else { i64::MIN };
                    self.rows(
                        &self.st.select_inc_muni_from,
                        (&q.municipality_code, day, from, q.to_ms),
                    )
                    .await?
                }
            };
            for (_, _, dong, household, kind, payload) in rows {
                if q.dong_code.as_ref().is_some_and(|d| d != &dong)
                    || q.household_id.as_ref().is_some_and(|h| h != &household)
                    || q.kind.is_some_and(|k| k != kind)
                {
                    continue;
                }
                events.push(decode_event(&payload)?);
                if events.len() > limit {
                    break 'days;
                }
            }
            day += 1;
        }
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
    }

    async fn incident_events(&self, incident_id: &str) -> Result<Vec<IncidentEvent>, HistoryError> {
        let rows: Vec<(Vec<u8>,)> = self.rows(&self.st.select_inc_id, (incident_id,)).await?;
        rows.iter().map(|(p,)| decode_event(p)).collect()
    }

    async fn escalation(&self, incident_id: &str) -> Result<Vec<EscalationEntry>, HistoryError> {
        type Row = (
            String,
            i64,
            String,
            String,
            String,
            i32,
            i32,
            i32,
            String,
            String,
            String,
            String,
            String,
        );
        let rows: Vec<Row> = self
            .rows(&self.st.select_escalation, (incident_id,))
            .await?;
        rows.into_iter()
            .map(|r| {
                Ok(EscalationEntry {
                    incident_id: r.0,
                    at_ms: r.1,
                    entry_id: r.2,
                    municipality_code: r.3,
                    action: EscalationAction::parse(&r.4).ok_or_else(|| {
                        HistoryError::Corrupt(format!("escalation action {}", r.4))
                    })?,
                    policy_version: r.5 as u32,
                    step: r.6 as u32,
                    attempt: r.7 as u32,
                    tier: r.8,
                    channel: r.9,
                    message_id: r.10,
                    result: r.11,
                    detail: r.12,
                })
            })
            .collect()
    }

    async fn audit(
        &self,
        municipality_code: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<AuditEntry>, HistoryError> {
        validate_range(from_ms, to_ms)?;
        let mut out = Vec::new();
        for day in utc_day(from_ms)..=utc_day(to_ms - 1) {
            let rows: Vec<(String, i64, String, String, String, String)> = self
                .rows(
                    &self.st.select_audit,
                    (municipality_code, day, from_ms, to_ms),
                )
                .await?;
            out.extend(rows.into_iter().map(|r| AuditEntry {
                audit_id: r.0,
                municipality_code: municipality_code.to_string(),
                at_ms: r.1,
                principal: r.2,
                action: r.3,
                subject: r.4,
                detail: r.5,
            }));
        }
        Ok(out)
    }

    async fn enforce_retention(&self, _now_ms: i64) -> Result<RetentionReport, HistoryError> {
        // Rows carry their TTL; ScyllaDB expires them and TWCS drops whole
        // windows.
        Ok(RetentionReport::default())
    }
}
