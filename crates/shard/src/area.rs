//! Areas (a dong, or a building): one shard's part of each and how the
//! parts add up.
//!
//! A blackout darkens a whole area, but Kafka spreads the area's households
//! over every partition: with 48 partitions a dong of 40 homes has one or two
//! on each shard, under any one shard's threshold. So the decision is taken
//! on the area as a whole. Each shard keeps its own part of an area
//! ([`Area`]: its households, its open DEVICE_OFFLINE incidents, its recent
//! offline openings, its declared outage) and writes it to the
//! [`AreaBoard`](crate::AreaBoard) whenever it changes; it judges an area
//! from its part plus every other partition's ([`Area::whole`]). Without a
//! board a shard judges alone, as a single-partition deployment may.
//!
//! Every shard that sees an outage publishes its AREA_OUTAGE events under
//! the same deterministic id (the episode is the window-aligned first
//! offline opening, or the episode another partition declared), so the
//! consumers' de-duplication by event id leaves one incident.

use dolbom_domain::convert::{self, PlatformIncident};
use dolbom_domain::{DongCode, EventType, IncidentKind, MunicipalityCode, Route, Ts, MINUTE_MS};
use dolbom_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// Area inhibition settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AreaOptions {
    /// Offline openings counted together (event time).
    pub window_ms: i64,
    /// How long a DEVICE_OFFLINE opening waits to see whether it is part of an
    /// outage (event time). 0 disables area inhibition.
    pub hold_ms: i64,
    /// At least this many households of the area (all partitions)…
    pub min_households: u32,
    /// …and at least this share of the area's households (all partitions).
    pub share: f64,
    /// Group by building where a household has one, else by dong.
    pub by_building: bool,
    /// A held opening waits for the other partitions holding part of its
    /// area to judge up to its release time (they may be behind: a backlog,
    /// a replay), at most this much longer (event time).
    pub max_wait_ms: i64,
    /// …and, while the partitions behind are another monitor's, at least
    /// this long on the wall clock: their progress arrives on the areas
    /// topic about every 0.5 s, and a monitor replaying a backlog far faster
    /// than real time passes `max_wait_ms` of event time before it does.
    pub remote_wait_ms: i64,
}

impl Default for AreaOptions {
    fn default() -> Self {
        Self {
            window_ms: 10 * MINUTE_MS,
            hold_ms: 2 * MINUTE_MS,
            min_households: 5,
            share: 0.5,
            by_building: true,
            max_wait_ms: 30 * MINUTE_MS,
            remote_wait_ms: 30_000,
        }
    }
}

impl AreaOptions {
    /// Offline openings within the window that make an outage, for an area
    /// of `households` (all partitions).
    pub fn threshold(&self, households: usize) -> usize {
        let share = (self.share * households as f64).ceil() as usize;
        share.max(self.min_households as usize).max(1)
    }
}

/// One shard's part of an area.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Area {
    pub(crate) id: String,
    pub(crate) municipality: MunicipalityCode,
    pub(crate) dong: DongCode,
    pub(crate) households: u32,
    pub(crate) offline: u32,
    pub(crate) recent: VecDeque<Ts>,
    /// Episode start of the active outage.
    pub(crate) active: Option<Ts>,
    /// Event time of the last outage's recovery: offline openings up to it
    /// (here or on other partitions) belonged to that outage.
    pub(crate) recovered_at: Ts,
}

impl Area {
    pub(crate) fn new(id: String, municipality: MunicipalityCode, dong: DongCode) -> Self {
        Self {
            id,
            municipality,
            dong,
            households: 0,
            offline: 0,
            recent: VecDeque::new(),
            active: None,
            recovered_at: Ts::MIN,
        }
    }

    /// What the other partitions need to know of this part.
    pub(crate) fn counts(&self) -> AreaCounts {
        AreaCounts {
            households: self.households,
            offline: self.offline,
            recent: self.recent.iter().copied().collect(),
            active: self.active,
        }
    }

    /// An offline opening due at `at`: kept in order with the others,
    /// and those past the window (behind the newest) dropped.
    pub(crate) fn note_opening(&mut self, at: Ts, window_ms: i64) {
        let i = self.recent.partition_point(|&t| t <= at);
        self.recent.insert(i, at);
        let newest = *self.recent.back().expect("just inserted");
        while self
            .recent
            .front()
            .is_some_and(|&t| newest.since(t) > window_ms)
        {
            self.recent.pop_front();
        }
    }

