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
//! Data flow: the monitor feeds records ([`Shard::on_reading_bytes`],
//! [`Shard::on_config_bytes`]) and ticks ([`Shard::advance`]) with the wall
//! clock passed in; the shard appends [`Output`]s (wire incident events, all
//! with deterministic ids) for the monitor to publish. No I/O, no clock.

mod area;
mod board;
mod snapshot;
mod wheel;

use area::Area;
pub use area::{AreaCounts, AreaOptions};
pub use board::{AreaBoard, Behind, SharedCounts, SharedProgress};
use snapshot::{SnapshotOwned, SnapshotRef, SNAPSHOT_FORMAT};
pub use wheel::{Swept, TimerWheel};

use dolbom_calendar::Router;
use dolbom_domain::convert::{self, PlatformIncident};
use dolbom_domain::{
    ConfigError, EventType, HouseholdConfig, HouseholdEvent, HouseholdId, IncidentKind, Route, Ts,
    MINUTE_MS,
};
pub use dolbom_engine::MAX_CLOCK_SKEW_MS;
use dolbom_engine::{Effect, HouseholdState, Reading, ReadingError, ReadingOutcome};
use dolbom_proto::v1 as pb;
use hashbrown::HashTable;
use prost::Message;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};

/// Where the shard's sense of "now" comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ClockMode {
    /// Production: readings are checked against the wall clock.
    #[default]
    Wall,
    /// Replays, simulations and tests: event time only.
    Event,
}

/// Timing settings of a shard.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ShardOptions {
    pub clock: ClockMode,
    /// Deadlines fire this far behind the partition's newest event time, so a
    /// reading delayed by less than this still counts.
    pub allowed_lateness_ms: i64,
    /// No input for this long (wall time) while households are hosted is a stall.
    pub stall_after_ms: i64,
    /// Wall mode: event time lagging the wall clock by more than this is a stall.
    /// 0 disables the check.
    pub max_event_lag_ms: i64,
    /// After a stall, firing stays frozen for this much event time.
    pub resume_grace_ms: i64,
    pub area: AreaOptions,
}

impl Default for ShardOptions {
    fn default() -> Self {
        Self {
            clock: ClockMode::Wall,
            allowed_lateness_ms: 200,
            stall_after_ms: 2 * MINUTE_MS,
            max_event_lag_ms: 10 * MINUTE_MS,
            resume_grace_ms: 5 * MINUTE_MS,
            area: AreaOptions::default(),
        }
    }
}

/// Why a record was not taken. The shard is unchanged by a rejection.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejection {
    #[error("not a valid {what}: {detail}")]
    Malformed { what: &'static str, detail: String },
    #[error("reading has no household id")]
    MissingHousehold,
    #[error("household {0:?} is not registered on this partition")]
    UnknownHousehold(String),
    #[error(transparent)]
    Reading(#[from] ReadingError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("config version {got} of {household} is older than version {have}")]
    StaleConfig {
        household: String,
        got: u64,
        have: u64,
    },
    #[error("record key {key:?} does not match household {household:?}")]
    KeyMismatch { key: String, household: String },
}

impl Rejection {
    /// Short label for `dolbom_readings_rejected_total{reason=…}`.
    pub fn label(&self) -> &'static str {
        match self {
            Rejection::Malformed { .. } => "malformed",
            Rejection::MissingHousehold => "missing_household",
            Rejection::UnknownHousehold(_) => "unknown_household",
            Rejection::Reading(e) => e.label(),
            Rejection::Config(_) => "invalid_config",
            Rejection::StaleConfig { .. } => "stale_config",
            Rejection::KeyMismatch { .. } => "key_mismatch",
        }
    }
}

/// A snapshot that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot cannot be decoded: {0}")]
    Decode(#[from] postcard::Error),
    #[error("snapshot format {0} is not supported (expected {SNAPSHOT_FORMAT})")]
    Format(u32),
}

/// What the shard wants the world to know.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// An incident event to publish (key: [`Output::key`]).
    Event(Box<pb::IncidentEvent>),
    /// Activity during an absence ended it early; the registry should record it.
    AbsenceEndedEarly {
        household: HouseholdId,
        starts_at: Ts,
        at: Ts,
    },
}

impl Output {
    /// The Kafka key: the household id, or the subject of a platform incident.
    pub fn key(&self) -> &str {
        match self {
            Output::Event(e) if !e.household_id.is_empty() => &e.household_id,
            Output::Event(e) => e.incident_id.as_str(),
            Output::AbsenceEndedEarly { household, .. } => household.as_str(),
        }
    }
}

