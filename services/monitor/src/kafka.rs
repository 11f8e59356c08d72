//! Kafka clients: the group consumer and its rebalance hooks, the producer,
//! topic checks, and the blocking reads a shard does when it restores.

use crate::actors::RootMsg;
use crate::options::MonitorOptions;
use crate::MonitorError;
use ractor::ActorRef;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::FutureProducer;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::HashSet;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub(crate) const KAFKA_TIMEOUT: Duration = Duration::from_secs(10);

/// The group consumer's context: turns rebalances into messages for the
/// root actor. A revocation blocks until the partition's shard has
/// snapshotted, then commits the offset that snapshot covers.
pub struct MonitorContext {
    pub(crate) root: OnceLock<ActorRef<RootMsg>>,
    /// Set once the monitor has drained its shards itself.
    pub(crate) drained: std::sync::atomic::AtomicBool,
    pub(crate) readings_topic: String,
}

impl ClientContext for MonitorContext {}

impl MonitorContext {
    /// The `plug.readings` partitions in a rebalance's partition list.
    fn readings_partitions(&self, tpl: &TopicPartitionList) -> Vec<i32> {
        tpl.elements_for_topic(&self.readings_topic)
            .iter()
            .map(|e| e.partition())
            .collect()
    }
}

/// The list to commit for `topic`: per partition, the next offset to read.
pub(crate) fn offsets_to_commit(
    topic: &str,
    offsets: &[(i32, i64)],
) -> rdkafka::error::KafkaResult<TopicPartitionList> {
    let mut tpl = TopicPartitionList::new();
    for &(p, off) in offsets {
        tpl.add_partition_offset(topic, p, Offset::Offset(off))?;
    }
    Ok(tpl)
}

impl ConsumerContext for MonitorContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else {
            return;
        };
        let Some(root) = self.root.get() else { return };
        if self.drained.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let partitions = self.readings_partitions(tpl);
        if partitions.is_empty() {
            return;
        }
        let lost = consumer.assignment_lost();
        let started = std::time::Instant::now();
        tracing::info!(?partitions, lost, "partitions revoked; snapshotting");
        let root = root.clone();
        let offsets = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async move {
                ractor::call_t!(root, RootMsg::Revoke, 30_000, partitions.clone())
            })
        });
        match offsets {
            Ok(offsets) if !lost && !offsets.is_empty() => {
                let committed = offsets_to_commit(&self.readings_topic, &offsets)
                    .and_then(|tpl| consumer.commit(&tpl, CommitMode::Sync));
                if let Err(e) = committed {
                    tracing::warn!(error = %e, "commit on revocation failed; the next owner replays from the previous commit");
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "revocation did not complete; the next owner replays")
            }
        }
        tracing::info!(ms = started.elapsed().as_millis() as u64, "revocation done");
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Assign(tpl) = rebalance else {
            return;
        };
        let partitions = self.readings_partitions(tpl);
        if partitions.is_empty() {
            return;
        }
        // Nothing is read until the shard has restored and asked for its position.
        if let Err(e) = consumer.pause(tpl) {
            tracing::warn!(error = %e, "pause after assignment failed");
        }
        tracing::info!(?partitions, "partitions assigned; restoring");
        if let Some(root) = self.root.get() {
            let _ = root.cast(RootMsg::Assign(partitions));
        }
    }
}

pub type GroupConsumer = StreamConsumer<MonitorContext>;

fn base_config(opts: &MonitorOptions) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &opts.brokers)
        .set("client.id", "dolbom-monitor");
    if !opts.kafka_debug.is_empty() {
        c.set("debug", &opts.kafka_debug);
    }
    c
}

pub(crate) fn group_consumer(opts: &MonitorOptions) -> Result<Arc<GroupConsumer>, MonitorError> {
    let mut c = base_config(opts);
    c.set("group.id", &opts.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", &opts.assignment_strategy)
        .set("session.timeout.ms", opts.session_timeout_ms.to_string())
        .set(
            "heartbeat.interval.ms",
            (opts.session_timeout_ms / 4).max(100).to_string(),
        )
        .set("fetch.wait.max.ms", "50");
    if !opts.instance_id.is_empty() {
        c.set("group.instance.id", &opts.instance_id);
    }
    let ctx = MonitorContext {
        root: OnceLock::new(),
        drained: Default::default(),
        readings_topic: opts.topics.readings.clone(),
    };
    let consumer: GroupConsumer = c.create_with_context(ctx).map_err(MonitorError::Kafka)?;
    Ok(Arc::new(consumer))
}

pub(crate) fn producer(opts: &MonitorOptions) -> Result<FutureProducer, MonitorError> {
    base_config(opts)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "60000")
        .create()
        .map_err(MonitorError::Kafka)
}

/// A plain (non-group) consumer for restores and the changelog.
pub(crate) fn plain_consumer<C: FromClientConfig>(
    opts: &MonitorOptions,
    purpose: &str,
) -> Result<C, MonitorError> {
    base_config(opts)
        .set("group.id", format!("{}-{purpose}", opts.group_id))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", "50")
        .create()
        .map_err(MonitorError::Kafka)
}

use rdkafka::config::FromClientConfig;

