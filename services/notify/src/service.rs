//! The service around the core: [`build`] it from options, [`serve`] the
//! gRPC API (with health following readiness, and reflection), and [`run`]
//! everything `dolbom notify` is — Kafka in and out, the API, the
//! escalation clock, publishing, housekeeping — until shutdown, then drain.

use crate::api::{self, Api};
use crate::channels::{self, Channel};
use crate::core::{Core, CoreParts};
use crate::crypto::Cipher;
use crate::error::NotifyError;
use crate::escalate::EscalationClock;
use crate::housekeeping::Housekeeping;
use crate::kafka::{self, KafkaPublisher};
use crate::options::NotifyOptions;
use crate::publish::{PublishLoop, Publisher};
use crate::store;
use dolbom_domain::{SharedClock, WallClock};
use dolbom_history::{HistoryStore, HistoryWriter};
use dolbom_options::Options as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Reader connections of the store: API reads run on up to this many at
/// once (the writer has its own connection and thread).
const READERS: usize = 4;
/// Calls in flight get this long to finish when the server shuts down;
/// streams that outlive it are closed.
const DRAIN: Duration = Duration::from_secs(10);
/// Deliveries under way get this long at shutdown; the rest stay queued.
const DELIVERY_DRAIN: Duration = Duration::from_secs(20);
/// How long a stopping service forwards the history outbox.
const HISTORY_DRAIN: Duration = Duration::from_secs(10);

/// The gRPC services whose health follows readiness.
const SERVICES: [&str; 4] = [
    "",
    "dolbom.v1.RegistryService",
    "dolbom.v1.IncidentService",
    "dolbom.v1.StatisticsService",
];

/// A running core with what feeds it.
pub struct Built {
    pub core: Arc<Core>,
    pub api: Api,
    /// Registry changes and the service's own events out to the bus.
    pub publish: PublishLoop,
    pub history_writer: Arc<HistoryWriter>,
    pub history_task: tokio::task::JoinHandle<()>,
}

/// Builds the core from options: opens `notify.sqlite` in `data_dir`, the
/// contact key, the channels and the policies; resumes the deliveries that
/// were pending.
pub async fn build(
    opts: &NotifyOptions,
    clock: SharedClock,
    publisher: Arc<dyn Publisher>,
    history: Arc<dyn HistoryStore>,
) -> Result<Built, NotifyError> {
    opts.validate()?;
    let opts = &opts.with_secrets()?;
    let lock = store::lock(&opts.data_dir)?;
    let path = opts.data_dir.join("notify.sqlite");
    let conn = store::open(&path)?;
    let readers = (0..READERS)
        .map(|_| store::open(&path))
        .collect::<Result<Vec<_>, _>>()?;
    let cipher = Cipher::from_file(&opts.contact_key_path(), opts.create_contact_key)?;
    let (writer, history_task) = HistoryWriter::spawn(history.clone(), opts.writer.clone());
    let writer = Arc::new(writer);
    let directory = Arc::new(channels::Directory::new(&opts.recipients));
    let chans: Vec<Arc<dyn Channel>> = vec![
        Arc::new(channels::SmsGateway::new(
            &opts.sms,
            &opts.retry,
            directory.clone(),
        )),
        Arc::new(channels::Webhook::new(&opts.retry, directory)),
        Arc::new(channels::WatchChannel),
    ];
    let core = Core::new(CoreParts {
        lock: Some(lock),
        conn,
        readers,
        cipher,
        router: opts.router()?,
        policies: opts.policy_map(),
        learning: opts.learning_map(),
        clock,
        history: writer.clone(),
        channels: chans,
        retry: opts.retry,
        max_in_flight: opts.max_in_flight,
        log_retention_ms: i64::from(opts.log_retention_days) * 86_400_000,
        incident_retention_ms: i64::from(opts.incident_retention_days) * 86_400_000,
    });
    core.install_policies()?;
    core.resume_deliveries().await?;
    crate::forward::HistoryForwarder::spawn(&core);
    Ok(Built {
        api: Api {
            core: core.clone(),
            history,
            closing: CancellationToken::new(),
            limits: opts.api.clone(),
            watch_permits: crate::limits::WatchPermits::new(opts.api.watch_streams_per_token),
            tls: opts
                .tls
                .as_ref()
                .map(dolbom_tls::ServerTls::config)
                .transpose()
                .map_err(|e| NotifyError::Config(format!("tls: {e}")))?,
        },
        publish: PublishLoop {
            core: core.clone(),
            publisher,
        },
        core,
        history_writer: writer,
        history_task,
    })
}

