//! The telemetry crate's Prometheus metrics: what happened to the spans a
//! service ended (exported, refused by the collector, dropped because the
//! export queue was full). Every name once, with unit and help text.

use ::metrics::{describe_counter, Unit};

/// Spans handed to the OTLP exporter and taken by the collector.
pub const SPANS_EXPORTED: &str = "dolbom_telemetry_spans_exported_total";
/// Spans exported over OTLP that the collector did not take.
pub const SPANS_FAILED: &str = "dolbom_telemetry_spans_failed_total";
/// Spans dropped because the export queue was full.
pub const SPANS_DROPPED: &str = "dolbom_telemetry_spans_dropped_total";

/// Describes this crate's metrics and starts their counters at zero (once
/// per process, after the exporter is installed).
pub fn describe() {
    describe_counter!(
        SPANS_EXPORTED,
        Unit::Count,
        "Spans the OTLP exporter sent to the collector"
    );
    describe_counter!(
        SPANS_FAILED,
        Unit::Count,
        "Spans lost because the collector did not take their batch (down, slow, refusing)"
    );
    describe_counter!(
        SPANS_DROPPED,
        Unit::Count,
        "Spans dropped because the export queue (telemetry.max_queue) was full: the hot path never waits for the collector"
    );
    for name in [SPANS_EXPORTED, SPANS_FAILED, SPANS_DROPPED] {
        ::metrics::counter!(name).increment(0);
    }
}
