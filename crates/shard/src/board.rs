//! The board the partitions of an area share, within a monitor and between
//! monitors.
//!
//! Every shard of a monitor writes its part of each area to one
//! [`AreaBoard`] ([`AreaBoard::report`]) and judges its area as a whole
//! with the other partitions' parts on it (`AreaBoard::whole`). Between monitors the service
//! shares what [`AreaBoard::take_changed`] returns on a compacted Kafka topic
//! and [`AreaBoard::merge`]s what the others share.
//!
//! A held offline opening also waits for the other partitions of its area
//! to judge up to its release time ([`AreaBoard::others_behind`]): what they
//! will see by then is still to come. Partitions hosted here report their
//! progress directly ([`AreaBoard::progress`]); the service shares it with
//! the other monitors as [`SharedProgress`] — taken *before* the parts
//! ([`AreaBoard::take_progress`]), published only after every part before
//! it was acknowledged, and to every partition of the topic. A reader that
//! has seen a monitor's progress on every partition of the topic
//! ([`AreaBoard::merge_progress`]) has read every part it shared before it,
//! whatever partition those landed on; until then a partition of another
//! monitor counts as behind (for at most `area.max_wait_ms`).

use crate::area::{Area, AreaCounts, Whole};
use dolbom_domain::Ts;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

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

/// How far the partitions one monitor hosts have judged (event time), as
/// it shares them: one record per monitor on every partition of the areas
/// topic. `version` rises with every record of that monitor (its wall
/// clock), and a partition that moved on is judged by the newest record
/// naming it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedProgress {
    /// Who shares it (unique per process).
    pub monitor: String,
    pub version: u64,
    /// (partition, judged up to), for every partition the monitor hosts.
    pub partitions: Vec<(i32, Ts)>,
}

impl SharedProgress {
    /// Key prefix that tells progress records from area parts (no area id
    /// starts with `~`).
    pub const KEY_PREFIX: &'static str = "~progress@";

    /// The compacted topic's key: one record per monitor (and partition of
    /// the topic).
    pub fn key(&self) -> String {
        format!("{}{}", Self::KEY_PREFIX, self.monitor)
    }
}

/// Which partitions of an area have not yet judged up to a time
/// ([`AreaBoard::others_behind`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behind {
    /// None: the area's parts up to then are all on the board.
    No,
    /// Only partitions hosted by this monitor (their progress is exact).
    Here,
    /// Partitions of another monitor (their progress arrives late, if at all).
    Elsewhere,
}

#[derive(Default)]
struct BoardInner {
    /// area → partition → (version, counts).
    areas: HashMap<String, BTreeMap<i32, (u64, AreaCounts)>>,
    /// How far each partition hosted here has judged (event time).
    progress: HashMap<i32, Ts>,
    /// Whether `progress` changed since it was last taken for sharing.
    progress_changed: bool,
    /// Version of the last progress taken for sharing.
    progress_version: u64,
    /// Progress other monitors shared: partition → copy (partition of the
    /// areas topic it was read from) → (version, judged up to).
    shared: HashMap<i32, BTreeMap<i32, (u64, Ts)>>,
    /// On how many partitions of the areas topic progress is shared (0: it
    /// is not, and no partition of another monitor is waited for).
    copies: usize,
    /// How many partitions the readings topic has: each one not hosted here
    /// is another monitor's, and may hold part of any area.
    partitions: i32,
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
    pub fn merge(&self, mut shared: SharedCounts) -> bool {
        // Judging counts each part's openings by binary search: in order.
        shared.counts.recent.sort_unstable();
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
        let p = b.progress.entry(partition).or_insert(Ts::MIN);
        if to > *p {
            *p = to;
            b.progress_changed = true;
        }
    }

    /// `partition` is no longer hosted here (revoked, or its shard stopped):
    /// from now on it is judged by what its next host shares.
    pub fn release(&self, partition: i32) {
        let mut b = self.lock();
        if b.progress.remove(&partition).is_some() {
            b.progress_changed = true;
        }
    }

