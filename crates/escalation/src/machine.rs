//! One incident's escalation: a pure state machine driven by incident events,
//! acknowledgements, delivery failures and the passing of time.

use crate::action::*;
use crate::policy::{Policy, Tier};
use dolbom_calendar::Router;
use dolbom_domain::incident::{IncidentKind, Route, Stage};
use dolbom_domain::Ts;
use serde::{Deserialize, Serialize};

/// One incident's escalation. Serializable: the notify service persists it
/// after every transition, so a restart resumes every clock; since message
/// ids are derived from (step, attempt) and both only move forward, the same
/// step is never sent twice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Escalation {
    pub incident_id: String,
    pub kind: IncidentKind,
    pub policy_version: u32,
    pub consent: bool,
    pub stage: Stage,
    pub step: u32,
    /// Sends of the current step so far.
    pub sends: u32,
    pub phase: Phase,
    /// Tiers that were told, in order, each once.
    pub told: Vec<Tier>,
    /// Rounds in which the last step reached nobody (backs off the retries;
    /// SRE is paged on the first).
    #[serde(default)]
    pub unreachable_rounds: u32,
    /// How many times a resolution was followed by a reopening (0 for the
    /// first round). Message ids of later rounds carry it.
    #[serde(default)]
    pub round: u32,
}

/// The first retry of an unreachable last step, doubling per round up to
/// [`UNREACHABLE_RETRY_MAX_MINUTES`].
pub const UNREACHABLE_RETRY_MINUTES: u32 = 1;
pub const UNREACHABLE_RETRY_MAX_MINUTES: u32 = 30;

/// An id made unique per round of a reopened incident: `id` itself in the
/// first round, `id/rN` in round N. Message ids, and the ids of the records
/// and events a round leaves, are built on it.
pub fn round_id(id: &str, round: u32) -> String {
    match round {
        0 => id.to_string(),
        r => format!("{id}/r{r}"),
    }
}

/// Where a step's tier is reached at `now`, or until when it is held.
pub fn route_tier(tier: Tier, consent: bool, router: &Router, now: Ts) -> Result<Tier, Ts> {
    match tier {
        Tier::DongOffice => match router.route(now, consent) {
            Route::DongOffice => Ok(Tier::DongOffice),
            Route::ControlCenter => Ok(Tier::ControlCenter),
            Route::Held { until } => Err(until),
            // `Router::route` only answers the three above.
            _ => Ok(Tier::DongOffice),
        },
        // Outside office hours the control center only watches households
        // that consented; without consent the step waits for the office.
        Tier::ControlCenter => {
            if consent || router.is_office_open(now) {
                Ok(Tier::ControlCenter)
            } else {
                Err(router.next_opening(now))
            }
        }
        Tier::Emergency | Tier::Maintenance | Tier::Sre => Ok(tier),
    }
}

fn is_welfare(kind: IncidentKind, stage: Stage) -> bool {
    matches!(kind, IncidentKind::Inactivity | IncidentKind::DeviceOffline) && stage > Stage::Normal
}

fn notice_tier(kind: IncidentKind) -> Tier {
    match kind {
        IncidentKind::PipelineStall => Tier::Sre,
        _ => Tier::Maintenance,
    }
}

impl Escalation {
    /// Opens an incident's escalation: a welfare incident starts at its
    /// stage's step; anything else gets one notice.
    pub fn open(
        inc: &Opening<'_>,
        policy: &Policy,
        router: &Router,
        now: Ts,
    ) -> (Self, Vec<Action>) {
        let mut e = Escalation {
            incident_id: inc.incident_id.to_string(),
            kind: inc.kind,
            policy_version: policy.version,
            consent: inc.consent,
            stage: inc.stage,
            step: 0,
            sends: 0,
            phase: Phase::Notice,
            told: Vec::new(),
            unreachable_rounds: 0,
            round: 0,
        };
        let mut out = Vec::new();
        if let Some(start) = policy.start_step(inc.stage).filter(|_| e.welfare()) {
            e.step = start;
            e.dispatch(policy, router, now, &mut out);
        } else {
            let tier = notice_tier(inc.kind);
            e.tell(tier);
            out.push(Action::Notify(Notice {
                message_id: format!("{}/notice", e.incident_id),
                step: 0,
                attempt: 1,
                tier,
                channels: policy.notice_channels.clone(),
                stage: inc.stage,
                purpose: Purpose::Notice,
            }));
        }
        (e, out)
    }

