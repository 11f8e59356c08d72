use super::*;
use chrono::{Datelike, NaiveDate, Weekday};
use dolbom_calendar::Router;
use dolbom_domain::incident::{IncidentKind, Stage};
use dolbom_domain::Ts;
use proptest::prelude::*;
use std::collections::HashSet;

fn router() -> Router {
    Router::builtin()
}

fn kst(y: i32, m: u32, d: u32, h: u32, mi: u32) -> Ts {
    Ts::from_kst(
        NaiveDate::from_ymd_opt(y, m, d)
            .unwrap()
            .and_hms_opt(h, mi, 0)
            .unwrap(),
    )
}

/// Monday 2026-11-23, 10:00 KST: the dong offices are open.
fn monday_morning() -> Ts {
    let t = kst(2026, 11, 23, 10, 0);
    assert_eq!(t.to_kst().date().weekday(), Weekday::Mon);
    t
}

fn opening(stage: Stage, consent: bool) -> Opening<'static> {
    Opening {
        incident_id: "INA:hh-1:1000",
        kind: IncidentKind::Inactivity,
        stage,
        consent,
    }
}

fn notices(actions: &[Action]) -> Vec<&Notice> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Notify(n) => Some(n),
            _ => None,
        })
        .collect()
}

#[test]
fn office_hours_walk_the_default_policy_to_exhaustion() {
    let (p, r) = (Policy::platform_default(), router());
    let t0 = monday_morning();
    let (mut e, out) = Escalation::open(&opening(Stage::Attention, false), &p, &r, t0);
    let n = notices(&out);
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].message_id, "INA:hh-1:1000/s0/a1");
    assert_eq!(n[0].tier, Tier::DongOffice);
    assert_eq!(e.next_due(), Some(t0.plus_minutes(30)));
    // Nothing happens before the deadline.
    assert!(e.tick(&p, &r, t0.plus_minutes(29)).is_empty());
    let mut t = t0;
    let mut sent = vec![(0, 1)];
    while let Some(due) = e.next_due() {
        t = due;
        for a in e.tick(&p, &r, t) {
            if let Action::Notify(n) = a {
                sent.push((n.step, n.attempt));
            }
        }
    }
    assert_eq!(
        sent,
        vec![(0, 1), (0, 2), (1, 1), (1, 2), (2, 1), (2, 2), (2, 3)]
    );
    assert_eq!(e.phase, Phase::Exhausted { at: t });
    // 30+30 (dong office) + 30+30 (control center) + 15*3 (emergency).
    assert_eq!(t, t0.plus_minutes(165));
    assert_eq!(
        e.told,
        vec![Tier::DongOffice, Tier::ControlCenter, Tier::Emergency]
    );
}

#[test]
fn night_without_consent_is_held_until_the_office_opens_and_with_consent_goes_to_the_control_center(
) {
    let (p, r) = (Policy::platform_default(), router());
    // Saturday 2026-11-21 23:00: closed until Monday 09:00.
    let night = kst(2026, 11, 21, 23, 0);
    let (mut held, out) = Escalation::open(&opening(Stage::Attention, false), &p, &r, night);
    let monday_nine = kst(2026, 11, 23, 9, 0);
    assert_eq!(
        out,
        vec![Action::Held {
            step: 0,
            tier: Tier::DongOffice,
            until: monday_nine
        }]
    );
    assert!(held.tick(&p, &r, Ts(monday_nine.0 - 60_000)).is_empty());
    let out = held.tick(&p, &r, monday_nine);
    assert_eq!(notices(&out)[0].tier, Tier::DongOffice);

    let (_, out) = Escalation::open(&opening(Stage::Attention, true), &p, &r, night);
    assert_eq!(notices(&out)[0].tier, Tier::ControlCenter);
}

#[test]
fn chuseok_is_a_holiday_for_routing() {
    let (p, r) = (Policy::platform_default(), router());
    // 2026-09-25 (Friday) is 추석.
    let t = kst(2026, 9, 25, 11, 0);
    assert!(r.calendar().is_holiday(t.to_kst().date()));
    let (e, out) = Escalation::open(&opening(Stage::Caution, false), &p, &r, t);
    assert!(matches!(out[0], Action::Held { .. }));
    // The office opens the next business day: Monday 2026-09-28, 09:00.
    assert_eq!(e.next_due(), Some(kst(2026, 9, 28, 9, 0)));
    let (_, out) = Escalation::open(&opening(Stage::Caution, true), &p, &r, t);
    assert_eq!(notices(&out)[0].tier, Tier::ControlCenter);
}

