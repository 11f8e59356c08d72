//! Deadlines due in the same millisecond at nation scale, in process.
//!
//! `cargo run --release -p dolbom-load-tests --bin burst-bench -- [households] [partitions] [burst] [minutes]`
//!
//! Registers `households` (default 2 000 000) in the same millisecond on
//! `partitions` (default 8) shards behind the standalone in-process bus,
//! exactly as `scenario nation` hosts them, and feeds one reading per plug
//! per minute (each plug at its own second, constant load: nobody is
//! active). `burst` of them (default 920, a building's residents registered
//! in one batch) have ATTENTION after 30 minutes (offline after 20, as in
//! `scenario nation`); the rest the defaults (12 h; offline after 30
//! minutes) — so the
//! burst's ATTENTION falls in the same millisecond as every household's
//! first offline check. Each simulated second is one slice: its readings
//! delivered, then every shard advanced to its end; a slice's time is that
//! wall time. Prints the slice times (p50, p99, max), the slice that holds
//! the burst, and the burst's latency (slice handed over → events out, as
//! `scenario` measures it). Run for `minutes` (default 32) simulated minutes.

use dolbom_calendar::Router;
use dolbom_domain::config::Thresholds;
use dolbom_domain::{DeviceId, DongCode, HouseholdConfig, HouseholdId, MunicipalityCode, Ts};
use dolbom_proto::v1 as pb;
use dolbom_shard::{ClockMode, Output, ShardOptions};
use dolbom_standalone::bus::Bus;
use std::time::Instant;

/// 2026-09-22 09:00 KST, a Tuesday.
const START_MS: i64 = 1_790_035_200_000;

fn arg(args: &[String], i: usize, default: usize) -> anyhow::Result<usize> {
    Ok(args
        .get(i)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(default))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n = arg(&args, 0, 2_000_000)?;
    let partitions = arg(&args, 1, 8)?;
    let burst = arg(&args, 2, 920)?.min(n);
    let minutes = arg(&args, 3, 32)?;
    let t0 = Ts(START_MS);
    let router = Router::builtin();
    let opts = ShardOptions {
        clock: ClockMode::Wall,
        ..ShardOptions::default()
    };
    let mut bus = Bus::start(partitions, &opts, &router, t0);
    let muni = MunicipalityCode::new("11110")?;
    let dongs: Vec<DongCode> = (0..200)
        .map(|d| DongCode::new(&format!("11110{:05}", 51000 + d), muni))
        .collect::<Result<_, _>>()?;
    let registering = Instant::now();
    let ids: Vec<(String, String)> = (0..n)
        .map(|i| (format!("hh-{i:09}"), format!("plug-{i:09}")))
        .collect();
    // The burst is spread over the population (every n/burst-th household).
    let step = (n / burst.max(1)).max(1);
    for (i, (hh, plug)) in ids.iter().enumerate() {
        let mut cfg = HouseholdConfig::with_defaults(
            HouseholdId::new(hh)?,
            dongs[i % dongs.len()],
            [DeviceId::new(plug)?],
            t0,
        );
        if i % step == 0 && i / step < burst {
            cfg.thresholds = Thresholds {
                attention_minutes: 30,
                caution_minutes: 50,
                danger_minutes: 70,
            };
            cfg.offline_after_minutes = 20;
        }
        bus.config(cfg, t0).await;
    }
    bus.advance(t0).await;
    println!(
        "registered          {n} households on {partitions} partitions in {:.1} s",
        registering.elapsed().as_secs_f64()
    );

    let burst_due = t0.plus_ms(30 * 60_000);
    let mut slice_ms: Vec<f64> = Vec::new();
    let mut burst_slice: Option<(f64, usize)> = None;
    let mut events = 0usize;
    let mut rejected = 0u64;
    for s in 1..=(minutes as i64 * 60) {
        let end = t0.plus_ms(s * 1000);
        let second = (s % 60) as usize;
        let readings: Vec<pb::PlugReading> = ids
            .iter()
            .enumerate()
            .skip(second)
            .step_by(60)
            .map(|(i, (hh, plug))| pb::PlugReading {
                device_id: plug.clone(),
                household_id: hh.clone(),
                observed_at_ms: end.millis() - 1 - (i % 997) as i64 % 1000,
                watts: Some(40.0),
                lux: Some(100.0),
                sequence: s as u64,
                current_amps: None,
            })
            .collect();
        let handed = Instant::now();
        bus.deliver(readings, end).await;
        let out = bus.advance(end).await;
        let took = handed.elapsed().as_secs_f64() * 1000.0;
        slice_ms.push(took);
        let fired = out
            .outputs
            .iter()
            .filter(|o| matches!(o, Output::Event(ev) if ev.due_at.is_some_and(|d| d.seconds * 1000 + d.nanos as i64 / 1_000_000 == burst_due.millis())))
            .count();
        events += out
            .outputs
            .iter()
            .filter(|o| matches!(o, Output::Event(_)))
            .count();
        rejected += out.rejected;
        if fired > 0 {
            burst_slice = Some((took, fired));
        }
    }
    let mut sorted = slice_ms.clone();
    sorted.sort_by(f64::total_cmp);
    let q = |p: f64| sorted[((sorted.len() - 1) as f64 * p).round() as usize];
    println!(
        "slices              {} (one simulated second each, {:.0} readings each)",
        sorted.len(),
        n as f64 / 60.0
    );
    println!(
        "slice time          p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        q(0.5),
        q(0.99),
        q(1.0)
    );
    let mut slowest: Vec<(usize, f64)> = slice_ms.iter().copied().enumerate().collect();
    slowest.sort_by(|a, b| b.1.total_cmp(&a.1));
    let slowest: Vec<String> = slowest
        .iter()
        .take(3)
        .map(|(i, ms)| format!("{:02}:{:02} {ms:.1} ms", (i + 1) / 60, (i + 1) % 60))
        .collect();
    println!(
        "slowest slices      {} (simulated mm:ss after registration)",
        slowest.join(", ")
    );
    println!("incident events     {events} ({rejected} readings rejected)");
    match burst_slice {
        Some((took, fired)) => println!(
            "burst               {fired} ATTENTIONs due in the same ms: out {took:.1} ms after their slice was handed over"
        ),
        None => println!("burst               none fired (run at least 31 minutes)"),
    }
    Ok(())
}
