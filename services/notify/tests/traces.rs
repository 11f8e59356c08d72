//! An incident's later escalation steps join its trace (issue 15): the
//! escalation clock reaches the next step half an hour after the opening,
//! with no span of the event around it; the step's span must be in the
//! trace the incident was opened in (notify keeps its trace context), a
//! child of the clock's span, itself a child of the opening's span.
//!
//! One test in its own binary: it installs the process-wide subscriber (the
//! store's writer thread runs transactions there).

use dolbom_domain::convert::timestamp;
use dolbom_domain::{ManualClock, Ts};
use dolbom_history::{EmbeddedStore, HistoryStore, Retention};
use dolbom_notify::options::MunicipalityPolicy;
use dolbom_notify::{NoPublisher, NotifyOptions};
use dolbom_proto::v1 as pb;
use dolbom_telemetry::testing::KeptSpans;
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData};
use std::sync::Arc;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;

fn attr(s: &SpanData, key: &str) -> Option<String> {
    s.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_the_clock_reaches_later_joins_the_incidents_trace() {
    let kept = KeptSpans::default();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(kept.clone())
        .build();
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test"))),
    )
    .unwrap();
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );

    let dir = tempfile::tempdir().unwrap();
    let opts = NotifyOptions {
        data_dir: dir.path().to_path_buf(),
        create_contact_key: true,
        policies: vec![MunicipalityPolicy {
            municipality: "*".into(),
            policy: dolbom_escalation::Policy::watch_only(),
        }],
        ..Default::default()
    };
    let history: Arc<dyn HistoryStore> =
        Arc::new(EmbeddedStore::open_dir(dir.path(), Retention::default()).unwrap());
    // A Tuesday, 10:00 in Seoul: the dong office is open.
    let t0 = Ts::parse_rfc3339("2026-03-03T10:00:00+09:00").unwrap();
    let clock = ManualClock::new(t0);
    let built = dolbom_notify::build(&opts, clock.shared(), Arc::new(NoPublisher), history)
        .await
        .unwrap();
    let core = built.core.clone();

    let id = format!("INA:11110-1:{}", t0.millis() - 43_200_000);
    let ev = pb::IncidentEvent {
        event_id: format!("{id}/1/1"),
        incident_id: id.clone(),
        household_id: "11110-1".into(),
        municipality_code: "11110".into(),
        dong_code: "1111051500".into(),
        kind: pb::IncidentKind::Inactivity as i32,
        r#type: pb::IncidentEventType::Opened as i32,
        stage: pb::Stage::Attention as i32,
        due_at: Some(timestamp(t0)),
        emitted_at: Some(timestamp(t0)),
        ..Default::default()
    };
    let process = tracing::info_span!("care.incidents process");
    let opened = process.context().span().span_context().clone();
    assert_eq!(core.ingest_traced(vec![(ev, process)]).await.unwrap(), 1);

    // Nobody acknowledges: the dong office's wait (30 min) runs out and the
    // clock sends the step again (the default policy repeats it once).
    clock.advance(31 * 60_000);
    assert!(core.tick().await.unwrap() >= 1);
    let _ = provider.force_flush();

    let spans = kept.spans();
    let by_name = |n: &str| -> Vec<&SpanData> { spans.iter().filter(|s| s.name == n).collect() };
    let clock_span = *by_name("escalation clock").first().unwrap_or_else(|| {
        panic!(
            "no clock span: {:?}",
            spans.iter().map(|s| &s.name).collect::<Vec<_>>()
        )
    });
    assert_eq!(
        clock_span.span_context.trace_id(),
        opened.trace_id(),
        "the clock's step joins the incident's trace"
    );
    assert_eq!(clock_span.parent_span_id, opened.span_id());
    assert_eq!(
        attr(clock_span, "dolbom.incident_id").as_deref(),
        Some(id.as_str())
    );
    let steps = by_name("escalation step");
    let later = steps
        .iter()
        .find(|s| s.parent_span_id == clock_span.span_context.span_id())
        .expect("the repeated step under the clock's span");
    assert_eq!(later.span_context.trace_id(), opened.trace_id());
    // The first send was a child of the opening's span, in the same trace.
    let first = steps
        .iter()
        .find(|s| s.parent_span_id == opened.span_id())
        .expect("the first step under the opening's span");
    let send = |s: &SpanData| (attr(s, "dolbom.step"), attr(s, "dolbom.attempt"));
    assert_ne!(
        send(first),
        send(later),
        "a later send: {:?} then {:?}",
        send(first),
        send(later)
    );
}
