//! For tests: a span processor that keeps every span it is handed, so a
//! test can look at what a traced piece of code produced without a
//! collector.

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanProcessor};
use std::sync::{Arc, Mutex};

/// Keeps every ended span (clones share them).
#[derive(Debug, Clone, Default)]
pub struct KeptSpans(Arc<Mutex<Vec<SpanData>>>);

impl KeptSpans {
    /// The spans ended so far.
    pub fn spans(&self) -> Vec<SpanData> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl SpanProcessor for KeptSpans {
    fn on_start(&self, _: &mut opentelemetry_sdk::trace::Span, _: &opentelemetry::Context) {}
    fn on_end(&self, span: SpanData) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(span);
    }
    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }
    fn shutdown_with_timeout(&self, _: std::time::Duration) -> OTelSdkResult {
        Ok(())
    }
}
