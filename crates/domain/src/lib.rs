//! dolbom's domain model: the vocabulary every other crate speaks.
//!
//! Owns:
//! - [`time`]: [`Ts`], the platform's instant (milliseconds since the Unix epoch,
//!   UTC) and conversions to Korean local time (Asia/Seoul);
//! - [`clock`]: where "now" comes from ([`Clock`]: the wall clock, or a
//!   manual one for simulations and tests);
//! - [`ids`]: validated identifiers — household, device, 5-digit 시군구
//!   municipality code, 10-digit 행정동 dong code, deterministic incident ids;
//! - [`config`]: a household's monitoring configuration (thresholds, activity
//!   rule, noise floors, offline limit, consent, absences, sleep window) and its
//!   validation, which names the offending field;
//! - [`incident`]: incident kinds, stages, reasons, events and outcomes, each
//!   with one display name ([`named`]);
//! - [`convert`]: the edge between the wire protocol (`dolbom-proto`) and these
//!   types, both ways, and the display name of every wire enum. Wire data is
//!   validated here, once, and never trusted further in; [`checks`] is what
//!   every consumer checks of an incident event from the bus;
//! - [`logsafe`]: outside input as it may appear in a log line.
//!
//! Data flow: a `dolbom.v1.HouseholdConfig` from the registry or the
//! `care.households` changelog becomes a [`config::HouseholdConfig`] through
//! [`convert`]; the engine turns readings plus config into
//! [`incident::HouseholdEvent`]s, which [`convert`] turns back into
//! `dolbom.v1.IncidentEvent`s. Nothing here does I/O.
//!
//! Personal data (names, phone numbers, addresses) has no type in this crate on
//! purpose: it never flows through the monitoring pipeline.

pub mod checks;
pub mod clock;
pub mod config;
pub mod convert;
pub mod ids;
pub mod incident;
pub mod legacy;
pub mod logsafe;
pub mod named;
pub mod time;

pub use clock::{Clock, ManualClock, SharedClock, WallClock};
pub use config::{
    Absence, AbsenceKind, ActivityRule, ConfigError, HouseholdConfig, Learning, NoiseFloors,
    RoutineSensitivity, SleepWindow, Thresholds,
};
pub use ids::{DeviceId, DongCode, HouseholdId, IdError, IncidentId, MunicipalityCode};
pub use incident::{
    EventType, HouseholdEvent, IncidentKind, Outcome, Reason, ReasonCode, Route, RoutineEvidence,
    Stage, SuppressionCause,
};
pub use named::Named;
pub use time::{Ts, DAY_MS, HOUR_MS, MINUTE_MS};