    /// The progress of every partition hosted here, if it changed since the
    /// last call, as `monitor` shares it (`wall_ms`: the sharer's clock, for
    /// the version). Take it *before* [`take_changed`](Self::take_changed):
    /// every part reported before this progress is then among the parts
    /// taken with it or before.
    pub fn take_progress(&self, monitor: &str, wall_ms: i64) -> Option<SharedProgress> {
        let mut b = self.lock();
        if !std::mem::take(&mut b.progress_changed) {
            return None;
        }
        b.progress_version = (b.progress_version + 1).max(wall_ms.max(0) as u64);
        let mut partitions: Vec<(i32, Ts)> = b.progress.iter().map(|(p, t)| (*p, *t)).collect();
        partitions.sort_unstable();
        Some(SharedProgress {
            monitor: monitor.to_string(),
            version: b.progress_version,
            partitions,
        })
    }

    /// Progress that could not be shared (or whose parts could not): the
    /// next [`take_progress`](Self::take_progress) returns it again.
    pub fn progress_unshared(&self) {
        self.lock().progress_changed = true;
    }

    /// From now on progress is shared on `copies` partitions of the areas
    /// topic, and the partitions of the readings topic (`partitions`) that
    /// other monitors host are waited for.
    pub fn share_progress_on(&self, copies: usize, partitions: i32) {
        let mut b = self.lock();
        b.copies = copies;
        b.partitions = partitions;
    }

    /// Progress read from partition `copy` of the areas topic. Per partition
    /// and copy, a newer version replaces an older one.
    pub fn merge_progress(&self, copy: i32, shared: &SharedProgress) {
        let mut b = self.lock();
        for &(partition, to) in &shared.partitions {
            let copies = b.shared.entry(partition).or_default();
            let entry = copies.entry(copy).or_insert((0, Ts::MIN));
            if shared.version > entry.0 {
                *entry = (shared.version, to);
            }
        }
    }

    /// How far `partition` has judged, as far as this board knows: its own
    /// progress when hosted here; else, when progress is shared, the lowest
    /// its host shared across every partition of the topic (`None` until
    /// every copy was read).
    fn judged(b: &BoardInner, partition: i32) -> Option<Ts> {
        if let Some(t) = b.progress.get(&partition) {
            return Some(*t);
        }
        let copies = b.shared.get(&partition)?;
        if b.copies == 0 || copies.len() < b.copies {
            return None;
        }
        copies.values().map(|(_, t)| *t).min()
    }