/// Makes sure the three co-partitioned topics and the dead-letter topic
/// exist with matching partition counts; returns the partition count.
pub async fn ensure_topics(opts: &MonitorOptions) -> Result<i32, MonitorError> {
    let admin: AdminClient<DefaultClientContext> =
        base_config(opts).create().map_err(MonitorError::Kafka)?;
    let t = &opts.topics;
    let names = [&t.readings, &t.households, &t.incidents, &t.dead_letter];
    let counts =
        |admin: &AdminClient<DefaultClientContext>| -> Result<Vec<Option<i32>>, MonitorError> {
            let md = admin
                .inner()
                .fetch_metadata(None, KAFKA_TIMEOUT)
                .map_err(MonitorError::Kafka)?;
            Ok(names
                .iter()
                .map(|n| {
                    md.topics()
                        .iter()
                        .find(|x| x.name() == n.as_str() && !x.partitions().is_empty())
                        .map(|x| x.partitions().len() as i32)
                })
                .collect())
        };
    let existing = tokio::task::block_in_place(|| counts(&admin))?;
    let missing: Vec<&String> = names
        .iter()
        .zip(&existing)
        .filter(|(_, c)| c.is_none())
        .map(|(n, _)| *n)
        .collect();
    if !missing.is_empty() {
        if !opts.create_topics {
            return Err(MonitorError::MissingTopics(
                missing.iter().map(|s| s.to_string()).collect(),
            ));
        }
        let compact = [("cleanup.policy", "compact")];
        let new: Vec<NewTopic> = missing
            .iter()
            .map(|n| {
                let nt = NewTopic::new(
                    n.as_str(),
                    opts.partitions,
                    TopicReplication::Fixed(opts.replication_factor),
                );
                if n.as_str() == t.households {
                    compact.iter().fold(nt, |nt, (k, v)| nt.set(k, v))
                } else {
                    nt
                }
            })
            .collect();
        let results = admin
            .create_topics(
                new.iter(),
                &AdminOptions::new().operation_timeout(Some(KAFKA_TIMEOUT)),
            )
            .await
            .map_err(MonitorError::Kafka)?;
        for r in results {
            match r {
                Ok(name) => {
                    tracing::info!(topic = %name, partitions = opts.partitions, "created topic")
                }
                Err((name, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {
                    tracing::debug!(topic = %name, "topic created concurrently")
                }
                Err((name, code)) => {
                    return Err(MonitorError::TopicCreation(name, code.to_string()))
                }
            }
        }
    }
    // Metadata may take a moment to show new topics.
    let mut existing = Vec::new();
    for _ in 0..50 {
        existing = tokio::task::block_in_place(|| counts(&admin))?;
        if existing.iter().all(Option::is_some) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let co: HashSet<Option<i32>> = existing[..3].iter().copied().collect();
    if co.len() != 1 || existing[0].is_none() {
        return Err(MonitorError::PartitionMismatch(format!(
            "{} = {:?}, {} = {:?}, {} = {:?}",
            t.readings, existing[0], t.households, existing[1], t.incidents, existing[2]
        )));
    }
    Ok(existing[0].expect("checked"))
}

/// Reads a partition of `topic` from `from` to its current end, calling `f`
/// for each record (key, payload, offset). Blocking; run it on a blocking thread.
pub(crate) fn read_to_end(
    opts: &MonitorOptions,
    purpose: &str,
    topic: &str,
    partition: i32,
    from: Offset,
    mut f: impl FnMut(Option<&[u8]>, Option<&[u8]>, i64),
) -> Result<i64, MonitorError> {
    let consumer: BaseConsumer = plain_consumer(opts, purpose)?;
    let (low, high) = consumer
        .fetch_watermarks(topic, partition, KAFKA_TIMEOUT)
        .map_err(MonitorError::Kafka)?;
    let start = match from {
        Offset::Offset(o) => o.max(low),
        _ => low,
    };
    if start >= high {
        return Ok(high);
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(start))
        .map_err(MonitorError::Kafka)?;
    consumer.assign(&tpl).map_err(MonitorError::Kafka)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let mut next = start;
    // The end is where the high watermark says, and then until the partition
    // stays quiet briefly: some brokers (Tansu 0.6) report the base offset of
    // the last batch + 1 as the high watermark, not its last offset + 1.
    let mut idle_polls = 0;
    while next < high || idle_polls < 2 {
        if std::time::Instant::now() > deadline {
            return Err(MonitorError::RestoreTimeout(topic.to_string(), partition));
        }
        let wait = if next < high { 200 } else { 50 };
        match consumer.poll(Duration::from_millis(wait)) {
            None => {
                if next >= high {
                    idle_polls += 1;
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => idle_polls += 1,
            Some(Err(e)) => return Err(MonitorError::Kafka(e)),
            Some(Ok(m)) => {
                f(m.key(), m.payload(), m.offset());
                next = m.offset() + 1;
                idle_polls = 0;
            }
        }
    }
    Ok(next)
}

/// The group's committed offset for a partition, if any.
pub(crate) fn committed(
    consumer: &GroupConsumer,
    topic: &str,
    partition: i32,
) -> Result<Option<i64>, MonitorError> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    let c = consumer
        .committed_offsets(tpl, KAFKA_TIMEOUT)
        .map_err(MonitorError::Kafka)?;
    Ok(c.find_partition(topic, partition)
        .and_then(|e| match e.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        }))
}
