//! A town whose people live differently (issue 18's ground truth): each
//! household has its own routine — early risers, night owls, shift workers,
//! long sleepers, people who nap, later weekends — and its plug sits on
//! either something a person switches (a TV, a kettle) or something that
//! switches itself (a refrigerator's compressor, a boiler on a timer: not a
//! sign of life — though a fridge's door, opened by a person, lights its
//! lamp and starts the compressor early). Rooms get seasonal daylight, a
//! lamp when someone is up after dark, and for half the people a light now
//! and then in the day. Over the run some households have benign long quiets (a trip,
//! a day in bed with a cold, a registered hospital stay), some a crisis
//! (activity stops at a random time of day while the plug keeps reporting
//! and automatic loads keep cycling; some are found and recover), and some
//! plugs go offline. [`Lives::truth`] labels every episode, so a run can
//! count detections, time to detect and false alarms.
//!
//! Data flow: like [`crate::Town`], a runner asks [`Lives::readings_at`] for
//! each simulated minute and feeds the readings to the platform; the
//! incident events that come back are judged against [`Lives::truth`].
//! Deterministic for a given seed.

use crate::TownReading;
use chrono::{Datelike, Timelike};
use dolbom_domain::config::{Absence, AbsenceKind, HouseholdConfig};
use dolbom_domain::{DeviceId, DongCode, HouseholdId, MunicipalityCode, Ts, MINUTE_MS};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;

/// What the population looks like.
#[derive(Clone, Debug)]
pub struct LivesSpec {
    pub households: usize,
    pub seed: u64,
    /// When the run (and every registration) starts.
    pub start: Ts,
    pub days: u32,
    /// Share of households with a crisis during the run…
    pub crisis_share: f64,
    /// …of which this share is found and recovers.
    pub crisis_recovering: f64,
    /// Share of households with a benign long quiet (trip or sick day).
    pub benign_share: f64,
    /// Share with a registered hospital stay.
    pub hospital_share: f64,
    /// Share whose plug goes offline for a while.
    pub offline_share: f64,
    /// Share of plugs on an automatic load (a refrigerator or a boiler).
    pub automatic_share: f64,
}

impl Default for LivesSpec {
    fn default() -> Self {
        Self {
            households: 1_000,
            seed: 1,
            start: Ts::kst_midnight(chrono::NaiveDate::from_ymd_opt(2026, 3, 2).expect("date")),
            days: 30,
            crisis_share: 0.02,
            crisis_recovering: 0.5,
            benign_share: 0.05,
            hospital_share: 0.01,
            offline_share: 0.01,
            automatic_share: 0.25,
        }
    }
}

/// When a person is up, in minutes after local midnight (a shift worker's
/// day may wrap past midnight).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chronotype {
    EarlyRiser,
    Regular,
    NightOwl,
    LongSleeper,
    ShiftWorker,
}

/// What the plug measures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Load {
    /// Switched by the person: draws `watts` while in use.
    Person { watts: f32 },
    /// Switches itself: on for `on_min` of every `period_min` minutes,
    /// drawing `watts`, whoever is (or is not) home.
    Automatic {
        period_min: u32,
        on_min: u32,
        watts: f32,
    },
}

/// One labelled episode of a household's run.
#[derive(Clone, Debug, PartialEq)]
pub enum Episode {
    /// Activity stops at `from` (the plug keeps reporting); `found` when the
    /// person is found and activity resumes, if they are.
    Crisis { from: Ts, found: Option<Ts> },
    /// Away without telling anyone (a trip): benign, no activity.
    Trip { from: Ts, to: Ts },
    /// A day in bed with a cold: benign, almost no activity.
    Sick { from: Ts, to: Ts },
    /// In hospital, registered as an absence.
    Hospital { from: Ts, to: Ts },
    /// The plug sends nothing.
    Offline { from: Ts, to: Ts },
}

impl Load {
    /// What the plug is on: `person` (an appliance a person switches),
    /// `fridge` (a compressor cycling within two hours, whose door a person
    /// opens) or `boiler` (a load on a long timer).
    pub fn name(&self) -> &'static str {
        match self {
            Load::Person { .. } => "person",
            _ if self.is_fridge() => "fridge",
            Load::Automatic { .. } => "boiler",
        }
    }

    /// A refrigerator's compressor (cycling within two hours).
    pub fn is_fridge(&self) -> bool {
        matches!(*self, Load::Automatic { period_min, .. } if period_min < 120)
    }
}

