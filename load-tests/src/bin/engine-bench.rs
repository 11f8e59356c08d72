//! Engine throughput and per-household memory, in process.
//!
//! `cargo run --release -p dolbom-load-tests --bin engine-bench -- [households] [minutes]`
//!
//! 1. Generates `minutes` of readings for a simulated town of `households`
//!    (default 10 000 × 120), then times the reading path: feeding them through
//!    `HouseholdState::on_reading` and asking `next_deadline` after each, as a
//!    shard does. (Timers are not fired here: deadlines are measured by the
//!    monitor's latency benchmark.)
//! 2. Allocates 1 000 000 idle households (state + configuration, as the
//!    monitor will hold them, without the shard's map) and reports resident
//!    bytes per household.

use dolbom_domain::{
    DeviceId, DongCode, HouseholdConfig, HouseholdId, MunicipalityCode, Ts, MINUTE_MS,
};
use dolbom_engine::{HouseholdState, Reading};
use dolbom_load_tests::resident_bytes;
use dolbom_town::{Town, TownSpec};
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let households: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(10_000);
    let minutes: i64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(120);
    let start = Ts::parse_rfc3339("2026-03-03T06:00:00+09:00").expect("valid");
    let spec = TownSpec {
        households,
        seed: 1,
        start,
        quiet: households / 100,
        quiet_recovering: 0,
        offline: households / 200,
        hospital: 0,
        duration_ms: minutes * MINUTE_MS,
        reporting: Default::default(),
        scripts_within: None,
    };
    let mut town = Town::new(&spec);
    let mut readings = Vec::new();
    for m in 0..minutes {
        town.readings_at(start.plus_ms(m * MINUTE_MS), &mut readings);
    }
    let mut states: Vec<HouseholdState> = (0..households)
        .map(|_| HouseholdState::new(start))
        .collect();
    let mut out = Vec::new();
    let t = Instant::now();
    let mut events = 0usize;
    for r in &readings {
        let cfg = town.config(r.household);
        states[r.household].on_reading(cfg, &r.reading(), r.observed_at, &mut out)?;
        // The shard asks for the next deadline after every reading.
        std::hint::black_box(states[r.household].next_deadline(cfg, r.observed_at));
        events += out.len();
        out.clear();
    }
    let secs = t.elapsed().as_secs_f64();
    println!("engine throughput: {} readings ({} households x {} min) in {:.3} s = {:.0} readings/s ({:.0} ns/reading), {} events",
        readings.len(), households, minutes, secs, readings.len() as f64 / secs,
        secs * 1e9 / readings.len() as f64, events);
    drop((states, readings, town));

    println!(
        "size_of::<HouseholdState>() = {} B, size_of::<HouseholdConfig>() = {} B",
        std::mem::size_of::<HouseholdState>(),
        std::mem::size_of::<HouseholdConfig>()
    );
    const N: usize = 1_000_000;
    let m = MunicipalityCode::new("11110").expect("valid");
    let dong = DongCode::new("1111051500", m).expect("valid");
    let before = resident_bytes().unwrap_or(0);
    let mut idle: Vec<(HouseholdConfig, HouseholdState)> = Vec::with_capacity(N);
    for i in 0..N {
        let cfg = HouseholdConfig::with_defaults(
            HouseholdId::new(&format!("hh-{i:08}"))?,
            dong,
            [DeviceId::new(&format!("plug-{i:08}"))?],
            start,
        );
        let mut st = HouseholdState::new(start);
        let r = Reading {
            device_id: cfg.devices[0].as_str(),
            observed_at: start,
            sequence: 1,
            watts: Some(3.0),
            lux: Some(10.0),
        };
        st.on_reading(&cfg, &r, start, &mut out)?;
        idle.push((cfg, st));
    }
    let after = resident_bytes().unwrap_or(0);
    println!(
        "idle households: {N} (config + state, one plug seen) = {} resident bytes/household",
        (after.saturating_sub(before)) / N as u64
    );
    std::hint::black_box(&idle);
    Ok(())
}
