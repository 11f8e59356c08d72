//! Why the shard refused something: a record ([`Rejection`], the shard is
//! unchanged) or a snapshot ([`SnapshotError`]).

use crate::snapshot::SNAPSHOT_FORMAT;
use dolbom_domain::ConfigError;
use dolbom_engine::ReadingError;

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
