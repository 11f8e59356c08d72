//! The ground truth of a simulated run, and the check of the platform's
//! incident events against it — one check for `dolbom standalone` and the
//! load tests' scenarios alike.
//!
//! A run writes a [`GroundTruth`] ([`crate::Town::ground_truth`], plus what
//! the load tests' plug simulator adds: blackouts, stalls): who went quiet,
//! offline or into hospital, from when, the moment their quiet clock started
//! as the plugs' own readings show it, and so every stage deadline; which
//! households a blackout darkened; when the pipeline was stalled. A runner
//! records every incident event the platform published as a [`SeenEvent`]
//! (with the wall-clock detection latency where it can tell), and
//! [`check`] compares: every expected stage exactly once, with its deadline
//! within a tolerance; nothing for active households; blackouts as area
//! incidents only; stalls as stall incidents. Pure code, no I/O.

use dolbom_domain::{HouseholdConfig, Ts, MINUTE_MS};
use dolbom_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

/// What a scripted household did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScriptKind {
    /// All activity stopped (the plugs kept reporting).
    Quiet,
    /// The plug stopped reporting.
    Offline,
    /// Away during a registered absence: nothing may be raised.
    Hospital,
}

/// One scripted household, with the deadlines the platform must meet.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScriptedHousehold {
    pub household: String,
    pub kind: ScriptKind,
    pub from_ms: i64,
    /// Quiet: activity resumes; offline: readings resume; hospital: the
    /// absence ends.
    pub until_ms: Option<i64>,
    /// Observation time of the last reading showing a change before the
    /// script began: the quiet clock's start.
    pub quiet_since_ms: Option<i64>,
    /// Observation time of the last reading before the script began.
    pub last_reading_ms: Option<i64>,
    /// Observation time of the first change after the script began.
    pub resumed_at_ms: Option<i64>,
    /// ATTENTION, CAUTION and DANGER deadlines from `quiet_since_ms` (the
    /// ATTENTION one deferred by the household's sleep window).
    pub deadlines_ms: [i64; 3],
    /// Offline: when the DEVICE_OFFLINE incident falls due.
    pub offline_due_ms: Option<i64>,
}

/// A dong whose plugs all went silent for a while (power or network cut).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Blackout {
    pub dong: String,
    pub from_ms: i64,
    pub until_ms: i64,
    pub households: Vec<String>,
}

/// Which clock a stall window is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StallClock {
    /// Simulated time (the in-process runs give the shards simulated wall time).
    Simulated,
    /// Real wall-clock milliseconds since the Unix epoch (runs over Kafka).
    Wall,
}

/// A window in which the pipeline delivered nothing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stall {
    pub clock: StallClock,
    pub from_ms: i64,
    pub until_ms: i64,
    /// Deadlines in `[from, until + excused_after_ms)` (simulated time) are
    /// raised when the data is back, not on time: their latency is not judged.
    pub sim_from_ms: i64,
    pub sim_until_ms: i64,
}

/// Everything a run must be checked against.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GroundTruth {
    pub start_ms: i64,
    pub end_ms: i64,
    pub households: usize,
    pub seed: u64,
    pub scripted: Vec<ScriptedHousehold>,
    pub blackouts: Vec<Blackout>,
    pub stalls: Vec<Stall>,
}

/// One incident event as a runner saw it come out of the platform.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeenEvent {
    pub event_id: String,
    pub incident_id: String,
    pub household_id: String,
    pub dong: String,
    pub kind: i32,
    pub event_type: i32,
    pub stage: i32,
    pub due_at_ms: i64,
    /// Wall-clock seconds from when the data that carried event time past
    /// the deadline entered the pipeline to when the event came out.
    pub latency_s: Option<f64>,
    /// Wall-clock seconds since the run began, when it came out.
    pub at_s: f64,
}

/// An event's `due_at` in milliseconds since the epoch (0 when unset).
pub fn due_ms(ev: &pb::IncidentEvent) -> i64 {
    ev.due_at
        .as_ref()
        .map(|t| dolbom_domain::convert::ts(t).millis())
        .unwrap_or_default()
}

/// ATTENTION, CAUTION and DANGER deadlines for a quiet period from `q`, as
/// the design states them: `q + threshold`, ATTENTION deferred to the end of
/// the sleep window it falls in, but never past CAUTION.
pub fn stage_deadlines(cfg: &HouseholdConfig, q: Ts) -> [i64; 3] {
    let th = &cfg.thresholds;
    let caution = q.plus_ms(th.caution_minutes as i64 * MINUTE_MS);
    let mut attention = q.plus_ms(th.attention_minutes as i64 * MINUTE_MS);
    if let Some(end) = cfg.sleep_window.and_then(|w| w.end_after(attention)) {
        attention = end.min(caution);
    }
    let danger = q.plus_ms(th.danger_minutes as i64 * MINUTE_MS);
    [attention.millis(), caution.millis(), danger.millis()]
}

