//! One server span per gRPC call, named and attributed after the
//! OpenTelemetry RPC conventions (`rpc.system`, `rpc.service`,
//! `rpc.method`; span name `service/method`). A caller that sends W3C
//! `traceparent` metadata makes its span the parent. Registry changes and
//! acknowledgements made in the call run inside it (the store's writer
//! thread enters the caller's span), so a registry change's trace follows it
//! onto `care.households`.

use opentelemetry::propagation::Extractor;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

struct Metadata<'a>(&'a tonic::codegen::http::HeaderMap);

impl Extractor for Metadata<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The span of one call (tonic's `trace_fn`).
pub fn server_span(req: &tonic::codegen::http::Request<()>) -> tracing::Span {
    let path = req.uri().path().trim_start_matches('/');
    let (service, method) = path.split_once('/').unwrap_or((path, ""));
    let span = tracing::info_span!(
        "grpc",
        otel.name = %path,
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.service = %service,
        rpc.method = %method,
    );
    let cx =
        opentelemetry::global::get_text_map_propagator(|p| p.extract(&Metadata(req.headers())));
    let _ = span.set_parent(cx);
    span
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_is_named_after_its_service_and_method() {
        let req = tonic::codegen::http::Request::builder()
            .uri("http://x/dolbom.v1.IncidentService/Acknowledge")
            .body(())
            .unwrap();
        // Without a subscriber the span is disabled; naming must not panic.
        let _ = server_span(&req);
        let odd = tonic::codegen::http::Request::builder()
            .uri("http://x/")
            .body(())
            .unwrap();
        let _ = server_span(&odd);
    }
}
