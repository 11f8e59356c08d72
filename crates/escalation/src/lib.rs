//! The people's clock: escalation policies and the escalation state machine,
//! as pure code (no I/O, time is an argument).
//!
//! Owns:
//! - [`Policy`]: a municipality's versioned escalation policy — ordered
//!   [`Step`]s (notify a [`Tier`] over some [`ChannelKind`]s, wait N minutes
//!   for an acknowledgement, repeat up to K times, then escalate), the step
//!   each stage starts at, and the channels of one-shot notices.
//! - [`Escalation`]: one incident's escalation. Welfare incidents (inactivity,
//!   and device-offline once it is a welfare risk) walk the policy; area,
//!   device-fault and pipeline incidents get one notice to maintenance or SRE.
//!   Steps are routed by the calendar ([`route_tier`]): dong office in office
//!   hours, the control center at night and on holidays for households that
//!   consented, otherwise held until the office opens; emergency services are
//!   never held.
//!
//! A person's resolution of a welfare incident whose home is still quiet
//! (the person was reached and fine) does not end the escalation for good:
//! it rests in [`Phase::Resolved`], and if the home stays quiet for the
//! policy's `recheck_minutes`, or the monitor raises the stage, it opens again
//! in a new round (message ids carry the round, so nothing is deduplicated
//! away). Activity coming back, or a suppression, ends it.
//!
//! Data flow: the notify service opens an [`Escalation`] for the first event
//! of an incident, feeds it stage raises, acknowledgements, resolutions,
//! recoveries, delivery failures and ticks, persists it after every call, and
//! carries out the returned [`Action`]s (sends go through an outbox keyed by
//! [`Notice::message_id`]). The invariants the service relies on — message
//! ids never repeat, nothing is sent after an acknowledgement or a stop, a
//! persisted escalation resumes exactly where it left off — are property
//! tests in `tests.rs`.

mod action;
mod machine;
mod policy;

pub use action::{
    Action, EscalationCause, Notice, Opening, Phase, Purpose, ReopenCause, StopReason,
};
pub use machine::{round_id, route_tier, Escalation};
pub use policy::{
    ChannelKind, Policy, PolicyError, Step, Tier, DEFAULT_RECHECK_MINUTES, MAX_RECHECK_MINUTES,
    MAX_REPEATS, MAX_STEPS, MAX_WAIT_MINUTES,
};

#[cfg(test)]
mod tests;
