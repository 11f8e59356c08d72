//! Engine tests: one unit test per rule, and property tests that compare the
//! engine against a ground-truth oracle (in order, with duplicates, reordered)
//! plus structural invariants under arbitrary input.

use super::*;
use dolbom_domain::config::{AbsenceKind, SleepWindow, Thresholds};
use dolbom_domain::{DeviceId, DongCode, HouseholdId, MunicipalityCode};
use proptest::prelude::*;

const MIN: i64 = MINUTE_MS;
const HOUR: i64 = 60 * MIN;

fn t0() -> Ts {
    // A Monday, local midnight in Seoul.
    Ts::parse_rfc3339("2026-03-02T00:00:00+09:00").unwrap()
}

fn cfg() -> HouseholdConfig {
    let m = MunicipalityCode::new("11110").unwrap();
    HouseholdConfig::with_defaults(
        HouseholdId::new("hh-1").unwrap(),
        DongCode::new("1111051500", m).unwrap(),
        [DeviceId::new("p1").unwrap(), DeviceId::new("p2").unwrap()],
        t0(),
    )
}

/// Drives one household like the monitor does: timers fire at
/// `next_deadline`, readings arrive at `now`.
struct Sim {
    cfg: HouseholdConfig,
    st: HouseholdState,
    now: Ts,
    out: Vec<Effect>,
    seq: u64,
}

impl Sim {
    fn new(cfg: HouseholdConfig) -> Self {
        let start = cfg.registered_at;
        Self {
            cfg,
            st: HouseholdState::new(start),
            now: start,
            out: vec![],
            seq: 0,
        }
    }

    fn advance_to(&mut self, t: Ts) {
        while let Some(d) = self.st.next_deadline(&self.cfg, self.now) {
            assert!(d > self.now, "deadline {d:?} not after now {:?}", self.now);
            if d > t {
                break;
            }
            self.now = d;
            self.st.evaluate(&self.cfg, d, &mut self.out);
        }
        self.now = self.now.max(t);
    }

    fn read(&mut self, dev: &str, t: Ts, watts: f32, lux: f32) -> ReadingOutcome {
        self.advance_to(t);
        self.seq += 1;
        let r = Reading {
            device_id: dev,
            observed_at: t,
            sequence: self.seq,
            watts: Some(watts),
            lux: Some(lux),
        };
        self.st
            .on_reading(&self.cfg, &r, self.now, &mut self.out)
            .unwrap()
    }

    /// Readings every minute from `from` (inclusive) to `to` (exclusive).
    fn steady(&mut self, from: Ts, to: Ts, watts: f32, lux: f32) {
        let mut t = from;
        while t < to {
            self.read("p1", t, watts, lux);
            t = t.plus_ms(MIN);
        }
    }

    /// Readings every minute from the start to `end` (exclusive), a person
    /// switching an appliance on and off at irregular intervals: a busy
    /// household (a load switching on a regular cycle would be recognised
    /// as automatic and not count).
    fn busy_until(&mut self, end: Ts) {
        const RUNS: [i64; 6] = [10, 3, 17, 6, 12, 25];
        let (mut t, mut run, mut left, mut on) = (self.cfg.registered_at, 0, RUNS[0], true);
        while t < end {
            self.read("p1", t, if on { 60.0 } else { 0.0 }, 100.0);
            t = t.plus_ms(MIN);
            left -= 1;
            if left == 0 {
                run = (run + 1) % RUNS.len();
                left = RUNS[run];
                on = !on;
            }
        }
    }

    fn events(&self) -> Vec<HouseholdEvent> {
        self.out
            .iter()
            .filter_map(|e| match e {
                Effect::Incident(ev) => Some(*ev),
                _ => None,
            })
            .collect()
    }

    fn summary(&self) -> Vec<(IncidentKind, EventType, Stage, i64)> {
        self.events()
            .iter()
            .map(|e| (e.kind, e.event, e.stage, e.due_at.since(t0()) / MIN))
            .collect()
    }
}

use EventType::*;
use IncidentKind::*;
use Stage::*;

#[test]
fn size_of_state() {
    let s = std::mem::size_of::<HouseholdState>();
    println!("size_of::<HouseholdState>() = {s} bytes (one plug inline)");
    println!(
        "size_of::<HouseholdConfig>() = {} bytes",
        std::mem::size_of::<HouseholdConfig>()
    );
    assert!(s <= 152, "household state grew to {s} bytes");
}

