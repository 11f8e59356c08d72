//! The plug simulator: a [`Town`]'s readings as a nation of plugs would
//! deliver them, and the run's ground truth.
//!
//! On top of the town's daily routines (each plug at its own second of the
//! minute, timer jitter, on-change reports; scripted quiet, offline and
//! hospital households), delivery is made realistic: each simulated minute
//! comes out as slices of event time whose readings are shuffled across
//! households, a share of readings is delivered twice (the copy in the same
//! or a later slice), and one dong can be blacked out for a window (its
//! unscripted households' plugs all silent). [`PlugSim::truth`] turns what
//! the town recorded into a [`GroundTruth`] with every deadline the platform
//! must meet. `plug-sim` publishes the slices to Kafka; the scenario runner
//! hands them to Kafka or straight to the shards.

use dolbom_domain::config::Thresholds;
use dolbom_domain::{HouseholdConfig, Ts, MINUTE_MS};
use dolbom_proto::v1 as pb;
use dolbom_town::truth::{Blackout, GroundTruth};
use dolbom_town::{Town, TownReading, TownSpec};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// What to simulate and how to deliver it.
#[derive(Clone, Debug)]
pub struct SimSpec {
    pub town: TownSpec,
    /// Share of readings delivered twice.
    pub duplicates: f64,
    /// Black out the first dong: (offset from the start, length), ms.
    pub blackout: Option<(i64, i64)>,
    /// Each minute is handed out in slices of this much event time.
    pub slice_ms: i64,
    /// Thresholds for the scripted households instead of the platform
    /// defaults (compressed runs), with their offline limit in minutes.
    pub thresholds: Option<(Thresholds, u32)>,
}

/// Readings observed within one slice of event time, in delivery order.
#[derive(Debug, Default)]
pub struct Slice {
    /// Event time the slice runs up to (exclusive).
    pub end: Ts,
    pub readings: Vec<pb::PlugReading>,
}

/// Counts of what was delivered.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct SimStats {
    pub readings: u64,
    pub duplicates: u64,
    pub dropped_by_blackout: u64,
}

/// See the module docs.
pub struct PlugSim {
    town: Town,
    spec: SimSpec,
    rng: rand::rngs::SmallRng,
    dark: Vec<bool>,
    blackout: Option<(Ts, Ts)>,
    blackout_dong: Option<String>,
    t: Ts,
    end: Ts,
    minute: Vec<TownReading>,
    pub stats: SimStats,
}

impl PlugSim {
    pub fn new(spec: SimSpec) -> Self {
        let mut town = Town::new(&spec.town);
        if let Some((th, offline)) = spec.thresholds {
            town.set_scripted_thresholds(th, offline);
        }
        let start = spec.town.start;
        let blackout = spec.blackout.map(|(at, len)| {
            let from = start.plus_ms(at);
            (from, from.plus_ms(len))
        });
        let scripted: std::collections::HashSet<_> =
            town.truth().iter().map(|t| t.household.clone()).collect();
        let first_dong = town.configs().next().map(|c| c.dong);
        let dark: Vec<bool> = town
            .configs()
            .map(|c| {
                blackout.is_some()
                    && Some(c.dong) == first_dong
                    && !scripted.contains(&c.household_id)
            })
            .collect();
        PlugSim {
            rng: rand::rngs::SmallRng::seed_from_u64(spec.town.seed ^ 0x5eed),
            blackout_dong: blackout.and(first_dong).map(|d| d.to_string()),
            blackout,
            dark,
            t: start,
            end: start.plus_ms(spec.town.duration_ms),
            minute: Vec::new(),
            town,
            spec,
            stats: SimStats::default(),
        }
    }

    pub fn town(&self) -> &Town {
        &self.town
    }

    pub fn households(&self) -> usize {
        self.town.len()
    }

    pub fn configs(&self) -> impl Iterator<Item = &HouseholdConfig> {
        self.town.configs()
    }

    /// Start of the next simulated minute.
    pub fn now(&self) -> Ts {
        self.t
    }

    pub fn start(&self) -> Ts {
        self.spec.town.start
    }

    pub fn end(&self) -> Ts {
        self.end
    }

    pub fn done(&self) -> bool {
        self.t >= self.end
    }

    pub fn minutes(&self) -> u64 {
        (self.spec.town.duration_ms / MINUTE_MS) as u64
    }

    /// The next simulated minute as slices (appended to `out`, which is
    /// cleared first), each shuffled across households.
    pub fn next_minute(&mut self, out: &mut Vec<Slice>) {
        out.clear();
        let t = self.t;
        let slice = self.spec.slice_ms.clamp(1, MINUTE_MS);
        let n = ((MINUTE_MS + slice - 1) / slice) as usize;
        for k in 0..n {
            out.push(Slice {
                end: t.plus_ms(((k as i64 + 1) * slice).min(MINUTE_MS)),
                readings: Vec::new(),
            });
        }
        self.minute.clear();
        self.town.readings_at(t, &mut self.minute);
        let dup = self.spec.duplicates.clamp(0.0, 1.0);
        for r in self.minute.drain(..) {
            if self.dark[r.household]
                && self
                    .blackout
                    .is_some_and(|(f, u)| r.observed_at >= f && r.observed_at < u)
            {
                self.stats.dropped_by_blackout += 1;
                continue;
            }
            let k = (r.observed_at.since(t) / slice).clamp(0, n as i64 - 1) as usize;
            let wire = self.town.into_wire(r);
            if dup > 0.0 && self.rng.random_bool(dup) {
                let later = self.rng.random_range(k..n);
                out[later].readings.push(wire.clone());
                self.stats.duplicates += 1;
            }
            out[k].readings.push(wire);
        }
        for s in out.iter_mut() {
            s.readings.shuffle(&mut self.rng);
            self.stats.readings += s.readings.len() as u64;
        }
        self.t = t.plus_ms(MINUTE_MS);
    }

    /// The ground truth of the run so far (call it at the end): the town's,
    /// with the blackout.
    pub fn truth(&self) -> GroundTruth {
        let mut truth = self
            .town
            .ground_truth(self.spec.town.start, self.t, self.spec.town.seed);
        if let (Some((from, until)), Some(dong)) = (self.blackout, &self.blackout_dong) {
            truth.blackouts.push(Blackout {
                dong: dong.clone(),
                from_ms: from.millis(),
                until_ms: until.millis(),
                households: self
                    .dark
                    .iter()
                    .enumerate()
                    .filter(|(_, d)| **d)
                    .map(|(i, _)| self.town.config(i).household_id.to_string())
                    .collect(),
            });
        }
        truth
    }
}
