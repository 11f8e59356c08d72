//! The supervision tree: root → one supervisor per assigned partition →
//! that partition's shard actor → one actor per open incident.
//!
//! - [`Root`] turns rebalances into partition supervisors and collects the
//!   offsets their shards snapshotted when partitions are revoked.
//! - [`PartitionSupervisor`] forwards record batches to its shard. When the
//!   shard panics (a poisoned message), it remembers the offset that was in
//!   flight, restarts the shard (which restores from its last snapshot and
//!   replays from there) and the new shard dead-letters that one record
//!   instead of processing it. No other partition is touched.
//! - [`ShardActor`] hosts a [`dolbom_shard::Shard`]: restores it (snapshot,
//!   `care.incidents` tail for already-published ids, `care.households`
//!   changelog), asks the ingest loop for its position, then processes
//!   records, ticks and snapshots. Events go out through the idempotent
//!   producer to the same partition of `care.incidents`; a snapshot is
//!   written only after every event before it was acknowledged, and the
//!   readings offset is committed only after the snapshot is durable.
//! - [`IncidentActor`] follows one open incident through its stages until it
//!   closes (its span and the open-incident gauge are its job).

use crate::kafka::{self, GroupConsumer, KAFKA_TIMEOUT};
use crate::metrics as m;
use crate::options::MonitorOptions;
use crate::{wall_now, Control, Rec, Routes};
use dolbom_calendar::Router;
use dolbom_proto::v1 as pb;
use dolbom_shard::{Output, Rejection, Shard};
use dolbom_snapshots::{ShardSnapshot, SnapshotStore};
use futures::FutureExt;
use prost::Message as _;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer as _};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// What every actor of one monitor shares.
pub(crate) struct Deps {
    pub opts: MonitorOptions,
    pub router: Router,
    pub producer: FutureProducer,
    pub consumer: Arc<GroupConsumer>,
    pub store: Arc<dyn SnapshotStore>,
    pub control: mpsc::UnboundedSender<Control>,
    pub routes: Routes,
}

// ── root ────────────────────────────────────────────────────────────────

pub enum RootMsg {
    Assign(Vec<i32>),
    /// Snapshot and stop these partitions; reply with the offsets to commit.
    Revoke(Vec<i32>, RpcReplyPort<Vec<(i32, i64)>>),
}

pub(crate) struct Root;

pub(crate) struct RootState {
    deps: Arc<Deps>,
    partitions: HashMap<i32, ActorRef<PartitionMsg>>,
}

impl Actor for Root {
    type Msg = RootMsg;
    type State = RootState;
    type Arguments = Arc<Deps>;

