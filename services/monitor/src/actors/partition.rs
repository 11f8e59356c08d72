//! One assigned partition's supervisor: forwards record batches to its
//! shard, and restarts the shard from its last snapshot when it fails,
//! dead-lettering the record that was in flight.
//!
//! A partition must never go quietly blind. A shard that cannot start (its
//! restore fails: the snapshot store is down, or the snapshot is missing) or
//! keeps failing before it ran healthy is retried with a doubling backoff,
//! forever; after `supervision.down_after_failures` failures in a row the
//! partition is reported down — one PIPELINE_STALL incident for SRE (sent by
//! the supervisor itself, since no shard runs to raise it) and
//! `dolbom_monitor_partitions_down` — and once a shard has run for
//! `supervision.healthy_after_ms` the incident recovers.

use super::shard::{ShardActor, ShardArgs, ShardMsg};
use super::Deps;
use crate::kafka::Rec;
use crate::metrics as m;
use dolbom_domain::convert::{platform_event, PlatformIncident};
use dolbom_domain::{EventType, IncidentKind, Route, Ts};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long a stopping shard gets for its final snapshot.
const SNAPSHOT_TIMEOUT_MS: u64 = 20_000;

pub enum PartitionMsg {
    Readings {
        batch: Vec<Rec>,
    },
    /// The ingest loop has positioned the partition where the shard asked.
    Seeked,
    /// The consumer reached the end of the partition (after the records
    /// handed over before this message).
    CaughtUp,
    /// Snapshot, then stop the shard; reply with the readings offset covered.
    Stop {
        reply: RpcReplyPort<Option<i64>>,
    },
    /// Try to start the shard again (after a failure and its backoff).
    Restart,
    /// The shard started as `start` has run `healthy_after_ms`.
    Healthy {
        start: u64,
    },
}

pub(crate) struct PartitionSupervisor;

pub(crate) struct SupervisorState {
    partition: i32,
    deps: Arc<Deps>,
    shard: Option<ActorRef<ShardMsg>>,
    /// The readings offset the shard is processing (-1: none).
    inflight: Arc<AtomicI64>,
    /// Offsets whose record made a shard fail: dead-lettered on replay.
    poisoned: BTreeSet<i64>,
    restarts: u32,
    /// Failures since the shard last ran healthy.
    failures: u32,
    /// Counts shard starts (tells a stale `Healthy` from a current one).
    starts: u64,
    /// Since when the partition has had no healthy shard, once it failed.
    down_since: Option<Ts>,
    /// The PIPELINE_STALL incident raised for that outage, if any.
    reported: bool,
    /// Stopping for good: no more restarts.
    stopping: bool,
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

    /// Starts the shard; a failure is counted, reported once it repeats,
    /// and retried after a backoff. Never fails the supervisor.
    async fn try_start(myself: &ActorRef<PartitionMsg>, st: &mut SupervisorState) {
        if st.stopping {
            return;
        }
        match Self::start_shard(myself, st).await {
            Ok(()) => {
                st.starts += 1;
                let start = st.starts;
                let healthy = Duration::from_millis(st.deps.opts.supervision.healthy_after_ms);
                myself.send_after(healthy, move || PartitionMsg::Healthy { start });
            }
            Err(e) => {
                tracing::error!(partition = st.partition, error = %e, failures = st.failures + 1, "shard could not start; retrying");
                Self::failed(myself, st);
            }
        }
    }

    /// Writes the poisoned offsets to the snapshot store, so that a process
    /// that hosts the partition next (this one restarted, or another after
    /// a rebalance) dead-letters them too instead of failing on them again.
    /// A failed write is reported; this supervisor still remembers them.
    async fn keep_poisoned(st: &SupervisorState) {
        let store = st.deps.store.clone();
        let group = st.deps.opts.group_id.clone();
        let (partition, offsets) = (st.partition, st.poisoned.clone());
        let kept =
            tokio::task::spawn_blocking(move || store.put_poisoned(&group, partition, &offsets))
                .await;
        let kept = kept
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        if let Err(error) = kept {
            tracing::error!(
                partition = st.partition,
                error,
                "poisoned offsets not kept; only this process will skip them"
            );
        }
    }

    /// The shard could not start: count it, then [`Self::retry_later`].
    fn failed(myself: &ActorRef<PartitionMsg>, st: &mut SupervisorState) {
        Self::count_failure(st);
        Self::retry_later(myself, st);
    }

    /// One more failure since the shard last ran healthy.
    fn count_failure(st: &mut SupervisorState) {
        st.failures += 1;
        st.down_since.get_or_insert_with(Ts::now);
    }

