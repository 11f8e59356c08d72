//! The history crate's Prometheus metrics: every name once, with its unit
//! and help text ([`describe`] registers them with the installed recorder).

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

pub const STORE_UP: &str = "dolbom_history_store_up";
pub const BEHIND: &str = "dolbom_history_behind";
pub const REFUSED: &str = "dolbom_history_refused_total";
pub const RECORDS_WRITTEN: &str = "dolbom_history_records_written_total";
pub const QUEUE_DEPTH: &str = "dolbom_history_queue_depth";
pub const BATCH_SECONDS: &str = "dolbom_history_batch_seconds";
pub const WRITE_FAILURES: &str = "dolbom_history_write_failures_total";
pub const SNAPSHOT_PUT_SECONDS: &str = "dolbom_history_snapshot_put_seconds";

/// Describes this crate's metrics (call once the exporter is installed).
pub fn describe() {
    describe_gauge!(
        STORE_UP,
        Unit::Count,
        "1 while the history store accepts writes, 0 while writes fail (by backend)"
    );
    describe_gauge!(
        BEHIND,
        Unit::Count,
        "1 while the history writer's queue is full and producers wait (by backend)"
    );
    describe_counter!(
        REFUSED,
        Unit::Count,
        "Records the history writer refused because it was shutting down (by kind)"
    );
    describe_counter!(
        RECORDS_WRITTEN,
        Unit::Count,
        "Records the history store accepted (by kind)"
    );
    describe_gauge!(
        QUEUE_DEPTH,
        Unit::Count,
        "Records waiting in the history writer's queue (by backend)"
    );
    describe_histogram!(
        BATCH_SECONDS,
        Unit::Seconds,
        "Time to write one batch into the history store (by backend)"
    );
    describe_counter!(
        WRITE_FAILURES,
        Unit::Count,
        "Batches the history store failed to write; they are retried (by backend)"
    );
    describe_histogram!(
        SNAPSHOT_PUT_SECONDS,
        Unit::Seconds,
        "Time to store one shard snapshot (by backend)"
    );
}
