//! The monitor service: every household a logical actor, sharded by Kafka
//! partition, its incidents published exactly once.
//!
//! Data flow:
//!
//! ```text
//! plug.readings ─(group consumer, cooperative-sticky, static membership)─▶ ingest loop
//!     │ batches per partition                      rebalance hooks ─▶ Root actor
//!     ▼                                                                │
//! PartitionSupervisor(p) ──▶ ShardActor(p): dolbom_shard::Shard  ◀── care.households(p)
//!                                 │ incident events (partition p)      (changelog)
//!                                 ├──▶ care.incidents   IncidentActor per open incident
//!                                 └──▶ snapshots (SnapshotStore: history store or files) ─▶ then commit offset
//! ```
//!
//! Guarantees and how they are kept:
//! - **No loss**: a readings offset is committed only after a snapshot that
//!   covers it is durable, and a snapshot is taken only after every event
//!   emitted before it was acknowledged by the broker. A crash replays from
//!   the last snapshot.
//! - **No duplicates**: incident ids and event ids are deterministic; a
//!   restoring shard reads `care.incidents` (its own partition) from the
//!   end offset recorded in its snapshot and does not publish those event
//!   ids again while it replays. The producer is idempotent.
//! - **Assignment**: a newly assigned partition is paused, its shard
//!   restores (snapshot, incidents tail, changelog to its end), then the
//!   ingest loop seeks to the snapshot's offset and resumes it. Revocation
//!   snapshots the shard and commits synchronously before the partition goes.
//! - **Poisoned messages**: a shard that panics is restarted by its
//!   partition supervisor from its last snapshot; the record in flight is
//!   dead-lettered on replay. Malformed records are dead-lettered without a
//!   restart. Other partitions are untouched.
//!
//! A snapshot store outage does not stop a shard: the failed snapshot is
//! counted, offsets stay at the last stored one, and it is retried at the
//! next interval.
//!
//! `run(opts, shutdown)` drains on shutdown: every shard snapshots and
//! commits before the consumer closes.

pub mod actors;
pub mod kafka;
pub mod metrics;
pub mod options;

pub use options::{MonitorOptions, OptionsError, Topics};