    /// The prefix of every message id: the incident id, and the round after
    /// a reopening (so a new round never repeats an earlier round's ids).
    fn id_prefix(&self) -> String {
        round_id(&self.incident_id, self.round)
    }

    fn welfare(&self) -> bool {
        is_welfare(self.kind, self.stage)
    }

    fn tell(&mut self, tier: Tier) {
        if !self.told.contains(&tier) {
            self.told.push(tier);
        }
    }

    /// Whether the escalation still runs a clock (held, waiting, retrying an
    /// unreachable step, or resolved and waiting to recheck a quiet home).
    pub fn is_running(&self) -> bool {
        matches!(
            self.phase,
            Phase::Held { .. }
                | Phase::Waiting { .. }
                | Phase::Unreachable { .. }
                | Phase::Resolved { .. }
        )
    }

    /// Whether the escalation has ended for good.
    pub fn is_stopped(&self) -> bool {
        matches!(self.phase, Phase::Stopped { .. })
    }

    /// When [`tick`](Self::tick) next has something to do.
    pub fn next_due(&self) -> Option<Ts> {
        match self.phase {
            Phase::Held { until } => Some(until),
            Phase::Waiting { deadline } => Some(deadline),
            Phase::Unreachable { retry_at } => Some(retry_at),
            Phase::Resolved { recheck_at, .. } => Some(recheck_at),
            _ => None,
        }
    }

    /// Sends the current step (or holds it), from `now`.
    fn dispatch(&mut self, policy: &Policy, router: &Router, now: Ts, out: &mut Vec<Action>) {
        let step = policy.step(self.step);
        match route_tier(step.tier, self.consent, router, now) {
            Err(until) => {
                self.phase = Phase::Held { until };
                out.push(Action::Held {
                    step: self.step,
                    tier: step.tier,
                    until,
                });
            }
            Ok(tier) => {
                self.sends += 1;
                self.tell(tier);
                out.push(Action::Notify(Notice {
                    message_id: format!("{}/s{}/a{}", self.id_prefix(), self.step, self.sends),
                    step: self.step,
                    attempt: self.sends,
                    tier,
                    channels: step.channels.clone(),
                    stage: self.stage,
                    purpose: Purpose::Alert,
                }));
                self.phase = Phase::Waiting {
                    deadline: now.plus_minutes(step.wait_minutes),
                };
            }
        }
    }

    /// Moves to `to` (or the next step), or runs out.
    fn advance(
        &mut self,
        to: u32,
        cause: EscalationCause,
        policy: &Policy,
        router: &Router,
        now: Ts,
        out: &mut Vec<Action>,
    ) {
        if (to as usize) < policy.steps.len() {
            out.push(Action::Escalated {
                from_step: self.step,
                to_step: to,
                cause,
            });
            self.step = to;
            self.sends = 0;
            self.dispatch(policy, router, now, out);
        } else {
            self.phase = Phase::Exhausted { at: now };
            out.push(Action::Exhausted { step: self.step });
        }
    }

