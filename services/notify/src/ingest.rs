//! Incident events in: from `care.incidents` (Kafka) or the in-process bus.
//!
//! [`Core::ingest`] takes a batch in one transaction: each event is checked
//! (`dolbom_domain::checks::check_incident_event`; malformed ones are counted and skipped), logged (a
//! duplicate `event_id` stops there), the incident view updated, and the
//! incident's escalation opened, raised or stopped (see [`crate::escalate`]).

use crate::core::{Core, Effects, Logged};
use crate::error::NotifyError;
use crate::escalate::stage_of;
use crate::metrics as m;
use crate::store::{self, IncidentRow};
use dolbom_domain::checks::check_incident_event;
use dolbom_domain::convert::{kind_from_wire, timestamp, ts};
use dolbom_domain::logsafe::LogSafe;
use dolbom_domain::Ts;
use dolbom_escalation::{Escalation, Opening, StopReason};
use dolbom_proto::v1 as pb;
use rusqlite::Connection;
use std::sync::Arc;

/// When an event happened: its deadline, else when it was emitted.
fn event_time(ev: &pb::IncidentEvent) -> Ts {
    ev.due_at
        .as_ref()
        .or(ev.emitted_at.as_ref())
        .map(ts)
        .unwrap_or_default()
}

impl Core {
    /// Takes a batch of incident events. Malformed events are counted and
    /// skipped; duplicates (same `event_id`) change nothing. Returns how many
    /// were new.
    pub async fn ingest(
        self: &Arc<Self>,
        events: Vec<pb::IncidentEvent>,
    ) -> Result<usize, NotifyError> {
        self.ingest_traced(
            events
                .into_iter()
                .map(|e| (e, tracing::Span::none()))
                .collect(),
        )
        .await
    }

    /// [`Core::ingest`], each event inside its span (the Kafka consumer's
    /// `care.incidents process`): the escalation steps it starts, and their
    /// deliveries, are that span's children.
    pub async fn ingest_traced(
        self: &Arc<Self>,
        events: Vec<(pb::IncidentEvent, tracing::Span)>,
    ) -> Result<usize, NotifyError> {
        if events.is_empty() {
            return Ok(0);
        }
        self.write(move |core, tx, fx| {
            let now = core.now();
            let mut new = 0;
            for (ev, span) in events {
                let _in = span.enter();
                if let Err(field) = check_incident_event(&ev) {
                    metrics::counter!(m::REJECTED_EVENTS, "field" => field).increment(1);
                    tracing::warn!(event_id = %LogSafe(&ev.event_id), field, "malformed incident event skipped");
                    continue;
                }
                let Some(seq) = store::append_event(tx, &ev, false, now.millis())? else {
                    metrics::counter!(m::DUPLICATE_EVENTS).increment(1);
                    continue;
                };
                new += 1;
                core.apply_event(tx, &ev, now, fx)?;
                fx.logged.push(Logged { seq, event: ev });
            }
            metrics::counter!(m::EVENTS).increment(new as u64);
            Ok(new)
        })
        .await
    }

    /// One new event: the incident view, then its escalation.
    fn apply_event(
        &self,
        tx: &Connection,
        ev: &pb::IncidentEvent,
        now: Ts,
        fx: &mut Effects,
    ) -> Result<(), NotifyError> {
        use pb::IncidentEventType as T;
        let ty = T::try_from(ev.r#type).unwrap_or(T::Unspecified);
        let at = timestamp(event_time(ev));
        let mut row = store::incident(tx, &ev.incident_id)?.unwrap_or_else(|| IncidentRow {
            view: pb::Incident {
                incident_id: ev.incident_id.clone(),
                household_id: ev.household_id.clone(),
                municipality_code: ev.municipality_code.clone(),
                dong_code: ev.dong_code.clone(),
                kind: ev.kind,
                stage: ev.stage,
                state: pb::IncidentState::Open as i32,
                episode_start: ev.episode_start,
                opened_at: Some(at),
                ..Default::default()
            },
            note: None,
        });
        let v = &mut row.view;
        if ev.stage > v.stage {
            v.stage = ev.stage;
        }
        if ev.reason.is_some() {
            v.reason = ev.reason;
        }
        if ev.route.is_some() {
            v.route = ev.route;
        }
        v.updated_at = Some(at);
        let resolved = v.state == pb::IncidentState::Resolved as i32;
        match ty {
            T::Recovered | T::Suppressed | T::Resolved if !resolved => {
                v.state = pb::IncidentState::Resolved as i32;
                v.resolved_at = Some(at);
                v.outcome = match ty {
                    T::Recovered => pb::Outcome::Recovered as i32,
                    _ => ev.outcome,
                };
                if v.resolved_by.is_empty() {
                    v.resolved_by = match ty {
                        T::Resolved => "another notify instance".into(),
                        T::Suppressed => "platform (monitoring suppressed)".into(),
                        _ => "platform".into(),
                    };
                }
            }
            T::Acknowledged if v.state == pb::IncidentState::Open as i32 => {
                v.state = pb::IncidentState::Acknowledged as i32;
                v.acknowledged_at = Some(at);
            }
            _ => {}
        }
        let view = v.clone();
        store::put_incident(tx, &row)?;

        let m = &view.municipality_code;
        let existing = store::escalation(tx, &ev.incident_id)?;
        let (mut esc, actions) = match (existing, ty) {
            // (A resolved incident whose escalation retention removed does
            // not start again when an old event is replayed.)
            (None, T::Opened | T::StageRaised) if !resolved => {
                // Later steps (the escalation clock's) join this trace.
                if let Some(tp) = dolbom_telemetry::stored::traceparent(&tracing::Span::current()) {
                    store::put_incident_trace(tx, &ev.incident_id, &tp)?;
                }
                let kind = kind_from_wire(ev.kind).expect("checked");
                let consent = match store::household(tx, &ev.household_id)? {
                    Some(h) => h.config.night_holiday_consent,
                    None => ev
                        .route
                        .as_ref()
                        .is_some_and(|r| r.target == pb::RouteTarget::ControlCenter as i32),
                };
                let open = Opening {
                    incident_id: &ev.incident_id,
                    kind,
                    stage: stage_of(ev.stage),
                    consent,
                };
                Escalation::open(&open, self.policies.current(m), self.router(), now)
            }
            (None, _) => return Ok(()),
            (Some(mut e), ty) => {
                let policy = self.policies.version(tx, m, e.policy_version);
                let a = match ty {
                    T::StageRaised => {
                        e.stage_raised(stage_of(ev.stage), &policy, self.router(), now)
                    }
                    T::Recovered => e.stop(StopReason::Recovered, &policy, now),
                    T::Suppressed => e.stop(StopReason::Suppressed, &policy, now),
                    T::Resolved => e.stop(StopReason::Resolved, &policy, now),
                    T::Acknowledged => e.acknowledge(now),
                    _ => Vec::new(),
                };
                (e, a)
            }
        };
        self.carry_out(tx, &mut esc, &view, actions, now, fx)
    }
}