#[test]
fn emergency_is_never_held_and_danger_starts_at_its_step() {
    let (p, r) = (Policy::platform_default(), router());
    let night = kst(2026, 11, 21, 23, 0);
    let mut policy = p.clone();
    policy.stage_start = [0, 1, 2];
    let (_, out) = Escalation::open(&opening(Stage::Danger, false), &policy, &r, night);
    let n = notices(&out);
    assert_eq!((n[0].tier, n[0].step), (Tier::Emergency, 2));
}

#[test]
fn acknowledgement_stops_the_clock_and_a_stage_raise_then_only_informs() {
    let (p, r) = (Policy::platform_default(), router());
    let t0 = monday_morning();
    let (mut e, _) = Escalation::open(&opening(Stage::Attention, false), &p, &r, t0);
    assert_eq!(
        e.acknowledge(t0.plus_minutes(5)),
        vec![Action::Acknowledged]
    );
    assert!(e.acknowledge(t0.plus_minutes(6)).is_empty());
    assert_eq!(e.next_due(), None);
    assert!(e.tick(&p, &r, t0.plus_minutes(600)).is_empty());
    let out = e.stage_raised(Stage::Danger, &p, &r, t0.plus_minutes(700));
    let n = notices(&out);
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].purpose, Purpose::StageRaised);
    assert_eq!(n[0].tier, Tier::DongOffice);
    assert!(e.stage_raised(Stage::Danger, &p, &r, t0).is_empty());
}

#[test]
fn stage_raise_jumps_forward_never_back_and_never_restarts() {
    let (p, r) = (Policy::platform_default(), router());
    let t0 = monday_morning();
    let (mut e, _) = Escalation::open(&opening(Stage::Attention, false), &p, &r, t0);
    // CAUTION starts at step 0 too: nothing to do.
    assert!(e
        .stage_raised(Stage::Caution, &p, &r, t0.plus_minutes(1))
        .is_empty());
    let out = e.stage_raised(Stage::Danger, &p, &r, t0.plus_minutes(2));
    assert_eq!(
        out[0],
        Action::Escalated {
            from_step: 0,
            to_step: 1,
            cause: EscalationCause::StageRaised
        }
    );
    assert_eq!(notices(&out)[0].message_id, "INA:hh-1:1000/s1/a1");
}

#[test]
fn recovery_tells_everyone_who_was_told_once() {
    let (p, r) = (Policy::platform_default(), router());
    let t0 = monday_morning();
    let (mut e, _) = Escalation::open(&opening(Stage::Attention, false), &p, &r, t0);
    e.tick(&p, &r, t0.plus_minutes(30));
    e.tick(&p, &r, t0.plus_minutes(60));
    let out = e.stop(StopReason::Recovered, &p, t0.plus_minutes(61));
    let tiers: Vec<Tier> = notices(&out).iter().map(|n| n.tier).collect();
    assert_eq!(tiers, vec![Tier::DongOffice, Tier::ControlCenter]);
    assert!(notices(&out)
        .iter()
        .all(|n| n.purpose == Purpose::Recovered));
    assert!(e.stop(StopReason::Recovered, &p, t0).is_empty());
    assert!(e.tick(&p, &r, t0.plus_minutes(1000)).is_empty());
}

