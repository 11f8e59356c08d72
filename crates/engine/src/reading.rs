//! A reading as the engine takes it in: its shape ([`Reading`]), the value
//! checks every reading passes ([`check_values`], also used by the history
//! ingest), why one is refused ([`ReadingError`]) and what became of one
//! that was taken ([`ReadingOutcome`]).

use dolbom_domain::{Ts, MINUTE_MS};

/// Readings stamped further than this ahead of the caller's clock are rejected:
/// a plug with a runaway clock must not push its household's deadlines away.
pub const MAX_CLOCK_SKEW_MS: i64 = 5 * MINUTE_MS;
/// Largest plausible power reading, in watts.
pub const MAX_WATTS: f32 = 100_000.0;

/// The value checks every reading passes, here and wherever else readings
/// are taken in (the history ingest): finite, not negative, not absurd.
pub fn check_values(watts: Option<f32>, lux: Option<f32>) -> Result<(), ReadingError> {
    for (field, v, max) in [("watts", watts, MAX_WATTS), ("lux", lux, MAX_LUX)] {
        if let Some(v) = v {
            if !(v.is_finite() && (0.0..=max).contains(&v)) {
                return Err(ReadingError::Implausible { field, value: v });
            }
        }
    }
    Ok(())
}
/// Largest plausible light reading, in lux (direct sunlight).
pub const MAX_LUX: f32 = 200_000.0;
/// How many recent sequence numbers per plug are remembered.
pub const SEEN_WINDOW: u64 = 64;

/// A reading as the engine needs it. The monitor builds it from the wire
/// (`current_amps × 220 V` when a plug reports current only).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reading<'a> {
    pub device_id: &'a str,
    pub observed_at: Ts,
    pub sequence: u64,
    pub watts: Option<f32>,
    pub lux: Option<f32>,
}

/// Why a reading was rejected. Rejections change nothing in the state.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReadingError {
    #[error("device {0:?} is not registered to this household")]
    UnknownDevice(String),
    #[error("observed_at is {ahead_ms} ms ahead of the platform clock")]
    FromTheFuture { ahead_ms: i64 },
    #[error("{field} = {value} is not a plausible measurement")]
    Implausible { field: &'static str, value: f32 },
}

impl ReadingError {
    /// Short label for metrics (`dolbom_readings_rejected_total{reason=…}`).
    pub fn label(&self) -> &'static str {
        match self {
            ReadingError::UnknownDevice(_) => "unknown_device",
            ReadingError::FromTheFuture { .. } => "future_timestamp",
            ReadingError::Implausible { .. } => "implausible_value",
        }
    }
}

/// What became of an accepted reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadingOutcome {
    /// Newer than anything seen from this plug.
    Fresh { activity: bool },
    /// Arrived after a newer reading of the same plug.
    Late { activity: bool },
    /// Seen before; ignored.
    Duplicate,
}
