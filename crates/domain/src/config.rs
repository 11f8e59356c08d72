//! A household's monitoring configuration and its validation.
//!
//! Validation errors name the field in the wire protocol's terms
//! (`thresholds.caution_minutes`, `absences[2].ends_at`, …) so that the gRPC API
//! can return them as `INVALID_ARGUMENT` unchanged.

use crate::ids::{DeviceId, DongCode, HouseholdId, MunicipalityCode};
pub use crate::incident::ActivityRule;
use crate::incident::Stage;
use crate::time::{Ts, DAY_MS, MINUTE_MS};
use chrono::{Duration, Timelike};
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

/// The longest stage threshold: 7 days.
pub const MAX_THRESHOLD_MINUTES: u32 = 7 * 24 * 60;
/// The longest absence: 366 days.
pub const MAX_ABSENCE_MS: i64 = 366 * DAY_MS;
/// At most this many absences are kept per household.
pub const MAX_ABSENCES: usize = 32;
/// At most this many plugs per household.
pub const MAX_DEVICES: usize = 16;
/// The longest sleep window: 14 hours.
pub const MAX_SLEEP_MINUTES: u32 = 14 * 60;

/// A configuration that cannot be accepted, naming the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {problem}")]
pub struct ConfigError {
    /// Field path in the wire protocol, e.g. `thresholds.caution_minutes`.
    pub field: String,
    pub problem: String,
}

impl ConfigError {
    pub fn new(field: impl Into<String>, problem: impl ToString) -> Self {
        Self {
            field: field.into(),
            problem: problem.to_string(),
        }
    }
}

/// Per-stage inactivity thresholds in minutes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Thresholds {
    pub attention_minutes: u32,
    pub caution_minutes: u32,
    pub danger_minutes: u32,
}

impl Default for Thresholds {
    /// 12 h / 24 h / 36 h, as DESIGN.md says.
    fn default() -> Self {
        Self {
            attention_minutes: 12 * 60,
            caution_minutes: 24 * 60,
            danger_minutes: 36 * 60,
        }
    }
}

impl Thresholds {
    /// Threshold of a welfare stage; 0 for [`Stage::Normal`].
    pub fn minutes(&self, stage: Stage) -> u32 {
        match stage {
            Stage::Normal => 0,
            Stage::Attention => self.attention_minutes,
            Stage::Caution => self.caution_minutes,
            Stage::Danger => self.danger_minutes,
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let named = [
            ("thresholds.attention_minutes", self.attention_minutes),
            ("thresholds.caution_minutes", self.caution_minutes),
            ("thresholds.danger_minutes", self.danger_minutes),
        ];
        for (field, v) in named {
            if v == 0 {
                return Err(ConfigError::new(field, "must be above zero"));
            }
            if v > MAX_THRESHOLD_MINUTES {
                return Err(ConfigError::new(
                    field,
                    format!("{v} minutes is above the maximum of 7 days ({MAX_THRESHOLD_MINUTES})"),
                ));
            }
        }
        if self.caution_minutes <= self.attention_minutes {
            return Err(ConfigError::new(
                "thresholds.caution_minutes",
                "must be greater than attention_minutes",
            ));
        }
        if self.danger_minutes <= self.caution_minutes {
            return Err(ConfigError::new(
                "thresholds.danger_minutes",
                "must be greater than caution_minutes",
            ));
        }
        Ok(())
    }
}

/// Changes smaller than these are noise, not activity.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct NoiseFloors {
    pub watts: f32,
    pub lux: f32,
}

impl Default for NoiseFloors {
    fn default() -> Self {
        Self {
            watts: 5.0,
            lux: 15.0,
        }
    }
}

/// The household's usual sleep, in minutes after local midnight (Asia/Seoul);
/// may wrap midnight.
///
/// Rule: if the ATTENTION deadline falls inside the window it is deferred to
/// the window's end (the person is expected to be asleep, and quiet is
/// normal), but never beyond the CAUTION deadline. CAUTION and DANGER are never
/// deferred: missing an incident is the worst failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SleepWindow {
    pub start_minute: u16,
    pub end_minute: u16,
}

impl SleepWindow {
    pub fn contains_minute(&self, m: u32) -> bool {
        let (s, e) = (self.start_minute as u32, self.end_minute as u32);
        if s < e {
            s <= m && m < e
        } else {
            m >= s || m < e
        }
    }

