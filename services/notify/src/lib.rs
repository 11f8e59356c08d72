//! `dolbom notify`: the municipality gRPC API, the escalation engine and the
//! delivery channels — the people's clock.
//!
//! Owns:
//! - the registry (households, plugs, consent, absences, thresholds, and
//!   the contacts, encrypted at rest) and its changelog on `care.households`;
//! - the incident views the API serves, acknowledgement and resolution, and
//!   the event log behind `WatchIncidents` (resumable by cursor);
//! - one [`dolbom_escalation::Escalation`] per incident, persisted after every
//!   transition, and the outbox of messages it sends over SMS, webhooks and
//!   the watch stream (see [`channels`]);
//! - authentication (Ed25519 bearer tokens, [`dolbom_auth`]) and tenant
//!   scoping of every call, and the audit of every personal-data read (into
//!   the history store).
//!
//! Data flow: `care.incidents` (Kafka, or the in-process bus in standalone)
//! → [`Core::ingest`] (one transaction: log, view, escalation, outbox) →
//! watch subscribers, delivery tasks (retries, then escalation on failure),
//! escalation and delivery records → history writer. The clock loop moves
//! due escalations ([`Core::tick`]). API writes (registry, acknowledge,
//! resolve) go through the same core; their changes reach Kafka through the
//! publisher loop (registry configs, and the ACKNOWLEDGED / RESOLVED events
//! the history store counts in its statistics). Offsets of `care.incidents`
//! are committed only after the batch is durable in the store.

pub mod api;
pub mod channels;
pub mod core;
pub mod crypto;
pub mod kafka;
pub mod options;
pub mod registry;
pub mod store;

pub use crate::core::{Clock, Core, CoreParts, NoPublisher, Publisher};
pub use api::Api;
pub use options::NotifyOptions;

