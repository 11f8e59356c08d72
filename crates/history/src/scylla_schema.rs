//! The ScyllaDB schema: the migrations (`migrations/scylla/*.cql`), applied
//! in order and recorded with a checksum in `schema_migrations`, and every
//! statement the store runs, prepared once with its table's consistency
//! (see `scylla_store.rs` for why each has the one it has).

use crate::error::HistoryError;
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::Consistency;

/// The schema, in order. Never edit a released file: add the next one.
pub(crate) const MIGRATIONS: &[(i32, &str, &str)] = &[(
    1,
    "init",
    include_str!("../migrations/scylla/0001_init.cql"),
)];

pub(crate) const AGG_COLUMNS: &str =
    "household_id, bucket_start, readings, watts_count, watts_min, \
     watts_max, watts_sum, lux_count, lux_min, lux_max, lux_sum";

pub(crate) struct Statements {
    pub(crate) insert_minute: PreparedStatement,
    pub(crate) insert_hour: PreparedStatement,
    pub(crate) select_minute: PreparedStatement,
    pub(crate) select_hour: PreparedStatement,
    pub(crate) insert_inc_muni: PreparedStatement,
    pub(crate) insert_inc_household: PreparedStatement,
    pub(crate) insert_inc_id: PreparedStatement,
    pub(crate) select_inc_muni_from: PreparedStatement,
    pub(crate) select_inc_muni_after: PreparedStatement,
    pub(crate) select_inc_household: PreparedStatement,
    pub(crate) select_inc_id: PreparedStatement,
    pub(crate) insert_state: PreparedStatement,
    pub(crate) select_state: PreparedStatement,
    pub(crate) insert_escalation: PreparedStatement,
    pub(crate) select_escalation: PreparedStatement,
    pub(crate) insert_audit: PreparedStatement,
    pub(crate) select_audit: PreparedStatement,
    pub(crate) insert_chunk: PreparedStatement,
    pub(crate) insert_head: PreparedStatement,
    pub(crate) select_head: PreparedStatement,
    pub(crate) select_chunks: PreparedStatement,
    pub(crate) delete_chunks: PreparedStatement,
}