/// Keeps gRPC health in step with the core's readiness: NOT_SERVING while it
/// cannot do its job (grpc_health_probe fails, a load balancer drains it),
/// and from the moment shutdown begins.
async fn follow_readiness(
    core: Arc<Core>,
    health: tonic_health::server::HealthReporter,
    shutdown: CancellationToken,
) {
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
            let ready = if status == ServingStatus::Serving {
                1.0
            } else {
                0.0
            };
            metrics::gauge!(crate::metrics::READY).set(ready);
            for name in SERVICES {
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
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
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
    // Both reflection versions: grpcurl speaks v1, Python's grpcio and
    // older tools still ask v1alpha.
    fn schema() -> tonic_reflection::server::Builder<'static> {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(dolbom_proto::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    }
    let (reflection_v1, reflection_v1alpha) = if api.limits.reflection {
        let e = |e| NotifyError::Internal(format!("reflection: {e}"));
        (
            Some(schema().build_v1().map_err(e)?),
            Some(schema().build_v1alpha().map_err(e)?),
        )
    } else {
        (None, None)
    };
    let health_only = if api.limits.health_listen.is_empty() {
        None
    } else {
        let l = tokio::net::TcpListener::bind(&api.limits.health_listen)
            .await
            .map_err(|e| {
                NotifyError::Config(format!(
                    "api.health_listen {}: {e}",
                    api.limits.health_listen
                ))
            })?;
        tracing::info!(addr = %l.local_addr()?, "plaintext gRPC health (probes) listening");
        let svc = health_service.clone();
        let stop = shutdown.clone();
        Some(tokio::spawn(async move {
            let r = tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(l),
                    stop.cancelled_owned(),
                )
                .await;
            if let Err(e) = r {
                tracing::error!(error = %e, "health listener stopped");
            }
        }))
    };
    let limits = api.limits.clone();
    let follower = tokio::spawn(follow_readiness(api.core.clone(), health, shutdown.clone()));
    let addr: SocketAddr = listener.local_addr()?;
    tracing::info!(%addr, tls = api.tls.is_some(), "municipality gRPC API listening");
    let closing = api.closing.clone();
    let stopping = shutdown.clone();
    let stop = async move {
        stopping.cancelled().await;
        closing.cancel();
    };
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = api.tls.clone() {
        builder = builder
            .tls_config(tls)
            .map_err(|e| NotifyError::Config(format!("tls: {e}")))?;
    }
    let server = builder
        .trace_fn(crate::rpcspan::server_span)
        .max_concurrent_streams(Some(limits.max_concurrent_streams))
        .concurrency_limit_per_connection(limits.concurrency_per_connection)
        .timeout(Duration::from_secs(limits.request_timeout_secs))
        .add_service(health_service)
        .add_optional_service(reflection_v1)
        .add_optional_service(reflection_v1alpha)
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
    tokio::select! {
        r = server => r?,
        _ = async {
            shutdown.cancelled().await;
            tokio::time::sleep(DRAIN).await;
        } => tracing::warn!("drain took longer than {DRAIN:?}; closing the remaining streams"),
    }
    // The follower holds the core: once it ends, a stopped in-process
    // instance lets go of its store.
    let _ = follower.await;
    if let Some(h) = health_only {
        let _ = h.await;
    }
    Ok(())
}

/// How often the revocation file is checked for changes.
const REVOCATIONS_EVERY: Duration = Duration::from_secs(5);

