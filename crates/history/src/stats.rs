//! Monthly statistics from incident events: pure code, shared by every store
//! so the numbers cannot differ between ScyllaDB and the embedded store.
//!
//! An incident counts in the month (Asia/Seoul) its `OPENED` event falls in.
//! Its stage is the highest stage any of its events reached; its outcome is
//! the last `RESOLVED` event's outcome, else `RECOVERED` when the platform saw
//! the household recover, else it is counted as unresolved. Time to
//! acknowledge runs from `OPENED` to the first `ACKNOWLEDGED`; time to resolve
//! from `OPENED` to the first `RESOLVED` or `RECOVERED`.

use crate::model::event_time_ms;
use chrono::{Datelike, NaiveDate, TimeZone};
use chrono_tz::Asia::Seoul;
use dolbom_proto::v1::{
    IncidentEvent, IncidentEventType, MonthStatistics, Outcome, OutcomeCount, Stage, StageCount,
};
use std::collections::{BTreeMap, HashMap};

/// A calendar month in Korean local time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    pub year: i32,
    pub month: u32,
}

/// The years statistics can be asked for: the platform keeps nothing from
/// before 2000, and bounding them keeps every month's midnight well defined
/// (Seoul's historical offset changes, 1908–1961, put some local midnights
/// in a gap).
pub const STATS_YEARS: std::ops::RangeInclusive<i32> = 2000..=2100;

impl Month {
    /// Parses `YYYY-MM` within [`STATS_YEARS`].
    pub fn parse(s: &str) -> Option<Self> {
        let (y, m) = s.split_once('-')?;
        if y.len() != 4 || m.len() != 2 {
            return None;
        }
        let month = Month {
            year: y.parse().ok()?,
            month: m.parse().ok()?,
        };
        ((1..=12).contains(&month.month) && STATS_YEARS.contains(&month.year)).then_some(month)
    }

