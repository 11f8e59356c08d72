//! The history ingest's Prometheus metrics (the writer's are in
//! `dolbom_history::metrics`): every name once, with unit and help text.

use metrics::{describe_counter, Unit};

pub const LATE_READINGS: &str = "dolbom_history_late_readings_total";
pub const REJECTED: &str = "dolbom_history_rejected_total";
pub const READINGS_RETIMED: &str = "dolbom_history_readings_retimed_total";

/// Describes this crate's metrics (call once the exporter is installed).
pub fn describe() {
    describe_counter!(
        LATE_READINGS,
        Unit::Count,
        "Readings that arrived after their minute was aggregated and stored"
    );
    describe_counter!(
        READINGS_RETIMED,
        Unit::Count,
        "Readings stamped after their record was sent (plug clock ahead), counted at the send time"
    );
    describe_counter!(
        REJECTED,
        Unit::Count,
        "Malformed records skipped (by kind: reading, incident_event)"
    );
    // Counters without labels start at zero, so that a rate over the
    // first increment is seen and an alert's series exists from the start.
    for name in [LATE_READINGS, READINGS_RETIMED] {
        metrics::counter!(name).increment(0);
    }
    for kind in [
        "reading",
        "reading_ahead_of_clock",
        "reading_implausible",
        "incident_event",
    ] {
        metrics::counter!(REJECTED, "kind" => kind).increment(0);
    }
}
