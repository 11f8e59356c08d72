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

    /// This part plus `others`: what the area looks like as a whole.
    pub(crate) fn whole(&self, others: &AreaCounts, window_ms: i64) -> Whole {
        let mut recent: Vec<Ts> = self
            .recent
            .iter()
            .chain(&others.recent)
            .copied()
            .filter(|&t| t > self.recovered_at)
            .collect();
        recent.sort_unstable();
        if let Some(&newest) = recent.last() {
            recent.retain(|&t| newest.since(t) <= window_ms);
        }
        Whole {
            households: (self.households + others.households) as usize,
            offline: (self.offline + others.offline) as usize,
            recent,
            declared_elsewhere: others.active.filter(|&e| e > self.recovered_at),
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
    /// Offline openings within the window, oldest first.
    pub(crate) recent: Vec<Ts>,
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
    /// Offline openings within the window (event time).
    pub recent: Vec<Ts>,
    /// The episode of the outage this partition has declared.
    pub active: Option<Ts>,
}

impl AreaCounts {
    pub(crate) fn add(&mut self, o: &AreaCounts) {
        self.households += o.households;
        self.offline += o.offline;
        self.recent.extend_from_slice(&o.recent);
        self.active = match (self.active, o.active) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_threshold_is_the_larger_of_the_share_and_the_minimum() {
        let o = AreaOptions::default();
        assert_eq!(o.threshold(0), 5);
        assert_eq!(o.threshold(9), 5);
        assert_eq!(o.threshold(40), 20);
        assert_eq!(o.threshold(41), 21);
    }
}
