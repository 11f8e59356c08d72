//! The shard's snapshot layout, and the earlier layouts a monitor still
//! restores (postcard is not self-describing: each format is a struct).
//!
//! 2: areas remember when their last outage recovered.
//! 3: pending openings keep a closing that arrived while they waited.
//! 4: households carry learned detection (configuration `learning`, engine
//!    cycles and routine) and reasons their routine evidence (issue 18).
//!    Formats 2 and 3 restore with defaults: learning starts afresh.
//! 5: the partition's health keeps its latest stall's episode, so the next
//!    stall's events get ids of their own (format 4 restores knowing only a
//!    stall in progress).

use crate::area::Area;
use crate::{index_insert, Entity, Health, Pending, Shard, ShardOptions, SnapshotError, NEVER};
use dolbom_calendar::Router;
use dolbom_domain::legacy::{HouseholdConfigV3, HouseholdEventV3};
use dolbom_domain::Ts;
use dolbom_engine::legacy::HouseholdStateV3;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

pub(crate) const SNAPSHOT_FORMAT: u32 = 5;

#[derive(Serialize)]
pub(crate) struct SnapshotRef<'a> {
    pub format: u32,
    pub partition: i32,
    pub slots: &'a [Option<Entity>],
    pub areas: &'a [Area],
    pub pending: &'a [Pending],
    pub event_max: Option<Ts>,
    pub fired_to: Ts,
    pub health: &'a Health,
}

#[derive(Deserialize)]
pub(crate) struct SnapshotOwned {
    #[allow(dead_code)] // read ahead of the rest, to choose the layout
    pub format: u32,
    pub partition: i32,
    pub slots: Vec<Option<Entity>>,
    pub areas: Vec<Area>,
    pub pending: Vec<Pending>,
    pub event_max: Option<Ts>,
    pub fired_to: Ts,
    pub health: Health,
}

impl SnapshotOwned {
    /// Any format still supported, as today's layout.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, SnapshotError> {
        let (format, _) = postcard::take_from_bytes::<u32>(bytes)?;
        Ok(match format {
            SNAPSHOT_FORMAT => postcard::from_bytes(bytes)?,
            4 => postcard::from_bytes::<SnapshotOwnedV4>(bytes)?.into(),
            3 => postcard::from_bytes::<SnapshotOwnedV3<PendingV3>>(bytes)?.into(),
            2 => postcard::from_bytes::<SnapshotOwnedV3<PendingV2>>(bytes)?.into(),
            f => return Err(SnapshotError::Format(f)),
        })
    }
}

/// Formats 2 to 4: the partition's health before it kept its last stall.
#[derive(Deserialize)]
struct HealthV4 {
    last_input_wall: Ts,
    stalled: Option<(Ts, Ts)>,
    grace: Option<(Ts, Ts)>,
}

impl From<HealthV4> for Health {
    fn from(h: HealthV4) -> Self {
        Health {
            last_input_wall: h.last_input_wall,
            stalled: h.stalled,
            grace: h.grace,
            // A stall in progress is the latest one; an earlier one is not
            // known (the next may repeat its id, as format 4 did).
            last_stall: h.stalled.map(|(_, episode)| episode),
        }
    }
}

/// Format 4: today's layout but for the health.
#[derive(Deserialize)]
struct SnapshotOwnedV4 {
    format: u32,
    partition: i32,
    slots: Vec<Option<Entity>>,
    areas: Vec<Area>,
    pending: Vec<Pending>,
    event_max: Option<Ts>,
    fired_to: Ts,
    health: HealthV4,
}

impl From<SnapshotOwnedV4> for SnapshotOwned {
    fn from(s: SnapshotOwnedV4) -> Self {
        SnapshotOwned {
            format: s.format,
            partition: s.partition,
            slots: s.slots,
            areas: s.areas,
            pending: s.pending,
            event_max: s.event_max,
            fired_to: s.fired_to,
            health: s.health.into(),
        }
    }
}

/// Formats 2 and 3: households and events before learned detection; `P`
/// is the pending opening of the format.
#[derive(Deserialize)]
struct SnapshotOwnedV3<P> {
    format: u32,
    partition: i32,
    slots: Vec<Option<EntityV3>>,
    areas: Vec<Area>,
    pending: Vec<P>,
    event_max: Option<Ts>,
    fired_to: Ts,
    health: HealthV4,
}

#[derive(Deserialize)]
struct EntityV3 {
    cfg: HouseholdConfigV3,
    state: HouseholdStateV3,
    scheduled: Ts,
    area: u32,
    absorbed: bool,
    offline_open: bool,
}