/// Counters a shard keeps about itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShardStats {
    pub events_emitted: u64,
    /// Events not published again because they were before a restore.
    pub replays_suppressed: u64,
    /// Household events absorbed by an area outage.
    pub absorbed_by_area: u64,
    pub stalls: u64,
    /// Readings stamped after they were sent (a plug whose clock runs ahead)
    /// by more than [`RETIME_REPORT_MS`], counted at their send time instead.
    pub readings_retimed: u64,
}

/// A reading stamped this far or less after its send time is re-timed
/// silently (clocks differ by milliseconds); beyond it, it is counted.
pub const RETIME_REPORT_MS: i64 = 1_000;

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

    // ── configuration ────────────────────────────────────────────────────

    /// A `care.households` record: a `dolbom.v1.HouseholdConfig`, or a
    /// tombstone (`None`) that removes the household named by the key.
    pub fn on_config_bytes(
        &mut self,
        key: &[u8],
        payload: Option<&[u8]>,
        wall_now: Ts,
        out: &mut Vec<Output>,
    ) -> Result<(), Rejection> {
        let key = std::str::from_utf8(key).map_err(|e| Rejection::Malformed {
            what: "household key",
            detail: e.to_string(),
        })?;
        let Some(bytes) = payload else {
            self.remove(key);
            return Ok(());
        };
        let wire = pb::HouseholdConfig::decode(bytes).map_err(|e| Rejection::Malformed {
            what: "dolbom.v1.HouseholdConfig",
            detail: e.to_string(),
        })?;
        let cfg = HouseholdConfig::try_from(&wire)?;
        if cfg.household_id.as_str() != key {
            return Err(Rejection::KeyMismatch {
                key: key.to_string(),
                household: cfg.household_id.to_string(),
            });
        }
        self.apply_config(cfg, wall_now, out)
    }

    /// Registers a household or updates it. Versions only move forward.
    pub fn apply_config(
        &mut self,
        cfg: HouseholdConfig,
        wall_now: Ts,
        out: &mut Vec<Output>,
    ) -> Result<(), Rejection> {
        cfg.validate()?;
        let now = self.fired_to;
        if let Some(slot) = self.lookup(cfg.household_id.as_str()) {
            let have = self.entity(slot).cfg.version;
            if cfg.version < have {
                return Err(Rejection::StaleConfig {
                    household: cfg.household_id.to_string(),
                    got: cfg.version,
                    have,
                });
            }
            let area = self.area_for(&cfg);
            if area != self.entity(slot).area {
                self.leave_area(slot, wall_now, out);
                let e = self.entity_mut(slot);
                e.area = area;
                self.areas[area as usize].households += 1;
                self.area_changed(area);
            }
            let mut effects = std::mem::take(&mut self.effects);
            let e = self.entity_mut(slot);
            e.cfg = cfg;
            e.state.apply_config(&e.cfg, now, &mut effects);
            self.after_effects(slot, now, wall_now, &mut effects, out);
            self.effects = effects;
            return Ok(());
        }
        let start = match self.opts.clock {
            ClockMode::Wall => wall_now,
            ClockMode::Event => self.event_max.unwrap_or(cfg.registered_at),
        }
        .max(cfg.registered_at);
        let area = self.area_for(&cfg);
        self.areas[area as usize].households += 1;
        self.area_changed(area);
        let entity = Entity {
            state: HouseholdState::new(start),
            cfg,
            scheduled: NEVER,
            queued: NEVER,
            area,
            absorbed: false,
            offline_open: false,
        };
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = Some(entity);
                s
            }
            None => {
                self.slots.push(Some(entity));
                (self.slots.len() - 1) as u32
            }
        };
        index_insert(&mut self.index, &self.slots, slot);
        self.households += 1;
        let mut effects = std::mem::take(&mut self.effects);
        let e = self.entity_mut(slot);
        e.state.evaluate(&e.cfg, now.max(start), &mut effects);
        self.after_effects(slot, now.max(start), wall_now, &mut effects, out);
        self.effects = effects;
        Ok(())
    }

    /// Stops monitoring a household (deregistered).
    pub fn remove(&mut self, household: &str) -> bool {
        let Some(slot) = self.lookup(household) else {
            return false;
        };
        let (area, offline_open) = {
            let e = self.entity(slot);
            (e.area, e.offline_open)
        };
        let a = &mut self.areas[area as usize];
        a.households -= 1;
        if offline_open {
            a.offline -= 1;
        }
        self.area_changed(area);
        self.pending.retain(|p| p.slot != slot);
        if let Ok(entry) = self.index.find_entry(hash_id(household), |&s| s == slot) {
            entry.remove();
        }
        self.slots[slot as usize] = None;
        self.free.push(slot);
        self.households -= 1;
        true
    }

    fn area_for(&mut self, cfg: &HouseholdConfig) -> u32 {
        let id = match (&cfg.building_id, self.opts.area.by_building) {
            (Some(b), true) => format!("{}/{}", cfg.dong, b),
            _ => cfg.dong.to_string(),
        };
        if let Some(&i) = self.area_index.get(&id) {
            return i;
        }
        let i = self.areas.len() as u32;
        self.areas
            .push(Area::new(id.clone(), cfg.municipality, cfg.dong));
        self.area_index.insert(id, i);
        i
    }

    fn leave_area(&mut self, slot: u32, wall_now: Ts, out: &mut Vec<Output>) {
        let now = self.fired_to;
        let e = self.entity_mut(slot);
        let (area, absorbed, offline) = (e.area, e.absorbed, e.offline_open);
        e.absorbed = false;
        e.offline_open = false;
        let a = &mut self.areas[area as usize];
        a.households -= 1;
        if offline {
            a.offline -= 1;
        }
        self.area_changed(area);
        if absorbed {
            self.announce(slot, now, wall_now, out);
        }
    }

    // ── readings ─────────────────────────────────────────────────────────

    /// Marks that input arrived (any record, accepted or not): the pipeline is alive.
    pub fn note_input(&mut self, wall_now: Ts) {
        self.health.last_input_wall = self.health.last_input_wall.max(wall_now);
        self.last_input_elapsed = self.elapsed.at(wall_now);
    }

    /// A `plug.readings` record. `key` is the record key (the household id),
    /// when there is one; `sent_at` the record's Kafka timestamp, when it has
    /// one (see [`Shard::on_reading_sent`]).
    pub fn on_reading_bytes(
        &mut self,
        key: Option<&[u8]>,
        payload: &[u8],
        sent_at: Option<Ts>,
        wall_now: Ts,
        out: &mut Vec<Output>,
    ) -> Result<ReadingOutcome, Rejection> {
        self.note_input(wall_now);
        let r = pb::PlugReading::decode(payload).map_err(|e| Rejection::Malformed {
            what: "dolbom.v1.PlugReading",
            detail: e.to_string(),
        })?;
        if let Some(k) = key {
            if !r.household_id.is_empty() && k != r.household_id.as_bytes() {
                return Err(Rejection::KeyMismatch {
                    key: String::from_utf8_lossy(k).into_owned(),
                    household: r.household_id,
                });
            }
        }
        self.on_reading_sent(&r, sent_at, wall_now, out)
    }

    /// One decoded reading without a send time.
    pub fn on_reading(
        &mut self,
        r: &pb::PlugReading,
        wall_now: Ts,
        out: &mut Vec<Output>,
    ) -> Result<ReadingOutcome, Rejection> {
        self.on_reading_sent(r, None, wall_now, out)
    }

    /// When a reading counts on the wall clock. A plug's clock is cheap and
    /// drifts; one running ahead must neither push the partition's watermark
    /// (firing its neighbours' deadlines early) nor be dropped (its home would
    /// look offline). A reading cannot have been observed after it was sent,
    /// so one stamped after `sent_at` (the record's Kafka timestamp: the
    /// broker's clock with LogAppendTime, the gateway's with CreateTime)
    /// counts at `sent_at`. Without a send time, one stamped up to
    /// [`MAX_CLOCK_SKEW_MS`] ahead of the monitor's clock counts at the
    /// monitor's clock. The decision uses the record alone where it can, so a
    /// replay decides the same (incident ids stay the same). Returns the time
    /// and how far the stamp was ahead.
    fn reading_time(observed: Ts, sent_at: Option<Ts>, wall_now: Ts) -> (Ts, i64) {
        match sent_at {
            Some(sent) if observed > sent => (sent, observed.since(sent)),
            Some(_) => (observed, 0),
            None if observed > wall_now && observed.since(wall_now) <= MAX_CLOCK_SKEW_MS => {
                (wall_now, observed.since(wall_now))
            }
            None => (observed, 0),
        }
    }

    /// A reading replayed after a restore, on the clock it was live on: the
    /// shard's wall clock is the record's send time (its Kafka timestamp),
    /// and the partition counts as caught up, as it was live. So the
    /// deadlines that fell due before the record was sent fire before it is
    /// applied — as they did live — and a replay neither skips an opening
    /// (whose RECOVERED would then never come) nor reads a lag that was not
    /// there as a stall. The caller stops replaying once it has read to the
    /// partition's end and returns to [`Shard::advance`] on its own clock.
    pub fn on_reading_replayed(
        &mut self,
        r: &pb::PlugReading,
        sent_at: Ts,
        out: &mut Vec<Output>,
    ) -> Result<ReadingOutcome, Rejection> {
        self.replayed(sent_at, out, |s, out| {
            s.on_reading_sent(r, Some(sent_at), sent_at, out)
        })
    }

    /// [`Shard::on_reading_bytes`] for a replayed record (see
    /// [`Shard::on_reading_replayed`]).
    pub fn on_reading_bytes_replayed(
        &mut self,
        key: Option<&[u8]>,
        payload: &[u8],
        sent_at: Ts,
        out: &mut Vec<Output>,
    ) -> Result<ReadingOutcome, Rejection> {
        self.replayed(sent_at, out, |s, out| {
            s.on_reading_bytes(key, payload, Some(sent_at), sent_at, out)
        })
    }

    /// Applies a replayed record at `sent_at` as the live run did: the live
    /// ticks before it moved the clock to `sent_at`, the record was applied,
    /// and the tick after it moved the clock again.
    fn replayed<T>(
        &mut self,
        sent_at: Ts,
        out: &mut Vec<Output>,
        apply: impl FnOnce(&mut Self, &mut Vec<Output>) -> T,
    ) -> T {
        if let Some(t) = self.replay_from_input.take() {
            self.health.last_input_wall = t;
        }
        self.caught_up = true;
        self.advance(sent_at, out);
        let r = apply(self, out);
        self.advance(sent_at, out);
        r
    }

    /// One decoded reading; `sent_at` is when it was sent, if known.
    pub fn on_reading_sent(
        &mut self,
        r: &pb::PlugReading,
        sent_at: Option<Ts>,
        wall_now: Ts,
        out: &mut Vec<Output>,
    ) -> Result<ReadingOutcome, Rejection> {
        let mut observed = Ts(r.observed_at_ms);
        let wall = self.opts.clock == ClockMode::Wall;
        let mut retimed_by = 0;
        if wall {
            (observed, retimed_by) = Self::reading_time(observed, sent_at, wall_now);
        }
        // Still ahead of the monitor's clock: the record itself was sent in
        // the monitor's future, so it is the monitor's clock that is behind.
        if wall && observed.since(wall_now) > MAX_CLOCK_SKEW_MS {
            // Not input: if every reading is "from the future" (the
            // monitor's own clock went back), the partition stalls and SRE
            // hears of it, instead of silently firing nothing.
            return Err(ReadingError::FromTheFuture {
                ahead_ms: observed.since(wall_now),
            }
            .into());
        }
        self.note_input(wall_now);
        if r.household_id.is_empty() {
            return Err(Rejection::MissingHousehold);
        }
        let slot = self
            .lookup(&r.household_id)
            .ok_or_else(|| Rejection::UnknownHousehold(r.household_id.clone()))?;
        if retimed_by > RETIME_REPORT_MS {
            self.stats.readings_retimed += 1;
        }
        let watts = convert::reading_watts(r);
        let reading = Reading {
            device_id: &r.device_id,
            observed_at: observed,
            sequence: r.sequence,
            watts: watts.map(|w| w as f32),
            lux: r.lux.map(|l| l as f32),
        };
        let now = self.engine_now(observed);
        let mut effects = std::mem::take(&mut self.effects);
        let e = self.slots[slot as usize].as_mut().expect("live slot");
        let result = e.state.on_reading(&e.cfg, &reading, now, &mut effects);
        if result.is_ok() {
            self.event_max = Some(self.event_max.map_or(observed, |m| m.max(observed)));
        }
        self.after_effects(slot, now, wall_now, &mut effects, out);
        self.effects = effects;
        Ok(result?)
    }

    // ── time ─────────────────────────────────────────────────────────────

    /// Checks the partition's health and fires every deadline the watermark
    /// has passed. Call after each batch of records and on a regular tick.
    pub fn advance(&mut self, wall_now: Ts, out: &mut Vec<Output>) {
        self.check_health(wall_now, out);
        let lateness = self.opts.allowed_lateness_ms;
        let by_wall = (self.opts.clock == ClockMode::Wall
            && self.caught_up
            && self.health.stalled.is_none()
            && self.health.grace.is_none())
        .then(|| {
            let heard = self
                .health
                .last_input_wall
                .plus_ms(QUIET_PARTITION_INPUT_MS);
            // Nor more than that past the plugs' own newest time: a monitor
            // clock running ahead must not fire deadlines early.
            let plugs = self
                .event_max
                .map_or(Ts::MIN, |e| e.plus_ms(QUIET_PARTITION_INPUT_MS));
            wall_now.min(heard).min(plugs).plus_ms(-lateness)
        });
        let by_event = self.event_max.map(|e| e.plus_ms(-lateness));
        let Some(mut limit) = by_event.max(by_wall) else {
            return;
        };
        let event_max = self.event_max.unwrap_or(Ts::MIN);
        if let Some((frozen, _)) = self.health.stalled {
            limit = limit.min(frozen);
        } else if let Some((frozen, until)) = self.health.grace {
            if event_max < until {
                limit = limit.min(frozen);
            } else {
                self.health.grace = None;
            }
        }
        if limit > self.fired_to {
            self.fire_due(limit, wall_now, out);
            self.fired_to = limit;
            if let Some(b) = &self.board {
                b.progress(self.partition, limit);
            }
        }
        self.recheck_areas(wall_now, out);
        self.flush_pending(self.fired_to, wall_now, out);
        self.sweep_ahead();
    }

    /// Clears the coming minute of the wheel of stale entries, paced so
    /// that each second's bucket is swept by the time it comes due: a
    /// bucket then holds (nearly) only real deadlines when it fires, however
    /// many households once queued into it (see `wheel.rs`). An entry stays
    /// if its household is due in that bucket (or earlier); the household's
    /// earliest entry moves to its real deadline; any other is dropped —
    /// exactly what [`Shard::fire_due`] would do with it, ahead of time.
    fn sweep_ahead(&mut self) {
        if self.fired_to == Ts::MIN || self.wheel.is_empty() {
            return;
        }
        let after = self.fired_to.millis();
        let through = after.saturating_add(self.sweep_ahead_ms);
        let budget = self.wheel.pace(after, through).max(self.sweep_min);
        let slots = &mut self.slots;
        self.wheel.sweep(after, through, budget, |slot, bucket_ms| {
            let Some(e) = slots[slot as usize].as_mut() else {
                return Swept::Drop; // removed household
            };
            let bucket = bucket_ms.div_euclid(1000);
            if e.scheduled != NEVER && e.scheduled.millis().div_euclid(1000) <= bucket {
                return Swept::Keep;
            }
            let earliest = e.queued != NEVER && e.queued.millis().div_euclid(1000) == bucket;
            if !earliest {
                return Swept::Drop;
            }
            e.queued = e.scheduled;
            if e.scheduled == NEVER {
                Swept::Drop
            } else {
                Swept::Move(e.scheduled.millis())
            }
        });
    }

    fn check_health(&mut self, wall_now: Ts, out: &mut Vec<Output>) {
        let silent_ms = self.elapsed.at(wall_now) - self.last_input_elapsed;
        let idle = self.households > 0 && silent_ms > self.opts.stall_after_ms;
        let lagging = self.opts.clock == ClockMode::Wall
            && self.opts.max_event_lag_ms > 0
            && self
                .event_max
                .is_some_and(|e| wall_now.since(e) > self.opts.max_event_lag_ms);
        let unhealthy = idle || lagging;
        match (self.health.stalled, unhealthy) {
            (None, true) => {
                let frozen = self.fired_to;
                let episode = if frozen == Ts::MIN { wall_now } else { frozen };
                self.health.stalled = Some((frozen, episode));
                self.health.grace = None;
                self.stats.stalls += 1;
                let due = if idle {
                    self.health
                        .last_input_wall
                        .plus_ms(self.opts.stall_after_ms)
                } else {
                    wall_now
                };
                let ev = self.stall_event(EventType::Opened, episode, due, wall_now);
                self.publish(ev, out);
            }
            (Some((frozen, episode)), false) => {
                self.health.stalled = None;
                let resumed = self.event_max.unwrap_or(frozen);
                self.health.grace = Some((frozen, resumed.plus_ms(self.opts.resume_grace_ms)));
                let ev = self.stall_event(EventType::Recovered, episode, wall_now, wall_now);
                self.publish(ev, out);
            }
            _ => {}
        }
    }

    /// This partition's PIPELINE_STALL incident event (routed to SRE).
    fn stall_event(
        &self,
        event: EventType,
        episode: Ts,
        due: Ts,
        wall_now: Ts,
    ) -> pb::IncidentEvent {
        convert::platform_event(&PlatformIncident {
            kind: IncidentKind::PipelineStall,
            subject: &format!("partition-{}", self.partition),
            event,
            episode_start: episode,
            due_at: due,
            emitted_at: wall_now,
            route: Route::Sre,
            municipality: None,
            dong: None,
            affected_households: self.households as u32,
        })
    }

    fn fire_due(&mut self, limit: Ts, wall_now: Ts, out: &mut Vec<Output>) {
        let mut due = std::mem::take(&mut self.due);
        let mut ready: Vec<(Ts, u32)> = Vec::new();
        let mut requeue: Vec<u32> = Vec::new();
        let limit_bucket = limit.millis().div_euclid(1000);
        let mut effects = std::mem::take(&mut self.effects);
        loop {
            due.clear();
            self.wheel.take_due(limit.millis(), &mut due);
            if due.is_empty() {
                break;
            }
            ready.clear();
            for &slot in &due {
                let Some(e) = self.slots[slot as usize].as_mut() else {
                    continue; // removed household
                };
                let popped_earliest =
                    e.queued != NEVER && e.queued.millis().div_euclid(1000) <= limit_bucket;
                if popped_earliest {
                    e.queued = NEVER;
                }
                if e.scheduled <= limit {
                    ready.push((e.scheduled, slot));
                } else if popped_earliest && e.scheduled != NEVER {
                    requeue.push(slot);
                }
            }
            ready.sort_unstable();
            ready.dedup_by_key(|r| r.1);
            for &(t, slot) in &ready {
                let e = self.slots[slot as usize].as_mut().expect("live");
                if e.scheduled != t {
                    continue;
                }
                e.scheduled = NEVER;
                e.state.evaluate(&e.cfg, t, &mut effects);
                self.after_effects(slot, t, wall_now, &mut effects, out);
            }
        }
        for slot in requeue {
            if let Some(e) = self.slots[slot as usize].as_mut() {
                if e.scheduled != NEVER && e.scheduled < e.queued {
                    e.queued = e.scheduled;
                    self.wheel.push(e.scheduled.millis(), slot);
                }
            }
        }
        self.effects = effects;
        self.due = due;
    }

    fn reschedule(&mut self, slot: u32, now: Ts) {
        let e = self.slots[slot as usize].as_mut().expect("live");
        let next = e.state.next_deadline(&e.cfg, now).unwrap_or(NEVER);
        e.scheduled = next;
        if next != NEVER && next < e.queued {
            e.queued = next;
            self.wheel.push(next.millis(), slot);
        }
    }

    // ── effects → outputs ────────────────────────────────────────────────

    fn after_effects(
        &mut self,
        slot: u32,
        now: Ts,
        wall_now: Ts,
        effects: &mut Vec<Effect>,
        out: &mut Vec<Output>,
    ) {
        for eff in effects.drain(..) {
            match eff {
                Effect::AbsenceEndedEarly { starts_at, at } => {
                    out.push(Output::AbsenceEndedEarly {
                        household: self.entity(slot).cfg.household_id.clone(),
                        starts_at,
                        at,
                    });
                }
                Effect::Incident(ev) => self.household_event(slot, ev, now, wall_now, out),
            }
        }
        self.reschedule(slot, now);
    }

    fn household_event(
        &mut self,
        slot: u32,
        ev: HouseholdEvent,
        now: Ts,
        wall_now: Ts,
        out: &mut Vec<Output>,
    ) {
        let closing = matches!(ev.event, EventType::Recovered | EventType::Suppressed(_));
        let area = self.entity(slot).area;
        let hold = self.opts.area.hold_ms;
        if ev.kind == IncidentKind::DeviceOffline && ev.event == EventType::Opened {
            self.entity_mut(slot).offline_open = true;
            let window = self.opts.area.window_ms;
            let a = &mut self.areas[area as usize];
            a.offline += 1;
            a.recent.push_back(ev.due_at);
            while a
                .recent
                .front()
                .is_some_and(|t| ev.due_at.since(*t) > window)
            {
                a.recent.pop_front();
            }
            let active = a.active.is_some();
            self.area_changed(area);
            if hold > 0 {
                if active {
                    self.absorb(slot);
                    return;
                }
                self.pending.push(Pending {
                    slot,
                    event: ev,
                    until: ev.due_at.plus_ms(hold),
                    release: false,
                    closed: None,
                });
                self.check_area_outage(area, now, wall_now, out);
                return;
            }
        }
        if closing && self.entity(slot).offline_open {
            self.entity_mut(slot).offline_open = false;
            self.areas[area as usize].offline -= 1;
            self.area_changed(area);
        }
        if self.entity(slot).absorbed {
            self.stats.absorbed_by_area += 1;
            if closing {
                self.entity_mut(slot).absorbed = false;
                self.check_area_recovery(area, now, wall_now, out);
            }
            return;
        }
        if let Some(i) = self.pending.iter().position(|p| p.slot == slot) {
            let p = &mut self.pending[i];
            if closing && !p.release && p.until <= self.fired_to {
                // Its hold is over and it only waits for the other
                // partitions of its area (a replay racing ahead of another
                // monitor): whether it was part of an outage is still open,
                // so its recovery waits with it.
                p.closed = Some(ev);
                return;
            }
            let p = self.pending.remove(i);
            if p.release && closing {
                // Came back right after its area did: never announced, so no recovery either.
                return;
            }
            self.publish_household(slot, &p.event, now, wall_now, out);
        }
        self.publish_household(slot, &ev, now, wall_now, out);
        if closing {
            self.check_area_recovery(area, now, wall_now, out);
        }
    }

    fn absorb(&mut self, slot: u32) {
        self.stats.absorbed_by_area += 1;
        self.entity_mut(slot).absorbed = true;
    }

    /// Shares this shard's part of every area through `board` from now on
    /// (see [`AreaBoard`]), and judges areas as a whole: its part plus every
    /// other partition's on the board.
    pub fn share_areas(&mut self, board: AreaBoard) {
        self.board = Some(board);
        for area in 0..self.areas.len() as u32 {
            self.area_changed(area);
        }
    }

    /// Writes this shard's part of `area` to the board, if it shares one.
    fn area_changed(&self, area: u32) {
        if let Some(board) = &self.board {
            let a = &self.areas[area as usize];
            let wall = self.elapsed.last_wall.unwrap_or_default().millis();
            board.report(&a.id, self.partition, a.counts(), wall);
        }
    }

    /// `area` as a whole: this shard's part plus the other partitions'.
    fn whole(&self, area: u32) -> area::Whole {
        let a = &self.areas[area as usize];
        let others = match &self.board {
            Some(b) => b.others(&a.id, self.partition),
            None => AreaCounts::default(),
        };
        a.whole(&others, self.opts.area.window_ms)
    }

    /// With a shared board, what other partitions report changes an area's
    /// outage without any event here: each tick judges again the areas
    /// this shard holds openings of or has declared an outage in.
    fn recheck_areas(&mut self, wall_now: Ts, out: &mut Vec<Output>) {
        if self.board.is_none() {
            return;
        }
        let now = self.fired_to;
        let mut areas: Vec<u32> = self
            .pending
            .iter()
            .map(|p| self.entity(p.slot).area)
            .collect();
        areas.extend(
            (0..self.areas.len() as u32).filter(|&a| self.areas[a as usize].active.is_some()),
        );
        areas.sort_unstable();
        areas.dedup();
        for area in areas {
            if self.areas[area as usize].active.is_some() {
                self.check_area_recovery(area, now, wall_now, out);
            } else {
                self.check_area_outage(area, now, wall_now, out);
            }
        }
    }

    fn check_area_outage(&mut self, area: u32, now: Ts, wall_now: Ts, out: &mut Vec<Output>) {
        if self.areas[area as usize].active.is_some() {
            return;
        }
        // Until every other monitor's partitions were heard of, their
        // households may be missing from the count (a fresh start with a
        // backlog): a few dark homes would look like most of the area. The
        // openings wait meanwhile, and each tick judges again.
        if self
            .board
            .as_ref()
            .is_some_and(|b| b.others_unheard(self.partition))
        {
            return;
        }
        let whole = self.whole(area);
        let threshold = self.opts.area.threshold(whole.households);
        let (episode, first) = match whole.declared_elsewhere {
            // Another partition declared it and it is not over: the same outage.
            Some(episode) if whole.offline * 2 >= threshold => {
                (episode, whole.recent.first().copied().unwrap_or(episode))
            }
            _ if whole.recent.len() >= threshold => {
                // Aligned to the window so shards that see the same outage agree on its id.
                let window = self.opts.area.window_ms.max(1);
                let first = whole.recent[0];
                (Ts(first.millis().div_euclid(window) * window), first)
            }
            _ => return,
        };
        self.areas[area as usize].active = Some(episode);
        self.area_changed(area);
        let mut absorbed = 0;
        let mut i = 0;
        while i < self.pending.len() {
            let slot = self.pending[i].slot;
            if self.entity(slot).area == area {
                let p = self.pending.swap_remove(i);
                if p.closed.is_some() {
                    // Part of the outage, and already back: nothing to announce.
                    self.stats.absorbed_by_area += 1;
                } else {
                    self.absorb(slot);
                }
                absorbed += 1;
            } else {
                i += 1;
            }
        }
        // Homes that went dark in this outage: still dark, absorbed here,
        // or back already (a replay that learnt of the outage late).
        let affected = (absorbed as u32)
            .max(whole.offline as u32)
            .max(whole.recent.len() as u32);
        let emitted_at = self.emit_time(wall_now, now);
        let a = &self.areas[area as usize];
        let ev = a.event(EventType::Opened, episode, first, emitted_at, affected);
        self.publish(ev, out);
    }

    fn check_area_recovery(&mut self, area: u32, now: Ts, wall_now: Ts, out: &mut Vec<Output>) {
        let Some(episode) = self.areas[area as usize].active else {
            return;
        };
        // Only the counts: every returning household asks, and a blackout's
        // recent openings are as many as its households.
        let a = &self.areas[area as usize];
        let (households, offline) = match &self.board {
            Some(b) => b.others_totals(&a.id, self.partition),
            None => (0, 0),
        };
        let households = (a.households + households) as usize;
        let offline = (a.offline + offline) as usize;
        // Recovered when fewer than half the outage threshold are still offline.
        if offline * 2 >= self.opts.area.threshold(households) {
            return;
        }
        let emitted_at = self.emit_time(wall_now, now);
        let a = &mut self.areas[area as usize];
        let ev = a.event(
            EventType::Recovered,
            episode,
            now,
            emitted_at,
            offline as u32,
        );
        a.active = None;
        a.recent.clear();
        a.recovered_at = now;
        self.area_changed(area);
        self.publish(ev, out);
        // Whoever is still offline is released: their incident is announced
        // unless they report within the hold time.
        let members: Vec<u32> = (0..self.slots.len() as u32)
            .filter(|&s| {
                self.slots[s as usize]
                    .as_ref()
                    .is_some_and(|e| e.area == area && e.absorbed)
            })
            .collect();
        // They get the hold time to report like their neighbours did,
        // counted from where the partitions that saw the recovery first
        // are (a shard behind them learns of it early in its own time).
        let base = match &self.board {
            Some(b) => b
                .others_progress(&self.areas[area as usize].id, self.partition)
                .map_or(now, |ahead| {
                    ahead.max(now).min(now.plus_ms(self.opts.area.max_wait_ms))
                }),
            None => now,
        };
        let until = base.plus_ms(self.opts.area.hold_ms);
        for slot in members {
            self.entity_mut(slot).absorbed = false;
            let e = self.entity(slot);
            if let Some(ev) = e.state.describe_open(&e.cfg, now) {
                self.pending.push(Pending {
                    slot,
                    event: ev,
                    until,
                    release: true,
                    closed: None,
                });
            }
        }
    }

    /// Publishes a household's open incident as opened now.
    fn announce(&mut self, slot: u32, now: Ts, wall_now: Ts, out: &mut Vec<Output>) {
        let e = self.entity(slot);
        if let Some(ev) = e.state.describe_open(&e.cfg, now) {
            self.publish_household(slot, &ev, now, wall_now, out);
        }
    }

    fn flush_pending(&mut self, limit: Ts, wall_now: Ts, out: &mut Vec<Output>) {
        if self.pending.is_empty() {
            self.waiting_since.clear();
            return;
        }
        let mut i = 0;
        while i < self.pending.len() {
            let p = &self.pending[i];
            let slot = p.slot;
            // A held opening also waits (a bounded time) for the other
            // partitions of its area to get there: if they are behind, their
            // share of an outage is still to come. Another monitor's
            // partitions are waited for on the wall clock too: their
            // progress comes late, and a replay runs through event time.
            let behind = match (&self.board, p.release) {
                (Some(b), false) => {
                    let area = &self.areas[self.entity(slot).area as usize].id;
                    b.others_behind(area, self.partition, p.until)
                }
                _ => Behind::No,
            };
            let within_event = limit < p.until.plus_ms(self.opts.area.max_wait_ms);
            let waiting = match behind {
                Behind::No => false,
                Behind::Here => within_event,
                Behind::Elsewhere => {
                    let since = *self.waiting_since.entry(slot).or_insert(wall_now);
                    within_event || wall_now.since(since) < self.opts.area.remote_wait_ms
                }
            };
            if p.until <= limit && !waiting {
                let p = self.pending.remove(i);
                self.waiting_since.remove(&p.slot);
                let now = self.fired_to;
                self.publish_household(p.slot, &p.event, now, wall_now, out);
                if let Some(closed) = p.closed {
                    self.publish_household(p.slot, &closed, now, wall_now, out);
                }
            } else {
                i += 1;
            }
        }
        if self.waiting_since.len() > self.pending.len() {
            let held: HashSet<u32> = self.pending.iter().map(|p| p.slot).collect();
            self.waiting_since.retain(|slot, _| held.contains(slot));
        }
    }

    fn publish_household(
        &mut self,
        slot: u32,
        ev: &HouseholdEvent,
        now: Ts,
        wall_now: Ts,
        out: &mut Vec<Output>,
    ) {
        let emitted_at = self.emit_time(wall_now, now);
        let cfg = &self.entity(slot).cfg;
        let route = self.router.route_event(cfg, ev, emitted_at);
        let wire = convert::incident_event(cfg, ev, route, emitted_at);
        self.publish(wire, out);
    }

    fn publish(&mut self, ev: pb::IncidentEvent, out: &mut Vec<Output>) {
        if !self.already_published.is_empty() && self.already_published.remove(&ev.event_id) {
            self.stats.replays_suppressed += 1;
            return;
        }
        self.stats.events_emitted += 1;
        out.push(Output::Event(Box::new(ev)));
    }

    // ── snapshots ────────────────────────────────────────────────────────

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
        for (i, a) in shard.areas.iter().enumerate() {
            shard.area_index.insert(a.id.clone(), i as u32);
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
