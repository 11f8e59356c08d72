//! The ScyllaDB store, for the nation.
//!
//! Schema: `migrations/scylla/*.cql`, applied in order on start and recorded
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
use crate::store::HistoryStore;
use async_trait::async_trait;
use chrono::{Datelike, TimeZone, Utc};
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

/// The schema, in order. Never edit a released file: add the next one.
const MIGRATIONS: &[(i32, &str, &str)] = &[(
    1,
    "init",
    include_str!("../migrations/scylla/0001_init.cql"),
)];

const SNAPSHOT_CHUNK: usize = 512 * 1024;

struct Statements {
    insert_minute: PreparedStatement,
    insert_hour: PreparedStatement,
    select_minute: PreparedStatement,
    select_hour: PreparedStatement,
    insert_inc_muni: PreparedStatement,
    insert_inc_household: PreparedStatement,
    insert_inc_id: PreparedStatement,
    select_inc_muni_from: PreparedStatement,
    select_inc_muni_after: PreparedStatement,
    select_inc_household: PreparedStatement,
    select_inc_id: PreparedStatement,
    insert_state: PreparedStatement,
    select_state: PreparedStatement,
    insert_escalation: PreparedStatement,
    select_escalation: PreparedStatement,
    insert_audit: PreparedStatement,
    select_audit: PreparedStatement,
    insert_chunk: PreparedStatement,
    insert_head: PreparedStatement,
    select_head: PreparedStatement,
    select_chunks: PreparedStatement,
    delete_chunks: PreparedStatement,
}

/// History in a ScyllaDB keyspace.
pub struct ScyllaStore {
    session: Session,
    st: Statements,
    retention: Retention,
    concurrency: usize,
}

fn utc_day(ms: i64) -> i32 {
    ms.div_euclid(DAY_MS) as i32
}

fn utc_month(ms: i64) -> i32 {
    let t = Utc.timestamp_millis_opt(ms).single().expect("valid time");
    t.year() * 12 + t.month0() as i32
}

fn month_start_ms(month: i32) -> i64 {
    let (y, m) = (month.div_euclid(12), month.rem_euclid(12) as u32 + 1);
    Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0)
        .single()
        .expect("valid month")
        .timestamp_millis()
}

/// Seconds a record of time `at_ms` has left under `keep_ms`, or `None` when
/// it is already past retention.
fn ttl(now: i64, at_ms: i64, keep_ms: i64) -> Option<i32> {
    let left = (at_ms + keep_ms - now) / 1000;
    (left > 0).then(|| left.min(i64::from(i32::MAX)) as i32)
}

fn summary(
    count: Option<i32>,
    min: Option<f64>,
    max: Option<f64>,
    sum: Option<f64>,
) -> Option<Summary> {
    Some(Summary {
        count: count? as u32,
        min: min?,
        max: max?,
        sum: sum?,
    })
}

type AggRow = (
    String,
    i64,
    i32,
    Option<i32>,
    Option<f64>,
    Option<f64>,
    Option<f64>,
    Option<i32>,
    Option<f64>,
    Option<f64>,
    Option<f64>,
);

fn aggregate_from(row: AggRow, resolution: Resolution) -> Aggregate {
    let (household_id, bucket_start_ms, readings, wc, wmin, wmax, wsum, lc, lmin, lmax, lsum) = row;
    Aggregate {
        household_id,
        resolution,
        bucket_start_ms,
        readings: readings as u32,
        watts: summary(wc, wmin, wmax, wsum),
        lux: summary(lc, lmin, lmax, lsum),
    }
}

type AggValues = (
    String,
    i32,
    i64,
    i32,
    Option<i32>,
    Option<f64>,
    Option<f64>,
    Option<f64>,
    Option<i32>,
    Option<f64>,
    Option<f64>,
    Option<f64>,
    i32,
);

fn aggregate_values(a: &Aggregate, bucket: i32, ttl: i32) -> AggValues {
    let (w, l) = (a.watts, a.lux);
    (
        a.household_id.clone(),
        bucket,
        a.bucket_start_ms,
        a.readings as i32,
        w.map(|s| s.count as i32),
        w.map(|s| s.min),
        w.map(|s| s.max),
        w.map(|s| s.sum),
        l.map(|s| s.count as i32),
        l.map(|s| s.min),
        l.map(|s| s.max),
        l.map(|s| s.sum),
        ttl,
    )
}

fn decode_event(bytes: &[u8]) -> Result<IncidentEvent, HistoryError> {
    IncidentEvent::decode(bytes).map_err(|e| HistoryError::Corrupt(e.to_string()))
}