#[test]
fn a_quiet_home_climbs_every_stage_at_its_deadline() {
    let mut sim = Sim::new(cfg());
    sim.steady(t0(), t0().plus_ms(40 * HOUR), 60.0, 100.0);
    assert_eq!(
        sim.summary(),
        vec![
            (Inactivity, Opened, Attention, 12 * 60),
            (Inactivity, StageRaised, Caution, 24 * 60),
            (Inactivity, StageRaised, Danger, 36 * 60),
        ]
    );
    let evs = sim.events();
    assert!(evs.iter().all(|e| e.episode_start == t0()));
    assert_eq!(evs[1].reason.code, ReasonCode::NoPowerOrLightChange);
    assert_eq!(evs[1].reason.threshold_minutes, 24 * 60);
}

#[test]
fn activity_closes_the_incident_as_recovered() {
    let mut sim = Sim::new(cfg());
    sim.steady(t0(), t0().plus_ms(13 * HOUR), 60.0, 100.0);
    let back = t0().plus_ms(13 * HOUR);
    assert_eq!(
        sim.read("p1", back, 160.0, 100.0),
        ReadingOutcome::Fresh { activity: true }
    );
    sim.steady(back.plus_ms(MIN), back.plus_ms(11 * HOUR), 160.0, 100.0);
    assert_eq!(
        sim.summary(),
        vec![
            (Inactivity, Opened, Attention, 12 * 60),
            (Inactivity, Recovered, Attention, 13 * 60),
        ]
    );
    assert_eq!(sim.st.open_incident(), None);
}

#[test]
fn noise_and_slow_drift_are_not_activity() {
    let mut sim = Sim::new(cfg());
    let mut t = t0();
    let mut lux: f32 = 0.0;
    while t < t0().plus_ms(13 * HOUR) {
        // Daylight: +10 lux a minute (below the 15 lux floor), wobbling power.
        lux += 10.0;
        let w = 60.0 + ((t.millis() / MIN) % 3) as f32;
        sim.read("p1", t, w, lux.min(MAX_LUX));
        t = t.plus_ms(MIN);
    }
    assert_eq!(sim.summary(), vec![(Inactivity, Opened, Attention, 720)]);
}

#[test]
fn power_and_light_rule_fires_when_power_alone_is_quiet() {
    let mut c = cfg();
    c.rule = ActivityRule::PowerAndLight;
    let mut sim = Sim::new(c);
    let mut t = t0();
    let mut i = 0;
    while t < t0().plus_ms(13 * HOUR) {
        // The lights change every hour, the power never does.
        let lux = if (i / 60) % 2 == 0 { 10.0 } else { 300.0 };
        sim.read("p1", t, 60.0, lux);
        t = t.plus_ms(MIN);
        i += 1;
    }
    let evs = sim.events();
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].reason.code, ReasonCode::NoPowerChange);
    assert_eq!(evs[0].episode_start, t0());
}

#[test]
fn either_plug_shows_activity() {
    let mut sim = Sim::new(cfg());
    let mut t = t0();
    let mut i = 0;
    while t < t0().plus_ms(20 * HOUR) {
        sim.read("p1", t, 60.0, 100.0);
        // p2 (the TV) switches every three hours.
        let w = if (i / 180) % 2 == 0 { 0.0 } else { 90.0 };
        sim.read("p2", t, w, 100.0);
        t = t.plus_ms(MIN);
        i += 1;
    }
    assert_eq!(sim.summary(), vec![]);
}

#[test]
fn offline_is_a_device_fault_then_a_welfare_risk() {
    let mut sim = Sim::new(cfg());
    sim.read("p1", t0(), 60.0, 100.0);
    sim.read("p1", t0().plus_ms(MIN), 160.0, 100.0); // activity at minute 1
    sim.advance_to(t0().plus_ms(25 * HOUR));
    assert_eq!(
        sim.summary(),
        vec![
            (DeviceOffline, Opened, Normal, 31),
            (DeviceOffline, StageRaised, Attention, 12 * 60 + 1),
            (DeviceOffline, StageRaised, Caution, 24 * 60 + 1),
        ]
    );
    let evs = sim.events();
    assert_eq!(evs[0].reason.code, ReasonCode::NoReadings);
    assert_eq!(evs[0].episode_start, t0().plus_ms(MIN));
    // Readings return without activity: offline recovers, inactivity takes over
    // at the stage already reached, and no second offline incident appears.
    sim.out.clear();
    let back = t0().plus_ms(25 * HOUR);
    sim.read("p1", back, 160.0, 100.0);
    assert_eq!(
        sim.summary(),
        vec![
            (DeviceOffline, Recovered, Caution, 25 * 60),
            (Inactivity, Opened, Attention, 12 * 60 + 1),
            (Inactivity, StageRaised, Caution, 24 * 60 + 1),
        ]
    );
}

