//! `dolbomctl`: the municipality gRPC API from a terminal.
//!
//! Talks the same API as any municipality system, with the same bearer
//! token (`--token`, `--token-file` or `DOLBOM_TOKEN`), so it can do exactly
//! what the token's municipality may. Output is a readable table, or one JSON
//! document (`--output json`; `watch` prints one JSON object per line).
//!
//! Data flow: flags → one request → the response rendered by `render.rs`.
//! `watch` keeps its cursor and reconnects after a dropped stream, resuming
//! where it stopped.

mod render;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use dolbom_domain::convert::{self, timestamp};
use dolbom_domain::incident::{IncidentKind, Outcome, Stage};
use dolbom_domain::{Named, Ts};
use dolbom_proto::v1 as pb;
use pb::incident_service_client::IncidentServiceClient;
use pb::registry_service_client::RegistryServiceClient;
use pb::statistics_service_client::StatisticsServiceClient;
use std::path::PathBuf;
use std::time::Duration;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

#[derive(Parser)]
#[command(
    name = "dolbomctl",
    version,
    about = "dolbom's municipality API from the command line"
)]
struct Cli {
    /// The notify service's gRPC address: `https://host:port` for TLS
    /// (with --ca, or the system's trust roots), `http://` only for a
    /// server on loopback.
    #[arg(
        long,
        env = "DOLBOM_ENDPOINT",
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    endpoint: String,
    /// Bearer token (see `dolbom token mint`).
    #[arg(long, env = "DOLBOM_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// A file holding the bearer token.
    #[arg(long, env = "DOLBOM_TOKEN_FILE", global = true)]
    token_file: Option<PathBuf>,
    /// PEM CA bundle the server's certificate must chain to.
    #[arg(long, env = "DOLBOM_CA", global = true)]
    ca: Option<PathBuf>,
    /// PEM client certificate, for servers that require mutual TLS.
    #[arg(long, env = "DOLBOM_CERT", global = true, requires = "key")]
    cert: Option<PathBuf>,
    /// PEM private key of --cert (mode 0600).
    #[arg(long, env = "DOLBOM_KEY", global = true, requires = "cert")]
    key: Option<PathBuf>,
    /// The name the server's certificate must carry (default: the
    /// endpoint's host).
    #[arg(long, global = true)]
    tls_domain: Option<String>,
    #[arg(long, short, value_enum, default_value_t = Output::Table, global = true)]
    output: Output,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum StateArg {
    Open,
    Acknowledged,
    Resolved,
}

/// A kind, stage or outcome as typed: its display name in any case, with
/// `-` for `_` (`device-offline`, `DEVICE_OFFLINE`).
fn named<T: Named>(s: &str) -> Result<T, String> {
    T::from_name(&s.to_uppercase().replace('-', "_")).ok_or_else(|| {
        let all: Vec<String> = T::ALL
            .iter()
            .map(|v| v.name().to_lowercase().replace('_', "-"))
            .collect();
        format!("expected one of {}", all.join(", "))
    })
}

#[derive(clap::Args, Clone, Default)]
struct FilterArgs {
    /// 5-digit 시군구 code (default: the token's own; required for national operators).
    #[arg(long)]
    municipality: Option<String>,
    /// 10-digit 행정동 code.
    #[arg(long)]
    dong: Option<String>,
    #[arg(long)]
    household: Option<String>,
    /// inactivity, device-offline, area-outage or pipeline-stall.
    #[arg(long, value_parser = named::<IncidentKind>)]
    kind: Option<IncidentKind>,
    /// At least this stage: attention, caution or danger.
    #[arg(long, value_parser = named::<Stage>)]
    min_stage: Option<Stage>,
}

#[derive(Subcommand)]
enum Cmd {
    /// List incidents, newest first.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        #[arg(long, value_enum)]
        state: Option<StateArg>,
        /// How many (all pages are followed up to this).
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Show one incident.
    Get { incident_id: String },
    /// Follow incident events live (reconnects and resumes by cursor).
    Watch {
        #[command(flatten)]
        filter: FilterArgs,
        /// Resume after this cursor (printed with every event).
        #[arg(long)]
        cursor: Option<String>,
        /// Stop after this many events (0 = never).
        #[arg(long, default_value_t = 0)]
        count: usize,
    },
    /// Acknowledge an incident: its escalation stops.
    Ack {
        incident_id: String,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Resolve an incident with an outcome.
    Resolve {
        incident_id: String,
        /// reached-by-phone, no-answer, visited-safe, emergency-dispatched,
        /// door-opened, hospitalised, deceased, device-fault, false-alarm.
        #[arg(long, value_parser = named::<Outcome>)]
        outcome: Outcome,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Register a household with its plugs (and optionally its contact).
    Register {
        /// `{municipality code}-{your own id}`, e.g. 11110-000123.
        #[arg(long)]
        household: String,
        #[arg(long)]
        municipality: String,
        #[arg(long)]
        dong: String,
        /// A plug's device id (repeat for several).
        #[arg(long = "plug")]
        plugs: Vec<String>,
        /// Consent to night/holiday monitoring by the control center.
        #[arg(long)]
        consent: bool,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        phone: Option<String>,
        #[arg(long)]
        address: Option<String>,
    },
    /// List registered households.
    Households {
        #[arg(long)]
        municipality: Option<String>,
        #[arg(long)]
        dong: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Monthly statistics: incidents by stage and outcome, time to
    /// acknowledge and to resolve.
    Stats {
        #[arg(long)]
        municipality: Option<String>,
        #[arg(long)]
        dong: Option<String>,
        /// First month, YYYY-MM.
        #[arg(long)]
        from: String,
        /// Last month, YYYY-MM (default: --from).
        #[arg(long)]
        to: Option<String>,
    },
}

type Auth = Box<dyn FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Send>;
type Svc = InterceptedService<Channel, Auth>;

fn auth(value: MetadataValue<tonic::metadata::Ascii>) -> Auth {
    Box::new(move |mut r: tonic::Request<()>| {
        r.metadata_mut().insert("authorization", value.clone());
        Ok(r)
    })
}

struct Clients {
    registry: RegistryServiceClient<Svc>,
    incidents: IncidentServiceClient<Svc>,
    stats: StatisticsServiceClient<Svc>,
}

async fn connect(cli: &Cli) -> anyhow::Result<Clients> {
    let token = match (&cli.token, &cli.token_file) {
        (Some(t), _) => t.trim().to_string(),
        (None, Some(f)) => std::fs::read_to_string(f)
            .with_context(|| format!("reading {}", f.display()))?
            .trim()
            .to_string(),
        (None, None) => bail!("no token: give --token, --token-file or DOLBOM_TOKEN"),
    };
    let value: MetadataValue<_> = format!("Bearer {token}")
        .parse()
        .context("the token is not a valid header value")?;
    let tls = dolbom_tls::ClientTls {
        ca_file: cli.ca.clone(),
        cert_file: cli.cert.clone(),
        key_file: cli.key.clone(),
        domain: cli.tls_domain.clone(),
    };
    let mut endpoint =
        Channel::from_shared(cli.endpoint.clone())?.connect_timeout(Duration::from_secs(5));
    if cli.endpoint.starts_with("https://") {
        endpoint = endpoint.tls_config(tls.config()?)?;
    } else if tls.is_set() {
        bail!("--ca, --cert and --tls-domain need an https:// endpoint");
    }
    let ch = endpoint
        .connect()
        .await
        .with_context(|| format!("connecting to {}", cli.endpoint))?;
    Ok(Clients {
        registry: RegistryServiceClient::with_interceptor(ch.clone(), auth(value.clone())),
        incidents: IncidentServiceClient::with_interceptor(ch.clone(), auth(value.clone())),
        stats: StatisticsServiceClient::with_interceptor(ch, auth(value)),
    })
}

fn filter(f: &FilterArgs) -> pb::IncidentFilter {
    pb::IncidentFilter {
        municipality_code: f.municipality.clone().unwrap_or_default(),
        dong_code: f.dong.clone().unwrap_or_default(),
        household_id: f.household.clone().unwrap_or_default(),
        kind: f.kind.map_or(0, |k| convert::kind(k) as i32),
        min_stage: f.min_stage.map_or(0, |s| convert::stage(s) as i32),
        ..Default::default()
    }
}

/// A gRPC error as one readable line (the exit code says it failed).
fn status(e: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", e.code(), e.message())
}

async fn watch(
    c: &mut Clients,
    f: pb::IncidentFilter,
    mut cursor: String,
    count: usize,
    out: Output,
) -> anyhow::Result<()> {
    let mut seen = 0usize;
    let mut header = out == Output::Table;
    loop {
        let stream = c
            .incidents
            .watch_incidents(pb::WatchIncidentsRequest {
                filter: Some(f.clone()),
                resume_cursor: cursor.clone(),
            })
            .await;
        let mut stream = match stream {
            Ok(s) => s.into_inner(),
            Err(e) if e.code() == tonic::Code::Unavailable => {
                eprintln!("dolbomctl: {}; reconnecting", e.message());
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
            Err(e) => return Err(status(e)),
        };
        loop {
            match stream.message().await {
                Ok(Some(m)) => {
                    cursor = m.cursor.clone();
                    if let Some(ev) = &m.event {
                        render::watch_line(ev, &m.cursor, out, header);
                        header = false;
                    }
                    seen += 1;
                    if count > 0 && seen >= count {
                        return Ok(());
                    }
                }
                Ok(None) => break,
                Err(e)
                    if matches!(
                        e.code(),
                        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Internal
                    ) =>
                {
                    eprintln!(
                        "dolbomctl: stream dropped ({}); resuming after {cursor}",
                        e.message()
                    );
                    break;
                }
                Err(e) => return Err(status(e)),
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dolbomctl: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut c = connect(&cli).await?;
    let out = cli.output;
    match cli.command {
        Cmd::List {
            filter: f,
            state,
            limit,
        } => {
            let mut fl = filter(&f);
            fl.state = state.map_or(0, |s| match s {
                StateArg::Open => pb::IncidentState::Open,
                StateArg::Acknowledged => pb::IncidentState::Acknowledged,
                StateArg::Resolved => pb::IncidentState::Resolved,
            } as i32);
            let mut all = Vec::new();
            let mut token = String::new();
            loop {
                let page = c
                    .incidents
                    .list_incidents(pb::ListIncidentsRequest {
                        filter: Some(fl.clone()),
                        page_size: (limit - all.len()).min(500) as u32,
                        page_token: token,
                    })
                    .await
                    .map_err(status)?
                    .into_inner();
                all.extend(page.incidents);
                token = page.next_page_token;
                if token.is_empty() || all.len() >= limit {
                    break;
                }
            }
            render::incidents(&all, out);
        }
        Cmd::Get { incident_id } => {
            let i = c
                .incidents
                .get_incident(pb::GetIncidentRequest { incident_id })
                .await
                .map_err(status)?
                .into_inner();
            render::incidents(&[i], out);
        }
        Cmd::Watch {
            filter: f,
            cursor,
            count,
        } => watch(&mut c, filter(&f), cursor.unwrap_or_default(), count, out).await?,
        Cmd::Ack { incident_id, note } => {
            let i = c
                .incidents
                .acknowledge(pb::AcknowledgeRequest { incident_id, note })
                .await
                .map_err(status)?
                .into_inner();
            render::incidents(&[i], out);
        }
        Cmd::Resolve {
            incident_id,
            outcome: o,
            note,
        } => {
            let i = c
                .incidents
                .resolve(pb::ResolveRequest {
                    incident_id,
                    outcome: convert::outcome(o) as i32,
                    note,
                })
                .await
                .map_err(status)?
                .into_inner();
            render::incidents(&[i], out);
        }
        Cmd::Register {
            household,
            municipality,
            dong,
            plugs,
            consent,
            name,
            phone,
            address,
        } => {
            let contact = (name.is_some() || phone.is_some() || address.is_some()).then(|| {
                pb::HouseholdContact {
                    name: name.unwrap_or_default(),
                    phone: phone.unwrap_or_default(),
                    address: address.unwrap_or_default(),
                    guardians: Vec::new(),
                }
            });
            let h = c
                .registry
                .create_household(pb::CreateHouseholdRequest {
                    config: Some(pb::HouseholdConfig {
                        household_id: household,
                        municipality_code: municipality,
                        dong_code: dong,
                        device_ids: plugs,
                        night_holiday_consent: consent,
                        registered_at: Some(timestamp(Ts::now())),
                        ..Default::default()
                    }),
                    contact,
                })
                .await
                .map_err(status)?
                .into_inner();
            render::households(&[h], out);
        }
        Cmd::Households {
            municipality,
            dong,
            limit,
        } => {
            let mut all = Vec::new();
            let mut token = String::new();
            loop {
                let page = c
                    .registry
                    .list_households(pb::ListHouseholdsRequest {
                        municipality_code: municipality.clone().unwrap_or_default(),
                        dong_code: dong.clone().unwrap_or_default(),
                        page_size: (limit - all.len()).min(500) as u32,
                        page_token: token,
                    })
                    .await
                    .map_err(status)?
                    .into_inner();
                all.extend(page.households);
                token = page.next_page_token;
                if token.is_empty() || all.len() >= limit {
                    break;
                }
            }
            render::households(&all, out);
        }
        Cmd::Stats {
            municipality,
            dong,
            from,
            to,
        } => {
            let r = c
                .stats
                .get_statistics(pb::StatisticsRequest {
                    municipality_code: municipality.unwrap_or_default(),
                    dong_code: dong.unwrap_or_default(),
                    to_month: to.unwrap_or_else(|| from.clone()),
                    from_month: from,
                })
                .await
                .map_err(status)?
                .into_inner();
            render::stats(&r.months, out);
        }
    }
    Ok(())
}
