//! The monitor's Kafka pieces, typed and free of actors: the group consumer
//! whose rebalances arrive as [`Rebalance`] events with acknowledgements,
//! the [`IncidentProducer`] (incident events and dead letters), the
//! [`OffsetCommitter`], topic checks, the blocking reads a shard does when it
//! restores ([`read_to_end`]) and the [`follow_changelog`] task.
//!
//! They stay in one file (about 600 lines) so that librdkafka is configured
//! and called in one place of the monitor.
//!
//! Data flow: librdkafka's rebalance callback → [`Rebalance`] on a channel →
//! whoever runs the supervision tree; on revocation the callback blocks until
//! the event's acknowledgement brings the offsets the revoked shards
//! snapshotted, and commits them before the partitions go.

use crate::error::MonitorError;
use crate::options::MonitorOptions;
use dolbom_proto::v1 as pb;
use prost::Message as _;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance as RdRebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer as _};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::mpsc;

pub(crate) const KAFKA_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a revocation waits for its shards' snapshots.
const REVOKE_TIMEOUT: Duration = Duration::from_secs(30);
const CLIENT_ID: &str = "dolbom-monitor";
/// The incident producer's own client id: the broker (and a fault
/// injector) can tell its requests from the consumer's.
pub const PRODUCER_CLIENT_ID: &str = "dolbom-monitor-producer";

/// One Kafka record, owned.
#[derive(Clone, Debug)]
pub struct Rec {
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    /// The record's Kafka timestamp (ms), if it has one.
    pub timestamp_ms: Option<i64>,
    /// The W3C `traceparent` header, if the producer sent one (registry
    /// changes from notify do).
    pub traceparent: Option<String>,
}

impl Rec {
    pub fn from_message(m: &BorrowedMessage<'_>) -> Rec {
        Rec {
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().map(<[u8]>::to_vec),
            timestamp_ms: m.timestamp().to_millis(),
            traceparent: dolbom_telemetry::kafka::traceparent(m.headers()),
        }
    }
}

/// A change of the `plug.readings` partitions this member owns.
#[derive(Debug)]
pub enum Rebalance {
    /// Newly assigned (already paused: nothing is read until each shard has
    /// restored and asked for its position).
    Assigned(Vec<i32>),
    /// Being revoked: snapshot them and answer with the offsets to commit
    /// (`lost`: another member may already own them; nothing is committed).
    Revoked {
        partitions: Vec<i32>,
        lost: bool,
        done: std::sync::mpsc::SyncSender<Vec<(i32, i64)>>,
    },
}

/// The group consumer's context: turns rebalances into [`Rebalance`] events.
pub struct MonitorContext {
    events: mpsc::UnboundedSender<Rebalance>,
    /// Set once the monitor has drained its shards itself.
    drained: AtomicBool,
    readings_topic: String,
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

    /// The monitor has snapshotted and committed everything itself: later
    /// revocations (as it leaves the group) have nothing to do.
    pub fn mark_drained(&self) {
        self.drained.store(true, Ordering::SeqCst);
    }
}

impl ConsumerContext for MonitorContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &RdRebalance<'_>) {
        let RdRebalance::Revoke(tpl) = rebalance else {
            return;
        };
        if self.drained.load(Ordering::SeqCst) {
            return;
        }
        let partitions = self.readings_partitions(tpl);
        if partitions.is_empty() {
            return;
        }
        let lost = consumer.assignment_lost();
        let started = std::time::Instant::now();
        tracing::info!(?partitions, lost, "partitions revoked; snapshotting");
        let (done, offsets) = std::sync::mpsc::sync_channel(1);
        if self
            .events
            .send(Rebalance::Revoked {
                partitions,
                lost,
                done,
            })
            .is_err()
        {
            return;
        }
        // The callback runs inside a poll of the consumer: wait off the
        // runtime's worker so the shards can snapshot meanwhile.
        let offsets = tokio::task::block_in_place(|| offsets.recv_timeout(REVOKE_TIMEOUT));
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

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &RdRebalance<'_>) {
        let RdRebalance::Assign(tpl) = rebalance else {
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
        let _ = self.events.send(Rebalance::Assigned(partitions));
    }
}