#[test]
fn offline_does_not_replace_an_open_inactivity_incident() {
    let mut sim = Sim::new(cfg());
    sim.steady(t0(), t0().plus_ms(13 * HOUR), 60.0, 100.0);
    sim.advance_to(t0().plus_ms(37 * HOUR)); // the plug goes silent too
    assert_eq!(
        sim.summary(),
        vec![
            (Inactivity, Opened, Attention, 12 * 60),
            (Inactivity, StageRaised, Caution, 24 * 60),
            (Inactivity, StageRaised, Danger, 36 * 60),
        ]
    );
}

#[test]
fn a_short_gap_in_readings_is_not_offline() {
    let mut sim = Sim::new(cfg());
    sim.read("p1", t0(), 60.0, 100.0);
    sim.read("p1", t0().plus_ms(29 * MIN), 60.0, 100.0);
    sim.read("p1", t0().plus_ms(58 * MIN), 60.0, 100.0);
    assert_eq!(sim.summary(), vec![]);
}

fn hospital(from_h: i64, to_h: i64) -> Absence {
    Absence {
        kind: AbsenceKind::Hospital,
        starts_at: t0().plus_ms(from_h * HOUR),
        ends_at: t0().plus_ms(to_h * HOUR),
    }
}

#[test]
fn an_absence_suppresses_and_the_clock_restarts_when_it_expires() {
    let mut c = cfg();
    c.absences.push(hospital(2, 30));
    let mut sim = Sim::new(c);
    sim.steady(t0(), t0().plus_ms(45 * HOUR), 60.0, 100.0);
    // Quiet from 0 h, but away 2 h..30 h: ATTENTION only at 30 h + 12 h.
    assert_eq!(
        sim.summary(),
        vec![(Inactivity, Opened, Attention, 42 * 60)]
    );
    assert_eq!(sim.events()[0].episode_start, t0().plus_ms(30 * HOUR));
}

#[test]
fn an_absence_starting_during_an_incident_suppresses_it() {
    let mut c = cfg();
    c.absences.push(hospital(14, 20));
    let mut sim = Sim::new(c);
    sim.steady(t0(), t0().plus_ms(21 * HOUR), 60.0, 100.0);
    assert_eq!(
        sim.summary(),
        vec![
            (Inactivity, Opened, Attention, 12 * 60),
            (
                Inactivity,
                Suppressed(SuppressionCause::Absence),
                Attention,
                14 * 60
            ),
        ]
    );
}

#[test]
fn activity_ends_an_absence_early() {
    let mut c = cfg();
    c.absences.push(hospital(2, 200));
    let mut sim = Sim::new(c);
    sim.steady(t0(), t0().plus_ms(5 * HOUR), 60.0, 100.0);
    let back = t0().plus_ms(5 * HOUR);
    sim.read("p1", back, 200.0, 100.0);
    assert!(sim.out.contains(&Effect::AbsenceEndedEarly {
        starts_at: t0().plus_ms(2 * HOUR),
        at: back
    }));
    sim.steady(back.plus_ms(MIN), back.plus_ms(13 * HOUR), 200.0, 100.0);
    assert_eq!(
        sim.summary(),
        vec![(Inactivity, Opened, Attention, 17 * 60)]
    );
}

#[test]
fn the_sleep_window_defers_attention_only() {
    let mut c = cfg();
    c.sleep_window = Some(SleepWindow {
        start_minute: 22 * 60,
        end_minute: 7 * 60,
    });
    let mut sim = Sim::new(c);
    // Last activity 14:00; ATTENTION would be 02:00, inside the window.
    let last = t0().plus_ms(14 * HOUR);
    sim.busy_until(last);
    sim.read("p1", last, 90.0, 100.0);
    sim.steady(last.plus_ms(MIN), last.plus_ms(40 * HOUR), 90.0, 100.0);
    assert_eq!(
        sim.summary(),
        vec![
            (Inactivity, Opened, Attention, 24 * 60 + 7 * 60),
            (Inactivity, StageRaised, Caution, 14 * 60 + 24 * 60),
            (Inactivity, StageRaised, Danger, 14 * 60 + 36 * 60),
        ]
    );
    assert!(sim.events()[0].reason.deferred_by_sleep_window);
    assert!(!sim.events()[1].reason.deferred_by_sleep_window);
}

