//! [`HistoryStore`]: the history, whichever store keeps it, and
//! [`open_store`], the store a service's options name.

use crate::embedded::EmbeddedStore;
use crate::error::HistoryError;
use crate::model::*;
use crate::scylla_options::ScyllaOptions;
use crate::scylla_store::ScyllaStore;
use crate::stats::{self, Month};
use async_trait::async_trait;
use dolbom_proto::v1::{IncidentEvent, MonthStatistics};
use dolbom_snapshots::ShardSnapshot;

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
