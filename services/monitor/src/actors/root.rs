//! The root of the supervision tree: one partition supervisor per assigned
//! partition (a supervisor that dies is replaced while its partition stays
//! assigned); revocations snapshot and stop them in parallel and report the
//! offsets to commit.

use super::partition::{PartitionMsg, PartitionSupervisor};
use super::Deps;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// How long one partition gets to snapshot and stop on revocation.
const STOP_TIMEOUT_MS: u64 = 25_000;

pub enum RootMsg {
    /// Start supervisors for these newly assigned partitions.
    Assign { partitions: Vec<i32> },
    /// Start a supervisor again for a partition whose supervisor failed (or
    /// did not start), if it is still assigned here.
    Respawn { partition: i32 },
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
    /// What the group assigned here (a respawn outside it is stale).
    assigned: HashSet<i32>,
}

impl Root {
    /// Starts supervisors for the partitions that have none; they restore in
    /// parallel. One that cannot start is tried again a second later.
    async fn spawn(myself: &ActorRef<RootMsg>, st: &mut RootState, partitions: Vec<i32>) {
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
        for (&partition, r) in fresh.iter().zip(futures::future::join_all(spawns).await) {
            match r {
                Ok((sup, _)) => {
                    st.partitions.insert(partition, sup);
                }
                Err(e) => {
                    tracing::error!(partition, error = %e, "partition failed to start; retrying");
                    myself.send_after(Duration::from_secs(1), move || RootMsg::Respawn {
                        partition,
                    });
                }
            }
        }
    }

    /// Snapshots and stops the partitions, all at once (each within
    /// [`STOP_TIMEOUT_MS`], so a revocation of many partitions still fits
    /// the rebalance callback); returns the offsets to commit.
    async fn revoke(st: &mut RootState, partitions: Vec<i32>) -> Vec<(i32, i64)> {
        let mut stopping = Vec::new();
        for p in partitions {
            st.assigned.remove(&p);
            st.deps.routes.write().expect("routes").remove(&p);
            if let Some(sup) = st.partitions.remove(&p) {
                stopping.push((p, sup));
            }
        }
        let stops = stopping.iter().map(|(p, sup)| async move {
            let r = ractor::call_t!(sup, |reply| PartitionMsg::Stop { reply }, STOP_TIMEOUT_MS);
            sup.stop(None);
            match r {
                Ok(off) => off.map(|o| (*p, o)),
                Err(e) => {
                    tracing::error!(partition = p, error = %e, "partition did not stop cleanly");
                    None
                }
            }
        });
        futures::future::join_all(stops)
            .await
            .into_iter()
            .flatten()
            .collect()
    }
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
            assigned: HashSet::new(),
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
                st.assigned.extend(&partitions);
                Self::spawn(&myself, st, partitions).await;
            }
            RootMsg::Respawn { partition } => {
                if st.assigned.contains(&partition) {
                    Self::spawn(&myself, st, vec![partition]).await;
                }
            }
            RootMsg::Revoke { partitions, reply } => {
                let _ = reply.send(Self::revoke(st, partitions).await);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<RootMsg>,
        ev: SupervisionEvent,
        st: &mut RootState,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(who, err) = ev {
            // A supervisor that died would leave its partition unhosted
            // with nobody to raise a stall: start a new one while the
            // partition is still assigned here.
            let gone = st
                .partitions
                .iter()
                .find(|(_, sup)| sup.get_id() == who.get_id())
                .map(|(&p, _)| p);
            tracing::error!(actor = ?who.get_id(), partition = ?gone, error = %err, "partition supervisor failed; starting a new one");
            if let Some(p) = gone {
                st.partitions.remove(&p);
                myself.send_after(Duration::from_secs(1), move || RootMsg::Respawn {
                    partition: p,
                });
            }
        }
        Ok(())
    }
}
