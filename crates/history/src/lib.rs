//! dolbom's history: what happened, kept for people and for restarts.
//!
//! Owns: readings downsampled per household (minute and hour aggregates),
//! household state changes, incident events and outcomes, escalation steps and
//! delivery attempts, the audit trail, and the monitor's shard snapshots (its
//! restore source) — behind one trait, [`HistoryStore`], with two
//! implementations of identical semantics:
//!
//! - [`ScyllaStore`] for the nation: the `scylla` driver, tables designed from
//!   the queries (see `migrations/scylla/`), TWCS and TTLs on time series,
//!   prepared statements with token- and shard-aware routing (the driver's
//!   default policy), batches only within one partition, consistency chosen per
//!   table.
//! - [`EmbeddedStore`] for one machine and `standalone`: a SQLite file
//!   (rusqlite, SQLite bundled and compiled in, so no system library). SQLite
//!   was chosen over redb/fjall because the queries — ranges by household and
//!   time, by municipality and time, roll-ups — are plain SQL over indexes, its
//!   write-ahead log with `synchronous=FULL` makes every committed write survive
//!   a crash or power loss, and one file is easy to back up, inspect and move.
//!
//! Data flow: producers (the history ingest of readings and incidents, notify's
//! escalation engine and audit, the monitor's snapshots) hand records to a
//! [`HistoryWriter`], which batches them into [`WriteBatch`]es behind a bounded
//! queue — callers feel backpressure when the store falls behind, never an
//! unbounded memory — and retries a failing store with backoff while a metric
//! tells SRE. [`Downsampler`] turns readings into minute aggregates; the store
//! rolls hours up from its own minutes, so roll-ups are idempotent. Queries
//! (timeline, incidents page, monthly statistics) go straight to the store;
//! statistics are computed by one pure function ([`stats`]) for both stores.
//!
//! Every write is idempotent (natural keys), so replays and retries never
//! duplicate. Retention is per kind ([`Retention`]) and by the record's own
//! time: ScyllaDB writes carry the remaining TTL, the embedded store deletes
//! in [`HistoryStore::enforce_retention`]; both skip records already past it.
//!
//! The [`conformance`] module is the one suite both stores must pass;
//! [`open_store`] picks a store from options, [`metrics`] describes the
//! `dolbom_history_*` metrics once and [`error`] holds [`HistoryError`].

pub mod conformance;
pub mod downsample;
pub mod embedded;
mod embedded_rows;
mod embedded_schema;
pub mod error;
pub mod metrics;
pub mod model;
pub mod scylla_options;
mod scylla_rows;
mod scylla_schema;
pub mod scylla_store;
pub mod snapshots;
pub mod stats;
pub mod store;
pub mod writer;

pub use downsample::Downsampler;
pub use embedded::EmbeddedStore;
pub use error::HistoryError;
pub use model::*;
pub use scylla_options::{ScyllaOptions, ScyllaTls};
pub use scylla_store::ScyllaStore;
pub use snapshots::HistorySnapshots;
pub use store::{open_store, HistoryStore};
pub use writer::{HistoryWriter, WriterOptions};
