//! The ingest loop: the group consumer, per-partition downsamplers, the
//! writer, and commits of what the store accepted.

use crate::error::IngestError;
use crate::metrics as m;
use crate::options::HistoryOptions;
use dolbom_history::{Downsampler, HistoryError, HistoryStore, HistoryWriter};
use dolbom_proto::v1::{IncidentEvent, PlugReading};
use prost::Message as _;
use rdkafka::consumer::{Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Counts of one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IngestSummary {
    pub readings: u64,
    pub incident_events: u64,
    pub rejected: u64,
    pub late_readings: u64,
    pub commits: u64,
}

/// A reading stamped after its record was sent (a plug clock running
/// ahead) counts at the send time, as the monitor counts it: one skewed
/// plug must not move its partition's minutes ahead and make every
/// neighbour's readings late.
fn retimed(mut r: PlugReading, sent_ms: Option<i64>) -> PlugReading {
    if let Some(sent) = sent_ms.filter(|&s| r.observed_at_ms > s) {
        metrics::counter!(m::READINGS_RETIMED).increment(1);
        r.observed_at_ms = sent;
    }
    r
}

/// Remembers partitions taken away, so their in-memory minutes are dropped
/// (the next owner replays them from the committed offset).
#[derive(Default)]
struct Ctx {
    revoked: Mutex<Vec<(String, i32)>>,
}

impl ClientContext for Ctx {}

impl ConsumerContext for Ctx {
    fn pre_rebalance(&self, _: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let mut r = self.revoked.lock().expect("revoked lock");
            for e in tpl.elements() {
                r.push((e.topic().to_string(), e.partition()));
            }
        }
    }
}

struct ReadingsPartition {
    downsampler: Downsampler,
    /// Next offset after the last record seen.
    next: i64,
}

/// Opens the store the options name.
pub async fn open_store(opts: &HistoryOptions) -> Result<Arc<dyn HistoryStore>, HistoryError> {
    dolbom_history::open_store(&opts.store, &opts.data_dir, &opts.scylla, opts.retention).await
}

/// Runs the ingest until `shutdown` fires, then writes what is open, flushes
/// and commits.
pub async fn run(
    opts: HistoryOptions,
    shutdown: CancellationToken,
) -> Result<IngestSummary, IngestError> {
    dolbom_prometheus::install(&opts.metrics_listen)?;
    m::describe();
    dolbom_history::metrics::describe();
    dolbom_telemetry::describe();
    let store = open_store(&opts).await?;
    let (writer, writer_task) = HistoryWriter::spawn(store.clone(), opts.writer.clone());
    let consumer: StreamConsumer<Ctx> = opts
        .kafka
        .group_consumer("dolbom-history", &opts.group_id, "cooperative-sticky")
        // Offsets are stored by hand: a readings partition commits the first
        // offset of a minute still open.
        .set("enable.auto.offset.store", "false")
        .set("fetch.wait.max.ms", "100")
        .create_with_context(Ctx::default())?;
    let topics: Vec<&str> = [opts.readings_topic.as_str(), opts.incidents_topic.as_str()]
        .into_iter()
        .filter(|t| !t.is_empty())
        .collect();
    consumer.subscribe(&topics)?;
    tracing::info!(group = %opts.group_id, store = store.backend(), "history ingest starting");

    let mut summary = IngestSummary::default();
    let mut readings: HashMap<i32, ReadingsPartition> = HashMap::new();
    let mut incidents_next: HashMap<i32, i64> = HashMap::new();
    let mut commit_tick = tokio::time::interval(Duration::from_millis(opts.commit_interval_ms));
    let mut retention_tick =
        tokio::time::interval(Duration::from_secs(opts.retention_interval_secs.max(1)));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = commit_tick.tick() => {
                commit(&opts, &consumer, &writer, &mut readings, &mut incidents_next, false, &mut summary).await?;
            }
            _ = retention_tick.tick() => {
                match store.enforce_retention(dolbom_domain::Ts::now().millis()).await {
                    Ok(r) if r.deleted_rows > 0 => tracing::info!(deleted = r.deleted_rows, "history retention sweep"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "history retention sweep failed; will retry"),
                }
            }
            msg = consumer.recv() => {
                let msg = match msg {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(error = %e, "kafka receive error");
                        continue;
                    }
                };
                forget_revoked(&consumer, &opts, &mut readings, &mut incidents_next);
                let (p, offset) = (msg.partition(), msg.offset());
                let payload = msg.payload().unwrap_or_default();
                if msg.topic() == opts.readings_topic {
                    let part = match readings.get_mut(&p) {
                        Some(part) => part,
                        None => {
                            let part = resume(&consumer, &opts, p).await?;
                            readings.entry(p).or_insert(part)
                        }
                    };
                    part.next = offset + 1;
                    let sent_ms = msg.timestamp().to_millis();
                    match PlugReading::decode(payload).map(|r| retimed(r, sent_ms)) {
                        Ok(r) if r.observed_at_ms > dolbom_domain::Ts::now().millis() + opts.max_ahead_ms => {
                            reject(&mut summary, "reading_ahead_of_clock", p, offset);
                        }
                        Ok(r) if implausible(&r) => {
                            reject(&mut summary, "reading_implausible", p, offset);
                        }
                        Ok(r) if !r.household_id.is_empty() => {
                            summary.readings += 1;
                            let watts = dolbom_domain::convert::reading_watts(&r);
                            if !part.downsampler.push(&r.household_id, r.observed_at_ms, watts, r.lux, offset) {
                                summary.late_readings += 1;
                                metrics::counter!(m::LATE_READINGS).increment(1);
                            }
                        }
                        _ => reject(&mut summary, "reading", p, offset),
                    }
                } else {
                    incidents_next.insert(p, offset + 1);
                    match IncidentEvent::decode(payload) {
                        Ok(e) if dolbom_domain::checks::check_incident_event(&e).is_ok() => {
                            summary.incident_events += 1;
                            writer.send_incident_event(e).await?;
                        }
                        _ => reject(&mut summary, "incident_event", p, offset),
                    }
                }
            }
        }
    }
    commit(
        &opts,
        &consumer,
        &writer,
        &mut readings,
        &mut incidents_next,
        true,
        &mut summary,
    )
    .await?;
    drop(writer);
    let _ = writer_task.await;
    tracing::info!(?summary, "history ingest stopped");
    Ok(summary)
}

