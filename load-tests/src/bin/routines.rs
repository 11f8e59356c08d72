//! Detection measured side by side on a population whose people live
//! differently (issue 18): the household engine's fixed thresholds alone,
//! and with learned detection at each sensitivity, over the same
//! `dolbom_town::lives` readings, judged against its labels. Prints recall,
//! time from a crisis's start to its first alert (p50, p90, by the hour it
//! began), crises alerted later than the fixed thresholds would, false
//! alerts per 1 000 household-days by stage, and the automatic-load trap;
//! draws `routines-<seed>.png` into the output directory.
//!
//! `cargo run --release -p dolbom-load-tests --bin routines -- [households] [days] [seed] [out_dir]`

use dolbom_domain::config::RoutineSensitivity;
use dolbom_load_tests::routines::{
    later_by, later_than, measure, Detection, Measured, LEARNING_DAYS, START_WINDOWS,
};
use dolbom_town::lives::LivesSpec;
use std::time::Instant;

fn main() -> anyhow::Result<()> {
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
    let out_dir = std::path::PathBuf::from(
        std::env::args()
            .nth(4)
            .unwrap_or_else(|| "routines-out".into()),
    );
    let learned = |routine, defer| Detection::Learned { routine, defer };
    let detections = [
        Detection::Fixed,
        learned(RoutineSensitivity::Normal, false),
        learned(RoutineSensitivity::Low, true),
        learned(RoutineSensitivity::Normal, true),
        learned(RoutineSensitivity::High, true),
    ];
    let started = Instant::now();
    let results = measure(&spec, &detections);
    println!(
        "── routines: {} households × {} days, seed {} ({:.1} s for {} detections) ──",
        spec.households,
        spec.days,
        spec.seed,
        started.elapsed().as_secs_f64(),
        detections.len()
    );
    let h = |v: &[i64], p| {
        Measured::quantile(v, p).map_or("-".into(), |m| format!("{:.1} h", m as f64 / 60.0))
    };
    let fixed = &results[0];
    for (d, m) in detections.iter().zip(&results) {
        let f = m.false_per_thousand_days();
        println!("{}:", d.name());
        println!(
            "  recall        {}/{} crises detected ({:.1} %); later than fixed: {}",
            m.detected,
            m.crises,
            100.0 * m.detected as f64 / m.crises.max(1) as f64,
            later_than(fixed, m)
        );
        for (f, l) in later_by(fixed, m) {
            let l = l.map_or("never".into(), |l| format!("{:.1} h", l as f64 / 60.0));
            println!("    later: fixed {:.1} h, this {l}", f as f64 / 60.0);
        }
        println!(
            "  time to alert p50 {}  p90 {}; crises begun 07:00–20:00: p50 {}  p90 {} ({} of them)",
            h(&m.detect_minutes, 0.5),
            h(&m.detect_minutes, 0.9),
            h(&m.detect_minutes_daytime, 0.5),
            h(&m.detect_minutes_daytime, 0.9),
            m.detect_minutes_daytime.len()
        );
        println!(
            "  crises begun 07:00–20:00 after the learning period (day {}–): p50 {}  p90 {} ({} of them; {} crises after learning in all)",
            LEARNING_DAYS + 1,
            h(&m.detect_minutes_daytime_learned, 0.5),
            h(&m.detect_minutes_daytime_learned, 0.9),
            m.detect_minutes_daytime_learned.len(),
            m.crises_learned
        );
        let by_start: Vec<String> = START_WINDOWS
            .iter()
            .zip(&m.detect_minutes_by_start)
            .map(|((a, b), v)| format!("{a:02}–{b:02} {} (n={})", h(v, 0.5), v.len()))
            .collect();
        println!("  p50 by start  {}", by_start.join("  "));
        println!(
            "  false alerts  per 1 000 household-days: ATTENTION {:.2}  CAUTION {:.2}  DANGER {:.2}; {:.4} per household-day; {} of {} during a labelled trip, sick day or hospital stay",
            f[0],
            f[1],
            f[2],
            m.false_per_day(),
            m.false_in_benign_quiet,
            m.false_alerts.iter().sum::<usize>(),
        );
        let a = m.false_after_learning_per_thousand_days();
        println!(
            "  after learning (day {}–{}) per 1 000 household-days: ATTENTION {:.2}  CAUTION {:.2}  DANGER {:.2}; {:.4} per household-day",
            LEARNING_DAYS + 1,
            m.days,
            a[0],
            a[1],
            a[2],
            a.iter().sum::<f64>() / 1000.0
        );
        println!(
            "  false alerts raised by the routine {}, by the fixed thresholds {}; in homes whose plug is on a fridge or boiler {}",
            m.false_by_routine,
            m.false_alerts.iter().sum::<usize>() - m.false_by_routine,
            m.false_in_automatic_homes,
        );
        let by_home: Vec<String> = m
            .homes
            .iter()
            .map(|(k, n)| {
                let f = m.false_by_home.get(k).copied().unwrap_or(0);
                format!(
                    "{k} {:.0}",
                    f as f64 * 1000.0 / (*n as f64 * f64::from(m.days))
                )
            })
            .collect();
        println!("  false per 1 000 days by home  {}", by_home.join("  "));
        println!(
            "  automatic-load trap  {}/{} crises detected in homes whose plug is on a fridge or boiler",
            m.automatic_detected, m.automatic_crises
        );
    }
    std::fs::create_dir_all(&out_dir)?;
    let png = out_dir.join(format!("routines-{}.png", spec.seed));
    let named: Vec<_> = detections.iter().copied().zip(results).collect();
    dolbom_load_tests::routines_plot::plot(
        &named,
        &format!(
            "routines: {} households × {} days, seed {}",
            spec.households, spec.days, spec.seed
        ),
        &png,
    )?;
    println!("plot: {}", png.display());
    Ok(())
}