    /// The partitions other monitors host, as far as this board knows (each
    /// readings partition, any that shared progress, any with a part of
    /// `area`), but `partition` and those hosted here; none while progress
    /// is not shared. May repeat a partition.
    fn elsewhere<'a>(
        b: &'a BoardInner,
        partition: i32,
        area: Option<&str>,
    ) -> impl Iterator<Item = i32> + 'a {
        let parts = area.and_then(|a| b.areas.get(a));
        let known = (0..b.partitions)
            .chain(b.shared.keys().copied())
            .chain(parts.into_iter().flat_map(|parts| parts.keys().copied()));
        known.filter(move |p| b.copies > 0 && *p != partition && !b.progress.contains_key(p))
    }

    /// Whether another partition holding part of `area` has not yet judged
    /// up to `to` (what it will see of the area by then is still to come),
    /// and whose. While progress is shared, every partition another monitor
    /// hosts counts — its parts may not have arrived yet — and one whose
    /// progress this board has not read on every copy counts as behind.
    pub fn others_behind(&self, area: &str, partition: i32, to: Ts) -> Behind {
        let b = self.lock();
        let late = |p: i32| Self::judged(&b, p).is_none_or(|t| t < to);
        if Self::elsewhere(&b, partition, Some(area)).any(late) {
            return Behind::Elsewhere;
        }
        let here = b.areas.get(area).is_some_and(|parts| {
            parts
                .keys()
                .any(|p| *p != partition && b.progress.contains_key(p) && late(*p))
        });
        if here {
            Behind::Here
        } else {
            Behind::No
        }
    }

    /// Whether a partition another monitor hosts has not been heard of yet
    /// (its progress not read on every copy): its households may be
    /// missing from every area's count, so no area can be judged a whole.
    pub fn others_unheard(&self, partition: i32) -> bool {
        let b = self.lock();
        let unheard = Self::elsewhere(&b, partition, None).any(|p| Self::judged(&b, p).is_none());
        unheard
    }

    /// The furthest another partition holding part of `area` has judged
    /// (event time), if any is known.
    pub fn others_progress(&self, area: &str, partition: i32) -> Option<Ts> {
        let b = self.lock();
        b.areas.get(area).and_then(|parts| {
            parts
                .keys()
                .filter(|p| **p != partition)
                .filter_map(|p| Self::judged(&b, *p))
                .max()
        })
    }

    /// `own` (the part of `partition`) plus every other partition's part of
    /// its area: the area as a whole ([`Area::whole`], which neither copies
    /// nor sorts the others' openings).
    pub(crate) fn whole(&self, own: &Area, partition: i32, window_ms: i64) -> Whole {
        let b = self.lock();
        let others: Vec<&AreaCounts> = b.areas.get(&own.id).map_or_else(Vec::new, |parts| {
            parts
                .iter()
                .filter(|(p, _)| **p != partition)
                .map(|(_, (_, c))| c)
                .collect()
        });
        own.whole(&others, window_ms)
    }

    /// Households and open DEVICE_OFFLINE incidents in every partition's
    /// part of `area` but `partition`'s, for judging a recovery on every
    /// household's return.
    pub fn others_totals(&self, area: &str, partition: i32) -> (u32, u32) {
        let b = self.lock();
        b.areas.get(area).map_or((0, 0), |parts| {
            parts
                .iter()
                .filter(|(p, _)| **p != partition)
                .fold((0, 0), |(h, o), (_, (_, c))| {
                    (h + c.households, o + c.offline)
                })
        })
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
        assert_eq!(b.others_totals("d", 1), (8, 1));
        assert_eq!(b.others_totals("x", 1), (0, 0));
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
        assert_eq!(b.others_totals("d", 9), (3, 2));
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

    fn progress(monitor: &str, version: u64, partitions: &[(i32, i64)]) -> SharedProgress {
        SharedProgress {
            monitor: monitor.into(),
            version,
            partitions: partitions.iter().map(|&(p, t)| (p, Ts(t))).collect(),
        }
    }

    #[test]
    fn progress_is_taken_when_it_changed_and_a_released_partition_is_left_out() {
        let b = AreaBoard::new();
        assert_eq!(b.take_progress("m", 5), None);
        b.progress(0, Ts(100));
        b.progress(1, Ts(50));
        let first = b.take_progress("m", 5).unwrap();
        assert_eq!(first.partitions, vec![(0, Ts(100)), (1, Ts(50))]);
        assert_eq!(first.version, 5);
        assert_eq!(b.take_progress("m", 6), None, "nothing changed");
        b.progress(0, Ts(90)); // never backwards
        assert_eq!(b.take_progress("m", 6), None);
        b.release(1);
        let second = b.take_progress("m", 3).unwrap();
        assert_eq!(second.partitions, vec![(0, Ts(100))]);
        assert_eq!(
            second.version, 6,
            "versions rise even when the clock does not"
        );
        b.progress_unshared();
        assert_eq!(
            b.take_progress("m", 3).unwrap().partitions,
            second.partitions
        );
    }

    #[test]
    fn another_monitors_partition_is_behind_until_its_progress_was_read_on_every_copy() {
        let b = AreaBoard::new();
        b.report("d", 0, counts(3, 1), 10); // hosted here
        b.progress(0, Ts(1_000));
        b.merge(SharedCounts {
            area: "d".into(),
            partition: 7,
            version: 10,
            counts: counts(4, 2),
        });
        // Without shared progress nobody else is waited for.
        assert_eq!(b.others_behind("d", 0, Ts(500)), Behind::No);
        b.share_progress_on(3, 0);
        assert_eq!(
            b.others_behind("d", 0, Ts(500)),
            Behind::Elsewhere,
            "partition 7: nothing read yet"
        );
        b.merge_progress(0, &progress("other", 20, &[(7, 900)]));
        b.merge_progress(1, &progress("other", 20, &[(7, 900)]));
        assert_eq!(
            b.others_behind("d", 0, Ts(500)),
            Behind::Elsewhere,
            "one copy still unread"
        );
        assert_eq!(b.others_progress("d", 0), None);
        b.merge_progress(2, &progress("other", 21, &[(7, 950)]));
        assert_eq!(b.others_behind("d", 0, Ts(900)), Behind::No);
        assert_eq!(
            b.others_behind("d", 0, Ts(901)),
            Behind::Elsewhere,
            "the lowest copy counts: parts before 950 may still be in flight on copies 0 and 1"
        );
        assert_eq!(b.others_progress("d", 0), Some(Ts(900)));
        // An older record read late changes nothing.
        b.merge_progress(0, &progress("other", 19, &[(7, 100)]));
        assert_eq!(b.others_progress("d", 0), Some(Ts(900)));
        // From partition 7's side, partition 0 is hosted here: its own progress.
        assert_eq!(b.others_behind("d", 7, Ts(1_000)), Behind::No);
        assert_eq!(b.others_behind("d", 7, Ts(1_001)), Behind::Here);
    }

    #[test]
    fn a_partition_that_moved_is_judged_by_its_newest_host() {
        let b = AreaBoard::new();
        b.share_progress_on(1, 0);
        b.merge(SharedCounts {
            area: "d".into(),
            partition: 7,
            version: 10,
            counts: counts(4, 0),
        });
        b.merge_progress(0, &progress("old", 20, &[(7, 5_000)]));
        // It moved here: hosted progress wins over what the old host shared.
        b.progress(7, Ts(4_000));
        assert_eq!(b.others_behind("d", 0, Ts(4_500)), Behind::Here);
        b.release(7);
        // It moved on again: the new host starts behind, with a newer record.
        b.merge_progress(0, &progress("new", 30, &[(7, 4_200)]));
        assert_eq!(b.others_progress("d", 0), Some(Ts(4_200)));
    }

    #[test]
    fn a_partition_of_another_monitor_not_yet_heard_of_is_waited_for() {
        // Four readings partitions; 0 and 1 hosted here. Partitions 2 and 3
        // have shared no part of the area yet — their households may be
        // there all the same, their parts not arrived.
        let b = AreaBoard::new();
        b.report("d", 0, counts(3, 1), 10);
        b.progress(0, Ts(1_000));
        b.progress(1, Ts(1_000));
        b.share_progress_on(2, 4);
        assert_eq!(b.others_behind("d", 0, Ts(500)), Behind::Elsewhere);
        assert!(b.others_unheard(0));
        for copy in 0..2 {
            b.merge_progress(copy, &progress("other", 20, &[(2, 800), (3, 600)]));
        }
        assert_eq!(b.others_behind("d", 0, Ts(600)), Behind::No);
        assert_eq!(b.others_behind("d", 0, Ts(700)), Behind::Elsewhere);
        assert!(!b.others_unheard(0), "heard of, if behind");
        b.merge_progress(0, &progress("other", 21, &[(2, 800), (3, 900)]));
        assert_eq!(
            b.others_behind("d", 0, Ts(700)),
            Behind::Elsewhere,
            "copy 1 still at 600"
        );
        b.merge_progress(1, &progress("other", 21, &[(2, 800), (3, 900)]));
        assert_eq!(b.others_behind("d", 0, Ts(800)), Behind::No);
    }
}
