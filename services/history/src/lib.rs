//! `dolbom history`: Kafka into the history store.
//!
//! Owns the ingest of `plug.readings` (downsampled to per-minute aggregates,
//! hours rolled up by the store; skipped when `readings_topic` is empty) and
//! `care.incidents` (incident events and the household state changes they
//! imply) into a [`HistoryStore`] — ScyllaDB in a
//! cluster, the embedded SQLite store on one machine. It runs in its own
//! consumer group, so the monitor never waits for the history: a slow store
//! makes this service lag (visible as `dolbom_history_*` metrics and consumer
//! lag), never the incidents.
//!
//! Data flow: group consumer → per-partition [`Downsampler`] / incident
//! decoding → [`HistoryWriter`] (bounded, batched, retried) → store. Every
//! `commit_interval_ms` the closed minutes are handed to the writer, the
//! writer is flushed, and only then offsets are committed: for readings, the
//! first offset of a minute still open (its readings will be replayed), with
//! the minute cutoff in the commit metadata so a replay does not re-aggregate
//! (and overwrite) minutes already stored. The store, not Kafka, decides what
//! is done. Malformed records are counted and skipped; they never stop the
//! partition.

pub mod error;
mod ingest;
pub mod metrics;
pub mod options;

pub use error::IngestError;
pub use ingest::{open_store, run, IngestSummary};
pub use options::{HistoryFlags, HistoryOptions};
