//! How a shard comes back: its snapshot, the event ids its partition of
//! `care.incidents` already carries since (not published again while the
//! shard replays), and its `care.households` changelog to the end — all
//! before it reads a single reading.

use crate::error::MonitorError;
use crate::kafka::{self, GroupConsumer, KAFKA_TIMEOUT};
use crate::metrics as m;
use crate::options::MonitorOptions;
use dolbom_calendar::Router;
use dolbom_domain::Ts;
use dolbom_proto::v1 as pb;
use dolbom_shard::Shard;
use dolbom_snapshots::SnapshotStore;
use prost::Message as _;
use rdkafka::consumer::Consumer;
use rdkafka::Offset;
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Instant;

/// A restored shard and where its inputs continue.
pub(crate) struct Restored {
    pub(crate) shard: Shard,
    /// Next `plug.readings` offset to process.
    pub(crate) readings_offset: i64,
    /// Next `care.households` offset to apply.
    pub(crate) households_offset: i64,
    /// `care.incidents` end offset after what the partition published.
    pub(crate) incidents_end: i64,
    pub(crate) from_snapshot: bool,
    /// Offsets whose record made a shard of this partition fail (here or in
    /// an earlier process): dead-lettered, not processed.
    pub(crate) poisoned: BTreeSet<i64>,
}

/// What a restore reads from.
pub(crate) struct Sources {
    pub(crate) opts: MonitorOptions,
    pub(crate) router: Router,
    pub(crate) store: Arc<dyn SnapshotStore>,
    pub(crate) consumer: Arc<GroupConsumer>,
}

/// Restores partition `p` (blocking reads on a blocking thread).
pub(crate) async fn restore(src: &Sources, p: i32) -> Result<Restored, MonitorError> {
    let started = Instant::now();
    let opts = src.opts.clone();
    let router = src.router.clone();
    let store = src.store.clone();
    let consumer = src.consumer.clone();
    let r = tokio::task::spawn_blocking(move || -> Result<Restored, MonitorError> {
        let snap = store.get(&opts.group_id, p)?;
        let poisoned = store.get_poisoned(&opts.group_id, p)?;
        let now = Ts::now();
        // Event ids already published on this partition since the snapshot
        // (or ever, without one) are not published again.
        let mut published = HashSet::new();
        let from = snap
            .as_ref()
            .map_or(Offset::Beginning, |s| Offset::Offset(s.incidents_offset));
        let incidents_end =
            kafka::read_to_end(&opts, &opts.topics.incidents, p, from, |_, payload, _| {
                if let Some(ev) = payload.and_then(|b| pb::IncidentEvent::decode(b).ok()) {
                    published.insert(ev.event_id);
                }
            })?;
        let (mut shard, h_from, readings_offset) = match &snap {
            Some(s) => {
                let shard = Shard::restore(&s.state, opts.shard.clone(), router, now, published)?;
                (shard, Offset::Offset(s.households_offset), Some(s.readings_offset))
            }
            None => {
                let mut shard = Shard::new(p, opts.shard.clone(), router, now);
                shard.expect_replay(published);
                let committed = kafka::committed(&consumer, &opts.topics.readings, p)?;
                // Offsets are committed only after a durable snapshot: a
                // committed offset without one means the state was lost.
                if let Some(c) = committed.filter(|_| !opts.allow_missing_snapshot) {
                    metrics::counter!(m::MISSING_SNAPSHOTS).increment(1);
                    return Err(MonitorError::MissingSnapshot {
                        partition: p,
                        committed: c,
                    });
                }
                (shard, Offset::Beginning, committed)
            }
        };
        // Catch up with the configuration changelog before any reading. A
        // household registered since the snapshot starts when its record was
        // sent (not at this restore), as it did live: its quiet clock is not
        // pushed back by a crash.
        let mut out = Vec::new();
        let households_offset =
            kafka::read_to_end(&opts, &opts.topics.households, p, h_from, |key, payload, ts| {
                let at = ts.map_or(now, |t| Ts(t).min(now));
                if let Err(e) =
                    shard.on_config_bytes(key.unwrap_or_default(), payload, at, &mut out)
                {
                    metrics::counter!(m::CONFIGS_REJECTED, "reason" => e.label()).increment(1);
                    tracing::warn!(partition = p, reason = e.label(), error = %dolbom_domain::logsafe::LogSafe(&e.to_string()), "household config rejected during restore");
                }
            })?;
        // Events from configs replayed here are re-derived later anyway.
        drop(out);
        let readings_offset = match readings_offset {
            Some(o) => o,
            None => {
                consumer
                    .fetch_watermarks(&opts.topics.readings, p, KAFKA_TIMEOUT)?
                    .0
            }
        };
        Ok(Restored {
            shard,
            readings_offset,
            households_offset,
            incidents_end,
            from_snapshot: snap.is_some(),
            poisoned,
        })
    })
    .await
    .map_err(|e| MonitorError::Actors(format!("restore task: {e}")))??;
    let secs = started.elapsed().as_secs_f64();
    metrics::histogram!(m::RESTORE_SECONDS).record(secs);
    tracing::info!(
        partition = p,
        households = r.shard.households(),
        from_snapshot = r.from_snapshot,
        readings_offset = r.readings_offset,
        replay_ids = r.shard.replay_pending(),
        poisoned = r.poisoned.len(),
        seconds = secs,
        "shard restored"
    );
    Ok(r)
}
