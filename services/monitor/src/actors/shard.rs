//! One partition's shard actor: hosts a [`dolbom_shard::Shard`], processes
//! its records one batch at a time, ticks it, publishes what it emits,
//! snapshots it and commits the offsets the snapshot covers.

use super::incident::{IncidentActor, IncidentArgs, IncidentMsg};
use super::partition::PartitionMsg;
use super::tracker::IncidentTracker;
use super::unacked::Unacked;
use super::{Control, Deps};
use crate::kafka::{self, Rec};
use crate::metrics as m;
use crate::restore::{self, Restored};
use dolbom_domain::convert::{
    event_type_from_wire, kind_from_wire, reason_code_from_wire, stage_from_wire, ts,
};
use dolbom_domain::logsafe::LogSafe;
use dolbom_domain::{IncidentId, Ts};
use dolbom_proto::v1 as pb;
use dolbom_shard::{ClockMode, Output, Rejection, Shard};
use dolbom_snapshots::ShardSnapshot;
use prost::Message as _;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use rdkafka::consumer::CommitMode;
use rdkafka::Offset;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub enum ShardMsg {
    Readings {
        batch: Vec<Rec>,
    },
    /// The ingest loop has positioned the partition: records may come.
    Seeked,
    /// The consumer has read the partition to its end.
    CaughtUp,
    Config {
        batch: Vec<Rec>,
    },
    Tick,
    SnapshotTick,
    /// Snapshot now; reply with the readings offset it covers.
    Snapshot {
        reply: RpcReplyPort<Result<i64, String>>,
    },
    /// An incident actor spawned off the shard's path is running (or failed).
    IncidentStarted {
        id: String,
        actor: Option<ActorRef<IncidentMsg>>,
    },
}

pub(crate) struct ShardArgs {
    pub(crate) partition: i32,
    pub(crate) supervisor: ActorRef<PartitionMsg>,
    pub(crate) deps: Arc<Deps>,
    pub(crate) poisoned: BTreeSet<i64>,
    pub(crate) inflight: Arc<AtomicI64>,
}

pub(crate) struct ShardActor;

pub(crate) struct ShardState {
    partition: i32,
    p_label: String,
    deps: Arc<Deps>,
    shard: Shard,
    /// Next `plug.readings` offset to process.
    next_offset: i64,
    households_offset: i64,
    /// `care.incidents` offset after everything this partition published so far.
    incidents_end: i64,
    /// Records are taken only once the ingest loop has positioned the partition.
    accepting: bool,
    /// Emitted events, in order, until the broker acknowledged them.
    unacked: Unacked,
    incidents: IncidentTracker,
    poisoned: BTreeSet<i64>,
    inflight: Arc<AtomicI64>,
    changelog: Option<tokio::task::JoinHandle<()>>,
    out: Vec<Output>,
    /// The shard's re-timed reading count already added to the metric.
    retimed_seen: u64,
    /// Set from the restore until the partition is read to its end: records
    /// are replayed on the clock they were live on.
    replay: Option<Replay>,
}

/// A shard replaying after its restore.
struct Replay {
    /// The newest send time replayed so far.
    clock: Ts,
    /// When the last batch arrived (real time): a replay that hears nothing
    /// for [`REPLAY_IDLE`] ends, so the stall gate runs on the wall clock.
    heard: std::time::Instant,
}

/// How long a replay may hear nothing before the shard returns to the wall
/// clock (the end of the partition normally ends it first).
const REPLAY_IDLE: std::time::Duration = std::time::Duration::from_secs(5);

impl ShardState {
    /// The replay is over: from now on the shard runs on the wall clock.
    fn end_replay(&mut self, why: &str) {
        if let Some(r) = self.replay.take() {
            tracing::info!(
                partition = self.partition,
                replayed_to = r.clock.millis(),
                why,
                "replay done; on the wall clock"
            );
        }
    }

    /// Lets time pass on the shard's clock: the wall clock, or nothing while
    /// replaying (each replayed record moves the clock itself).
    fn advance(&mut self, now: Ts) {
        if self.replay.is_none() {
            self.shard.advance(now, &mut self.out);
        }
    }
}