const AGG_COLUMNS: &str = "household_id, bucket_start, readings, watts_count, watts_min, \
     watts_max, watts_sum, lux_count, lux_min, lux_max, lux_sum";

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

fn statements(sql: &str) -> Vec<String> {
    let without_comments: String = sql
        .lines()
        .map(|l| l.split("--").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    without_comments
        .split(';')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

async fn migrate(session: &Session) -> Result<(), HistoryError> {
    session
        .query_unpaged(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version int PRIMARY KEY, \
             name text, checksum bigint, applied_at timestamp)",
            &[],
        )
        .await
        .map_err(HistoryError::scylla)?;
    let applied: Vec<(i32, Option<i64>)> = session
        .query_unpaged("SELECT version, checksum FROM schema_migrations", &[])
        .await
        .map_err(HistoryError::scylla)?
        .into_rows_result()
        .map_err(HistoryError::scylla)?
        .rows::<(i32, Option<i64>)>()
        .map_err(HistoryError::scylla)?
        .collect::<Result<_, _>>()
        .map_err(HistoryError::scylla)?;
    for &(version, name, sql) in MIGRATIONS {
        let checksum = xxhash_rust::xxh3::xxh3_64(sql.as_bytes()) as i64;
        let fail = |reason: String| HistoryError::Migration {
            version: version as u32,
            name: name.to_string(),
            reason,
        };
        if let Some((_, recorded)) = applied.iter().find(|(v, _)| *v == version) {
            if *recorded != Some(checksum) {
                return Err(fail(
                    "already applied with a different checksum: released migrations must not change"
                        .into(),
                ));
            }
            continue;
        }
        for statement in statements(sql) {
            session
                .query_unpaged(statement, &[])
                .await
                .map_err(|e| fail(e.to_string()))?;
        }
        session
            .query_unpaged(
                "INSERT INTO schema_migrations (version, name, checksum, applied_at) \
                 VALUES (?, ?, ?, toTimestamp(now()))",
                (version, name, checksum),
            )
            .await
            .map_err(|e| fail(e.to_string()))?;
        tracing::info!(version, name, "history: applied ScyllaDB schema migration");
    }
    Ok(())
}

async fn prepare(session: &Session) -> Result<Statements, HistoryError> {
    let p = |cql: String, consistency: Consistency| async move {
        let mut st = session.prepare(cql).await.map_err(HistoryError::scylla)?;
        st.set_consistency(consistency);
        Ok::<_, HistoryError>(st)
    };
    use Consistency::{LocalQuorum as LQ, One};
    let agg_insert = |table: &str, bucket: &str| {
        format!(
            "INSERT INTO {table} (household_id, {bucket}, bucket_start, readings, watts_count, \
             watts_min, watts_max, watts_sum, lux_count, lux_min, lux_max, lux_sum) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?"
        )
    };
    let agg_select = |table: &str, bucket: &str| {
        format!(
            "SELECT {AGG_COLUMNS} FROM {table} WHERE household_id = ? AND {bucket} = ? \
             AND bucket_start >= ? AND bucket_start < ?"
        )
    };
    Ok(Statements {
        insert_minute: p(agg_insert("readings_minute", "day"), One).await?,
        insert_hour: p(agg_insert("readings_hour", "month"), One).await?,
        select_minute: p(agg_select("readings_minute", "day"), One).await?,
        select_hour: p(agg_select("readings_hour", "month"), One).await?,
        insert_inc_muni: p(
            "INSERT INTO incidents_by_municipality (municipality_code, day, at_ms, event_id, \
             incident_id, household_id, dong_code, kind, type, stage, payload) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?"
                .into(),
            LQ,
        )
        .await?,
        insert_inc_household: p(
            "INSERT INTO incidents_by_household (household_id, month, at_ms, event_id, payload) \
             VALUES (?, ?, ?, ?, ?) USING TTL ?"
                .into(),
            LQ,
        )
        .await?,
        insert_inc_id: p(
            "INSERT INTO incident_events_by_id (incident_id, at_ms, event_id, payload) \
             VALUES (?, ?, ?, ?) USING TTL ?"
                .into(),
            LQ,
        )
        .await?,
        select_inc_muni_from: p(
            "SELECT at_ms, event_id, dong_code, household_id, kind, payload \
             FROM incidents_by_municipality WHERE municipality_code = ? AND day = ? \
             AND at_ms >= ? AND at_ms < ?"
                .into(),
            LQ,
        )
        .await?,
        select_inc_muni_after: p(
            "SELECT at_ms, event_id, dong_code, household_id, kind, payload \
             FROM incidents_by_municipality WHERE municipality_code = ? AND day = ? \
             AND (at_ms, event_id) > (?, ?) AND (at_ms) < (?)"
                .into(),
            LQ,
        )
        .await?,
        select_inc_household: p(
            "SELECT payload FROM incidents_by_household WHERE household_id = ? AND month = ? \
             AND at_ms >= ? AND at_ms < ?"
                .into(),
            LQ,
        )
        .await?,
        select_inc_id: p(
            "SELECT payload FROM incident_events_by_id WHERE incident_id = ?".into(),
            LQ,
        )
        .await?,
        insert_state: p(
            "INSERT INTO state_changes (household_id, month, at_ms, state, cause) \
             VALUES (?, ?, ?, ?, ?) USING TTL ?"
                .into(),
            LQ,
        )
        .await?,
        select_state: p(
            "SELECT at_ms, state, cause FROM state_changes WHERE household_id = ? AND month = ? \
             AND at_ms >= ? AND at_ms < ?"
                .into(),
            LQ,
        )
        .await?,
        insert_escalation: p(
            "INSERT INTO escalation_log (incident_id, at_ms, entry_id, municipality_code, action, \
             policy_version, step, attempt, tier, channel, message_id, result, detail) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?"
                .into(),
            LQ,
        )
        .await?,
        select_escalation: p(
            "SELECT incident_id, at_ms, entry_id, municipality_code, action, policy_version, \
             step, attempt, tier, channel, message_id, result, detail FROM escalation_log \
             WHERE incident_id = ?"
                .into(),
            LQ,
        )
        .await?,
        insert_audit: p(
            "INSERT INTO audit_log (municipality_code, day, at_ms, audit_id, principal, action, \
             subject, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?"
                .into(),
            LQ,
        )
        .await?,
        select_audit: p(
            "SELECT audit_id, at_ms, principal, action, subject, detail FROM audit_log \
             WHERE municipality_code = ? AND day = ? AND at_ms >= ? AND at_ms < ?"
                .into(),
            LQ,
        )
        .await?,
        insert_chunk: p(
            "INSERT INTO snapshot_chunks (group_id, partition, snapshot_id, chunk, data) \
             VALUES (?, ?, ?, ?, ?)"
                .into(),
            LQ,
        )
        .await?,
        insert_head: p(
            "INSERT INTO snapshot_heads (group_id, partition, snapshot_id, readings_offset, \
             households_offset, incidents_offset, taken_at_ms, chunks, size, checksum) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                .into(),
            LQ,
        )
        .await?,
        select_head: p(
            "SELECT snapshot_id, readings_offset, households_offset, incidents_offset, \
             taken_at_ms, chunks, size, checksum FROM snapshot_heads \
             WHERE group_id = ? AND partition = ?"
                .into(),
            LQ,
        )
        .await?,
        select_chunks: p(
            "SELECT chunk, data FROM snapshot_chunks WHERE group_id = ? AND partition = ? \
             AND snapshot_id = ?"
                .into(),
            LQ,
        )
        .await?,
        delete_chunks: p(
            "DELETE FROM snapshot_chunks WHERE group_id = ? AND partition = ? AND snapshot_id = ?"
                .into(),
            LQ,
        )
        .await?,
    })
}

type HeadRow = (i64, i64, i64, i64, i64, i32, i64, i64);

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_and_ttls() {
        let t = 1_767_193_200_000; // 2025-12-31T15:00Z
        assert_eq!(utc_day(t), 20453);
        assert_eq!(utc_month(t), 2025 * 12 + 11);
        assert_eq!(month_start_ms(utc_month(t)), 1_764_547_200_000);
        assert_eq!(ttl(t, t, DAY_MS), Some(86_400));
        assert_eq!(ttl(t, t - DAY_MS, DAY_MS), None);
    }

    #[test]
    fn migration_files_split_into_statements() {
        let s = statements(MIGRATIONS[0].2);
        assert!(s
            .iter()
            .all(|s| s.starts_with("CREATE TABLE IF NOT EXISTS")));
        assert_eq!(s.len(), 11);
    }

    #[test]
    fn options_validate() {
        assert!(ScyllaOptions::default().validate().is_ok());
        let bad = ScyllaOptions {
            keyspace: "drop table;".into(),
            ..Default::default()
        };
        assert!(bad.validate().is_err());
        let nodes = ScyllaOptions {
            uri: "scylla://a:9042, b:9042".into(),
            ..Default::default()
        };
        assert_eq!(nodes.nodes(), vec!["a:9042", "b:9042"]);
    }
}
