//! How well detection does on a population whose people live differently
//! (issue 18): runs the household engine over a [`Lives`] population,
//! minute by minute, once per [`Detection`] (fixed thresholds only, or
//! learned detection on top of them) over the very same readings, and
//! judges every inactivity alert against the population's labels — a crisis
//! detected (and how long after it began), or a false alert (someone fine:
//! a routine the thresholds do not fit, a trip, a day in bed), by stage;
//! with the automatic-load trap (crises in homes whose plug is on a
//! refrigerator or a boiler) counted apart.
//!
//! Data flow: [`Lives::readings_at`] → `HouseholdState::on_reading` per
//! plug and per detection, and `evaluate` at each household's next
//! deadline → the engine's incident effects → [`Measured`]. In process and
//! deterministic; the `routines` binary prints it and draws it.

use dolbom_domain::config::{HouseholdConfig, Learning, RoutineSensitivity};
use dolbom_domain::{EventType, IncidentKind, Stage, Ts, MINUTE_MS};
use dolbom_engine::{Effect, HouseholdState};
use dolbom_town::lives::{Episode, LifeTruth, Lives, LivesSpec, Load};

/// How the engine is set up for a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detection {
    /// Today's platform before issue 18: the fixed thresholds, every power
    /// change counted as activity.
    Fixed,
    /// The fixed thresholds plus learned detection: automatic loads
    /// recognised, the routine at this sensitivity, and the fixed
    /// ATTENTION deferred through the home's usual quiet or not.
    Learned {
        routine: RoutineSensitivity,
        defer: bool,
    },
}

impl Detection {
    pub fn name(self) -> String {
        match self {
            Detection::Fixed => "fixed".into(),
            Detection::Learned { routine, defer } => format!(
                "learned ({}{})",
                format!("{routine:?}").to_lowercase(),
                if defer { ", usual quiet deferred" } else { "" }
            ),
        }
    }

    fn learning(self) -> Learning {
        match self {
            Detection::Fixed => Learning {
                routine: RoutineSensitivity::Off,
                recognise_automatic_loads: false,
                defer_through_usual_quiet: false,
            },
            Detection::Learned { routine, defer } => Learning {
                routine,
                recognise_automatic_loads: true,
                defer_through_usual_quiet: defer,
            },
        }
    }
}

/// Start-of-crisis windows (local hours) the time to alert is split by.
pub const START_WINDOWS: [(u32, u32); 4] = [(0, 6), (6, 12), (12, 18), (18, 24)];

/// What a run measured for one detection.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Measured {
    pub households: usize,
    pub days: u32,
    /// Crises that lasted long enough for the fixed ATTENTION threshold to
    /// be due before the person was found or the run ended.
    pub crises: usize,
    /// Of those, how many raised an alert while the crisis lasted.
    pub detected: usize,
    /// Per crisis (in household order), minutes from its start to its first
    /// alert, if any.
    pub per_crisis: Vec<Option<i64>>,
    /// Minutes from each detected crisis's start to its first alert.
    pub detect_minutes: Vec<i64>,
    /// The same, for crises that began between 07:00 and 20:00 (local).
    pub detect_minutes_daytime: Vec<i64>,
    /// The same, for daytime crises that began after the learning period
    /// (the routine trusted): what learned detection does once it has
    /// learned.
    pub detect_minutes_daytime_learned: Vec<i64>,
    /// Crises that began after the learning period.
    pub crises_learned: usize,
    /// The same, by the window of [`START_WINDOWS`] the crisis began in.
    pub detect_minutes_by_start: [Vec<i64>; 4],
    /// Crises in homes whose plug is on an automatic load, and how many of
    /// them were detected.
    pub automatic_crises: usize,
    pub automatic_detected: usize,
    /// Alerts (openings and stage raises) for people who were fine, by
    /// stage: ATTENTION, CAUTION, DANGER.
    pub false_alerts: [usize; 3],
    /// Of the false alerts, those during a labelled benign quiet (a trip, a
    /// day in bed, a hospital stay): a quiet no detector can tell from a
    /// crisis by the plug alone.
    pub false_in_benign_quiet: usize,
    /// Of the false alerts, those the learned routine raised (the rest are
    /// the fixed thresholds'), and those in homes whose plug is on an
    /// automatic load.
    pub false_by_routine: usize,
    pub false_in_automatic_homes: usize,
    /// False alerts by the kind of home: `fridge`, `boiler` or `person`
    /// (what the plug is on) and the person's chronotype.
    pub false_by_home: std::collections::BTreeMap<String, usize>,
    /// Households of each kind, for rates.
    pub homes: std::collections::BTreeMap<String, usize>,
    /// False alerts after the learning period ([`LEARNING_DAYS`] from the
    /// start), by stage, and the days of the run after it.
    pub false_after_learning: [usize; 3],
    pub days_after_learning: u32,
}