fn dead_letter_worthy(r: &Rejection) -> bool {
    matches!(
        r,
        Rejection::Malformed { .. }
            | Rejection::MissingHousehold
            | Rejection::KeyMismatch { .. }
            | Rejection::Config(_)
    )
}

impl ShardState {
    fn dead_letter(&self, topic: &str, rec: &Rec, reason: &str) {
        if let Err(e) = self
            .deps
            .producer
            .dead_letter(topic, self.partition, rec, reason)
        {
            tracing::error!(error = %e, partition = self.partition, offset = rec.offset, "dead-letter publish failed");
        }
        metrics::counter!(m::DEAD_LETTERED, "topic" => topic.to_string(), "reason" => reason.to_string())
            .increment(1);
    }

    /// Applies a batch of `plug.readings` records (at wall time `now`).
    fn readings(&mut self, batch: &[Rec], now: Ts) {
        let topic = self.deps.opts.topics.readings.clone();
        // One span per batch, never per reading: a new trace, sampled at the
        // service's ratio (readings are far too many to trace one by one).
        // (`parent: None`: not a child of ractor's lifelong `Actor` span,
        // whose one sampling decision would otherwise hold for every batch.)
        let span = tracing::info_span!(
            parent: None,
            "plug.readings process",
            otel.kind = "consumer",
            messaging.system = "kafka",
            messaging.operation.type = "process",
            messaging.destination.name = %topic,
            messaging.destination.partition.id = self.partition,
            messaging.batch.message_count = batch.len(),
        );
        let _in = span.enter();
        let fault = self.deps.opts.fault_injection_device.clone();
        let mut accepted = 0u64;
        for rec in batch {
            if rec.offset < self.next_offset {
                continue; // covered by the snapshot
            }
            if self.poisoned.contains(&rec.offset) {
                // Not decoded, but the pipeline is alive.
                self.shard.note_input(now);
                self.dead_letter(&topic, rec, "shard_panic");
                self.next_offset = rec.offset + 1;
                continue;
            }
            self.inflight.store(rec.offset, Ordering::SeqCst);
            let payload = rec.payload.as_deref().unwrap_or_default();
            if !fault.is_empty() {
                if let Ok(r) = pb::PlugReading::decode(payload) {
                    if r.device_id == fault {
                        panic!("fault injection: poisoned reading at offset {}", rec.offset);
                    }
                }
            }
            let sent_at = rec.timestamp_ms.map(Ts);
            let key = rec.key.as_deref();
            let result = match sent_at.filter(|_| self.replay.is_some()) {
                // Replaying after a restore: on the clock the record was live on.
                Some(sent) => {
                    let sent = sent.min(now);
                    if let Some(r) = &mut self.replay {
                        r.clock = r.clock.max(sent);
                    }
                    self.shard
                        .on_reading_bytes_replayed(key, payload, sent, &mut self.out)
                }
                None => self
                    .shard
                    .on_reading_bytes(key, payload, sent_at, now, &mut self.out),
            };
            match result {
                Ok(_) => accepted += 1,
                Err(e) => {
                    metrics::counter!(m::READINGS_REJECTED, "reason" => e.label()).increment(1);
                    if dead_letter_worthy(&e) {
                        tracing::warn!(partition = self.partition, offset = rec.offset, reason = e.label(), error = %LogSafe(&e.to_string()), "reading rejected and dead-lettered");
                        self.dead_letter(&topic, rec, e.label());
                    } else {
                        tracing::debug!(partition = self.partition, offset = rec.offset, reason = e.label(), error = %LogSafe(&e.to_string()), "reading rejected");
                    }
                }
            }
            self.next_offset = rec.offset + 1;
        }
        self.inflight.store(-1, Ordering::SeqCst);
        metrics::counter!(m::READINGS_ACCEPTED).increment(accepted);
        let retimed = self.shard.stats().readings_retimed;
        metrics::counter!(m::READINGS_RETIMED).increment(retimed.saturating_sub(self.retimed_seen));
        self.retimed_seen = retimed;
        // The monitor's clock against Kafka's record timestamps (the
        // broker's clock with LogAppendTime, the producer's with
        // CreateTime): a clock that jumped shows here before it harms.
        if let Some(newest) = batch.iter().filter_map(|r| r.timestamp_ms).max() {
            metrics::gauge!(m::CLOCK_OFFSET_SECONDS, "partition" => self.p_label.clone())
                .set(now.millis().saturating_sub(newest) as f64 / 1000.0);
        }
    }

