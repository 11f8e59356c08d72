//! The people's clock: escalations moved by time, by delivery results and by
//! what their incident does, and what their actions become.
//!
//! [`Core::carry_out`] turns an escalation's [`Action`]s into effects of the
//! transaction that moved it: outbox rows (one per push channel; the watch
//! stream pulls from the event log), escalation records for the history, and
//! the saved escalation. [`Core::tick`] moves every escalation whose clock is
//! due; [`EscalationClock`] calls it on the service's tick. As the
//! deliveries' [`Ledger`], the core records their results and moves an
//! escalation on when an alert reached nobody.

use crate::channels::Notification;
use crate::core::{Core, Effects};
use crate::delivery::{Finished, Ledger};
use crate::error::NotifyError;
use crate::metrics as m;
use crate::store::{self, OutboxRow};
use dolbom_domain::convert::{explanation, kind_from_wire, stage_from_wire};
use dolbom_domain::incident::{IncidentKind, Stage};
use dolbom_domain::Ts;
use dolbom_escalation::{round_id, Action, Escalation, Notice, Purpose, StopReason};
use dolbom_history::{EscalationAction, EscalationEntry, Record};
use dolbom_proto::v1 as pb;
use rusqlite::Connection;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Escalations moved per transaction by [`Core::tick`].
const TICK_BATCH: usize = 256;

/// One transaction's view of an escalation being moved.
struct Carry<'a> {
    esc: &'a Escalation,
    view: &'a pb::Incident,
    now: Ts,
}

impl Carry<'_> {
    /// A record of this escalation with everything but the essentials empty.
    fn entry(&self, entry_id: String, action: EscalationAction) -> EscalationEntry {
        EscalationEntry {
            incident_id: self.view.incident_id.clone(),
            entry_id,
            municipality_code: self.view.municipality_code.clone(),
            at_ms: self.now.millis(),
            action,
            policy_version: self.esc.policy_version,
            step: self.esc.step,
            attempt: self.esc.sends,
            tier: String::new(),
            channel: String::new(),
            message_id: String::new(),
            result: String::new(),
            detail: String::new(),
        }
    }

    /// The notification a notice sends, on whatever channel.
    fn notification(&self, n: &Notice) -> Notification {
        let v = self.view;
        Notification {
            message_id: n.message_id.clone(),
            incident_id: v.incident_id.clone(),
            household_id: v.household_id.clone(),
            municipality_code: v.municipality_code.clone(),
            dong_code: v.dong_code.clone(),
            kind: kind_from_wire(v.kind).unwrap_or(IncidentKind::Inactivity),
            stage: n.stage,
            tier: n.tier,
            step: n.step,
            attempt: n.attempt,
            purpose: n.purpose,
            at_ms: self.now.millis(),
            text: text(n, v),
        }
    }
}

/// The short Korean text of a message; no personal data.
fn text(n: &Notice, view: &pb::Incident) -> String {
    let hh = &view.household_id;
    let id = &view.incident_id;
    match (n.purpose, kind_from_wire(view.kind)) {
        (Purpose::Recovered, _) => {
            format!("[돌봄] 가구 {hh} 활동이 다시 확인되었습니다. 조치가 필요 없습니다. ({id})")
        }
        (Purpose::Notice, Some(IncidentKind::PipelineStall)) => {
            format!("[돌봄] 플랫폼 입력 지연: {id}")
        }
        (Purpose::Notice, Some(IncidentKind::AreaOutage)) => format!(
            "[돌봄] 지역 정전·통신 장애 의심 (행정동 {}): {id}",
            view.dong_code
        ),
        (Purpose::Notice, _) => format!("[돌봄] 가구 {hh} 플러그 신호 없음, 기기 점검 필요: {id}"),
        (Purpose::Unreachable, _) => format!(
            "[돌봄] 연락 실패: {} 단계 사건에 아무에게도 알림이 전달되지 않았습니다. 재시도 중, 확인 필요: {id}",
            n.stage.korean()
        ),
        (Purpose::Alert | Purpose::StageRaised, _) => {
            let why = view
                .reason
                .as_ref()
                .and_then(explanation)
                .map(|e| format!(" {e}."))
                .unwrap_or_default();
            format!(
                "[돌봄] {} 단계: 가구 {hh} (행정동 {}) 활동 없음.{why} 확인 후 응답해 주세요: {id}",
                n.stage.korean(),
                view.dong_code,
            )
        }
    }
}

/// A wire stage as the escalation machine takes it.
pub(crate) fn stage_of(s: i32) -> Stage {
    stage_from_wire(s).unwrap_or(Stage::Normal)
}

