//! `dolbom`: every dolbom service as a subcommand of one binary.
//!
//! - `dolbom standalone` runs the whole platform in one process with a
//!   simulated town (see `dolbom-standalone`).
//! - `dolbom monitor` runs the monitor service over Kafka (`dolbom-monitor`).
//! - `dolbom history` runs the history ingest (`dolbom-history-ingest`).
//! - `dolbom notify` runs the municipality gRPC API, escalation and delivery
//!   (`dolbom-notify`).
//! - `dolbom token keygen|mint` makes the Ed25519 key of the token issuer and
//!   mints bearer tokens for municipalities and operators (`dolbom-auth`).
//! - `dolbom holidays YEAR` prints Korean public holidays (see `dolbom-calendar`).
//!
//! This file only parses flags, sets up logging and signal handling, and hands
//! over; the services own their logic.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use dolbom_calendar::HolidayCalendar;
use dolbom_standalone::StandaloneOptions;
use serde::Serialize;
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "dolbom",
    version,
    about = "dolbom — care plug monitoring for Korean municipalities"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole platform in one process with a simulated town of plugs.
    Standalone(StandaloneFlags),
    /// Run the monitor service: households as sharded actors over Kafka.
    Monitor(MonitorFlags),
    /// Run the history ingest: readings and incidents from Kafka into the
    /// history store (embedded SQLite or ScyllaDB).
    History(HistoryFlags),
    /// Run the notification service: the municipality gRPC API, escalation
    /// engine and delivery channels, over Kafka.
    Notify(NotifyFlags),
    /// Make signing keys and mint bearer tokens for the gRPC API.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Print the public holidays of a year (2000–2050): `YYYY-MM-DD<TAB>name`.
    Holidays {
        year: i32,
        /// Extra election/temporary holidays, TOML (see crates/calendar/data).
        #[arg(long)]
        extra: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Make a new Ed25519 signing key: writes it to --out (mode 0600) and
    /// prints the public key line for the service's `public_keys`.
    Keygen {
        /// Key id (goes into every token's header; rotate by adding a new one).
        #[arg(long)]
        kid: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Mint a bearer token.
    Mint {
        /// The signing key file from `keygen`.
        #[arg(long)]
        key: PathBuf,
        /// Who the caller is (a system or staff id, never a name).
        #[arg(long)]
        subject: String,
        /// The caller's 5-digit 시군구 code (municipality role).
        #[arg(long, conflicts_with = "national")]
        municipality: Option<String>,
        /// The national operator role (sees every municipality).
        #[arg(long)]
        national: bool,
        /// May read personal contact data (each read is audited).
        #[arg(long)]
        personal_data: bool,
        #[arg(long, default_value_t = 24)]
        ttl_hours: u64,
    },
}

#[derive(Args, Serialize)]
struct NotifyFlags {
    /// TOML file with notify options.
    #[arg(long)]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// gRPC listen address.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<String>,
    /// Kafka bootstrap servers.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    brokers: Option<String>,
    /// Directory of notify.sqlite, the contact key and the embedded history.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
    /// File of token verification keys (`kid:base64` per line).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    public_keys_file: Option<PathBuf>,
    /// Create the contact encryption key if it is missing.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    create_contact_key: Option<bool>,
    /// Serve Prometheus metrics here, e.g. 127.0.0.1:9466.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics_listen: Option<String>,
}

/// Flags override `DOLBOM_*` environment variables, which override the TOML
/// file, which overrides the defaults.
#[derive(Args, Serialize)]
struct StandaloneFlags {
    /// TOML file with options.
    #[arg(long)]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    #[serde(skip)]
    json: bool,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    households: Option<usize>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    quiet: Option<usize>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    offline: Option<usize>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    hospital: Option<usize>,
    /// Simulated hours to run.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    sim_hours: Option<u32>,
    /// Simulated seconds per real second (0 = as fast as possible).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    speed: Option<u32>,
    /// Simulation start, RFC 3339.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    start: Option<String>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<u64>,
    /// Extra holidays TOML.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    holidays_file: Option<PathBuf>,
    /// History store directory (default ./dolbom-data; "" keeps no history).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
    /// The municipality gRPC API's address (default 127.0.0.1:50051; "" = off).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    grpc_listen: Option<String>,
    /// Keep the gRPC API up after the simulation ends, until Ctrl-C.
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    serve: bool,
}

#[derive(Args, Serialize)]
struct HistoryFlags {
    /// TOML file with history options.
    #[arg(long)]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// Kafka bootstrap servers.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    brokers: Option<String>,
    /// Consumer group of the history ingest.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    group_id: Option<String>,
    /// `embedded` (SQLite in --data-dir) or `scylla` (see scylla.* options).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    store: Option<String>,
    /// Directory of the embedded store.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
    /// Serve Prometheus metrics here, e.g. 127.0.0.1:9465.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics_listen: Option<String>,
}

#[derive(Args, Serialize)]
struct MonitorFlags {
    /// TOML file with monitor options.
    #[arg(long)]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// Kafka bootstrap servers.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    brokers: Option<String>,
    /// Consumer group shared by all monitor instances.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    group_id: Option<String>,
    /// Static membership id (group.instance.id).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    instance_id: Option<String>,
    /// Partitions for topics created by this service.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    partitions: Option<i32>,
    /// Where shard snapshots are kept: embedded (default), scylla or file.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    snapshot_store: Option<String>,
    /// Directory of the embedded or file snapshot store.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    snapshot_dir: Option<PathBuf>,
    /// Seconds between snapshots (and offset commits) of each shard.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    snapshot_interval_secs: Option<u64>,
    /// Serve Prometheus metrics here, e.g. 127.0.0.1:9464.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics_listen: Option<String>,
    /// Extra election/temporary holidays, TOML (see crates/calendar/data).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    holidays_file: Option<PathBuf>,
    #[command(flatten)]
    #[serde(skip_serializing_if = "ShardFlags::is_empty")]
    shard: ShardFlags,
}

#[derive(Args, Serialize, Default, PartialEq)]
struct ShardFlags {
    /// `wall` (production) or `event` (replays, simulations, tests).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    clock: Option<String>,
    /// Wall milliseconds without input before a partition counts as stalled.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    stall_after_ms: Option<i64>,
}

impl ShardFlags {
    fn is_empty(&self) -> bool {
        *self == ShardFlags::default()
    }
}

fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        #[cfg(unix)]
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutdown requested; draining");
        t.cancel();
        // A drain that cannot finish (e.g. the broker is gone) must not keep
        // the process alive: what was not snapshotted is replayed anyway.
        std::thread::spawn(|| {
            std::thread::sleep(std::time::Duration::from_secs(45));
            eprintln!("dolbom: drain did not finish within 45 s; exiting");
            std::process::exit(3);
        });
    });
    token
}

