//! dolbom's history: what happened, kept for people and for restarts.
//!
//! Owns: readings downsampled per household (minute and hour aggregates),
//! household state changes, incident events and outcomes, escalation steps and
//! delivery attempts, the audit trail, and the monitor's shard snapshots (its
//! restore source) — behind one trait, [`HistoryStore`], with two
//! implementations of identical semantics:
//!
//! - [`ScyllaStore`] for the nation: the `scylla` driver, tables designed from
//!   the queries (see `migrations/scylla/`), TWCS and TTLs on time series,
//!   prepared statements with token- and shard-aware routing (the driver's
//!   default policy), batches only within one partition, consistency chosen per
//!   table.
//! - [`EmbeddedStore`] for one machine and `standalone`: a SQLite file
//!   (rusqlite, SQLite bundled and compiled in, so no system library). SQLite
//!   was chosen over redb/fjall because the queries — ranges by household and
//!   time, by municipality and time, roll-ups — are plain SQL over indexes, its
//!   write-ahead log with `synchronous=FULL` makes every committed write survive
//!   a crash or power loss, and one file is easy to back up, inspect and move.
//!
//! Data flow: producers (the history ingest of readings and incidents, notify's
//! escalation engine and audit, the monitor's snapshots) hand records to a
//! [`HistoryWriter`], which batches them into [`WriteBatch`]es behind a bounded
//! queue — callers feel backpressure when the store falls behind, never an
//! unbounded memory — and retries a failing store with backoff while a metric
//! tells SRE. [`Downsampler`] turns readings into minute aggregates; the store
//! rolls hours up from its own minutes, so roll-ups are idempotent. Queries
//! (timeline, incidents page, monthly statistics) go straight to the store;
//! statistics are computed by one pure function ([`stats`]) for both stores.
//!
//! Every write is idempotent (natural keys), so replays and retries never
//! duplicate. Retention is per kind ([`Retention`]) and by the record's own
//! time: ScyllaDB writes carry the remaining TTL, the embedded store deletes
//! in [`HistoryStore::enforce_retention`]; both skip records already past it.
//!
//! The [`conformance`] module is the one suite both stores must pass.

pub mod conformance;
pub mod downsample;
pub mod embedded;
pub mod model;
pub mod scylla_store;
pub mod snapshots;
pub mod stats;
pub mod writer;

pub use downsample::Downsampler;
pub use embedded::EmbeddedStore;
pub use model::*;
pub use scylla_store::{ScyllaOptions, ScyllaStore};
pub use snapshots::HistorySnapshots;
pub use writer::{HistoryWriter, WriterOptions};

/// Opens the store a service's options name: `scylla` (the cluster in
/// `scylla`) or `embedded` (SQLite in `data_dir`, the default).
pub async fn open_store(
    kind: &str,
    data_dir: &std::path::Path,
    scylla: &ScyllaOptions,
    retention: Retention,
) -> Result<std::sync::Arc<dyn HistoryStore>, HistoryError> {
    Ok(match kind {
        "scylla" => std::sync::Arc::new(ScyllaStore::connect(scylla, retention).await?),
        _ => std::sync::Arc::new(EmbeddedStore::open_dir(data_dir, retention)?),
    })
}

use async_trait::async_trait;
use dolbom_proto::v1::{IncidentEvent, MonthStatistics};
use dolbom_snapshots::ShardSnapshot;
use stats::Month;

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("invalid {0}")]
    Invalid(String),
    #[error("embedded store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("embedded store I/O on {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("ScyllaDB: {0}")]
    Scylla(String),
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
    #[error("schema migration {version} ({name}): {reason}")]
    Migration {
        version: u32,
        name: String,
        reason: String,
    },
    #[error("history writer stopped")]
    WriterClosed,
    #[error("store task failed: {0}")]
    Join(String),
}

impl HistoryError {
    pub(crate) fn scylla(e: impl std::fmt::Display) -> Self {
        HistoryError::Scylla(e.to_string())
    }
}

/// The history, whichever store keeps it.
#[async_trait]
pub trait HistoryStore: Send + Sync + 'static {
    /// `"scylla"` or `"embedded"`.
    fn backend(&self) -> &'static str;

    /// Durably writes a batch. Idempotent; on error nothing or part of the
    /// batch was written, and writing it again is correct.
    async fn write(&self, batch: &WriteBatch) -> Result<(), HistoryError>;

    /// Durably replaces a partition's snapshot.
    async fn put_snapshot(&self, snapshot: &ShardSnapshot) -> Result<(), HistoryError>;

    /// A partition's latest snapshot.
    async fn get_snapshot(
        &self,
        group: &str,
        partition: i32,
    ) -> Result<Option<ShardSnapshot>, HistoryError>;

    /// A household's aggregates (at `resolution`), state changes and incident
    /// events in `[from_ms, to_ms)`, each ordered by time. The range is
    /// checked by [`validate_range`].
    async fn timeline(
        &self,
        household_id: &str,
        from_ms: i64,
        to_ms: i64,
        resolution: Resolution,
    ) -> Result<Timeline, HistoryError>;

    /// Incident events of a municipality, filtered, ordered by (event time,
    /// event id), one page at a time.
    async fn incidents(&self, query: &IncidentQuery) -> Result<IncidentPage, HistoryError>;

    /// Every event of one incident, ordered by time.
    async fn incident_events(&self, incident_id: &str) -> Result<Vec<IncidentEvent>, HistoryError>;

    /// An incident's escalation steps and delivery attempts, ordered by time.
    async fn escalation(&self, incident_id: &str) -> Result<Vec<EscalationEntry>, HistoryError>;

    /// A municipality's audit trail in `[from_ms, to_ms)`, ordered by time.
    async fn audit(
        &self,
        municipality_code: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<AuditEntry>, HistoryError>;

    /// Removes what retention no longer keeps (by the records' own time).
    async fn enforce_retention(&self, now_ms: i64) -> Result<RetentionReport, HistoryError>;

    /// Statistics of the incidents opened in `month` (Asia/Seoul), for the
    /// municipality or one dong. One implementation for every store: the
    /// month's incident events (plus follow-ups) through [`stats`].
    async fn statistics(
        &self,
        municipality_code: &str,
        dong_code: Option<&str>,
        month: Month,
    ) -> Result<MonthStatistics, HistoryError> {
        let mut query = IncidentQuery {
            municipality_code: municipality_code.to_string(),
            dong_code: dong_code.map(str::to_string),
            from_ms: month.start_ms(),
            to_ms: month.end_ms() + stats::FOLLOW_UP_MS,
            limit: 1000,
            ..Default::default()
        };
        let mut events = Vec::new();
        loop {
            let page = self.incidents(&query).await?;
            events.extend(page.events);
            match page.next_page_token {
                Some(t) => query.page_token = Some(t),
                None => break,
            }
        }
        Ok(stats::month_statistics(
            municipality_code,
            dong_code.unwrap_or(""),
            month,
            &events,
        ))
    }
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
