//! A simulated town of care plugs, with its ground truth.
//!
//! Owns [`Town`]: households with daily routines in Asia/Seoul local time —
//! up around 07:00, appliances and lights switched through the day, lights on
//! at dusk, asleep by 22:00, a rare night-time light — reporting one reading a
//! minute per plug with measurement noise below the noise floors and daylight
//! that drifts slowly (drift is not activity). [`Reporting`] can give each
//! plug its own second of the minute, timer jitter and an extra reading when
//! something is switched. A chosen few households go quiet, go offline, or
//! spend time in hospital (a registered absence) at known times;
//! [`Town::truth`] says who and when, and [`Town::observed`] what their plugs
//! last showed before (the quiet clock's start); [`Town::ground_truth`] turns
//! both into every deadline the platform must meet, and [`truth::check`]
//! judges a run's incident events against it.
//!
//! Data flow: a runner asks [`Town::readings_at`] for each simulated minute and
//! feeds the readings to the engine directly ([`TownReading::reading`]) or, as
//! plugs publish them ([`Town::wire_reading`], [`Town::into_wire`]), onto the
//! standalone in-process bus, the load tests' plug simulator, or Kafka
//! (`plug-sim`); the incident events that come back are checked with
//! [`truth::check`]. Everything is deterministic for a given seed.
//!
//! [`lives`] is a second population for measuring detection rather than
//! checking deadlines: people with their own routines, plugs on loads that
//! switch themselves, benign long quiets and crises, each labelled.

pub mod lives;
pub mod truth;

use dolbom_domain::config::{Absence, AbsenceKind, HouseholdConfig, SleepWindow};
use dolbom_domain::{DeviceId, DongCode, HouseholdId, MunicipalityCode, Ts, MINUTE_MS};
use dolbom_proto::v1 as pb;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const HOUR_MS: i64 = 60 * MINUTE_MS;

/// What a town looks like.
#[derive(Clone, Debug)]
pub struct TownSpec {
    pub households: usize,
    pub seed: u64,
    /// When the simulation (and every household's registration) starts.
    pub start: Ts,
    /// Households that stop all activity at some point (their plugs keep reporting).
    pub quiet: usize,
    /// Of the quiet ones, how many come back to life after a while.
    pub quiet_recovering: usize,
    /// Households whose plug stops reporting (unplugged, broken).
    pub offline: usize,
    /// Households with a registered hospital stay.
    pub hospital: usize,
    /// How long the simulation runs; events are scheduled inside it.
    pub duration_ms: i64,
    /// How plugs report (all on the minute by default).
    pub reporting: Reporting,
    /// Scripts begin this long after the start, within `[from, to)` ms;
    /// `None`: between 1 h and 1 h + half of (duration − 2 days).
    pub scripts_within: Option<(i64, i64)>,
}

/// How the town's plugs report, beyond one reading a minute.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Reporting {
    /// Each plug reports at its own second of the minute instead of all on
    /// the minute.
    pub spread: bool,
    /// The report timer is off by up to ± this many milliseconds.
    pub jitter_ms: i64,
    /// A switch is reported when it happens (an extra reading at that
    /// second), besides the next minute report.
    pub on_change: bool,
}

/// What the town knows about a scripted household's last signs of life,
/// as the platform can see them (from the readings its plugs sent).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Observed {
    /// Observation time of the last reading that showed a change before the
    /// script began: where the platform's quiet clock starts.
    pub quiet_since: Option<Ts>,
    /// Observation time of the last reading sent before the script began.
    pub last_reading: Option<Ts>,
    /// Observation time of the first reading showing a change after the
    /// script began (activity resumed).
    pub resumed_at: Option<Ts>,
}

/// One scripted deviation from the daily routine.
#[derive(Clone, Debug, PartialEq)]
pub enum Scripted {
    /// No activity from `at`; activity resumes at `resumes` if set.
    Quiet { at: Ts, resumes: Option<Ts> },
    /// No readings from `at`; readings resume at `back` if set.
    Offline { at: Ts, back: Option<Ts> },
    /// Away in hospital during the registered absence `[from, to)`.
    Hospital { from: Ts, to: Ts },
}

