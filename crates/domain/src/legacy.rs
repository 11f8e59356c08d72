//! Layouts of earlier snapshot formats, kept so that a monitor restores the
//! snapshots its predecessor wrote (postcard is not self-describing: a field
//! added anywhere changes the layout). Each old type converts into today's;
//! fields it did not have take their defaults.
//!
//! Format 3 and before (until issue 18): a household configuration without
//! [`Learning`], a reason without routine evidence.

use crate::config::{Absence, ActivityRule, HouseholdConfig, Learning, NoiseFloors};
use crate::config::{SleepWindow, Thresholds};
use crate::ids::{DeviceId, DongCode, HouseholdId, MunicipalityCode};
use crate::incident::{EventType, HouseholdEvent, IncidentKind, Reason, ReasonCode, Stage};
use crate::time::Ts;
use serde::Deserialize;
use smallvec::SmallVec;

/// [`HouseholdConfig`] before [`Learning`].
#[derive(Deserialize)]
pub struct HouseholdConfigV3 {
    household_id: HouseholdId,
    municipality: MunicipalityCode,
    dong: DongCode,
    devices: SmallVec<[DeviceId; 1]>,
    thresholds: Thresholds,
    rule: ActivityRule,
    noise: NoiseFloors,
    offline_after_minutes: u32,
    night_holiday_consent: bool,
    absences: Vec<Absence>,
    sleep_window: Option<SleepWindow>,
    version: u64,
    building_id: Option<Box<str>>,
    registered_at: Ts,
}

impl From<HouseholdConfigV3> for HouseholdConfig {
    fn from(c: HouseholdConfigV3) -> Self {
        HouseholdConfig {
            household_id: c.household_id,
            municipality: c.municipality,
            dong: c.dong,
            devices: c.devices,
            thresholds: c.thresholds,
            rule: c.rule,
            noise: c.noise,
            offline_after_minutes: c.offline_after_minutes,
            night_holiday_consent: c.night_holiday_consent,
            absences: c.absences,
            sleep_window: c.sleep_window,
            learning: Learning::default(),
            version: c.version,
            building_id: c.building_id,
            registered_at: c.registered_at,
        }
    }
}

/// [`Reason`] before routine evidence.
#[derive(Deserialize)]
struct ReasonV3 {
    code: ReasonCode,
    rule: ActivityRule,
    quiet_since: Ts,
    threshold_minutes: u32,
    last_power_change: Ts,
    last_light_change: Ts,
    last_reading: Ts,
    deferred_by_sleep_window: bool,
}

/// [`HouseholdEvent`] whose reason had no routine evidence.
#[derive(Deserialize)]
pub struct HouseholdEventV3 {
    kind: IncidentKind,
    event: EventType,
    stage: Stage,
    episode_start: Ts,
    due_at: Ts,
    reason: ReasonV3,
}

impl From<HouseholdEventV3> for HouseholdEvent {
    fn from(e: HouseholdEventV3) -> Self {
        let r = e.reason;
        HouseholdEvent {
            kind: e.kind,
            event: e.event,
            stage: e.stage,
            episode_start: e.episode_start,
            due_at: e.due_at,
            reason: Reason {
                code: r.code,
                rule: r.rule,
                quiet_since: r.quiet_since,
                threshold_minutes: r.threshold_minutes,
                last_power_change: r.last_power_change,
                last_light_change: r.last_light_change,
                last_reading: r.last_reading,
                deferred_by_sleep_window: r.deferred_by_sleep_window,
                routine: None,
            },
        }
    }
}