pub type GroupConsumer = StreamConsumer<MonitorContext>;

/// The list to commit for `topic`: per partition, the next offset to read.
pub(crate) fn offsets_to_commit(
    topic: &str,
    offsets: &[(i32, i64)],
) -> KafkaResult<TopicPartitionList> {
    let mut tpl = TopicPartitionList::new();
    for &(p, off) in offsets {
        tpl.add_partition_offset(topic, p, Offset::Offset(off))?;
    }
    Ok(tpl)
}

/// The monitor's member of its consumer group, and its rebalance events.
pub(crate) fn group_consumer(
    opts: &MonitorOptions,
) -> Result<(Arc<GroupConsumer>, mpsc::UnboundedReceiver<Rebalance>), MonitorError> {
    let mut c = opts
        .kafka
        .group_consumer(CLIENT_ID, &opts.group_id, &opts.assignment_strategy);
    // Offsets are committed by hand, only what a durable snapshot covers.
    // End-of-partition events tell a shard it has read everything there is
    // (see `Shard::set_caught_up`).
    c.set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("session.timeout.ms", opts.session_timeout_ms.to_string())
        .set(
            "heartbeat.interval.ms",
            (opts.session_timeout_ms / 4).max(100).to_string(),
        );
    if !opts.instance_id.is_empty() {
        c.set("group.instance.id", &opts.instance_id);
    }
    let (events, rx) = mpsc::unbounded_channel();
    let ctx = MonitorContext {
        events,
        drained: AtomicBool::new(false),
        readings_topic: opts.topics.readings.clone(),
    };
    let consumer: GroupConsumer = c.create_with_context(ctx)?;
    Ok((Arc::new(consumer), rx))
}

/// Commits `plug.readings` offsets for the group.
#[derive(Clone)]
pub(crate) struct OffsetCommitter {
    consumer: Arc<GroupConsumer>,
    topic: String,
}

impl OffsetCommitter {
    pub(crate) fn new(consumer: Arc<GroupConsumer>, topic: &str) -> Self {
        OffsetCommitter {
            consumer,
            topic: topic.to_string(),
        }
    }

    /// Commits, per partition, the next offset to read.
    pub(crate) fn commit(&self, offsets: &[(i32, i64)], mode: CommitMode) -> KafkaResult<()> {
        let tpl = offsets_to_commit(&self.topic, offsets)?;
        self.consumer.commit(&tpl, mode)
    }
}

/// Publishes a shard's incident events (to the shard's own partition of
/// `care.incidents`) and dead letters, through one idempotent producer.
///
/// The producer is renewable: when deliveries fail in a way that leaves its
/// idempotent identity broken (fenced, unknown producer id, out-of-order
/// sequence, a fatal error), [`IncidentProducer::renew`] replaces it with a
/// fresh one and the shards re-send what was not acknowledged through it.
#[derive(Clone)]
pub(crate) struct IncidentProducer {
    current: Arc<RwLock<(u64, FutureProducer)>>,
    config: Arc<rdkafka::ClientConfig>,
    incidents: String,
    dead_letter: String,
    readings: String,
}

/// Delivery errors after which the producer itself must be replaced.
fn breaks_producer(e: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::ProducerFenced
                | C::InvalidProducerEpoch
                | C::UnknownProducerId
                | C::OutOfOrderSequenceNumber
                | C::InvalidProducerIdMapping
                | C::Fatal
        )
    )
}

impl IncidentProducer {
    pub(crate) fn new(opts: &MonitorOptions) -> Result<Self, MonitorError> {
        let config = opts.kafka.producer(PRODUCER_CLIENT_ID, 60_000);
        Ok(IncidentProducer {
            current: Arc::new(RwLock::new((0, config.create()?))),
            config: Arc::new(config),
            incidents: opts.topics.incidents.clone(),
            dead_letter: opts.topics.dead_letter.clone(),
            readings: opts.topics.readings.clone(),
        })
    }

