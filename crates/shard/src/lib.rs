//! One partition's households: the monitor's unit of work, as pure code.
//!
//! A [`Shard`] hosts every household of one `plug.readings` partition as a
//! compact logical actor (config + [`HouseholdState`] + two deadlines, about
//! 340 bytes with its index and wheel entry), processed one message at a
//! time. It owns:
//!
//! - **One timer wheel** ([`TimerWheel`]) for all its households' deadlines.
//!   A deadline that moves later leaves its old entry behind; each advance
//!   sweeps the coming minute of such stale entries, paced so that a second's
//!   bucket is clean when it comes due: households registered together (all
//!   their first offline checks in one millisecond) no longer make one tick
//!   pay for all of them while real deadlines wait behind.
//! - **The partition's watermark.** Event time is the newest `observed_at` of
//!   an accepted reading; deadlines fire up to `watermark - allowed_lateness`.
//!   With [`ClockMode::Wall`] (production) a plug whose clock runs ahead
//!   neither pushes the partition's time nor is dropped: a reading stamped
//!   after its record was sent counts at the send time (the Kafka record
//!   timestamp; without one, at most the monitor's clock). Only a record sent
//!   more than [`MAX_CLOCK_SKEW_MS`] in the monitor's future is rejected: then
//!   the monitor's own clock is behind, its partitions stall and SRE hears of
//!   it. [`ClockMode::Event`] (replays, simulations, tests) trusts event time
//!   alone. On the wall clock a partition the
//!   monitor has read to its end ([`Shard::set_caught_up`]) also fires by
//!   the wall clock (less the allowed lateness) while healthy, up to
//!   [`QUIET_PARTITION_INPUT_MS`] past its last input and past its newest
//!   reading's time, so a quiet partition does not wait for its next reading
//!   and a monitor clock running ahead fires nothing early.
//! - **Stall inhibition.** If input stops for `stall_after_ms` of wall time
//!   while households are hosted (or, in wall mode, event time lags the wall
//!   clock by more than `max_event_lag_ms`), firing freezes: no inactivity is
//!   inferred from missing data, and one PIPELINE_STALL incident (routed to
//!   SRE) goes out. When input resumes the stall recovers, and firing stays
//!   frozen for `resume_grace_ms` of event time so every household can report
//!   before deadlines that fell inside the gap are judged: no flood.
//! - **Area inhibition.** Households are grouped by dong (or building, if
//!   configured). A DEVICE_OFFLINE opening is held for `area.hold_ms`; if
//!   enough of an area's households go offline within `area.window_ms`, one
//!   AREA_OUTAGE incident replaces their individual incidents (they are
//!   absorbed, with everything they would emit until they recover). When most
//!   come back the area incident recovers and anyone still offline is
//!   released: their incident is announced then, nothing is lost. Incidents
//!   that were already open before the outage are never absorbed. An area
//!   is judged as a whole, not from this partition's share of it: shards
//!   that [`Shard::share_areas`] write their part of each area to an
//!   [`AreaBoard`] and add up the other partitions' parts (see `area.rs`),
//!   so the decision does not depend on the partition count.
//! - **Snapshots** ([`Shard::snapshot`] / [`Shard::restore`]): the whole shard
//!   as bytes. A restore can be told which event ids were already published,
//!   so replaying the input after the snapshot does not publish them again.
//!
//! Where each part lives: `records.rs` (configs and readings in),
//! `deadlines.rs` (advance: health, firing, sweeping; effects to events),
//! `outage.rs` (held, absorbed or published; area outages judged),
//! `area.rs` and `board.rs` (an area's counts, shared across partitions),
//! `wheel.rs`, `snapshot.rs`, and `options.rs`, `output.rs`, `error.rs` for
//! what the shard takes and gives.
//!
//! Data flow: the monitor feeds records ([`Shard::on_reading_bytes`],
//! [`Shard::on_config_bytes`]) and ticks ([`Shard::advance`]) with the wall
//! clock passed in; the shard appends [`Output`]s (wire incident events, all
//! with deterministic ids) for the monitor to publish. No I/O, no clock.

mod area;
mod board;
mod deadlines;
mod error;
mod options;
mod outage;
mod output;
mod records;
mod snapshot;
mod wheel;

use area::Area;
pub use area::{AreaCounts, AreaOptions};
pub use board::{AreaBoard, Behind, SharedCounts, SharedProgress};
pub use error::{Rejection, SnapshotError};
pub use options::{ClockMode, ShardOptions};
pub use output::{Output, ShardStats, RETIME_REPORT_MS};
pub use wheel::{Swept, TimerWheel};