/// A permanent delivery failure (a gateway answering 401, a dead webhook)
/// runs the ladder, but never to a quiet end: the last step pages SRE once
/// and is sent again with growing waits until someone acknowledges.
#[test]
fn nobody_reachable_pages_sre_and_keeps_retrying_with_backoff() {
    let (p, r) = (Policy::platform_default(), router());
    let t0 = monday_morning();
    let (mut e, _) = Escalation::open(&opening(Stage::Attention, false), &p, &r, t0);
    let mut now = t0;
    let mut log = Vec::new();
    // Every send fails at once.
    for _ in 0..40 {
        let out = e.delivery_failed(e.step, e.sends, &p, &r, now);
        if out.is_empty() {
            match e.next_due() {
                Some(d) => {
                    now = d;
                    log.extend(e.tick(&p, &r, now));
                }
                None => break,
            }
        }
        log.extend(out);
    }
    assert!(
        !matches!(e.phase, Phase::Exhausted { .. }),
        "never exhausted: {:?}",
        e.phase
    );
    assert!(e.is_running());
    let pages: Vec<&Notice> = notices(&log)
        .into_iter()
        .filter(|n| n.purpose == Purpose::Unreachable)
        .collect();
    assert_eq!(pages.len(), 1, "SRE is paged once");
    assert_eq!(pages[0].tier, Tier::Sre);
    let waits: Vec<Ts> = log
        .iter()
        .filter_map(|a| match a {
            Action::Unreachable { retry_at, .. } => Some(*retry_at),
            _ => None,
        })
        .collect();
    assert!(waits.len() > 5);
    let gaps: Vec<i64> = waits
        .windows(2)
        .map(|w| w[1].since(w[0]) / 60_000)
        .collect();
    assert_eq!(&gaps[..5], &[2, 4, 8, 16, 30], "backing off to 30 minutes");
    assert!(gaps[5..].iter().all(|g| *g == 30));
    // Someone finally acknowledges: the clock stops.
    assert_eq!(e.acknowledge(now), vec![Action::Acknowledged]);
    assert!(!e.is_running());
}

#[test]
fn a_failed_delivery_escalates_at_once_and_stale_reports_are_ignored() {
    let (p, r) = (Policy::platform_default(), router());
    let t0 = monday_morning();
    let (mut e, _) = Escalation::open(&opening(Stage::Attention, false), &p, &r, t0);
    assert!(e.delivery_failed(0, 2, &p, &r, t0).is_empty());
    let out = e.delivery_failed(0, 1, &p, &r, t0.plus_minutes(2));
    assert_eq!(
        out[0],
        Action::Escalated {
            from_step: 0,
            to_step: 1,
            cause: EscalationCause::DeliveryFailed
        }
    );
    assert!(e
        .delivery_failed(0, 1, &p, &r, t0.plus_minutes(3))
        .is_empty());
}

#[test]
fn non_welfare_incidents_get_one_notice_and_offline_becoming_a_risk_escalates() {
    let (p, r) = (Policy::platform_default(), router());
    let t0 = monday_morning();
    let stall = Opening {
        incident_id: "STALL:p3:1",
        kind: IncidentKind::PipelineStall,
        stage: Stage::Normal,
        consent: false,
    };
    let (e, out) = Escalation::open(&stall, &p, &r, t0);
    assert_eq!(notices(&out)[0].tier, Tier::Sre);
    assert_eq!(e.next_due(), None);

    let offline = Opening {
        incident_id: "OFF:hh-2:1",
        kind: IncidentKind::DeviceOffline,
        stage: Stage::Normal,
        consent: false,
    };
    let (mut e, out) = Escalation::open(&offline, &p, &r, t0);
    assert_eq!(notices(&out)[0].tier, Tier::Maintenance);
    let out = e.stage_raised(Stage::Attention, &p, &r, t0.plus_minutes(300));
    let n = notices(&out);
    assert_eq!(
        (n[0].tier, n[0].purpose),
        (Tier::DongOffice, Purpose::Alert)
    );
    // Recovery tells maintenance and the dong office.
    let out = e.stop(StopReason::Recovered, &p, t0.plus_minutes(301));
    assert_eq!(notices(&out).len(), 2);
}

#[test]
fn consent_given_while_held_sends_to_the_control_center_now() {
    let (p, r) = (Policy::platform_default(), router());
    let night = kst(2026, 11, 21, 23, 0);
    let (mut e, _) = Escalation::open(&opening(Stage::Attention, false), &p, &r, night);
    let out = e.set_consent(true, &p, &r, night.plus_minutes(10));
    assert_eq!(notices(&out)[0].tier, Tier::ControlCenter);
}