#[test]
fn deferral_never_passes_the_caution_deadline() {
    let mut c = cfg();
    c.thresholds = Thresholds {
        attention_minutes: 120,
        caution_minutes: 180,
        danger_minutes: 600,
    };
    c.sleep_window = Some(SleepWindow {
        start_minute: 22 * 60,
        end_minute: 7 * 60,
    });
    let mut sim = Sim::new(c);
    let last = t0().plus_ms(22 * HOUR); // 22:00: ATTENTION due 00:00, CAUTION 01:00
    sim.busy_until(last);
    sim.read("p1", last, 90.0, 100.0);
    sim.steady(last.plus_ms(MIN), last.plus_ms(5 * HOUR), 90.0, 100.0);
    assert_eq!(
        sim.summary(),
        vec![
            (Inactivity, Opened, Attention, 25 * 60),
            (Inactivity, StageRaised, Caution, 25 * 60),
        ]
    );
}

#[test]
fn duplicates_late_readings_and_reboots() {
    let c = cfg();
    let mut st = HouseholdState::new(t0());
    let mut out = vec![];
    let r = |seq: u64, min: i64, w: f32| Reading {
        device_id: "p1",
        observed_at: t0().plus_ms(min * MIN),
        sequence: seq,
        watts: Some(w),
        lux: None,
    };
    let now = t0().plus_ms(10 * MIN);
    let fresh = |a| ReadingOutcome::Fresh { activity: a };
    assert_eq!(
        st.on_reading(&c, &r(1, 1, 10.0), now, &mut out),
        Ok(fresh(false))
    );
    assert_eq!(
        st.on_reading(&c, &r(3, 3, 100.0), now, &mut out),
        Ok(fresh(true))
    );
    assert_eq!(st.last_activity(c.rule), t0().plus_ms(3 * MIN));
    assert_eq!(
        st.on_reading(&c, &r(3, 3, 100.0), now, &mut out),
        Ok(ReadingOutcome::Duplicate)
    );
    // Seq 2 was never seen and matches the newest value: no new activity.
    assert_eq!(
        st.on_reading(&c, &r(2, 2, 100.0), now, &mut out),
        Ok(ReadingOutcome::Late { activity: false })
    );
    // Seq 1 again: a late duplicate, even though its value differs.
    assert_eq!(
        st.on_reading(&c, &r(1, 1, 10.0), now, &mut out),
        Ok(ReadingOutcome::Duplicate)
    );
    // The plug reboots: the counter restarts, time moves on.
    assert_eq!(
        st.on_reading(&c, &r(0, 5, 100.0), now, &mut out),
        Ok(fresh(false))
    );
    assert_eq!(
        st.on_reading(&c, &r(1, 6, 10.0), now, &mut out),
        Ok(fresh(true))
    );
    assert_eq!(st.last_activity(c.rule), t0().plus_ms(6 * MIN));
    assert!(out.is_empty());
}

#[test]
fn bad_readings_are_rejected_and_change_nothing() {
    let c = cfg();
    let mut st = HouseholdState::new(t0());
    let before = st.clone();
    let mut out = vec![];
    let mut r = Reading {
        device_id: "stranger",
        observed_at: t0(),
        sequence: 1,
        watts: Some(1.0),
        lux: None,
    };
    let e = st.on_reading(&c, &r, t0(), &mut out).unwrap_err();
    assert_eq!(e.label(), "unknown_device");
    r.device_id = "p1";
    r.observed_at = t0().plus_ms(HOUR);
    let e = st.on_reading(&c, &r, t0(), &mut out).unwrap_err();
    assert_eq!(e, ReadingError::FromTheFuture { ahead_ms: HOUR });
    r.observed_at = t0();
    r.watts = Some(f32::NAN);
    assert_eq!(
        st.on_reading(&c, &r, t0(), &mut out).unwrap_err().label(),
        "implausible_value"
    );
    r.watts = Some(-3.0);
    assert!(st.on_reading(&c, &r, t0(), &mut out).is_err());
    assert_eq!(st, before);
    assert!(out.is_empty());
}