#[tokio::main]
async fn main() -> anyhow::Result<std::process::ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DOLBOM_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match Cli::parse().command {
        Command::Holidays { year, extra } => {
            let mut cal = HolidayCalendar::builtin();
            if let Some(f) = extra {
                cal = cal.with_extra_file(&f)?;
            }
            for h in cal.holidays(year)? {
                println!("{}\t{}", h.date, h.name);
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Monitor(flags) => {
            let opts = dolbom_monitor::MonitorOptions::load(flags.config.as_deref(), &flags)
                .context("loading monitor options")?;
            dolbom_monitor::run(opts, shutdown_on_signals()).await?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Notify(flags) => {
            let opts = dolbom_notify::NotifyOptions::load(flags.config.as_deref(), &flags)
                .context("loading notify options")?;
            dolbom_notify::run(opts, shutdown_on_signals()).await?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Token(TokenCommand::Keygen { kid, out }) => {
            let key = dolbom_auth::SigningKey::generate(&kid)?;
            let mut o = std::fs::OpenOptions::new();
            o.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
            std::io::Write::write_all(
                &mut o
                    .open(&out)
                    .with_context(|| format!("creating {}", out.display()))?,
                format!("{}\n", key.to_text()).as_bytes(),
            )?;
            println!("{}", key.verifying_key().to_text());
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Token(TokenCommand::Mint {
            key,
            subject,
            municipality,
            national,
            personal_data,
            ttl_hours,
        }) => {
            let text = std::fs::read_to_string(&key)
                .with_context(|| format!("reading {}", key.display()))?;
            let key = dolbom_auth::SigningKey::from_text(&text)?;
            let p = match (municipality, national) {
                (Some(m), false) => {
                    dolbom_auth::Principal::municipality(&subject, &m, personal_data)
                }
                (None, true) => {
                    let mut p = dolbom_auth::Principal::national(&subject);
                    p.personal_data = personal_data;
                    p
                }
                _ => anyhow::bail!("give --municipality CODE or --national"),
            };
            println!(
                "{}",
                key.mint(&p, dolbom_auth::unix_now(), ttl_hours * 3600)?
            );
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::History(flags) => {
            let opts = dolbom_history_ingest::HistoryOptions::load(flags.config.as_deref(), &flags)
                .context("loading history options")?;
            dolbom_history_ingest::run(opts, shutdown_on_signals()).await?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Standalone(flags) => {
            let opts = StandaloneOptions::load(flags.config.as_deref(), &flags)
                .context("loading standalone options")?;
            let summary = dolbom_standalone::run(&opts, shutdown_on_signals()).await?;
            if flags.json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                print!("{}", summary.render());
            }
            Ok(if summary.passed() {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::from(2)
            })
        }
    }
}
