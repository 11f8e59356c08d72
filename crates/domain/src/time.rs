//! Instants. The platform counts time as [`Ts`]: milliseconds since the Unix
//! epoch, UTC. Local time for sleep windows, office hours and holidays is
//! Asia/Seoul (KST, UTC+9, no daylight saving since 1988).

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Asia::Seoul;
use serde::{Deserialize, Serialize};

/// One minute in milliseconds.
pub const MINUTE_MS: i64 = 60_000;
/// One hour in milliseconds.
pub const HOUR_MS: i64 = 60 * MINUTE_MS;
/// One day in milliseconds.
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// Seoul's offset from UTC (no daylight saving since 1988).
pub const KST_OFFSET_MS: i64 = 9 * HOUR_MS;

/// An instant: milliseconds since 1970-01-01T00:00:00Z.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Ts(pub i64);

impl Ts {
    /// The earliest representable instant; used as "never".
    pub const MIN: Ts = Ts(i64::MIN / 4);
    /// The latest representable instant; used as "no deadline".
    pub const MAX: Ts = Ts(i64::MAX / 4);

    /// The wall clock now. Code that must be testable takes a
    /// [`Clock`](crate::clock::Clock) instead of calling this.
    pub fn now() -> Ts {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Ts(d.as_millis() as i64)
    }
    pub const fn from_millis(ms: i64) -> Ts {
        Ts(ms)
    }
    pub const fn millis(self) -> i64 {
        self.0
    }
    pub const fn plus_ms(self, ms: i64) -> Ts {
        Ts(self.0.saturating_add(ms))
    }
    pub const fn plus_minutes(self, minutes: u32) -> Ts {
        self.plus_ms(minutes as i64 * MINUTE_MS)
    }
    /// `self - earlier` in milliseconds.
    pub const fn since(self, earlier: Ts) -> i64 {
        self.0.saturating_sub(earlier.0)
    }
    pub fn to_utc(self) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(self.0)
            .single()
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }
    /// Local wall-clock time in Seoul.
    pub fn to_kst(self) -> NaiveDateTime {
        self.to_utc().with_timezone(&Seoul).naive_local()
    }
    /// Minutes after local midnight in Seoul, 0..1440.
    pub fn kst_minute_of_day(self) -> u32 {
        let t = self.to_kst();
        t.hour() * 60 + t.minute()
    }
    /// Seoul's local day as a number (days since 1970-01-01 local), by
    /// arithmetic: KST is UTC+9 without daylight saving since 1988, so this
    /// needs no time-zone table (the engine calls it per reading).
    pub const fn kst_day_number(self) -> i64 {
        (self.0 + KST_OFFSET_MS).div_euclid(DAY_MS)
    }
    /// The local clock hour in Seoul, 0..24, by the same arithmetic.
    pub const fn kst_hour(self) -> u32 {
        ((self.0 + KST_OFFSET_MS).rem_euclid(DAY_MS) / HOUR_MS) as u32
    }
    /// Local midnight in Seoul starting day `day` of [`kst_day_number`](Self::kst_day_number).
    pub const fn kst_day_start(day: i64) -> Ts {
        Ts(day * DAY_MS - KST_OFFSET_MS)
    }
    /// The instant of a Seoul wall-clock time.
    pub fn from_kst(local: NaiveDateTime) -> Ts {
        let dt = Seoul
            .from_local_datetime(&local)
            .earliest()
            .expect("Asia/Seoul has no gaps since 1988");
        Ts(dt.timestamp_millis())
    }
    /// Local midnight in Seoul starting `date`.
    pub fn kst_midnight(date: NaiveDate) -> Ts {
        Ts::from_kst(date.and_hms_opt(0, 0, 0).expect("midnight exists"))
    }
    /// Parses RFC 3339 (`2026-01-01T09:00:00+09:00`).
    pub fn parse_rfc3339(s: &str) -> Option<Ts> {
        DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|d| Ts(d.timestamp_millis()))
    }
}

impl std::fmt::Display for Ts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.to_kst().format("%Y-%m-%d %H:%M:%S KST"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kst_is_utc_plus_nine() {
        let t = Ts::parse_rfc3339("2026-01-01T00:00:00Z").unwrap();
        assert_eq!(t.kst_minute_of_day(), 9 * 60);
        assert_eq!(t.to_string(), "2026-01-01 09:00:00 KST");
        let d = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
        assert_eq!(Ts::kst_midnight(d).0, t.0 - 9 * HOUR_MS);
    }
}