#[test]
fn a_rule_change_after_recovery_never_reuses_the_closed_incident_id() {
    // Light never changes; power does at 13 h: under OR the incident that
    // opened at 12 h recovers.
    let mut sim = Sim::new(cfg());
    sim.steady(t0(), t0().plus_ms(13 * HOUR), 60.0, 100.0);
    sim.read("p1", t0().plus_ms(13 * HOUR), 160.0, 100.0);
    let first = sim.events()[0];
    assert_eq!(first.episode_start, t0());
    // OR → AND: light has been quiet since t0, so the household is quiet
    // since t0 again — but that episode is closed.
    let mut c = sim.cfg.clone();
    c.rule = ActivityRule::PowerAndLight;
    c.version += 1;
    sim.cfg = c.clone();
    let now = t0().plus_ms(13 * HOUR + MIN);
    sim.st.apply_config(&c, now, &mut sim.out);
    let evs = sim.events();
    let reopened: Vec<_> = evs.iter().filter(|e| e.event == Opened).collect();
    assert_eq!(reopened.len(), 2, "{evs:?}");
    assert_eq!(reopened[1].episode_start, t0().plus_ms(1));
    assert_ne!(reopened[1].episode_start, first.episode_start);
    // Its stages are still due from the real quiet start.
    assert_eq!(reopened[1].reason.quiet_since, t0());
}

#[test]
fn a_household_without_plugs_is_not_monitored() {
    let mut c = cfg();
    c.devices.clear();
    let st = HouseholdState::new(t0());
    assert_eq!(st.next_deadline(&c, t0()), None);
}

#[test]
fn apply_config_forgets_removed_plugs_and_reevaluates() {
    let mut c = cfg();
    let mut sim = Sim::new(c.clone());
    sim.read("p1", t0(), 60.0, 100.0);
    sim.read("p2", t0(), 60.0, 100.0);
    assert_eq!(sim.st.plugs.len(), 2);
    c.devices.remove(1);
    c.thresholds.attention_minutes = 10;
    c.offline_after_minutes = 5;
    let mut out = vec![];
    sim.st.apply_config(&c, t0().plus_ms(3 * MIN), &mut out);
    assert_eq!(sim.st.plugs.len(), 1);
    // Silent since minute 0: offline at 5 (the new limit), a welfare risk at
    // 10 (the new ATTENTION threshold).
    sim.st.apply_config(&c, t0().plus_ms(11 * MIN), &mut out);
    let got: Vec<_> = out
        .iter()
        .map(|e| match e {
            Effect::Incident(e) => (e.kind, e.event, e.stage, e.due_at.since(t0()) / MIN),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (DeviceOffline, Opened, Normal, 5),
            (DeviceOffline, StageRaised, Attention, 10)
        ]
    );
}

/// Cases per property: the default, or `PROPTEST_CASES` for a longer soak.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// ---------------------------------------------------------------------------
// Property tests against a ground-truth oracle.
// ---------------------------------------------------------------------------

/// A household whose activity happens at known minutes, readings every minute.
#[derive(Debug, Clone)]
struct Scenario {
    th: Thresholds,
    /// Quiet gaps in minutes between activities; `true` = a power change.
    gaps: Vec<(i64, bool)>,
    /// Minutes simulated after the last activity.
    tail: i64,
}

fn band(th: Thresholds) -> impl Strategy<Value = i64> {
    let (a, c, d) = (
        th.attention_minutes as i64,
        th.caution_minutes as i64,
        th.danger_minutes as i64,
    );
    // Every gap is at least 30 minutes away from every threshold, so that a
    // few minutes of reordering cannot change which stages are due.
    prop_oneof![
        4 => 1..(a - 30),
        1 => (a + 30)..(c - 30),
        1 => (c + 30)..(d - 30),
        1 => (d + 30)..(d + 300),
    ]
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (120u32..=720, 90u32..=720, 90u32..=720).prop_flat_map(|(a, dc, dd)| {
        let th = Thresholds {
            attention_minutes: a,
            caution_minutes: a + dc,
            danger_minutes: a + dc + dd,
        };
        (
            Just(th),
            prop::collection::vec((band(th), any::<bool>()), 1..6),
            band(th),
        )
            .prop_map(|(th, gaps, tail)| Scenario { th, gaps, tail })
    })
}