    pub fn length_minutes(&self) -> u32 {
        let (s, e) = (self.start_minute as u32, self.end_minute as u32);
        (e + 1440 - s) % 1440
    }

    /// If `t` lies inside the window, the instant the window ends; else `None`.
    pub fn end_after(&self, t: Ts) -> Option<Ts> {
        let local = t.to_kst();
        let m = local.hour() * 60 + local.minute();
        if !self.contains_minute(m) {
            return None;
        }
        let mut date = local.date();
        if self.end_minute as u32 <= m {
            date += Duration::days(1);
        }
        let end = date.and_hms_opt(self.end_minute as u32 / 60, self.end_minute as u32 % 60, 0)?;
        Some(Ts::from_kst(end))
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.start_minute >= 1440 {
            return Err(ConfigError::new(
                "sleep_window.start_minute",
                "must be below 1440",
            ));
        }
        if self.end_minute >= 1440 {
            return Err(ConfigError::new(
                "sleep_window.end_minute",
                "must be below 1440",
            ));
        }
        if self.start_minute == self.end_minute {
            return Err(ConfigError::new(
                "sleep_window.end_minute",
                "must differ from start_minute",
            ));
        }
        if self.length_minutes() > MAX_SLEEP_MINUTES {
            return Err(ConfigError::new(
                "sleep_window",
                format!("is longer than {} hours", MAX_SLEEP_MINUTES / 60),
            ));
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AbsenceKind {
    Hospital,
    Travel,
    Other,
}

/// A period the person is away: `[starts_at, ends_at)`.
///
/// It is in force at `t` when `starts_at <= t < ends_at` and there has been no
/// activity since `starts_at` (activity in the home ends it early). While in
/// force, nothing is raised for the household; when it expires the inactivity
/// clock restarts from `ends_at`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Absence {
    pub kind: AbsenceKind,
    pub starts_at: Ts,
    pub ends_at: Ts,
}

/// How readily a household's learned routine raises ATTENTION before the
/// fixed threshold (see `dolbom-engine`'s `routine`): a quiet span is a
/// routine break once all but [`allowed_misses`](Self::allowed_misses) of
/// the reference days were active in it and, by how often the home is
/// active in each of its hours, it would come about at most once in
/// [`one_in_days`](Self::one_in_days) days. Higher sensitivity alerts sooner
/// and more often.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoutineSensitivity {
    /// No routine-break alerts; the fixed thresholds alone.
    Off,
    Low,
    #[default]
    Normal,
    High,
}

impl RoutineSensitivity {
    /// How rare (once in this many days) a quiet must be to break the
    /// routine; `None` when off.
    pub fn one_in_days(self) -> Option<u32> {
        match self {
            RoutineSensitivity::Off => None,
            RoutineSensitivity::Low => Some(10_000),
            RoutineSensitivity::Normal => Some(1_000),
            RoutineSensitivity::High => Some(100),
        }
    }

    /// Reference days that may have been quiet through the span too.
    pub fn allowed_misses(self) -> u8 {
        1
    }
}

/// Learned detection settings of one household (issue 18). The fixed
/// thresholds always apply; these only add earlier alerts and decide what
/// counts as activity. In a configuration file (notify's `[[learning]]`)
/// `routine` is required and the switches default as [`Learning::default`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Learning {
    pub routine: RoutineSensitivity,
    /// Recognise plugs whose load switches itself (a refrigerator's
    /// compressor, a timer) and do not count their switching as activity.
    #[serde(default = "yes")]
    pub recognise_automatic_loads: bool,
    /// Defer the fixed ATTENTION deadline when it falls in hours this home
    /// is usually quiet in (a learned sleep window), to the end of those
    /// hours, never past the CAUTION deadline — as a configured sleep
    /// window does. Needs the routine on and learned.
    #[serde(default)]
    pub defer_through_usual_quiet: bool,
}

fn yes() -> bool {
    true
}

impl Default for Learning {
    fn default() -> Self {
        Self {
            routine: RoutineSensitivity::Normal,
            recognise_automatic_loads: true,
            defer_through_usual_quiet: false,
        }
    }
}

