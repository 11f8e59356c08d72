//! The monitor service: every household a logical actor, sharded by Kafka
//! partition, its incidents published exactly once.
//!
//! Data flow:
//!
//! ```text
//! plug.readings ─(group consumer, cooperative-sticky, static membership)─▶ ingest::Ingest
//!     │ batches per partition         kafka::Rebalance events ─▶ actors::root::Root
//!     ▼                                                                │
//! PartitionSupervisor(p) ──▶ ShardActor(p): dolbom_shard::Shard  ◀── care.households(p)
//!                                 │ incident events (partition p)      (changelog)
//!                                 ├──▶ care.incidents   IncidentActor per open incident
//!                                 ├──▶ snapshots (SnapshotStore: history store or files) ─▶ then commit offset
//!                                 └──▶ AreaBoard (all shards) ◀──▶ monitor.areas (areas::share)
//! ```
//!
//! Where things are: [`service::run`] wires it up and drains it; [`ingest`]
//! is the poll loop; [`actors`] the supervision tree; [`restore`] how a
//! shard comes back; [`kafka`] the typed Kafka pieces (rebalance events with
//! acknowledgements, the incident producer, the offset committer, restore
//! reads, the changelog follower), which know nothing of actors;
//! [`areas`] shares the shards' parts of each area with the other monitors;
//! [`options`] and [`metrics`] what an operator sets and sees.
//!
//! Guarantees and how they are kept:
//! - **No loss**: a readings offset is committed only after a snapshot that
//!   covers it is durable, and a snapshot is taken only after every event
//!   emitted before it was acknowledged by the broker. A crash replays from
//!   the last snapshot.
//! - **No duplicates**: incident ids and event ids are deterministic; a
//!   restoring shard reads `care.incidents` (its own partition) from the
//!   end offset recorded in its snapshot and does not publish those event
//!   ids again while it replays. The producer is idempotent.
//! - **Assignment**: a newly assigned partition is paused, its shard
//!   restores (snapshot, incidents tail, changelog to its end), then the
//!   ingest loop seeks to the snapshot's offset and resumes it. Revocation
//!   snapshots the shard and commits synchronously before the partition goes.
//! - **Poisoned messages**: a shard that panics is restarted by its
//!   partition supervisor from its last snapshot; the record in flight is
//!   dead-lettered on replay. Malformed records are dead-lettered without a
//!   restart. Other partitions are untouched.
//!
//! - **Areas**: a blackout is judged on the whole area, whichever
//!   partitions and monitors hold its households (one shared board per
//!   monitor, exchanged between monitors through `monitor.areas`).
//!
//! A snapshot store outage does not stop a shard: the failed snapshot is
//! counted, offsets stay at the last stored one, and it is retried at the
//! next interval.
//!
//! `run(opts, shutdown)` drains on shutdown: every shard snapshots and
//! commits before the consumer closes.

pub mod actors;
mod areas;
pub mod error;
mod ingest;
pub mod kafka;
pub mod metrics;
pub mod options;
mod restore;
pub mod service;

pub use error::MonitorError;
pub use options::{MonitorFlags, MonitorOptions, OptionsError, ShardFlags, Topics};
pub use service::{run, MonitorSummary};
