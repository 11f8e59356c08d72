//! One assigned partition's supervisor: forwards record batches to its
//! shard, and restarts the shard from its last snapshot when it fails,
//! dead-lettering the record that was in flight.

use super::shard::{ShardActor, ShardArgs, ShardMsg};
use super::Deps;
use crate::kafka::Rec;
use crate::metrics as m;
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