    /// The current producer and its generation.
    fn producer(&self) -> (u64, FutureProducer) {
        self.current.read().expect("producer").clone()
    }

    /// The generation of the producer in use (events remember it, so that
    /// a failure renews only the producer it happened on).
    pub(crate) fn generation(&self) -> u64 {
        self.current.read().expect("producer").0
    }

    /// Whether a delivery failure on generation `generation` calls for a
    /// new producer: an error that breaks its identity, or a fatal error.
    pub(crate) fn needs_renewal(&self, generation: u64, e: Option<&KafkaError>) -> bool {
        let (g, p) = self.producer();
        g == generation && (e.is_some_and(breaks_producer) || p.client().fatal_error().is_some())
    }

    /// Replaces the producer of generation `generation` with a new one
    /// (once, however many shards ask). What the old one still holds fails
    /// or is dropped, and is re-sent by its shard through the new one.
    pub(crate) fn renew(&self, generation: u64) -> Result<(), KafkaError> {
        let mut cur = self.current.write().expect("producer");
        if cur.0 != generation {
            return Ok(());
        }
        let fresh: FutureProducer = self.config.create()?;
        tracing::warn!(generation = generation + 1, "incident producer replaced");
        metrics::counter!(crate::metrics::PRODUCER_RENEWALS).increment(1);
        *cur = (generation + 1, fresh);
        Ok(())
    }

