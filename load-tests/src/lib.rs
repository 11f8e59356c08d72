//! Benchmarks and load generators that measure dolbom's targets.
//!
//! Owns the measurement binaries under `src/bin/` (each prints its figures;
//! none asserts timings) and small helpers they share: `engine-bench`
//! (household engine), `monitor-memory` (bytes per idle household in the
//! shards), `monitor-bench` (monitor vs. a bare rdkafka loop over Tansu, and
//! deadline-to-incident latency), `history-bench` (writes into the embedded
//! history store), `notify-bench` (notifications/s and latency through the
//! notify service's gRPC stream and signed webhooks), `plug-sim` (the
//! simulated town published to Kafka with its ground truth), `scenario`
//! (town, city, nation: the whole platform checked against the ground
//! truth, whose check is `dolbom_town::truth`) and `routines` (detection
//! judged on a population that lives differently, [`routines`]). The library holds what they
//! share: [`sim`] (the plug simulator),
//! [`scenario`] (presets, meters,
//! reports), [`inproc`] and [`overkafka`] (the two paths a scenario runs
//! over), [`plot`] (the PNG), [`broker`], the Kafka-protocol broker the
//! Kafka tests and benchmarks run against, and [`faultnet`], the proxy that
//! cuts one client's requests to it for the fault-injection tests. Figures and the commands that
//! produced them are recorded in `load-tests/README.md`.
//!
//! Data flow: a binary builds its input (a simulated town, synthetic
//! households), drives the code under test in process or over Kafka, and
//! prints results; a scenario also checks them against the ground truth.

pub mod broker;
pub mod faultnet;
pub mod inproc;
pub mod overkafka;
pub mod plot;
pub mod routines;
pub mod routines_plot;
pub mod scenario;
pub mod sim;

/// Resident set size of this process in bytes (Linux `/proc/self/statm`).
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// The `p`-quantile (0..=1) of already sorted samples: the sample nearest
/// to rank `p × (n − 1)`; `None` without samples.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    let i = ((sorted.len() as f64 - 1.0) * p).round();
    (!sorted.is_empty()).then(|| sorted[i as usize])
}

/// The sum of a counter (all its label sets) in Prometheus text output.
pub fn counter(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A producer for load generators: idempotent, large batches, a deep queue.
pub fn bulk_producer(
    kafka: &dolbom_kafka::KafkaOptions,
) -> rdkafka::error::KafkaResult<rdkafka::producer::FutureProducer> {
    kafka
        .producer("dolbom-load", 300_000)
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .create()
}

/// Enqueues one record keyed by `key`, waiting while the producer's queue
/// is full.
pub fn produce(p: &rdkafka::producer::FutureProducer, topic: &str, key: &str, payload: &[u8]) {
    use rdkafka::producer::FutureRecord;
    loop {
        match p.send_result(FutureRecord::to(topic).key(key).payload(payload)) {
            Ok(_) => return,
            Err(_) => p.poll(std::time::Duration::from_millis(5)),
        }
    }
}