use actors::{Deps, PartitionMsg, Root, RootMsg};
use dolbom_calendar::{CalendarError, HolidayCalendar, OfficeHours, Router};
use dolbom_domain::Ts;
use dolbom_snapshots::{FileSnapshotStore, SnapshotStore, SnapshotStoreError};
use futures::FutureExt;
use ractor::{Actor, ActorRef};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("topics missing and create_topics is off: {0:?}")]
    MissingTopics(Vec<String>),
    #[error("could not create topic {0}: {1}")]
    TopicCreation(String, String),
    #[error("co-partitioned topics disagree on partition count: {0}")]
    PartitionMismatch(String),
    #[error("restore of {0}/{1} did not reach the end of the partition in time")]
    RestoreTimeout(String, i32),
    #[error(transparent)]
    Snapshots(#[from] SnapshotStoreError),
    #[error(transparent)]
    History(#[from] dolbom_history::HistoryError),
    #[error(transparent)]
    Snapshot(#[from] dolbom_shard::SnapshotError),
    #[error(transparent)]
    Calendar(#[from] CalendarError),
    #[error(transparent)]
    Metrics(#[from] dolbom_prometheus::ExporterError),
    #[error("actor system: {0}")]
    Actors(String),
}

/// One Kafka record, owned.
#[derive(Clone, Debug)]
pub struct Rec {
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
}

impl Rec {
    pub fn from_message(m: &BorrowedMessage<'_>) -> Rec {
        Rec {
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().map(<[u8]>::to_vec),
        }
    }
}

/// Requests from shards to the ingest loop (which owns polling).
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

pub(crate) type Routes = Arc<RwLock<HashMap<i32, ActorRef<PartitionMsg>>>>;

/// The wall clock, as the platform's `Ts`.
pub fn wall_now() -> Ts {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Ts(d.as_millis() as i64)
}

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

/// Runs the monitor until `shutdown` fires, then drains: every shard
/// snapshots and commits, and the consumer leaves.
pub async fn run(
    opts: MonitorOptions,
    shutdown: CancellationToken,
) -> Result<MonitorSummary, MonitorError> {
    dolbom_prometheus::install(&opts.metrics_listen)?;
    let partitions = kafka::ensure_topics(&opts).await?;
    tracing::info!(brokers = %opts.brokers, group = %opts.group_id, instance = %opts.instance_id, partitions, "monitor starting");
    let mut calendar = HolidayCalendar::builtin();
    if let Some(f) = &opts.holidays_file {
        calendar = calendar.with_extra_file(f)?;
    }
    let router = Router::new(Arc::new(calendar), OfficeHours::default());
    let store = snapshot_store(&opts).await?;
    let consumer = kafka::group_consumer(&opts)?;
    let producer = kafka::producer(&opts)?;
    let (control_tx, mut control_rx) = mpsc::unbounded_channel();
    let routes: Routes = Arc::default();
    let deps = Arc::new(Deps {
        opts: opts.clone(),
        router,
        producer: producer.clone(),
        consumer: consumer.clone(),
        store,
        control: control_tx,
        routes: routes.clone(),
    });
    let (root, root_handle) = Actor::spawn(None, Root, deps.clone())
        .await
        .map_err(|e| MonitorError::Actors(e.to_string()))?;
    let _ = consumer.context().root.set(root.clone());
    consumer.subscribe(&[opts.topics.readings.as_str()])?;

    let mut summary = MonitorSummary::default();
    let mut batches: HashMap<i32, Vec<Rec>> = HashMap::new();
    let readings_topic = opts.topics.readings.clone();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            Some(ctl) = control_rx.recv() => {
                let Control::Ready { partition, offset, supervisor } = ctl;
                // Route first: records polled after the resume must find their shard.
                routes.write().expect("routes").insert(partition, supervisor.clone());
                let c = consumer.clone();
                let topic = readings_topic.clone();
                let r = tokio::task::block_in_place(move || {
                    c.seek(&topic, partition, offset, Duration::from_secs(10))?;
                    let mut tpl = TopicPartitionList::new();
                    tpl.add_partition(&topic, partition);
                    c.resume(&tpl)
                });
                if let Err(e) = r {
                    tracing::warn!(partition, error = %e, "seek/resume failed; retrying");
                    let tx = deps.control.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        let _ = tx.send(Control::Ready { partition, offset, supervisor });
                    });
                    continue;
                }
                tracing::info!(partition, ?offset, "partition positioned and resumed");
                let _ = supervisor.cast(PartitionMsg::Seeked);
                ::metrics::gauge!(metrics::ASSIGNED_PARTITIONS).set(routes.read().expect("routes").len() as f64);
            }
            m = consumer.recv() => {
                let m = match m {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(error = %e, "consume error");
                        continue;
                    }
                };
                batches.entry(m.partition()).or_default().push(Rec::from_message(&m));
                drop(m);
                let mut n = 1;
                while n < opts.batch_size {
                    match consumer.recv().now_or_never() {
                        Some(Ok(m)) => {
                            batches.entry(m.partition()).or_default().push(Rec::from_message(&m));
                            n += 1;
                        }
                        _ => break,
                    }
                }
                summary.records += n as u64;
                let routes = routes.read().expect("routes");
                for (p, batch) in batches.drain() {
                    if let Some(sup) = routes.get(&p) {
                        let _ = sup.cast(PartitionMsg::Readings(batch));
                    }
                }
            }
        }
    }

    // Drain: snapshot every shard, commit, leave.
    tracing::info!("monitor draining");
    let assigned: Vec<i32> = routes.read().expect("routes").keys().copied().collect();
    summary.partitions_at_stop = assigned.len();
    let offsets = ractor::call_t!(root, RootMsg::Revoke, 60_000, assigned).unwrap_or_default();
    if !offsets.is_empty() {
        let c = consumer.clone();
        let committed = tokio::task::block_in_place(move || {
            kafka::offsets_to_commit(&readings_topic, &offsets)
                .and_then(|tpl| c.commit(&tpl, CommitMode::Sync))
        });
        if let Err(e) = committed {
            tracing::warn!(error = %e, "final commit failed; the next owner replays from the previous commit");
        }
    }
    let p = producer.clone();
    let _ = tokio::task::block_in_place(move || {
        rdkafka::producer::Producer::flush(&p, Duration::from_secs(10))
    });
    consumer
        .context()
        .drained
        .store(true, std::sync::atomic::Ordering::SeqCst);
    root.stop(None);
    let _ = root_handle.await;
    consumer.unsubscribe();
    tracing::info!(
        records = summary.records,
        partitions = summary.partitions_at_stop,
        "monitor stopped"
    );
    Ok(summary)
}
