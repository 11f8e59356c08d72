//! `dolbom notify`: the municipality gRPC API, the escalation engine and the
//! delivery channels — the people's clock.
//!
//! Owns:
//! - the registry (households, plugs, consent, absences, thresholds, and
//!   the contacts, encrypted at rest) and its changelog on `care.households`;
//! - the incident views the API serves, acknowledgement and resolution, and
//!   the event log behind `WatchIncidents` (resumable by cursor);
//! - one [`dolbom_escalation::Escalation`] per incident, persisted after every
//!   transition, and the outbox of messages it sends over SMS, webhooks and
//!   the watch stream;
//! - authentication (Ed25519 bearer tokens, [`dolbom_auth`], with their
//!   revocation list and watch streams ended when their token no longer
//!   holds) and tenant scoping of every call, the API's limits ([`limits`]),
//!   and the audit of every personal-data read (into the history store).
//!
//! Data flow: `care.incidents` (Kafka [`kafka::consume`], or the in-process
//! bus in standalone) → [`Core::ingest`] ([`ingest`]; one transaction: log,
//! view, escalation, outbox) → watch subscribers ([`incidents`]), the
//! [`delivery`] tasks (retries, then escalation on failure), escalation and
//! delivery records → history writer. The [`escalate::EscalationClock`] moves
//! due escalations; API writes ([`registry`], acknowledge and resolve in
//! [`incidents`]) go through the same core, and their changes reach Kafka
//! through the [`publish::PublishLoop`]. Offsets of `care.incidents` are
//! committed only after the batch is durable in the store.
//!
//! Where things are: [`service`] builds, serves and runs it; [`core`] is the
//! store's transaction runner and the effects a commit lets out; [`api`] the
//! thin gRPC adapters; [`scope`] the tenant checks every listing shares;
//! [`store`] the SQLite tables; [`channels`] SMS, webhook and watch;
//! [`metrics`] every metric's name and help; [`rpcspan`] the span of each
//! gRPC call (an incident's later steps join its trace, kept in the store;
//! acknowledgements link to it).

pub mod api;
pub mod channels;
pub mod core;
#[cfg(test)]
mod core_tests;
pub mod crypto;
pub mod delivery;
pub mod error;
pub mod escalate;
pub mod forward;
mod health;
pub mod housekeeping;
pub mod incidents;
pub mod ingest;
pub mod kafka;
pub mod limits;
pub mod metrics;
pub mod options;
mod policies;
pub mod publish;
pub mod registry;
mod registry_input;
pub mod rpcspan;
mod scope;
pub mod service;
pub mod store;
pub mod webhook;

pub use crate::core::{Core, CoreParts};
pub use api::Api;
pub use error::NotifyError;
pub use options::{NotifyFlags, NotifyOptions};
pub use publish::{NoPublisher, PublishLoop, Publisher};
pub use service::{build, run, serve, Built};