impl SeenEvent {
    pub fn from_wire(ev: &pb::IncidentEvent, latency_s: Option<f64>, at_s: f64) -> Self {
        SeenEvent {
            event_id: ev.event_id.clone(),
            incident_id: ev.incident_id.clone(),
            household_id: ev.household_id.clone(),
            dong: if ev.area_id.is_empty() {
                ev.dong_code.clone()
            } else {
                ev.area_id.clone()
            },
            kind: ev.kind,
            event_type: ev.r#type,
            stage: ev.stage,
            due_at_ms: due_ms(ev),
            latency_s,
            at_s,
        }
    }

    fn raises(&self) -> bool {
        self.event_type == pb::IncidentEventType::Opened as i32
            || self.event_type == pb::IncidentEventType::StageRaised as i32
    }

    fn is_household(&self) -> bool {
        self.kind == pb::IncidentKind::Inactivity as i32
            || self.kind == pb::IncidentKind::DeviceOffline as i32
    }
}

/// How strictly to judge.
#[derive(Clone, Copy, Debug)]
pub struct CheckOptions {
    /// A deadline this close to the end of the run or to the household's
    /// recovery is not judged either way (it may or may not have fired).
    pub margin_ms: i64,
    /// A raised stage's `due_at` must be within this of the true deadline.
    pub due_tolerance_ms: i64,
    /// Detection latency above this (wall clock) counts as late.
    pub latency_limit_s: f64,
    /// After a stall, deadlines up to this much later are excused from the
    /// latency check (the platform waits for every plug to report again).
    pub stall_grace_ms: i64,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            margin_ms: 2 * 60_000,
            due_tolerance_ms: 1000,
            latency_limit_s: 1.0,
            stall_grace_ms: 10 * 60_000,
        }
    }
}

/// The outcome of [`check`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Stage events (and device-offline openings) the truth requires.
    pub expected: usize,
    /// Of those, raised exactly once with the right deadline.
    pub matched: usize,
    pub missed: Vec<String>,
    /// Required events raised more than once (distinct event ids).
    pub duplicated: Vec<String>,
    /// Raised with a `due_at` off by more than the tolerance.
    pub wrong_due: Vec<String>,
    /// Raised later than the latency limit (wall clock).
    pub late: Vec<String>,
    /// Incidents nobody should have got: one entry per incident id.
    pub false_incidents: Vec<String>,
    /// The same event id published twice for a household incident.
    pub duplicate_event_ids: usize,
    /// Distinct AREA_OUTAGE incidents, and blackouts that got none.
    pub area_incidents: usize,
    pub blackouts_missed: Vec<String>,
    /// Distinct PIPELINE_STALL incidents, and stalls that got none.
    pub stall_incidents: usize,
    pub stalls_missed: usize,
    /// Deadlines close to the end of the run or to a recovery, not judged.
    pub not_judged: usize,
    /// Detection latencies (s) of the matched events whose deadline was not
    /// inside a stall, sorted.
    pub latencies_s: Vec<f64>,
    /// Matched events delayed by a stall (raised when the data came back).
    pub delayed_by_stall: usize,
    /// Stages that fell due during a stall for households that came back
    /// before the platform had caught up: never raised (while the input
    /// lags, firing stays frozen; by the time it judges the deadline the
    /// household's own readings show it back). Reported, not failed.
    pub lost_in_stall: Vec<String>,
}

impl Verdict {
    /// Nothing missed, invented, duplicated, off its deadline or late.
    pub fn passed(&self) -> bool {
        self.correct() && self.late.is_empty()
    }

    /// As [`Verdict::passed`], without the latency limit (for tests, which
    /// never judge timings).
    pub fn correct(&self) -> bool {
        self.missed.is_empty()
            && self.duplicated.is_empty()
            && self.wrong_due.is_empty()
            && self.false_incidents.is_empty()
            && self.duplicate_event_ids == 0
            && self.blackouts_missed.is_empty()
            && self.stalls_missed == 0
    }

    pub fn percentile(&self, p: f64) -> Option<f64> {
        let l = &self.latencies_s;
        (!l.is_empty()).then(|| l[((l.len() - 1) as f64 * p).round() as usize])
    }
}