    /// Applies a batch of `care.households` records, each at the time it was
    /// sent (its Kafka timestamp, at most now): a household starts when its
    /// registration was sent, the same live and in a replay, so its incident
    /// ids do not change across a crash.
    fn configs(&mut self, batch: &[Rec], now: Ts) {
        let topic = self.deps.opts.topics.households.clone();
        for rec in batch {
            if rec.offset < self.households_offset {
                continue;
            }
            // In the registry change's trace when notify sent one.
            let span = tracing::info_span!(
                parent: None,
                "care.households process",
                otel.kind = "consumer",
                messaging.system = "kafka",
                messaging.operation.type = "process",
                messaging.destination.name = %topic,
                messaging.destination.partition.id = self.partition,
                dolbom.household_id = %String::from_utf8_lossy(rec.key.as_deref().unwrap_or_default()),
            );
            if let Some(tp) = &rec.traceparent {
                dolbom_telemetry::stored::continue_trace(&span, tp);
            }
            let _in = span.enter();
            let at = rec.timestamp_ms.map_or(now, |t| Ts(t).min(now));
            if let Err(e) = self.shard.on_config_bytes(
                rec.key.as_deref().unwrap_or_default(),
                rec.payload.as_deref(),
                at,
                &mut self.out,
            ) {
                metrics::counter!(m::CONFIGS_REJECTED, "reason" => e.label()).increment(1);
                tracing::warn!(partition = self.partition, offset = rec.offset, reason = e.label(), error = %LogSafe(&e.to_string()), "household config rejected");
                if dead_letter_worthy(&e) {
                    self.dead_letter(&topic, rec, e.label());
                }
            }
            self.households_offset = rec.offset + 1;
        }
    }

