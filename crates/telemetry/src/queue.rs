//! The export queue's bound, kept and counted here.
//!
//! The SDK's batch processor drops spans silently when its queue is full.
//! [`Bounded`] sits in front of it: it counts the spans handed on and not yet
//! through the exporter, hands on a span only while fewer than `max_queue`
//! are waiting, and counts every other one in
//! `dolbom_telemetry_spans_dropped_total`. The batch processor's own queue is
//! as large, so it never drops one itself: every span is exported, refused
//! (counted by [`Counting`]) or dropped here (counted).

use crate::metrics::{SPANS_DROPPED, SPANS_EXPORTED, SPANS_FAILED};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter, SpanProcessor};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Spans handed to the batch processor whose export has not finished.
#[derive(Clone, Debug, Default)]
pub struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// A span processor that hands spans on while fewer than `max` wait, and
/// drops (counted) the rest.
#[derive(Debug)]
pub struct Bounded<P> {
    inner: P,
    waiting: InFlight,
    max: usize,
}

impl<P: SpanProcessor> Bounded<P> {
    pub fn new(inner: P, waiting: InFlight, max: usize) -> Self {
        Self {
            inner,
            waiting,
            max,
        }
    }
}

impl<P: SpanProcessor> SpanProcessor for Bounded<P> {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &opentelemetry::Context) {
        self.inner.on_start(span, cx)
    }

    fn on_end(&self, span: SpanData) {
        let admitted = self
            .waiting
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok();
        if admitted {
            self.inner.on_end(span);
        } else {
            ::metrics::counter!(SPANS_DROPPED).increment(1);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource)
    }
}

/// The OTLP exporter, counting what it sent and what the collector did not
/// take (a down collector costs spans, never the hot path), and releasing
/// the batch's places in [`Bounded`]'s queue.
#[derive(Debug)]
pub struct Counting<E> {
    pub inner: E,
    pub waiting: InFlight,
}

impl<E: SpanExporter> SpanExporter for Counting<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        let r = self.inner.export(batch).await;
        self.waiting.0.fetch_sub(n, Ordering::AcqRel);
        match &r {
            Ok(()) => ::metrics::counter!(SPANS_EXPORTED).increment(n as u64),
            Err(_) => ::metrics::counter!(SPANS_FAILED).increment(n as u64),
        }
        r
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::KeptSpans;
    use opentelemetry::trace::{Tracer as _, TracerProvider as _};
    use opentelemetry_sdk::trace::SdkTracerProvider;

    #[test]
    fn a_full_queue_drops_and_a_drained_one_admits_again() {
        let held = KeptSpans::default();
        let waiting = InFlight::default();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(Bounded::new(held.clone(), waiting.clone(), 3))
            .build();
        let tracer = provider.tracer("t");
        for _ in 0..5 {
            tracer.in_span("s", |_| {});
        }
        assert_eq!(held.spans().len(), 3, "three admitted");
        assert_eq!(waiting.get(), 3);
        // The exporter finishing a batch of two gives two places back.
        waiting.0.fetch_sub(2, Ordering::AcqRel);
        for _ in 0..5 {
            tracer.in_span("s", |_| {});
        }
        assert_eq!(held.spans().len(), 5);
        assert_eq!(waiting.get(), 3);
    }
}