#[test]
fn a_resolution_while_the_home_stays_quiet_opens_again_after_recheck_minutes() {
    let (p, r) = (Policy::platform_default(), router());
    let t0 = monday_morning();
    let (mut e, _) = Escalation::open(&opening(Stage::Attention, true), &p, &r, t0);
    // Reached by phone, fine: the home is still quiet.
    let t1 = t0.plus_minutes(10);
    let recheck_at = t1.plus_minutes(p.recheck_minutes);
    assert_eq!(
        e.resolve(true, &p, t1),
        vec![Action::Resolved { recheck_at }]
    );
    assert_eq!(e.next_due(), Some(recheck_at));
    // Resolving again changes nothing; an acknowledgement neither.
    assert!(e.resolve(true, &p, t1.plus_minutes(1)).is_empty());
    assert!(e.acknowledge(t1.plus_minutes(2)).is_empty());
    assert!(e
        .tick(&p, &r, t1.plus_minutes(p.recheck_minutes - 1))
        .is_empty());
    // Still quiet at the recheck: round 1 starts from the stage's step, with
    // its own message ids (22:10 on a Monday: the control center, consented).
    let out = e.tick(&p, &r, recheck_at);
    assert_eq!(
        out[0],
        Action::Reopened {
            round: 1,
            cause: ReopenCause::StillQuiet
        }
    );
    let n = notices(&out);
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].message_id, "INA:hh-1:1000/r1/s0/a1");
    assert_eq!(n[0].tier, Tier::ControlCenter);
    assert!(matches!(e.phase, Phase::Waiting { .. }));
    // Round 1 can be acknowledged and resolved like round 0.
    assert_eq!(
        e.acknowledge(recheck_at.plus_minutes(5)),
        vec![Action::Acknowledged]
    );
}

#[test]
fn a_stage_raised_after_a_resolution_opens_it_again_at_once() {
    let (p, r) = (Policy::platform_default(), router());
    let t0 = monday_morning();
    let (mut e, _) = Escalation::open(&opening(Stage::Attention, false), &p, &r, t0);
    e.resolve(true, &p, t0.plus_minutes(10));
    let out = e.stage_raised(Stage::Danger, &p, &r, t0.plus_minutes(60));
    assert_eq!(
        out[0],
        Action::Reopened {
            round: 1,
            cause: ReopenCause::StageRaised
        }
    );
    // DANGER starts at the control center's step.
    let n = notices(&out);
    assert_eq!(n[0].message_id, "INA:hh-1:1000/r1/s1/a1");
    assert_eq!(n[0].stage, Stage::Danger);
}

#[test]
fn activity_after_a_resolution_ends_it_without_telling_anyone_again() {
    let (p, r) = (Policy::platform_default(), router());
    let t0 = monday_morning();
    let (mut e, _) = Escalation::open(&opening(Stage::Attention, false), &p, &r, t0);
    e.resolve(true, &p, t0.plus_minutes(10));
    let out = e.stop(StopReason::Recovered, &p, t0.plus_minutes(30));
    assert_eq!(
        out,
        vec![Action::Stopped {
            why: StopReason::Recovered
        }]
    );
    assert_eq!(e.next_due(), None);
    assert!(e.tick(&p, &r, t0.plus_minutes(100_000)).is_empty());
}

#[test]
fn a_person_found_away_from_home_ends_it_for_good() {
    // Hospitalised, say: the home will be quiet and that is expected.
    let (p, r) = (Policy::platform_default(), router());
    let t0 = monday_morning();
    let (mut e, _) = Escalation::open(&opening(Stage::Attention, false), &p, &r, t0);
    let out = e.resolve(false, &p, t0.plus_minutes(10));
    assert_eq!(
        out,
        vec![Action::Stopped {
            why: StopReason::Resolved
        }]
    );
    assert!(e.is_stopped());
    assert!(e.tick(&p, &r, t0.plus_minutes(100_000)).is_empty());
    assert!(e
        .stage_raised(Stage::Danger, &p, &r, t0.plus_minutes(2000))
        .is_empty());
}

// ---------------------------------------------------------------- properties

#[derive(Clone, Debug)]
enum Op {
    /// Let this many minutes pass, then tick.
    Wait(u32),
    /// Tick at the next due time.
    TickDue,
    Raise(Stage),
    Ack,
    Stop(StopReason),
    /// A person resolves it; `true` when the person was found fine at home.
    Resolve(bool),
    FailCurrent,
    Consent(bool),
    /// Persist and restore (a restart of the service).
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u32..600).prop_map(Op::Wait),
        6 => Just(Op::TickDue),
        1 => prop_oneof![Just(Stage::Caution), Just(Stage::Danger)].prop_map(Op::Raise),
        1 => Just(Op::Ack),
        1 => prop_oneof![
            Just(StopReason::Recovered),
            Just(StopReason::Resolved),
            Just(StopReason::Suppressed)
        ]
        .prop_map(Op::Stop),
        1 => any::<bool>().prop_map(Op::Resolve),
        1 => Just(Op::FailCurrent),
        1 => any::<bool>().prop_map(Op::Consent),
        2 => Just(Op::Restart),
    ]
}

