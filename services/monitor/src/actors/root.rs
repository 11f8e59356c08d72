//! The root of the supervision tree: one partition supervisor per assigned
//! partition; revocations snapshot and stop them and report the offsets to
//! commit.

use super::partition::{PartitionMsg, PartitionSupervisor};
use super::Deps;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// How long one partition gets to snapshot and stop on revocation.
const STOP_TIMEOUT_MS: u64 = 25_000;

pub enum RootMsg {
    /// Start supervisors for these newly assigned partitions.
    Assign { partitions: Vec<i32> },
    /// Snapshot and stop these partitions; reply with the offsets to commit.
    Revoke {
        partitions: Vec<i32>,
        reply: RpcReplyPort<Vec<(i32, i64)>>,
    },
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
            RootMsg::Assign { partitions } => {
                // Partitions restore in parallel.
                let fresh: Vec<i32> = partitions
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
                            myself.send_after(Duration::from_secs(1), move || RootMsg::Assign {
                                partitions: vec![p],
                            });
                        }
                    }
                }
            }
            RootMsg::Revoke { partitions, reply } => {
                let mut offsets = Vec::new();
                for p in partitions {
                    st.deps.routes.write().expect("routes").remove(&p);
                    let Some(sup) = st.partitions.remove(&p) else {
                        continue;
                    };
                    match ractor::call_t!(
                        sup,
                        |reply| PartitionMsg::Stop { reply },
                        STOP_TIMEOUT_MS
                    ) {
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