#[derive(Debug, Clone, Copy)]
struct Rd {
    minute: i64,
    seq: u64,
    watts: f32,
    lux: f32,
}

impl Scenario {
    fn cfg(&self) -> HouseholdConfig {
        let mut c = cfg();
        c.thresholds = self.th;
        c
    }

    fn activities(&self) -> Vec<i64> {
        let mut at = vec![0];
        for (g, _) in &self.gaps {
            at.push(at.last().unwrap() + g);
        }
        at
    }

    fn end(&self) -> i64 {
        self.activities().last().unwrap() + self.tail
    }

    /// One reading a minute; a level toggles exactly at each activity minute.
    /// Noise stays below the floors (±2 W, ±6 lux between neighbours).
    fn readings(&self) -> Vec<Rd> {
        let mut toggles = std::collections::HashMap::new();
        for (i, (_, power)) in self.gaps.iter().enumerate() {
            toggles.insert(self.activities()[i + 1], *power);
        }
        let (mut hi_w, mut hi_l) = (false, false);
        (0..self.end())
            .map(|m| {
                match toggles.get(&m) {
                    Some(true) => hi_w = !hi_w,
                    Some(false) => hi_l = !hi_l,
                    None => {}
                }
                let w = if hi_w { 120.0 } else { 20.0 } + ((m * 7919) % 5) as f32 * 0.5;
                let l = if hi_l { 300.0 } else { 5.0 } + ((m * 31) % 7) as f32;
                Rd {
                    minute: m,
                    seq: m as u64 + 1,
                    watts: w,
                    lux: l,
                }
            })
            .collect()
    }

    /// What must happen: per quiet gap, one incident through every stage
    /// whose threshold the gap exceeds, recovered by the next activity.
    fn expected(&self) -> Vec<(EventType, Stage, i64, i64)> {
        let acts = self.activities();
        let mut lens: Vec<i64> = self.gaps.iter().map(|g| g.0).collect();
        lens.push(self.tail);
        let mut out = vec![];
        for (i, len) in lens.iter().enumerate() {
            let start = acts[i];
            let mut reached = None;
            for s in Stage::WELFARE {
                let th = self.th.minutes(s) as i64;
                if th < *len {
                    let ty = if reached.is_none() {
                        Opened
                    } else {
                        StageRaised
                    };
                    out.push((ty, s, start, start + th));
                    reached = Some(s);
                }
            }
            if let (Some(s), Some(next)) = (reached, acts.get(i + 1)) {
                out.push((Recovered, s, start, *next));
            }
        }
        out
    }
}

