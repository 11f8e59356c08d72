//! History ingest options: defaults → TOML file → `DOLBOM_` environment →
//! flags.

use crate::error::IngestError;
use dolbom_history::{Retention, ScyllaOptions, WriterOptions};
use dolbom_kafka::KafkaOptions;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HistoryOptions {
    /// Brokers, extra librdkafka properties, debug contexts.
    #[serde(flatten)]
    pub kafka: KafkaOptions,
    /// Consumer group of the history ingest (separate from the monitor's).
    pub group_id: String,
    /// Empty = ingest incidents only (no reading aggregates).
    pub readings_topic: String,
    pub incidents_topic: String,
    /// `embedded` (SQLite in `data_dir`) or `scylla`.
    pub store: String,
    pub data_dir: PathBuf,
    pub scylla: ScyllaOptions,
    pub retention: Retention,
    pub writer: WriterOptions,
    /// How late a reading may arrive (event time) and still be aggregated.
    pub lateness_ms: i64,
    /// Readings dated more than this ahead of this machine's clock are
    /// rejected (counted): one plug with a clock in year 3000 must not close
    /// every minute of its partition for everyone else.
    pub max_ahead_ms: i64,
    /// Milliseconds between store flushes and offset commits.
    pub commit_interval_ms: u64,
    /// Seconds between retention sweeps of the embedded store.
    pub retention_interval_secs: u64,
    /// Prometheus metrics on this address; empty = off.
    pub metrics_listen: String,
    /// OTLP trace export (`[telemetry]`; `OTEL_*` variables honoured).
    pub telemetry: dolbom_telemetry::TelemetryOptions,
}

impl Default for HistoryOptions {
    fn default() -> Self {
        Self {
            kafka: KafkaOptions::default(),
            group_id: "dolbom-history".into(),
            readings_topic: "plug.readings".into(),
            incidents_topic: "care.incidents".into(),
            store: "embedded".into(),
            data_dir: PathBuf::from("dolbom-data"),
            scylla: ScyllaOptions::default(),
            retention: Retention::default(),
            writer: WriterOptions::default(),
            lateness_ms: 5_000,
            max_ahead_ms: 600_000,
            commit_interval_ms: 5_000,
            retention_interval_secs: 3_600,
            metrics_listen: String::new(),
            telemetry: Default::default(),
        }
    }
}

impl dolbom_options::Options for HistoryOptions {
    type Error = IngestError;

    /// Also: the ScyllaDB password and TLS files.
    fn check_files(&self) -> Result<(), IngestError> {
        self.validate()?;
        if self.store == "scylla" {
            self.scylla
                .check_files()
                .map_err(|e| IngestError::Invalid("scylla", e.to_string()))?;
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), IngestError> {
        self.kafka
            .validate()
            .map_err(|e| IngestError::Invalid("kafka", e.to_string()))?;
        self.telemetry
            .validate()
            .map_err(|e| IngestError::Invalid("telemetry", e.to_string()))?;
        if self.incidents_topic.trim().is_empty() {
            return Err(IngestError::Invalid(
                "incidents_topic",
                "must name a topic".into(),
            ));
        }
        if !["embedded", "scylla"].contains(&self.store.as_str()) {
            return Err(IngestError::Invalid("store", "embedded or scylla".into()));
        }
        if self.store == "scylla" {
            self.scylla
                .validate()
                .map_err(|e| IngestError::Invalid("scylla", e.to_string()))?;
        }
        if self.max_ahead_ms <= 0 {
            return Err(IngestError::Invalid(
                "max_ahead_ms",
                "must be positive".into(),
            ));
        }
        if self.commit_interval_ms == 0 || self.lateness_ms < 0 {
            return Err(IngestError::Invalid(
                "commit_interval_ms",
                "commit_interval_ms must be positive and lateness_ms not negative".into(),
            ));
        }
        self.retention
            .validate()
            .map_err(|e| IngestError::Invalid("retention", e.to_string()))?;
        self.writer
            .validate()
            .map_err(|e| IngestError::Invalid("writer", e.to_string()))
    }
}

/// `dolbom history` flags: each overrides the same option from the
/// environment, the TOML file and the defaults.
#[derive(clap::Args, Serialize, Default)]
pub struct HistoryFlags {
    #[command(flatten)]
    #[serde(flatten)]
    pub common: dolbom_options::ServiceFlags,
    /// Consumer group of the history ingest.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// `embedded` (SQLite in --data-dir) or `scylla` (see scylla.* options).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    /// Directory of the embedded store.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
}
