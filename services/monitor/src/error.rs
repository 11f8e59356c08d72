//! The monitor's error.

use dolbom_calendar::CalendarError;
use dolbom_snapshots::SnapshotStoreError;

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("topics missing and create_topics is off: {0:?}")]
    MissingTopics(Vec<String>),
    #[error("could not create topic {0}: {1}")]
    TopicCreation(String, String),
    #[error("co-partitioned topics disagree on partition count: {0}")]
    PartitionMismatch(String),
    #[error("restore of {0}/{1} did not reach the end of the partition in time")]
    RestoreTimeout(String, i32),
    #[error(transparent)]
    Snapshots(#[from] SnapshotStoreError),
    #[error(transparent)]
    History(#[from] dolbom_history::HistoryError),
    #[error(transparent)]
    Snapshot(#[from] dolbom_shard::SnapshotError),
    #[error(transparent)]
    Calendar(#[from] CalendarError),
    #[error(transparent)]
    Metrics(#[from] dolbom_prometheus::ExporterError),
    #[error("stopped on a fatal error: {0}")]
    Fatal(String),
    #[error("partition {partition} has a committed offset ({committed}) but no snapshot: its state is lost (a wiped or unshared snapshot store); refusing to start it empty (allow_missing_snapshot overrides)")]
    MissingSnapshot { partition: i32, committed: i64 },
    #[error("actor system: {0}")]
    Actors(String),
}
