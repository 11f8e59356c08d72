//! Learned detection (issue 18): automatic loads recognised per plug, the
//! routine learned per household and the routine break it raises — unit
//! tests per rule, and property tests that the learned detection is never
//! later than the fixed thresholds and that neither a person's switching
//! nor a true cycle is mistaken for the other.

use super::*;
use dolbom_domain::config::{Learning, RoutineSensitivity};
use dolbom_domain::{DeviceId, DongCode, HouseholdId, MunicipalityCode, HOUR_MS};
use proptest::prelude::*;

const MIN: i64 = MINUTE_MS;
const DAY: i64 = 24 * HOUR_MS;

fn t0() -> Ts {
    // A Monday, local midnight in Seoul.
    Ts::parse_rfc3339("2026-03-02T00:00:00+09:00").unwrap()
}

fn cfg(learning: Learning) -> HouseholdConfig {
    let m = MunicipalityCode::new("11110").unwrap();
    let mut c = HouseholdConfig::with_defaults(
        HouseholdId::new("hh-1").unwrap(),
        DongCode::new("1111051500", m).unwrap(),
        [DeviceId::new("p1").unwrap()],
        t0(),
    );
    c.learning = learning;
    c
}

fn fixed() -> Learning {
    Learning {
        routine: RoutineSensitivity::Off,
        recognise_automatic_loads: false,
        defer_through_usual_quiet: false,
    }
}

/// One household driven minute by minute: `watts(t)` is the plug's power
/// at each minute (light stays constant); returns every inactivity alert
/// (opening or raise) with its stage and reason.
fn run(cfg: &HouseholdConfig, minutes: i64, watts: impl Fn(Ts) -> f32) -> Vec<HouseholdEvent> {
    let mut st = HouseholdState::new(cfg.registered_at);
    let mut out = Vec::new();
    let mut next: Option<Ts> = None;
    for m in 0..minutes {
        let t = cfg.registered_at.plus_ms(m * MIN);
        if let Some(d) = next.filter(|d| *d <= t) {
            st.evaluate(cfg, d, &mut out);
        }
        let r = Reading {
            device_id: "p1",
            observed_at: t,
            sequence: m as u64 + 1,
            watts: Some(watts(t)),
            lux: Some(50.0),
        };
        st.on_reading(cfg, &r, t, &mut out).unwrap();
        next = st.next_deadline(cfg, t);
    }
    out.into_iter()
        .filter_map(|e| match e {
            Effect::Incident(ev)
                if ev.kind == IncidentKind::Inactivity
                    && matches!(ev.event, EventType::Opened | EventType::StageRaised) =>
            {
                Some(ev)
            }
            _ => None,
        })
        .collect()
}

/// A fridge: on for `on` of every `period` minutes, phase `phase`.
fn fridge(period: i64, on: i64, phase: i64) -> impl Fn(Ts) -> f32 {
    move |t: Ts| {
        let m = t.millis() / MIN + phase;
        if m.rem_euclid(period) < on {
            90.0
        } else {
            1.5
        }
    }
}