fn policy() -> impl Strategy<Value = Policy> {
    let step = (
        prop_oneof![
            Just(Tier::DongOffice),
            Just(Tier::ControlCenter),
            Just(Tier::Emergency)
        ],
        1u32..120,
        0u32..3,
    )
        .prop_map(|(tier, wait_minutes, repeats)| Step {
            tier,
            channels: vec![ChannelKind::Watch, ChannelKind::Sms],
            wait_minutes,
            repeats,
        });
    proptest::collection::vec(step, 1..5).prop_flat_map(|steps| {
        let n = steps.len() as u32;
        (Just(steps), 0..n, 0..n, 0..n, 1u32..2000).prop_map(|(steps, a, b, c, recheck)| {
            let mut s = [a, b, c];
            s.sort();
            Policy {
                version: 1,
                steps,
                stage_start: s,
                notice_channels: vec![ChannelKind::Watch],
                recheck_minutes: recheck,
            }
        })
    })
}

/// Runs the ops, returning every (time, action) and the final state. With
/// `restarts`, the state goes through JSON at each `Restart`.
fn run(
    p: &Policy,
    r: &Router,
    start: Ts,
    stage: Stage,
    consent: bool,
    ops: &[Op],
    restarts: bool,
) -> (Vec<(Ts, Action)>, Escalation) {
    let open = Opening {
        incident_id: "INA:hh:1",
        kind: IncidentKind::Inactivity,
        stage,
        consent,
    };
    let (mut e, out) = Escalation::open(&open, p, r, start);
    let mut log: Vec<(Ts, Action)> = out.into_iter().map(|a| (start, a)).collect();
    let mut now = start;
    for op in ops {
        let out = match op {
            Op::Wait(m) => {
                now = now.plus_minutes(*m);
                e.tick(p, r, now)
            }
            Op::TickDue => match e.next_due() {
                Some(d) => {
                    now = now.max(d);
                    e.tick(p, r, now)
                }
                None => Vec::new(),
            },
            Op::Raise(s) => e.stage_raised(*s, p, r, now),
            Op::Ack => e.acknowledge(now),
            Op::Stop(why) => e.stop(*why, p, now),
            Op::Resolve(recheck) => e.resolve(*recheck, p, now),
            Op::FailCurrent => e.delivery_failed(e.step, e.sends, p, r, now),
            Op::Consent(c) => e.set_consent(*c, p, r, now),
            Op::Restart => {
                if restarts {
                    let json = serde_json::to_vec(&e).unwrap();
                    e = serde_json::from_slice(&json).unwrap();
                }
                Vec::new()
            }
        };
        log.extend(out.into_iter().map(|a| (now, a)));
    }
    (log, e)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(600))]

    /// Message ids never repeat (across reopened rounds too); within a round
    /// alerts move forward in (step, attempt); nothing is alerted after an
    /// acknowledgement, a stop or a resolution until a reopening; a reopening
    /// only follows a resolution, never a stop; a persisted and restored
    /// escalation behaves exactly like one that never stopped.
    #[test]
    fn escalation_invariants(
        p in policy(),
        start_min in 0u32..(14 * 1440),
        stage in prop_oneof![Just(Stage::Attention), Just(Stage::Caution), Just(Stage::Danger)],
        consent in any::<bool>(),
        ops in proptest::collection::vec(op(), 0..40),
    ) {
        let r = router();
        let start = kst(2026, 9, 14, 0, 0).plus_minutes(start_min);
        let (log, end) = run(&p, &r, start, stage, consent, &ops, true);
        let (plain, plain_end) = run(&p, &r, start, stage, consent, &ops, false);
        prop_assert_eq!(&log, &plain);
        prop_assert_eq!(&end, &plain_end);

        let mut ids = HashSet::new();
        let mut last_alert: Option<(u32, u32)> = None;
        let mut closed = false;
        let mut unreachable = false;
        let mut resting = false;
        let mut stopped = false;
        let mut round = 0;
        for (t, a) in &log {
            match a {
                Action::Unreachable { .. } => unreachable = true,
                Action::Resolved { recheck_at } => {
                    prop_assert!(!stopped);
                    prop_assert_eq!(*recheck_at, t.plus_minutes(p.recheck_minutes));
                    resting = true;
                    closed = true;
                }
                Action::Reopened { round: r, .. } => {
                    prop_assert!(resting && !stopped, "reopened without a resolution");
                    prop_assert_eq!(*r, round + 1);
                    round = *r;
                    resting = false;
                    closed = false;
                    unreachable = false;
                    last_alert = None;
                }
                Action::Notify(n) => {
                    prop_assert!(ids.insert(n.message_id.clone()), "repeated {}", n.message_id);
                    if n.purpose == Purpose::Alert {
                        prop_assert!(!closed, "alert after ack/stop");
                        let key = (n.step, n.attempt);
                        prop_assert!(last_alert.is_none_or(|l| key > l));
                        last_alert = Some(key);
                        // Dong offices are only alerted while open.
                        if n.tier == Tier::DongOffice {
                            prop_assert!(r.is_office_open(*t));
                        }
                        // Beyond its repeats only an unreachable last step
                        // is sent again.
                        prop_assert!(unreachable || n.attempt <= p.step(n.step).repeats + 1);
                    }
                }
                Action::Acknowledged => closed = true,
                Action::Stopped { .. } => {
                    closed = true;
                    stopped = true;
                }
                _ => {}
            }
        }
        // Only a held, waiting, retrying or resting escalation has a clock.
        prop_assert_eq!(end.next_due().is_some(), end.is_running());
    }

    /// Without acknowledgement, ticking at each due time sends every step of
    /// the policy from the stage's start step, each 1 + repeats times, then runs out.
    #[test]
    fn unacknowledged_escalation_sends_every_remaining_step_then_runs_out(
        p in policy(),
        start_min in 0u32..(14 * 1440),
        consent in any::<bool>(),
    ) {
        let r = router();
        let start = kst(2026, 9, 14, 0, 0).plus_minutes(start_min);
        let ops = vec![Op::TickDue; 200];
        let (log, end) = run(&p, &r, start, Stage::Attention, consent, &ops, true);
        let alerts: Vec<(u32, u32)> = log.iter().filter_map(|(_, a)| match a {
            Action::Notify(n) if n.purpose == Purpose::Alert => Some((n.step, n.attempt)),
            _ => None,
        }).collect();
        let mut expected = Vec::new();
        for s in p.stage_start[0]..p.steps.len() as u32 {
            for a in 1..=p.step(s).repeats + 1 {
                expected.push((s, a));
            }
        }
        prop_assert_eq!(alerts, expected);
        let exhausted = matches!(end.phase, Phase::Exhausted { .. });
        prop_assert!(exhausted);
    }
}

