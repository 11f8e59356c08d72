//! The monitor's Prometheus metrics: every name once, with its unit and
//! help text ([`describe`] registers them with the installed recorder).
//! Labels are bounded (partition, reason, kind, type); never a household.

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

pub const READINGS_ACCEPTED: &str = "dolbom_monitor_readings_accepted_total";
pub const READINGS_REJECTED: &str = "dolbom_monitor_readings_rejected_total";
pub const READINGS_RETIMED: &str = "dolbom_monitor_readings_retimed_total";
pub const CONFIGS_REJECTED: &str = "dolbom_monitor_configs_rejected_total";
pub const DEAD_LETTERED: &str = "dolbom_monitor_dead_lettered_total";
pub const RECORDS_DISCARDED_BEFORE_SEEK: &str =
    "dolbom_monitor_records_discarded_before_seek_total";
pub const INCIDENT_EVENTS: &str = "dolbom_monitor_incident_events_total";
pub const EMIT_DELAY_SECONDS: &str = "dolbom_monitor_incident_emit_delay_seconds";
pub const OPEN_INCIDENTS: &str = "dolbom_monitor_open_incidents";
pub const ABSENCES_ENDED_EARLY: &str = "dolbom_monitor_absences_ended_early_total";
pub const HOUSEHOLDS: &str = "dolbom_monitor_households";
pub const PENDING_DEADLINES: &str = "dolbom_monitor_pending_deadlines";
pub const STALLED: &str = "dolbom_monitor_partition_stalled";
pub const WATERMARK: &str = "dolbom_monitor_watermark_seconds";
pub const CONSUMER_LAG: &str = "dolbom_monitor_consumer_lag";
pub const RESTORE_SECONDS: &str = "dolbom_monitor_restore_duration_seconds";
pub const SNAPSHOT_SECONDS: &str = "dolbom_monitor_snapshot_duration_seconds";
pub const SNAPSHOT_BYTES: &str = "dolbom_monitor_snapshot_bytes";
pub const SNAPSHOT_STORE_UP: &str = "dolbom_monitor_snapshot_store_up";
pub const SNAPSHOT_FAILURES: &str = "dolbom_monitor_snapshot_failures_total";
pub const SHARD_RESTARTS: &str = "dolbom_monitor_shard_restarts_total";
pub const ASSIGNED_PARTITIONS: &str = "dolbom_monitor_assigned_partitions";
pub const PUBLISH_FAILURES: &str = "dolbom_monitor_publish_failures_total";
pub const UNACKNOWLEDGED_EVENTS: &str = "dolbom_monitor_unacknowledged_incident_events";
pub const PRODUCER_RENEWALS: &str = "dolbom_monitor_producer_renewals_total";
pub const CLOCK_OFFSET_SECONDS: &str = "dolbom_monitor_clock_offset_seconds";
pub const PARTITIONS_DOWN: &str = "dolbom_monitor_partitions_down";
pub const MISSING_SNAPSHOTS: &str = "dolbom_monitor_missing_snapshots_total";
pub const AREA_PARTS_SHARED: &str = "dolbom_monitor_area_parts_shared_total";
pub const AREA_PARTS_MERGED: &str = "dolbom_monitor_area_parts_merged_total";
pub const AREA_SHARE_FAILURES: &str = "dolbom_monitor_area_share_failures_total";

