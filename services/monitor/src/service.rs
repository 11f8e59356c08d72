//! `run`: the monitor from options to drain — topics, the snapshot store,
//! the Kafka clients, the supervision tree, the rebalance events that drive
//! it, and the ingest loop.

use crate::actors::root::{Root, RootMsg};
use crate::actors::{Deps, Routes};
use crate::error::MonitorError;
use crate::ingest::Ingest;
use crate::kafka::{self, IncidentProducer, OffsetCommitter, Rebalance};
use crate::options::MonitorOptions;
use dolbom_calendar::{OfficeHours, Router};
use dolbom_shard::AreaBoard;
use dolbom_snapshots::{FileSnapshotStore, SnapshotStore};
use ractor::{Actor, ActorRef};
use rdkafka::consumer::{CommitMode, Consumer};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How long a revocation's shards get to snapshot (the callback waits 30 s).
const REVOKE_CALL_MS: u64 = 30_000;
/// How long the drain at shutdown waits for every shard's snapshot.
const DRAIN_CALL_MS: u64 = 60_000;

/// What a monitor did, reported when it stops.
#[derive(Clone, Debug, Default)]
pub struct MonitorSummary {
    pub records: u64,
    pub partitions_at_stop: usize,
}

/// The snapshot store the options name.
async fn snapshot_store(opts: &MonitorOptions) -> Result<Arc<dyn SnapshotStore>, MonitorError> {
    // Snapshots do not expire: retention applies to the time series only.
    let retention = dolbom_history::Retention::default();
    Ok(match opts.snapshot_store.as_str() {
        "file" => Arc::new(FileSnapshotStore::open(&opts.snapshot_dir)?),
        "scylla" => {
            let store = dolbom_history::ScyllaStore::connect(&opts.scylla, retention).await?;
            Arc::new(dolbom_history::HistorySnapshots::new(
                Arc::new(store),
                tokio::runtime::Handle::current(),
            ))
        }
        _ => Arc::new(dolbom_history::EmbeddedStore::open_dir(
            &opts.snapshot_dir,
            retention,
        )?),
    })
}

/// Hands the consumer's rebalance events to the root actor, and watches that
/// a member which lost all its partitions gets some back (see
/// `rejoin_timeout_secs`).
async fn follow_rebalances(
    root: ActorRef<RootMsg>,
    deps: Arc<Deps>,
    mut events: mpsc::UnboundedReceiver<Rebalance>,
) {
    let timeout = Duration::from_secs(deps.opts.rejoin_timeout_secs);
    let mut owned: std::collections::HashSet<i32> = Default::default();
    let mut empty_since: Option<std::time::Instant> = None;
    loop {
        let ev = tokio::select! {
            ev = events.recv() => match ev {
                Some(ev) => ev,
                None => break,
            },
            _ = tokio::time::sleep(Duration::from_secs(1)) => {
                let stuck = empty_since.is_some_and(|t| t.elapsed() > timeout);
                if stuck && !timeout.is_zero() && !deps.stop.is_cancelled() {
                    deps.fail(format!(
                        "no partitions for {} s after losing them all: the consumer did not rejoin its group; stopping so a restart joins with a fresh one",
                        timeout.as_secs()
                    ));
                    empty_since = None;
                }
                continue;
            }
        };
        match ev {
            Rebalance::Assigned(partitions) => {
                owned.extend(&partitions);
                empty_since = None;
                let _ = root.cast(RootMsg::Assign { partitions });
            }
            Rebalance::Revoked {
                partitions, done, ..
            } => {
                owned.retain(|p| !partitions.contains(p));
                if owned.is_empty() {
                    empty_since = Some(std::time::Instant::now());
                }
                let offsets = ractor::call_t!(
                    root,
                    |reply| RootMsg::Revoke { partitions, reply },
                    REVOKE_CALL_MS
                )
                .unwrap_or_else(|e| {
                    tracing::error!(error = %e, "revocation did not complete");
                    Vec::new()
                });
                let _ = done.send(offsets);
            }
        }
    }
}

/// Runs the monitor until `shutdown` fires, then drains: every shard
/// snapshots and commits, and the consumer leaves.
pub async fn run(
    opts: MonitorOptions,
    shutdown: CancellationToken,
) -> Result<MonitorSummary, MonitorError> {
    dolbom_prometheus::install(&opts.metrics_listen)?;
    crate::metrics::describe();
    dolbom_history::metrics::describe();
    dolbom_telemetry::describe();
    let partitions = kafka::ensure_topics(&opts).await?;
    tracing::info!(brokers = %opts.kafka.brokers, group = %opts.group_id, instance = %opts.instance_id, partitions, "monitor starting");
    let router = Router::load(opts.holidays_file.as_deref(), OfficeHours::default())?;
    let store = snapshot_store(&opts).await?;
    let (consumer, rebalances) = kafka::group_consumer(&opts)?;
    let producer = IncidentProducer::new(&opts)?;
    let (control_tx, control_rx) = mpsc::unbounded_channel();
    let routes: Routes = Arc::default();
    let stop = shutdown.child_token();
    let board = AreaBoard::new();
    let sharing = crate::areas::share(&opts, partitions, board.clone(), stop.clone())?;
    let deps = Arc::new(Deps {
        opts: opts.clone(),
        router,
        producer: producer.clone(),
        committer: OffsetCommitter::new(consumer.clone(), &opts.topics.readings),
        consumer: consumer.clone(),
        store,
        control: control_tx.clone(),
        routes: routes.clone(),
        board,
        stop: stop.clone(),
        failure: Default::default(),
    });
    let (root, root_handle) = Actor::spawn(None, Root, deps.clone())
        .await
        .map_err(|e| MonitorError::Actors(e.to_string()))?;
    let rebalancing = tokio::spawn(follow_rebalances(root.clone(), deps.clone(), rebalances));
    consumer.subscribe(&[opts.topics.readings.as_str()])?;

    let ingest = Ingest {
        consumer: consumer.clone(),
        routes: routes.clone(),
        control: control_rx,
        control_tx,
        readings_topic: opts.topics.readings.clone(),
        batch_size: opts.batch_size,
    };
    let mut summary = MonitorSummary {
        records: ingest.run(stop).await,
        ..Default::default()
    };

    // Drain: snapshot every shard, commit, leave.
    tracing::info!("monitor draining");
    let assigned: Vec<i32> = routes.read().expect("routes").keys().copied().collect();
    summary.partitions_at_stop = assigned.len();
    let offsets = ractor::call_t!(
        root,
        |reply| RootMsg::Revoke {
            partitions: assigned,
            reply
        },
        DRAIN_CALL_MS
    )
    .unwrap_or_default();
    if !offsets.is_empty() {
        let committer = deps.committer.clone();
        let committed =
            tokio::task::block_in_place(move || committer.commit(&offsets, CommitMode::Sync));
        if let Err(e) = committed {
            tracing::warn!(error = %e, "final commit failed; the next owner replays from the previous commit");
        }
    }
    let _ = tokio::task::block_in_place(|| producer.flush(Duration::from_secs(10)));
    consumer.context().mark_drained();
    root.stop(None);
    let _ = root_handle.await;
    consumer.unsubscribe();
    rebalancing.abort();
    if let Some(sharing) = sharing {
        sharing.abort();
    }
    tracing::info!(
        records = summary.records,
        partitions = summary.partitions_at_stop,
        "monitor stopped"
    );
    if let Some(reason) = deps.failure.get() {
        return Err(MonitorError::Fatal(reason.clone()));
    }
    Ok(summary)
}