impl Core {
    /// Saves the escalation and queues / records what its actions ask for.
    pub(crate) fn carry_out(
        &self,
        tx: &Connection,
        esc: &mut Escalation,
        view: &pb::Incident,
        actions: Vec<Action>,
        now: Ts,
        fx: &mut Effects,
    ) -> Result<(), NotifyError> {
        let id = &view.incident_id;
        let c = Carry {
            esc: &*esc,
            view,
            now,
        };
        for a in actions {
            let entry = match a {
                Action::Notify(n) => {
                    // A child of the event being processed, of the clock's
                    // span (in the incident's trace), or of a person's call.
                    let step = tracing::info_span!(
                        "escalation step",
                        dolbom.incident_id = %id,
                        dolbom.municipality = %view.municipality_code,
                        dolbom.step = n.step,
                        dolbom.attempt = n.attempt,
                        dolbom.tier = n.tier.as_str(),
                        dolbom.purpose = n.purpose.as_str(),
                    );
                    let json = serde_json::to_string(&c.notification(&n))
                        .map_err(|e| NotifyError::Internal(e.to_string()))?;
                    // Watch is a pull channel: the event is in the watch log
                    // (same transaction), so there is nothing to send or
                    // track; the step's record lists it among the channels.
                    for ch in n.channels.iter().filter(|c| c.is_push()) {
                        let row = OutboxRow {
                            span: step.clone(),
                            message_id: n.message_id.clone(),
                            channel: ch.as_str().into(),
                            incident_id: id.clone(),
                            municipality: view.municipality_code.clone(),
                            notification: json.clone(),
                        };
                        if store::outbox_insert(tx, &row, now.millis())? {
                            fx.outbox.push(row);
                        }
                    }
                    metrics::counter!(m::MESSAGES, "tier" => n.tier.as_str(), "purpose" => n.purpose.as_str())
                        .increment(1);
                    let channels: Vec<&str> = n.channels.iter().map(|c| c.as_str()).collect();
                    EscalationEntry {
                        step: n.step,
                        attempt: n.attempt,
                        tier: n.tier.as_str().into(),
                        message_id: n.message_id.clone(),
                        channel: channels.join(","),
                        detail: n.purpose.as_str().into(),
                        ..c.entry(
                            format!("{}/started", n.message_id),
                            EscalationAction::StepStarted,
                        )
                    }
                }
                Action::Held { step, tier, until } => {
                    metrics::counter!(m::HELD).increment(1);
                    EscalationEntry {
                        step,
                        tier: tier.as_str().into(),
                        detail: format!("held until {}", until.millis()),
                        ..c.entry(
                            format!("{id}/s{step}/held/{}", until.millis()),
                            EscalationAction::Held,
                        )
                    }
                }
                Action::Escalated {
                    from_step,
                    to_step,
                    cause,
                } => {
                    metrics::counter!(m::ESCALATED, "cause" => cause.as_str()).increment(1);
                    EscalationEntry {
                        step: to_step,
                        attempt: 0,
                        detail: cause.as_str().into(),
                        ..c.entry(
                            format!("{id}/escalated/{from_step}-{to_step}"),
                            EscalationAction::Escalated,
                        )
                    }
                }
                Action::Acknowledged => {
                    c.entry(format!("{id}/acknowledged"), EscalationAction::Acknowledged)
                }
                Action::Unreachable { step, retry_at } => {
                    metrics::counter!(m::UNREACHABLE).increment(1);
                    tracing::error!(incident_id = %id, step, retry_at = retry_at.millis(), "nobody on the policy could be reached; SRE paged, retrying with backoff");
                    EscalationEntry {
                        step,
                        detail: format!("unreachable; retry at {}", retry_at.millis()),
                        ..c.entry(
                            format!("{id}/unreachable/{}", retry_at.millis()),
                            EscalationAction::Escalated,
                        )
                    }
                }
                Action::Exhausted { step } => {
                    metrics::counter!(m::EXHAUSTED).increment(1);
                    tracing::error!(incident_id = %id, step, "escalation policy ran out without an acknowledgement");
                    EscalationEntry {
                        step,
                        detail: "exhausted".into(),
                        ..c.entry(format!("{id}/exhausted"), EscalationAction::Escalated)
                    }
                }
                Action::Stopped { why } => EscalationEntry {
                    detail: why.as_str().into(),
                    ..c.entry(
                        format!("{}/stopped", round_id(id, c.esc.round)),
                        EscalationAction::Stopped,
                    )
                },
                Action::Resolved { recheck_at } => EscalationEntry {
                    detail: format!(
                        "resolved; rechecked at {} if still quiet",
                        recheck_at.millis()
                    ),
                    ..c.entry(
                        format!("{}/resolved", round_id(id, c.esc.round)),
                        EscalationAction::Stopped,
                    )
                },
                Action::Reopened { round, cause } => {
                    metrics::counter!(m::REOPENED, "cause" => cause.as_str()).increment(1);
                    tracing::warn!(incident_id = %id, round, cause = cause.as_str(), "a resolved incident opened again: the home stayed quiet");
                    self.reopen_view(tx, id, round, now, fx)?;
                    EscalationEntry {
                        detail: format!("reopened: {}", cause.as_str()),
                        ..c.entry(
                            format!("{}/reopened", round_id(id, round)),
                            EscalationAction::Escalated,
                        )
                    }
                }
            };
            fx.records.push(Record::Escalation(entry));
        }
        store::put_escalation(tx, &view.municipality_code, esc, now.millis())?;
        Ok(())
    }

