//! A shard's timing settings: where its sense of "now" comes from, how late
//! a reading may be, when silence is a stall, and the area settings.

use crate::AreaOptions;
use dolbom_domain::MINUTE_MS;
use serde::{Deserialize, Serialize};

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
