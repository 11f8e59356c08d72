//! Runs one scenario — the whole platform driven by the plug simulator in
//! accelerated time — and checks it against the ground truth.
//!
//! `cargo run --release -p dolbom-load-tests --bin scenario -- town|city|nation [overrides]`
//!
//! Prints throughput, memory per household, detection latency p50/p99,
//! missed and false incident counts and CPU use; writes
//! `<out-dir>/<name>.json`, `<name>-truth.json` and `<name>.png`. Exits
//! non-zero when the run did not match its ground truth.

use clap::Parser;
use dolbom_load_tests::scenario::{Path, Scenario};
use dolbom_load_tests::{inproc, overkafka};

#[derive(Parser, Debug)]
#[command(about = "Drive dolbom with a simulated town, city or nation and check it")]
struct Args {
    /// `town` (10 000 households, a week, over Kafka via Tansu), `city`
    /// (1 M, in process), `nation` (10 M, in process) or `smoke`.
    scenario: String,
    #[arg(long)]
    households: Option<usize>,
    /// Simulated hours.
    #[arg(long)]
    hours: Option<u32>,
    /// Simulated seconds per wall second over Kafka (0 = as fast as possible).
    #[arg(long)]
    speed: Option<u32>,
    #[arg(long)]
    partitions: Option<usize>,
    #[arg(long)]
    seed: Option<u64>,
    /// Run over Kafka (`kafka`) or the in-process bus (`in-process`).
    #[arg(long)]
    path: Option<String>,
    /// Thresholds for every household: attention,caution,danger,offline minutes.
    #[arg(long, value_delimiter = ',')]
    thresholds: Option<Vec<u32>>,
    /// No pipeline stall.
    #[arg(long)]
    no_stall: bool,
    /// No blackout.
    #[arg(long)]
    no_blackout: bool,
    /// Serve the services' Prometheus metrics here while the scenario
    /// runs (e.g. 127.0.0.1:9464), for a real Prometheus to scrape
    /// (`load-tests/overview.sh`).
    #[arg(long)]
    metrics_listen: Option<String>,
    #[arg(long, default_value = "scenario-out")]
    out_dir: std::path::PathBuf,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,dolbom_notify::core=off".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let a = Args::parse();
    let mut sc = Scenario::preset(&a.scenario).ok_or_else(|| {
        anyhow::anyhow!(
            "unknown scenario {:?}: town, city, nation or smoke",
            a.scenario
        )
    })?;
    if let Some(n) = a.households {
        sc.households = n;
    }
    if let Some(h) = a.hours {
        sc.hours = h;
    }
    if let Some(s) = a.speed {
        sc.speed = s;
    }
    if let Some(p) = a.partitions {
        sc.partitions = p;
    }
    if let Some(s) = a.seed {
        sc.seed = s;
    }
    match a.path.as_deref() {
        None => {}
        Some("kafka") => sc.path = Path::Kafka,
        Some("in-process") => sc.path = Path::InProcess,
        Some(p) => anyhow::bail!("--path {p:?}: kafka or in-process"),
    }
    if let Some(t) = a.thresholds {
        let t: [u32; 4] = t
            .try_into()
            .map_err(|_| anyhow::anyhow!("--thresholds takes four numbers"))?;
        sc.thresholds = Some(t);
    }
    if a.no_stall {
        sc.stall_at_hours = None;
    }
    if a.no_blackout {
        sc.blackout = None;
    }
    sc.out_dir = a.out_dir;
    sc.progress = !a.quiet;
    // The services' metrics, read for the report and (--metrics-listen)
    // served for a Prometheus to scrape, as in production.
    let metrics =
        dolbom_prometheus::install_with_handle(a.metrics_listen.as_deref().unwrap_or_default())?;
    let (report, truth, seen) = match sc.path {
        Path::Kafka => overkafka::run(&sc, &metrics).await?,
        Path::InProcess => inproc::run(&sc).await?,
    };
    print!("{}", report.render());
    let (json, png) = dolbom_load_tests::plot::write(&report, &sc.out_dir, &truth, &seen)?;
    println!("summary       {} and {}", json.display(), png.display());
    if !report.passed {
        std::process::exit(1);
    }
    Ok(())
}