/// Ground truth about one household.
#[derive(Clone, Debug, PartialEq)]
pub struct Truth {
    pub household: HouseholdId,
    pub script: Scripted,
}

struct Home {
    cfg: HouseholdConfig,
    device: String,
    script: Option<Scripted>,
    rng: SmallRng,
    seq: u64,
    appliance_on: bool,
    lamp_on: bool,
    /// Minutes after midnight this person usually gets up / goes to bed.
    wake: u32,
    sleep: u32,
    /// Offset of this plug's minute report within the minute.
    phase_ms: i64,
    /// (appliance, lamp) as the last reading sent showed them.
    reported: Option<(bool, bool)>,
    last_change: Ts,
    last_sent: Ts,
    observed: Observed,
}

/// A simulated town. See the crate docs.
pub struct Town {
    homes: Vec<Home>,
    truth: Vec<Truth>,
    reporting: Reporting,
}

/// A reading as a plug would send it (ids are pseudonymous, no personal data).
#[derive(Clone, Debug, PartialEq)]
pub struct TownReading {
    pub household: usize,
    pub device_id: String,
    pub observed_at: Ts,
    pub sequence: u64,
    pub watts: f32,
    pub lux: f32,
}

impl TownReading {
    /// The reading as the engine takes it.
    pub fn reading(&self) -> dolbom_engine::Reading<'_> {
        dolbom_engine::Reading {
            device_id: &self.device_id,
            observed_at: self.observed_at,
            sequence: self.sequence,
            watts: Some(self.watts),
            lux: Some(self.lux),
        }
    }
}

/// The town's municipality: 서울특별시 종로구 (its 행정동 codes follow).
pub const MUNICIPALITY: &str = "11110";
const DONGS: &[&str] = &[
    "1111051500",
    "1111053000",
    "1111054000",
    "1111055000",
    "1111056000",
    "1111057000",
    "1111058000",
    "1111060000",
];

