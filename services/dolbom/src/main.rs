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
//! `--check-config` on a service loads and checks its options and every file
//! they name, then exits (0 = usable) without starting it.
//!
//! This file only dispatches: each service's flags live beside its options
//! and are layered over them (`dolbom_options::Options::load`); logging and
//! signal handling are set up here, and the services own their logic.

use anyhow::Context;
use clap::{Parser, Subcommand};
use dolbom_options::Options;
use std::path::PathBuf;
use std::process::ExitCode;
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
    Standalone(dolbom_standalone::StandaloneFlags),
    /// Run the monitor service: households as sharded actors over Kafka.
    Monitor(dolbom_monitor::MonitorFlags),
    /// Run the history ingest: readings and incidents from Kafka into the
    /// history store (embedded SQLite or ScyllaDB).
    History(dolbom_history_ingest::HistoryFlags),
    /// Run the notification service: the municipality gRPC API, escalation
    /// engine and delivery channels, over Kafka.
    Notify(dolbom_notify::NotifyFlags),
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
        /// Refuse a longer ttl; the API refuses tokens living longer than its
        /// own `max_token_lifetime_hours` (default 90 days) anyway.
        #[arg(long, default_value_t = dolbom_auth::DEFAULT_MAX_LIFETIME_S / 3600)]
        max_lifetime_hours: u64,
    },
}

/// Cancelled on SIGINT or SIGTERM. A drain that cannot finish (e.g. the
/// broker is gone) must not keep the process alive: what was not
/// snapshotted is replayed anyway.
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
        std::thread::spawn(|| {
            std::thread::sleep(std::time::Duration::from_secs(45));
            eprintln!("dolbom: drain did not finish within 45 s; exiting");
            std::process::exit(3);
        });
    });
    token
}

fn token(cmd: TokenCommand) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::Keygen { kid, out } => {
            let key = dolbom_auth::SigningKey::create_file(&kid, &out)?;
            println!("{}", key.verifying_key().to_text());
        }
        TokenCommand::Mint {
            key,
            subject,
            municipality,
            national,
            personal_data,
            ttl_hours,
            max_lifetime_hours,
        } => {
            let key = dolbom_auth::SigningKey::from_file(&key)?;
            let p = match (municipality, national) {
                (Some(m), false) => {
                    dolbom_auth::Principal::municipality(&subject, &m, personal_data)
                }
                (None, true) => dolbom_auth::Principal {
                    personal_data,
                    ..dolbom_auth::Principal::national(&subject)
                },
                _ => anyhow::bail!("give --municipality CODE or --national"),
            };
            let (token, id) = key.mint_with_id(
                &p,
                dolbom_auth::unix_now(),
                ttl_hours.saturating_mul(3600),
                max_lifetime_hours.saturating_mul(3600),
            )?;
            // The id goes to stderr: stdout is the token alone.
            eprintln!("token id (revoke with `jti {id}`): {id}");
            println!("{token}");
        }
    }
    Ok(())
}

/// `--check-config`: "configuration OK" and exit 0, or the problem.
fn checked<E: std::error::Error + Send + Sync + 'static>(
    r: Result<(), E>,
) -> anyhow::Result<ExitCode> {
    r.context("checking the configuration")?;
    println!("configuration OK");
    Ok(ExitCode::SUCCESS)
}

/// Logs, and traces over OTLP when a collector is configured: kept until
/// the command ends, then flushed.
fn telemetry(
    service: &str,
    opts: &dolbom_telemetry::TelemetryOptions,
) -> anyhow::Result<dolbom_telemetry::Telemetry> {
    Ok(dolbom_telemetry::init(service, opts)?)
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let command = Cli::parse().command;
    let _telemetry = match &command {
        // The services set up telemetry from their own options, below.
        Command::Monitor(_) | Command::Notify(_) | Command::History(_) => None,
        _ => Some(telemetry("dolbom", &Default::default())?),
    };
    match command {
        Command::Holidays { year, extra } => {
            let router = dolbom_calendar::Router::load(extra.as_deref(), Default::default())?;
            for h in router.calendar().holidays(year)? {
                println!("{}\t{}", h.date, h.name);
            }
        }
        Command::Token(cmd) => token(cmd)?,
        Command::Monitor(flags) => {
            let opts = dolbom_monitor::MonitorOptions::load(flags.common.config.as_deref(), &flags)
                .context("loading monitor options")?;
            if flags.common.check_config {
                return checked(opts.check_files());
            }
            let _telemetry = telemetry("dolbom-monitor", &opts.telemetry)?;
            dolbom_monitor::run(opts, shutdown_on_signals()).await?;
        }
        Command::Notify(flags) => {
            let opts = dolbom_notify::NotifyOptions::load(flags.common.config.as_deref(), &flags)
                .context("loading notify options")?;
            if flags.common.check_config {
                return checked(opts.check_files());
            }
            let _telemetry = telemetry("dolbom-notify", &opts.telemetry)?;
            dolbom_notify::run(opts, shutdown_on_signals()).await?;
        }
        Command::History(flags) => {
            let opts =
                dolbom_history_ingest::HistoryOptions::load(flags.common.config.as_deref(), &flags)
                    .context("loading history options")?;
            if flags.common.check_config {
                return checked(opts.check_files());
            }
            let _telemetry = telemetry("dolbom-history", &opts.telemetry)?;
            dolbom_history_ingest::run(opts, shutdown_on_signals()).await?;
        }
        Command::Standalone(flags) => {
            let opts = dolbom_standalone::StandaloneOptions::load(flags.config.as_deref(), &flags)
                .context("loading standalone options")?;
            let summary = dolbom_standalone::run(&opts, shutdown_on_signals()).await?;
            if flags.json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                print!("{}", summary.render());
            }
            if !summary.passed() {
                return Ok(ExitCode::from(2));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
