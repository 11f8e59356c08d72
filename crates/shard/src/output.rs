//! What a shard hands back to the monitor: [`Output`]s to publish and the
//! counters it keeps about itself.

use dolbom_domain::{HouseholdId, Ts};
use dolbom_proto::v1 as pb;

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