impl Episode {
    fn covers(&self, t: Ts) -> bool {
        match *self {
            Episode::Crisis { from, found } => t >= from && found.is_none_or(|f| t < f),
            Episode::Trip { from, to }
            | Episode::Sick { from, to }
            | Episode::Hospital { from, to }
            | Episode::Offline { from, to } => t >= from && t < to,
        }
    }
}

/// Ground truth about one household.
#[derive(Clone, Debug, PartialEq)]
pub struct LifeTruth {
    pub household: HouseholdId,
    pub chronotype: Chronotype,
    pub load: Load,
    pub episodes: Vec<Episode>,
}

struct Home {
    cfg: HouseholdConfig,
    device: String,
    truth: LifeTruth,
    rng: SmallRng,
    seq: u64,
    /// Minutes after midnight they get up and go to bed on weekdays.
    wake: u32,
    sleep: u32,
    /// How much later weekends start and end.
    weekend_shift: u32,
    naps: bool,
    /// Chance per awake minute of using the appliance (a habit).
    use_rate: f64,
    /// Minutes left of the current use.
    in_use: u32,
    /// Phase of an automatic load's cycle.
    phase: u32,
    /// A refrigerator: chance per awake minute that its door is opened
    /// (the compressor starts early if it was off), and its lamp's watts
    /// (an LED of 2–4 W stays under the noise floor; a bulb does not).
    door_rate: f64,
    fridge_lamp: f32,
    /// Chance per awake minute in daylight of switching a room light on
    /// (0 for people who never do), and minutes it stays on.
    day_lights: f64,
    light_left: u32,
}

/// The population. See the module docs.
pub struct Lives {
    homes: Vec<Home>,
}

/// The dongs of the population (서울특별시 종로구, [`crate::MUNICIPALITY`]).
const DONGS: &[&str] = &["1111051500", "1111053000", "1111054000", "1111055000"];

impl Lives {
    pub fn new(spec: &LivesSpec) -> Self {
        let m = MunicipalityCode::new(crate::MUNICIPALITY).expect("valid code");
        let mut rng = SmallRng::seed_from_u64(spec.seed);
        let run_ms = i64::from(spec.days) * DAY_MS;
        let homes = (0..spec.households)
            .map(|i| {
                let mut r = SmallRng::seed_from_u64(rng.random());
                let chronotype = match r.random_range(0..100) {
                    0..15 => Chronotype::EarlyRiser,
                    15..60 => Chronotype::Regular,
                    60..75 => Chronotype::NightOwl,
                    75..90 => Chronotype::LongSleeper,
                    _ => Chronotype::ShiftWorker,
                };
                let (wake, sleep) = match chronotype {
                    Chronotype::EarlyRiser => (5 * 60, 21 * 60),
                    Chronotype::Regular => (7 * 60, 22 * 60 + 30),
                    Chronotype::NightOwl => (10 * 60, 26 * 60),
                    Chronotype::LongSleeper => (9 * 60, 22 * 60),
                    Chronotype::ShiftWorker => (14 * 60, 30 * 60),
                };
                let jitter = |r: &mut SmallRng| r.random_range(0..60);
                let (wake, sleep) = (wake + jitter(&mut r), sleep + jitter(&mut r));
                let load = if r.random_bool(spec.automatic_share) {
                    if r.random_bool(0.8) {
                        // A refrigerator's compressor.
                        Load::Automatic {
                            period_min: r.random_range(35..60),
                            on_min: r.random_range(10..20),
                            watts: r.random_range(60.0..120.0),
                        }
                    } else {
                        // A boiler on a timer.
                        Load::Automatic {
                            period_min: 12 * 60,
                            on_min: 60,
                            watts: r.random_range(800.0..1500.0),
                        }
                    }
                } else {
                    Load::Person {
                        watts: r.random_range(60.0..1800.0),
                    }
                };
                let episodes = episodes(spec, run_ms, &mut r);
                let hh = HouseholdId::new(&format!("hh-{i:06}")).expect("valid id");
                let device = format!("plug-{i:06}");
                let dong = DongCode::new(DONGS[i % DONGS.len()], m).expect("valid dong");
                let mut cfg = HouseholdConfig::with_defaults(
                    hh.clone(),
                    dong,
                    [DeviceId::new(&device).expect("valid id")],
                    spec.start,
                );
                cfg.absences = episodes
                    .iter()
                    .filter_map(|e| match *e {
                        Episode::Hospital { from, to } => Some(Absence {
                            kind: AbsenceKind::Hospital,
                            starts_at: from,
                            ends_at: to,
                        }),
                        _ => None,
                    })
                    .collect();
                Home {
                    cfg,
                    device,
                    truth: LifeTruth {
                        household: hh,
                        chronotype,
                        load,
                        episodes,
                    },
                    seq: 0,
                    wake,
                    sleep,
                    weekend_shift: r.random_range(0..90),
                    naps: r.random_bool(0.3),
                    use_rate: r.random_range(0.01..0.06),
                    in_use: 0,
                    phase: r.random_range(0..60),
                    door_rate: r.random_range(0.005..0.03),
                    fridge_lamp: if r.random_bool(0.5) {
                        r.random_range(2.0..4.0)
                    } else {
                        r.random_range(15.0..25.0)
                    },
                    day_lights: if r.random_bool(0.5) {
                        r.random_range(0.002..0.02)
                    } else {
                        0.0
                    },
                    light_left: 0,
                    rng: r,
                }
            })
            .collect();
        Self { homes }
    }

