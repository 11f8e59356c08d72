//! What the overview dashboard shows, as a PNG: every panel of
//! `deploy/grafana/dolbom-overview.json` queried from a real Prometheus over
//! the last minutes and drawn in the dashboard's order.
//!
//! `cargo run --release -p dolbom-load-tests --bin overview -- --prometheus http://127.0.0.1:9090 --minutes 10 --out docs/overview.png`
//!
//! `load-tests/overview.sh` runs the whole thing: a Prometheus scraping a
//! `scenario town` run (`--metrics-listen`), then this.

use clap::Parser;
use dolbom_load_tests::plot::{self, Panel};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(about = "Render the overview dashboard's data from a Prometheus as a PNG")]
struct Args {
    #[arg(long, default_value = "http://127.0.0.1:9090")]
    prometheus: String,
    /// The range drawn, ending now.
    #[arg(long, default_value_t = 10)]
    minutes: u32,
    #[arg(long, default_value = "deploy/grafana/dolbom-overview.json")]
    dashboard: PathBuf,
    #[arg(long, default_value = "docs/overview.png")]
    out: PathBuf,
}

/// `{{label}}` in a legend replaced by the series' label values.
fn legend(format: &str, labels: &serde_json::Map<String, serde_json::Value>) -> String {
    let mut out = format.to_string();
    for (k, v) in labels {
        out = out.replace(&format!("{{{{{k}}}}}"), v.as_str().unwrap_or_default());
    }
    out
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&a.dashboard)?)?;
    let end = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs_f64();
    let start = end - f64::from(a.minutes) * 60.0;
    let step = (f64::from(a.minutes) * 60.0 / 240.0).max(1.0);
    let client = reqwest::Client::new();
    let mut panels = Vec::new();
    for p in dashboard["panels"].as_array().into_iter().flatten() {
        let mut panel = Panel {
            title: p["title"].as_str().unwrap_or_default().to_string(),
            unit: p["fieldConfig"]["defaults"]["unit"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            series: Vec::new(),
        };
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().unwrap_or_default();
            let v: serde_json::Value = client
                .get(format!("{}/api/v1/query_range", a.prometheus))
                .query(&[
                    ("query", expr.to_string()),
                    ("start", start.to_string()),
                    ("end", end.to_string()),
                    ("step", step.to_string()),
                ])
                .send()
                .await?
                .json()
                .await?;
            anyhow::ensure!(v["status"] == "success", "{expr}: {v}");
            for s in v["data"]["result"].as_array().into_iter().flatten() {
                let labels = s["metric"].as_object().cloned().unwrap_or_default();
                let points = s["values"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|pt| {
                        let t = pt[0].as_f64()?;
                        let y: f64 = pt[1].as_str()?.parse().ok()?;
                        Some((t - end, y))
                    })
                    .collect();
                panel.series.push((
                    legend(t["legendFormat"].as_str().unwrap_or_default(), &labels),
                    points,
                ));
            }
        }
        println!("{:<32} {} series", panel.title, panel.series.len());
        panels.push(panel);
    }
    let title = format!(
        "{} — the last {} minutes ({})",
        dashboard["title"].as_str().unwrap_or_default(),
        a.minutes,
        a.prometheus
    );
    plot::dashboard(&title, &panels, &a.out)?;
    println!("wrote {}", a.out.display());
    Ok(())
}
