//! Resident memory per idle household in the monitor's shards, in process.
//!
//! `cargo run --release -p dolbom-load-tests --bin monitor-memory -- [households] [shards]`
//!
//! Registers `households` (default 1 000 000) spread over `shards` (default
//! 12) `dolbom_shard::Shard`s exactly as the monitor hosts them (config,
//! engine state, index entry, timer-wheel entry, area counters), gives each
//! one reading so its plug state exists, and prints resident bytes per
//! household. Target (DESIGN.md): ≤ 400 B at 10 M households.

use dolbom_calendar::Router;
use dolbom_domain::{DeviceId, DongCode, HouseholdConfig, HouseholdId, MunicipalityCode, Ts};
use dolbom_load_tests::resident_bytes;
use dolbom_proto::v1 as pb;
use dolbom_shard::{Shard, ShardOptions};
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let shards: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(12);
    let t0 = Ts(1_767_225_600_000);
    let router = Router::builtin();
    let muni = MunicipalityCode::new("11110")?;
    let dongs: Vec<DongCode> = (0..200)
        .map(|d| DongCode::new(&format!("11110{:05}", 51000 + d), muni))
        .collect::<Result<_, _>>()?;
    let before = resident_bytes().unwrap_or(0);
    let started = Instant::now();
    let mut out = Vec::new();
    let mut hosted: Vec<Shard> = (0..shards)
        .map(|p| Shard::new(p as i32, ShardOptions::default(), router.clone(), t0))
        .collect();
    for i in 0..n {
        let id = format!("hh-{i:09}");
        let cfg = HouseholdConfig::with_defaults(
            HouseholdId::new(&id)?,
            dongs[i % dongs.len()],
            [DeviceId::new(&format!("plug-{i:09}"))?],
            t0,
        );
        let shard = &mut hosted[i % shards];
        shard.apply_config(cfg, t0, &mut out)?;
        let r = pb::PlugReading {
            device_id: format!("plug-{i:09}"),
            household_id: id,
            observed_at_ms: t0.millis() + 1000,
            watts: Some(40.0),
            lux: Some(100.0),
            sequence: 1,
            current_amps: None,
        };
        shard.on_reading(&r, t0.plus_ms(1000), &mut out)?;
        out.clear();
    }
    let secs = started.elapsed().as_secs_f64();
    let after = resident_bytes().unwrap_or(0);
    let deadlines: usize = hosted.iter().map(Shard::pending_deadlines).sum();
    println!("households          {n}");
    println!("shards              {shards}");
    println!(
        "registered in       {secs:.1} s ({:.0} households/s)",
        n as f64 / secs
    );
    println!("pending deadlines   {deadlines}");
    println!(
        "resident            {:.1} MiB → {:.1} MiB",
        before as f64 / 1048576.0,
        after as f64 / 1048576.0
    );
    println!(
        "per idle household  {:.0} B (target ≤ 400 B)",
        (after.saturating_sub(before)) as f64 / n as f64
    );
    drop(hosted);
    Ok(())
}
