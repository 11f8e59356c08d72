//! Plug simulator: a simulated town of care plugs publishing to Kafka, with
//! its ground truth written to a file.
//!
//! `cargo run --release -p dolbom-load-tests --bin plug-sim -- --brokers 127.0.0.1:9092 --truth truth.json`
//!
//! Every household of a [`dolbom_town::Town`] (daily routines: sleep, meals,
//! TV, lights at dusk, daylight drift; scripted quiet, offline and hospital
//! households) is registered on `care.households`, then its plug reports once
//! a simulated minute on `plug.readings` (key = household id, so both topics
//! are co-partitioned). On top of the town, the delivery is made realistic:
//! readings of a minute go out in shuffled order (out-of-order delivery
//! across households), a share is sent twice (duplicates), and one dong can
//! be blacked out for a window (all its plugs silent). The ground truth —
//! who went quiet or offline when, who was in hospital, which households
//! were in the blackout — is written as JSON for a scenario runner to check
//! the platform's incidents against.

use clap::Parser;
use dolbom_domain::{Ts, MINUTE_MS};
use dolbom_proto::v1 as pb;
use dolbom_town::{Scripted, Town, TownSpec};
use prost::Message as _;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use std::collections::BTreeSet;
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

fn rfc3339(t: Ts) -> String {
    t.to_utc().to_rfc3339()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let start =
        Ts::parse_rfc3339(&a.start).ok_or_else(|| anyhow::anyhow!("--start is not RFC 3339"))?;
    let duration_ms = a.hours as i64 * 60 * MINUTE_MS;
    let spec = TownSpec {
        households: a.households,
        seed: a.seed,
        start,
        quiet: a.quiet,
        quiet_recovering: a.quiet_recovering,
        offline: a.offline,
        hospital: a.hospital,
        duration_ms,
        reporting: Default::default(),
    };
    anyhow::ensure!(
        a.quiet + a.offline + a.hospital <= a.households && a.quiet_recovering <= a.quiet,
        "scripted households exceed the town"
    );
    let mut town = Town::new(&spec);
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &a.brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "10")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let send = |topic: &str, key: &str, payload: &[u8]| loop {
        match producer.send_result(FutureRecord::to(topic).key(key).payload(payload)) {
            Ok(_) => return,
            Err(_) => producer.poll(Duration::from_millis(5)),
        }
    };

    for cfg in town.configs() {
        let wire = pb::HouseholdConfig::from(cfg).encode_to_vec();
        send(&a.households_topic, cfg.household_id.as_str(), &wire);
    }
    producer.flush(Duration::from_secs(60))?;

    // The blackout: every household of the first dong, for a window.
    let blackout_dong = town.configs().next().map(|c| c.dong);
    let blackout = (a.blackout_minutes > 0).then(|| {
        let from = start.plus_ms(a.blackout_at_hours * 60 * MINUTE_MS);
        (from, from.plus_ms(a.blackout_minutes * MINUTE_MS))
    });
    let dark: BTreeSet<usize> = match (blackout, blackout_dong) {
        (Some(_), Some(d)) => town
            .configs()
            .enumerate()
            .filter(|(_, c)| c.dong == d)
            .map(|(i, _)| i)
            .collect(),
        _ => BTreeSet::new(),
    };

    let mut rng = rand::rngs::SmallRng::seed_from_u64(a.seed ^ 0x5eed);
    let mut minute = Vec::new();
    let mut batch: Vec<(String, Vec<u8>)> = Vec::new();
    let (mut sent, mut dups, mut dropped) = (0u64, 0u64, 0u64);
    let real_start = Instant::now();
    let end = start.plus_ms(duration_ms);
    let mut t = start;
    while t < end {
        minute.clear();
        town.readings_at(t, &mut minute);
        batch.clear();
        for r in &minute {
            if blackout.is_some_and(|(f, u)| t >= f && t < u) && dark.contains(&r.household) {
                dropped += 1;
                continue;
            }
            let reading = town.wire_reading(r);
            let wire = reading.encode_to_vec();
            let id = reading.household_id;
            if rng.random_bool(a.duplicates.clamp(0.0, 1.0)) {
                batch.push((id.clone(), wire.clone()));
                dups += 1;
            }
            batch.push((id, wire));
        }
        // Out-of-order delivery across households within the minute (each
        // household's own readings keep their order: one per minute).
        batch.shuffle(&mut rng);
        for (key, payload) in &batch {
            send(&a.readings_topic, key, payload);
        }
        sent += batch.len() as u64;
        t = t.plus_ms(MINUTE_MS);
        if a.speed > 0 {
            let due = Duration::from_micros((t.since(start) as u64) * 1000 / a.speed as u64);
            if let Some(wait) = due.checked_sub(real_start.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
    }
    producer.flush(Duration::from_secs(60))?;

    let scripted: Vec<serde_json::Value> = town
        .truth()
        .iter()
        .map(|tr| match &tr.script {
            Scripted::Quiet { at, resumes } => serde_json::json!({
                "household": tr.household.as_str(), "kind": "quiet",
                "from": rfc3339(*at), "until": resumes.map(rfc3339),
            }),
            Scripted::Offline { at, back } => serde_json::json!({
                "household": tr.household.as_str(), "kind": "offline",
                "from": rfc3339(*at), "until": back.map(rfc3339),
            }),
            Scripted::Hospital { from, to } => serde_json::json!({
                "household": tr.household.as_str(), "kind": "hospital",
                "from": rfc3339(*from), "until": rfc3339(*to),
            }),
        })
        .collect();
    let truth = serde_json::json!({
        "start": rfc3339(start),
        "end": rfc3339(end),
        "households": town.len(),
        "seed": a.seed,
        "scripted": scripted,
        "blackouts": blackout.map(|(f, u)| vec![serde_json::json!({
            "dong": blackout_dong.map(|d| d.to_string()),
            "from": rfc3339(f),
            "until": rfc3339(u),
            "households": dark.iter().map(|&i| town.config(i).household_id.to_string()).collect::<Vec<_>>(),
        })]).unwrap_or_default(),
    });
    std::fs::write(&a.truth, serde_json::to_vec_pretty(&truth)?)?;
    let secs = real_start.elapsed().as_secs_f64();
    println!(
        "published {} configs and {sent} readings ({dups} duplicates, {dropped} dropped by the blackout) \
         over {} simulated hours in {secs:.1} s ({:.0} readings/s); ground truth in {}",
        town.len(),
        a.hours,
        sent as f64 / secs,
        a.truth.display()
    );
    Ok(())
}