impl Town {
    pub fn new(spec: &TownSpec) -> Self {
        let m = MunicipalityCode::new(MUNICIPALITY).expect("valid code");
        let mut rng = SmallRng::seed_from_u64(spec.seed);
        let scripted = spec.quiet + spec.offline + spec.hospital;
        assert!(
            scripted <= spec.households,
            "more scripted households than households"
        );
        // Spread the scripted ones over the town.
        let mut picks: Vec<usize> = (0..spec.households).collect();
        for i in 0..scripted {
            let j = rng.random_range(i..spec.households);
            picks.swap(i, j);
        }
        let day = 24 * HOUR_MS;
        let window = (spec.duration_ms - 2 * day).max(HOUR_MS);
        let mut homes = Vec::with_capacity(spec.households);
        let mut truth = Vec::new();
        let mut script_of = vec![None; spec.households];
        for (n, &i) in picks[..scripted].iter().enumerate() {
            // Deviations start within the first part of the run so that their
            // stages have time to fall due.
            let at = match spec.scripts_within {
                Some((from, to)) => spec.start.plus_ms(rng.random_range(from..to.max(from + 1))),
                None => spec
                    .start
                    .plus_ms(HOUR_MS + rng.random_range(0..window.max(1)) / 2),
            };
            let s = if n < spec.quiet {
                let resumes = (n < spec.quiet_recovering)
                    .then(|| at.plus_ms(rng.random_range(13 * HOUR_MS..20 * HOUR_MS)));
                Scripted::Quiet { at, resumes }
            } else if n < spec.quiet + spec.offline {
                let back =
                    (n % 2 == 0).then(|| at.plus_ms(rng.random_range(2 * HOUR_MS..8 * HOUR_MS)));
                Scripted::Offline { at, back }
            } else {
                Scripted::Hospital {
                    from: at,
                    to: at.plus_ms(rng.random_range(day..2 * day)),
                }
            };
            script_of[i] = Some(s);
        }
        for (i, script) in script_of.into_iter().enumerate() {
            let id = HouseholdId::new(&format!("hh-{i:06}")).expect("valid id");
            let device = format!("plug-{i:06}");
            let dong = DongCode::new(DONGS[i % DONGS.len()], m).expect("valid dong");
            let mut cfg = HouseholdConfig::with_defaults(
                id.clone(),
                dong,
                [DeviceId::new(&device).expect("valid device")],
                spec.start,
            );
            cfg.night_holiday_consent = i % 10 < 7;
            let mut hrng =
                SmallRng::seed_from_u64(spec.seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let wake = hrng.random_range(5 * 60..8 * 60);
            let sleep = hrng.random_range(21 * 60..23 * 60 + 30);
            if i % 3 == 0 {
                cfg.sleep_window = Some(SleepWindow {
                    start_minute: sleep as u16,
                    end_minute: (wake + 30) as u16,
                });
            }
            if let Some(Scripted::Hospital { from, to }) = &script {
                cfg.absences.push(Absence {
                    kind: AbsenceKind::Hospital,
                    starts_at: *from,
                    ends_at: *to,
                });
            }
            cfg.validate().expect("generated configuration is valid");
            if let Some(s) = &script {
                truth.push(Truth {
                    household: id,
                    script: s.clone(),
                });
            }
            let phase_ms = if spec.reporting.spread {
                hrng.random_range(0..MINUTE_MS)
            } else {
                0
            };
            homes.push(Home {
                cfg,
                device,
                script,
                rng: hrng,
                seq: 0,
                appliance_on: false,
                lamp_on: false,
                wake,
                sleep,
                phase_ms,
                reported: None,
                last_change: spec.start,
                last_sent: spec.start,
                observed: Observed::default(),
            });
        }
        Self {
            homes,
            truth,
            reporting: spec.reporting,
        }
    }

    /// Gives the scripted households these thresholds and offline limit
    /// instead of the platform defaults, so that their stages fall due
    /// within hours (thresholds are per household); everyone else keeps the
    /// defaults, which their routines never reach in a run of a few hours.
    ///
    /// # Panics
    /// If the resulting configuration is invalid.
    pub fn set_scripted_thresholds(
        &mut self,
        thresholds: dolbom_domain::config::Thresholds,
        offline_after_minutes: u32,
    ) {
        for h in self.homes.iter_mut().filter(|h| h.script.is_some()) {
            h.cfg.thresholds = thresholds;
            h.cfg.offline_after_minutes = offline_after_minutes;
            h.cfg.validate().expect("thresholds are valid");
        }
    }

    /// What the platform could see of household `household`'s script: see
    /// [`Observed`]. Filled in as the simulation runs.
    pub fn observed(&self, household: usize) -> Observed {
        self.homes[household].observed
    }

    /// The index of a household id (`hh-NNNNNN`).
    pub fn index_of(&self, household: &HouseholdId) -> Option<usize> {
        let i: usize = household.as_str().strip_prefix("hh-")?.parse().ok()?;
        (i < self.homes.len() && self.homes[i].cfg.household_id == *household).then_some(i)
    }

    pub fn len(&self) -> usize {
        self.homes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.homes.is_empty()
    }

    pub fn config(&self, household: usize) -> &HouseholdConfig {
        &self.homes[household].cfg
    }

    pub fn configs(&self) -> impl Iterator<Item = &HouseholdConfig> {
        self.homes.iter().map(|h| &h.cfg)
    }

    /// A reading as a plug publishes it (`dolbom.v1.PlugReading`).
    pub fn wire_reading(&self, r: &TownReading) -> pb::PlugReading {
        pb::PlugReading {
            device_id: r.device_id.clone(),
            household_id: self.config(r.household).household_id.to_string(),
            observed_at_ms: r.observed_at.millis(),
            watts: Some(r.watts as f64),
            lux: Some(r.lux as f64),
            sequence: r.sequence,
            current_amps: None,
        }
    }

    /// Like [`Town::wire_reading`], reusing the reading's device id.
    pub fn into_wire(&self, r: TownReading) -> pb::PlugReading {
        pb::PlugReading {
            household_id: self.config(r.household).household_id.to_string(),
            device_id: r.device_id,
            observed_at_ms: r.observed_at.millis(),
            watts: Some(r.watts as f64),
            lux: Some(r.lux as f64),
            sequence: r.sequence,
            current_amps: None,
        }
    }

    /// Who deviates from the routine, and when.
    /// The ground truth of a run that ended at `end`: every scripted
    /// household with the deadlines its plugs' own readings imply (no
    /// blackouts or stalls: a runner that makes those adds them).
    pub fn ground_truth(&self, start: Ts, end: Ts, seed: u64) -> truth::GroundTruth {
        use truth::{ScriptKind, ScriptedHousehold};
        let far = i64::MAX / 4;
        let scripted = self
            .truth
            .iter()
            .map(|tr| {
                let i = self.index_of(&tr.household).expect("scripted household");
                let cfg = self.config(i);
                let seen = self.observed(i);
                let (kind, from, until) = match &tr.script {
                    Scripted::Quiet { at, resumes } => (ScriptKind::Quiet, *at, *resumes),
                    Scripted::Offline { at, back } => (ScriptKind::Offline, *at, *back),
                    Scripted::Hospital { from, to } => (ScriptKind::Hospital, *from, Some(*to)),
                };
                ScriptedHousehold {
                    household: tr.household.to_string(),
                    kind,
                    from_ms: from.millis(),
                    until_ms: until.map(|t| t.millis()),
                    quiet_since_ms: seen.quiet_since.map(|t| t.millis()),
                    last_reading_ms: seen.last_reading.map(|t| t.millis()),
                    resumed_at_ms: seen.resumed_at.map(|t| t.millis()),
                    deadlines_ms: seen
                        .quiet_since
                        .map_or([far; 3], |q| truth::stage_deadlines(cfg, q)),
                    offline_due_ms: (kind == ScriptKind::Offline)
                        .then(|| {
                            seen.last_reading
                                .map(|r| r.plus_ms(cfg.offline_after_ms()).millis())
                        })
                        .flatten(),
                }
            })
            .collect();
        truth::GroundTruth {
            start_ms: start.millis(),
            end_ms: end.millis(),
            households: self.len(),
            seed,
            scripted,
            blackouts: Vec::new(),
            stalls: Vec::new(),
        }
    }

    pub fn truth(&self) -> &[Truth] {
        &self.truth
    }

    /// Every reading of the minute starting at `t`, appended to `out` in
    /// observation order per plug. With default [`Reporting`] that is one
    /// reading per plug observed at `t`; with `spread`, `jitter_ms` and
    /// `on_change` the readings fall anywhere in (about) `[t, t + 1 min)`.
    pub fn readings_at(&mut self, t: Ts, out: &mut Vec<TownReading>) {
        let minute = t.kst_minute_of_day();
        let daylight = daylight_lux(minute);
        let rep = self.reporting;
        for (i, h) in self.homes.iter_mut().enumerate() {
            let (mut active, mut reporting, mut home) = (true, true, true);
            let mut scripted = false;
            match &h.script {
                Some(Scripted::Quiet { at, resumes }) if t >= *at => {
                    active = resumes.is_some_and(|r| t >= r);
                    scripted = true;
                }
                Some(Scripted::Offline { at, back }) if t >= *at => {
                    reporting = back.is_some_and(|b| t >= b);
                    scripted = true;
                }
                // They switch things off when they leave, an hour before the
                // registered absence begins.
                Some(Scripted::Hospital { from, to }) if t >= from.plus_ms(-HOUR_MS) && t < *to => {
                    home = false;
                }
                _ => {}
            }
            if scripted && h.observed.quiet_since.is_none() {
                h.observed.quiet_since = Some(h.last_change);
                h.observed.last_reading = Some(h.last_sent);
            }
            let before = (h.appliance_on, h.lamp_on);
            let awake = if h.wake < h.sleep {
                (h.wake..h.sleep).contains(&minute)
            } else {
                minute >= h.wake || minute < h.sleep
            };
            if !home {
                h.appliance_on = false;
                h.lamp_on = false;
            } else if active {
                // The kettle or the radio goes on when they get up, everything
                // off at bedtime; something is switched every half hour or so
                // while awake, and a light at night now and then.
                let p = if awake { 1.0 / 30.0 } else { 1.0 / 400.0 };
                if minute == h.wake {
                    h.appliance_on = true;
                } else if minute == h.sleep {
                    h.appliance_on = false;
                } else if h.rng.random_bool(p) {
                    h.appliance_on = !h.appliance_on;
                }
                let dark = !(7 * 60..18 * 60).contains(&minute);
                let want_lamp = awake && dark;
                if want_lamp != h.lamp_on && h.rng.random_bool(0.2) {
                    h.lamp_on = want_lamp;
                }
            }
            if !reporting {
                continue;
            }
            let after = (h.appliance_on, h.lamp_on);
            let jitter = if rep.jitter_ms > 0 {
                h.rng.random_range(-rep.jitter_ms..=rep.jitter_ms)
            } else {
                0
            };
            // Never before the previous reading: a plug's clock does not run
            // backwards between two reports.
            let floor = if h.seq > 0 {
                h.last_sent.plus_ms(1)
            } else {
                Ts::MIN
            };
            let report_at = t.plus_ms(h.phase_ms + jitter).max(floor);
            // The switch, if any, happens at some second of the minute; the
            // minute report shows it if it came first.
            let switch = (rep.on_change && before != after).then(|| {
                let mut at = t.plus_ms(h.rng.random_range(0..MINUTE_MS));
                if at.since(report_at).abs() < 1000 {
                    at = report_at.plus_ms(1000);
                }
                at
            });
            let mut emit = |h: &mut Home, at: Ts, state: (bool, bool)| {
                h.seq += 1;
                let noise_w: f32 = h.rng.random_range(-1.0..1.0);
                let noise_l: f32 = h.rng.random_range(-3.0..3.0);
                let watts = if state.0 { 85.0 } else { 3.0 } + noise_w;
                let lux = daylight + if state.1 { 180.0 } else { 0.0 } + 5.0 + noise_l;
                if h.reported.is_some_and(|r| r != state) {
                    h.last_change = at;
                    if h.observed.quiet_since.is_some() && h.observed.resumed_at.is_none() {
                        h.observed.resumed_at = Some(at);
                    }
                }
                h.reported = Some(state);
                h.last_sent = at;
                out.push(TownReading {
                    household: i,
                    device_id: h.device.clone(),
                    observed_at: at,
                    sequence: h.seq,
                    watts: watts.max(0.0),
                    lux: lux.max(0.0),
                });
            };
            match switch {
                Some(at) if at < report_at => {
                    emit(h, at, after);
                    emit(h, report_at, after);
                }
                Some(at) => {
                    emit(h, report_at, before);
                    emit(h, at, after);
                }
                None => emit(h, report_at, after),
            }
        }
    }
}

/// Daylight through a window: dark at night, ramps slowly (a few lux a
/// minute, below the noise floor) to 300 lux at noon.
fn daylight_lux(minute: u32) -> f32 {
    let m = minute as f32;
    let (rise, set) = (6.0 * 60.0, 19.0 * 60.0);
    if m <= rise || m >= set {
        return 0.0;
    }
    let x = (m - rise) / (set - rise) * std::f32::consts::PI;
    300.0 * x.sin()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> TownSpec {
        TownSpec {
            households: 50,
            seed: 7,
            start: Ts::parse_rfc3339("2026-03-02T00:00:00+09:00").unwrap(),
            quiet: 3,
            quiet_recovering: 1,
            offline: 2,
            hospital: 1,
            duration_ms: 72 * HOUR_MS,
            reporting: Reporting::default(),
            scripts_within: None,
        }
    }

    #[test]
    fn deterministic_and_scripted() {
        let mut a = Town::new(&spec());
        let mut b = Town::new(&spec());
        assert_eq!(a.truth(), b.truth());
        assert_eq!(a.truth().len(), 6);
        let (mut ra, mut rb) = (vec![], vec![]);
        let t = spec().start.plus_ms(10 * HOUR_MS);
        a.readings_at(t, &mut ra);
        b.readings_at(t, &mut rb);
        assert_eq!(ra, rb);
        assert!(ra.len() <= 50 && ra.len() >= 48);
    }

    #[test]
    fn daylight_drift_stays_below_the_noise_floor() {
        for m in 0..1439 {
            assert!((daylight_lux(m + 1) - daylight_lux(m)).abs() < 4.0);
        }
    }
}