    /// Enqueues an incident event keyed by its household (or its subject,
    /// for a platform incident); waits while the producer's queue is full.
    /// Returns the delivery and the producer generation it went to.
    /// The send is a `care.incidents publish` span, child of `parent`; its
    /// W3C trace context goes in the record's headers.
    pub(crate) fn publish(
        &self,
        partition: i32,
        ev: &pb::IncidentEvent,
        parent: &tracing::Span,
    ) -> Result<(u64, DeliveryFuture), KafkaError> {
        let span = tracing::info_span!(
            parent: parent,
            "care.incidents publish",
            otel.kind = "producer",
            messaging.system = "kafka",
            messaging.operation.type = "publish",
            messaging.destination.name = %self.incidents,
            messaging.destination.partition.id = partition,
            dolbom.incident_id = %ev.incident_id,
        );
        let headers = dolbom_telemetry::kafka::inject(&span, OwnedHeaders::new());
        let key = if ev.household_id.is_empty() {
            &ev.incident_id
        } else {
            &ev.household_id
        };
        let payload = ev.encode_to_vec();
        let (generation, producer) = self.producer();
        loop {
            let record = FutureRecord::to(&self.incidents)
                .partition(partition)
                .key(key.as_str())
                .payload(&payload)
                .headers(headers.clone());
            match producer.send_result(record) {
                Ok(f) => return Ok((generation, f)),
                Err((
                    KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                    _,
                )) => {
                    tracing::warn!("producer queue full; waiting");
                    producer.poll(Duration::from_millis(50));
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    /// Sends a record that cannot be processed to the dead-letter topic,
    /// with where it came from and why.
    pub(crate) fn dead_letter(
        &self,
        topic: &str,
        partition: i32,
        rec: &Rec,
        reason: &str,
    ) -> Result<(), KafkaError> {
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "dolbom-source",
                value: Some(&format!("{topic}/{partition}@{}", rec.offset)),
            })
            .insert(Header {
                key: "dolbom-reason",
                value: Some(reason),
            });
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&self.dead_letter).headers(headers);
        if let Some(k) = &rec.key {
            record = record.key(k.as_slice());
        }
        if let Some(p) = &rec.payload {
            record = record.payload(p.as_slice());
        }
        self.producer()
            .1
            .send_result(record)
            .map(drop)
            .map_err(|(e, _)| e)
    }

    /// The end offset of a `plug.readings` partition (for lag). Blocking;
    /// asked of the producer's client, because the group consumer may be
    /// inside a rebalance callback waiting for the caller.
    pub(crate) fn readings_end(&self, partition: i32) -> KafkaResult<i64> {
        self.producer()
            .1
            .client()
            .fetch_watermarks(&self.readings, partition, Duration::from_secs(2))
            .map(|(_, high)| high)
    }

    /// Waits until everything enqueued is delivered (or `timeout`).
    pub(crate) fn flush(&self, timeout: Duration) -> KafkaResult<()> {
        self.producer().1.flush(timeout)
    }
}

/// A consumer whose partitions are assigned by hand (restores, changelog,
/// areas).
pub(crate) fn reader<C: rdkafka::config::FromClientConfig>(
    opts: &MonitorOptions,
    purpose: &str,
) -> Result<C, MonitorError> {
    Ok(opts
        .kafka
        .reader(CLIENT_ID, &format!("{}-{purpose}", opts.group_id))
        .create()?)
}

/// Makes sure the three co-partitioned topics, the dead-letter topic and
/// the areas topic exist, the first three with matching partition counts;
/// returns the partition count.
pub async fn ensure_topics(opts: &MonitorOptions) -> Result<i32, MonitorError> {
    let admin: AdminClient<DefaultClientContext> = opts.kafka.client(CLIENT_ID).create()?;
    let t = &opts.topics;
    let names = [
        &t.readings,
        &t.households,
        &t.incidents,
        &t.dead_letter,
        &t.areas,
    ];
    let counts =
        |admin: &AdminClient<DefaultClientContext>| -> Result<Vec<Option<i32>>, MonitorError> {
            let md = admin.inner().fetch_metadata(None, KAFKA_TIMEOUT)?;
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
                if n.as_str() == t.households || n.as_str() == t.areas {
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
            .await?;
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
/// for each record (key, payload, Kafka timestamp in ms); returns the offset
/// after the last. Blocking; run it on a blocking thread.
pub(crate) fn read_to_end(
    opts: &MonitorOptions,
    topic: &str,
    partition: i32,
    from: Offset,
    mut f: impl FnMut(Option<&[u8]>, Option<&[u8]>, Option<i64>),
) -> Result<i64, MonitorError> {
    let consumer: BaseConsumer = reader(opts, "restore")?;
    let (low, high) = consumer.fetch_watermarks(topic, partition, KAFKA_TIMEOUT)?;
    let start = match from {
        Offset::Offset(o) => o.max(low),
        _ => low,
    };
    if start >= high {
        return Ok(high);
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(start))?;
    consumer.assign(&tpl)?;
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
                f(m.key(), m.payload(), m.timestamp().to_millis());
                next = m.offset() + 1;
                idle_polls = 0;
            }
        }
    }
    Ok(next)
}

/// The group's committed offset of a `plug.readings` partition, if any.
pub(crate) fn committed(
    consumer: &GroupConsumer,
    topic: &str,
    partition: i32,
) -> Result<Option<i64>, MonitorError> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    let c = consumer.committed_offsets(tpl, KAFKA_TIMEOUT)?;
    Ok(c.find_partition(topic, partition)
        .and_then(|e| match e.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        }))
}

/// Follows a partition of `care.households` from `from`, handing batches of
/// up to 512 records to `deliver` until it returns false or `alive` does
/// (checked every second while the changelog is quiet).
pub(crate) fn follow_changelog(
    opts: &MonitorOptions,
    partition: i32,
    from: i64,
    alive: impl Fn() -> bool + Send + 'static,
    deliver: impl Fn(Vec<Rec>) -> bool + Send + 'static,
) -> Result<tokio::task::JoinHandle<()>, MonitorError> {
    use futures::FutureExt;
    let consumer: StreamConsumer = reader(opts, "changelog")?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&opts.topics.households, partition, Offset::Offset(from))?;
    consumer.assign(&tpl)?;
    Ok(tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                r = consumer.recv() => Some(r),
                _ = tokio::time::sleep(Duration::from_secs(1)) => None,
            };
            let Some(next) = next else {
                if !alive() {
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
            if !deliver(batch) {
                break;
            }
        }
    }))
}