const STAGES: [(pb::Stage, &str); 3] = [
    (pb::Stage::Attention, "ATTENTION"),
    (pb::Stage::Caution, "CAUTION"),
    (pb::Stage::Danger, "DANGER"),
];

/// One requirement on a household's events.
struct Want {
    label: String,
    stage: i32,
    /// `None`: any household kind.
    kind: Option<i32>,
    due_ms: i64,
}

/// Compares what the platform raised with the ground truth.
pub fn check(truth: &GroundTruth, seen: &[SeenEvent], o: &CheckOptions) -> Verdict {
    let mut v = Verdict::default();
    let end = truth.end_ms;
    // Distinct events; household event ids must be unique (area events are
    // published by every shard hosting part of the area, same id).
    let mut ids = HashSet::new();
    let mut by_household: BTreeMap<&str, Vec<&SeenEvent>> = BTreeMap::new();
    let mut areas: BTreeMap<&str, &SeenEvent> = BTreeMap::new();
    let mut stalls: BTreeMap<&str, &SeenEvent> = BTreeMap::new();
    for e in seen {
        let fresh = ids.insert(e.event_id.as_str());
        if e.is_household() {
            if !fresh {
                v.duplicate_event_ids += 1;
                continue;
            }
            by_household.entry(&e.household_id).or_default().push(e);
        } else if fresh && e.event_type == pb::IncidentEventType::Opened as i32 {
            if e.kind == pb::IncidentKind::AreaOutage as i32 {
                areas.insert(&e.incident_id, e);
            } else if e.kind == pb::IncidentKind::PipelineStall as i32 {
                stalls.insert(&e.incident_id, e);
            }
        }
    }

    // Areas: every blackout gets one; none outside a blackout.
    v.area_incidents = areas.len();
    for b in &truth.blackouts {
        let hit = areas.values().any(|e| {
            e.dong == b.dong && e.due_at_ms >= b.from_ms && e.due_at_ms <= b.until_ms + o.margin_ms
        });
        if !hit {
            v.blackouts_missed
                .push(format!("{} {}..{}", b.dong, b.from_ms, b.until_ms));
        }
    }
    for (id, e) in &areas {
        let explained = truth.blackouts.iter().any(|b| {
            e.dong == b.dong && e.due_at_ms >= b.from_ms && e.due_at_ms <= b.until_ms + o.margin_ms
        });
        if !explained {
            v.false_incidents.push(id.to_string());
        }
    }
    // Stalls: every stall window gets one; none outside one.
    v.stall_incidents = stalls.len();
    let in_stall = |e: &SeenEvent| {
        truth
            .stalls
            .iter()
            .any(|s| e.due_at_ms >= s.from_ms && e.due_at_ms <= s.until_ms + o.margin_ms)
    };
    for s in &truth.stalls {
        if !stalls
            .values()
            .any(|e| e.due_at_ms >= s.from_ms && e.due_at_ms <= s.until_ms + o.margin_ms)
        {
            v.stalls_missed += 1;
        }
    }
    for (id, e) in &stalls {
        if !in_stall(e) {
            v.false_incidents.push(id.to_string());
        }
    }
    let excused = |due: i64| {
        truth
            .stalls
            .iter()
            .any(|s| due >= s.sim_from_ms && due < s.sim_until_ms + o.stall_grace_ms)
    };
    // Both the deadline and the household's return inside one stall.
    let lost = |due: i64, back: i64| {
        truth.stalls.iter().any(|s| {
            due >= s.sim_from_ms
                && due < s.sim_until_ms + o.stall_grace_ms
                && back < s.sim_until_ms + o.stall_grace_ms
        })
    };

    // Households.
    let scripted: BTreeMap<&str, &ScriptedHousehold> = truth
        .scripted
        .iter()
        .map(|s| (s.household.as_str(), s))
        .collect();
    let none = Vec::new();
    for (hh, events) in &by_household {
        if !scripted.contains_key(hh) {
            let incidents: HashSet<&str> = events.iter().map(|e| e.incident_id.as_str()).collect();
            v.false_incidents
                .extend(incidents.into_iter().map(str::to_string));
        }
    }
    for s in &truth.scripted {
        let events = by_household.get(s.household.as_str()).unwrap_or(&none);
        let mut wants = Vec::new();
        // Up to when the scripted episode may raise. What is raised after
        // it (a quiet spell once the household is back, a plug found quiet
        // when it comes back online) is another episode, not judged here.
        let horizon = match s.kind {
            ScriptKind::Hospital => {
                let incidents: HashSet<&str> =
                    events.iter().map(|e| e.incident_id.as_str()).collect();
                v.false_incidents
                    .extend(incidents.into_iter().map(|i| format!("{i} (in hospital)")));
                continue;
            }
            ScriptKind::Quiet => s.resumed_at_ms.unwrap_or(i64::MAX).min(end),
            ScriptKind::Offline => s.until_ms.unwrap_or(i64::MAX).min(end),
        };
        let judged_until = horizon.saturating_add(o.margin_ms);
        let attention_due = s.deadlines_ms[0];
        if let (ScriptKind::Offline, Some(due)) = (s.kind, s.offline_due_ms) {
            // An inactivity incident already open is never replaced by an
            // offline one.
            if due < attention_due {
                wants.push(Want {
                    label: "DEVICE_OFFLINE".into(),
                    stage: pb::Stage::Normal as i32,
                    kind: Some(pb::IncidentKind::DeviceOffline as i32),
                    due_ms: due,
                });
            }
        }
        for (k, (stage, name)) in STAGES.iter().enumerate() {
            wants.push(Want {
                label: name.to_string(),
                stage: *stage as i32,
                kind: (s.kind == ScriptKind::Quiet).then_some(pb::IncidentKind::Inactivity as i32),
                due_ms: s.deadlines_ms[k],
            });
        }
        let mut used: HashSet<&str> = HashSet::new();
        for w in &wants {
            let of_want = |e: &&&SeenEvent| {
                e.raises() && e.stage == w.stage && w.kind.is_none_or(|k| e.kind == k)
            };
            let matching: Vec<&&SeenEvent> = events
                .iter()
                .filter(of_want)
                .filter(|e| e.due_at_ms < judged_until)
                .collect();
            used.extend(matching.iter().map(|e| e.event_id.as_str()));
            let name = format!("{} {}", s.household, w.label);
            let close = (w.due_ms - horizon).abs() < o.margin_ms || w.due_ms > end - o.margin_ms;
            if close {
                v.not_judged += 1;
                continue;
            }
            if w.due_ms > horizon {
                // Must not have been raised (the household was back).
                let raised = events
                    .iter()
                    .filter(of_want)
                    .filter(|e| (e.due_at_ms - w.due_ms).abs() <= o.due_tolerance_ms);
                for e in raised {
                    v.false_incidents
                        .push(format!("{} ({} after recovery)", e.incident_id, w.label));
                }
                continue;
            }
            v.expected += 1;
            match matching.as_slice() {
                [] if lost(w.due_ms, horizon) => v.lost_in_stall.push(name),
                [] => v.missed.push(name),
                [e] => {
                    if (e.due_at_ms - w.due_ms).abs() > o.due_tolerance_ms {
                        v.wrong_due.push(format!(
                            "{name}: due {} vs {} ({} ms off)",
                            e.due_at_ms,
                            w.due_ms,
                            e.due_at_ms - w.due_ms
                        ));
                        continue;
                    }
                    v.matched += 1;
                    if excused(w.due_ms) {
                        v.delayed_by_stall += 1;
                    } else if let Some(l) = e.latency_s {
                        if l > o.latency_limit_s {
                            v.late.push(format!("{name}: {l:.3} s"));
                        }
                        v.latencies_s.push(l);
                    }
                }
                _ => v.duplicated.push(format!("{name} ×{}", matching.len())),
            }
        }
        // Anything else raised for this household before it was back.
        for e in events.iter().filter(|e| e.raises()) {
            if !used.contains(e.event_id.as_str()) && e.due_at_ms < judged_until {
                v.false_incidents
                    .push(format!("{} (unexpected)", e.incident_id));
            }
        }
    }
    v.latencies_s.sort_by(f64::total_cmp);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    fn truth() -> GroundTruth {
        GroundTruth {
            start_ms: 0,
            end_ms: 72 * H,
            households: 3,
            seed: 1,
            scripted: vec![ScriptedHousehold {
                household: "hh-1".into(),
                kind: ScriptKind::Quiet,
                from_ms: 2 * H,
                until_ms: None,
                quiet_since_ms: Some(H),
                last_reading_ms: Some(2 * H),
                resumed_at_ms: None,
                deadlines_ms: [13 * H, 25 * H, 37 * H],
                offline_due_ms: None,
            }],
            blackouts: vec![Blackout {
                dong: "d1".into(),
                from_ms: 40 * H,
                until_ms: 42 * H,
                households: vec!["hh-2".into()],
            }],
            stalls: vec![],
        }
    }

    fn ev(
        hh: &str,
        kind: pb::IncidentKind,
        ty: pb::IncidentEventType,
        stage: pb::Stage,
        due: i64,
    ) -> SeenEvent {
        SeenEvent {
            event_id: format!("{hh}/{}/{}/{}", kind as i32, ty as i32, stage as i32),
            incident_id: format!("{hh}/{}", kind as i32),
            household_id: hh.into(),
            dong: "d1".into(),
            kind: kind as i32,
            event_type: ty as i32,
            stage: stage as i32,
            due_at_ms: due,
            latency_s: Some(0.1),
            at_s: 0.0,
        }
    }

    fn good() -> Vec<SeenEvent> {
        use pb::IncidentEventType::*;
        use pb::IncidentKind::*;
        vec![
            ev("hh-1", Inactivity, Opened, pb::Stage::Attention, 13 * H),
            ev("hh-1", Inactivity, StageRaised, pb::Stage::Caution, 25 * H),
            ev(
                "hh-1",
                Inactivity,
                StageRaised,
                pb::Stage::Danger,
                37 * H + 300,
            ),
            ev("", AreaOutage, Opened, pb::Stage::Normal, 40 * H + 60_000),
        ]
    }

    #[test]
    fn a_correct_run_passes() {
        let v = check(&truth(), &good(), &CheckOptions::default());
        assert!(v.passed(), "{v:?}");
        assert_eq!((v.expected, v.matched, v.area_incidents), (3, 3, 1));
        assert_eq!(v.latencies_s.len(), 3);
    }

    #[test]
    fn a_missing_stage_is_missed() {
        let mut e = good();
        e.remove(1);
        let v = check(&truth(), &e, &CheckOptions::default());
        assert_eq!(v.missed, vec!["hh-1 CAUTION".to_string()]);
        assert!(!v.passed());
    }

    #[test]
    fn a_wrong_deadline_a_repeat_and_a_late_event_are_caught() {
        let mut e = good();
        e[0].due_at_ms += 5_000;
        let mut again = e[1].clone();
        again.event_id.push_str("/again");
        e.push(again);
        e[2].latency_s = Some(2.5);
        let v = check(&truth(), &e, &CheckOptions::default());
        assert_eq!(v.wrong_due.len(), 1);
        assert_eq!(v.duplicated.len(), 1);
        assert_eq!(v.late.len(), 1);
        assert!(!v.correct());
    }

    #[test]
    fn incidents_for_active_or_blacked_out_households_are_false() {
        use pb::IncidentEventType::*;
        use pb::IncidentKind::*;
        let mut e = good();
        e.push(ev("hh-0", Inactivity, Opened, pb::Stage::Attention, 20 * H));
        e.push(ev("hh-2", DeviceOffline, Opened, pb::Stage::Normal, 40 * H));
        let v = check(&truth(), &e, &CheckOptions::default());
        assert_eq!(v.false_incidents.len(), 2);
        let mut dup = good();
        dup.push(dup[0].clone());
        assert_eq!(
            check(&truth(), &dup, &CheckOptions::default()).duplicate_event_ids,
            1
        );
    }

    #[test]
    fn a_blackout_without_an_area_incident_and_a_missing_stall_fail() {
        let mut t = truth();
        t.stalls.push(Stall {
            clock: StallClock::Simulated,
            from_ms: 50 * H,
            until_ms: 51 * H,
            sim_from_ms: 50 * H,
            sim_until_ms: 51 * H,
        });
        let mut e = good();
        e.pop();
        let v = check(&t, &e, &CheckOptions::default());
        assert_eq!(v.blackouts_missed.len(), 1);
        assert_eq!(v.stalls_missed, 1);
    }

    #[test]
    fn stages_after_recovery_are_false_and_near_ones_not_judged() {
        let mut t = truth();
        t.scripted[0].resumed_at_ms = Some(25 * H + 30_000);
        let v = check(&t, &good(), &CheckOptions::default());
        // CAUTION within the margin of the recovery: not judged; DANGER after it: false.
        assert_eq!(v.not_judged, 1);
        assert_eq!(v.false_incidents.len(), 1, "{v:?}");
        assert_eq!(v.expected, 1);
    }

    #[test]
    fn a_new_quiet_spell_after_the_recovery_is_not_judged() {
        use pb::IncidentEventType::*;
        use pb::IncidentKind::*;
        let mut t = truth();
        t.scripted[0].resumed_at_ms = Some(30 * H);
        let mut e = good();
        e.remove(2); // DANGER was never due: the household was back at 30 h.
        let mut later = ev("hh-1", Inactivity, Opened, pb::Stage::Attention, 50 * H);
        later.event_id.push_str("/later");
        later.incident_id.push_str("/later");
        e.push(later);
        let v = check(&t, &e, &CheckOptions::default());
        assert!(v.passed(), "{v:?}");
        assert_eq!(v.expected, 2);
    }
}
