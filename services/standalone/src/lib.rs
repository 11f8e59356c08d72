//! `dolbom standalone`: the whole platform in one process, on a laptop.
//!
//! Owns the standalone runner: a simulated town ([`dolbom_town`]) reports a
//! reading a minute per plug; the readings go through the same household engine
//! the monitor uses ([`dolbom_engine`]); due deadlines fire from one timer heap
//! (the shard's timer wheel in the monitor); every incident event is routed with
//! the Korean calendar ([`dolbom_calendar`]), turned into its wire form
//! (`dolbom.v1.IncidentEvent`, deterministic ids) and printed as it opens,
//! escalates and recovers. Simulated time runs `speed` times faster than real
//! time. At the end (or on SIGINT/SIGTERM) a summary checks the incidents
//! against the town's ground truth.
//!
//! Data flow: options ([`options`]: defaults → TOML → `DOLBOM_` env → flags) →
//! [`run`] → town → engine → router → printed events → [`Summary`].
//! Later issues put the monitor's shard actors, the in-process bus, the notify
//! gRPC API and the embedded history store behind this same command.

pub mod options;
mod runner;

pub use options::{OptionsError, StandaloneOptions};
pub use runner::{run, IncidentRecord, StandaloneError, Summary};