    /// This part plus `others`: what the area looks like as a whole. Every
    /// part's recent openings are in order (this one's by
    /// [`Area::note_opening`], the board's as reported or merged), so the
    /// openings within the window are counted by a binary search per part,
    /// never copied or sorted: a blackout asks for each of its households.
    pub(crate) fn whole(&self, others: &[&AreaCounts], window_ms: i64) -> Whole {
        let after = self.recovered_at;
        let newest = others
            .iter()
            .filter_map(|c| c.recent.last().copied())
            .chain(self.recent.back().copied())
            .max()
            .filter(|&t| t > after);
        let mut recent = 0;
        let mut first_recent: Option<Ts> = None;
        if let Some(newest) = newest {
            // Within the window of the newest, and after the last recovery.
            let from = newest.plus_ms(-window_ms).max(after.plus_ms(1));
            let mut count = |len: usize, i: usize, first: Option<Ts>| {
                recent += len - i;
                if let Some(t) = first {
                    first_recent = Some(first_recent.map_or(t, |f| f.min(t)));
                }
            };
            let i = self.recent.partition_point(|&t| t < from);
            count(self.recent.len(), i, self.recent.get(i).copied());
            for c in others {
                let i = c.recent.partition_point(|&t| t < from);
                count(c.recent.len(), i, c.recent.get(i).copied());
            }
        }
        let declared = others.iter().filter_map(|c| c.active).min();
        Whole {
            households: others.iter().map(|c| c.households).sum::<u32>() as usize
                + self.households as usize,
            offline: others.iter().map(|c| c.offline).sum::<u32>() as usize + self.offline as usize,
            recent,
            first_recent,
            declared_elsewhere: declared.filter(|&e| e > after),
        }
    }

    /// The area's AREA_OUTAGE incident event (routed to maintenance).
    pub(crate) fn event(
        &self,
        event: EventType,
        episode: Ts,
        due: Ts,
        emitted_at: Ts,
        affected: u32,
    ) -> pb::IncidentEvent {
        convert::platform_event(&PlatformIncident {
            kind: IncidentKind::AreaOutage,
            subject: &self.id,
            event,
            episode_start: episode,
            due_at: due,
            emitted_at,
            route: Route::Maintenance,
            municipality: Some(self.municipality),
            dong: Some(self.dong),
            affected_households: affected,
        })
    }
}

/// An area as a whole: one shard's part plus the others'.
#[derive(Debug)]
pub(crate) struct Whole {
    pub(crate) households: usize,
    pub(crate) offline: usize,
    /// Offline openings within the window (of the newest), and the oldest.
    pub(crate) recent: usize,
    pub(crate) first_recent: Option<Ts>,
    /// The episode of an outage another partition declared and has not
    /// seen recover.
    pub(crate) declared_elsewhere: Option<Ts>,
}

/// One partition's part of one area, as the other partitions need it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AreaCounts {
    pub households: u32,
    /// Open DEVICE_OFFLINE incidents (held, absorbed or announced).
    pub offline: u32,
    /// Offline openings within the window (event time), oldest first.
    pub recent: Vec<Ts>,
    /// The episode of the outage this partition has declared.
    pub active: Option<Ts>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The area as a whole the plain way: every opening copied, sorted,
    /// cut to the window of the newest (what `whole` did before it counted
    /// by binary search).
    fn whole_by_sorting(own: &Area, others: &[AreaCounts], window_ms: i64) -> (usize, Option<Ts>) {
        let mut recent: Vec<Ts> = own
            .recent
            .iter()
            .chain(others.iter().flat_map(|c| &c.recent))
            .copied()
            .filter(|&t| t > own.recovered_at)
            .collect();
        recent.sort_unstable();
        if let Some(&newest) = recent.last() {
            recent.retain(|&t| newest.since(t) <= window_ms);
        }
        (recent.len(), recent.first().copied())
    }

    fn sorted_times() -> impl Strategy<Value = Vec<Ts>> {
        proptest::collection::vec(0i64..5_000, 0..40).prop_map(|mut v| {
            v.sort_unstable();
            v.into_iter().map(Ts).collect()
        })
    }

    proptest! {
        #[test]
        fn whole_counts_the_window_as_sorting_every_opening_would(
            own in proptest::collection::vec(0i64..5_000, 0..40),
            others in proptest::collection::vec((sorted_times(), 0u32..50, proptest::option::of(0i64..5_000)), 0..6),
            recovered in proptest::option::of(0i64..5_000),
            window_ms in 0i64..3_000,
        ) {
            let muni = MunicipalityCode::new("11110").unwrap();
            let mut area = Area::new("d".into(), muni, DongCode::new("1111051500", muni).unwrap());
            area.recovered_at = recovered.map_or(Ts::MIN, Ts);
            area.households = 7;
            for t in own {
                area.note_opening(Ts(t), window_ms);
            }
            prop_assert!(area.recent.iter().zip(area.recent.iter().skip(1)).all(|(a, b)| a <= b));
            let others: Vec<AreaCounts> = others
                .into_iter()
                .map(|(recent, offline, active)| AreaCounts {
                    households: offline + 3,
                    offline,
                    recent,
                    active: active.map(Ts),
                })
                .collect();
            let parts: Vec<&AreaCounts> = others.iter().collect();
            let whole = area.whole(&parts, window_ms);
            prop_assert_eq!((whole.recent, whole.first_recent), whole_by_sorting(&area, &others, window_ms));
            prop_assert_eq!(whole.households, 7 + others.iter().map(|c| c.households as usize).sum::<usize>());
            let declared = others.iter().filter_map(|c| c.active).min().filter(|&e| e > area.recovered_at);
            prop_assert_eq!(whole.declared_elsewhere, declared);
        }
    }

    #[test]
    fn the_threshold_is_the_larger_of_the_share_and_the_minimum() {
        let o = AreaOptions::default();
        assert_eq!(o.threshold(0), 5);
        assert_eq!(o.threshold(9), 5);
        assert_eq!(o.threshold(40), 20);
        assert_eq!(o.threshold(41), 21);
    }
}