    pub fn next(self) -> Self {
        if self.month == 12 {
            Month {
                year: self.year.saturating_add(1),
                month: 1,
            }
        } else {
            Month {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    /// First instant of the month in Asia/Seoul, ms since the epoch. A
    /// midnight that fell in a historical offset gap starts at the first
    /// instant after it; a month chrono cannot represent is clamped.
    pub fn start_ms(self) -> i64 {
        let year = self.year.clamp(-200_000, 200_000);
        let Some(date) = NaiveDate::from_ymd_opt(year, self.month.clamp(1, 12), 1) else {
            return if year < 0 { i64::MIN / 2 } else { i64::MAX / 2 };
        };
        let midnight = date.and_hms_opt(0, 0, 0).expect("midnight");
        (0..=3)
            .find_map(|h| {
                Seoul
                    .from_local_datetime(&(midnight + chrono::Duration::hours(h)))
                    .earliest()
            })
            .map_or_else(
                || midnight.and_utc().timestamp_millis(),
                |t| t.timestamp_millis(),
            )
    }

    pub fn end_ms(self) -> i64 {
        self.next().start_ms()
    }

    pub fn of_ms(at_ms: i64) -> Self {
        // chrono represents about ±262 000 years; clamp far inside that.
        const LIMIT: i64 = 8_000_000_000_000_000 / 1000;
        let t = Seoul
            .timestamp_millis_opt(at_ms.clamp(-LIMIT, LIMIT))
            .single()
            .expect("in chrono's range");
        Month {
            year: t.year(),
            month: t.month(),
        }
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// How far after a month's end events of its incidents (acknowledgements,
/// resolutions) are still looked for.
pub const FOLLOW_UP_MS: i64 = 62 * crate::model::DAY_MS;

#[derive(Default)]
struct Incident {
    opened_at: Option<i64>,
    stage: i32,
    first_ack: Option<i64>,
    first_end: Option<i64>,
    outcome: Option<(i64, i32)>,
    recovered: bool,
}

/// Statistics of the incidents opened in `month`, from every event of those
/// incidents (the caller passes events from the month's start to at least
/// [`FOLLOW_UP_MS`] after its end; events of incidents opened earlier are
/// ignored).
pub fn month_statistics<'a>(
    municipality_code: &str,
    dong_code: &str,
    month: Month,
    events: impl IntoIterator<Item = &'a IncidentEvent>,
) -> MonthStatistics {
    let (start, end) = (month.start_ms(), month.end_ms());
    let mut incidents: HashMap<&str, Incident> = HashMap::new();
    for e in events {
        let at = event_time_ms(e);
        let i = incidents.entry(e.incident_id.as_str()).or_default();
        i.stage = i.stage.max(e.stage);
        match IncidentEventType::try_from(e.r#type) {
            Ok(IncidentEventType::Opened) => {
                i.opened_at = Some(i.opened_at.map_or(at, |o: i64| o.min(at)))
            }
            Ok(IncidentEventType::Acknowledged) => {
                i.first_ack = Some(i.first_ack.map_or(at, |a: i64| a.min(at)))
            }
            Ok(IncidentEventType::Recovered) => {
                i.recovered = true;
                i.first_end = Some(i.first_end.map_or(at, |a: i64| a.min(at)));
            }
            Ok(IncidentEventType::Resolved) => {
                i.first_end = Some(i.first_end.map_or(at, |a: i64| a.min(at)));
                if i.outcome.is_none_or(|(t, _)| at >= t) {
                    i.outcome = Some((at, e.outcome));
                }
            }
            _ => {}
        }
    }
    let mut by_stage: BTreeMap<i32, u64> = BTreeMap::new();
    let mut by_outcome: BTreeMap<i32, u64> = BTreeMap::new();
    let (mut ack, mut resolve) = (Vec::new(), Vec::new());
    let mut count = 0;
    for i in incidents.values() {
        let Some(opened) = i.opened_at.filter(|o| (start..end).contains(o)) else {
            continue;
        };
        count += 1;
        let stage = if i.stage == 0 {
            Stage::Normal as i32
        } else {
            i.stage
        };
        *by_stage.entry(stage).or_default() += 1;
        let outcome = match (i.outcome, i.recovered) {
            (Some((_, o)), _) => o,
            (None, true) => Outcome::Recovered as i32,
            (None, false) => Outcome::Unspecified as i32,
        };
        *by_outcome.entry(outcome).or_default() += 1;
        if let Some(a) = i.first_ack {
            ack.push((a - opened).max(0) as f64 / 1000.0);
        }
        if let Some(r) = i.first_end {
            resolve.push((r - opened).max(0) as f64 / 1000.0);
        }
    }
    MonthStatistics {
        month: month.to_string(),
        municipality_code: municipality_code.to_string(),
        dong_code: dong_code.to_string(),
        by_stage: by_stage
            .into_iter()
            .map(|(stage, count)| StageCount { stage, count })
            .collect(),
        by_outcome: by_outcome
            .into_iter()
            .map(|(outcome, count)| OutcomeCount { outcome, count })
            .collect(),
        incidents: count,
        ack_seconds_p50: percentile(&mut ack, 50.0),
        ack_seconds_p90: percentile(&mut ack, 90.0),
        resolve_seconds_p50: percentile(&mut resolve, 50.0),
        resolve_seconds_p90: percentile(&mut resolve, 90.0),
    }
}

/// Nearest-rank percentile; 0 for no samples.
pub fn percentile(samples: &mut [f64], p: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_types::Timestamp;

    fn ev(incident: &str, ty: IncidentEventType, stage: Stage, at_ms: i64) -> IncidentEvent {
        IncidentEvent {
            event_id: format!("{incident}/{}/{}", ty as i32, stage as i32),
            incident_id: incident.into(),
            r#type: ty as i32,
            stage: stage as i32,
            due_at: Some(Timestamp {
                seconds: at_ms / 1000,
                nanos: 0,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn months_are_korean_local_time() {
        let m = Month::parse("2026-01").unwrap();
        // 2026-01-01 00:00 KST = 2025-12-31 15:00 UTC.
        assert_eq!(m.start_ms(), 1_767_193_200_000);
        assert_eq!(Month::of_ms(m.start_ms()), m);
        assert_eq!(
            Month::of_ms(m.start_ms() - 1),
            Month::parse("2025-12").unwrap()
        );
        assert_eq!(
            Month::parse("2026-12").unwrap().next().to_string(),
            "2027-01"
        );
        assert!(Month::parse("2026-13").is_none());
        // Outside the years statistics cover (1908-04 and friends have a
        // local midnight in an offset gap).
        for bad in [
            "1908-04", "1912-01", "1948-06", "1950-04", "1960-05", "9999-12", "0000-01",
        ] {
            assert!(Month::parse(bad).is_none(), "{bad}");
        }
        // Nothing panics, however the month was made.
        for year in [1908, 1912, 1948, 1950, 1960, -5, 262_143, i32::MAX] {
            for month in 1..=12 {
                let m = Month { year, month };
                let _ = (m.start_ms(), m.end_ms());
            }
        }
        for ms in [i64::MIN, -1, 0, i64::MAX] {
            let _ = Month::of_ms(ms);
        }
        let y2000 = Month::parse("2000-01").unwrap();
        assert_eq!(Month::of_ms(y2000.start_ms()), y2000);
        assert!(Month::parse("26-01").is_none());
    }

    #[test]
    fn counts_stages_outcomes_and_times() {
        use IncidentEventType::*;
        let m = Month::parse("2026-03").unwrap();
        let t = m.start_ms() + 1000;
        let events = vec![
            // a: opened, raised to caution, acked after 60 s, resolved after 600 s.
            ev("a", Opened, Stage::Attention, t),
            ev("a", StageRaised, Stage::Caution, t + 30_000),
            ev("a", Acknowledged, Stage::Unspecified, t + 60_000),
            IncidentEvent {
                outcome: Outcome::VisitedSafe as i32,
                ..ev("a", Resolved, Stage::Unspecified, t + 600_000)
            },
            // b: opened, recovered after 120 s.
            ev("b", Opened, Stage::Attention, t),
            ev("b", Recovered, Stage::Attention, t + 120_000),
            // c: opened, nothing else.
            ev("c", Opened, Stage::Danger, t),
            // d: opened the month before: ignored.
            ev("d", Opened, Stage::Attention, m.start_ms() - 1),
            ev("d", Recovered, Stage::Attention, t),
        ];
        let s = month_statistics("11110", "", m, &events);
        assert_eq!(s.incidents, 3);
        let stage = |st: Stage| {
            s.by_stage
                .iter()
                .find(|c| c.stage == st as i32)
                .map_or(0, |c| c.count)
        };
        assert_eq!(
            (
                stage(Stage::Attention),
                stage(Stage::Caution),
                stage(Stage::Danger)
            ),
            (1, 1, 1)
        );
        let outcome = |o: Outcome| {
            s.by_outcome
                .iter()
                .find(|c| c.outcome == o as i32)
                .map_or(0, |c| c.count)
        };
        assert_eq!(outcome(Outcome::VisitedSafe), 1);
        assert_eq!(outcome(Outcome::Recovered), 1);
        assert_eq!(outcome(Outcome::Unspecified), 1);
        assert_eq!(s.ack_seconds_p50, 60.0);
        assert_eq!(s.resolve_seconds_p50, 120.0);
        assert_eq!(s.resolve_seconds_p90, 600.0);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&mut v, 50.0), 5.0);
        assert_eq!(percentile(&mut v, 90.0), 9.0);
        assert_eq!(percentile(&mut v, 100.0), 10.0);
        assert_eq!(percentile(&mut [], 50.0), 0.0);
    }
}