    pub fn len(&self) -> usize {
        self.homes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.homes.is_empty()
    }

    pub fn configs(&self) -> impl Iterator<Item = &HouseholdConfig> {
        self.homes.iter().map(|h| &h.cfg)
    }

    /// Every household's routine, load and labelled episodes.
    pub fn truth(&self) -> impl Iterator<Item = &LifeTruth> {
        self.homes.iter().map(|h| &h.truth)
    }

    /// Every reading of the minute starting at `t` (one per plug that
    /// reports), appended to `out`.
    pub fn readings_at(&mut self, t: Ts, out: &mut Vec<TownReading>) {
        let local = t.to_kst();
        let minute = local.hour() * 60 + local.minute();
        let weekend = local.weekday().number_from_monday() >= 6;
        let daylight = seasonal_daylight(minute, local.ordinal());
        for (i, h) in self.homes.iter_mut().enumerate() {
            let now = h.truth.episodes.iter().find(|e| e.covers(t));
            if matches!(now, Some(Episode::Offline { .. })) {
                continue;
            }
            let away = matches!(now, Some(Episode::Trip { .. } | Episode::Hospital { .. }));
            let down = matches!(now, Some(Episode::Crisis { .. }));
            let sick = matches!(now, Some(Episode::Sick { .. }));
            let awake = h.awake(minute, weekend) && !away && !down;
            // Sick in bed: up now and then, nothing else.
            let stirring = awake && (!sick || h.rng.random_bool(0.02));
            if h.in_use > 0 {
                h.in_use -= 1;
            } else if stirring && !sick && h.rng.random_bool(h.use_rate) {
                h.in_use = h.rng.random_range(5..60);
            }
            if !stirring {
                h.in_use = 0;
            }
            let watts = match h.truth.load {
                Load::Person { watts } => {
                    if h.in_use > 0 {
                        watts
                    } else {
                        1.5
                    }
                }
                Load::Automatic {
                    period_min,
                    on_min,
                    watts,
                } => {
                    let minute = (t.millis() / MINUTE_MS) as u32;
                    let mut on = (minute + h.phase) % period_min < on_min;
                    let mut lamp = 0.0;
                    // A fridge's door: its lamp while open, and warm air in
                    // starts the compressor at once if it was off.
                    if h.truth.load.is_fridge()
                        && stirring
                        && !sick
                        && h.rng.random_bool(h.door_rate)
                    {
                        lamp = h.fridge_lamp;
                        if !on {
                            h.phase = (period_min - minute % period_min) % period_min;
                            on = true;
                        }
                    }
                    lamp + if on { watts } else { 1.5 }
                }
            };
            // A room light: when someone is up after dark, and for some
            // people now and then in the day; daylight whoever is home.
            if !stirring || sick {
                h.light_left = 0;
            } else if h.light_left > 0 {
                h.light_left -= 1;
            } else if daylight >= 30.0 && h.rng.random_bool(h.day_lights) {
                h.light_left = h.rng.random_range(5..60);
            }
            let lamp = if stirring && (daylight < 30.0 || h.light_left > 0) {
                120.0
            } else {
                0.0
            };
            let noise = h.rng.random_range(-0.3..0.3);
            h.seq += 1;
            out.push(TownReading {
                household: i,
                device_id: h.device.clone(),
                observed_at: t,
                sequence: h.seq,
                watts: (watts + noise).max(0.0),
                lux: daylight + lamp + noise.abs(),
            });
        }
    }
}