/// A household's monitoring configuration. Compact: the monitor holds millions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HouseholdConfig {
    pub household_id: HouseholdId,
    pub municipality: MunicipalityCode,
    pub dong: DongCode,
    pub devices: SmallVec<[DeviceId; 1]>,
    pub thresholds: Thresholds,
    pub rule: ActivityRule,
    pub noise: NoiseFloors,
    pub offline_after_minutes: u32,
    pub night_holiday_consent: bool,
    /// Sorted by `starts_at`.
    pub absences: Vec<Absence>,
    pub sleep_window: Option<SleepWindow>,
    pub learning: Learning,
    pub version: u64,
    pub building_id: Option<Box<str>>,
    /// Monitoring clocks start here.
    pub registered_at: Ts,
}

/// Default offline limit: 30 minutes without any reading.
pub const DEFAULT_OFFLINE_AFTER_MINUTES: u32 = 30;

impl HouseholdConfig {
    /// A configuration with platform defaults and the given plugs.
    pub fn with_defaults(
        household_id: HouseholdId,
        dong: DongCode,
        devices: impl IntoIterator<Item = DeviceId>,
        registered_at: Ts,
    ) -> Self {
        Self {
            household_id,
            municipality: dong.municipality(),
            dong,
            devices: devices.into_iter().collect(),
            thresholds: Thresholds::default(),
            rule: ActivityRule::default(),
            noise: NoiseFloors::default(),
            offline_after_minutes: DEFAULT_OFFLINE_AFTER_MINUTES,
            night_holiday_consent: false,
            absences: Vec::new(),
            sleep_window: None,
            learning: Learning::default(),
            version: 1,
            building_id: None,
            registered_at,
        }
    }

    pub fn offline_after_ms(&self) -> i64 {
        self.offline_after_minutes as i64 * MINUTE_MS
    }

    /// Position of a plug in `devices`.
    pub fn device_index(&self, device: &str) -> Option<usize> {
        self.devices.iter().position(|d| d.as_str() == device)
    }

    /// Checks every rule; the error names the first offending field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.dong.municipality() != self.municipality {
            return Err(ConfigError::new(
                "dong_code",
                format!("does not belong to municipality {}", self.municipality),
            ));
        }
        if self.devices.len() > MAX_DEVICES {
            return Err(ConfigError::new(
                "device_ids",
                format!("more than {MAX_DEVICES} plugs"),
            ));
        }
        for (i, d) in self.devices.iter().enumerate() {
            if self.devices[..i].contains(d) {
                return Err(ConfigError::new(
                    format!("device_ids[{i}]"),
                    format!("{d} is listed twice"),
                ));
            }
        }
        self.thresholds.validate()?;
        let n = self.noise;
        if !(n.watts.is_finite() && (0.0..=1000.0).contains(&n.watts)) {
            return Err(ConfigError::new(
                "noise_floors.watts",
                "must be between 0 and 1000",
            ));
        }
        if !(n.lux.is_finite() && (0.0..=10000.0).contains(&n.lux)) {
            return Err(ConfigError::new(
                "noise_floors.lux",
                "must be between 0 and 10000",
            ));
        }
        if self.offline_after_minutes == 0 {
            return Err(ConfigError::new(
                "offline_after_minutes",
                "must be above zero",
            ));
        }
        if self.offline_after_minutes >= self.thresholds.attention_minutes {
            return Err(ConfigError::new(
                "offline_after_minutes",
                "must be shorter than thresholds.attention_minutes",
            ));
        }
        if self.absences.len() > MAX_ABSENCES {
            return Err(ConfigError::new(
                "absences",
                format!("more than {MAX_ABSENCES} absences"),
            ));
        }
        for (i, a) in self.absences.iter().enumerate() {
            if a.ends_at <= a.starts_at {
                return Err(ConfigError::new(
                    format!("absences[{i}].ends_at"),
                    "must be after starts_at",
                ));
            }
            if a.ends_at.since(a.starts_at) > MAX_ABSENCE_MS {
                return Err(ConfigError::new(
                    format!("absences[{i}].ends_at"),
                    "absence is longer than 366 days",
                ));
            }
            if i > 0 && self.absences[i - 1].starts_at > a.starts_at {
                return Err(ConfigError::new(
                    format!("absences[{i}].starts_at"),
                    "absences must be sorted by starts_at",
                ));
            }
        }
        if let Some(w) = &self.sleep_window {
            w.validate()?;
        }
        if let Some(b) = &self.building_id {
            if !valid_building_id(b) {
                return Err(ConfigError::new(
                    "building_id",
                    "must be 1-32 characters of [A-Za-z0-9._-] (a code, never an address: it travels on Kafka)",
                ));
            }
        }
        Ok(())
    }
}

