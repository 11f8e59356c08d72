//! The shard's snapshot layout, and the earlier layouts a monitor still
//! restores (postcard is not self-describing: each format is a struct).
//!
//! 2: areas remember when their last outage recovered.
//! 3: pending openings keep a closing that arrived while they waited.
//! 4: households carry learned detection (configuration `learning`, engine
//!    cycles and routine) and reasons their routine evidence (issue 18).
//!    Formats 2 and 3 restore with defaults: learning starts afresh.

use crate::area::Area;
use crate::{Entity, Health, Pending, SnapshotError};
use dolbom_domain::legacy::{HouseholdConfigV3, HouseholdEventV3};
use dolbom_domain::Ts;
use dolbom_engine::legacy::HouseholdStateV3;
use serde::{Deserialize, Serialize};

pub(crate) const SNAPSHOT_FORMAT: u32 = 4;

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
            3 => postcard::from_bytes::<SnapshotOwnedV3<PendingV3>>(bytes)?.into(),
            2 => postcard::from_bytes::<SnapshotOwnedV3<PendingV2>>(bytes)?.into(),
            f => return Err(SnapshotError::Format(f)),
        })
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
    health: Health,
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
            health: s.health,
        }
    }
}