    async fn pre_start(
        &self,
        _myself: ActorRef<RootMsg>,
        deps: Arc<Deps>,
    ) -> Result<RootState, ActorProcessingErr> {
        Ok(RootState {
            deps,
            partitions: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<RootMsg>,
        msg: RootMsg,
        st: &mut RootState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RootMsg::Assign(ps) => {
                // Partitions restore in parallel.
                let fresh: Vec<i32> = ps
                    .into_iter()
                    .filter(|p| !st.partitions.contains_key(p))
                    .collect();
                let spawns = fresh.iter().map(|&p| {
                    Actor::spawn_linked(
                        None,
                        PartitionSupervisor,
                        (p, st.deps.clone()),
                        myself.get_cell(),
                    )
                });
                for (p, r) in fresh.iter().zip(futures::future::join_all(spawns).await) {
                    match r {
                        Ok((sup, _)) => {
                            st.partitions.insert(*p, sup);
                        }
                        Err(e) => {
                            tracing::error!(partition = p, error = %e, "partition failed to start; retrying");
                            let p = *p;
                            myself.send_after(Duration::from_secs(1), move || {
                                RootMsg::Assign(vec![p])
                            });
                        }
                    }
                }
            }
            RootMsg::Revoke(ps, reply) => {
                let mut offsets = Vec::new();
                for p in ps {
                    st.deps.routes.write().expect("routes").remove(&p);
                    let Some(sup) = st.partitions.remove(&p) else {
                        continue;
                    };
                    match ractor::call_t!(sup, PartitionMsg::Stop, 25_000) {
                        Ok(Some(off)) => offsets.push((p, off)),
                        Ok(None) => {}
                        Err(e) => {
                            tracing::error!(partition = p, error = %e, "partition did not stop cleanly")
                        }
                    }
                    sup.stop(None);
                }
                let _ = reply.send(offsets);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<RootMsg>,
        ev: SupervisionEvent,
        _st: &mut RootState,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(who, err) = ev {
            tracing::error!(actor = ?who.get_id(), error = %err, "partition supervisor failed");
        }
        Ok(())
    }
}

// ── partition supervisor ────────────────────────────────────────────────

pub enum PartitionMsg {
    Readings(Vec<Rec>),
    /// The ingest loop has positioned the partition where the shard asked.
    Seeked,
    /// Snapshot, then stop the shard; reply with the readings offset covered.
    Stop(RpcReplyPort<Option<i64>>),
}

pub(crate) struct PartitionSupervisor;

pub(crate) struct SupervisorState {
    partition: i32,
    deps: Arc<Deps>,
    shard: Option<ActorRef<ShardMsg>>,
    inflight: Arc<AtomicI64>,
    poisoned: BTreeSet<i64>,
    restarts: u32,
}

impl PartitionSupervisor {
    async fn start_shard(
        myself: &ActorRef<PartitionMsg>,
        st: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let args = ShardArgs {
            partition: st.partition,
            supervisor: myself.clone(),
            deps: st.deps.clone(),
            poisoned: st.poisoned.clone(),
            inflight: st.inflight.clone(),
        };
        let (shard, _) = Actor::spawn_linked(None, ShardActor, args, myself.get_cell()).await?;
        st.shard = Some(shard);
        Ok(())
    }
}

impl Actor for PartitionSupervisor {
    type Msg = PartitionMsg;
    type State = SupervisorState;
    type Arguments = (i32, Arc<Deps>);

    async fn pre_start(
        &self,
        myself: ActorRef<PartitionMsg>,
        (partition, deps): (i32, Arc<Deps>),
    ) -> Result<SupervisorState, ActorProcessingErr> {
        let mut st = SupervisorState {
            partition,
            deps,
            shard: None,
            inflight: Arc::new(AtomicI64::new(-1)),
            poisoned: BTreeSet::new(),
            restarts: 0,
        };
        Self::start_shard(&myself, &mut st).await?;
        Ok(st)
    }

    async fn handle(
        &self,
        _myself: ActorRef<PartitionMsg>,
        msg: PartitionMsg,
        st: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            PartitionMsg::Readings(batch) => {
                // While a shard restarts, records are dropped: it replays them.
                if let Some(s) = &st.shard {
                    let _ = s.cast(ShardMsg::Readings(batch));
                }
            }
            PartitionMsg::Seeked => {
                if let Some(s) = &st.shard {
                    let _ = s.cast(ShardMsg::Seeked);
                }
            }
            PartitionMsg::Stop(reply) => {
                let off = match st.shard.take() {
                    Some(s) => {
                        let r = ractor::call_t!(s, ShardMsg::Snapshot, 20_000);
                        s.stop_children(None);
                        s.stop(None);
                        match r {
                            Ok(Ok(off)) => Some(off),
                            Ok(Err(e)) => {
                                tracing::error!(partition = st.partition, error = %e, "final snapshot failed");
                                None
                            }
                            Err(e) => {
                                tracing::error!(partition = st.partition, error = %e, "shard did not answer");
                                None
                            }
                        }
                    }
                    None => None,
                };
                let _ = reply.send(off);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<PartitionMsg>,
        ev: SupervisionEvent,
        st: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(who, err) = ev {
            let is_shard = st
                .shard
                .as_ref()
                .is_some_and(|s| s.get_id() == who.get_id());
            if !is_shard {
                return Ok(());
            }
            who.stop_children(None);
            st.shard = None;
            st.restarts += 1;
            let offset = st.inflight.load(Ordering::SeqCst);
            tracing::error!(
                partition = st.partition,
                offset,
                restarts = st.restarts,
                error = %err,
                "shard failed; restarting from its last snapshot and dead-lettering the record in flight"
            );
            metrics::counter!(m::SHARD_RESTARTS, "partition" => st.partition.to_string())
                .increment(1);
            if offset >= 0 {
                st.poisoned.insert(offset);
            }
            if st.restarts > 1 {
                tokio::time::sleep(Duration::from_millis(200 * st.restarts.min(25) as u64)).await;
            }
            Self::start_shard(&myself, st).await?;
        }
        Ok(())
    }
}

// ── shard ───────────────────────────────────────────────────────────────

pub enum ShardMsg {
    Readings(Vec<Rec>),
    Seeked,
    Config(Vec<Rec>),
    Tick,
    SnapshotTick,
    Snapshot(RpcReplyPort<Result<i64, String>>),
    /// An incident actor spawned off the shard's path is running (or failed).
    IncidentStarted(String, Option<ActorRef<IncidentMsg>>),
}

/// Incident actors started per shard tick (see `spawn_incident_actors`).
const INCIDENT_ACTOR_SPAWNS_PER_TICK: usize = 256;

/// An open incident's actor, or the events waiting for it to start.
pub(crate) enum Tracked {
    Starting(Vec<(i32, i32)>),
    Running(ActorRef<IncidentMsg>),
}

pub(crate) struct ShardArgs {
    partition: i32,
    supervisor: ActorRef<PartitionMsg>,
    deps: Arc<Deps>,
    poisoned: BTreeSet<i64>,
    inflight: Arc<AtomicI64>,
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
    deliveries: Vec<DeliveryFuture>,
    incidents: HashMap<String, Tracked>,
    /// Incident actors waiting to be started (incident id, household, stage).
    to_spawn: std::collections::VecDeque<(String, String, i32)>,
    poisoned: BTreeSet<i64>,
    inflight: Arc<AtomicI64>,
    changelog: Option<tokio::task::JoinHandle<()>>,
    out: Vec<Output>,
}

fn dead_letter(deps: &Deps, topic: &str, partition: i32, offset: i64, rec: &Rec, reason: &str) {
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: "dolbom-source",
            value: Some(&format!("{topic}/{partition}@{offset}")),
        })
        .insert(Header {
            key: "dolbom-reason",
            value: Some(reason),
        });
    let mut record: FutureRecord<'_, [u8], [u8]> =
        FutureRecord::to(&deps.opts.topics.dead_letter).headers(headers);
    if let Some(k) = &rec.key {
        record = record.key(k.as_slice());
    }
    if let Some(p) = &rec.payload {
        record = record.payload(p.as_slice());
    }
    if let Err((e, _)) = deps.producer.send_result(record) {
        tracing::error!(error = %e, partition, offset, "dead-letter publish failed");
    }
    metrics::counter!(m::DEAD_LETTERED, "topic" => topic.to_string(), "reason" => reason.to_string())
        .increment(1);
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

impl ShardActor {
    async fn restore(args: &ShardArgs) -> Result<(Shard, i64, i64, i64), ActorProcessingErr> {
        let started = Instant::now();
        let deps = args.deps.clone();
        let p = args.partition;
        let opts = deps.opts.clone();
        let router = deps.router.clone();
        let store = deps.store.clone();
        let consumer = deps.consumer.clone();
        let (shard, households_offset, seek, restored, incidents_end) = tokio::task::spawn_blocking(
            move || -> Result<(Shard, i64, Offset, bool, i64), crate::MonitorError> {
                let snap = store.get(&opts.group_id, p)?;
                let now = wall_now();
                // Event ids already published on this partition since the
                // snapshot (or ever, without one) are not published again.
                let mut published = HashSet::new();
                let from = snap
                    .as_ref()
                    .map_or(Offset::Beginning, |s| Offset::Offset(s.incidents_offset));
                let incidents_end = kafka::read_to_end(
                    &opts,
                    "restore",
                    &opts.topics.incidents,
                    p,
                    from,
                    |_, payload, _| {
                        if let Some(ev) = payload.and_then(|b| pb::IncidentEvent::decode(b).ok()) {
                            published.insert(ev.event_id);
                        }
                    },
                )?;
                let (mut shard, h_from, seek) = match &snap {
                    Some(s) => {
                        let shard = Shard::restore(&s.state, opts.shard.clone(), router, now, published)?;
                        (shard, Offset::Offset(s.households_offset), Offset::Offset(s.readings_offset))
                    }
                    None => {
                        let mut shard = Shard::new(p, opts.shard.clone(), router, now);
                        shard.expect_replay(published);
                        let seek = match kafka::committed(&consumer, &opts.topics.readings, p)? {
                            Some(o) => Offset::Offset(o),
                            None => Offset::Beginning,
                        };
                        (shard, Offset::Beginning, seek)
                    }
                };
                // Catch up with the configuration changelog before any reading.
                let mut out = Vec::new();
                let h_end = kafka::read_to_end(
                    &opts,
                    "restore",
                    &opts.topics.households,
                    p,
                    h_from,
                    |key, payload, _| {
                        if let Err(e) =
                            shard.on_config_bytes(key.unwrap_or_default(), payload, now, &mut out)
                        {
                            metrics::counter!(m::CONFIGS_REJECTED, "reason" => e.label()).increment(1);
                            tracing::warn!(partition = p, reason = e.label(), error = %e, "household config rejected during restore");
                        }
                    },
                )?;
                // Events from configs replayed here are re-derived later anyway.
                drop(out);
                Ok((shard, h_end, seek, snap.is_some(), incidents_end))
            },
        )
        .await??;
        let seek_offset = match seek {
            Offset::Offset(o) => o,
            _ => {
                let c = args.deps.consumer.clone();
                let topic = args.deps.opts.topics.readings.clone();
                tokio::task::spawn_blocking(move || c.fetch_watermarks(&topic, p, KAFKA_TIMEOUT))
                    .await??
                    .0
            }
        };
        let secs = started.elapsed().as_secs_f64();
        metrics::histogram!(m::RESTORE_SECONDS).record(secs);
        tracing::info!(
            partition = p,
            households = shard.households(),
            from_snapshot = restored,
            readings_offset = seek_offset,
            replay_ids = shard.replay_pending(),
            seconds = secs,
            "shard restored"
        );
        Ok((shard, seek_offset, households_offset, incidents_end))
    }

    fn follow_changelog(
        myself: ActorRef<ShardMsg>,
        deps: &Deps,
        partition: i32,
        from: i64,
    ) -> Result<tokio::task::JoinHandle<()>, ActorProcessingErr> {
        let consumer: rdkafka::consumer::StreamConsumer =
            kafka::plain_consumer(&deps.opts, "changelog")?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(
            &deps.opts.topics.households,
            partition,
            Offset::Offset(from),
        )?;
        consumer.assign(&tpl)?;
        Ok(tokio::spawn(async move {
            loop {
                // A shard that failed never runs `post_stop`: notice it here.
                let next = tokio::select! {
                    r = consumer.recv() => Some(r),
                    _ = tokio::time::sleep(Duration::from_secs(1)) => None,
                };
                let Some(next) = next else {
                    if matches!(
                        myself.get_status(),
                        ractor::ActorStatus::Stopped | ractor::ActorStatus::Stopping
                    ) {
                        break;
                    }
                    continue;
                };
                let first = match next {
                    Ok(m) => Rec::from_message(&m),
                    Err(e) => {
                        tracing::warn!(partition, error = %e, "changelog read error");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                };
                let mut batch = vec![first];
                while batch.len() < 512 {
                    match consumer.recv().now_or_never() {
                        Some(Ok(m)) => batch.push(Rec::from_message(&m)),
                        _ => break,
                    }
                }
                if myself.cast(ShardMsg::Config(batch)).is_err() {
                    break;
                }
            }
        }))
    }

    fn publish(st: &mut ShardState) {
        let outputs: Vec<Output> = st.out.drain(..).collect();
        for o in outputs {
            match o {
                Output::Event(ev) => {
                    let kind = pb::IncidentKind::try_from(ev.kind)
                        .map(|k| k.as_str_name())
                        .unwrap_or("?");
                    let ty = pb::IncidentEventType::try_from(ev.r#type)
                        .map(|k| k.as_str_name())
                        .unwrap_or("?");
                    metrics::counter!(m::INCIDENT_EVENTS, "kind" => kind, "type" => ty)
                        .increment(1);
                    if let Some(due) = &ev.due_at {
                        let lag = wall_now().since(dolbom_domain::convert::ts(due));
                        metrics::histogram!(m::EMIT_DELAY_SECONDS)
                            .record(lag.max(0) as f64 / 1000.0);
                    }
                    let key = if ev.household_id.is_empty() {
                        ev.incident_id.clone()
                    } else {
                        ev.household_id.clone()
                    };
                    let payload = ev.encode_to_vec();
                    let topic = st.deps.opts.topics.incidents.clone();
                    loop {
                        let record = FutureRecord::to(&topic)
                            .partition(st.partition)
                            .key(key.as_str())
                            .payload(&payload);
                        match st.deps.producer.send_result(record) {
                            Ok(f) => {
                                st.deliveries.push(f);
                                break;
                            }
                            Err((e, _)) => {
                                tracing::warn!(error = %e, "producer queue full; waiting");
                                st.deps.producer.poll(Duration::from_millis(50));
                            }
                        }
                    }
                    Self::track_incident(st, &ev);
                }
                Output::AbsenceEndedEarly { household, .. } => {
                    metrics::counter!(m::ABSENCES_ENDED_EARLY).increment(1);
                    tracing::info!(household = %household, "absence ended early by activity");
                }
            }
        }
    }

    /// Keeps one actor per open incident. Actors are started off the shard's
    /// path (a burst of openings must not wait for actor start-up); events
    /// that arrive before an actor is running are buffered for it.
    fn track_incident(st: &mut ShardState, ev: &pb::IncidentEvent) {
        let closing = ev.r#type == pb::IncidentEventType::Recovered as i32
            || ev.r#type == pb::IncidentEventType::Suppressed as i32;
        match st.incidents.get_mut(&ev.incident_id) {
            Some(Tracked::Running(a)) => {
                let _ = a.cast(IncidentMsg::Event(ev.r#type, ev.stage));
                if closing {
                    st.incidents.remove(&ev.incident_id);
                }
            }
            Some(Tracked::Starting(buffered)) => buffered.push((ev.r#type, ev.stage)),
            None if closing => {}
            None => {
                st.incidents
                    .insert(ev.incident_id.clone(), Tracked::Starting(Vec::new()));
                st.to_spawn
                    .push_back((ev.incident_id.clone(), ev.household_id.clone(), ev.stage));
            }
        }
    }

    /// Starts queued incident actors, a bounded number per tick: a burst of
    /// openings (a mass of deadlines due at once) is published first and its
    /// actors come up over the following ticks instead of competing with it.
    fn spawn_incident_actors(st: &mut ShardState, myself: &ActorRef<ShardMsg>) {
        for _ in 0..INCIDENT_ACTOR_SPAWNS_PER_TICK {
            let Some(args) = st.to_spawn.pop_front() else {
                break;
            };
            if !matches!(st.incidents.get(&args.0), Some(Tracked::Starting(_))) {
                continue;
            }
            let cell = myself.get_cell();
            let me = myself.clone();
            tokio::spawn(async move {
                let id = args.0.clone();
                let started = Actor::spawn_linked(None, IncidentActor, args, cell).await;
                if let Err(e) = &started {
                    tracing::warn!(incident = %id, error = %e, "incident actor did not start");
                }
                let _ = me.cast(ShardMsg::IncidentStarted(id, started.ok().map(|s| s.0)));
            });
        }
    }

    fn incident_started(st: &mut ShardState, id: String, actor: Option<ActorRef<IncidentMsg>>) {
        let Some(Tracked::Starting(buffered)) = st.incidents.remove(&id) else {
            return;
        };
        let Some(a) = actor else { return };
        let mut closed = false;
        for (ty, stage) in buffered {
            let _ = a.cast(IncidentMsg::Event(ty, stage));
            closed |= ty == pb::IncidentEventType::Recovered as i32
                || ty == pb::IncidentEventType::Suppressed as i32;
        }
        if !closed {
            st.incidents.insert(id, Tracked::Running(a));
        }
    }

    async fn snapshot(st: &mut ShardState) -> Result<i64, String> {
        let started = Instant::now();
        // Everything emitted so far must be acknowledged before the snapshot
        // says it happened.
        for f in st.deliveries.drain(..) {
            match f.await {
                Ok(Ok(d)) => st.incidents_end = st.incidents_end.max(d.offset + 1),
                Ok(Err((e, _))) => return Err(format!("incident event not delivered: {e}")),
                Err(_) => return Err("producer dropped a delivery".into()),
            }
        }
        let p = st.partition;
        // Lag from the producer's client: the group consumer may be inside a
        // rebalance callback waiting for this very snapshot.
        let producer = st.deps.producer.clone();
        let topic = st.deps.opts.topics.readings.clone();
        let readings_end = tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_watermarks(&topic, p, Duration::from_secs(2))
        })
        .await
        .map_err(|e| e.to_string())?;
        if let Ok((_, end)) = readings_end {
            metrics::gauge!(m::CONSUMER_LAG, "partition" => st.p_label.clone())
                .set((end - st.next_offset).max(0) as f64);
        }
        let snap = ShardSnapshot {
            group: st.deps.opts.group_id.clone(),
            partition: p,
            readings_offset: st.next_offset,
            households_offset: st.households_offset,
            incidents_offset: st.incidents_end,
            taken_at_ms: wall_now().millis(),
            state: st.shard.snapshot(),
        };
        let bytes = snap.state.len();
        let store = st.deps.store.clone();
        tokio::task::spawn_blocking(move || store.put(&snap))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        metrics::histogram!(m::SNAPSHOT_SECONDS).record(started.elapsed().as_secs_f64());
        metrics::gauge!(m::SNAPSHOT_BYTES, "partition" => st.p_label.clone()).set(bytes as f64);
        Ok(st.next_offset)
    }

    fn gauges(st: &ShardState) {
        metrics::gauge!(m::HOUSEHOLDS, "partition" => st.p_label.clone())
            .set(st.shard.households() as f64);
        metrics::gauge!(m::PENDING_DEADLINES, "partition" => st.p_label.clone())
            .set(st.shard.pending_deadlines() as f64);
        metrics::gauge!(m::STALLED, "partition" => st.p_label.clone())
            .set(if st.shard.is_stalled() { 1.0 } else { 0.0 });
        if let Some(w) = st.shard.watermark() {
            metrics::gauge!(m::WATERMARK, "partition" => st.p_label.clone())
                .set(w.millis() as f64 / 1000.0);
        }
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
        let (shard, next_offset, households_offset, incidents_end) = Self::restore(&args).await?;
        let changelog = Self::follow_changelog(
            myself.clone(),
            &args.deps,
            args.partition,
            households_offset,
        )?;
        let mut st = ShardState {
            partition: args.partition,
            p_label: args.partition.to_string(),
            deps: args.deps.clone(),
            shard,
            next_offset,
            households_offset,
            incidents_end,
            accepting: false,
            deliveries: Vec::new(),
            incidents: HashMap::new(),
            to_spawn: Default::default(),
            poisoned: args.poisoned,
            inflight: args.inflight,
            changelog: Some(changelog),
            out: Vec::new(),
        };
        // Open incidents restored from the snapshot get their actors back.
        let open: Vec<(String, String, i32)> = st
            .shard
            .open_incidents()
            .map(|(h, k, s, t)| {
                (
                    dolbom_domain::IncidentId::new(k, h.as_str(), t).to_string(),
                    h.to_string(),
                    dolbom_domain::convert::stage(s) as i32,
                )
            })
            .collect();
        for (id, household, stage) in open {
            let (a, _) = Actor::spawn_linked(
                None,
                IncidentActor,
                (id.clone(), household, stage),
                myself.get_cell(),
            )
            .await?;
            st.incidents.insert(id, Tracked::Running(a));
        }
        Self::gauges(&st);
        args.deps
            .control
            .send(Control::Ready {
                partition: args.partition,
                offset: Offset::Offset(next_offset),
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
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<ShardMsg>,
        msg: ShardMsg,
        st: &mut ShardState,
    ) -> Result<(), ActorProcessingErr> {
        let now = wall_now();
        match msg {
            ShardMsg::Seeked => st.accepting = true,
            ShardMsg::Readings(batch) => {
                if !st.accepting {
                    metrics::counter!(m::RECORDS_DISCARDED_BEFORE_SEEK)
                        .increment(batch.len() as u64);
                    return Ok(());
                }
                let topic = st.deps.opts.topics.readings.clone();
                let fault = st.deps.opts.fault_injection_device.clone();
                let mut accepted = 0u64;
                for rec in &batch {
                    if rec.offset < st.next_offset {
                        continue; // covered by the snapshot
                    }
                    if st.poisoned.contains(&rec.offset) {
                        // Not decoded, but the pipeline is alive.
                        st.shard.note_input(now);
                        dead_letter(
                            &st.deps,
                            &topic,
                            st.partition,
                            rec.offset,
                            rec,
                            "shard_panic",
                        );
                        st.next_offset = rec.offset + 1;
                        continue;
                    }
                    st.inflight.store(rec.offset, Ordering::SeqCst);
                    let payload = rec.payload.as_deref().unwrap_or_default();
                    if !fault.is_empty() {
                        if let Ok(r) = pb::PlugReading::decode(payload) {
                            if r.device_id == fault {
                                panic!(
                                    "fault injection: poisoned reading at offset {}",
                                    rec.offset
                                );
                            }
                        }
                    }
                    match st
                        .shard
                        .on_reading_bytes(rec.key.as_deref(), payload, now, &mut st.out)
                    {
                        Ok(_) => accepted += 1,
                        Err(e) => {
                            metrics::counter!(m::READINGS_REJECTED, "reason" => e.label())
                                .increment(1);
                            if dead_letter_worthy(&e) {
                                tracing::warn!(partition = st.partition, offset = rec.offset, reason = e.label(), error = %e, "reading rejected and dead-lettered");
                                dead_letter(
                                    &st.deps,
                                    &topic,
                                    st.partition,
                                    rec.offset,
                                    rec,
                                    e.label(),
                                );
                            } else {
                                tracing::debug!(partition = st.partition, offset = rec.offset, reason = e.label(), error = %e, "reading rejected");
                            }
                        }
                    }
                    st.next_offset = rec.offset + 1;
                }
                st.inflight.store(-1, Ordering::SeqCst);
                metrics::counter!(m::READINGS_ACCEPTED).increment(accepted);
                st.shard.advance(now, &mut st.out);
                Self::publish(st);
            }
            ShardMsg::Config(batch) => {
                let topic = st.deps.opts.topics.households.clone();
                for rec in &batch {
                    if rec.offset < st.households_offset {
                        continue;
                    }
                    if let Err(e) = st.shard.on_config_bytes(
                        rec.key.as_deref().unwrap_or_default(),
                        rec.payload.as_deref(),
                        now,
                        &mut st.out,
                    ) {
                        metrics::counter!(m::CONFIGS_REJECTED, "reason" => e.label()).increment(1);
                        tracing::warn!(partition = st.partition, offset = rec.offset, reason = e.label(), error = %e, "household config rejected");
                        if dead_letter_worthy(&e) {
                            dead_letter(&st.deps, &topic, st.partition, rec.offset, rec, e.label());
                        }
                    }
                    st.households_offset = rec.offset + 1;
                }
                st.shard.advance(now, &mut st.out);
                Self::publish(st);
                Self::gauges(st);
            }
            ShardMsg::Tick => {
                Self::spawn_incident_actors(st, &myself);
                if st.accepting {
                    st.shard.advance(now, &mut st.out);
                    Self::publish(st);
                }
            }
            ShardMsg::SnapshotTick => {
                if !st.accepting {
                    return Ok(());
                }
                // A snapshot store outage must not stop the shard: keep
                // processing, commit nothing past the last stored snapshot,
                // tell SRE, and try again at the next tick.
                let off = match Self::snapshot(st).await {
                    Ok(off) => {
                        metrics::gauge!(m::SNAPSHOT_STORE_UP).set(1.0);
                        off
                    }
                    Err(e) => {
                        metrics::gauge!(m::SNAPSHOT_STORE_UP).set(0.0);
                        metrics::counter!(m::SNAPSHOT_FAILURES).increment(1);
                        tracing::warn!(partition = st.partition, error = %e, "snapshot failed; offsets stay at the last stored snapshot, retrying next interval");
                        return Ok(());
                    }
                };
                let tpl = kafka::offsets_to_commit(
                    &st.deps.opts.topics.readings,
                    &[(st.partition, off)],
                )?;
                if let Err(e) = st.deps.consumer.commit(&tpl, CommitMode::Async) {
                    tracing::warn!(partition = st.partition, error = %e, "offset commit failed; will retry with the next snapshot");
                }
                Self::gauges(st);
            }
            ShardMsg::IncidentStarted(id, actor) => Self::incident_started(st, id, actor),
            ShardMsg::Snapshot(reply) => {
                let r = if st.accepting {
                    Self::snapshot(st).await
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

// ── incidents ───────────────────────────────────────────────────────────

pub enum IncidentMsg {
    /// An event of this incident was published (type, stage as wire enums).
    Event(i32, i32),
}

/// Follows one open incident until it closes.
pub(crate) struct IncidentActor;

pub(crate) struct IncidentState {
    id: String,
    household: String,
    stage: i32,
    opened: Instant,
}

impl Actor for IncidentActor {
    type Msg = IncidentMsg;
    type State = IncidentState;
    type Arguments = (String, String, i32);

    async fn pre_start(
        &self,
        _myself: ActorRef<IncidentMsg>,
        (id, household, stage): (String, String, i32),
    ) -> Result<IncidentState, ActorProcessingErr> {
        metrics::gauge!(m::OPEN_INCIDENTS).increment(1.0);
        tracing::info!(incident = %id, household = %household, stage, "incident open");
        Ok(IncidentState {
            id,
            household,
            stage,
            opened: Instant::now(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<IncidentMsg>,
        msg: IncidentMsg,
        st: &mut IncidentState,
    ) -> Result<(), ActorProcessingErr> {
        let IncidentMsg::Event(ty, stage) = msg;
        if stage > st.stage {
            st.stage = stage;
            tracing::info!(incident = %st.id, household = %st.household, stage, "incident stage raised");
        }
        if ty == pb::IncidentEventType::Recovered as i32
            || ty == pb::IncidentEventType::Suppressed as i32
        {
            tracing::info!(incident = %st.id, household = %st.household, open_seconds = st.opened.elapsed().as_secs(), "incident closed");
            myself.stop(None);
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<IncidentMsg>,
        _st: &mut IncidentState,
    ) -> Result<(), ActorProcessingErr> {
        metrics::gauge!(m::OPEN_INCIDENTS).decrement(1.0);
        Ok(())
    }
}