use dolbom_history::{HistoryError, HistoryStore, HistoryWriter};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("{field}: {problem}")]
    Invalid { field: String, problem: String },
    #[error("not found: {0}")]
    NotFound(String),
    #[error("permission denied: {0}")]
    Denied(String),
    #[error("already exists: {0}")]
    Exists(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("failed precondition: {0}")]
    Precondition(String),
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error("encryption: {0}")]
    Crypto(String),
    #[error("corrupt store: {0}")]
    Corrupt(String),
    #[error("store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("history: {0}")]
    History(#[from] HistoryError),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("options: {0}")]
    Options(#[from] dolbom_options::LayerError),
    #[error("grpc server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("internal: {0}")]
    Internal(String),
}

impl NotifyError {
    pub fn invalid(field: &str, problem: &str) -> Self {
        NotifyError::Invalid {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// A running core with its history writer.
pub struct Built {
    pub core: Arc<Core>,
    pub api: Api,
    pub history_writer: Arc<HistoryWriter>,
    pub history_task: tokio::task::JoinHandle<()>,
}

/// Builds the core from options: opens `notify.sqlite` in `data_dir`, the
/// contact key, the channels and the policies; resumes the deliveries that
/// were pending.
pub async fn build(
    opts: &NotifyOptions,
    clock: Clock,
    publisher: Arc<dyn Publisher>,
    history: Arc<dyn HistoryStore>,
) -> Result<Built, NotifyError> {
    opts.validate()?;
    let path = opts.data_dir.join("notify.sqlite");
    let conn = store::open(&path)?;
    let reader = store::open(&path)?;
    let key_file = opts.contact_key_path();
    let cipher = crypto::Cipher::from_file(&key_file, opts.create_contact_key)?;
    let (writer, history_task) = HistoryWriter::spawn(history.clone(), opts.writer.clone());
    let writer = Arc::new(writer);
    let directory = Arc::new(channels::Directory::new(&opts.recipients));
    let chans: Vec<Arc<dyn channels::Channel>> = vec![
        Arc::new(channels::SmsGateway::new(
            &opts.sms,
            &opts.retry,
            directory.clone(),
        )),
        Arc::new(channels::Webhook::new(&opts.retry, directory)),
        Arc::new(channels::WatchChannel),
    ];
    let core = Core::new(CoreParts {
        conn,
        reader,
        cipher,
        router: opts.router()?,
        policies: opts.policy_map(),
        clock,
        history: writer.clone(),
        publisher,
        channels: chans,
        retry: opts.retry,
        max_in_flight: opts.max_in_flight,
        log_retention_ms: i64::from(opts.log_retention_days) * 86_400_000,
        incident_retention_ms: i64::from(opts.incident_retention_days) * 86_400_000,
    });
    core.install_policies()?;
    core.resume_deliveries().await?;
    Ok(Built {
        api: Api {
            core: core.clone(),
            history,
            closing: CancellationToken::new(),
        },
        core,
        history_writer: writer,
        history_task,
    })
}

/// Serves the API (plus gRPC health and reflection, which need no token) on
/// `listener` until `shutdown`; in-flight calls finish first.
pub async fn serve(
    api: Api,
    verifier: dolbom_auth::Verifier,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> Result<(), NotifyError> {
    use dolbom_proto::v1::incident_service_server::IncidentServiceServer;
    use dolbom_proto::v1::registry_service_server::RegistryServiceServer;
    use dolbom_proto::v1::statistics_service_server::StatisticsServiceServer;
    let auth = api::authenticate(Arc::new(verifier));
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<RegistryServiceServer<Api>>().await;
    health.set_serving::<IncidentServiceServer<Api>>().await;
    health.set_serving::<StatisticsServiceServer<Api>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(dolbom_proto::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| NotifyError::Internal(format!("reflection: {e}")))?;
    // Readiness follows the core: NOT_SERVING while it cannot do its job
    // (grpc_health_probe fails, a load balancer drains it), and from the
    // moment shutdown begins.
    {
        let (core, shutdown) = (api.core.clone(), shutdown.clone());
        tokio::spawn(async move {
            use tonic_health::ServingStatus;
            let mut last = None;
            loop {
                let status = match (shutdown.is_cancelled(), core.health()) {
                    (false, Ok(())) => ServingStatus::Serving,
                    (false, Err(why)) => {
                        if last != Some(ServingStatus::NotServing) {
                            tracing::warn!(why, "not ready");
                        }
                        ServingStatus::NotServing
                    }
                    (true, _) => ServingStatus::NotServing,
                };
                if last != Some(status) {
                    for name in [
                        "",
                        "dolbom.v1.RegistryService",
                        "dolbom.v1.IncidentService",
                        "dolbom.v1.StatisticsService",
                    ] {
                        health.set_service_status(name, status).await;
                    }
                    last = Some(status);
                }
                if shutdown.is_cancelled() {
                    break;
                }
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = core.health_changed() => {}
                    _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
                }
            }
        });
    }
    let addr: SocketAddr = listener.local_addr()?;
    tracing::info!(%addr, "municipality gRPC API listening");
    let closing = api.closing.clone();
    let stopping = shutdown.clone();
    let stop = async move {
        stopping.cancelled().await;
        closing.cancel();
    };
    let server = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection)
        .add_service(RegistryServiceServer::with_interceptor(
            api.clone(),
            auth.clone(),
        ))
        .add_service(IncidentServiceServer::with_interceptor(
            api.clone(),
            auth.clone(),
        ))
        .add_service(StatisticsServiceServer::with_interceptor(api, auth))
        .serve_with_incoming_shutdown(
            // No Nagle delay on small streamed messages (watch events).
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            stop,
        );
    // Calls in flight get `DRAIN` to finish; streams that outlive it (a
    // health watch, a client that ignores the end of its watch) are closed.
    const DRAIN: std::time::Duration = std::time::Duration::from_secs(10);
    tokio::select! {
        r = server => r?,
        _ = async {
            shutdown.cancelled().await;
            tokio::time::sleep(DRAIN).await;
        } => tracing::warn!("drain took longer than {DRAIN:?}; closing the remaining streams"),
    }
    Ok(())
}

/// `dolbom notify`: Kafka in and out, the API, the clocks, until `shutdown`;
/// then the API drains, the consumer stops after committing what is stored,
/// and the history writer flushes.
pub async fn run(opts: NotifyOptions, shutdown: CancellationToken) -> Result<(), NotifyError> {
    if !opts.metrics_listen.is_empty() {
        dolbom_prometheus::install(&opts.metrics_listen)
            .map_err(|e| NotifyError::Config(format!("metrics_listen: {e}")))?;
    }
    let verifier = opts.verifier()?;
    let history = dolbom_history::open_store(
        &opts.history_store,
        &opts.data_dir,
        &opts.scylla,
        opts.retention,
    )
    .await?;
    let publisher = Arc::new(kafka::KafkaPublisher::new(&opts)?);
    let clock: Clock = Arc::new(|| dolbom_domain::Ts(dolbom_history::now_ms()));
    let built = build(&opts, clock, publisher, history).await?;
    let listener = tokio::net::TcpListener::bind(&opts.listen).await?;
    let core = built.core.clone();
    let loops = tokio::spawn(core.clone().run_loops(
        std::time::Duration::from_millis(opts.tick_ms),
        std::time::Duration::from_secs(opts.sweep_interval_secs),
        shutdown.clone(),
    ));
    let consumer = {
        let (opts, core, shutdown) = (opts.clone(), core.clone(), shutdown.clone());
        tokio::spawn(async move {
            let r = kafka::consume(opts, core.clone(), shutdown.clone()).await;
            core.set_input_ok(false);
            if let Err(e) = &r {
                // Without its input the service must not look healthy: drain
                // and exit with the error, so the orchestrator restarts it
                // (uncommitted events come back from Kafka).
                tracing::error!(error = %e, "incident consumer stopped; shutting down");
                shutdown.cancel();
            }
            r
        })
    };
    let served = serve(built.api, verifier, listener, shutdown.clone()).await;
    shutdown.cancel();
    let consumed = consumer
        .await
        .map_err(|e| NotifyError::Internal(format!("consumer task: {e}")))?;
    let _ = loops.await;
    // Deliveries under way finish (or stay pending for the next start).
    if tokio::time::timeout(
        std::time::Duration::from_secs(20),
        built.core.drain_deliveries(),
    )
    .await
    .is_err()
    {
        tracing::warn!("deliveries still running at shutdown stay queued for the next start");
    }
    built.history_writer.flush().await?;
    drop(built.history_writer);
    consumed?;
    served
}