/// Format 3's pending opening.
#[derive(Deserialize)]
struct PendingV3 {
    slot: u32,
    event: HouseholdEventV3,
    until: Ts,
    release: bool,
    closed: Option<HouseholdEventV3>,
}

/// Format 2's pending opening: no `closed`.
#[derive(Deserialize)]
struct PendingV2 {
    slot: u32,
    event: HouseholdEventV3,
    until: Ts,
    release: bool,
}

impl From<PendingV3> for Pending {
    fn from(p: PendingV3) -> Self {
        Pending {
            slot: p.slot,
            event: p.event.into(),
            until: p.until,
            release: p.release,
            closed: p.closed.map(Into::into),
        }
    }
}

impl From<PendingV2> for Pending {
    fn from(p: PendingV2) -> Self {
        Pending {
            slot: p.slot,
            event: p.event.into(),
            until: p.until,
            release: p.release,
            closed: None,
        }
    }
}

impl<P: Into<Pending>> From<SnapshotOwnedV3<P>> for SnapshotOwned {
    fn from(s: SnapshotOwnedV3<P>) -> Self {
        let slots = s
            .slots
            .into_iter()
            .map(|e| {
                e.map(|e| Entity {
                    cfg: e.cfg.into(),
                    state: e.state.into(),
                    scheduled: e.scheduled,
                    queued: crate::NEVER,
                    area: e.area,
                    absorbed: e.absorbed,
                    offline_open: e.offline_open,
                })
            })
            .collect();
        SnapshotOwned {
            format: s.format,
            partition: s.partition,
            slots,
            areas: s.areas,
            pending: s.pending.into_iter().map(Into::into).collect(),
            event_max: s.event_max,
            fired_to: s.fired_to,
            health: s.health.into(),
        }
    }
}

impl Shard {
    /// The whole shard as bytes (postcard).
    pub fn snapshot(&self) -> Vec<u8> {
        let s = SnapshotRef {
            format: SNAPSHOT_FORMAT,
            partition: self.partition,
            slots: &self.slots,
            areas: &self.areas,
            pending: &self.pending,
            event_max: self.event_max,
            fired_to: self.fired_to,
            health: &self.health,
        };
        postcard::to_allocvec(&s).expect("in-memory serialization cannot fail")
    }

    /// Rebuilds a shard from [`snapshot`](Self::snapshot) bytes. Events whose
    /// ids are in `already_published` will not be published again (the
    /// replay after a restore re-derives them).
    pub fn restore(
        bytes: &[u8],
        opts: ShardOptions,
        router: Router,
        wall_now: Ts,
        already_published: HashSet<String>,
    ) -> Result<Self, SnapshotError> {
        let s = SnapshotOwned::decode(bytes)?;
        let mut shard = Shard::new(s.partition, opts, router, wall_now);
        shard.slots = s.slots;
        shard.areas = s.areas;
        shard.pending = s.pending;
        shard.event_max = s.event_max;
        shard.fired_to = s.fired_to;
        shard.replay_from_input = Some(s.health.last_input_wall);
        shard.health = s.health;
        shard.health.last_input_wall = wall_now;
        shard.already_published = already_published;
        for (i, a) in shard.areas.iter_mut().enumerate() {
            shard.area_index.insert(a.id.clone(), i as u32);
            // Judging counts openings by binary search; earlier shards kept
            // them in the order they fired.
            a.recent.make_contiguous().sort_unstable();
        }
        for (i, slot) in shard.slots.iter_mut().enumerate() {
            match slot {
                None => shard.free.push(i as u32),
                Some(e) => {
                    shard.households += 1;
                    e.queued = NEVER;
                    if e.scheduled != NEVER {
                        e.queued = e.scheduled;
                        shard.wheel.push(e.scheduled.millis(), i as u32);
                    }
                }
            }
        }
        for slot in 0..shard.slots.len() as u32 {
            if shard.slots[slot as usize].is_some() {
                index_insert(&mut shard.index, &shard.slots, slot);
            }
        }
        Ok(shard)
    }

    /// Tells a fresh shard which event ids were already published (by an
    /// owner that crashed before its first snapshot): they are not published
    /// again when the replay re-derives them.
    pub fn expect_replay(&mut self, already_published: HashSet<String>) {
        self.already_published = already_published;
    }

    /// Event ids still expected from the replay (not yet re-derived).
    pub fn replay_pending(&self) -> usize {
        self.already_published.len()
    }
}
