//! The household state as snapshot format 3 and before stored it (before
//! automatic loads and routines), kept so those snapshots still restore:
//! the clocks, the open incident and the plugs come back; the cycles and the
//! routine start learning afresh (the fixed thresholds apply meanwhile).

use crate::cycle::Cycle;
use crate::routine::Routine;
use crate::{HouseholdState, Open, PlugState};
use dolbom_domain::Ts;
use serde::Deserialize;
use smallvec::SmallVec;

#[derive(Deserialize)]
struct PlugStateV3 {
    device: u64,
    last_at: Ts,
    last_seq: u64,
    seen: u64,
    watts: f32,
    lux: f32,
}

/// [`HouseholdState`] of snapshot format 3.
#[derive(Deserialize)]
pub struct HouseholdStateV3 {
    last_power_change: Ts,
    last_light_change: Ts,
    last_reading: Ts,
    last_closed: Ts,
    open: Option<Open>,
    plugs: SmallVec<[PlugStateV3; 1]>,
}

impl From<HouseholdStateV3> for HouseholdState {
    fn from(s: HouseholdStateV3) -> Self {
        HouseholdState {
            last_power_change: s.last_power_change,
            last_light_change: s.last_light_change,
            last_reading: s.last_reading,
            last_closed: s.last_closed,
            open: s.open,
            plugs: s
                .plugs
                .into_iter()
                .map(|p| PlugState {
                    device: p.device,
                    last_at: p.last_at,
                    last_seq: p.last_seq,
                    seen: p.seen,
                    watts: p.watts,
                    lux: p.lux,
                    cycle: Cycle::default(),
                })
                .collect(),
            routine: Routine::default(),
        }
    }
}
