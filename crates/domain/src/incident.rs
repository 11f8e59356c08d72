//! Incidents: what the engine reports about a household, and how it ended.

use crate::named::Named;
use crate::time::Ts;
use serde::{Deserialize, Serialize};

/// How power and light changes combine into activity (a household's
/// configuration; every incident's reason names the rule it fired under).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ActivityRule {
    /// Either signal changing is activity: quiet only while both are quiet.
    #[default]
    PowerOrLight,
    /// Both signals must show activity: quiet as soon as either one is quiet.
    PowerAndLight,
    PowerOnly,
    LightOnly,
}

/// What kind of trouble an incident is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum IncidentKind {
    /// Nothing changed in the home for longer than a stage threshold.
    Inactivity,
    /// No reading at all arrived from the household's plugs.
    DeviceOffline,
    /// Many plugs of one dong or building went silent together.
    AreaOutage,
    /// The platform's input stalled; no inactivity is inferred meanwhile.
    PipelineStall,
}

impl IncidentKind {
    /// Three-letter code used in incident ids.
    pub fn code(self) -> &'static str {
        match self {
            IncidentKind::Inactivity => "INA",
            IncidentKind::DeviceOffline => "OFF",
            IncidentKind::AreaOutage => "AREA",
            IncidentKind::PipelineStall => "STALL",
        }
    }
    /// The display name (the wire enum's value without its prefix).
    pub fn name(self) -> &'static str {
        Named::name(self)
    }
    /// A platform incident concerns no single municipality (a stalled
    /// partition spans many): it carries no municipality code and goes to
    /// the platform's operators (SRE), never to one municipality's staff.
    pub fn is_platform(self) -> bool {
        self == IncidentKind::PipelineStall
    }
    /// Words for a person reading a log or a summary.
    pub fn describe(self) -> &'static str {
        match self {
            IncidentKind::Inactivity => "inactivity",
            IncidentKind::DeviceOffline => "device offline",
            IncidentKind::AreaOutage => "area outage",
            IncidentKind::PipelineStall => "pipeline stall",
        }
    }
    pub fn from_code(s: &str) -> Option<Self> {
        Some(match s {
            "INA" => IncidentKind::Inactivity,
            "OFF" => IncidentKind::DeviceOffline,
            "AREA" => IncidentKind::AreaOutage,
            "STALL" => IncidentKind::PipelineStall,
            _ => return None,
        })
    }
}

/// Risk stage: NORMAL → 관심 ATTENTION → 주의 CAUTION → 위험 DANGER.
/// Within one episode a stage only moves forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[repr(u8)]
pub enum Stage {
    Normal = 0,
    Attention = 1,
    Caution = 2,
    Danger = 3,
}

impl Stage {
    pub const WELFARE: [Stage; 3] = [Stage::Attention, Stage::Caution, Stage::Danger];

    /// The display name (the wire enum's value without its prefix).
    pub fn name(self) -> &'static str {
        Named::name(self)
    }
    pub fn korean(self) -> &'static str {
        match self {
            Stage::Normal => "정상",
            Stage::Attention => "관심",
            Stage::Caution => "주의",
            Stage::Danger => "위험",
        }
    }
    pub fn from_u8(v: u8) -> Stage {
        match v {
            0 => Stage::Normal,
            1 => Stage::Attention,
            2 => Stage::Caution,
            _ => Stage::Danger,
        }
    }
}

/// Why monitoring stopped applying to an open incident.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SuppressionCause {
    Absence,
    AreaOutage,
    PipelineStall,
}

/// What happened to an incident.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    Opened,
    StageRaised,
    /// Activity (or, for device-offline, readings) returned on its own.
    Recovered,
    Suppressed(SuppressionCause),
}

impl EventType {
    /// The display name (the wire enum's value without its prefix).
    pub fn name(self) -> &'static str {
        match self {
            EventType::Opened => "OPENED",
            EventType::StageRaised => "STAGE_RAISED",
            EventType::Recovered => "RECOVERED",
            EventType::Suppressed(_) => "SUPPRESSED",
        }
    }
    /// Whether the event ends the incident's episode.
    pub fn closes(self) -> bool {
        matches!(self, EventType::Recovered | EventType::Suppressed(_))
    }
}

/// Why an incident fired.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ReasonCode {
    NoPowerOrLightChange,
    NoPowerChange,
    NoLightChange,
    NoReadings,
    AreaSilent,
    PipelineStalled,
    /// Quiet through hours this home is normally active in (its learned
    /// routine); the evidence is in [`Reason::routine`].
    RoutineBreak,
}

/// Why a routine break is unusual: the home was quiet through
/// `[usual_from, usual_until)`, though on `active_days` of its last
/// `reference_days` days with readings it showed activity in those clock
/// hours; and by how often it is active in each of them, a quiet that long
/// would come about once in `one_in_days` days (hours taken as
/// independent: an estimate, not a promise).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RoutineEvidence {
    pub usual_from: Ts,
    pub usual_until: Ts,
    pub active_days: u8,
    pub reference_days: u8,
    pub one_in_days: u32,
}

