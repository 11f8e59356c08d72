//! Areas (a dong, or a building) and the board their partitions share.
//!
//! A blackout darkens a whole area, but Kafka spreads the area's households
//! over every partition: with 48 partitions a dong of 40 homes has one or two
//! on each shard, under any one shard's threshold. So the decision is taken
//! on the area as a whole. Each shard keeps its own part of an area
//! ([`Area`]: its households, its open DEVICE_OFFLINE incidents, its recent
//! offline openings, its declared outage) and writes it to an [`AreaBoard`]
//! whenever it changes; it judges an area from its part plus every other
//! partition's ([`AreaBoard::others`]). One board serves every shard of a
//! monitor; between monitors the service shares what
//! [`AreaBoard::take_changed`] returns (a compacted Kafka topic) and
//! [`AreaBoard::merge`]s what the others share. Without a board a shard
//! judges alone, as a single-partition deployment may.
//!
//! Every shard that sees an outage publishes its AREA_OUTAGE events under
//! the same deterministic id (the episode is the window-aligned first
//! offline opening, or the episode another partition declared), so the
//! consumers' de-duplication by event id leaves one incident.

use dolbom_domain::convert::{self, PlatformIncident};
use dolbom_domain::{DongCode, EventType, IncidentKind, MunicipalityCode, Route, Ts, MINUTE_MS};
use dolbom_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

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
    fn add(&mut self, o: &AreaCounts) {
        self.households += o.households;
        self.offline += o.offline;
        self.recent.extend_from_slice(&o.recent);
        self.active = match (self.active, o.active) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}

/// A partition's part of an area as shared between monitors. `version`
/// rises with every change of the part (from the wall clock of whoever
/// changed it), so an older copy never replaces a newer one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedCounts {
    pub area: String,
    pub partition: i32,
    pub version: u64,
    pub counts: AreaCounts,
}

impl SharedCounts {
    /// The compacted topic's key: one record per area and partition.
    pub fn key(&self) -> String {
        format!("{}@{}", self.area, self.partition)
    }
}

#[derive(Default)]
struct BoardInner {
    /// area → partition → (version, counts).
    areas: HashMap<String, BTreeMap<i32, (u64, AreaCounts)>>,
    /// How far each partition hosted here has judged (event time).
    progress: HashMap<i32, Ts>,
    /// Parts changed here and not yet taken for sharing.
    changed: BTreeSet<(String, i32)>,
}

/// Every partition's part of every area, shared by the shards of one
/// monitor (a cheap handle: clones share one board). See the module docs.
#[derive(Clone, Default)]
pub struct AreaBoard {
    inner: Arc<Mutex<BoardInner>>,
}

impl std::fmt::Debug for AreaBoard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AreaBoard")
            .field("areas", &self.lock().areas.len())
            .finish()
    }
}

impl AreaBoard {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, BoardInner> {
        // The board holds plain counts: a panic elsewhere leaves them usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A partition hosted here reports its part of an area (marked for
    /// sharing). `wall_ms` is the reporter's wall clock, for the version.
    pub fn report(&self, area: &str, partition: i32, counts: AreaCounts, wall_ms: i64) {
        let mut b = self.lock();
        if !b.areas.contains_key(area) {
            b.areas.insert(area.to_string(), BTreeMap::new());
        }
        let parts = b.areas.get_mut(area).expect("inserted");
        let entry = parts.entry(partition).or_insert((0, AreaCounts::default()));
        if entry.0 != 0 && entry.1 == counts {
            return;
        }
        entry.0 = (entry.0 + 1).max(wall_ms.max(0) as u64);
        entry.1 = counts;
        b.changed.insert((area.to_string(), partition));
    }

    /// A part another monitor shared. Applied only if newer than what the
    /// board holds; returns whether it was.
    pub fn merge(&self, shared: SharedCounts) -> bool {
        let mut b = self.lock();
        let parts = b.areas.entry(shared.area).or_default();
        match parts.get(&shared.partition) {
            Some((v, _)) if *v >= shared.version => false,
            _ => {
                parts.insert(shared.partition, (shared.version, shared.counts));
                true
            }
        }
    }