/// A building id is a code (e.g. a 건물관리번호 or the municipality's own),
/// never free text: an address typed into it would travel on Kafka.
fn valid_building_id(b: &str) -> bool {
    (1..=32).contains(&b.len())
        && b.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_building_id_is_a_code_not_an_address() {
        for ok in ["B-1023", "1111051500.0042", "apt_7"] {
            assert!(valid_building_id(ok), "{ok}");
        }
        for bad in [
            "",
            "서울 종로구 세종대로 209",
            "12 Main St",
            "a/b",
            &"x".repeat(33),
        ] {
            assert!(!valid_building_id(bad), "{bad}");
        }
    }

    fn cfg() -> HouseholdConfig {
        let m = MunicipalityCode::new("11110").unwrap();
        HouseholdConfig::with_defaults(
            HouseholdId::new("hh-1").unwrap(),
            DongCode::new("1111051500", m).unwrap(),
            [DeviceId::new("plug-1").unwrap()],
            Ts(0),
        )
    }

    fn field_of(c: &HouseholdConfig) -> String {
        c.validate().unwrap_err().field
    }

    #[test]
    fn defaults_are_valid() {
        cfg().validate().unwrap();
    }

    #[test]
    fn thresholds_out_of_order_zero_or_too_long_name_the_field() {
        let mut c = cfg();
        c.thresholds.caution_minutes = c.thresholds.attention_minutes;
        assert_eq!(field_of(&c), "thresholds.caution_minutes");
        let mut c = cfg();
        c.thresholds.danger_minutes = 100;
        assert_eq!(field_of(&c), "thresholds.danger_minutes");
        let mut c = cfg();
        c.thresholds.attention_minutes = 0;
        assert_eq!(field_of(&c), "thresholds.attention_minutes");
        let mut c = cfg();
        c.thresholds.danger_minutes = MAX_THRESHOLD_MINUTES + 1;
        let e = c.validate().unwrap_err();
        assert_eq!(e.field, "thresholds.danger_minutes");
        assert!(e.to_string().contains("7 days"), "{e}");
    }

    #[test]
    fn other_fields_are_checked() {
        let mut c = cfg();
        c.offline_after_minutes = 0;
        assert_eq!(field_of(&c), "offline_after_minutes");
        let mut c = cfg();
        c.offline_after_minutes = c.thresholds.attention_minutes;
        assert_eq!(field_of(&c), "offline_after_minutes");
        let mut c = cfg();
        c.noise.watts = f32::NAN;
        assert_eq!(field_of(&c), "noise_floors.watts");
        let mut c = cfg();
        c.devices.push(DeviceId::new("plug-1").unwrap());
        assert_eq!(field_of(&c), "device_ids[1]");
        let mut c = cfg();
        c.absences.push(Absence {
            kind: AbsenceKind::Hospital,
            starts_at: Ts(10),
            ends_at: Ts(10),
        });
        assert_eq!(field_of(&c), "absences[0].ends_at");
        let mut c = cfg();
        c.sleep_window = Some(SleepWindow {
            start_minute: 600,
            end_minute: 600,
        });
        assert_eq!(field_of(&c), "sleep_window.end_minute");
        c.sleep_window = Some(SleepWindow {
            start_minute: 1200,
            end_minute: 720,
        });
        assert_eq!(field_of(&c), "sleep_window");
    }

    #[test]
    fn sleep_window_wraps_midnight() {
        let w = SleepWindow {
            start_minute: 22 * 60,
            end_minute: 7 * 60,
        };
        assert!(w.contains_minute(23 * 60));
        assert!(w.contains_minute(3 * 60));
        assert!(!w.contains_minute(7 * 60));
        assert!(!w.contains_minute(12 * 60));
        let at = |s| Ts::parse_rfc3339(s).unwrap();
        assert_eq!(
            w.end_after(at("2026-03-02T23:30:00+09:00")),
            Some(at("2026-03-03T07:00:00+09:00"))
        );
        assert_eq!(
            w.end_after(at("2026-03-03T03:00:00+09:00")),
            Some(at("2026-03-03T07:00:00+09:00"))
        );
        assert_eq!(w.end_after(at("2026-03-03T12:00:00+09:00")), None);
    }
}
