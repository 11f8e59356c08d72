//! `dolbom standalone`: the whole platform in one process, on a laptop.
//!
//! Owns the standalone runner: a simulated town ([`dolbom_town`]) reports a
//! reading a minute per plug; the readings travel over an in-process bus (one
//! channel per partition, the stand-in for Kafka) to the same shard code the
//! monitor runs ([`dolbom_shard`]: engine, timer wheel, watermarks, stall and
//! area inhibition, calendar routing); every incident event comes back in its
//! wire form (`dolbom.v1.IncidentEvent`, deterministic ids) and is printed as
//! it opens, escalates and recovers. Simulated time runs `speed` times faster than real
//! time. At the end (or on SIGINT/SIGTERM) a summary checks the incidents
//! against the town's ground truth.
//!
//! Data flow: options ([`options`]: defaults → TOML → `DOLBOM_` env → flags) →
//! [`run`] → town → [`bus`] → shards → printed events → [`Summary`], checked
//! against the town's ground truth with the same check the load tests use
//! ([`dolbom_town::truth::check`]). The in-process [`bus`] is public: the
//! load tests' in-process scenarios run on it too. Beside the
//! bus, readings are downsampled into minute aggregates and, with every
//! incident event and the state change it implies, written through a
//! `dolbom_history::HistoryWriter` into the embedded history store in
//! `data_dir` (default `./dolbom-data`; retention is measured on simulated
//! time). With a data directory, the notify service runs in the same process
//! ([`api`]): the municipality gRPC API on `grpc_listen`, the town seeded into
//! its registry, every incident event through its escalation engine on
//! simulated time, registry changes back onto the bus to the shards.

pub mod api;
pub mod bus;
pub mod error;
mod history;
pub mod options;
mod runner;
mod summary;

pub use error::{OptionsError, StandaloneError};
pub use options::{StandaloneFlags, StandaloneOptions};
pub use runner::run;
pub use summary::{HistorySummary, IncidentRecord, Summary};
