//! Plug simulator: a simulated town of care plugs publishing to Kafka, with
//! its ground truth written to a file.
//!
//! `cargo run --release -p dolbom-load-tests --bin plug-sim -- --brokers 127.0.0.1:9092 --truth truth.json`
//!
//! Every household of the town ([`dolbom_load_tests::sim::PlugSim`]: daily
//! routines, each plug at its own second of the minute with timer jitter and
//! on-change reports; scripted quiet, offline and hospital households) is
//! registered on `care.households`, then its readings go out on
//! `plug.readings` (key = household id, so both topics are co-partitioned)
//! slice by slice, shuffled across households, a share sent twice, and one
//! dong optionally blacked out. The ground truth — who went quiet or offline
//! when, every stage deadline, who was in hospital, which households were in
//! the blackout — is written as JSON. `scenario town` runs the same
//! simulator against the whole platform and checks it.

use clap::Parser;
use dolbom_domain::{Ts, MINUTE_MS};
use dolbom_kafka::KafkaOptions;
use dolbom_load_tests::produce;
use dolbom_load_tests::sim::{PlugSim, SimSpec, Slice};
use dolbom_proto::v1 as pb;
use dolbom_town::{Reporting, TownSpec};
use prost::Message as _;
use rdkafka::producer::Producer;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(about = "Publish a simulated town of care plugs to Kafka, with ground truth")]
struct Args {
    /// Kafka bootstrap servers.
    #[arg(long, env = "DOLBOM_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    brokers: String,
    #[arg(long, default_value = "plug.readings")]
    readings_topic: String,
    #[arg(long, default_value = "care.households")]
    households_topic: String,
    #[arg(long, default_value_t = 1000)]
    households: usize,
    #[arg(long, default_value_t = 6)]
    quiet: usize,
    #[arg(long, default_value_t = 2)]
    quiet_recovering: usize,
    #[arg(long, default_value_t = 4)]
    offline: usize,
    #[arg(long, default_value_t = 2)]
    hospital: usize,
    /// Simulated hours.
    #[arg(long, default_value_t = 72)]
    hours: u32,
    /// Simulation start, RFC 3339.
    #[arg(long, default_value = "2026-02-27T18:00:00+09:00")]
    start: String,
    /// Simulated seconds per real second; 0 = as fast as possible.
    #[arg(long, default_value_t = 0)]
    speed: u32,
    #[arg(long, default_value_t = 2026)]
    seed: u64,
    /// Share of readings delivered twice.
    #[arg(long, default_value_t = 0.01)]
    duplicates: f64,
    /// Every plug reports on the minute (no own second, jitter or on-change reports).
    #[arg(long)]
    on_the_minute: bool,
    /// Plug timer jitter, ± milliseconds.
    #[arg(long, default_value_t = 1000)]
    jitter_ms: i64,
    /// Black out the first dong for this many minutes (0 = no blackout),
    /// starting `blackout-at-hours` into the run.
    #[arg(long, default_value_t = 0)]
    blackout_minutes: i64,
    #[arg(long, default_value_t = 30)]
    blackout_at_hours: i64,
    /// Where to write the ground truth (JSON).
    #[arg(long, default_value = "plug-sim-truth.json")]
    truth: std::path::PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let start =
        Ts::parse_rfc3339(&a.start).ok_or_else(|| anyhow::anyhow!("--start is not RFC 3339"))?;
    anyhow::ensure!(
        a.quiet + a.offline + a.hospital <= a.households && a.quiet_recovering <= a.quiet,
        "scripted households exceed the town"
    );
    let realistic = !a.on_the_minute;
    let mut sim = PlugSim::new(SimSpec {
        town: TownSpec {
            households: a.households,
            seed: a.seed,
            start,
            quiet: a.quiet,
            quiet_recovering: a.quiet_recovering,
            offline: a.offline,
            hospital: a.hospital,
            duration_ms: a.hours as i64 * 60 * MINUTE_MS,
            reporting: Reporting {
                spread: realistic,
                jitter_ms: if realistic { a.jitter_ms } else { 0 },
                on_change: realistic,
            },
            scripts_within: None,
        },
        duplicates: a.duplicates,
        blackout: (a.blackout_minutes > 0).then_some((
            a.blackout_at_hours * 60 * MINUTE_MS,
            a.blackout_minutes * MINUTE_MS,
        )),
        slice_ms: 1000,
        thresholds: None,
    });
    let producer = dolbom_load_tests::bulk_producer(&KafkaOptions::brokers(&a.brokers))?;
    let send = |topic: &str, key: &str, payload: &[u8]| produce(&producer, topic, key, payload);
    for cfg in sim.configs() {
        let wire = pb::HouseholdConfig::from(cfg).encode_to_vec();
        send(&a.households_topic, cfg.household_id.as_str(), &wire);
    }
    producer.flush(Duration::from_secs(60))?;

    let real_start = Instant::now();
    let mut slices: Vec<Slice> = Vec::new();
    while !sim.done() {
        sim.next_minute(&mut slices);
        for s in &slices {
            if a.speed > 0 {
                let due = Duration::from_micros(s.end.since(start) as u64 * 1000 / a.speed as u64);
                if let Some(wait) = due.checked_sub(real_start.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
            }
            for r in &s.readings {
                send(&a.readings_topic, &r.household_id, &r.encode_to_vec());
            }
        }
    }
    producer.flush(Duration::from_secs(60))?;
    std::fs::write(&a.truth, serde_json::to_vec_pretty(&sim.truth())?)?;
    let secs = real_start.elapsed().as_secs_f64();
    let st = sim.stats;
    println!(
        "published {} configs and {} readings ({} duplicates, {} dropped by the blackout) \
         over {} simulated hours in {secs:.1} s ({:.0} readings/s); ground truth in {}",
        sim.households(),
        st.readings,
        st.duplicates,
        st.dropped_by_blackout,
        a.hours,
        st.readings as f64 / secs,
        a.truth.display()
    );
    Ok(())
}