/// The learning period the judge sets apart (the engine's: 14 days, and
/// the day registration falls on).
pub const LEARNING_DAYS: u32 = 15;

/// What the plug is on, and the person's chronotype.
fn home_kind(tr: &LifeTruth) -> String {
    format!("{}/{:?}", tr.load.name(), tr.chronotype)
}

impl Measured {
    /// Household-days observed.
    pub fn household_days(&self) -> f64 {
        self.households as f64 * f64::from(self.days)
    }

    /// False alerts per 1 000 household-days, by stage.
    pub fn false_per_thousand_days(&self) -> [f64; 3] {
        self.false_alerts
            .map(|n| n as f64 * 1000.0 / self.household_days().max(1.0))
    }

    /// False alerts per 1 000 household-days after the learning period.
    pub fn false_after_learning_per_thousand_days(&self) -> [f64; 3] {
        let days = self.households as f64 * f64::from(self.days_after_learning);
        self.false_after_learning
            .map(|n| n as f64 * 1000.0 / days.max(1.0))
    }

    /// All false alerts per household-day.
    pub fn false_per_day(&self) -> f64 {
        self.false_alerts.iter().sum::<usize>() as f64 / self.household_days().max(1.0)
    }

    /// The `q`-quantile (0..=1) of `minutes`, if any.
    pub fn quantile(minutes: &[i64], q: f64) -> Option<i64> {
        let mut v = minutes.to_vec();
        v.sort_unstable();
        crate::percentile(&v, q)
    }
}

/// Crises where `b` alerted later than `a` (or not at all while `a` did):
/// learned detection must never be later than the fixed thresholds.
pub fn later_than(a: &Measured, b: &Measured) -> usize {
    later_by(a, b).len()
}

/// For each crisis `b` alerted later than `a`: minutes after its start
/// for `a` and for `b` (`None`: never).
pub fn later_by(a: &Measured, b: &Measured) -> Vec<(i64, Option<i64>)> {
    a.per_crisis
        .iter()
        .zip(&b.per_crisis)
        .filter_map(|(a, b)| match (*a, *b) {
            (Some(x), Some(y)) if y > x => Some((x, Some(y))),
            (Some(x), None) => Some((x, None)),
            _ => None,
        })
        .collect()
}

/// One engine per household for one detection.
struct Run {
    cfgs: Vec<HouseholdConfig>,
    states: Vec<HouseholdState>,
    next: Vec<Option<Ts>>,
    alerts: Vec<Vec<Alert>>,
}

/// An inactivity alert: when, at which stage, and whether the learned
/// routine raised it.
#[derive(Clone, Copy, Debug)]
struct Alert {
    at: Ts,
    stage: Stage,
    routine: bool,
}