    /// A resolved incident opens again (round `round`): the view is OPEN with
    /// its resolution cleared (the note kept), and a REOPENED event goes to
    /// the watch log and the bus.
    fn reopen_view(
        &self,
        tx: &Connection,
        id: &str,
        round: u32,
        now: Ts,
        fx: &mut Effects,
    ) -> Result<(), NotifyError> {
        let Some(mut row) = store::incident(tx, id)? else {
            return Ok(());
        };
        let v = &mut row.view;
        v.state = pb::IncidentState::Open as i32;
        v.outcome = pb::Outcome::Unspecified as i32;
        v.resolved_at = None;
        v.resolved_by.clear();
        v.acknowledged_at = None;
        v.acknowledged_by.clear();
        v.reopened = round;
        v.updated_at = Some(dolbom_domain::convert::timestamp(now));
        let view = v.clone();
        store::put_incident(tx, &row)?;
        self.own_event(tx, &view, pb::IncidentEventType::Reopened, 0, now, fx)
    }

    /// Moves every escalation whose clock is due. Returns how many moved.
    pub async fn tick(self: &Arc<Self>) -> Result<usize, NotifyError> {
        let mut total = 0;
        loop {
            let n = self
                .write(|core, tx, fx| {
                    let now = core.now();
                    let due = store::due_escalations(tx, now.millis(), TICK_BATCH)?;
                    let n = due.len();
                    for (m, mut e) in due {
                        let policy = core.policies.version(tx, &m, e.policy_version);
                        let actions = e.tick(&policy, core.router(), now);
                        let Some(row) = store::incident(tx, &e.incident_id)? else {
                            // No view to act on (cannot happen short of
                            // corruption): end the clock rather than spin.
                            e.stop(StopReason::Suppressed, &policy, now);
                            store::put_escalation(tx, &m, &e, now.millis())?;
                            continue;
                        };
                        // The step the clock reached joins the incident's trace.
                        let span = tracing::info_span!(
                            "escalation clock",
                            dolbom.incident_id = %e.incident_id,
                            dolbom.municipality = %m,
                        );
                        if let Some(tp) = store::incident_trace(tx, &e.incident_id)? {
                            dolbom_telemetry::stored::continue_trace(&span, &tp);
                        }
                        let _in = span.enter();
                        core.carry_out(tx, &mut e, &row.view, actions, now, fx)?;
                    }
                    Ok(n)
                })
                .await?;
            total += n;
            if n < TICK_BATCH {
                break;
            }
        }
        Ok(total)
    }

    /// Re-queues what was pending when the service stopped.
    pub async fn resume_deliveries(self: &Arc<Self>) -> Result<usize, NotifyError> {
        let rows = self.read(|_, c| store::outbox_pending(c)).await?;
        let n = rows.len();
        if n > 0 {
            tracing::info!(pending = n, "resuming deliveries queued before the restart");
            self.deliveries.submit(rows);
        }
        Ok(n)
    }
}

#[async_trait::async_trait]
impl Ledger for Core {
    async fn record(self: Arc<Self>, finished: Vec<Finished>) -> Result<(), NotifyError> {
        self.write(move |_, tx, fx| {
            for f in finished {
                store::outbox_finish(tx, &f.message_id, &f.channel, f.status.as_str(), f.attempts)?;
                fx.records
                    .extend(f.records.into_iter().map(Record::Escalation));
            }
            Ok(())
        })
        .await
    }

    async fn reached_nobody(self: Arc<Self>, note: Notification) -> Result<(), NotifyError> {
        let (id, step, attempt) = (note.incident_id, note.step, note.attempt);
        self.write(move |core, tx, fx| {
            let Some(mut e) = store::escalation(tx, &id)? else {
                return Ok(());
            };
            let Some(row) = store::incident(tx, &id)? else {
                return Ok(());
            };
            let now = core.now();
            let policy = core
                .policies
                .version(tx, &row.view.municipality_code, e.policy_version);
            let actions = e.delivery_failed(step, attempt, &policy, core.router(), now);
            if !actions.is_empty() {
                core.carry_out(tx, &mut e, &row.view, actions, now, fx)?;
            }
            Ok(())
        })
        .await
    }
}

/// Moves due escalations every `tick` until shutdown.
pub struct EscalationClock {
    pub core: Arc<Core>,
    pub tick: Duration,
}

impl EscalationClock {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut interval = tokio::time::interval(self.tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = interval.tick() => {
                    if let Err(e) = self.core.tick().await {
                        tracing::error!(error = %e, "escalation tick failed");
                    }
                }
            }
        }
    }
}
