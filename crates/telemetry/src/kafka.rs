//! W3C trace context in Kafka record headers (`traceparent`,
//! `tracestate`), so a trace crosses `care.incidents` and
//! `care.households`: the producer injects its current span's context, the
//! consumer makes it the parent of its processing span.

use opentelemetry::propagation::{Extractor, Injector};
use rdkafka::message::{BorrowedHeaders, Header, Headers, OwnedHeaders};
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct Inject<'a>(&'a mut Vec<(String, String)>);

impl Injector for Inject<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.push((key.to_string(), value));
    }
}

/// `headers` with the trace context of `span` added (unchanged when the
/// span is not recorded or no propagator is installed).
pub fn inject(span: &tracing::Span, headers: OwnedHeaders) -> OwnedHeaders {
    let mut fields = Vec::new();
    let cx = span.context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut Inject(&mut fields))
    });
    fields.into_iter().fold(headers, |h, (k, v)| {
        h.insert(Header {
            key: &k,
            value: Some(v.as_bytes()),
        })
    })
}

struct Extract<'a>(&'a BorrowedHeaders);

impl Extractor for Extract<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|h| h.key == key)
            .and_then(|h| h.value)
            .and_then(|v| std::str::from_utf8(v).ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|h| h.key).collect()
    }
}

/// The `traceparent` header of a record, if it carries one: for a consumer
/// that keeps the record past its message (the span is made later, with
/// [`crate::stored::continue_trace`]).
pub fn traceparent(headers: Option<&BorrowedHeaders>) -> Option<String> {
    headers.and_then(|h| {
        Extract(h)
            .get(crate::stored::TRACEPARENT)
            .map(str::to_string)
    })
}

/// Makes the trace context carried by `headers` (if any) the parent of
/// `span`.
pub fn adopt(span: &tracing::Span, headers: Option<&BorrowedHeaders>) {
    let Some(h) = headers else { return };
    let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Extract(h)));
    let _ = span.set_parent(cx);
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn a_trace_crosses_a_record_header() {
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        tracing::subscriber::with_default(subscriber, || {
            let sent = tracing::info_span!("care.incidents publish");
            let headers = inject(&sent, OwnedHeaders::new());
            let traceparent = headers
                .iter()
                .find(|h| h.key == "traceparent")
                .and_then(|h| h.value)
                .map(|v| String::from_utf8(v.to_vec()).unwrap())
                .expect("a traceparent header");
            let want = sent.context().span().span_context().clone();
            assert!(
                traceparent.contains(&want.trace_id().to_string()),
                "{traceparent}"
            );
            // The consumer's span adopts it as its parent.
            let got = tracing::info_span!("care.incidents process");
            adopt(&got, Some(headers.as_borrowed()));
            let cx = got.context();
            assert_eq!(cx.span().span_context().trace_id(), want.trace_id());
            // No headers: a new trace.
            let lone = tracing::info_span!("alone");
            adopt(&lone, None);
            assert_ne!(
                lone.context().span().span_context().trace_id(),
                want.trace_id()
            );
        });
    }
}