    /// The parts changed here since the last call, as they are now.
    pub fn take_changed(&self) -> Vec<SharedCounts> {
        let mut b = self.lock();
        let changed = std::mem::take(&mut b.changed);
        changed
            .into_iter()
            .filter_map(|(area, partition)| {
                let (version, counts) = b.areas.get(&area)?.get(&partition)?.clone();
                Some(SharedCounts {
                    area,
                    partition,
                    version,
                    counts,
                })
            })
            .collect()
    }

    /// A part whose sharing failed: shared again by the next
    /// [`take_changed`](Self::take_changed) unless a newer one replaced it.
    pub fn retry(&self, shared: &SharedCounts) {
        let mut b = self.lock();
        let current = b
            .areas
            .get(&shared.area)
            .and_then(|p| p.get(&shared.partition))
            .is_some_and(|(v, _)| *v == shared.version);
        if current {
            b.changed.insert((shared.area.clone(), shared.partition));
        }
    }

    /// `partition` (hosted here) has judged up to `to` (event time).
    pub fn progress(&self, partition: i32, to: Ts) {
        let mut b = self.lock();
        let p = b.progress.entry(partition).or_insert(to);
        *p = (*p).max(to);
    }

    /// Whether another partition holding part of `area`, hosted here, has
    /// not yet judged up to `to`: what it will see of the area by then is
    /// still to come. (Partitions of other monitors share no progress and
    /// are not waited for.)
    pub fn others_behind(&self, area: &str, partition: i32, to: Ts) -> bool {
        let b = self.lock();
        b.areas.get(area).is_some_and(|parts| {
            parts
                .keys()
                .filter(|p| **p != partition)
                .any(|p| b.progress.get(p).is_some_and(|t| *t < to))
        })
    }

    /// The furthest another partition holding part of `area`, hosted here,
    /// has judged (event time), if any has reported.
    pub fn others_progress(&self, area: &str, partition: i32) -> Option<Ts> {
        let b = self.lock();
        b.areas.get(area).and_then(|parts| {
            parts
                .keys()
                .filter(|p| **p != partition)
                .filter_map(|p| b.progress.get(p).copied())
                .max()
        })
    }

    /// Every partition's part of `area` but `partition`'s, added up.
    pub fn others(&self, area: &str, partition: i32) -> AreaCounts {
        let b = self.lock();
        let mut sum = AreaCounts::default();
        if let Some(parts) = b.areas.get(area) {
            for (_, (_, c)) in parts.iter().filter(|(p, _)| **p != partition) {
                sum.add(c);
            }
        }
        sum
    }

    /// Areas on the board (all partitions).
    pub fn areas(&self) -> usize {
        self.lock().areas.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(households: u32, offline: u32) -> AreaCounts {
        AreaCounts {
            households,
            offline,
            ..AreaCounts::default()
        }
    }

    #[test]
    fn others_add_up_every_partition_but_the_asker() {
        let b = AreaBoard::new();
        b.report("d", 0, counts(3, 1), 10);
        b.report("d", 1, counts(4, 2), 10);
        b.report("d", 2, counts(5, 0), 10);
        b.report("e", 1, counts(100, 100), 10);
        assert_eq!(b.others("d", 1), counts(8, 1));
        assert_eq!(b.others("x", 1), AreaCounts::default());
        assert_eq!(b.areas(), 2);
    }

    #[test]
    fn changes_are_taken_once_and_an_older_copy_never_wins() {
        let a = AreaBoard::new();
        let b = AreaBoard::new();
        a.report("d", 0, counts(3, 0), 1_000);
        a.report("d", 0, counts(3, 0), 2_000); // unchanged: nothing new
        let first = a.take_changed();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].version, 1_000);
        assert!(a.take_changed().is_empty());
        a.report("d", 0, counts(3, 2), 500); // clock behind: still newer
        let second = a.take_changed();
        assert_eq!(second[0].version, 1_001);
        assert!(b.merge(second[0].clone()));
        assert!(!b.merge(first[0].clone()), "an older copy arrived late");
        assert_eq!(b.others("d", 9), counts(3, 2));
        // A copy merged from elsewhere is not shared again…
        assert!(b.take_changed().is_empty());
        // …and a failed share is retried only while it is the newest.
        a.retry(&second[0]);
        assert_eq!(a.take_changed(), second);
        a.report("d", 0, counts(3, 3), 0);
        a.take_changed();
        a.retry(&second[0]);
        assert!(a.take_changed().is_empty());
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
