//! What an escalation says and hears: its [`Phase`], the [`Action`]s it asks
//! the notify service to carry out (notices, stops, reopenings, with their
//! causes and purposes) and the [`Opening`] facts it starts from.

use crate::policy::{ChannelKind, Tier};
use dolbom_domain::incident::{IncidentKind, Stage};
use dolbom_domain::Ts;
use serde::{Deserialize, Serialize};

/// Where a running escalation stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// A non-welfare incident: its one notice went out; there is no clock.
    Notice,
    /// The current step waits for the dong office's next opening.
    Held { until: Ts },
    /// The current step was sent; without an acknowledgement by `deadline`
    /// it repeats or escalates.
    Waiting { deadline: Ts },
    /// Someone took it: the clock stopped.
    Acknowledged { at: Ts },
    /// Every step ran out without an acknowledgement.
    Exhausted { at: Ts },
    /// The last step could not be delivered to anyone: SRE was paged and
    /// the step is sent again at `retry_at` (backing off), until someone is
    /// reached and acknowledges, or the incident ends. Never a quiet end.
    Unreachable { retry_at: Ts },
    /// A person resolved it while the home was still quiet, and the person
    /// was found fine: no clock runs, but if the home stays quiet until
    /// `recheck_at`, or the monitor raises the stage, the escalation opens
    /// again in a new round. Activity coming back ends it.
    Resolved { at: Ts, recheck_at: Ts },
    /// The incident ended.
    Stopped { at: Ts, why: StopReason },
}

/// Why an escalation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StopReason {
    /// Activity came back in the home.
    Recovered,
    /// A person resolved the incident with an outcome.
    Resolved,
    /// Monitoring stopped applying (absence, area outage, pipeline stall).
    Suppressed,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Recovered => "recovered",
            StopReason::Resolved => "resolved",
            StopReason::Suppressed => "suppressed",
        }
    }
}

/// Why a resolved escalation opened again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReopenCause {
    /// The home stayed quiet for the policy's `recheck_minutes` after the
    /// resolution.
    StillQuiet,
    /// The monitor raised the stage after the resolution.
    StageRaised,
}

impl ReopenCause {
    pub const ALL: [ReopenCause; 2] = [ReopenCause::StillQuiet, ReopenCause::StageRaised];

    pub fn as_str(self) -> &'static str {
        match self {
            ReopenCause::StillQuiet => "still_quiet",
            ReopenCause::StageRaised => "stage_raised",
        }
    }
}

/// Why a message is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Purpose {
    /// A policy step: please check on the household and acknowledge.
    Alert,
    /// The stage rose after someone acknowledged (or after the policy ran out).
    StageRaised,
    /// The household is active again: whoever was told can stand down.
    Recovered,
    /// A non-welfare incident for maintenance or SRE.
    Notice,
    /// To SRE: nobody on the policy could be reached for this incident.
    Unreachable,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Alert => "alert",
            Purpose::StageRaised => "stage_raised",
            Purpose::Recovered => "recovered",
            Purpose::Notice => "notice",
            Purpose::Unreachable => "unreachable",
        }
    }
}

impl dolbom_domain::Named for Purpose {
    const ALL: &'static [Self] = &[
        Purpose::Alert,
        Purpose::StageRaised,
        Purpose::Recovered,
        Purpose::Notice,
        Purpose::Unreachable,
    ];
    fn name(self) -> &'static str {
        self.as_str()
    }
}

/// One message to send to one tier over some channels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// Deterministic and unique per incident; the idempotency key every
    /// channel sends along.
    pub message_id: String,
    pub step: u32,
    /// 1-based send of this step.
    pub attempt: u32,
    pub tier: Tier,
    pub channels: Vec<ChannelKind>,
    pub stage: Stage,
    pub purpose: Purpose,
}

/// Why the policy moved to a later step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EscalationCause {
    /// Nobody acknowledged within the step's waits.
    Timeout,
    /// The monitor raised the stage.
    StageRaised,
    /// Every push channel of the step failed.
    DeliveryFailed,
}

impl EscalationCause {
    pub const ALL: [EscalationCause; 3] = [
        EscalationCause::Timeout,
        EscalationCause::StageRaised,
        EscalationCause::DeliveryFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EscalationCause::Timeout => "timeout",
            EscalationCause::StageRaised => "stage_raised",
            EscalationCause::DeliveryFailed => "delivery_failed",
        }
    }
}

/// What the caller must do (and record) after a transition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    Notify(Notice),
    Held {
        step: u32,
        tier: Tier,
        until: Ts,
    },
    Escalated {
        from_step: u32,
        to_step: u32,
        cause: EscalationCause,
    },
    Acknowledged,
    Exhausted {
        step: u32,
    },
    /// The last step failed to reach anyone; it is sent again at `retry_at`.
    Unreachable {
        step: u32,
        retry_at: Ts,
    },
    Stopped {
        why: StopReason,
    },
    /// A person resolved it; the home is rechecked at `recheck_at`.
    Resolved {
        recheck_at: Ts,
    },
    /// A resolved escalation opened again: round `round` starts (the
    /// incident is open again).
    Reopened {
        round: u32,
        cause: ReopenCause,
    },
}

/// The facts about an incident the escalation needs when it opens.
#[derive(Clone, Debug)]
pub struct Opening<'a> {
    pub incident_id: &'a str,
    pub kind: IncidentKind,
    pub stage: Stage,
    /// The household's night/holiday consent (false for area and platform incidents).
    pub consent: bool,
}