impl Home {
    /// Whether the person is up at `minute` (local), by their routine.
    fn awake(&self, minute: u32, weekend: bool) -> bool {
        let shift = if weekend { self.weekend_shift } else { 0 };
        let (wake, sleep) = (self.wake + shift, self.sleep + shift);
        // Days that wrap past midnight are compared a day later too.
        let up = |m: u32| (wake..sleep).contains(&m) || (wake..sleep).contains(&(m + 24 * 60));
        let napping = self.naps && (13 * 60 + 30..14 * 60 + 30).contains(&minute);
        up(minute) && !napping
    }
}

/// Each household's episodes inside the run: at most one of each kind,
/// drawn by the spec's shares, starting at a random time of day.
fn episodes(spec: &LivesSpec, run_ms: i64, r: &mut SmallRng) -> Vec<Episode> {
    let mut out = Vec::new();
    let at = |r: &mut SmallRng, room: i64| {
        spec.start
            .plus_ms(r.random_range(DAY_MS..(run_ms - room).max(DAY_MS + 1)))
    };
    if r.random_bool(spec.crisis_share) {
        let from = at(r, 3 * DAY_MS);
        let found = r
            .random_bool(spec.crisis_recovering)
            .then(|| from.plus_ms(r.random_range(6 * HOUR_MS..48 * HOUR_MS)));
        out.push(Episode::Crisis { from, found });
    } else if r.random_bool(spec.benign_share) {
        let from = at(r, 4 * DAY_MS);
        out.push(if r.random_bool(0.5) {
            Episode::Trip {
                from,
                to: from.plus_ms(r.random_range(DAY_MS..3 * DAY_MS)),
            }
        } else {
            Episode::Sick {
                from,
                to: from.plus_ms(r.random_range(12 * HOUR_MS..36 * HOUR_MS)),
            }
        });
    } else if r.random_bool(spec.hospital_share) {
        let from = at(r, 6 * DAY_MS);
        out.push(Episode::Hospital {
            from,
            to: from.plus_ms(r.random_range(2 * DAY_MS..5 * DAY_MS)),
        });
    }
    if r.random_bool(spec.offline_share) {
        let from = at(r, 2 * DAY_MS);
        out.push(Episode::Offline {
            from,
            to: from.plus_ms(r.random_range(HOUR_MS..DAY_MS)),
        });
    }
    out
}

