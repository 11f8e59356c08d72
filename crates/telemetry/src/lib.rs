//! Observability set-up for every dolbom binary: logs to stderr, and traces
//! exported over OTLP/gRPC when a collector is configured.
//!
//! Owns [`TelemetryOptions`] (the `[telemetry]` section of a service's
//! options), [`init`] (the `tracing` subscriber: `DOLBOM_LOG` filter, fmt
//! layer, and the OpenTelemetry layer when an endpoint is set), the
//! [`Telemetry`] guard that flushes on drop, and [`kafka`]: W3C
//! `traceparent` in Kafka record headers, so that one incident is one trace
//! from the monitor's shard to notify's deliveries; [`metrics`] counts what
//! happened to the spans; [`stored`] keeps an incident's trace context so
//! that later work joins or links to its trace; [`testing`] keeps spans in
//! memory for tests.
//!
//! Data flow: spans (`tracing`) → `tracing-opentelemetry` layer → sampler
//! (parent-based, ratio for new traces) → batch processor (bounded queue, its
//! own thread: the hot path never waits for the collector; when the queue is
//! full spans are dropped and counted: [`Bounded`]) → [`Counting`] (failed
//! exports counted) → OTLP exporter → collector.
//!
//! Standard variables are honoured: `OTEL_EXPORTER_OTLP_ENDPOINT` (when the
//! option is empty), `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`
//! (resource), `OTEL_TRACES_SAMPLER[_ARG]` (then the SDK's sampler replaces
//! the option's ratio). With neither an endpoint option nor the variable,
//! nothing is exported and no OpenTelemetry code runs per span.

pub mod kafka;
pub mod metrics;
mod queue;
pub mod stored;
pub mod testing;

pub use queue::{Bounded, Counting, InFlight};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider,
};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub use metrics::describe;

/// Where traces go and how many are kept.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TelemetryOptions {
    /// OTLP/gRPC collector, e.g. `http://otel-collector:4317`; empty =
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`, and nothing is exported without either.
    pub otlp_endpoint: String,
    /// Share of new traces kept (parent-based: a trace started upstream
    /// keeps its parent's decision). Ignored when `OTEL_TRACES_SAMPLER` is set.
    pub sample_ratio: f64,
    /// Spans waiting for export at most; more are dropped, never waited for.
    pub max_queue: usize,
}

impl Default for TelemetryOptions {
    fn default() -> Self {
        Self {
            otlp_endpoint: String::new(),
            sample_ratio: 0.01,
            max_queue: 4096,
        }
    }
}

/// Options that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("telemetry.sample_ratio must be between 0 and 1")]
    Ratio,
    #[error("telemetry.max_queue must be at least 1")]
    Queue,
    #[error("OTLP exporter: {0}")]
    Exporter(String),
    #[error("tracing subscriber: {0}")]
    Subscriber(String),
}

impl TelemetryOptions {
    pub fn validate(&self) -> Result<(), TelemetryError> {
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(TelemetryError::Ratio);
        }
        if self.max_queue == 0 {
            return Err(TelemetryError::Queue);
        }
        Ok(())
    }

    /// The collector's address: the option, else the standard variable.
    pub fn endpoint(&self) -> Option<String> {
        if !self.otlp_endpoint.is_empty() {
            return Some(self.otlp_endpoint.clone());
        }
        std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
            .ok()
            .filter(|e| !e.is_empty())
    }
}

/// Keeps the exporter alive; flushes what is queued when dropped.
#[must_use = "dropping it stops the export"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether traces are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports what is queued now (tests, shutdown).
    pub fn flush(&self) {
        if let Some(p) = &self.provider {
            let _ = p.force_flush();
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown_with_timeout(Duration::from_secs(5));
        }
    }
}

/// The tracer provider for `service`, or `None` when no collector is
/// configured. Must be called inside a Tokio runtime (the gRPC client).
pub fn provider(
    service: &str,
    opts: &TelemetryOptions,
) -> Result<Option<SdkTracerProvider>, TelemetryError> {
    opts.validate()?;
    let Some(endpoint) = opts.endpoint() else {
        return Ok(None);
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
    let waiting = InFlight::default();
    let exporter = Counting {
        inner: exporter,
        waiting: waiting.clone(),
    };
    let batch = BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_max_queue_size(opts.max_queue)
                .with_scheduled_delay(Duration::from_millis(500))
                .build(),
        )
        .build();
    let batch = Bounded::new(batch, waiting, opts.max_queue);
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(service.to_string());
    }
    let mut builder = SdkTracerProvider::builder()
        .with_span_processor(batch)
        .with_resource(resource.build());
    if std::env::var_os("OTEL_TRACES_SAMPLER").is_none() {
        builder = builder.with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            opts.sample_ratio,
        ))));
    }
    Ok(Some(builder.build()))
}

/// Installs the process's `tracing` subscriber: the `DOLBOM_LOG` filter
/// (default `info`), logs on stderr, and — when a collector is configured —
/// spans exported as `service`. W3C trace context is the propagator.
pub fn init(service: &str, opts: &TelemetryOptions) -> Result<Telemetry, TelemetryError> {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("DOLBOM_LOG").unwrap_or_else(|_| "info".into());
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let provider = provider(service, opts)?;
    let otel = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("dolbom")));
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init()
        .map_err(|e| TelemetryError::Subscriber(e.to_string()))?;
    if let Some(e) = opts.endpoint().filter(|_| provider.is_some()) {
        tracing::info!(endpoint = %e, ratio = opts.sample_ratio, "exporting traces over OTLP");
    }
    Ok(Telemetry { provider })
}
