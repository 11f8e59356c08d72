//! Detection measured on a population whose people live differently
//! (issue 18): the household engine's fixed thresholds over a
//! `dolbom_town::lives` population, judged against its labels. Prints
//! recall, time from a crisis's start to its first alert, false alerts per
//! 1 000 household-days by stage, and the automatic-load trap.
//!
//! `cargo run --release -p dolbom-load-tests --bin routines -- [households] [days] [seed]`

use dolbom_load_tests::routines::{measure_fixed, Measured};
use dolbom_town::lives::LivesSpec;
use std::time::Instant;

fn main() {
    let arg = |i: usize, default: u64| {
        std::env::args()
            .nth(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or(default)
    };
    let spec = LivesSpec {
        households: arg(1, 10_000) as usize,
        days: arg(2, 30) as u32,
        seed: arg(3, 1),
        ..LivesSpec::default()
    };
    let started = Instant::now();
    let m = measure_fixed(&spec);
    let q = |v: &[i64], p| {
        Measured::quantile(v, p).map_or("-".into(), |m| format!("{:.1} h", m as f64 / 60.0))
    };
    let f = m.false_per_thousand_days();
    println!(
        "── routines: fixed thresholds, {} households × {} days, seed {} ({:.1} s) ──",
        m.households,
        m.days,
        spec.seed,
        started.elapsed().as_secs_f64()
    );
    println!(
        "recall        {}/{} crises detected ({:.1} %)",
        m.detected,
        m.crises,
        100.0 * m.detected as f64 / m.crises.max(1) as f64
    );
    println!(
        "time to alert p50 {}  p90 {}  (crises begun 07:00–20:00: p50 {}, {} of them)",
        q(&m.detect_minutes, 0.5),
        q(&m.detect_minutes, 0.9),
        q(&m.detect_minutes_daytime, 0.5),
        m.detect_minutes_daytime.len()
    );
    println!(
        "false alerts  per 1 000 household-days: ATTENTION {:.2}  CAUTION {:.2}  DANGER {:.2}  ({} alerts in {:.0} household-days)",
        f[0],
        f[1],
        f[2],
        m.false_alerts.iter().sum::<usize>(),
        m.household_days()
    );
    println!(
        "automatic-load trap  {}/{} crises detected in homes whose plug is on a fridge or boiler",
        m.automatic_detected, m.automatic_crises
    );
}