pub(crate) fn statements(sql: &str) -> Vec<String> {
    let without_comments: String = sql
        .lines()
        .map(|l| l.split("--").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    without_comments
        .split(';')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

pub(crate) async fn migrate(session: &Session) -> Result<(), HistoryError> {
    session
        .query_unpaged(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version int PRIMARY KEY, \
             name text, checksum bigint, applied_at timestamp)",
            &[],
        )
        .await
        .map_err(HistoryError::scylla)?;
    let applied: Vec<(i32, Option<i64>)> = session
        .query_unpaged("SELECT version, checksum FROM schema_migrations", &[])
        .await
        .map_err(HistoryError::scylla)?
        .into_rows_result()
        .map_err(HistoryError::scylla)?
        .rows::<(i32, Option<i64>)>()
        .map_err(HistoryError::scylla)?
        .collect::<Result<_, _>>()
        .map_err(HistoryError::scylla)?;
    for &(version, name, sql) in MIGRATIONS {
        let checksum = xxhash_rust::xxh3::xxh3_64(sql.as_bytes()) as i64;
        let fail = |reason: String| HistoryError::Migration {
            version: version as u32,
            name: name.to_string(),
            reason,
        };
        if let Some((_, recorded)) = applied.iter().find(|(v, _)| *v == version) {
            if *recorded != Some(checksum) {
                return Err(fail(
                    "already applied with a different checksum: released migrations must not change"
                        .into(),
                ));
            }
            continue;
        }
        for statement in statements(sql) {
            session
                .query_unpaged(statement, &[])
                .await
                .map_err(|e| fail(e.to_string()))?;
        }
        session
            .query_unpaged(
                "INSERT INTO schema_migrations (version, name, checksum, applied_at) \
                 VALUES (?, ?, ?, toTimestamp(now()))",
                (version, name, checksum),
            )
            .await
            .map_err(|e| fail(e.to_string()))?;
        tracing::info!(version, name, "history: applied ScyllaDB schema migration");
    }
    Ok(())
}

pub(crate) async fn prepare(session: &Session) -> Result<Statements, HistoryError> {
    let p = |cql: String, consistency: Consistency| async move {
        let mut st = session.prepare(cql).await.map_err(HistoryError::scylla)?;
        st.set_consistency(consistency);
        Ok::<_, HistoryError>(st)
    };
    use Consistency::{LocalQuorum as LQ, One};
    let agg_insert = |table: &str, bucket: &str| {
        format!(
            "INSERT INTO {table} (household_id, {bucket}, bucket_start, readings, watts_count, \
             watts_min, watts_max, watts_sum, lux_count, lux_min, lux_max, lux_sum) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?"
        )
    };
    let agg_select = |table: &str, bucket: &str| {
        format!(
            "SELECT {AGG_COLUMNS} FROM {table} WHERE household_id = ? AND {bucket} = ? \
             AND bucket_start >= ? AND bucket_start < ?"
        )
    };
    Ok(Statements {
        insert_minute: p(agg_insert("readings_minute", "day"), One).await?,
        insert_hour: p(agg_insert("readings_hour", "month"), One).await?,
        select_minute: p(agg_select("readings_minute", "day"), One).await?,
        select_hour: p(agg_select("readings_hour", "month"), One).await?,
        insert_inc_muni: p(
            "INSERT INTO incidents_by_municipality (municipality_code, day, at_ms, event_id, \
             incident_id, household_id, dong_code, kind, type, stage, payload) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?"
                .into(),
            LQ,
        )
        .await?,
        insert_inc_household: p(
            "INSERT INTO incidents_by_household (household_id, month, at_ms, event_id, payload) \
             VALUES (?, ?, ?, ?, ?) USING TTL ?"
                .into(),
            LQ,
        )
        .await?,
        insert_inc_id: p(
            "INSERT INTO incident_events_by_id (incident_id, at_ms, event_id, payload) \
             VALUES (?, ?, ?, ?) USING TTL ?"
                .into(),
            LQ,
        )
        .await?,
        select_inc_muni_from: p(
            "SELECT at_ms, event_id, dong_code, household_id, kind, payload \
             FROM incidents_by_municipality WHERE municipality_code = ? AND day = ? \
             AND at_ms >= ? AND at_ms < ?"
                .into(),
            LQ,
        )
        .await?,
        select_inc_muni_after: p(
            "SELECT at_ms, event_id, dong_code, household_id, kind, payload \
             FROM incidents_by_municipality WHERE municipality_code = ? AND day = ? \
             AND (at_ms, event_id) > (?, ?) AND (at_ms) < (?)"
                .into(),
            LQ,
        )
        .await?,
        select_inc_household: p(
            "SELECT payload FROM incidents_by_household WHERE household_id = ? AND month = ? \
             AND at_ms >= ? AND at_ms < ?"
                .into(),
            LQ,
        )
        .await?,
        select_inc_id: p(
            "SELECT payload FROM incident_events_by_id WHERE incident_id = ?".into(),
            LQ,
        )
        .await?,
        insert_state: p(
            "INSERT INTO state_changes (household_id, month, at_ms, state, cause) \
             VALUES (?, ?, ?, ?, ?) USING TTL ?"
                .into(),
            LQ,
        )
        .await?,
        select_state: p(
            "SELECT at_ms, state, cause FROM state_changes WHERE household_id = ? AND month = ? \
             AND at_ms >= ? AND at_ms < ?"
                .into(),
            LQ,
        )
        .await?,
        insert_escalation: p(
            "INSERT INTO escalation_log (incident_id, at_ms, entry_id, municipality_code, action, \
             policy_version, step, attempt, tier, channel, message_id, result, detail) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?"
                .into(),
            LQ,
        )
        .await?,
        select_escalation: p(
            "SELECT incident_id, at_ms, entry_id, municipality_code, action, policy_version, \
             step, attempt, tier, channel, message_id, result, detail FROM escalation_log \
             WHERE incident_id = ?"
                .into(),
            LQ,
        )
        .await?,
        insert_audit: p(
            "INSERT INTO audit_log (municipality_code, day, at_ms, audit_id, principal, action, \
             subject, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?"
                .into(),
            LQ,
        )
        .await?,
        select_audit: p(
            "SELECT audit_id, at_ms, principal, action, subject, detail FROM audit_log \
             WHERE municipality_code = ? AND day = ? AND at_ms >= ? AND at_ms < ?"
                .into(),
            LQ,
        )
        .await?,
        insert_chunk: p(
            "INSERT INTO snapshot_chunks (group_id, partition, snapshot_id, chunk, data) \
             VALUES (?, ?, ?, ?, ?)"
                .into(),
            LQ,
        )
        .await?,
        insert_head: p(
            "INSERT INTO snapshot_heads (group_id, partition, snapshot_id, readings_offset, \
             households_offset, incidents_offset, taken_at_ms, chunks, size, checksum) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                .into(),
            LQ,
        )
        .await?,
        select_head: p(
            "SELECT snapshot_id, readings_offset, households_offset, incidents_offset, \
             taken_at_ms, chunks, size, checksum FROM snapshot_heads \
             WHERE group_id = ? AND partition = ?"
                .into(),
            LQ,
        )
        .await?,
        select_chunks: p(
            "SELECT chunk, data FROM snapshot_chunks WHERE group_id = ? AND partition = ? \
             AND snapshot_id = ?"
                .into(),
            LQ,
        )
        .await?,
        delete_chunks: p(
            "DELETE FROM snapshot_chunks WHERE group_id = ? AND partition = ? AND snapshot_id = ?"
                .into(),
            LQ,
        )
        .await?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_files_split_into_statements() {
        let s = statements(MIGRATIONS[0].2);
        assert!(s
            .iter()
            .all(|s| s.starts_with("CREATE TABLE IF NOT EXISTS")));
        assert_eq!(s.len(), 11);
    }
}
