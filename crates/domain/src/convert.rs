//! The edge between the wire protocol and the domain. Wire data is validated
//! here once; errors name the wire field.

use crate::config::{
    Absence, AbsenceKind, ActivityRule, ConfigError, HouseholdConfig, Learning, NoiseFloors,
    RoutineSensitivity, SleepWindow, Thresholds, DEFAULT_OFFLINE_AFTER_MINUTES,
};
use crate::ids::{DeviceId, DongCode, HouseholdId, IncidentId, MunicipalityCode};
use crate::incident::{
    EventType, HouseholdEvent, IncidentKind, Outcome, Reason, ReasonCode, Route, RoutineEvidence,
    Stage, SuppressionCause,
};
use crate::time::Ts;
use dolbom_proto::prost_types::Timestamp;
use dolbom_proto::v1 as pb;

/// `Ts` → protobuf `Timestamp`.
pub fn timestamp(t: Ts) -> Timestamp {
    let ms = t.millis();
    Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// protobuf `Timestamp` → `Ts` (sub-millisecond precision is dropped).
pub fn ts(t: &Timestamp) -> Ts {
    Ts(t.seconds
        .saturating_mul(1000)
        .saturating_add((t.nanos as i64) / 1_000_000))
}

fn required_ts(t: &Option<Timestamp>, field: &str) -> Result<Ts, ConfigError> {
    t.as_ref()
        .map(ts)
        .ok_or_else(|| ConfigError::new(field, "is required"))
}

impl TryFrom<&pb::HouseholdConfig> for HouseholdConfig {
    type Error = ConfigError;

    fn try_from(p: &pb::HouseholdConfig) -> Result<Self, ConfigError> {
        let household_id =
            HouseholdId::new(&p.household_id).map_err(|e| ConfigError::new("household_id", e))?;
        let municipality = MunicipalityCode::new(&p.municipality_code)
            .map_err(|e| ConfigError::new("municipality_code", e))?;
        let dong = DongCode::new(&p.dong_code, municipality)
            .map_err(|e| ConfigError::new("dong_code", e))?;
        let devices = p
            .device_ids
            .iter()
            .enumerate()
            .map(|(i, d)| {
                DeviceId::new(d).map_err(|e| ConfigError::new(format!("device_ids[{i}]"), e))
            })
            .collect::<Result<_, _>>()?;
        let thresholds = match &p.thresholds {
            None => Thresholds::default(),
            Some(t) => Thresholds {
                attention_minutes: t.attention_minutes,
                caution_minutes: t.caution_minutes,
                danger_minutes: t.danger_minutes,
            },
        };
        let rule = match pb::ActivityRule::try_from(p.activity_rule) {
            Ok(pb::ActivityRule::Unspecified) | Ok(pb::ActivityRule::PowerOrLight) => {
                ActivityRule::PowerOrLight
            }
            Ok(pb::ActivityRule::PowerAndLight) => ActivityRule::PowerAndLight,
            Ok(pb::ActivityRule::PowerOnly) => ActivityRule::PowerOnly,
            Ok(pb::ActivityRule::LightOnly) => ActivityRule::LightOnly,
            Err(_) => {
                return Err(ConfigError::new(
                    "activity_rule",
                    format!("unknown value {}", p.activity_rule),
                ))
            }
        };
        let noise = match &p.noise_floors {
            None => NoiseFloors::default(),
            Some(n) => NoiseFloors {
                watts: n.watts as f32,
                lux: n.lux as f32,
            },
        };
        let mut absences = Vec::with_capacity(p.absences.len());
        for (i, a) in p.absences.iter().enumerate() {
            let kind = match pb::AbsenceKind::try_from(a.kind) {
                Ok(pb::AbsenceKind::Hospital) => AbsenceKind::Hospital,
                Ok(pb::AbsenceKind::Travel) => AbsenceKind::Travel,
                Ok(pb::AbsenceKind::Other) | Ok(pb::AbsenceKind::Unspecified) => AbsenceKind::Other,
                Err(_) => {
                    return Err(ConfigError::new(
                        format!("absences[{i}].kind"),
                        format!("unknown value {}", a.kind),
                    ))
                }
            };
            absences.push(Absence {
                kind,
                starts_at: required_ts(&a.starts_at, &format!("absences[{i}].starts_at"))?,
                ends_at: required_ts(&a.ends_at, &format!("absences[{i}].ends_at"))?,
            });
        }
        // Order is not part of the contract on the wire; the engine wants it sorted.
        absences.sort_by_key(|a| (a.starts_at, a.ends_at));
        let sleep_window = match &p.sleep_window {
            None => None,
            Some(w) => Some(SleepWindow {
                start_minute: u16::try_from(w.start_minute).map_err(|_| {
                    ConfigError::new("sleep_window.start_minute", "must be below 1440")
                })?,
                end_minute: u16::try_from(w.end_minute).map_err(|_| {
                    ConfigError::new("sleep_window.end_minute", "must be below 1440")
                })?,
            }),
        };
        let learning = match &p.learning {
            None => Learning::default(),
            Some(l) => Learning {
                routine: match pb::RoutineSensitivity::try_from(l.routine) {
                    Ok(pb::RoutineSensitivity::Unspecified)
                    | Ok(pb::RoutineSensitivity::Normal) => RoutineSensitivity::Normal,
                    Ok(pb::RoutineSensitivity::Off) => RoutineSensitivity::Off,
                    Ok(pb::RoutineSensitivity::Low) => RoutineSensitivity::Low,
                    Ok(pb::RoutineSensitivity::High) => RoutineSensitivity::High,
                    Err(_) => {
                        return Err(ConfigError::new(
                            "learning.routine",
                            format!("unknown value {}", l.routine),
                        ))
                    }
                },
                recognise_automatic_loads: !l.automatic_loads_are_activity,
                defer_through_usual_quiet: l.defer_attention_through_usual_quiet,
            },
        };
        let cfg = HouseholdConfig {
            household_id,
            municipality,
            dong,
            devices,
            thresholds,
            rule,
            noise,
            offline_after_minutes: match p.offline_after_minutes {
                0 => DEFAULT_OFFLINE_AFTER_MINUTES,
                m => m,
            },
            night_holiday_consent: p.night_holiday_consent,
            absences,
            sleep_window,
            learning,
            version: p.version,
            building_id: (!p.building_id.is_empty()).then(|| p.building_id.as_str().into()),
            registered_at: required_ts(&p.registered_at, "registered_at")?,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

impl From<&HouseholdConfig> for pb::HouseholdConfig {
    fn from(c: &HouseholdConfig) -> Self {
        pb::HouseholdConfig {
            household_id: c.household_id.to_string(),
            municipality_code: c.municipality.to_string(),
            dong_code: c.dong.to_string(),
            device_ids: c.devices.iter().map(|d| d.to_string()).collect(),
            thresholds: Some(pb::StageThresholds {
                attention_minutes: c.thresholds.attention_minutes,
                caution_minutes: c.thresholds.caution_minutes,
                danger_minutes: c.thresholds.danger_minutes,
            }),
            activity_rule: rule(c.rule) as i32,
            noise_floors: Some(pb::NoiseFloors {
                watts: c.noise.watts as f64,
                lux: c.noise.lux as f64,
            }),
            offline_after_minutes: c.offline_after_minutes,
            night_holiday_consent: c.night_holiday_consent,
            absences: c
                .absences
                .iter()
                .map(|a| pb::Absence {
                    kind: match a.kind {
                        AbsenceKind::Hospital => pb::AbsenceKind::Hospital,
                        AbsenceKind::Travel => pb::AbsenceKind::Travel,
                        AbsenceKind::Other => pb::AbsenceKind::Other,
                    } as i32,
                    starts_at: Some(timestamp(a.starts_at)),
                    ends_at: Some(timestamp(a.ends_at)),
                })
                .collect(),
            sleep_window: c.sleep_window.map(|w| pb::SleepWindow {
                start_minute: w.start_minute as u32,
                end_minute: w.end_minute as u32,
            }),
            learning: Some(learning(&c.learning)),
            version: c.version,
            building_id: c.building_id.as_deref().unwrap_or_default().to_string(),
            registered_at: Some(timestamp(c.registered_at)),
        }
    }
}

/// Learned detection settings on the wire.
pub fn learning(l: &Learning) -> pb::LearnedDetection {
    pb::LearnedDetection {
        routine: match l.routine {
            RoutineSensitivity::Off => pb::RoutineSensitivity::Off,
            RoutineSensitivity::Low => pb::RoutineSensitivity::Low,
            RoutineSensitivity::Normal => pb::RoutineSensitivity::Normal,
            RoutineSensitivity::High => pb::RoutineSensitivity::High,
        } as i32,
        automatic_loads_are_activity: !l.recognise_automatic_loads,
        defer_attention_through_usual_quiet: l.defer_through_usual_quiet,
    }
}

fn rule(r: ActivityRule) -> pb::ActivityRule {
    match r {
        ActivityRule::PowerOrLight => pb::ActivityRule::PowerOrLight,
        ActivityRule::PowerAndLight => pb::ActivityRule::PowerAndLight,
        ActivityRule::PowerOnly => pb::ActivityRule::PowerOnly,
        ActivityRule::LightOnly => pb::ActivityRule::LightOnly,
    }
}

pub fn kind(k: IncidentKind) -> pb::IncidentKind {
    match k {
        IncidentKind::Inactivity => pb::IncidentKind::Inactivity,
        IncidentKind::DeviceOffline => pb::IncidentKind::DeviceOffline,
        IncidentKind::AreaOutage => pb::IncidentKind::AreaOutage,
        IncidentKind::PipelineStall => pb::IncidentKind::PipelineStall,
    }
}

pub fn stage(s: Stage) -> pb::Stage {
    match s {
        Stage::Normal => pb::Stage::Normal,
        Stage::Attention => pb::Stage::Attention,
        Stage::Caution => pb::Stage::Caution,
        Stage::Danger => pb::Stage::Danger,
    }
}

pub fn outcome(o: Outcome) -> pb::Outcome {
    match o {
        Outcome::ReachedByPhone => pb::Outcome::ReachedByPhone,
        Outcome::NoAnswer => pb::Outcome::NoAnswer,
        Outcome::VisitedSafe => pb::Outcome::VisitedSafe,
        Outcome::EmergencyDispatched => pb::Outcome::EmergencyDispatched,
        Outcome::DoorOpened => pb::Outcome::DoorOpened,
        Outcome::Hospitalised => pb::Outcome::Hospitalised,
        Outcome::Deceased => pb::Outcome::Deceased,
        Outcome::DeviceFault => pb::Outcome::DeviceFault,
        Outcome::FalseAlarm => pb::Outcome::FalseAlarm,
        Outcome::Recovered => pb::Outcome::Recovered,
    }
}

pub fn route(r: Route) -> pb::Route {
    let (target, held_until) = match r {
        Route::DongOffice => (pb::RouteTarget::DongOffice, None),
        Route::ControlCenter => (pb::RouteTarget::ControlCenter, None),
        Route::Held { until } => (pb::RouteTarget::Held, Some(timestamp(until))),
        Route::Maintenance => (pb::RouteTarget::Maintenance, None),
        Route::Sre => (pb::RouteTarget::Sre, None),
    };
    pb::Route {
        target: target as i32,
        held_until,
    }
}

pub fn reason(r: &Reason) -> pb::Reason {
    let code = match r.code {
        ReasonCode::NoPowerOrLightChange => pb::ReasonCode::NoPowerOrLightChange,
        ReasonCode::NoPowerChange => pb::ReasonCode::NoPowerChange,
        ReasonCode::NoLightChange => pb::ReasonCode::NoLightChange,
        ReasonCode::NoReadings => pb::ReasonCode::NoReadings,
        ReasonCode::AreaSilent => pb::ReasonCode::AreaSilent,
        ReasonCode::PipelineStalled => pb::ReasonCode::PipelineStalled,
        ReasonCode::RoutineBreak => pb::ReasonCode::RoutineBreak,
    };
    pb::Reason {
        code: code as i32,
        rule: rule(r.rule) as i32,
        quiet_since: Some(timestamp(r.quiet_since)),
        threshold_minutes: r.threshold_minutes,
        last_power_change: Some(timestamp(r.last_power_change)),
        last_light_change: Some(timestamp(r.last_light_change)),
        last_reading: Some(timestamp(r.last_reading)),
        deferred_by_sleep_window: r.deferred_by_sleep_window,
        routine: r.routine.map(|e| pb::RoutineEvidence {
            usual_from: Some(timestamp(e.usual_from)),
            usual_until: Some(timestamp(e.usual_until)),
            reference_days: e.reference_days.into(),
            active_days: e.active_days.into(),
            one_in_days: e.one_in_days,
        }),
    }
}

/// A wire reason code (`None` for UNSPECIFIED or an unknown value).
pub fn reason_code_from_wire(c: i32) -> Option<ReasonCode> {
    Some(match pb::ReasonCode::try_from(c).ok()? {
        pb::ReasonCode::Unspecified => return None,
        pb::ReasonCode::NoPowerOrLightChange => ReasonCode::NoPowerOrLightChange,
        pb::ReasonCode::NoPowerChange => ReasonCode::NoPowerChange,
        pb::ReasonCode::NoLightChange => ReasonCode::NoLightChange,
        pb::ReasonCode::NoReadings => ReasonCode::NoReadings,
        pb::ReasonCode::AreaSilent => ReasonCode::AreaSilent,
        pb::ReasonCode::PipelineStalled => ReasonCode::PipelineStalled,
        pb::ReasonCode::RoutineBreak => ReasonCode::RoutineBreak,
    })
}

/// The routine evidence a wire reason carries, if it is complete.
pub fn routine_from_wire(r: &pb::Reason) -> Option<RoutineEvidence> {
    let e = r.routine.as_ref()?;
    let byte = |v: u32| u8::try_from(v).ok();
    Some(RoutineEvidence {
        usual_from: ts(e.usual_from.as_ref()?),
        usual_until: ts(e.usual_until.as_ref()?),
        active_days: byte(e.active_days)?,
        reference_days: byte(e.reference_days)?,
        one_in_days: e.one_in_days,
    })
}

/// What a person reads about why a wire reason fired beyond its code:
/// today the routine-break evidence ([`RoutineEvidence::explain`]).
pub fn explanation(r: &pb::Reason) -> Option<String> {
    if r.code != pb::ReasonCode::RoutineBreak as i32 {
        return None;
    }
    let quiet_since = ts(r.quiet_since.as_ref()?);
    Some(routine_from_wire(r)?.explain(quiet_since))
}

fn event_type(e: EventType) -> (pb::IncidentEventType, pb::SuppressionCause) {
    match e {
        EventType::Opened => (
            pb::IncidentEventType::Opened,
            pb::SuppressionCause::Unspecified,
        ),
        EventType::StageRaised => (
            pb::IncidentEventType::StageRaised,
            pb::SuppressionCause::Unspecified,
        ),
        EventType::Recovered => (
            pb::IncidentEventType::Recovered,
            pb::SuppressionCause::Unspecified,
        ),
        EventType::Suppressed(c) => (
            pb::IncidentEventType::Suppressed,
            match c {
                SuppressionCause::Absence => pb::SuppressionCause::Absence,
                SuppressionCause::AreaOutage => pb::SuppressionCause::AreaOutage,
                SuppressionCause::PipelineStall => pb::SuppressionCause::PipelineStall,
            },
        ),
    }
}

// ── wire → domain ───────────────────────────────────────────────────────

/// Mains voltage in Korea, for plugs that report current only.
pub const MAINS_VOLTS: f64 = 220.0;

/// A reading's active power: `watts`, else `current_amps` × 220 V.
pub fn reading_watts(r: &pb::PlugReading) -> Option<f64> {
    r.watts.or(r.current_amps.map(|a| a * MAINS_VOLTS))
}

/// A wire `IncidentKind` (`None` for UNSPECIFIED or an unknown value).
pub fn kind_from_wire(k: i32) -> Option<IncidentKind> {
    Some(match pb::IncidentKind::try_from(k).ok()? {
        pb::IncidentKind::Inactivity => IncidentKind::Inactivity,
        pb::IncidentKind::DeviceOffline => IncidentKind::DeviceOffline,
        pb::IncidentKind::AreaOutage => IncidentKind::AreaOutage,
        pb::IncidentKind::PipelineStall => IncidentKind::PipelineStall,
        pb::IncidentKind::Unspecified => return None,
    })
}

/// A wire `Stage` (`None` for UNSPECIFIED or an unknown value).
pub fn stage_from_wire(s: i32) -> Option<Stage> {
    Some(match pb::Stage::try_from(s).ok()? {
        pb::Stage::Normal => Stage::Normal,
        pb::Stage::Attention => Stage::Attention,
        pb::Stage::Caution => Stage::Caution,
        pb::Stage::Danger => Stage::Danger,
        pb::Stage::Unspecified => return None,
    })
}

/// A wire event type with its suppression cause (`None` for the people's
/// events — ACKNOWLEDGED, RESOLVED — UNSPECIFIED or an unknown value).
pub fn event_type_from_wire(ty: i32, cause: i32) -> Option<EventType> {
    Some(match pb::IncidentEventType::try_from(ty).ok()? {
        pb::IncidentEventType::Opened => EventType::Opened,
        pb::IncidentEventType::StageRaised => EventType::StageRaised,
        pb::IncidentEventType::Recovered => EventType::Recovered,
        pb::IncidentEventType::Suppressed => {
            EventType::Suppressed(match pb::SuppressionCause::try_from(cause).ok()? {
                pb::SuppressionCause::Absence => SuppressionCause::Absence,
                pb::SuppressionCause::AreaOutage => SuppressionCause::AreaOutage,
                pb::SuppressionCause::PipelineStall => SuppressionCause::PipelineStall,
                pb::SuppressionCause::Unspecified => return None,
            })
        }
        _ => return None,
    })
}

/// A wire `Route` (`None` when its target is unspecified or unknown).
pub fn route_from_wire(r: &pb::Route) -> Option<Route> {
    Some(match pb::RouteTarget::try_from(r.target).ok()? {
        pb::RouteTarget::DongOffice => Route::DongOffice,
        pb::RouteTarget::ControlCenter => Route::ControlCenter,
        pb::RouteTarget::Held => Route::Held {
            until: r.held_until.as_ref().map(ts).unwrap_or_default(),
        },
        pb::RouteTarget::Maintenance => Route::Maintenance,
        pb::RouteTarget::Sre => Route::Sre,
        pb::RouteTarget::Unspecified => return None,
    })
}

/// A wire `Outcome` (`None` for UNSPECIFIED or an unknown value).
pub fn outcome_from_wire(o: i32) -> Option<Outcome> {
    Some(match pb::Outcome::try_from(o).ok()? {
        pb::Outcome::ReachedByPhone => Outcome::ReachedByPhone,
        pb::Outcome::NoAnswer => Outcome::NoAnswer,
        pb::Outcome::VisitedSafe => Outcome::VisitedSafe,
        pb::Outcome::EmergencyDispatched => Outcome::EmergencyDispatched,
        pb::Outcome::DoorOpened => Outcome::DoorOpened,
        pb::Outcome::Hospitalised => Outcome::Hospitalised,
        pb::Outcome::Deceased => Outcome::Deceased,
        pb::Outcome::DeviceFault => Outcome::DeviceFault,
        pb::Outcome::FalseAlarm => Outcome::FalseAlarm,
        pb::Outcome::Recovered => Outcome::Recovered,
        pb::Outcome::Unspecified => return None,
    })
}

/// The display name of a wire enum value: its proto name without the
/// enum's prefix (`STAGE_ATTENTION` → `ATTENTION`). For the enums the domain
/// models too, this is the domain type's `name()`.
pub trait WireName: Sized + TryFrom<i32> {
    fn short_name(self) -> &'static str;

    /// The name of a raw wire value, or `UNKNOWN(n)`.
    fn name_of(v: i32) -> String {
        match Self::try_from(v) {
            Ok(e) => e.short_name().to_string(),
            Err(_) => format!("UNKNOWN({v})"),
        }
    }
}

macro_rules! wire_names {
    ($($t:ty => $prefix:literal),* $(,)?) => {$(
        impl WireName for $t {
            fn short_name(self) -> &'static str {
                let n = self.as_str_name();
                n.strip_prefix($prefix).unwrap_or(n)
            }
        }
    )*};
}

wire_names!(
    pb::ReasonCode => "REASON_CODE_",
    pb::IncidentKind => "INCIDENT_KIND_",
    pb::Stage => "STAGE_",
    pb::IncidentEventType => "INCIDENT_EVENT_TYPE_",
    pb::IncidentState => "INCIDENT_STATE_",
    pb::Outcome => "OUTCOME_",
    pb::RouteTarget => "ROUTE_TARGET_",
    pb::SuppressionCause => "SUPPRESSION_CAUSE_",
);

// ── domain → wire: events ───────────────────────────────────────────────

/// The wire form of a household's event. `event_id` is deterministic
/// (incident id + type + stage), so consumers can de-duplicate replays.
pub fn incident_event(
    cfg: &HouseholdConfig,
    ev: &HouseholdEvent,
    route_to: Route,
    emitted_at: Ts,
) -> pb::IncidentEvent {
    let id = IncidentId::new(ev.kind, cfg.household_id.as_str(), ev.episode_start);
    let (ty, cause) = event_type(ev.event);
    pb::IncidentEvent {
        event_id: format!(
            "{id}/{}/{}",
            ty.as_str_name(),
            stage(ev.stage).as_str_name()
        ),
        incident_id: id.to_string(),
        household_id: cfg.household_id.to_string(),
        municipality_code: cfg.municipality.to_string(),
        dong_code: cfg.dong.to_string(),
        kind: kind(ev.kind) as i32,
        r#type: ty as i32,
        stage: stage(ev.stage) as i32,
        reason: Some(reason(&ev.reason)),
        route: Some(route(route_to)),
        episode_start: Some(timestamp(ev.episode_start)),
        due_at: Some(timestamp(ev.due_at)),
        emitted_at: Some(timestamp(emitted_at)),
        suppression_cause: cause as i32,
        outcome: pb::Outcome::Unspecified as i32,
        affected_households: 0,
        area_id: String::new(),
    }
}

/// An incident that is not about one household: an area outage (the subject
/// is the area id) or a pipeline stall (the subject is the stalled input).
#[derive(Clone, Copy, Debug)]
pub struct PlatformIncident<'a> {
    pub kind: IncidentKind,
    pub subject: &'a str,
    pub event: EventType,
    pub episode_start: Ts,
    pub due_at: Ts,
    pub emitted_at: Ts,
    pub route: Route,
    pub municipality: Option<MunicipalityCode>,
    pub dong: Option<DongCode>,
    /// Households whose own incidents this one stands for.
    pub affected_households: u32,
}

/// The wire form of a [`PlatformIncident`] event; ids are deterministic like
/// household events (`KIND:subject:episode_start`).
pub fn platform_event(p: &PlatformIncident<'_>) -> pb::IncidentEvent {
    let id = IncidentId::new(p.kind, p.subject, p.episode_start);
    let (ty, cause) = event_type(p.event);
    let code = match p.kind {
        IncidentKind::PipelineStall => ReasonCode::PipelineStalled,
        IncidentKind::AreaOutage => ReasonCode::AreaSilent,
        IncidentKind::DeviceOffline => ReasonCode::NoReadings,
        IncidentKind::Inactivity => ReasonCode::NoPowerOrLightChange,
    };
    let stage_of = Stage::Normal;
    pb::IncidentEvent {
        event_id: format!(
            "{id}/{}/{}",
            ty.as_str_name(),
            stage(stage_of).as_str_name()
        ),
        incident_id: id.to_string(),
        household_id: String::new(),
        municipality_code: p.municipality.map(|m| m.to_string()).unwrap_or_default(),
        dong_code: p.dong.map(|d| d.to_string()).unwrap_or_default(),
        kind: kind(p.kind) as i32,
        r#type: ty as i32,
        stage: stage(stage_of) as i32,
        reason: Some(reason(&Reason {
            code,
            rule: ActivityRule::PowerOrLight,
            quiet_since: p.episode_start,
            threshold_minutes: 0,
            last_power_change: p.episode_start,
            last_light_change: p.episode_start,
            last_reading: p.episode_start,
            deferred_by_sleep_window: false,
            routine: None,
        })),
        route: Some(route(p.route)),
        episode_start: Some(timestamp(p.episode_start)),
        due_at: Some(timestamp(p.due_at)),
        emitted_at: Some(timestamp(p.emitted_at)),
        suppression_cause: cause as i32,
        outcome: pb::Outcome::Unspecified as i32,
        affected_households: p.affected_households,
        area_id: if p.kind == IncidentKind::AreaOutage {
            p.subject.to_string()
        } else {
            String::new()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Named;

    fn wire() -> pb::HouseholdConfig {
        pb::HouseholdConfig {
            household_id: "hh-1".into(),
            municipality_code: "11110".into(),
            dong_code: "1111051500".into(),
            device_ids: vec!["plug-1".into()],
            registered_at: Some(timestamp(Ts(1_700_000_000_000))),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_fill_unset_fields_and_round_trip() {
        let c = HouseholdConfig::try_from(&wire()).unwrap();
        assert_eq!(c.thresholds, Thresholds::default());
        assert_eq!(c.offline_after_minutes, 30);
        let back = pb::HouseholdConfig::from(&c);
        assert_eq!(HouseholdConfig::try_from(&back).unwrap(), c);
    }

    #[test]
    fn wire_errors_name_the_field() {
        let mut w = wire();
        w.municipality_code = "123".into();
        assert_eq!(
            HouseholdConfig::try_from(&w).unwrap_err().field,
            "municipality_code"
        );
        let mut w = wire();
        w.dong_code = "2611051500".into();
        assert_eq!(
            HouseholdConfig::try_from(&w).unwrap_err().field,
            "dong_code"
        );
        let mut w = wire();
        w.thresholds = Some(pb::StageThresholds {
            attention_minutes: 600,
            caution_minutes: 500,
            danger_minutes: 900,
        });
        assert_eq!(
            HouseholdConfig::try_from(&w).unwrap_err().field,
            "thresholds.caution_minutes"
        );
        let mut w = wire();
        w.activity_rule = 99;
        assert_eq!(
            HouseholdConfig::try_from(&w).unwrap_err().field,
            "activity_rule"
        );
        let mut w = wire();
        w.device_ids.push("bad id".into());
        assert_eq!(
            HouseholdConfig::try_from(&w).unwrap_err().field,
            "device_ids[1]"
        );
        let mut w = wire();
        w.registered_at = None;
        assert_eq!(
            HouseholdConfig::try_from(&w).unwrap_err().field,
            "registered_at"
        );
    }

    #[test]
    fn enums_round_trip_and_share_their_names() {
        for k in [
            IncidentKind::Inactivity,
            IncidentKind::DeviceOffline,
            IncidentKind::AreaOutage,
            IncidentKind::PipelineStall,
        ] {
            assert_eq!(kind_from_wire(kind(k) as i32), Some(k));
            assert_eq!(kind(k).short_name(), k.name());
        }
        for s in [
            Stage::Normal,
            Stage::Attention,
            Stage::Caution,
            Stage::Danger,
        ] {
            assert_eq!(stage_from_wire(stage(s) as i32), Some(s));
            assert_eq!(stage(s).short_name(), s.name());
        }
        for e in [
            EventType::Opened,
            EventType::StageRaised,
            EventType::Recovered,
            EventType::Suppressed(SuppressionCause::Absence),
            EventType::Suppressed(SuppressionCause::AreaOutage),
            EventType::Suppressed(SuppressionCause::PipelineStall),
        ] {
            let (ty, cause) = event_type(e);
            assert_eq!(event_type_from_wire(ty as i32, cause as i32), Some(e));
            assert_eq!(ty.short_name(), e.name());
        }
        for o in [
            Outcome::ReachedByPhone,
            Outcome::NoAnswer,
            Outcome::VisitedSafe,
            Outcome::EmergencyDispatched,
            Outcome::DoorOpened,
            Outcome::Hospitalised,
            Outcome::Deceased,
            Outcome::DeviceFault,
            Outcome::FalseAlarm,
            Outcome::Recovered,
        ] {
            assert_eq!(outcome_from_wire(outcome(o) as i32), Some(o));
            assert_eq!(outcome(o).short_name(), o.name());
        }
        let held = Route::Held {
            until: Ts(1_700_000_000_000),
        };
        for r in [
            Route::DongOffice,
            Route::ControlCenter,
            held,
            Route::Maintenance,
            Route::Sre,
        ] {
            assert_eq!(route_from_wire(&route(r)), Some(r));
        }
        for &code in ReasonCode::ALL {
            let r = Reason {
                code,
                rule: ActivityRule::PowerOrLight,
                quiet_since: Ts(0),
                threshold_minutes: 0,
                last_power_change: Ts(0),
                last_light_change: Ts(0),
                last_reading: Ts(0),
                deferred_by_sleep_window: false,
                routine: None,
            };
            let wire = reason(&r).code;
            assert_eq!(reason_code_from_wire(wire), Some(code));
            let named = pb::ReasonCode::try_from(wire).unwrap().short_name();
            assert_eq!(named, code.name());
        }
        assert_eq!(reason_code_from_wire(0), None);
        assert_eq!(kind_from_wire(0), None);
        assert_eq!(stage_from_wire(99), None);
        assert_eq!(pb::IncidentState::name_of(99), "UNKNOWN(99)");
        assert_eq!(pb::IncidentState::name_of(2), "ACKNOWLEDGED");
    }

    #[test]
    fn timestamps_round_trip_including_before_epoch() {
        for ms in [0, 1, -1, 1_700_000_000_123, -86_400_001] {
            assert_eq!(ts(&timestamp(Ts(ms))), Ts(ms));
        }
    }
}