/// Feeds readings in the given arrival order; "now" is the newest
/// observation so far (a watermark), timers fire in between.
fn run(s: &Scenario, arrivals: &[Rd]) -> Vec<(EventType, Stage, i64, i64)> {
    let mut sim = Sim::new(s.cfg());
    let mut watermark = t0();
    for r in arrivals {
        let at = t0().plus_ms(r.minute * MIN);
        watermark = watermark.max(at);
        sim.advance_to(watermark);
        let reading = Reading {
            device_id: "p1",
            observed_at: at,
            sequence: r.seq,
            watts: Some(r.watts),
            lux: Some(r.lux),
        };
        sim.st
            .on_reading(&sim.cfg, &reading, sim.now, &mut sim.out)
            .unwrap();
    }
    sim.advance_to(t0().plus_ms(s.end() * MIN));
    sim.events()
        .iter()
        .map(|e| {
            assert_eq!(e.kind, Inactivity);
            (
                e.event,
                e.stage,
                e.episode_start.since(t0()) / MIN,
                e.due_at.since(t0()) / MIN,
            )
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(64)))]

    /// In order: exactly the oracle's incidents, at the exact minute. This
    /// covers "no incident while activity continues" (gaps below ATTENTION
    /// expect nothing) and "exactly one incident per episode".
    #[test]
    fn in_order_matches_the_oracle(s in scenario()) {
        prop_assert_eq!(run(&s, &s.readings()), s.expected());
    }

    /// Duplicates (re-sent at once or up to 40 readings later) change nothing.
    #[test]
    fn duplicates_change_nothing(s in scenario(), dups in prop::collection::vec((any::<prop::sample::Index>(), 0usize..40), 0..200)) {
        let base = s.readings();
        let mut arrivals: Vec<(usize, Rd)> = base.iter().copied().enumerate().collect();
        for (i, delay) in dups {
            let k = i.index(base.len());
            arrivals.push((k + delay, base[k]));
        }
        arrivals.sort_by_key(|(pos, _)| *pos);
        let arrivals: Vec<Rd> = arrivals.into_iter().map(|(_, r)| r).collect();
        prop_assert_eq!(run(&s, &arrivals), s.expected());
    }

    /// Local reordering (each block of three readings shuffled) neither
    /// invents nor hides an incident: same events and stages, times off by at
    /// most the reordering window.
    #[test]
    fn reordering_neither_invents_nor_hides(s in scenario(), seed in any::<u64>()) {
        let mut arrivals = s.readings();
        let mut x = seed | 1;
        for chunk in arrivals.chunks_mut(3) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            let n = chunk.len();
            chunk.swap(0, (x % n as u64) as usize);
            chunk.swap(n - 1, ((x >> 8) % n as u64) as usize);
        }
        let got = run(&s, &arrivals);
        let want = s.expected();
        prop_assert_eq!(got.len(), want.len(), "got {:?}\nwant {:?}", got, want);
        for (g, w) in got.iter().zip(&want) {
            prop_assert_eq!((g.0, g.1), (w.0, w.1));
            prop_assert!((g.2 - w.2).abs() <= 2, "episode start {:?} vs {:?}", g, w);
            prop_assert!((g.3 - w.3).abs() <= 2, "due {:?} vs {:?}", g, w);
        }
    }

    /// Offline: a blackout shorter than the limit is nothing; a longer one is
    /// exactly one DEVICE_OFFLINE incident (raised to ATTENTION when it lasts
    /// past the threshold), recovered when readings return, and never an
    /// inactivity incident while the plug is silent.
    #[test]
    fn offline_matches_the_oracle(
        blackouts in prop::collection::vec((prop_oneof![1i64..27, 33i64..600, 760i64..1400], any::<bool>()), 1..4)
    ) {
        // Activity every 20 minutes; blackouts start right after an activity.
        let c = cfg();
        let (off, att) = (30i64, 720i64);
        let mut sim = Sim::new(c);
        let mut want = vec![];
        let mut m = 0i64;
        let mut level = false;
        let mut read = |sim: &mut Sim, m: i64, toggle: bool| {
            if toggle { level = !level; }
            sim.read("p1", t0().plus_ms(m * MIN), if level { 150.0 } else { 10.0 }, 50.0);
        };
        for (len, active_return) in blackouts {
            for k in 0..60 {
                read(&mut sim, m, k % 20 == 0);
                m += 1;
            }
            let last = m - 1; // the last reading before the blackout
            let last_act = last - 19; // the activity at k = 40
            let ret = last + len + 1;
            if len + 1 >= off {
                want.push((DeviceOffline, Opened, Normal, last, last + off));
                if ret - last_act > att {
                    want.push((DeviceOffline, StageRaised, Attention, last, last_act + att));
                }
                let stage = if ret - last_act > att { Attention } else { Normal };
                want.push((DeviceOffline, Recovered, stage, last, ret));
                if !active_return && ret - last_act > att {
                    want.push((Inactivity, Opened, Attention, last_act, last_act + att));
                    want.push((Inactivity, Recovered, Attention, last_act, ret + 20));
                }
            }
            m = ret;
            read(&mut sim, m, active_return);
            m += 1;
            for _ in 1..20 {
                read(&mut sim, m, false);
                m += 1;
            }
            read(&mut sim, m, true);
            m += 1;
        }
        let got: Vec<_> = sim.events().iter().map(|e| (
            e.kind, e.event, e.stage,
            e.episode_start.since(t0()) / MIN, e.due_at.since(t0()) / MIN,
        )).collect();
        prop_assert_eq!(got, want);
    }
}

#[derive(Debug, Clone)]
enum Step {
    Read {
        dev: bool,
        dt: i64,
        seq_delta: i64,
        w: u8,
        l: u8,
        dup: bool,
    },
    Tick(i64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (any::<bool>(), -3i64..240, -2i64..4, 0u8..4, 0u8..4, any::<bool>())
            .prop_map(|(dev, dt, seq_delta, w, l, dup)| Step::Read { dev, dt, seq_delta, w, l, dup }),
        1 => (0i64..3000).prop_map(Step::Tick),
    ]
}

