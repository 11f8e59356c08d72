//! Monitor options: defaults → TOML file → `DOLBOM_` environment → flags.

use dolbom_kafka::KafkaOptions;
pub use dolbom_options::OptionsError;
use dolbom_options::ServiceFlags;
use dolbom_shard::{ClockMode, ShardOptions};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Kafka topic names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Topics {
    pub readings: String,
    pub households: String,
    pub incidents: String,
    pub dead_letter: String,
    /// Compacted: every partition's part of every area, shared between
    /// monitors (see `dolbom_shard::AreaBoard`).
    pub areas: String,
}

impl Default for Topics {
    fn default() -> Self {
        Self {
            readings: "plug.readings".into(),
            households: "care.households".into(),
            incidents: "care.incidents".into(),
            dead_letter: "monitor.deadletter".into(),
            areas: "monitor.areas".into(),
        }
    }
}

impl Topics {
    /// Every topic named `{prefix}.{role}` (tests, benchmarks, side-by-side
    /// deployments on one cluster).
    pub fn with_prefix(prefix: &str) -> Self {
        Self {
            readings: format!("{prefix}.readings"),
            households: format!("{prefix}.households"),
            incidents: format!("{prefix}.incidents"),
            dead_letter: format!("{prefix}.deadletter"),
            areas: format!("{prefix}.areas"),
        }
    }
}

/// How a partition whose shard cannot run is retried and reported.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SupervisionOptions {
    /// Failed starts in a row (a restore that fails, a shard that fails
    /// again before it ran healthy) after which the partition is reported
    /// down: one PIPELINE_STALL incident to SRE and
    /// `dolbom_monitor_partitions_down`. It keeps being retried.
    pub down_after_failures: u32,
    /// A shard that has run this long is healthy: its failures are forgotten
    /// and a reported outage recovers.
    pub healthy_after_ms: u64,
    /// Longest wait between two restarts (the wait doubles from 200 ms).
    pub max_restart_backoff_ms: u64,
}