/// Daylight in a room (lux) at `minute` on day `ordinal` of the year:
/// Seoul's sunrise moves between about 05:10 (June) and 07:45 (January).
fn seasonal_daylight(minute: u32, ordinal: u32) -> f32 {
    let season = ((ordinal as f32 - 172.0) / 365.0 * std::f32::consts::TAU).cos();
    let (rise, set) = ((6.5 - 1.2 * season) * 60.0, (18.5 + 1.3 * season) * 60.0);
    let m = minute as f32;
    if m <= rise || m >= set {
        return 0.0;
    }
    300.0 * ((m - rise) / (set - rise) * std::f32::consts::PI).sin()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(lives: &mut Lives, spec: &LivesSpec, minutes: i64) -> Vec<TownReading> {
        let mut out = Vec::new();
        for m in 0..minutes {
            lives.readings_at(spec.start.plus_ms(m * MINUTE_MS), &mut out);
        }
        out
    }

    #[test]
    fn the_same_seed_gives_the_same_town() {
        let spec = LivesSpec {
            households: 50,
            days: 5,
            ..LivesSpec::default()
        };
        let (mut a, mut b) = (Lives::new(&spec), Lives::new(&spec));
        assert_eq!(a.truth().collect::<Vec<_>>(), b.truth().collect::<Vec<_>>());
        assert_eq!(run(&mut a, &spec, 600), run(&mut b, &spec, 600));
    }

    #[test]
    fn people_live_differently_and_every_episode_is_labelled_inside_the_run() {
        let spec = LivesSpec {
            households: 2_000,
            ..LivesSpec::default()
        };
        let lives = Lives::new(&spec);
        let end = spec.start.plus_ms(i64::from(spec.days) * DAY_MS);
        let kinds: std::collections::BTreeSet<String> = lives
            .truth()
            .map(|t| format!("{:?}", t.chronotype))
            .collect();
        assert_eq!(kinds.len(), 5, "{kinds:?}");
        let automatic = lives
            .truth()
            .filter(|t| matches!(t.load, Load::Automatic { .. }))
            .count();
        assert!((300..700).contains(&automatic), "{automatic}");
        let mut crises = 0;
        for t in lives.truth() {
            for e in &t.episodes {
                let (from, to) = match *e {
                    Episode::Crisis { from, found } => {
                        crises += 1;
                        (from, found.unwrap_or(from))
                    }
                    Episode::Trip { from, to }
                    | Episode::Sick { from, to }
                    | Episode::Hospital { from, to }
                    | Episode::Offline { from, to } => (from, to),
                };
                assert!(from >= spec.start && from < end && to >= from, "{e:?}");
            }
        }
        assert!((20..70).contains(&crises), "{crises}");
        // A registered hospital stay is in the household's configuration.
        for (cfg, t) in lives.configs().zip(lives.truth()) {
            let stays = t
                .episodes
                .iter()
                .filter(|e| matches!(e, Episode::Hospital { .. }))
                .count();
            assert_eq!(cfg.absences.len(), stays);
        }
    }

    #[test]
    fn in_a_crisis_a_fridge_keeps_cycling_and_nothing_human_happens() {
        // Everyone in a crisis from the second day; half the plugs on fridges.
        let mut spec = LivesSpec {
            households: 40,
            days: 3,
            automatic_share: 0.5,
            crisis_share: 0.0,
            benign_share: 0.0,
            hospital_share: 0.0,
            offline_share: 0.0,
            ..LivesSpec::default()
        };
        spec.seed = 7;
        let mut lives = Lives::new(&spec);
        let from = spec.start.plus_ms(DAY_MS);
        for h in &mut lives.homes {
            h.truth.episodes = vec![Episode::Crisis { from, found: None }];
        }
        let out = run(&mut lives, &spec, 3 * 24 * 60);
        for (i, h) in lives.homes.iter().enumerate() {
            let after: Vec<&TownReading> = out
                .iter()
                .filter(|r| r.household == i && r.observed_at >= from)
                .collect();
            let switches = after
                .windows(2)
                .filter(|w| (w[0].watts > 10.0) != (w[1].watts > 10.0))
                .count();
            let lamp = after
                .iter()
                .any(|r| r.lux > 100.0 && r.observed_at.kst_minute_of_day() < 5 * 60);
            assert!(!lamp, "no lamp at night in a crisis");
            match h.truth.load {
                _ if h.truth.load.is_fridge() => {
                    assert!(switches > 40, "a fridge keeps cycling: {switches}")
                }
                Load::Person { .. } => assert_eq!(switches, 0, "nobody switches anything"),
                Load::Automatic { .. } => {}
            }
        }
    }

    #[test]
    fn winter_days_are_shorter_than_summer_days() {
        let lit = |ordinal| {
            (0..1440)
                .filter(|&m| seasonal_daylight(m, ordinal) > 0.0)
                .count()
        };
        let (winter, summer) = (lit(355), lit(172));
        assert!(winter < 10 * 60 && summer > 13 * 60, "{winter} {summer}");
    }
}
