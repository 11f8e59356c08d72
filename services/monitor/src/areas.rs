//! Areas judged across monitors: the shards of this monitor share one
//! [`AreaBoard`]; this task shares it with the other monitors of the group
//! through the compacted areas topic (`topics.areas`, JSON): one record per
//! area and partition (keyed `area@partition`), and this monitor's progress
//! ([`SharedProgress`], keyed `~progress@monitor`) on every partition of the
//! topic.
//!
//! Data flow: a shard changes its part of an area → the board marks it →
//! every [`SHARE_EVERY`] this task takes the hosted partitions' progress,
//! then the changed parts, produces the parts and waits for the broker to
//! take them all, and only then produces the progress to every partition of
//! the topic. A reader that has read a monitor's progress on every partition
//! has therefore read every part that monitor shared before it, and a held
//! offline opening can wait for another monitor's partitions to judge up to
//! its release time — whatever either monitor replays, however fast. The
//! same task reads the whole topic from its beginning (its own records too)
//! and merges what it reads into the board, where a newer version always
//! wins. A part or progress the broker did not take is shared again.

use crate::error::MonitorError;
use crate::kafka::{self, KAFKA_TIMEOUT};
use crate::metrics as m;
use crate::options::MonitorOptions;
use dolbom_domain::Ts;
use dolbom_shard::{AreaBoard, SharedCounts, SharedProgress};
use futures::future::join_all;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::BorrowedMessage;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How often changed parts and progress are shared.
pub const SHARE_EVERY: Duration = Duration::from_millis(500);
const CLIENT_ID: &str = "dolbom-monitor-areas";

/// Starts sharing `board` with the other monitors until `stop`; without an
/// areas topic (`topics.areas` empty) nothing is shared and this monitor's
/// shards judge areas from their own partitions only. `readings_partitions`
/// is the readings topic's partition count (`kafka::ensure_topics`).
pub(crate) fn share(
    opts: &MonitorOptions,
    readings_partitions: i32,
    board: AreaBoard,
    stop: CancellationToken,
) -> Result<Option<JoinHandle<()>>, MonitorError> {
    let topic = opts.topics.areas.clone();
    if topic.is_empty() {
        tracing::warn!("no areas topic: areas are judged from this monitor's partitions only");
        return Ok(None);
    }
    let producer: FutureProducer = opts
        .kafka
        .producer(CLIENT_ID, KAFKA_TIMEOUT.as_millis() as u32)
        .create()?;
    let reader: StreamConsumer = kafka::reader(opts, "areas")?;
    let md = reader
        .client()
        .fetch_metadata(Some(&topic), KAFKA_TIMEOUT)?;
    let mut tpl = TopicPartitionList::new();
    let mut copies = Vec::new();
    for p in md.topics().iter().flat_map(|t| t.partitions()) {
        tpl.add_partition_offset(&topic, p.id(), Offset::Beginning)?;
        copies.push(p.id());
    }
    reader.assign(&tpl)?;
    // Every partition of the readings topic another monitor hosts is waited
    // for, whether or not its parts have arrived yet.
    board.share_progress_on(copies.len(), readings_partitions);
    let sharer = Sharer {
        topic,
        monitor: monitor_id(&opts.instance_id),
        copies,
        producer,
        board,
    };
    Ok(Some(tokio::spawn(run(sharer, reader, stop))))
}

/// This process among the monitors sharing progress: its instance id (if
/// any), process id and start time, so that a restart is a new sharer.
fn monitor_id(instance: &str) -> String {
    let started = Ts::now().millis();
    let pid = std::process::id();
    if instance.is_empty() {
        format!("{pid}-{started}")
    } else {
        format!("{instance}-{pid}-{started}")
    }
}

/// What one monitor shares, and where.
struct Sharer {
    topic: String,
    monitor: String,
    /// The partitions of the areas topic (progress goes to each).
    copies: Vec<i32>,
    producer: FutureProducer,
    board: AreaBoard,
}