/// Runs the engine once per detection over the population `spec`
/// describes, all on the same readings; one [`Measured`] per detection.
pub fn measure(spec: &LivesSpec, detections: &[Detection]) -> Vec<Measured> {
    let mut lives = Lives::new(spec);
    let truth: Vec<_> = lives.truth().cloned().collect();
    let mut runs: Vec<Run> = detections
        .iter()
        .map(|d| {
            let cfgs: Vec<HouseholdConfig> = lives
                .configs()
                .map(|c| HouseholdConfig {
                    learning: d.learning(),
                    ..c.clone()
                })
                .collect();
            Run {
                states: cfgs
                    .iter()
                    .map(|_| HouseholdState::new(spec.start))
                    .collect(),
                next: vec![None; cfgs.len()],
                alerts: vec![Vec::new(); cfgs.len()],
                cfgs,
            }
        })
        .collect();
    let end = spec
        .start
        .plus_ms(i64::from(spec.days) * 24 * 60 * MINUTE_MS);
    let (mut readings, mut effects) = (Vec::new(), Vec::new());
    let mut t = spec.start;
    while t < end {
        readings.clear();
        lives.readings_at(t, &mut readings);
        for run in &mut runs {
            for r in &readings {
                let h = r.household;
                // Rejections (none expected from the simulation) change nothing.
                let _ = run.states[h].on_reading(&run.cfgs[h], &r.reading(), t, &mut effects);
                take(&mut effects, &mut run.alerts[h]);
                run.next[h] = run.states[h].next_deadline(&run.cfgs[h], t);
            }
            for h in 0..run.cfgs.len() {
                if run.next[h].is_some_and(|d| d <= t) {
                    run.states[h].evaluate(&run.cfgs[h], t, &mut effects);
                    take(&mut effects, &mut run.alerts[h]);
                    run.next[h] = run.states[h].next_deadline(&run.cfgs[h], t);
                }
            }
        }
        t = t.plus_ms(MINUTE_MS);
    }
    runs.iter()
        .map(|run| judge(spec, &run.cfgs, &truth, &run.alerts, end))
        .collect()
}

/// Runs the engine with its fixed thresholds alone.
pub fn measure_fixed(spec: &LivesSpec) -> Measured {
    measure(spec, &[Detection::Fixed]).remove(0)
}

/// Moves the inactivity alerts (openings and raises) out of `effects`.
fn take(effects: &mut Vec<Effect>, alerts: &mut Vec<Alert>) {
    for e in effects.drain(..) {
        if let Effect::Incident(ev) = e {
            let alert = matches!(ev.event, EventType::Opened | EventType::StageRaised);
            if alert && ev.kind == IncidentKind::Inactivity {
                alerts.push(Alert {
                    at: ev.due_at,
                    stage: ev.stage,
                    routine: ev.reason.routine.is_some(),
                });
            }
        }
    }
}