fn chaos_cfg() -> impl Strategy<Value = HouseholdConfig> {
    (
        60u32..600,
        30u32..600,
        30u32..600,
        prop::option::of((0u16..1440, 60u16..600)),
        prop::collection::vec((0i64..4000, 10i64..3000), 0..3),
        0u8..4,
    )
        .prop_map(|(a, dc, dd, sleep, abs, rule)| {
            let mut c = cfg();
            c.thresholds = Thresholds {
                attention_minutes: a,
                caution_minutes: a + dc,
                danger_minutes: a + dc + dd,
            };
            c.offline_after_minutes = 30.min(a - 1);
            c.sleep_window = sleep.map(|(s, len)| SleepWindow {
                start_minute: s,
                end_minute: (s + len) % 1440,
            });
            c.absences = abs
                .into_iter()
                .map(|(s, len)| Absence {
                    kind: AbsenceKind::Travel,
                    starts_at: t0().plus_ms(s * MIN),
                    ends_at: t0().plus_ms((s + len) * MIN),
                })
                .collect();
            c.absences.sort_by_key(|a| a.starts_at);
            c.rule = [
                ActivityRule::PowerOrLight,
                ActivityRule::PowerAndLight,
                ActivityRule::PowerOnly,
                ActivityRule::LightOnly,
            ][rule as usize];
            c.validate().unwrap();
            c
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(256)))]

    /// Whatever arrives, in whatever order: every incident starts with OPENED,
    /// its stages only go up, it ends at most once and nothing follows its
    /// end; at most one incident is open at a time; deadlines lie in the
    /// future; a second evaluation at the same instant emits nothing.
    #[test]
    fn structural_invariants_hold_under_chaos(c in chaos_cfg(), steps in prop::collection::vec(step(), 1..300)) {
        let mut sim = Sim::new(c);
        let mut seqs = [10i64, 10];
        let mut t = 0i64;
        let mut last: Option<Reading<'static>> = None;
        for s in steps {
            match s {
                Step::Tick(dt) => { t += dt; sim.advance_to(t0().plus_ms(t * MIN)); }
                Step::Read { dev, dt, seq_delta, w, l, dup } => {
                    let r = match (dup, last) {
                        (true, Some(r)) => r,
                        _ => {
                            t = (t + dt).max(0);
                            let d = dev as usize;
                            seqs[d] = (seqs[d] + seq_delta).max(0);
                            Reading {
                                device_id: if dev { "p2" } else { "p1" },
                                observed_at: t0().plus_ms(t * MIN - (dt < 0) as i64 * 7 * MIN),
                                sequence: seqs[d] as u64,
                                watts: Some(w as f32 * 40.0),
                                lux: (l > 0).then_some(l as f32 * 50.0),
                            }
                        }
                    };
                    last = Some(r);
                    let now = sim.now.max(r.observed_at);
                    sim.advance_to(now);
                    let _ = sim.st.on_reading(&sim.cfg, &r, sim.now, &mut sim.out);
                }
            }
            let n = sim.out.len();
            let now = sim.now;
            sim.st.evaluate(&sim.cfg, now, &mut sim.out);
            prop_assert_eq!(sim.out.len(), n, "evaluate is not idempotent");
            if let Some(d) = sim.st.next_deadline(&sim.cfg, sim.now) {
                prop_assert!(d > sim.now);
            }
        }
        let mut current: Option<(IncidentKind, Ts, Stage)> = None;
        let mut closed = std::collections::HashSet::new();
        for e in sim.events() {
            let id = (e.kind, e.episode_start);
            prop_assert!(!closed.contains(&id), "event after close: {:?}", e);
            match e.event {
                Opened => {
                    prop_assert!(current.is_none(), "two open incidents: {:?} {:?}", current, e);
                    current = Some((e.kind, e.episode_start, e.stage));
                }
                StageRaised => {
                    let (k, s, stage) = current.expect("raise without open");
                    prop_assert_eq!((k, s), id);
                    prop_assert!(e.stage > stage, "stage went {:?} -> {:?}", stage, e.stage);
                    current = Some((k, s, e.stage));
                }
                Recovered | Suppressed(_) => {
                    let (k, s, stage) = current.take().expect("close without open");
                    prop_assert_eq!((k, s), id);
                    prop_assert_eq!(e.stage, stage);
                    closed.insert(id);
                }
            }
        }
    }
}