/// A well-mixed hash of a minute (splitmix64), for scattered habits.
fn mix(m: i64) -> u64 {
    let mut z = (m as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A person's appliance, switched at scattered minutes (about four times an
/// hour) while they are up (07:00–22:00) on the days before `stop` (a
/// crisis at `stop`).
fn person(stop: Ts) -> impl Fn(Ts) -> f32 {
    person_up(stop, 7, 22)
}

/// [`person`], up from `wake` to `sleep` (local hours).
fn person_up(stop: Ts, wake: u32, sleep: u32) -> impl Fn(Ts) -> f32 {
    move |t: Ts| {
        let hour = t.kst_hour();
        let up = (wake..sleep).contains(&hour) && t < stop;
        if up && mix(t.millis() / MIN) % 100 < 7 {
            800.0
        } else {
            1.0
        }
    }
}

#[test]
fn a_fridge_keeps_a_home_active_under_the_fixed_rule_but_not_once_recognised() {
    let f = fridge(45, 15, 7);
    assert!(run(&cfg(fixed()), 3 * DAY / MIN, &f).is_empty());
    let learned = run(&cfg(Learning::default()), 3 * DAY / MIN, &f);
    assert!(!learned.is_empty(), "a fridge alone is no sign of life");
    // The first interval is the candidate, six more match it: recognised at
    // the eighth start (minute 38 + 7 × 45 with this phase); the quiet
    // starts at the last edge that still counted.
    let first = learned[0];
    assert_eq!(first.stage, Stage::Attention);
    let recognised_by = t0().plus_ms((38 + (cycle::RECOGNISED_AFTER as i64 + 1) * 45) * MIN);
    assert!(first.reason.quiet_since <= recognised_by, "{first:?}");
    assert_eq!(
        first.due_at,
        first.reason.quiet_since.plus_ms(12 * HOUR_MS),
        "{first:?}"
    );
}

#[test]
fn a_fridge_door_opened_off_the_cycle_is_activity() {
    let mut c = Cycle::default();
    let at = |m: i64| t0().plus_ms(m * MIN);
    let n = i64::from(cycle::RECOGNISED_AFTER) + 1;
    for k in 0..=n {
        let own = c.edge(at(k * 45), 90.0, 5.0);
        assert_eq!(own, k == n, "cycle {k}");
        assert!(c.edge(at(k * 45 + 15), -90.0, 5.0) == c.recognised());
    }
    assert!(c.recognised());
    let last = n * 45;
    // The door opened 20 minutes into the off phase: the compressor starts
    // early — a person did that.
    assert!(!c.edge(at(last + 35), 90.0, 5.0));
    assert!(c.edge(at(last + 50), -90.0, 5.0));
    // The cycle goes on from there.
    assert!(c.edge(at(last + 35 + 45), 90.0, 5.0));
    // The fridge's lamp while the compressor runs: another size, activity.
    assert!(!c.edge(at(last + 35 + 47), 20.0, 5.0));
    // Late is still the compressor (readings lost, a cool evening).
    assert!(c.edge(at(last + 35 + 45 + 70), 90.0, 5.0));
}

#[test]
fn a_routine_break_raises_attention_early_and_explains_itself() {
    // Busy 07:00–22:00 for 16 days; on day 17 nothing after 10:00.
    let stop = t0().plus_ms(16 * DAY + 10 * HOUR_MS);
    let minutes = (17 * DAY + 12 * HOUR_MS) / MIN;
    let learned = run(&cfg(Learning::default()), minutes, person(stop));
    let first = learned.first().expect("an alert");
    assert!(first.due_at > stop, "no alert before the crisis: {first:?}");
    assert_eq!(first.reason.code, ReasonCode::RoutineBreak);
    let e = first.reason.routine.expect("evidence");
    // Quiet since the last use before 10:00: the span starts at the next
    // whole hour. Every hour is active on (nearly) every day, each quiet
    // hour about a 1-in-30 chance: three of them are rarer than once in
    // 1 000 days (Normal), two are not.
    let q = first.reason.quiet_since;
    assert!(q < stop && q > stop.plus_ms(-HOUR_MS), "{first:?}");
    assert_eq!(e.usual_from, t0().plus_ms(16 * DAY + 10 * HOUR_MS));
    assert_eq!(e.usual_until, t0().plus_ms(16 * DAY + 13 * HOUR_MS));
    assert_eq!(first.due_at, e.usual_until);
    assert_eq!((e.active_days, e.reference_days), (14, 14));
    assert!(e.one_in_days >= 1000, "{e:?}");
    let text = e.explain(q);
    assert!(
        text.contains("10:00–13:00") && text.contains("14일 중 14일"),
        "{text}"
    );
    // The fixed thresholds alone: 12 hours after the last activity.
    let fixed = run(&cfg(fixed()), minutes + DAY / MIN, person(stop));
    let f = fixed.first().expect("an alert");
    assert_eq!(f.reason.code, ReasonCode::NoPowerOrLightChange);
    assert_eq!(f.due_at, q.plus_ms(12 * HOUR_MS), "{f:?}");
    assert!(f.due_at >= first.due_at.plus_ms(8 * HOUR_MS), "{f:?}");
}

#[test]
fn no_routine_break_while_learning_nor_through_the_usual_night() {
    // A crisis on day 6 at 10:00: still learning, the fixed 12 h applies.
    let stop = t0().plus_ms(5 * DAY + 10 * HOUR_MS);
    let learned = run(&cfg(Learning::default()), 7 * DAY / MIN, person(stop));
    let first = learned.first().expect("an alert");
    assert_eq!(first.reason.code, ReasonCode::NoPowerOrLightChange);
    assert_eq!(first.due_at, first.reason.quiet_since.plus_ms(12 * HOUR_MS));
    // Thirty ordinary days and nights: quiet every night, never an alert.
    let never = t0().plus_ms(400 * DAY);
    assert!(run(&cfg(Learning::default()), 30 * DAY / MIN, person(never)).is_empty());
    // Off means off.
    let off = Learning {
        routine: RoutineSensitivity::Off,
        ..Learning::default()
    };
    let stop = t0().plus_ms(16 * DAY + 10 * HOUR_MS);
    let alerts = run(&cfg(off), (17 * DAY + 12 * HOUR_MS) / MIN, person(stop));
    assert!(alerts.iter().all(|e| e.reason.routine.is_none()));
}

#[test]
fn a_long_sleeper_is_not_alerted_every_morning_when_usual_quiet_defers_attention() {
    // Up 10:00–22:00: every night is a 12-hour quiet, the fixed ATTENTION
    // falls just before they usually get going.
    let never = t0().plus_ms(400 * DAY);
    let after_learning = |alerts: Vec<HouseholdEvent>| {
        alerts
            .into_iter()
            .filter(|e| e.due_at >= t0().plus_ms(16 * DAY))
            .count()
    };
    let plain = run(
        &cfg(Learning::default()),
        24 * DAY / MIN,
        person_up(never, 10, 22),
    );
    assert!(
        after_learning(plain) > 0,
        "the fixed 12 h fires on some mornings"
    );
    let defer = Learning {
        defer_through_usual_quiet: true,
        ..Learning::default()
    };
    let deferred = run(&cfg(defer), 24 * DAY / MIN, person_up(never, 10, 22));
    assert!(deferred.iter().all(|e| e.due_at < t0().plus_ms(16 * DAY)));
    // They go to bed and do not get up: ATTENTION when the quiet stops
    // being usual — an hour after the latest hour they ever got going
    // (11:00), not at the fixed 12 h (about 10:00), never past CAUTION.
    let stop = t0().plus_ms(20 * DAY + 22 * HOUR_MS);
    let alerts = run(&cfg(defer), 22 * DAY / MIN, person_up(stop, 10, 22));
    let first = alerts
        .iter()
        .find(|e| e.due_at > stop)
        .expect("an alert for the crisis");
    assert!(first.reason.deferred_by_sleep_window, "{first:?}");
    assert_eq!(
        first.due_at,
        t0().plus_ms(21 * DAY + 12 * HOUR_MS),
        "{first:?}"
    );
    // A crisis in their usual waking hours is not deferred at all.
    let stop = t0().plus_ms(20 * DAY + 15 * HOUR_MS);
    let alerts = run(&cfg(defer), 22 * DAY / MIN, person_up(stop, 10, 22));
    let first = alerts.iter().find(|e| e.due_at > stop).expect("an alert");
    assert!(!first.reason.deferred_by_sleep_window, "{first:?}");
    assert_eq!(first.reason.code, ReasonCode::RoutineBreak);
}

#[test]
fn the_routine_counts_days_with_activity_and_forgets_older_ones() {
    let day = |d: i64, h: i64| t0().plus_ms(d * DAY + h * HOUR_MS);
    let today = |d: i64| day(d, 0).kst_day_number();
    // Active 09:00–18:00 on the days `days`; the newest reading on day 14.
    let learn = |days: &[i64]| {
        let mut r = Routine::default();
        let mut at = today(0);
        for &d in days {
            r.roll(at, today(d));
            at = today(d);
            for h in 9..18 {
                r.active(day(d, h), at);
            }
        }
        r.roll(at, today(14));
        r
    };
    let q = day(14, 9).plus_ms(30 * MIN);
    let r = learn(&(0..14).collect::<Vec<_>>());
    assert!(r.learned(q, today(14)));
    let (due, e) = r.break_due(q, today(14), 1e-3, 0).expect("a break");
    // 14 of 14 days active in each hour: a quiet hour is a 1-in-30 chance
    // ((14 + 0.5) / 15 active), so three hours are needed for 1 in 1 000.
    assert_eq!(due, day(14, 13));
    assert_eq!((e.active_days, e.reference_days), (14, 14));
    assert_eq!(r.break_due(q, today(14), 1e-2, 0).unwrap().0, day(14, 12));
    // Two days without activity (away, no readings) are no reference days.
    let gaps = learn(&(0..14).filter(|d| *d != 3 && *d != 8).collect::<Vec<_>>());
    let (_, e) = gaps.break_due(q, today(14), 1e-3, 0).expect("a break");
    assert_eq!((e.active_days, e.reference_days), (12, 12));
    // Three such days: still learning.
    let more = learn(
        &(0..14)
            .filter(|d| ![3, 8, 9].contains(d))
            .collect::<Vec<_>>(),
    );
    assert!(!more.learned(q, today(14)));
    assert!(more.break_due(q, today(14), 1.0, 0).is_none());
    // Sixteen days on, everything is forgotten.
    let mut old = r;
    old.roll(today(14), today(30));
    assert_eq!(old, Routine::default());
}

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(64)))]

    /// A load on a true cycle — any period from 10 minutes to 13 hours, any
    /// on-time and size — is recognised after six matching cycles, and from
    /// then on its own switching is never activity.
    #[test]
    fn a_true_cycle_is_recognised(
        period in 10i64..(13 * 60),
        on_share in 0.05f64..0.95,
        size in 20.0f32..2000.0,
        start in 0i64..(24 * 60),
    ) {
        let on = ((period as f64 * on_share) as i64).clamp(1, period - 1);
        let mut c = Cycle::default();
        let at = |m: i64| t0().plus_ms((start + m) * MIN);
        // The first interval is the candidate; six more must match it.
        let n = i64::from(cycle::RECOGNISED_AFTER) + 1;
        for k in 0..n + 6 {
            let own = c.edge(at(k * period), size, 5.0);
            prop_assert_eq!(own, k >= n, "up-edge {}", k);
            let down = c.edge(at(k * period + on), -size, 5.0);
            prop_assert_eq!(down, k >= n, "down-edge {}", k);
        }
    }

    /// A person's switching — intervals that never repeat within the
    /// tolerance twice in a row — is never taken for an automatic load.
    #[test]
    fn a_person_is_never_a_cycle(
        steps in proptest::collection::vec((10i64..240, 1i64..30), 8..60),
        size in 20.0f32..2000.0,
    ) {
        let mut c = Cycle::default();
        let mut t = t0();
        let mut last: Option<i64> = None;
        for (interval, on) in steps {
            // Make each interval differ from the one before by more than the
            // tolerance (a sixteenth of the period, at least a minute).
            let interval = match last {
                Some(l) if (interval - l).abs() * 16 <= l.max(16) + 16 => interval + l / 8 + 2,
                _ => interval,
            };
            last = Some(interval);
            t = t.plus_ms(interval * MIN);
            prop_assert!(!c.edge(t, size, 5.0));
            prop_assert!(!c.edge(t.plus_ms(on.min(interval - 1) * MIN), -size, 5.0));
            prop_assert!(!c.recognised());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(12)))]

    /// Whatever the home's habits, with or without a fridge, learned
    /// detection raises its first ATTENTION no later than the fixed
    /// thresholds alone would (the safety net never moves later).
    #[test]
    fn learned_detection_is_never_later_than_fixed(
        busy in proptest::collection::vec(0u32..100, 24),
        stop_hour in 0i64..(20 * 24),
        with_fridge in proptest::bool::ANY,
        sensitivity in prop_oneof![
            Just(RoutineSensitivity::Low),
            Just(RoutineSensitivity::Normal),
            Just(RoutineSensitivity::High),
        ],
    ) {
        let stop = t0().plus_ms(stop_hour * HOUR_MS);
        let watts = move |t: Ts| {
            let m = t.millis() / MIN;
            let x = (mix(m) % 1000) as u32;
            let human = t < stop && x < busy[t.kst_hour() as usize];
            let fridge = with_fridge && (m % 47) < 12;
            (if human { 700.0 } else { 1.0 }) + if fridge { 90.0 } else { 0.0 }
        };
        let minutes = (stop_hour + 40) * 60;
        let learned = Learning {
            routine: sensitivity,
            recognise_automatic_loads: true,
            defer_through_usual_quiet: false,
        };
        let a = run(&cfg(fixed()), minutes, &watts);
        let b = run(&cfg(learned), minutes, &watts);
        if let Some(f) = a.first() {
            let l = b.first();
            prop_assert!(l.is_some_and(|l| l.due_at <= f.due_at), "fixed {:?} learned {:?}", f, l);
        }
    }
}