fn judge(
    spec: &LivesSpec,
    cfgs: &[HouseholdConfig],
    truth: &[LifeTruth],
    alerts: &[Vec<Alert>],
    end: Ts,
) -> Measured {
    let mut m = Measured {
        households: cfgs.len(),
        days: spec.days,
        days_after_learning: spec.days.saturating_sub(LEARNING_DAYS),
        ..Measured::default()
    };
    let learned_from = spec
        .start
        .plus_ms(i64::from(LEARNING_DAYS) * 24 * 60 * MINUTE_MS);
    for ((cfg, tr), alerts) in cfgs.iter().zip(truth).zip(alerts) {
        let crisis = tr.episodes.iter().find_map(|e| match *e {
            Episode::Crisis { from, found } => Some((from, found.unwrap_or(end))),
            _ => None,
        });
        let automatic = matches!(tr.load, Load::Automatic { .. });
        let kind = home_kind(tr);
        *m.homes.entry(kind.clone()).or_default() += 1;
        if let Some((from, until)) = crisis {
            let attention_due =
                from.plus_ms(i64::from(cfg.thresholds.attention_minutes) * MINUTE_MS);
            if attention_due < until {
                m.crises += 1;
                m.crises_learned += usize::from(from >= learned_from);
                m.automatic_crises += usize::from(automatic);
                let first = alerts.iter().find(|a| a.at >= from && a.at < until);
                let minutes = first.map(|a| a.at.since(from) / MINUTE_MS);
                m.per_crisis.push(minutes);
                if let Some(minutes) = minutes {
                    m.detected += 1;
                    m.automatic_detected += usize::from(automatic);
                    m.detect_minutes.push(minutes);
                    let start = from.kst_minute_of_day();
                    if (7 * 60..20 * 60).contains(&start) {
                        m.detect_minutes_daytime.push(minutes);
                        if from >= learned_from {
                            m.detect_minutes_daytime_learned.push(minutes);
                        }
                    }
                    let w = START_WINDOWS
                        .iter()
                        .position(|(a, b)| (a * 60..b * 60).contains(&start))
                        .expect("windows cover the day");
                    m.detect_minutes_by_start[w].push(minutes);
                }
            }
        }
        for a in alerts {
            let at = a.at;
            let in_crisis = crisis.is_some_and(|(from, until)| at >= from && at < until);
            if in_crisis {
                continue;
            }
            if let Some(i) = Stage::WELFARE.iter().position(|s| *s == a.stage) {
                m.false_alerts[i] += 1;
                if at >= learned_from {
                    m.false_after_learning[i] += 1;
                }
            }
            let benign = tr.episodes.iter().any(|e| match *e {
                Episode::Trip { from, to }
                | Episode::Sick { from, to }
                | Episode::Hospital { from, to } => at >= from && at < to,
                _ => false,
            });
            m.false_in_benign_quiet += usize::from(benign);
            m.false_by_routine += usize::from(a.routine);
            m.false_in_automatic_homes += usize::from(automatic);
            *m.false_by_home.entry(kind.clone()).or_default() += 1;
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_thresholds_find_every_long_crisis_in_homes_a_person_switches() {
        let spec = LivesSpec {
            households: 300,
            days: 14,
            crisis_share: 0.1,
            automatic_share: 0.3,
            ..LivesSpec::default()
        };
        let m = measure_fixed(&spec);
        assert!(m.crises >= 15, "{m:?}");
        // Every crisis the thresholds could see (no automatic load on the
        // plug) is found, never before it began and never later than the
        // ATTENTION threshold after it began (plus the minute it is judged).
        let person = m.crises - m.automatic_crises;
        let person_found = m.detected - m.automatic_detected;
        assert_eq!(person_found, person, "{m:?}");
        let attention = 12 * 60;
        assert!(
            m.detect_minutes.iter().all(|&d| d <= attention + 1),
            "{m:?}"
        );
        // A refrigerator cycling looks like life to the fixed thresholds.
        assert!(m.automatic_crises > 0, "{m:?}");
        assert!(m.automatic_detected < m.automatic_crises, "{m:?}");
    }

    #[test]
    fn learned_detection_finds_crises_sooner_and_never_later_than_fixed() {
        // Long enough to learn (14 days) and then see crises.
        let spec = LivesSpec {
            households: 400,
            days: 24,
            crisis_share: 0.12,
            automatic_share: 0.3,
            seed: 5,
            ..LivesSpec::default()
        };
        let m = measure(
            &spec,
            &[
                Detection::Fixed,
                Detection::Learned {
                    routine: RoutineSensitivity::Normal,
                    defer: false,
                },
            ],
        );
        let (fixed, learned) = (&m[0], &m[1]);
        assert_eq!(fixed.crises, learned.crises);
        assert!(fixed.crises >= 20, "{fixed:?}");
        // Fridges no longer hide a crisis.
        assert!(
            learned.automatic_detected > fixed.automatic_detected,
            "{learned:?}"
        );
        assert!(learned.detected > fixed.detected, "{learned:?}");
        // The fixed thresholds stay the safety net: never later.
        assert_eq!(later_than(fixed, learned), 0);
        // And the learned routine is faster where the home is normally busy.
        let p50 = |m: &Measured| Measured::quantile(&m.detect_minutes_daytime, 0.5);
        assert!(
            p50(learned) < p50(fixed),
            "{:?} {:?}",
            p50(learned),
            p50(fixed)
        );
    }

    #[test]
    fn quantiles_pick_from_the_sorted_values() {
        assert_eq!(Measured::quantile(&[30, 10, 20], 0.5), Some(20));
        assert_eq!(Measured::quantile(&[30, 10, 20], 0.0), Some(10));
        assert_eq!(Measured::quantile(&[], 0.5), None);
    }
}