use dolbom_calendar::Router;
use dolbom_domain::convert::{self, PlatformIncident};
use dolbom_domain::{
    EventType, HouseholdConfig, HouseholdEvent, HouseholdId, IncidentKind, Route, Ts,
};
pub use dolbom_engine::MAX_CLOCK_SKEW_MS;
use dolbom_engine::{Effect, HouseholdState};
use dolbom_proto::v1 as pb;
use hashbrown::HashTable;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};

const NEVER: Ts = Ts::MAX;
fn never() -> Ts {
    NEVER
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Entity {
    cfg: HouseholdConfig,
    state: HouseholdState,
    /// The authoritative next deadline ([`NEVER`] = none).
    scheduled: Ts,
    /// The earliest entry this household has in the wheel.
    #[serde(skip, default = "never")]
    queued: Ts,
    area: u32,
    /// Its open incident is absorbed by an area outage.
    absorbed: bool,
    /// Its open incident is a DEVICE_OFFLINE one (counted in its area).
    offline_open: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Pending {
    slot: u32,
    event: HouseholdEvent,
    until: Ts,
    /// Released from an area outage that ended: if the household recovers
    /// before `until`, neither this nor its recovery is published.
    release: bool,
    /// The household's closing event (it came back) that arrived after
    /// `until`, while the opening still waited for other partitions' view
    /// of its area: published after the opening, or absorbed with it.
    closed: Option<HouseholdEvent>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Health {
    last_input_wall: Ts,
    /// Firing limit frozen by a stall in progress, and the stall's episode start.
    stalled: Option<(Ts, Ts)>,
    /// After a stall: firing frozen at `.0` until event time reaches `.1`.
    grace: Option<(Ts, Ts)>,
    /// The latest stall's episode start: the next stall's is later, so its
    /// events have ids of their own (snapshot format 5).
    last_stall: Option<Ts>,
}

/// One partition's households. See the crate documentation.
pub struct Shard {
    partition: i32,
    opts: ShardOptions,
    router: Router,
    index: HashTable<u32>,
    slots: Vec<Option<Entity>>,
    free: Vec<u32>,
    households: usize,
    wheel: TimerWheel,
    areas: Vec<Area>,
    area_index: HashMap<String, u32>,
    pending: Vec<Pending>,
    /// When (wall clock, this process) each held opening was first found
    /// waiting for another monitor's partitions; not snapshotted: after a
    /// restore the wait starts again.
    waiting_since: HashMap<u32, Ts>,
    event_max: Option<Ts>,
    fired_to: Ts,
    health: Health,
    already_published: HashSet<String>,
    stats: ShardStats,
    effects: Vec<Effect>,
    due: Vec<u32>,
    /// The consumer has read everything the partition holds (see
    /// [`Shard::set_caught_up`]). Not snapshotted: a restored shard replays
    /// first.
    caught_up: bool,
    /// Wall time as the shard lives it, for judging silence; not
    /// snapshotted (a restored shard starts counting afresh).
    elapsed: Elapsed,
    /// `elapsed` when input last arrived.
    last_input_elapsed: i64,
    /// Until the first replayed record: when input last arrived before the
    /// restore (from the snapshot; never, for a fresh shard), so that a
    /// replay caps wall-clock firing where the live run did.
    replay_from_input: Option<Ts>,
    /// Where this shard's part of each area is shared (not snapshotted: the
    /// monitor shares it again after a restore).
    board: Option<AreaBoard>,
    /// Areas whose part changed during the current call, reported to the
    /// board when it ends.
    areas_changed: Vec<u32>,
    /// How far ahead, and at least how many entries per advance, stale
    /// wheel entries are swept ([`SWEEP_AHEAD_MS`], [`SWEEP_MIN`]; tests
    /// vary them).
    sweep_ahead_ms: i64,
    sweep_min: usize,
}

/// Time elapsed on the wall clock, never backwards: a monitor clock that
/// jumps back must not hide a silence (measured as the difference of two
/// wall readings, a jump back of 15 minutes would hide 15 minutes of
/// missing input).
#[derive(Clone, Copy, Debug)]
struct Elapsed {
    last_wall: Option<Ts>,
    ms: i64,
}

impl Elapsed {
    fn at(&mut self, wall: Ts) -> i64 {
        if let Some(last) = self.last_wall {
            self.ms += wall.since(last).max(0);
        }
        self.last_wall = Some(wall);
        self.ms
    }
}

/// How long after the partition's last input a caught-up partition keeps
/// firing by the wall clock: every plug reports at least once a minute, so
/// a healthy partition is never quieter than this; past it, only event time
/// (and then the stall gate) moves firing.
pub const QUIET_PARTITION_INPUT_MS: i64 = 65_000;

/// How far ahead of its firing limit a shard sweeps stale wheel entries.
const SWEEP_AHEAD_MS: i64 = 60_000;
/// Wheel entries a shard sweeps at least per advance (when there are any).
const SWEEP_MIN: usize = 1_024;

fn hash_id(id: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(id.as_bytes())
}

/// Adds a live slot to the household index (keyed by its household id).
fn index_insert(index: &mut HashTable<u32>, slots: &[Option<Entity>], slot: u32) {
    let hash_of = |s: u32| {
        let e = slots[s as usize].as_ref().expect("indexed slots are live");
        hash_id(e.cfg.household_id.as_str())
    };
    index.insert_unique(hash_of(slot), slot, |&s| hash_of(s));
}

impl Shard {
    pub fn new(partition: i32, opts: ShardOptions, router: Router, wall_now: Ts) -> Self {
        Self {
            partition,
            opts,
            router,
            index: HashTable::new(),
            slots: Vec::new(),
            free: Vec::new(),
            households: 0,
            wheel: TimerWheel::default(),
            areas: Vec::new(),
            area_index: HashMap::new(),
            pending: Vec::new(),
            waiting_since: HashMap::new(),
            event_max: None,
            fired_to: Ts::MIN,
            health: Health {
                last_input_wall: wall_now,
                ..Health::default()
            },
            already_published: HashSet::new(),
            replay_from_input: Some(Ts::MIN),
            stats: ShardStats::default(),
            effects: Vec::new(),
            due: Vec::new(),
            caught_up: false,
            elapsed: Elapsed {
                last_wall: Some(wall_now),
                ms: 0,
            },
            last_input_elapsed: 0,
            board: None,
            areas_changed: Vec::new(),
            sweep_ahead_ms: SWEEP_AHEAD_MS,
            sweep_min: SWEEP_MIN,
        }
    }

    /// Whether the consumer has read everything the partition holds (Kafka
    /// reported the end of the partition and nothing was read since). On
    /// the wall clock a caught-up, healthy partition fires deadlines by the
    /// wall clock (less the allowed lateness) even when no later reading
    /// arrives — a quiet partition of a few households must not wait for
    /// its next reading — but never further than
    /// [`QUIET_PARTITION_INPUT_MS`] past its last input, so missing input
    /// still infers nothing and the stall gate still holds.
    pub fn set_caught_up(&mut self, caught_up: bool) {
        self.caught_up = caught_up;
    }

    pub fn partition(&self) -> i32 {
        self.partition
    }
    pub fn households(&self) -> usize {
        self.households
    }
    /// Wheel entries, including stale ones waiting to be skipped.
    pub fn pending_deadlines(&self) -> usize {
        self.wheel.len()
    }
    /// Newest accepted event time.
    pub fn watermark(&self) -> Option<Ts> {
        self.event_max
    }
    /// Deadlines up to here have fired.
    pub fn fired_to(&self) -> Ts {
        self.fired_to
    }
    pub fn is_stalled(&self) -> bool {
        self.health.stalled.is_some()
    }
    pub fn stats(&self) -> ShardStats {
        self.stats
    }
    /// The household's open incident, if any (kind, stage, episode start).
    pub fn open_incident(
        &self,
        household: &str,
    ) -> Option<(IncidentKind, dolbom_domain::Stage, Ts)> {
        let slot = self.lookup(household)?;
        self.entity(slot).state.open_incident()
    }

    fn lookup(&self, id: &str) -> Option<u32> {
        let slots = &self.slots;
        self.index
            .find(hash_id(id), |&s| {
                slots[s as usize]
                    .as_ref()
                    .is_some_and(|e| e.cfg.household_id.as_str() == id)
            })
            .copied()
    }

    fn entity(&self, slot: u32) -> &Entity {
        self.slots[slot as usize].as_ref().expect("live slot")
    }
    fn entity_mut(&mut self, slot: u32) -> &mut Entity {
        self.slots[slot as usize].as_mut().expect("live slot")
    }

    /// Current time for engine calls: the firing limit, or a later reading's own time.
    fn engine_now(&self, at_least: Ts) -> Ts {
        self.fired_to.max(at_least)
    }

    fn emit_time(&self, wall_now: Ts, event_now: Ts) -> Ts {
        match self.opts.clock {
            ClockMode::Wall => wall_now,
            ClockMode::Event => event_now,
        }
    }

    /// Open incidents hosted here: (household, kind, stage, episode start).
    pub fn open_incidents(
        &self,
    ) -> impl Iterator<Item = (&HouseholdId, IncidentKind, dolbom_domain::Stage, Ts)> {
        self.slots.iter().flatten().filter_map(|e| {
            e.state
                .open_incident()
                .map(|(k, s, t)| (&e.cfg.household_id, k, s, t))
        })
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_area;