    /// Lets time pass: a held step goes out once the office opens; a step
    /// whose wait ran out repeats or escalates. One transition per call; the
    /// next deadline is measured from `now`, so a service that was down does
    /// not fire a burst of overdue sends when it comes back.
    pub fn tick(&mut self, policy: &Policy, router: &Router, now: Ts) -> Vec<Action> {
        let mut out = Vec::new();
        match self.phase {
            Phase::Held { until } if now >= until => self.dispatch(policy, router, now, &mut out),
            Phase::Unreachable { retry_at } if now >= retry_at => {
                self.dispatch(policy, router, now, &mut out)
            }
            Phase::Resolved { recheck_at, .. } if now >= recheck_at => {
                self.reopen(ReopenCause::StillQuiet, policy, router, now, &mut out)
            }
            Phase::Waiting { deadline } if now >= deadline => {
                if self.sends <= policy.step(self.step).repeats {
                    self.dispatch(policy, router, now, &mut out);
                } else {
                    let next = self.step + 1;
                    self.advance(
                        next,
                        EscalationCause::Timeout,
                        policy,
                        router,
                        now,
                        &mut out,
                    );
                }
            }
            _ => {}
        }
        out
    }

    /// The monitor raised the stage. A running escalation jumps forward to
    /// the new stage's step; one that was acknowledged or ran out tells the
    /// last tier; a non-welfare notice that became a welfare risk starts
    /// escalating. Never a second escalation, never a step back.
    pub fn stage_raised(
        &mut self,
        stage: Stage,
        policy: &Policy,
        router: &Router,
        now: Ts,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        if stage <= self.stage || self.is_stopped() {
            return out;
        }
        let was_welfare = self.welfare();
        self.stage = stage;
        let target = policy.start_step(stage).unwrap_or(0);
        match self.phase {
            Phase::Resolved { .. } => {
                self.reopen(ReopenCause::StageRaised, policy, router, now, &mut out)
            }
            Phase::Notice if self.welfare() && !was_welfare => {
                self.step = target;
                self.sends = 0;
                self.dispatch(policy, router, now, &mut out);
            }
            Phase::Held { .. } | Phase::Waiting { .. } | Phase::Unreachable { .. }
                if target > self.step =>
            {
                self.advance(
                    target,
                    EscalationCause::StageRaised,
                    policy,
                    router,
                    now,
                    &mut out,
                );
            }
            Phase::Acknowledged { .. } | Phase::Exhausted { .. } => {
                if let Some(&tier) = self.told.last() {
                    out.push(Action::Notify(Notice {
                        message_id: format!("{}/stage{}", self.id_prefix(), stage as u8),
                        step: self.step,
                        attempt: 0,
                        tier,
                        channels: policy.step(self.step).channels.clone(),
                        stage,
                        purpose: Purpose::StageRaised,
                    }));
                }
            }
            _ => {}
        }
        out
    }

    /// Someone acknowledged: the clock stops. Idempotent.
    pub fn acknowledge(&mut self, now: Ts) -> Vec<Action> {
        match self.phase {
            Phase::Held { .. }
            | Phase::Waiting { .. }
            | Phase::Exhausted { .. }
            | Phase::Unreachable { .. } => {
                self.phase = Phase::Acknowledged { at: now };
                vec![Action::Acknowledged]
            }
            _ => Vec::new(),
        }
    }

    /// A person resolved the incident. When the person was found fine and
    /// expected home (`recheck`), a welfare escalation rests in
    /// [`Phase::Resolved`]: it opens again if the home stays quiet for the
    /// policy's `recheck_minutes` or the stage rises, so a resolution never
    /// silences the rest of the quiet spell. Otherwise (the person is in
    /// hospital, say) it stops. Idempotent.
    pub fn resolve(&mut self, recheck: bool, policy: &Policy, now: Ts) -> Vec<Action> {
        if !recheck || !self.welfare() {
            return self.stop(StopReason::Resolved, policy, now);
        }
        if self.is_stopped() || matches!(self.phase, Phase::Resolved { .. }) {
            return Vec::new();
        }
        let recheck_at = now.plus_minutes(policy.recheck_minutes);
        self.phase = Phase::Resolved {
            at: now,
            recheck_at,
        };
        vec![Action::Resolved { recheck_at }]
    }