impl Default for SupervisionOptions {
    fn default() -> Self {
        Self {
            down_after_failures: 3,
            healthy_after_ms: 60_000,
            max_restart_backoff_ms: 30_000,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MonitorOptions {
    /// Brokers, extra librdkafka properties, debug contexts.
    #[serde(flatten)]
    pub kafka: KafkaOptions,
    /// Consumer group shared by all monitor instances.
    pub group_id: String,
    /// Static membership id of this instance (`group.instance.id`); a
    /// restart with the same id within the session timeout keeps its
    /// partitions without a rebalance. Empty = dynamic membership.
    pub instance_id: String,
    pub topics: Topics,
    /// Partitions for topics this service creates when they are missing.
    /// `plug.readings`, `care.households` and `care.incidents` must all have
    /// the same count (they are co-partitioned by household id).
    pub partitions: i32,
    pub replication_factor: i32,
    /// Create missing topics (otherwise the service names them and stops).
    pub create_topics: bool,
    /// Where shard snapshots are kept: `embedded` (the history store's SQLite
    /// file `history.sqlite` in `snapshot_dir`; the default), `scylla` (the
    /// history keyspace, see `scylla`), or `file` (one file per partition in
    /// `snapshot_dir`).
    pub snapshot_store: String,
    /// Directory of the `embedded` and `file` snapshot stores.
    pub snapshot_dir: PathBuf,
    /// The ScyllaDB history cluster, for `snapshot_store = "scylla"`.
    pub scylla: dolbom_history::ScyllaOptions,
    /// Seconds between snapshots (and offset commits) of each shard.
    pub snapshot_interval_secs: u64,
    /// Milliseconds between shard ticks (deadline firing, health checks).
    pub tick_ms: u64,
    /// Largest batch of records handed to a shard at once.
    pub batch_size: usize,
    /// Kafka consumer session timeout (ms).
    pub session_timeout_ms: u32,
    /// `partition.assignment.strategy`: `cooperative-sticky` (default: a
    /// rebalance moves only the partitions that change owner) or an eager
    /// strategy such as `range` for brokers without incremental rebalancing.
    pub assignment_strategy: String,
    /// Prometheus metrics on this address (e.g. `127.0.0.1:9464`); empty = off.
    pub metrics_listen: String,
    /// OTLP trace export (`[telemetry]`; `OTEL_*` variables honoured).
    pub telemetry: dolbom_telemetry::TelemetryOptions,
    /// Extra election/temporary holidays (same format as the shipped file).
    pub holidays_file: Option<PathBuf>,
    pub shard: ShardOptions,
    pub supervision: SupervisionOptions,
    /// A partition with a committed offset but no snapshot lost its state
    /// (the snapshot store was wiped, or is not shared with the monitor that
    /// had the partition before). Off (the default): the partition is refused
    /// and reported down until its snapshot is back. On: it starts empty at
    /// the committed offset, its households' quiet clocks restart and their
    /// incident ids change. For disaster recovery only.
    pub allow_missing_snapshot: bool,
    /// A monitor that lost all its partitions (its group session timed out)
    /// and has not been given any back after this many seconds stops with an
    /// error, so that its orchestrator restarts it with a fresh consumer: a
    /// member that fails to rejoin must not sit idle while nobody watches its
    /// households. 0 = never. Assumes no more monitors than partitions (then
    /// every member owns at least one).
    pub rejoin_timeout_secs: u64,
    /// Chaos testing only: a reading from this device id makes its shard
    /// panic, to exercise supervision, restore and dead-lettering.
    pub fault_injection_device: String,
}

impl Default for MonitorOptions {
    fn default() -> Self {
        Self {
            kafka: KafkaOptions::default(),
            group_id: "dolbom-monitor".into(),
            instance_id: String::new(),
            topics: Topics::default(),
            partitions: 12,
            replication_factor: 1,
            create_topics: true,
            snapshot_store: "embedded".into(),
            snapshot_dir: PathBuf::from("dolbom-data"),
            scylla: dolbom_history::ScyllaOptions::default(),
            snapshot_interval_secs: 30,
            tick_ms: 100,
            batch_size: 2048,
            session_timeout_ms: 10_000,
            assignment_strategy: "cooperative-sticky".into(),
            metrics_listen: String::new(),
            telemetry: Default::default(),
            holidays_file: None,
            shard: ShardOptions::default(),
            supervision: SupervisionOptions::default(),
            allow_missing_snapshot: false,
            rejoin_timeout_secs: 60,
            fault_injection_device: String::new(),
        }
    }
}

/// Layering: defaults, the TOML file (if given), `DOLBOM_*` environment
/// variables (nested with `__`, e.g. `DOLBOM_SHARD__CLOCK=event`) and the
/// flags that were set; then [`validate`](dolbom_options::Options::validate).
impl dolbom_options::Options for MonitorOptions {
    type Error = OptionsError;

    /// Also: the ScyllaDB password and TLS files, and the holidays file.
    fn check_files(&self) -> Result<(), OptionsError> {
        self.validate()?;
        if self.snapshot_store == "scylla" {
            self.scylla
                .check_files()
                .map_err(|e| OptionsError::invalid("scylla", e))?;
        }
        dolbom_calendar::Router::load(self.holidays_file.as_deref(), Default::default())
            .map_err(|e| OptionsError::invalid("holidays_file", e))?;
        Ok(())
    }

    fn validate(&self) -> Result<(), OptionsError> {
        let bad = |field, problem: &str| Err(OptionsError::invalid(field, problem));
        if let Err(e) = self.kafka.validate() {
            return bad("kafka", &e.to_string());
        }
        if let Err(e) = self.telemetry.validate() {
            return bad("telemetry", &e.to_string());
        }
        if self.group_id.trim().is_empty() {
            return bad("group_id", "must not be empty");
        }
        if self.partitions < 1 {
            return bad("partitions", "must be at least 1");
        }
        if !["embedded", "scylla", "file"].contains(&self.snapshot_store.as_str()) {
            return bad("snapshot_store", "must be embedded, scylla or file");
        }
        if self.snapshot_store == "scylla" {
            if let Err(e) = self.scylla.validate() {
                return bad("scylla", &e.to_string());
            }
        }
        let sv = &self.supervision;
        if sv.down_after_failures == 0 {
            return bad("supervision.down_after_failures", "must be at least 1");
        }
        if sv.healthy_after_ms == 0 {
            return bad("supervision.healthy_after_ms", "must be positive");
        }
        if sv.max_restart_backoff_ms < 200 {
            return bad("supervision.max_restart_backoff_ms", "must be at least 200");
        }
        if self.snapshot_interval_secs == 0 {
            return bad("snapshot_interval_secs", "must be at least 1");
        }
        if self.tick_ms == 0 || self.batch_size == 0 {
            return bad("tick_ms", "tick_ms and batch_size must be positive");
        }
        let s = &self.shard;
        if s.allowed_lateness_ms < 0 || s.stall_after_ms <= 0 || s.resume_grace_ms < 0 {
            return bad(
                "shard",
                "allowed_lateness_ms and resume_grace_ms must be >= 0, stall_after_ms > 0",
            );
        }
        if !(0.0..=1.0).contains(&s.area.share) {
            return bad("shard.area.share", "must be between 0 and 1");
        }
        if s.clock == ClockMode::Event && s.max_event_lag_ms > 0 {
            tracing::debug!("shard.max_event_lag_ms is ignored with the event clock");
        }
        Ok(())
    }
}

/// `dolbom monitor` flags: each overrides the same option from the
/// environment, the TOML file and the defaults.
#[derive(clap::Args, Serialize, Default)]
pub struct MonitorFlags {
    #[command(flatten)]
    #[serde(flatten)]
    pub common: ServiceFlags,
    /// Consumer group shared by all monitor instances.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// Static membership id (group.instance.id).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// Partitions for topics created by this service.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partitions: Option<i32>,
    /// Where shard snapshots are kept: embedded (default), scylla or file.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_store: Option<String>,
    /// Directory of the embedded or file snapshot store.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_dir: Option<PathBuf>,
    /// Seconds between snapshots (and offset commits) of each shard.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_interval_secs: Option<u64>,
    /// Extra election/temporary holidays, TOML (see crates/calendar/data).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holidays_file: Option<PathBuf>,
    #[command(flatten)]
    #[serde(skip_serializing_if = "ShardFlags::is_empty")]
    pub shard: ShardFlags,
}

/// The shard options most often set from the command line.
#[derive(clap::Args, Serialize, Default, PartialEq)]
pub struct ShardFlags {
    /// `wall` (production) or `event` (replays, simulations, tests).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clock: Option<String>,
    /// Wall milliseconds without input before a partition counts as stalled.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stall_after_ms: Option<i64>,
}

impl ShardFlags {
    fn is_empty(&self) -> bool {
        *self == ShardFlags::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dolbom_options::Options;

    #[test]
    fn layers_file_then_flags_and_validates() {
        let dir = std::env::temp_dir().join(format!("dolbom-monitor-opts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("monitor.toml");
        std::fs::write(
            &f,
            "partitions = 4\ngroup_id = \"from-file\"\n[shard]\nclock = \"event\"\n[shard.area]\nshare = 0.7\n",
        )
        .unwrap();
        #[derive(Serialize)]
        struct Flags {
            group_id: &'static str,
        }
        let o = MonitorOptions::load(
            Some(&f),
            Flags {
                group_id: "from-flag",
            },
        )
        .unwrap();
        assert_eq!(o.partitions, 4);
        assert_eq!(o.group_id, "from-flag");
        assert_eq!(o.shard.clock, ClockMode::Event);
        assert_eq!(o.shard.area.share, 0.7);
        std::fs::write(&f, "partitions = 0\n").unwrap();
        let e = MonitorOptions::load(Some(&f), Flags { group_id: "x" }).unwrap_err();
        assert!(e.to_string().contains("partitions"), "{e}");
    }
}