impl RoutineEvidence {
    /// The evidence in words a dong officer checks (Korean, as the
    /// platform's messages are; local Seoul times, no personal data):
    /// "평소 활동 시간대 10:00–13:00에 활동 없음 (최근 14일 중 14일은 이 시간대에
    /// 활동, 이만큼 조용한 날은 약 1000일에 한 번, 조용한 지 3시간 10분)".
    pub fn explain(&self, quiet_since: Ts) -> String {
        let hhmm = |t: Ts| {
            let m = t.kst_minute_of_day();
            format!("{:02}:{:02}", m / 60, m % 60)
        };
        let quiet = (self.usual_until.since(quiet_since) / crate::time::MINUTE_MS).max(0);
        format!(
            "평소 활동 시간대 {}–{}에 활동 없음 (최근 {}일 중 {}일은 이 시간대에 활동, 이만큼 조용한 날은 약 {}일에 한 번, 조용한 지 {}시간 {}분)",
            hhmm(self.usual_from),
            hhmm(self.usual_until),
            self.reference_days,
            self.active_days,
            self.one_in_days,
            quiet / 60,
            quiet % 60,
        )
    }
}

/// The reason an incident carries: which signal went quiet, since when, and
/// which threshold it crossed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Reason {
    pub code: ReasonCode,
    pub rule: ActivityRule,
    pub quiet_since: Ts,
    /// Threshold of the event's stage in minutes; 0 for events that are not a stage.
    pub threshold_minutes: u32,
    pub last_power_change: Ts,
    pub last_light_change: Ts,
    pub last_reading: Ts,
    /// ATTENTION was deferred to the end of a sleep window: the configured
    /// one, or the home's usual quiet (learned).
    pub deferred_by_sleep_window: bool,
    /// Set when the learned routine raised the stage (code `RoutineBreak`).
    pub routine: Option<RoutineEvidence>,
}

/// One event the engine emits for a household.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HouseholdEvent {
    pub kind: IncidentKind,
    pub event: EventType,
    pub stage: Stage,
    /// Start of the episode; with the household and kind it makes the incident id.
    pub episode_start: Ts,
    /// When the condition became true (a stage's deadline, the moment of
    /// recovery). The engine may be told later; latency is measured from here.
    pub due_at: Ts,
    pub reason: Reason,
}

/// How an incident ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Outcome {
    ReachedByPhone,
    NoAnswer,
    VisitedSafe,
    EmergencyDispatched,
    DoorOpened,
    Hospitalised,
    Deceased,
    DeviceFault,
    FalseAlarm,
    Recovered,
}

impl Outcome {
    /// The display name (the wire enum's value without its prefix).
    pub fn name(self) -> &'static str {
        Named::name(self)
    }

    /// Whether, after this outcome, the person is expected to be living at
    /// home, so that a home that stays quiet must be raised again. Not when
    /// the person was taken away (emergency, hospital) or has died: their
    /// home is expected to be quiet. A resolution with any other outcome —
    /// reached by phone, no answer, visited, a false alarm, a device fault —
    /// says nothing about the hours that follow.
    pub fn expects_activity(self) -> bool {
        !matches!(
            self,
            Outcome::EmergencyDispatched | Outcome::Hospitalised | Outcome::Deceased
        )
    }
}

/// Who should look at an incident now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Route {
    /// The household's dong office (읍면동 주민센터), during office hours.
    DongOffice,
    /// The night/holiday control center (관제센터), for households that consented.
    ControlCenter,
    /// Held for the dong office's next opening (no consent outside office hours).
    Held { until: Ts },
    /// A device fault that is not (yet) a welfare risk.
    Maintenance,
    /// A problem of the platform itself.
    Sre,
}

impl Route {
    /// Words for a person reading a log or a summary.
    pub fn describe(&self) -> String {
        match self {
            Route::DongOffice => "dong office".into(),
            Route::ControlCenter => "control center".into(),
            Route::Held { until } => format!("held until {until}"),
            Route::Maintenance => "maintenance".into(),
            Route::Sre => "SRE".into(),
        }
    }
}

/// Display names: the wire enums' values without their prefixes.
macro_rules! named {
    ($t:ident { $($v:ident => $n:literal),* $(,)? }) => {
        impl Named for $t {
            const ALL: &'static [Self] = &[$($t::$v),*];
            fn name(self) -> &'static str {
                match self { $($t::$v => $n),* }
            }
        }
    };
}

named!(IncidentKind {
    Inactivity => "INACTIVITY",
    DeviceOffline => "DEVICE_OFFLINE",
    AreaOutage => "AREA_OUTAGE",
    PipelineStall => "PIPELINE_STALL",
});

named!(ReasonCode {
    NoPowerOrLightChange => "NO_POWER_OR_LIGHT_CHANGE",
    NoPowerChange => "NO_POWER_CHANGE",
    NoLightChange => "NO_LIGHT_CHANGE",
    NoReadings => "NO_READINGS",
    AreaSilent => "AREA_SILENT",
    PipelineStalled => "PIPELINE_STALLED",
    RoutineBreak => "ROUTINE_BREAK",
});

named!(Stage {
    Normal => "NORMAL",
    Attention => "ATTENTION",
    Caution => "CAUTION",
    Danger => "DANGER",
});

named!(Outcome {
    ReachedByPhone => "REACHED_BY_PHONE",
    NoAnswer => "NO_ANSWER",
    VisitedSafe => "VISITED_SAFE",
    EmergencyDispatched => "EMERGENCY_DISPATCHED",
    DoorOpened => "DOOR_OPENED",
    Hospitalised => "HOSPITALISED",
    Deceased => "DECEASED",
    DeviceFault => "DEVICE_FAULT",
    FalseAlarm => "FALSE_ALARM",
    Recovered => "RECOVERED",
});