/// Re-reads the revocation file whenever it changes, until `shutdown`. A
/// file that does not parse leaves the previous list in force (counted and
/// logged): a typo must not un-revoke every token.
async fn follow_revocations(
    path: std::path::PathBuf,
    verifier: dolbom_auth::Verifier,
    shutdown: CancellationToken,
) {
    let stamp = |p: &std::path::Path| {
        std::fs::metadata(p)
            .ok()
            .map(|m| (m.modified().ok(), m.len()))
    };
    let mut seen = stamp(&path);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(REVOCATIONS_EVERY) => {}
        }
        let now = stamp(&path);
        if now == seen {
            continue;
        }
        seen = now;
        match dolbom_auth::Revocations::load(&path) {
            Ok(r) => {
                metrics::gauge!(crate::metrics::REVOKED_TOKENS).set(r.len() as f64);
                tracing::info!(entries = r.len(), "revocation list reloaded");
                verifier.set_revocations(r);
            }
            Err(e) => {
                metrics::counter!(crate::metrics::REVOCATION_RELOAD_FAILURES).increment(1);
                tracing::error!(error = %e, "revocation file not reloaded; the previous list stays in force");
            }
        }
    }
}

/// `dolbom notify`: Kafka in and out, the API, the clocks, until `shutdown`;
/// then the API drains, the consumer stops after committing what is stored,
/// and the history writer flushes.
pub async fn run(opts: NotifyOptions, shutdown: CancellationToken) -> Result<(), NotifyError> {
    if !opts.metrics_listen.is_empty() {
        dolbom_prometheus::install(&opts.metrics_listen)
            .map_err(|e| NotifyError::Config(format!("metrics_listen: {e}")))?;
        crate::metrics::describe();
        dolbom_history::metrics::describe();
        dolbom_telemetry::describe();
    }
    let verifier = opts.verifier()?;
    let history = dolbom_history::open_store(
        &opts.history_store,
        &opts.data_dir,
        &opts.scylla,
        opts.retention,
    )
    .await?;
    let publisher = Arc::new(KafkaPublisher::new(&opts)?);
    let built = build(&opts, WallClock::shared(), publisher, history).await?;
    let listener = tokio::net::TcpListener::bind(&opts.listen).await?;
    let core = built.core.clone();
    let background = [
        tokio::spawn(
            EscalationClock {
                core: core.clone(),
                tick: Duration::from_millis(opts.tick_ms),
            }
            .run(shutdown.clone()),
        ),
        tokio::spawn(built.publish.clone().run(shutdown.clone())),
        tokio::spawn(
            Housekeeping {
                core: core.clone(),
                sweep_every: Duration::from_secs(opts.sweep_interval_secs),
            }
            .run(shutdown.clone()),
        ),
    ];
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
    let revocations = opts
        .revoked_tokens_file
        .clone()
        .map(|f| tokio::spawn(follow_revocations(f, verifier.clone(), shutdown.clone())));
    let served = serve(built.api, verifier, listener, shutdown.clone()).await;
    if let Some(r) = revocations {
        r.abort();
    }
    shutdown.cancel();
    let consumed = consumer
        .await
        .map_err(|e| NotifyError::Internal(format!("consumer task: {e}")))?;
    for task in background {
        let _ = task.await;
    }
    // Deliveries under way finish (or stay pending for the next start).
    if tokio::time::timeout(DELIVERY_DRAIN, core.drain_deliveries())
        .await
        .is_err()
    {
        tracing::warn!("deliveries still running at shutdown stay queued for the next start");
    }
    // What the history store takes in time is forwarded; the rest waits in
    // the history outbox for the next start.
    if tokio::time::timeout(HISTORY_DRAIN, core.history_flush())
        .await
        .is_err()
    {
        tracing::warn!(
            "history store slow or down at shutdown: its records wait in the history outbox"
        );
    }
    drop(built.history_writer);
    consumed?;
    served
}