    /// Round `round + 1` of a resolved escalation: it starts again at the
    /// current stage's step, as if newly opened.
    fn reopen(
        &mut self,
        cause: ReopenCause,
        policy: &Policy,
        router: &Router,
        now: Ts,
        out: &mut Vec<Action>,
    ) {
        self.round += 1;
        self.step = policy.start_step(self.stage).unwrap_or(0);
        self.sends = 0;
        self.unreachable_rounds = 0;
        out.push(Action::Reopened {
            round: self.round,
            cause,
        });
        self.dispatch(policy, router, now, out);
    }

    /// The incident ended. On recovery everyone who was told hears that the
    /// household is active again (unless a person had resolved it already:
    /// they know). Idempotent.
    pub fn stop(&mut self, why: StopReason, policy: &Policy, now: Ts) -> Vec<Action> {
        if self.is_stopped() {
            return Vec::new();
        }
        let resting = matches!(self.phase, Phase::Resolved { .. });
        if resting && why == StopReason::Resolved {
            return Vec::new();
        }
        let mut out = vec![Action::Stopped { why }];
        if why == StopReason::Recovered && self.welfare() && !resting {
            for &tier in &self.told {
                out.push(Action::Notify(Notice {
                    message_id: format!("{}/recovered/{}", self.id_prefix(), tier.as_str()),
                    step: self.step,
                    attempt: 0,
                    tier,
                    channels: policy.notice_channels.clone(),
                    stage: self.stage,
                    purpose: Purpose::Recovered,
                }));
            }
        }
        self.phase = Phase::Stopped { at: now, why };
        out
    }

    /// Every push channel of send `attempt` of `step` failed after its
    /// retries: escalate now instead of waiting (the last step repeats while
    /// it has repeats left; after that it pages SRE once and is retried with
    /// backoff, never ending quietly). Stale reports are ignored.
    pub fn delivery_failed(
        &mut self,
        step: u32,
        attempt: u32,
        policy: &Policy,
        router: &Router,
        now: Ts,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        if !matches!(self.phase, Phase::Waiting { .. })
            || step != self.step
            || attempt != self.sends
        {
            return out;
        }
        let last = self.step as usize + 1 == policy.steps.len();
        if last && self.sends <= policy.step(self.step).repeats {
            self.dispatch(policy, router, now, &mut out);
        } else if last {
            self.unreachable(policy, now, &mut out);
        } else {
            let next = self.step + 1;
            self.advance(
                next,
                EscalationCause::DeliveryFailed,
                policy,
                router,
                now,
                &mut out,
            );
        }
        out
    }

    /// The last step reached nobody: page SRE (once per escalation) and
    /// send the step again after a backoff.
    fn unreachable(&mut self, policy: &Policy, now: Ts, out: &mut Vec<Action>) {
        let round = self.unreachable_rounds;
        self.unreachable_rounds += 1;
        if round == 0 {
            self.tell(Tier::Sre);
            out.push(Action::Notify(Notice {
                message_id: format!("{}/unreachable", self.id_prefix()),
                step: self.step,
                attempt: 0,
                tier: Tier::Sre,
                channels: policy.notice_channels.clone(),
                stage: self.stage,
                purpose: Purpose::Unreachable,
            }));
        }
        let wait = UNREACHABLE_RETRY_MINUTES
            .saturating_mul(1 << round.min(16))
            .min(UNREACHABLE_RETRY_MAX_MINUTES);
        let retry_at = now.plus_minutes(wait);
        self.phase = Phase::Unreachable { retry_at };
        out.push(Action::Unreachable {
            step: self.step,
            retry_at,
        });
    }

    /// The household's consent changed. A step held for lack of consent goes
    /// out now if consent arrived.
    pub fn set_consent(
        &mut self,
        consent: bool,
        policy: &Policy,
        router: &Router,
        now: Ts,
    ) -> Vec<Action> {
        self.consent = consent;
        let mut out = Vec::new();
        if consent && matches!(self.phase, Phase::Held { .. }) {
            self.dispatch(policy, router, now, &mut out);
        }
        out
    }
}
