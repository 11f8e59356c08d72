//! Rows of the ScyllaDB tables as the store writes and reads them: the
//! partition buckets (UTC day, UTC month), each row's TTL, and aggregate and
//! snapshot-head rows to and from the model.

use crate::error::HistoryError;
use crate::model::*;
use chrono::{Datelike, TimeZone, Utc};
use dolbom_proto::v1::IncidentEvent;
use prost::Message;

pub(crate) fn utc_day(ms: i64) -> i32 {
    ms.div_euclid(DAY_MS) as i32
}

pub(crate) fn utc_month(ms: i64) -> i32 {
    let t = Utc.timestamp_millis_opt(ms).single().expect("valid time");
    t.year() * 12 + t.month0() as i32
}

pub(crate) fn month_start_ms(month: i32) -> i64 {
    let (y, m) = (month.div_euclid(12), month.rem_euclid(12) as u32 + 1);
    Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0)
        .single()
        .expect("valid month")
        .timestamp_millis()
}

/// Seconds a record of time `at_ms` has left under `keep_ms`, or `None` when
/// it is already past retention.
pub(crate) fn ttl(now: i64, at_ms: i64, keep_ms: i64) -> Option<i32> {
    let left = (at_ms + keep_ms - now) / 1000;
    (left > 0).then(|| left.min(i64::from(i32::MAX)) as i32)
}

pub(crate) fn summary(
    count: Option<i32>,
    min: Option<f64>,
    max: Option<f64>,
    sum: Option<f64>,
) -> Option<Summary> {
    Some(Summary {
        count: count? as u32,
        min: min?,
        max: max?,
        sum: sum?,
    })
}

pub(crate) type AggRow = (
    String,
    i64,
    i32,
    Option<i32>,
    Option<f64>,
    Option<f64>,
    Option<f64>,
    Option<i32>,
    Option<f64>,
    Option<f64>,
    Option<f64>,
);

pub(crate) fn aggregate_from(row: AggRow, resolution: Resolution) -> Aggregate {
    let (household_id, bucket_start_ms, readings, wc, wmin, wmax, wsum, lc, lmin, lmax, lsum) = row;
    Aggregate {
        household_id,
        resolution,
        bucket_start_ms,
        readings: readings as u32,
        watts: summary(wc, wmin, wmax, wsum),
        lux: summary(lc, lmin, lmax, lsum),
    }
}

pub(crate) type AggValues = (
    String,
    i32,
    i64,
    i32,
    Option<i32>,
    Option<f64>,
    Option<f64>,
    Option<f64>,
    Option<i32>,
    Option<f64>,
    Option<f64>,
    Option<f64>,
    i32,
);

pub(crate) fn aggregate_values(a: &Aggregate, bucket: i32, ttl: i32) -> AggValues {
    let (w, l) = (a.watts, a.lux);
    (
        a.household_id.clone(),
        bucket,
        a.bucket_start_ms,
        a.readings as i32,
        w.map(|s| s.count as i32),
        w.map(|s| s.min),
        w.map(|s| s.max),
        w.map(|s| s.sum),
        l.map(|s| s.count as i32),
        l.map(|s| s.min),
        l.map(|s| s.max),
        l.map(|s| s.sum),
        ttl,
    )
}

pub(crate) fn decode_event(bytes: &[u8]) -> Result<IncidentEvent, HistoryError> {
    IncidentEvent::decode(bytes).map_err(|e| HistoryError::Corrupt(e.to_string()))
}

pub(crate) type HeadRow = (i64, i64, i64, i64, i64, i32, i64, i64);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DAY_MS;

    #[test]
    fn buckets_and_ttls() {
        let t = 1_767_193_200_000; // 2025-12-31T15:00Z
        assert_eq!(utc_day(t), 20453);
        assert_eq!(utc_month(t), 2025 * 12 + 11);
        assert_eq!(month_start_ms(utc_month(t)), 1_764_547_200_000);
        assert_eq!(ttl(t, t, DAY_MS), Some(86_400));
        assert_eq!(ttl(t, t - DAY_MS, DAY_MS), None);
    }
}