/// Describes this crate's metrics (call once the exporter is installed).
pub fn describe() {
    describe_counter!(
        AREA_PARTS_SHARED,
        Unit::Count,
        "Partitions' parts of areas this monitor shared on the areas topic"
    );
    describe_counter!(
        AREA_PARTS_MERGED,
        Unit::Count,
        "Other monitors' parts of areas this monitor took from the areas topic"
    );
    describe_counter!(
        AREA_SHARE_FAILURES,
        Unit::Count,
        "Parts of areas the broker did not take (shared again); other monitors judge those areas on older counts meanwhile"
    );
    describe_counter!(
        READINGS_ACCEPTED,
        Unit::Count,
        "Readings a shard took (changed its household's state or confirmed it)"
    );
    describe_counter!(
        READINGS_REJECTED,
        Unit::Count,
        "Readings a shard refused (by reason: malformed, unknown_household, from_the_future, …)"
    );
    describe_counter!(
        READINGS_RETIMED,
        Unit::Count,
        "Readings stamped more than a second after their record was sent (a plug clock running ahead), counted at their send time"
    );
    describe_counter!(
        CONFIGS_REJECTED,
        Unit::Count,
        "Household configurations a shard refused (by reason)"
    );
    describe_counter!(
        DEAD_LETTERED,
        Unit::Count,
        "Records sent to the dead-letter topic (by source topic and reason)"
    );
    describe_counter!(
        RECORDS_DISCARDED_BEFORE_SEEK,
        Unit::Count,
        "Records polled for a partition before its shard was positioned (read again after the seek)"
    );
    describe_counter!(
        INCIDENT_EVENTS,
        Unit::Count,
        "Incident events published (by kind, type, stage and reason code: ROUTINE_BREAK when the learned routine raised it)"
    );
    describe_histogram!(
        EMIT_DELAY_SECONDS,
        Unit::Seconds,
        "Time from an event's due time to its publication, on the shard's clock (the wall clock; event time when replaying on the event clock)"
    );
    describe_gauge!(
        OPEN_INCIDENTS,
        Unit::Count,
        "Open incidents followed by incident actors"
    );
    describe_counter!(
        ABSENCES_ENDED_EARLY,
        Unit::Count,
        "Registered absences ended early by activity at home"
    );
    describe_gauge!(HOUSEHOLDS, Unit::Count, "Households hosted (by partition)");
    describe_gauge!(
        PENDING_DEADLINES,
        Unit::Count,
        "Entries in the shard's timer wheel (by partition)"
    );
    describe_gauge!(
        STALLED,
        Unit::Count,
        "1 while a partition's input is stalled and no inactivity is inferred (by partition)"
    );
    describe_gauge!(
        WATERMARK,
        Unit::Seconds,
        "Newest accepted event time of a partition, Unix seconds (by partition)"
    );
    describe_gauge!(
        CONSUMER_LAG,
        Unit::Count,
        "Records of plug.readings not yet processed (by partition)"
    );
    describe_histogram!(
        RESTORE_SECONDS,
        Unit::Seconds,
        "Time for a shard to restore (snapshot, incidents tail, changelog)"
    );
    describe_histogram!(
        SNAPSHOT_SECONDS,
        Unit::Seconds,
        "Time to take and store one shard snapshot"
    );
    describe_gauge!(
        SNAPSHOT_BYTES,
        Unit::Bytes,
        "Size of the last snapshot (by partition)"
    );
    describe_gauge!(
        SNAPSHOT_STORE_UP,
        Unit::Count,
        "1 while snapshots are stored, 0 while the snapshot store fails"
    );
    describe_counter!(
        SNAPSHOT_FAILURES,
        Unit::Count,
        "Snapshots that could not be stored (offsets stay at the last stored one)"
    );
    describe_counter!(
        SHARD_RESTARTS,
        Unit::Count,
        "Shard actors restarted by their partition supervisor (by partition)"
    );
    describe_gauge!(
        PARTITIONS_DOWN,
        Unit::Count,
        "1 while an assigned partition has no shard that can run (failed starts or repeated failures; PIPELINE_STALL raised), by partition"
    );
    describe_counter!(
        MISSING_SNAPSHOTS,
        Unit::Count,
        "Restores refused: a committed offset but no snapshot (a wiped or unshared snapshot store)"
    );
    describe_gauge!(
        ASSIGNED_PARTITIONS,
        Unit::Count,
        "plug.readings partitions this monitor owns and reads"
    );
    describe_counter!(
        PUBLISH_FAILURES,
        Unit::Count,
        "Incident events the producer could not enqueue or deliver to care.incidents (by stage: enqueue, delivery); each is kept and re-sent, and no snapshot or commit passes it"
    );
    describe_gauge!(
        UNACKNOWLEDGED_EVENTS,
        Unit::Count,
        "Incident events emitted but not yet acknowledged by the broker (by partition)"
    );
    describe_counter!(
        PRODUCER_RENEWALS,
        Unit::Count,
        "Incident producers replaced after an error that broke the old one (fenced, unknown producer id, sequence error, fatal); what it held is re-sent"
    );
    describe_gauge!(
        CLOCK_OFFSET_SECONDS,
        Unit::Seconds,
        "The monitor's clock minus the newest Kafka record timestamp of the last readings batch (by partition): lag plus clock disagreement; minutes of negative offset mean the monitor's clock is behind"
    );
    // Counters without labels start at zero, so that a rate over the
    // first increment is seen and an alert's series exists from the start.
    for name in [
        ABSENCES_ENDED_EARLY,
        AREA_PARTS_MERGED,
        AREA_PARTS_SHARED,
        AREA_SHARE_FAILURES,
        MISSING_SNAPSHOTS,
        PRODUCER_RENEWALS,
        READINGS_ACCEPTED,
        READINGS_RETIMED,
        RECORDS_DISCARDED_BEFORE_SEEK,
        SNAPSHOT_FAILURES,
    ] {
        metrics::counter!(name).increment(0);
    }
    for stage in ["enqueue", "delivery", "platform"] {
        metrics::counter!(PUBLISH_FAILURES, "stage" => stage).increment(0);
    }
}
