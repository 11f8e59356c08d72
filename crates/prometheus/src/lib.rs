//! The Prometheus exporter every dolbom service installs.
//!
//! Owns one thing: [`install`] serves `/metrics` (Prometheus text format) on
//! the address from a service's `metrics_listen` option and makes it the
//! process-wide `metrics` recorder, with one set of histogram buckets (1 ms to
//! 60 s) for every `*_seconds` histogram. Services record with the `metrics`
//! macros under `dolbom_` names; nothing else flows through here.

#[derive(Debug, thiserror::Error)]
pub enum ExporterError {
    #[error("metrics_listen {listen:?}: {reason}")]
    Address { listen: String, reason: String },
    #[error("metrics exporter: {0}")]
    Build(String),
}

/// Histogram buckets, in seconds.
pub const BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

fn address(listen: &str) -> Result<std::net::SocketAddr, ExporterError> {
    listen
        .parse()
        .map_err(|e: std::net::AddrParseError| ExporterError::Address {
            listen: listen.to_string(),
            reason: e.to_string(),
        })
}

/// Serves `/metrics` on `listen`; empty = no exporter. Installs the
/// process-wide recorder; a second call in one process is a no-op.
pub fn install(listen: &str) -> Result<(), ExporterError> {
    if listen.is_empty() {
        return Ok(());
    }
    let addr = address(listen)?;
    match metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets(BUCKETS)
        .map_err(|e| ExporterError::Build(e.to_string()))?
        .install()
    {
        Ok(()) | Err(metrics_exporter_prometheus::BuildError::FailedToSetGlobalRecorder(_)) => {
            Ok(())
        }
        Err(e) => Err(ExporterError::Build(e.to_string())),
    }
}

/// Installs the process-wide recorder with the shared buckets and returns a
/// handle that renders what it holds (load generators read their figures
/// from it); serves `/metrics` on `listen` too unless it is empty. Must run
/// inside a Tokio runtime when `listen` is set.
pub fn install_with_handle(
    listen: &str,
) -> Result<metrics_exporter_prometheus::PrometheusHandle, ExporterError> {
    let builder = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(BUCKETS)
        .map_err(|e| ExporterError::Build(e.to_string()))?;
    if listen.is_empty() {
        return builder
            .install_recorder()
            .map_err(|e| ExporterError::Build(e.to_string()));
    }
    let addr = address(listen)?;
    let (recorder, exporter) = builder
        .with_http_listener(addr)
        .build()
        .map_err(|e| ExporterError::Build(e.to_string()))?;
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|e| ExporterError::Build(e.to_string()))?;
    tokio::spawn(exporter);
    Ok(handle)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_bad_address_is_named() {
        let e = super::install("not an address").unwrap_err();
        assert!(e.to_string().contains("not an address"), "{e}");
        assert!(super::install("").is_ok());
    }
}