fn reject(summary: &mut IngestSummary, kind: &'static str, partition: i32, offset: i64) {
    summary.rejected += 1;
    metrics::counter!(m::REJECTED, "kind" => kind).increment(1);
    tracing::warn!(partition, offset, kind, "malformed record skipped");
}

fn forget_revoked(
    consumer: &StreamConsumer<Ctx>,
    opts: &HistoryOptions,
    readings: &mut HashMap<i32, ReadingsPartition>,
    incidents: &mut HashMap<i32, i64>,
) {
    let revoked = std::mem::take(&mut *consumer.context().revoked.lock().expect("revoked lock"));
    for (topic, p) in revoked {
        if topic == opts.readings_topic {
            readings.remove(&p);
        } else {
            incidents.remove(&p);
        }
    }
}

/// A readings partition's downsampler, resumed after the minute cutoff in
/// the committed offset's metadata (minutes up to it are already stored).
/// The cutoff must be read: starting without it would write a partial
/// minute over a complete one, so a failing read is retried and then ends
/// the ingest with an error (its restart tries again).
async fn resume(
    consumer: &StreamConsumer<Ctx>,
    opts: &HistoryOptions,
    p: i32,
) -> Result<ReadingsPartition, IngestError> {
    let mut downsampler = Downsampler::new(opts.lateness_ms);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&opts.readings_topic, p);
    let mut tries = 0;
    let committed = loop {
        match consumer.committed_offsets(tpl.clone(), Duration::from_secs(5)) {
            Ok(c) => break c,
            Err(e) if tries < 5 => {
                tries += 1;
                tracing::warn!(partition = p, error = %e, tries, "reading the saved minute cutoff failed; retrying");
                tokio::time::sleep(Duration::from_millis(500 * tries)).await;
            }
            Err(e) => return Err(e.into()),
        }
    };
    let cutoff = committed
        .find_partition(&opts.readings_topic, p)
        .and_then(|e| e.metadata().parse::<i64>().ok());
    if let Some(cutoff) = cutoff {
        downsampler.resume_after(cutoff);
        tracing::info!(
            partition = p,
            cutoff,
            "readings partition resumed after stored minutes"
        );
    }
    Ok(ReadingsPartition {
        downsampler,
        next: 0,
    })
}

async fn commit(
    opts: &HistoryOptions,
    consumer: &StreamConsumer<Ctx>,
    writer: &HistoryWriter,
    readings: &mut HashMap<i32, ReadingsPartition>,
    incidents: &mut HashMap<i32, i64>,
    all: bool,
    summary: &mut IngestSummary,
) -> Result<(), IngestError> {
    let mut tpl = TopicPartitionList::new();
    let mut positions = Vec::new();
    for (&p, part) in readings.iter_mut() {
        let closed = if all {
            part.downsampler.drain_all()
        } else {
            part.downsampler.drain_closed()
        };
        writer.send_closed(closed).await?;
        if part.next > 0 {
            let offset = part.downsampler.low_position().unwrap_or(part.next);
            positions.push((p, offset, part.downsampler.cutoff_ms()));
        }
    }
    // Only what the store has accepted is committed.
    writer.flush().await?;
    for (p, offset, cutoff) in positions {
        tpl.add_partition_offset(&opts.readings_topic, p, Offset::Offset(offset))?;
        if let Some(mut e) = tpl.find_partition(&opts.readings_topic, p) {
            e.set_metadata(cutoff.to_string());
        }
    }
    for (&p, &next) in incidents.iter() {
        tpl.add_partition_offset(&opts.incidents_topic, p, Offset::Offset(next))?;
    }
    if tpl.count() == 0 {
        return Ok(());
    }
    let mode = if all {
        rdkafka::consumer::CommitMode::Sync
    } else {
        rdkafka::consumer::CommitMode::Async
    };
    match consumer.commit(&tpl, mode) {
        Ok(()) => summary.commits += 1,
        Err(e) => tracing::warn!(error = %e, "offset commit failed; the next one covers it"),
    }
    Ok(())
}

/// A reading the monitor's engine would refuse for its values (negative,
/// not finite, absurd): kept out of the aggregates the same way.
fn implausible(r: &PlugReading) -> bool {
    let watts = dolbom_domain::convert::reading_watts(r);
    dolbom_engine::check_values(watts.map(|w| w as f32), r.lux.map(|l| l as f32)).is_err()
}