#[test]
fn held_steps_without_consent_are_never_sent_to_the_control_center_at_night() {
    let (p, r) = (Policy::platform_default(), router());
    // Every hour of a holiday week, without consent: every alert goes out in
    // office hours.
    for h in 0..(24 * 9) {
        let t = kst(2026, 9, 21, 0, 0).plus_minutes(h * 60);
        let (mut e, mut out) = Escalation::open(&opening(Stage::Attention, false), &p, &r, t);
        let mut now = t;
        for _ in 0..20 {
            for a in &out {
                if let Action::Notify(n) = a {
                    if n.tier != Tier::Emergency {
                        assert!(r.is_office_open(now), "{:?} at {:?}", n.tier, now.to_kst());
                    }
                }
            }
            match e.next_due() {
                Some(d) => {
                    now = d;
                    out = e.tick(&p, &r, now);
                }
                None => break,
            }
        }
    }
}

#[test]
fn the_watch_only_policy_is_the_default_on_the_watch_stream() {
    let p = Policy::watch_only();
    p.validate().unwrap();
    let d = Policy::platform_default();
    assert_eq!(p.steps.len(), d.steps.len());
    assert_eq!(p.stage_start, d.stage_start);
    for (s, t) in p.steps.iter().zip(&d.steps) {
        assert_eq!(s.channels, vec![ChannelKind::Watch]);
        assert_eq!(
            (s.tier, s.wait_minutes, s.repeats),
            (t.tier, t.wait_minutes, t.repeats)
        );
    }
    assert_eq!(p.notice_channels, vec![ChannelKind::Watch]);
}