    /// The outage is over for this monitor (a shard ran healthy, or the
    /// partition is handed over): a reported one recovers.
    fn outage_over(st: &mut SupervisorState) {
        let Some(since) = st.down_since.take() else {
            return;
        };
        if std::mem::take(&mut st.reported) {
            tracing::info!(partition = st.partition, "partition no longer down");
            metrics::gauge!(m::PARTITIONS_DOWN, "partition" => st.partition.to_string()).set(0.0);
            st.deps.clone().publish_platform(
                st.partition,
                stall(st.partition, EventType::Recovered, since),
            );
        }
    }

    /// Reports the partition down once its failures repeat, and tries again
    /// after a backoff that doubles per failure.
    fn retry_later(myself: &ActorRef<PartitionMsg>, st: &mut SupervisorState) {
        let sv = &st.deps.opts.supervision;
        let since = st.down_since.unwrap_or_else(Ts::now);
        if st.failures >= sv.down_after_failures && !st.reported {
            st.reported = true;
            tracing::error!(
                partition = st.partition,
                failures = st.failures,
                "partition down: no shard can run; PIPELINE_STALL raised for SRE"
            );
            metrics::gauge!(m::PARTITIONS_DOWN, "partition" => st.partition.to_string()).set(1.0);
            st.deps
                .clone()
                .publish_platform(st.partition, stall(st.partition, EventType::Opened, since));
        }
        let backoff = (200u64 << st.failures.min(16)).min(sv.max_restart_backoff_ms);
        myself.send_after(Duration::from_millis(backoff), || PartitionMsg::Restart);
    }
}

/// The PIPELINE_STALL event of partition `p` being down since `since`.
fn stall(p: i32, event: EventType, since: Ts) -> dolbom_proto::v1::IncidentEvent {
    let now = Ts::now();
    platform_event(&PlatformIncident {
        kind: IncidentKind::PipelineStall,
        subject: &format!("partition-{p}-down"),
        event,
        episode_start: since,
        due_at: if event == EventType::Opened {
            since
        } else {
            now
        },
        emitted_at: now,
        route: Route::Sre,
        municipality: None,
        dong: None,
        affected_households: 0,
    })
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
            failures: 0,
            starts: 0,
            down_since: None,
            reported: false,
            stopping: false,
        };
        // The partition's series exist from the start: not down, no restarts.
        let label = partition.to_string();
        metrics::gauge!(m::PARTITIONS_DOWN, "partition" => label.clone()).set(0.0);
        metrics::counter!(m::SHARD_RESTARTS, "partition" => label).increment(0);
        Self::try_start(&myself, &mut st).await;
        Ok(st)
    }

    async fn handle(
        &self,
        myself: ActorRef<PartitionMsg>,
        msg: PartitionMsg,
        st: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            PartitionMsg::Restart => {
                if st.shard.is_none() {
                    Self::try_start(&myself, st).await;
                }
            }
            PartitionMsg::Healthy { start } => {
                if start == st.starts && st.shard.is_some() {
                    st.failures = 0;
                    Self::outage_over(st);
                }
            }
            PartitionMsg::Readings { batch } => {
                // While a shard restarts, records are dropped: it replays them.
                if let Some(s) = &st.shard {
                    let _ = s.cast(ShardMsg::Readings { batch });
                }
            }
            PartitionMsg::Seeked => {
                if let Some(s) = &st.shard {
                    let _ = s.cast(ShardMsg::Seeked);
                }
            }
            PartitionMsg::CaughtUp => {
                if let Some(s) = &st.shard {
                    let _ = s.cast(ShardMsg::CaughtUp);
                }
            }
            PartitionMsg::Stop { reply } => {
                st.stopping = true;
                // Handed over (or shutting down): this monitor's outage of
                // the partition ends here; a new owner that cannot run it
                // either reports its own.
                Self::outage_over(st);
                let off = match st.shard.take() {
                    Some(s) => {
                        let r = ractor::call_t!(
                            s,
                            |reply| ShardMsg::Snapshot { reply },
                            SNAPSHOT_TIMEOUT_MS
                        );
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
            if offset >= 0 && st.poisoned.insert(offset) {
                Self::keep_poisoned(st).await;
            }
            // The first failure of a healthy shard restarts it at once (a
            // poisoned record, dead-lettered on replay); one that keeps
            // failing before it ran healthy (a panic outside record
            // handling) backs off and is reported, instead of looping
            // quietly.
            Self::count_failure(st);
            if st.failures == 1 {
                Self::try_start(&myself, st).await;
            } else {
                Self::retry_later(&myself, st);
            }
        }
        Ok(())
    }
}
