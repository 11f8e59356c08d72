//! Areas judged across monitors: the shards of this monitor share one
//! [`AreaBoard`]; this task shares it with the other monitors of the group
//! through the compacted areas topic (`topics.areas`, one record per area
//! and partition, keyed `area@partition`, JSON).
//!
//! Data flow: a shard changes its part of an area → the board marks it →
//! every [`SHARE_EVERY`] this task takes the changed parts and produces them;
//! the same task reads the whole topic from its beginning (its own records
//! too) and merges what it reads into the board, where a newer version
//! always wins. A part the broker did not take is shared again. A part
//! takes about [`SHARE_EVERY`] plus a fetch to reach the other monitors,
//! far inside an offline opening's hold (`shard.area.hold_ms`, 2 minutes).

use crate::error::MonitorError;
use crate::kafka::{self, KAFKA_TIMEOUT};
use crate::metrics as m;
use crate::options::MonitorOptions;
use dolbom_shard::{AreaBoard, SharedCounts};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How often changed parts are shared.
pub const SHARE_EVERY: Duration = Duration::from_millis(500);
const CLIENT_ID: &str = "dolbom-monitor-areas";

/// Starts sharing `board` with the other monitors until `stop`; without an
/// areas topic (`topics.areas` empty) nothing is shared and this monitor's
/// shards judge areas from their own parts only.
pub(crate) fn share(
    opts: &MonitorOptions,
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
    for p in md.topics().iter().flat_map(|t| t.partitions()) {
        tpl.add_partition_offset(&topic, p.id(), Offset::Beginning)?;
    }
    reader.assign(&tpl)?;
    Ok(Some(tokio::spawn(run(
        topic, producer, reader, board, stop,
    ))))
}

async fn run(
    topic: String,
    producer: FutureProducer,
    reader: StreamConsumer,
    board: AreaBoard,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(SHARE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => publish(&topic, &producer, &board),
            got = reader.recv() => match got {
                Ok(msg) => merge(&board, msg.payload()),
                Err(e) => {
                    tracing::warn!(error = %e, "areas topic read failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            },
        }
    }
}

/// Produces every changed part; a failed delivery is marked to go again.
fn publish(topic: &str, producer: &FutureProducer, board: &AreaBoard) {
    for part in board.take_changed() {
        let payload = serde_json::to_vec(&part).expect("plain data serializes");
        let key = part.key();
        let record = FutureRecord::to(topic).key(&key).payload(&payload);
        match producer.send_result(record) {
            Ok(delivery) => {
                let board = board.clone();
                tokio::spawn(async move {
                    match delivery.await {
                        Ok(Ok(_)) => metrics::counter!(m::AREA_PARTS_SHARED).increment(1),
                        Ok(Err((e, _))) => failed(&board, &part, &e.to_string()),
                        Err(_) => failed(&board, &part, "delivery cancelled"),
                    }
                });
            }
            Err((e, _)) => failed(board, &part, &e.to_string()),
        }
    }
}

fn failed(board: &AreaBoard, part: &SharedCounts, error: &str) {
    metrics::counter!(m::AREA_SHARE_FAILURES).increment(1);
    tracing::warn!(area = %part.area, partition = part.partition, error, "area part not shared; sharing it again");
    board.retry(part);
}

/// Merges one record of the areas topic; a malformed one is logged and skipped.
fn merge(board: &AreaBoard, payload: Option<&[u8]>) {
    let Some(bytes) = payload else { return };
    match serde_json::from_slice::<SharedCounts>(bytes) {
        Ok(part) => {
            if board.merge(part) {
                metrics::counter!(m::AREA_PARTS_MERGED).increment(1);
            }
        }
        Err(e) => tracing::warn!(error = %e, "malformed areas record skipped"),
    }
}
