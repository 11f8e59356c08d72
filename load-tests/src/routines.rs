//! How well detection does on a population whose people live differently
//! (issue 18): runs the household engine over a [`Lives`] population, minute
//! by minute, and judges every inactivity alert against the population's
//! labels — a crisis detected (and how long after it began), or a false
//! alert (someone fine: a routine the thresholds do not fit, a trip, a day
//! in bed), by stage; with the automatic-load trap (crises in homes whose
//! plug is on a refrigerator or a boiler) counted apart.
//!
//! Data flow: [`Lives::readings_at`] → `HouseholdState::on_reading` per
//! plug, and `evaluate` at each household's next deadline → the engine's
//! incident effects → [`Measured`]. In process and deterministic; the
//! `routines` binary prints it.

use dolbom_domain::{EventType, IncidentKind, Stage, Ts, MINUTE_MS};
use dolbom_engine::{Effect, HouseholdState};
use dolbom_town::lives::{Episode, Lives, LivesSpec, Load};

/// What a run measured.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Measured {
    pub households: usize,
    pub days: u32,
    /// Crises that lasted long enough for the first stage (ATTENTION) to be
    /// due before the person was found or the run ended.
    pub crises: usize,
    /// Of those, how many raised an alert while the crisis lasted.
    pub detected: usize,
    /// Minutes from each detected crisis's start to its first alert.
    pub detect_minutes: Vec<i64>,
    /// The same, for crises that began between 07:00 and 20:00 (local).
    pub detect_minutes_daytime: Vec<i64>,
    /// Crises in homes whose plug is on an automatic load, and how many of
    /// them were detected.
    pub automatic_crises: usize,
    pub automatic_detected: usize,
    /// Alerts (openings and stage raises) for people who were fine, by
    /// stage: ATTENTION, CAUTION, DANGER.
    pub false_alerts: [usize; 3],
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

    /// The `q`-quantile (0..=1) of `minutes`, if any.
    pub fn quantile(minutes: &[i64], q: f64) -> Option<i64> {
        let mut v = minutes.to_vec();
        v.sort_unstable();
        crate::percentile(&v, q)
    }
}

/// Runs the engine with its fixed thresholds (each household's defaults)
/// over the population `spec` describes.
pub fn measure_fixed(spec: &LivesSpec) -> Measured {
    let mut lives = Lives::new(spec);
    let cfgs: Vec<_> = lives.configs().cloned().collect();
    let truth: Vec<_> = lives.truth().cloned().collect();
    let mut states: Vec<HouseholdState> = cfgs
        .iter()
        .map(|_| HouseholdState::new(spec.start))
        .collect();
    let mut next: Vec<Option<Ts>> = vec![None; cfgs.len()];
    let end = spec
        .start
        .plus_ms(i64::from(spec.days) * 24 * 60 * MINUTE_MS);
    let mut alerts: Vec<Vec<(Ts, Stage)>> = vec![Vec::new(); cfgs.len()];
    let (mut readings, mut effects) = (Vec::new(), Vec::new());
    let mut t = spec.start;
    while t < end {
        readings.clear();
        lives.readings_at(t, &mut readings);
        for r in &readings {
            let h = r.household;
            // Rejections (none expected from the simulation) change nothing.
            let _ = states[h].on_reading(&cfgs[h], &r.reading(), t, &mut effects);
            take(&mut effects, &mut alerts[h]);
            next[h] = states[h].next_deadline(&cfgs[h], t);
        }
        for h in 0..cfgs.len() {
            if next[h].is_some_and(|d| d <= t) {
                states[h].evaluate(&cfgs[h], t, &mut effects);
                take(&mut effects, &mut alerts[h]);
                next[h] = states[h].next_deadline(&cfgs[h], t);
            }
        }
        t = t.plus_ms(MINUTE_MS);
    }
    judge(spec, &cfgs, &truth, &alerts, end)
}

/// Moves the inactivity alerts (openings and raises) out of `effects`.
fn take(effects: &mut Vec<Effect>, alerts: &mut Vec<(Ts, Stage)>) {
    for e in effects.drain(..) {
        if let Effect::Incident(ev) = e {
            let alert = matches!(ev.event, EventType::Opened | EventType::StageRaised);
            if alert && ev.kind == IncidentKind::Inactivity {
                alerts.push((ev.due_at, ev.stage));
            }
        }
    }
}

fn judge(
    spec: &LivesSpec,
    cfgs: &[dolbom_domain::config::HouseholdConfig],
    truth: &[dolbom_town::lives::LifeTruth],
    alerts: &[Vec<(Ts, Stage)>],
    end: Ts,
) -> Measured {
    let mut m = Measured {
        households: cfgs.len(),
        days: spec.days,
        ..Measured::default()
    };
    for ((cfg, tr), alerts) in cfgs.iter().zip(truth).zip(alerts) {
        let crisis = tr.episodes.iter().find_map(|e| match *e {
            Episode::Crisis { from, found } => Some((from, found.unwrap_or(end))),
            _ => None,
        });
        let automatic = matches!(tr.load, Load::Automatic { .. });
        if let Some((from, until)) = crisis {
            let attention_due =
                from.plus_ms(i64::from(cfg.thresholds.attention_minutes) * MINUTE_MS);
            if attention_due < until {
                m.crises += 1;
                m.automatic_crises += usize::from(automatic);
                let first = alerts.iter().find(|(at, _)| *at >= from && *at < until);
                if let Some((at, _)) = first {
                    m.detected += 1;
                    m.automatic_detected += usize::from(automatic);
                    let minutes = at.since(from) / MINUTE_MS;
                    m.detect_minutes.push(minutes);
                    if (7 * 60..20 * 60).contains(&from.kst_minute_of_day()) {
                        m.detect_minutes_daytime.push(minutes);
                    }
                }
            }
        }
        for (at, stage) in alerts {
            let in_crisis = crisis.is_some_and(|(from, until)| *at >= from && *at < until);
            if !in_crisis {
                if let Some(i) = Stage::WELFARE.iter().position(|s| s == stage) {
                    m.false_alerts[i] += 1;
                }
            }
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
    fn quantiles_pick_from_the_sorted_values() {
        assert_eq!(Measured::quantile(&[30, 10, 20], 0.5), Some(20));
        assert_eq!(Measured::quantile(&[30, 10, 20], 0.0), Some(10));
        assert_eq!(Measured::quantile(&[], 0.5), None);
    }
}
