//! Metric names (Prometheus, `dolbom_` prefix) and the exporter.

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

/// Serves `/metrics` on `listen` (Prometheus text format). Installs the
/// process-wide recorder; a second call in one process is a no-op.
pub fn install(listen: &str) -> Result<(), crate::MonitorError> {
    if listen.is_empty() {
        return Ok(());
    }
    let addr: std::net::SocketAddr = listen
        .parse()
        .map_err(|e| crate::MonitorError::Metrics(format!("metrics_listen {listen:?}: {e}")))?;
    match metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets(&[
            0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
        ])
        .map_err(|e| crate::MonitorError::Metrics(e.to_string()))?
        .install()
    {
        Ok(()) => Ok(()),
        Err(metrics_exporter_prometheus::BuildError::FailedToSetGlobalRecorder(_)) => Ok(()),
        Err(e) => Err(crate::MonitorError::Metrics(e.to_string())),
    }
}
