//! Trace context kept beside what it belongs to, as a W3C `traceparent`
//! string: an incident remembers the trace it was opened in, so that what
//! happens to it later — an escalation step the clock reaches hours after,
//! a person's acknowledgement or resolution — joins or links to that trace.

use opentelemetry::trace::TraceContextExt as _;
use std::collections::HashMap;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

pub(crate) const TRACEPARENT: &str = "traceparent";

/// The `traceparent` of `span`, when it belongs to a sampled trace (`None`
/// when nothing is exported, so nothing is stored).
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    if !cx.span().span_context().is_sampled() {
        return None;
    }
    let mut fields = HashMap::new();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut fields));
    fields.remove(TRACEPARENT)
}

fn context(traceparent: &str) -> opentelemetry::Context {
    let fields = HashMap::from([(TRACEPARENT.to_string(), traceparent.to_string())]);
    opentelemetry::global::get_text_map_propagator(|p| p.extract(&fields))
}

/// Makes `span` a child of the stored trace (later work on the same thing).
pub fn continue_trace(span: &tracing::Span, traceparent: &str) {
    let _ = span.set_parent(context(traceparent));
}

/// Links `span` to the stored trace (work of its own, caused by a person,
/// about the same thing).
pub fn link_to(span: &tracing::Span, traceparent: &str) {
    let cx = context(traceparent);
    let sc = cx.span().span_context().clone();
    if sc.is_valid() {
        span.add_link(sc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::KeptSpans;
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn a_later_step_joins_the_stored_trace_and_a_person_links_to_it() {
        let kept = KeptSpans::default();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(kept.clone())
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        let stored = tracing::subscriber::with_default(subscriber, || {
            let opened = tracing::info_span!("care.incidents process");
            let stored = traceparent(&opened).expect("a sampled span has a traceparent");
            drop(opened);
            let later = tracing::info_span!("escalation clock");
            continue_trace(&later, &stored);
            drop(later);
            let ack = tracing::info_span!("incident acknowledge");
            link_to(&ack, &stored);
            drop(ack);
            stored
        });
        let spans = kept.spans();
        let by = |n: &str| spans.iter().find(|s| s.name == n).unwrap().clone();
        let (opened, later, ack) = (
            by("care.incidents process"),
            by("escalation clock"),
            by("incident acknowledge"),
        );
        assert!(stored.contains(&opened.span_context.trace_id().to_string()));
        assert_eq!(
            later.span_context.trace_id(),
            opened.span_context.trace_id()
        );
        assert_eq!(later.parent_span_id, opened.span_context.span_id());
        assert_ne!(ack.span_context.trace_id(), opened.span_context.trace_id());
        assert_eq!(ack.links.links.len(), 1);
        let linked = &ack.links.links[0].span_context;
        assert_eq!(linked.trace_id(), opened.span_context.trace_id());
        assert_eq!(linked.span_id(), opened.span_context.span_id());
    }

    #[test]
    fn nothing_is_stored_when_nothing_is_exported() {
        let span = tracing::info_span!("care.incidents process");
        assert_eq!(traceparent(&span), None);
    }
}
