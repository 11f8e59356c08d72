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
pub(crate) fn font() -> bool {
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

pub(crate) fn err(e: impl std::fmt::Display) -> anyhow::Error {
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

/// One dashboard panel's data over a time range: its title and unit, and
/// each series' legend and points (seconds before the end, value).
#[derive(Clone, Debug, Default)]
pub struct Panel {
    pub title: String,
    pub unit: String,
    pub series: Vec<(String, Vec<(f64, f64)>)>,
}

/// Draws panels in a two-column grid, as a dashboard lays them out.
pub fn dashboard(title: &str, panels: &[Panel], path: &Path) -> anyhow::Result<()> {
    let labels = font();
    let rows = panels.len().div_ceil(2).max(1);
    let root = BitMapBackend::new(path, (1400, 60 + 330 * rows as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (head, body) = root.split_vertically(60);
    if labels {
        head.draw_text(title, &("sans-serif", 26).into_text_style(&head), (20, 18))
            .map_err(err)?;
    }
    let palette = [&BLUE, &RED, &GREEN, &MAGENTA, &CYAN, &BLACK];
    for (panel, area) in panels.iter().zip(body.split_evenly((rows, 2))) {
        let points = panel.series.iter().flat_map(|(_, p)| p);
        let (mut x_min, mut y_max) = (-60.0f64, 0.0f64);
        for &(x, y) in points {
            x_min = x_min.min(x);
            if y.is_finite() {
                y_max = y_max.max(y);
            }
        }
        let y_max = if y_max > 0.0 { y_max * 1.15 } else { 1.0 };
        let caption = if labels {
            format!("{} ({})", panel.title, panel.unit)
        } else {
            String::new()
        };
        let mut c = ChartBuilder::on(&area)
            .caption(caption, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(if labels { 28 } else { 0 })
            .y_label_area_size(if labels { 70 } else { 0 })
            .build_cartesian_2d(x_min / 60.0..0.0, 0.0..y_max)
            .map_err(err)?;
        if labels {
            c.configure_mesh()
                .x_desc("minutes before the end")
                .light_line_style(WHITE)
                .draw()
                .map_err(err)?;
        }
        for (i, (legend, pts)) in panel.series.iter().enumerate() {
            let color = palette[i % palette.len()];
            let s = c
                .draw_series(LineSeries::new(
                    pts.iter()
                        .filter(|p| p.1.is_finite())
                        .map(|&(x, y)| (x / 60.0, y)),
                    color.stroke_width(2),
                ))
                .map_err(err)?;
            if labels {
                s.label(legend.clone()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                });
            }
        }
        if labels && !panel.series.is_empty() {
            c.configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.3))
                .position(SeriesLabelPosition::UpperLeft)
                .label_font(("sans-serif", 13))
                .draw()
                .map_err(err)?;
        }
    }
    root.present().map_err(err)?;
    Ok(())
}
