//! The supervision tree: root → one supervisor per assigned partition →
//! that partition's shard actor → one actor per open incident.
//!
//! - [`root::Root`] turns rebalances into partition supervisors and collects
//!   the offsets their shards snapshotted when partitions are revoked.
//! - [`partition::PartitionSupervisor`] forwards record batches to its shard.
//!   When the shard panics (a poisoned message), it remembers the offset that
//!   was in flight — in the snapshot store too, so whichever process hosts
//!   the partition next skips it as well — restarts the shard (which
//!   restores from its last snapshot and replays from there) and the new
//!   shard dead-letters that one record instead of processing it. No other
//!   partition is touched.
//! - [`shard::ShardActor`] hosts a [`dolbom_shard::Shard`]: restores it
//!   ([`crate::restore`]), asks the ingest loop for its position, then
//!   processes records, ticks and snapshots. Events go out through the
//!   idempotent producer to the same partition of `care.incidents`; a
//!   snapshot is written only after every event before it was acknowledged,
//!   and the readings offset is committed only after the snapshot is durable.
//! - [`unacked::Unacked`] keeps a shard's emitted events until the broker
//!   acknowledges them (re-sending after a failed delivery).
//! - [`incident::IncidentActor`] follows one open incident through its
//!   stages until it closes (its log lines and the open-incident gauge are
//!   its job); `tracker.rs` keeps a shard's incidents and starts their
//!   actors off the shard's path, a bounded number per tick.

pub mod incident;
pub mod partition;
pub mod root;
pub mod shard;
mod tracker;
pub mod unacked;

use crate::kafka::{GroupConsumer, IncidentProducer, OffsetCommitter};
use crate::options::MonitorOptions;
use crate::restore::Sources;
use dolbom_calendar::Router;
use dolbom_snapshots::SnapshotStore;
use partition::PartitionMsg;
use ractor::ActorRef;
use rdkafka::Offset;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Requests from the actors to the ingest loop (which owns polling).
#[derive(Debug)]
pub enum Control {
    /// The shard of `partition` has restored: route the partition's records
    /// to `supervisor`, position it at `offset` and resume it.
    Ready {
        partition: i32,
        offset: Offset,
        supervisor: ActorRef<PartitionMsg>,
    },
}

/// Where the ingest loop sends each partition's records.
pub(crate) type Routes = Arc<RwLock<HashMap<i32, ActorRef<PartitionMsg>>>>;

/// What every actor of one monitor shares.
pub(crate) struct Deps {
    pub opts: MonitorOptions,
    pub router: Router,
    pub producer: IncidentProducer,
    pub committer: OffsetCommitter,
    pub consumer: Arc<GroupConsumer>,
    pub store: Arc<dyn SnapshotStore>,
    pub control: mpsc::UnboundedSender<Control>,
    pub routes: Routes,
    /// Every partition's part of every area (see [`crate::areas`]).
    pub board: dolbom_shard::AreaBoard,
    /// Stops the ingest loop: the monitor drains and `run` returns the
    /// failure (see [`Deps::fail`]).
    pub stop: CancellationToken,
    pub failure: OnceLock<String>,
}

impl Deps {
    /// Something the monitor cannot go on without failed (a fatal producer
    /// error): drain what can be drained and stop with `reason`, so that a
    /// restart — a fresh process, fresh clients — replays from the last
    /// snapshots.
    pub(crate) fn fail(&self, reason: String) {
        if self.failure.set(reason.clone()).is_ok() {
            tracing::error!(%reason, "monitor stopping on a fatal error");
        }
        self.stop.cancel();
    }

    /// Publishes an event no shard raises (a supervisor's report that its
    /// partition is down) to partition `p` of `care.incidents`, retrying
    /// every second until the broker takes it or the monitor stops. Its id
    /// is deterministic, so a retry that did land twice is one event to
    /// notify.
    pub(crate) fn publish_platform(self: Arc<Self>, p: i32, ev: dolbom_proto::v1::IncidentEvent) {
        let span = tracing::info_span!(
            parent: None,
            "incident fire",
            otel.kind = "internal",
            dolbom.incident_id = %ev.incident_id,
            dolbom.event_type = ev.r#type,
            messaging.destination.partition.id = p,
        );
        tokio::spawn(async move {
            loop {
                let sent = match self.producer.publish(p, &ev, &span) {
                    Ok((_, delivery)) => match delivery.await {
                        Ok(Ok(_)) => Ok(()),
                        Ok(Err((e, _))) => Err(e.to_string()),
                        Err(_) => Err("delivery cancelled".into()),
                    },
                    Err(e) => Err(e.to_string()),
                };
                match sent {
                    Ok(()) => return,
                    Err(e) => {
                        metrics::counter!(crate::metrics::PUBLISH_FAILURES, "stage" => "platform")
                            .increment(1);
                        tracing::warn!(partition = p, event_id = %ev.event_id, error = %e, "platform incident not published yet; retrying");
                    }
                }
                tokio::select! {
                    _ = self.stop.cancelled() => return,
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                }
            }
        });
    }

    /// What a shard restores from.
    pub(crate) fn sources(&self) -> Sources {
        Sources {
            opts: self.opts.clone(),
            router: self.router.clone(),
            store: self.store.clone(),
            consumer: self.consumer.clone(),
        }
    }
}
