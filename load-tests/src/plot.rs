//! A scenario's output files: the report and ground truth as JSON, and the
//! PNG plot of throughput (readings/s) and detection latency of the
//! incidents that came out, over the run's wall time.
//!
//! Text is drawn with a TrueType font read from the system (DejaVu Sans,
//! Debian's `fonts-dejavu-core`); without one the plot has no labels.

use crate::scenario::Report;
use dolbom_town::truth::{GroundTruth, SeenEvent};
use plotters::prelude::*;
use std::path::{Path, PathBuf};

const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

/// Registers a system font as `sans-serif`; false when none was found.
fn font() -> bool {
    static FONT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FONT.get_or_init(|| {
        FONTS.iter().any(|p| {
            std::fs::read(p).ok().is_some_and(|bytes| {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
            })
        })
    })
}

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("plot: {e}")
}

pub fn plot(r: &Report, path: &Path) -> anyhow::Result<()> {
    let labels = font();
    let root = BitMapBackend::new(path, (1200, 800)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (top, bottom) = root.split_vertically(400);
    let t_max = r.samples.last().map_or(1.0, |s| s.wall_s).max(1.0);
    let rate_max = r
        .samples
        .iter()
        .map(|s| s.readings_per_s)
        .fold(1.0, f64::max)
        * 1.1;
    let caption = |text: String| if labels { text } else { String::new() };
    let mut c = ChartBuilder::on(&top)
        .caption(
            caption(format!(
                "scenario {}: {} households, {:.0} simulated h — readings/s",
                r.scenario.name, r.scenario.households, r.simulated_hours
            )),
            ("sans-serif", 20),
        )
        .margin(10)
        .x_label_area_size(if labels { 30 } else { 0 })
        .y_label_area_size(if labels { 80 } else { 0 })
        .build_cartesian_2d(0.0..t_max, 0.0..rate_max)
        .map_err(err)?;
    if labels {
        c.configure_mesh()
            .x_desc("wall s")
            .y_desc("readings/s")
            .draw()
            .map_err(err)?;
    }
    c.draw_series(LineSeries::new(
        r.samples.iter().map(|s| (s.wall_s, s.readings_per_s)),
        &BLUE,
    ))
    .map_err(err)?;

    let lat: Vec<(f64, f64)> = r
        .samples
        .iter()
        .filter_map(|s| s.latency_max_ms.map(|m| (s.wall_s, m)))
        .collect();
    let p50: Vec<(f64, f64)> = r
        .samples
        .iter()
        .filter_map(|s| s.latency_p50_ms.map(|m| (s.wall_s, m)))
        .collect();
    let l_max = lat.iter().map(|x| x.1).fold(1.0, f64::max) * 1.1;
    let mut c = ChartBuilder::on(&bottom)
        .caption(
            caption(format!(
                "detection latency (ms): p50 {:.0}, p99 {:.0} — red: slowest per second, black: median per second",
                r.latency_p50_ms.unwrap_or(f64::NAN),
                r.latency_p99_ms.unwrap_or(f64::NAN)
            )),
            ("sans-serif", 20),
        )
        .margin(10)
        .x_label_area_size(if labels { 30 } else { 0 })
        .y_label_area_size(if labels { 80 } else { 0 })
        .build_cartesian_2d(0.0..t_max, 0.0..l_max)
        .map_err(err)?;
    if labels {
        c.configure_mesh()
            .x_desc("wall s")
            .y_desc("ms")
            .draw()
            .map_err(err)?;
    }
    c.draw_series(lat.iter().map(|&p| Circle::new(p, 3, RED.filled())))
        .map_err(err)?;
    c.draw_series(p50.iter().map(|&p| Circle::new(p, 2, BLACK.filled())))
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// Writes `<name>.json`, `<name>-truth.json`, `<name>-events.json` (every
/// incident event seen) and `<name>.png` into `dir`; returns the JSON and
/// PNG paths.
pub fn write(
    r: &Report,
    dir: &Path,
    truth: &GroundTruth,
    seen: &[SeenEvent],
) -> anyhow::Result<(PathBuf, PathBuf)> {
    let name = &r.scenario.name;
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join(format!("{name}-events.json")),
        serde_json::to_vec(seen)?,
    )?;
    let json = dir.join(format!("{name}.json"));
    std::fs::write(&json, serde_json::to_vec_pretty(r)?)?;
    std::fs::write(
        dir.join(format!("{name}-truth.json")),
        serde_json::to_vec_pretty(truth)?,
    )?;
    let png = dir.join(format!("{name}.png"));
    plot(r, &png)?;
    Ok((json, png))
}