    /// Publishes what the shard emitted and follows open incidents.
    fn publish(&mut self) {
        let outputs: Vec<Output> = self.out.drain(..).collect();
        for o in outputs {
            match o {
                Output::Event(ev) => {
                    let kind = kind_from_wire(ev.kind).map_or("?", |k| k.name());
                    let ty = event_type_from_wire(ev.r#type, ev.suppression_cause)
                        .map_or("?", |t| t.name());
                    let stage = stage_from_wire(ev.stage).map_or("none", |s| s.name());
                    // Which rule raised it: ROUTINE_BREAK for the learned routine.
                    let reason = ev
                        .reason
                        .as_ref()
                        .and_then(|r| reason_code_from_wire(r.code))
                        .map_or("none", dolbom_domain::Named::name);
                    metrics::counter!(m::INCIDENT_EVENTS, "kind" => kind, "type" => ty, "stage" => stage, "reason" => reason)
                        .increment(1);
                    if let Some(due) = &ev.due_at {
                        // On the shard's clock: the wall clock in production,
                        // the newest event time when replaying on event time
                        // (where the wall clock says nothing about lateness).
                        let now = match self.deps.opts.shard.clock {
                            ClockMode::Wall => Ts::now(),
                            ClockMode::Event => self.shard.watermark().unwrap_or_else(Ts::now),
                        };
                        let lag = now.since(ts(due));
                        metrics::histogram!(m::EMIT_DELAY_SECONDS)
                            .record(lag.max(0) as f64 / 1000.0);
                    }
                    self.incidents.follow(&ev);
                    self.unacked.push(*ev);
                }
                Output::AbsenceEndedEarly { household, .. } => {
                    metrics::counter!(m::ABSENCES_ENDED_EARLY).increment(1);
                    tracing::info!(household = %household, "absence ended early by activity");
                }
            }
        }
        self.unacked.send(&self.deps);
    }

    /// Snapshots the shard once everything it emitted is acknowledged;
    /// returns the readings offset the snapshot covers.
    async fn snapshot(&mut self) -> Result<i64, String> {
        let started = Instant::now();
        // Everything emitted so far must be acknowledged before the snapshot
        // says it happened.
        if let Some(end) = self.unacked.acknowledged(&self.deps).await? {
            self.incidents_end = self.incidents_end.max(end);
        }
        let p = self.partition;
        let producer = self.deps.producer.clone();
        let readings_end = tokio::task::spawn_blocking(move || producer.readings_end(p))
            .await
            .map_err(|e| e.to_string())?;
        if let Ok(end) = readings_end {
            metrics::gauge!(m::CONSUMER_LAG, "partition" => self.p_label.clone())
                .set((end - self.next_offset).max(0) as f64);
        }
        let snap = ShardSnapshot {
            group: self.deps.opts.group_id.clone(),
            partition: p,
            readings_offset: self.next_offset,
            households_offset: self.households_offset,
            incidents_offset: self.incidents_end,
            taken_at_ms: Ts::now().millis(),
            state: self.shard.snapshot(),
        };
        let bytes = snap.state.len();
        let store = self.deps.store.clone();
        tokio::task::spawn_blocking(move || store.put(&snap))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        metrics::histogram!(m::SNAPSHOT_SECONDS).record(started.elapsed().as_secs_f64());
        metrics::gauge!(m::SNAPSHOT_BYTES, "partition" => self.p_label.clone()).set(bytes as f64);
        Ok(self.next_offset)
    }

    fn gauges(&self) {
        let p = || self.p_label.clone();
        metrics::gauge!(m::HOUSEHOLDS, "partition" => p()).set(self.shard.households() as f64);
        metrics::gauge!(m::PENDING_DEADLINES, "partition" => p())
            .set(self.shard.pending_deadlines() as f64);
        metrics::gauge!(m::STALLED, "partition" => p()).set(if self.shard.is_stalled() {
            1.0
        } else {
            0.0
        });
        if let Some(w) = self.shard.watermark() {
            metrics::gauge!(m::WATERMARK, "partition" => p()).set(w.millis() as f64 / 1000.0);
        }
    }
}

impl ShardActor {
    /// A periodic snapshot, then a commit of what it covers. A snapshot
    /// store outage does not stop the shard: it keeps processing, commits
    /// nothing past the last stored snapshot, tells SRE, and tries again at
    /// the next tick.
    async fn snapshot_and_commit(st: &mut ShardState) {
        let off = match st.snapshot().await {
            Ok(off) => {
                metrics::gauge!(m::SNAPSHOT_STORE_UP).set(1.0);
                off
            }
            Err(e) => {
                metrics::gauge!(m::SNAPSHOT_STORE_UP).set(0.0);
                metrics::counter!(m::SNAPSHOT_FAILURES).increment(1);
                tracing::warn!(partition = st.partition, error = %e, "snapshot failed; offsets stay at the last stored snapshot, retrying next interval");
                return;
            }
        };
        if let Err(e) = st
            .deps
            .committer
            .commit(&[(st.partition, off)], CommitMode::Async)
        {
            tracing::warn!(partition = st.partition, error = %e, "offset commit failed; will retry with the next snapshot");
        }
        st.gauges();
    }
}

impl Actor for ShardActor {
    type Msg = ShardMsg;
    type State = ShardState;
    type Arguments = ShardArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<ShardMsg>,
        args: ShardArgs,
    ) -> Result<ShardState, ActorProcessingErr> {
        let Restored {
            mut shard,
            readings_offset,
            households_offset,
            incidents_end,
            poisoned: kept,
            ..
        } = restore::restore(&args.deps.sources(), args.partition)
            .await
            .inspect_err(|e| {
                tracing::error!(partition = args.partition, error = %e, "restore failed");
            })?;
        shard.share_areas(args.deps.board.clone());
        let (alive, tell) = (myself.clone(), myself.clone());
        let changelog = kafka::follow_changelog(
            &args.deps.opts,
            args.partition,
            households_offset,
            // A shard that failed never runs `post_stop`: noticed here.
            move || {
                !matches!(
                    alive.get_status(),
                    ractor::ActorStatus::Stopped | ractor::ActorStatus::Stopping
                )
            },
            move |batch| tell.cast(ShardMsg::Config { batch }).is_ok(),
        )?;
        let mut st = ShardState {
            partition: args.partition,
            p_label: args.partition.to_string(),
            deps: args.deps.clone(),
            shard,
            next_offset: readings_offset,
            households_offset,
            incidents_end,
            accepting: false,
            unacked: Unacked::new(args.partition),
            incidents: IncidentTracker::default(),
            // What this supervisor saw fail, and what the store kept.
            poisoned: args.poisoned.union(&kept).copied().collect(),
            inflight: args.inflight,
            changelog: Some(changelog),
            out: Vec::new(),
            retimed_seen: 0,
            // Only the wall clock needs replaying on the records' own
            // clock; on the event clock every record carries its time.
            replay: (args.deps.opts.shard.clock == ClockMode::Wall).then(|| Replay {
                clock: Ts::MIN,
                heard: std::time::Instant::now(),
            }),
        };
        // Open incidents restored from the snapshot get their actors back.
        let open: Vec<IncidentArgs> = st
            .shard
            .open_incidents()
            .map(|(h, k, s, t)| IncidentArgs {
                id: IncidentId::new(k, h.as_str(), t).to_string(),
                household: h.to_string(),
                stage: s,
            })
            .collect();
        for a in open {
            let id = a.id.clone();
            let (actor, _) = Actor::spawn_linked(None, IncidentActor, a, myself.get_cell()).await?;
            st.incidents.running(id, actor);
        }
        st.gauges();
        args.deps
            .control
            .send(Control::Ready {
                partition: args.partition,
                offset: Offset::Offset(readings_offset),
                supervisor: args.supervisor.clone(),
            })
            .map_err(|_| "ingest loop has stopped")?;
        myself.send_interval(Duration::from_millis(args.deps.opts.tick_ms), || {
            ShardMsg::Tick
        });
        myself.send_interval(
            Duration::from_secs(args.deps.opts.snapshot_interval_secs),
            || ShardMsg::SnapshotTick,
        );
        Ok(st)
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<ShardMsg>,
        st: &mut ShardState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(h) = st.changelog.take() {
            h.abort();
        }
        // Its next host (here or elsewhere) shares its progress from now on.
        st.deps.board.release(st.partition);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<ShardMsg>,
        msg: ShardMsg,
        st: &mut ShardState,
    ) -> Result<(), ActorProcessingErr> {
        let now = Ts::now();
        match msg {
            ShardMsg::Seeked => st.accepting = true,
            ShardMsg::CaughtUp => {
                if st.accepting {
                    st.end_replay("read to the partition's end");
                    st.shard.set_caught_up(true);
                    st.advance(now);
                    st.publish();
                }
            }
            ShardMsg::Readings { batch } => {
                if !st.accepting {
                    metrics::counter!(m::RECORDS_DISCARDED_BEFORE_SEEK)
                        .increment(batch.len() as u64);
                    return Ok(());
                }
                // More was there to read: caught up again only when the
                // consumer says so.
                st.shard.set_caught_up(false);
                if let Some(r) = &mut st.replay {
                    r.heard = std::time::Instant::now();
                }
                st.readings(&batch, now);
                st.advance(now);
                st.publish();
            }
            ShardMsg::Config { batch } => {
                st.configs(&batch, now);
                st.advance(now);
                st.publish();
                st.gauges();
            }
            ShardMsg::Tick => {
                st.incidents.start_queued(&myself);
                if st
                    .replay
                    .as_ref()
                    .is_some_and(|r| st.accepting && r.heard.elapsed() > REPLAY_IDLE)
                {
                    st.end_replay("nothing more to replay");
                }
                if st.accepting {
                    st.advance(now);
                }
                st.publish();
            }
            ShardMsg::SnapshotTick => {
                if st.accepting {
                    Self::snapshot_and_commit(st).await;
                }
            }
            ShardMsg::IncidentStarted { id, actor } => st.incidents.started(id, actor),
            ShardMsg::Snapshot { reply } => {
                let r = if st.accepting {
                    st.snapshot().await
                } else {
                    Err("shard was not yet positioned; nothing to commit".into())
                };
                let _ = reply.send(r);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<ShardMsg>,
        ev: SupervisionEvent,
        _st: &mut ShardState,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(who, err) = ev {
            tracing::warn!(actor = ?who.get_id(), error = %err, "incident actor failed");
        }
        Ok(())
    }
}
