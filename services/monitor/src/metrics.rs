//! Metric names (Prometheus, `dolbom_` prefix); the exporter is `dolbom-prometheus`.

pub const READINGS_ACCEPTED: &str = "dolbom_monitor_readings_accepted_total";
pub const READINGS_REJECTED: &str = "dolbom_monitor_readings_rejected_total";
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
