//! The `routines` comparison drawn: for each detection, the share of
//! crises alerted by each hour after they began (a cumulative curve: higher
//! and further left is better), and false alerts per 1 000 household-days
//! by stage. Text needs a system font, as in [`crate::plot`].

use crate::plot::{err, font};
use crate::routines::{Detection, Measured};
use plotters::prelude::*;
use std::path::Path;

const COLOURS: [RGBColor; 5] = [BLACK, BLUE, RED, GREEN, MAGENTA];

/// Draws `results` (one per detection, in the same order) into `path`.
pub fn plot(results: &[(Detection, Measured)], title: &str, path: &Path) -> anyhow::Result<()> {
    let labels = font();
    let caption = |text: String| if labels { text } else { String::new() };
    let root = BitMapBackend::new(path, (1200, 800)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (top, bottom) = root.split_vertically(450);
    let hours = 24.0;
    let mut c = ChartBuilder::on(&top)
        .caption(
            caption(format!(
                "{title} — crises alerted by hours after they began"
            )),
            ("sans-serif", 20),
        )
        .margin(10)
        .x_label_area_size(if labels { 30 } else { 0 })
        .y_label_area_size(if labels { 60 } else { 0 })
        .build_cartesian_2d(0.0..hours, 0.0..100.0)
        .map_err(err)?;
    if labels {
        c.configure_mesh()
            .x_desc("hours after the crisis began")
            .y_desc("% of crises alerted")
            .draw()
            .map_err(err)?;
    }
    for (i, (d, m)) in results.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let mut minutes = m.detect_minutes.clone();
        minutes.sort_unstable();
        let total = m.crises.max(1) as f64;
        let points: Vec<(f64, f64)> = (0..=hours as i64 * 6)
            .map(|step| {
                let h = step as f64 / 6.0;
                let n = minutes.partition_point(|&x| (x as f64) <= h * 60.0);
                (h, 100.0 * n as f64 / total)
            })
            .collect();
        c.draw_series(LineSeries::new(points, colour.stroke_width(2)))
            .map_err(err)?
            .label(d.name())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
    }
    if labels {
        c.configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(err)?;
    }
    let max = results
        .iter()
        .flat_map(|(_, m)| m.false_per_thousand_days())
        .fold(1.0, f64::max)
        * 1.15;
    let n = results.len() as f64;
    let mut c = ChartBuilder::on(&bottom)
        .caption(
            caption("false alerts per 1 000 household-days: ATTENTION, CAUTION, DANGER".into()),
            ("sans-serif", 20),
        )
        .margin(10)
        .x_label_area_size(if labels { 30 } else { 0 })
        .y_label_area_size(if labels { 60 } else { 0 })
        .build_cartesian_2d(-0.5..2.5, 0.0..max)
        .map_err(err)?;
    if labels {
        c.configure_mesh()
            .disable_x_mesh()
            .x_labels(7)
            .x_label_formatter(&|x: &f64| {
                let names = ["ATTENTION", "CAUTION", "DANGER"];
                let i = x.round();
                if (x - i).abs() < 0.01 && (0.0..3.0).contains(&i) {
                    names[i as usize].into()
                } else {
                    String::new()
                }
            })
            .draw()
            .map_err(err)?;
    }
    for (i, (_, m)) in results.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let f = m.false_per_thousand_days();
        c.draw_series((0..3).map(|stage| {
            let x0 = stage as f64 - 0.4 + 0.8 * i as f64 / n;
            let x1 = x0 + 0.8 / n;
            Rectangle::new([(x0, 0.0), (x1, f[stage])], colour.filled())
        }))
        .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}