async fn run(sharer: Sharer, reader: StreamConsumer, stop: CancellationToken) {
    let mut tick = tokio::time::interval(SHARE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => sharer.share().await,
            got = reader.recv() => match got {
                Ok(msg) => merge(&sharer.board, &msg),
                Err(e) => {
                    tracing::warn!(error = %e, "areas topic read failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            },
        }
    }
}

impl Sharer {
    /// Shares the changed parts and then, once the broker took every one,
    /// the progress taken before them.
    async fn share(&self) {
        let progress = self.board.take_progress(&self.monitor, Ts::now().millis());
        let parts = self.board.take_changed();
        let sent = parts.iter().map(|part| self.send_part(part));
        let all_parts = join_all(sent).await.into_iter().all(|ok| ok);
        let Some(progress) = progress else { return };
        if !all_parts {
            // Its parts go again next time; so does the progress after them.
            self.board.progress_unshared();
            return;
        }
        let payload = serde_json::to_vec(&progress).expect("plain data serializes");
        let key = progress.key();
        let sent = self.copies.iter().map(|&copy| {
            let record = FutureRecord::to(&self.topic)
                .partition(copy)
                .key(&key)
                .payload(&payload);
            delivered(&self.producer, record)
        });
        let failures: Vec<String> = join_all(sent).await.into_iter().flatten().collect();
        if let Some(error) = failures.first() {
            metrics::counter!(m::AREA_SHARE_FAILURES).increment(1);
            tracing::warn!(error = %error, copies = failures.len(), "area progress not shared; sharing it again");
            self.board.progress_unshared();
        }
    }

    /// Produces one part; `false` (and marked to go again) if the broker
    /// did not take it.
    async fn send_part(&self, part: &SharedCounts) -> bool {
        let payload = serde_json::to_vec(part).expect("plain data serializes");
        let key = part.key();
        let record = FutureRecord::to(&self.topic).key(&key).payload(&payload);
        match delivered(&self.producer, record).await {
            None => {
                metrics::counter!(m::AREA_PARTS_SHARED).increment(1);
                true
            }
            Some(error) => {
                metrics::counter!(m::AREA_SHARE_FAILURES).increment(1);
                tracing::warn!(area = %part.area, partition = part.partition, error, "area part not shared; sharing it again");
                self.board.retry(part);
                false
            }
        }
    }
}

/// Sends `record` and waits for the broker: `None` once it took it, else
/// why not.
async fn delivered(
    producer: &FutureProducer,
    record: FutureRecord<'_, String, Vec<u8>>,
) -> Option<String> {
    match producer.send_result(record) {
        Ok(delivery) => match delivery.await {
            Ok(Ok(_)) => None,
            Ok(Err((e, _))) => Some(e.to_string()),
            Err(_) => Some("delivery cancelled".into()),
        },
        Err((e, _)) => Some(e.to_string()),
    }
}

/// Merges one record of the areas topic: another monitor's progress (as
/// read on that partition of the topic) or a part; a malformed one is logged
/// and skipped.
fn merge(board: &AreaBoard, msg: &BorrowedMessage<'_>) {
    let Some(bytes) = msg.payload() else { return };
    let progress = msg
        .key()
        .is_some_and(|k| k.starts_with(SharedProgress::KEY_PREFIX.as_bytes()));
    if progress {
        match serde_json::from_slice::<SharedProgress>(bytes) {
            Ok(p) => board.merge_progress(msg.partition(), &p),
            Err(e) => tracing::warn!(error = %e, "malformed area progress record skipped"),
        }
        return;
    }
    match serde_json::from_slice::<SharedCounts>(bytes) {
        Ok(part) => {
            if board.merge(part) {
                metrics::counter!(m::AREA_PARTS_MERGED).increment(1);
            }
        }
        Err(e) => tracing::warn!(error = %e, "malformed areas record skipped"),
    }
}
