//! The incidents a municipality sees: listing, one incident (with its sealed
//! outcome note for callers allowed to read it, audited), the resumable
//! `WatchIncidents` stream, and people's acknowledgements and resolutions.
//!
//! Every operation is scoped to the caller ([`crate::scope`]); the gRPC
//! adapters in [`crate::api`] only unwrap requests and wrap answers.

use crate::api::TokenGuard;
use crate::core::{Core, Effects, Logged};
use crate::error::NotifyError;
use crate::metrics as m;
use crate::scope::Scoped;
use crate::store::{self, IncidentRow};
use dolbom_auth::Principal;
use dolbom_domain::convert::{outcome_from_wire, timestamp, ts};
use dolbom_domain::Ts;
use dolbom_escalation::round_id;
use dolbom_proto::v1 as pb;
use rusqlite::Connection;
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

const MAX_INCIDENT_PAGE: u32 = 500;
/// Log events read per page while a watch catches up.
const WATCH_PAGE: usize = 500;

/// What a person did to an incident.
#[derive(Clone, Copy)]
enum PersonChange {
    Acknowledge,
    /// With the outcome (`dolbom.v1.Outcome`).
    Resolve(i32),
}

fn parse_cursor(c: &str) -> Result<Option<i64>, NotifyError> {
    if c.is_empty() {
        return Ok(None);
    }
    c.strip_prefix("c")
        .and_then(|s| s.parse::<i64>().ok())
        .filter(|s| *s >= 0)
        .map(Some)
        .ok_or_else(|| NotifyError::invalid("resume_cursor", "not a cursor from this API"))
}

fn cursor(seq: i64) -> String {
    format!("c{seq}")
}

/// Items of a `WatchIncidents` stream.
pub type WatchItems = tokio::sync::mpsc::Receiver<Result<pb::WatchIncidentsResponse, NotifyError>>;

impl Core {
    /// A page of incidents, newest first.
    pub async fn list_incidents(
        self: &Arc<Self>,
        who: &Principal,
        r: pb::ListIncidentsRequest,
    ) -> Result<pb::ListIncidentsResponse, NotifyError> {
        let f = r.filter.unwrap_or_default();
        let s = Scoped::new(who, &f, false)?;
        if pb::IncidentState::try_from(f.state).is_err() {
            return Err(NotifyError::invalid("filter.state", "unknown value"));
        }
        let limit = match r.page_size {
            0 => 100,
            n => n.min(MAX_INCIDENT_PAGE),
        } as usize;
        let before = if r.page_token.is_empty() {
            None
        } else {
            let (ms, id) = r
                .page_token
                .split_once(':')
                .and_then(|(ms, id)| Some((ms.parse::<i64>().ok()?, id.to_string())))
                .ok_or_else(|| NotifyError::invalid("page_token", "not a token from this API"))?;
            Some((ms, id))
        };
        let q = store::IncidentListing {
            municipality: s.municipality.clone().unwrap_or_default(),
            dong: s.dong,
            household: s.household,
            kind: s.kind,
            min_stage: s.min_stage,
            state: (f.state != 0).then_some(f.state),
            opened_after_ms: f.opened_after.as_ref().map(|t| ts(t).millis()),
            opened_before_ms: f.opened_before.as_ref().map(|t| ts(t).millis()),
            before,
            limit: limit + 1,
        };
        let mut rows = self.read(move |_, c| store::list_incidents(c, &q)).await?;
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next_page_token = match (more, rows.last()) {
            (true, Some(v)) => format!(
                "{}:{}",
                v.opened_at.as_ref().map(|t| ts(t).millis()).unwrap_or(0),
                v.incident_id
            ),
            _ => String::new(),
        };
        Ok(pb::ListIncidentsResponse {
            incidents: rows,
            next_page_token,
        })
    }

    /// One incident; its outcome note (which may hold personal data) only
    /// for callers allowed to read it, and audited first.
    pub async fn get_incident(
        self: &Arc<Self>,
        who: &Principal,
        id: &str,
    ) -> Result<pb::Incident, NotifyError> {
        let (w, i) = (who.clone(), id.to_string());
        let row = self
            .read(move |core, c| core.visible_incident(c, &w, &i))
            .await?;
        let mut view = row.view;
        if let (Some(sealed), true) = (&row.note, who.personal_data) {
            self.audit_now(
                who,
                &view.municipality_code,
                "incidents.GetIncident.note",
                id,
            )
            .await?;
            let plain = self.cipher.decrypt(id, sealed)?;
            view.outcome_note = String::from_utf8_lossy(&plain).into_owned();
        }
        Ok(view)
    }

    /// The event log from a cursor (or from now), then live, filtered to the
    /// caller's scope. Ends when the caller goes away or `closing` fires
    /// (clients reconnect with their cursor).
    pub async fn watch_incidents(
        self: &Arc<Self>,
        who: &Principal,
        r: pb::WatchIncidentsRequest,
        closing: CancellationToken,
        guard: Option<TokenGuard>,
    ) -> Result<WatchItems, NotifyError> {
        let scope = Scoped::new(who, &r.filter.unwrap_or_default(), true)?;
        let resume = parse_cursor(&r.resume_cursor)?;
        // Subscribe before reading where the log ends: nothing committed in
        // between is missed (duplicates are skipped by sequence number).
        let live = self.subscribe();
        let (max, min) = self
            .read(|_, c| Ok((store::max_seq(c)?, store::min_seq(c)?)))
            .await?;
        let last = match resume {
            Some(s) if s > max => {
                return Err(NotifyError::invalid("resume_cursor", "ahead of the log"))
            }
            // Retention removed events after this cursor: resuming would
            // silently skip them. List incidents to resynchronise instead.
            Some(s) if s < min.unwrap_or(max + 1) - 1 => {
                return Err(NotifyError::OutOfRange(
                    "resume_cursor: older than the watch log keeps (log_retention_days); list incidents and watch from now".into(),
                ))
            }
            Some(s) => s,
            None => max,
        };
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let watch = Watch {
            core: self.clone(),
            scope,
            last,
            live,
            tx,
            closing,
            guard,
        };
        metrics::gauge!(m::WATCHERS).increment(1.0);
        tokio::spawn(async move {
            watch.run().await;
            metrics::gauge!(m::WATCHERS).decrement(1.0);
        });
        Ok(rx)
    }

    /// Acknowledges an incident: the escalation clock stops.
    pub async fn acknowledge(
        self: &Arc<Self>,
        who: &Principal,
        incident_id: &str,
        note: &str,
    ) -> Result<pb::Incident, NotifyError> {
        self.person_change(who, incident_id, note, PersonChange::Acknowledge)
            .await
    }

    /// Resolves an incident with an outcome; the escalation ends.
    pub async fn resolve(
        self: &Arc<Self>,
        who: &Principal,
        incident_id: &str,
        outcome: i32,
        note: &str,
    ) -> Result<pb::Incident, NotifyError> {
        match pb::Outcome::try_from(outcome) {
            Ok(pb::Outcome::Unspecified) => {
                return Err(NotifyError::invalid("outcome", "is required"))
            }
            Ok(pb::Outcome::Recovered) => {
                return Err(NotifyError::invalid(
                    "outcome",
                    "RECOVERED is set by the platform only",
                ))
            }
            Err(_) => return Err(NotifyError::invalid("outcome", "unknown value")),
            Ok(_) => {}
        }
        self.person_change(who, incident_id, note, PersonChange::Resolve(outcome))
            .await
    }

    /// A person's acknowledgement or resolution, in one transaction: the view
    /// updated (the note sealed), the event logged and queued for the bus,
    /// the escalation moved, the call audited. Repeating it is a no-op.
    async fn person_change(
        self: &Arc<Self>,
        who: &Principal,
        incident_id: &str,
        note: &str,
        change: PersonChange,
    ) -> Result<pb::Incident, NotifyError> {
        if note.chars().count() > 2000 {
            return Err(NotifyError::invalid("note", "at most 2000 characters"));
        }
        let (who, id, note) = (who.clone(), incident_id.to_string(), note.to_string());
        let (view, acknowledged_after) = self
            .write(move |core, tx, fx| {
                let mut row = core.visible_incident(tx, &who, &id)?;
                // A person's call is work of its own, linked to the incident's trace.
                let span = match change {
                    PersonChange::Acknowledge => tracing::info_span!(
                        "incident acknowledge",
                        dolbom.incident_id = %id,
                        dolbom.municipality = %row.view.municipality_code,
                    ),
                    PersonChange::Resolve(_) => tracing::info_span!(
                        "incident resolve",
                        dolbom.incident_id = %id,
                        dolbom.municipality = %row.view.municipality_code,
                    ),
                };
                if let Some(tp) = store::incident_trace(tx, &id)? {
                    dolbom_telemetry::stored::link_to(&span, &tp);
                }
                let _in = span.enter();
                let v = &mut row.view;
                let resolved = v.state == pb::IncidentState::Resolved as i32;
                let now = core.now();
                let (ty, outcome, action) = match change {
                    PersonChange::Acknowledge => {
                        if resolved {
                            return Err(NotifyError::Precondition(
                                "the incident is resolved".into(),
                            ));
                        }
                        if v.state == pb::IncidentState::Acknowledged as i32 {
                            return Ok((v.clone(), None));
                        }
                        v.state = pb::IncidentState::Acknowledged as i32;
                        v.acknowledged_at = Some(timestamp(now));
                        v.acknowledged_by = who.subject.clone();
                        (
                            pb::IncidentEventType::Acknowledged,
                            0,
                            "incidents.Acknowledge",
                        )
                    }
                    PersonChange::Resolve(outcome) => {
                        if resolved && v.outcome == outcome {
                            return Ok((v.clone(), None));
                        }
                        if resolved {
                            return Err(NotifyError::Precondition(
                                "the incident is already resolved".into(),
                            ));
                        }
                        v.state = pb::IncidentState::Resolved as i32;
                        v.outcome = outcome;
                        v.resolved_at = Some(timestamp(now));
                        v.resolved_by = who.subject.clone();
                        (
                            pb::IncidentEventType::Resolved,
                            outcome,
                            "incidents.Resolve",
                        )
                    }
                };
                v.updated_at = Some(timestamp(now));
                if !note.is_empty() {
                    row.note = Some(core.cipher.encrypt(&id, note.as_bytes())?);
                }
                let view = row.view.clone();
                store::put_incident(tx, &row)?;
                core.own_event(tx, &view, ty, outcome, now, fx)?;
                if let Some(mut e) = store::escalation(tx, &id)? {
                    let actions = match change {
                        PersonChange::Acknowledge => e.acknowledge(now),
                        PersonChange::Resolve(outcome) => {
                            let policy = core.policies.version(
                                tx,
                                &view.municipality_code,
                                e.policy_version,
                            );
                            // Found fine and at home: the home is rechecked if it
                            // stays quiet. Taken away or dead: it ends here.
                            let recheck =
                                outcome_from_wire(outcome).is_none_or(|o| o.expects_activity());
                            e.resolve(recheck, &policy, now)
                        }
                    };
                    core.carry_out(tx, &mut e, &view, actions, now, fx)?;
                }
                fx.records
                    .push(core.audit_record(&who, &view.municipality_code, action, &id, now));
                let acknowledged_after = (ty == pb::IncidentEventType::Acknowledged)
                    .then(|| {
                        view.opened_at
                            .as_ref()
                            .map(|o| now.millis() - ts(o).millis())
                    })
                    .flatten();
                Ok((view, acknowledged_after))
            })
            .await?;
        if let Some(ms) = acknowledged_after {
            metrics::histogram!(m::ACKNOWLEDGE_SECONDS).record(ms.max(0) as f64 / 1000.0);
        }
        Ok(view)
    }

    /// The incident if it exists and the caller may see it; otherwise the
    /// same `NotFound` either way, after the same lookup.
    pub(crate) fn visible_incident(
        &self,
        c: &Connection,
        who: &Principal,
        id: &str,
    ) -> Result<IncidentRow, NotifyError> {
        match store::incident(c, id)? {
            Some(r) if who.may_access(&r.view.municipality_code) => Ok(r),
            _ => Err(NotifyError::NotFound(format!("incident {id}"))),
        }
    }

    /// Logs the service's own event (ACKNOWLEDGED / RESOLVED / REOPENED) and
    /// queues it for the bus. Its id carries the round of a reopened incident.
    pub(crate) fn own_event(
        &self,
        tx: &Connection,
        v: &pb::Incident,
        ty: pb::IncidentEventType,
        outcome: i32,
        now: Ts,
        fx: &mut Effects,
    ) -> Result<(), NotifyError> {
        let name = match ty {
            pb::IncidentEventType::Acknowledged => "ACKNOWLEDGED",
            pb::IncidentEventType::Reopened => "REOPENED",
            _ => "RESOLVED",
        };
        let event_id = format!("{}/{name}/{}", v.incident_id, v.stage);
        let ev = pb::IncidentEvent {
            event_id: round_id(&event_id, v.reopened),
            incident_id: v.incident_id.clone(),
            household_id: v.household_id.clone(),
            municipality_code: v.municipality_code.clone(),
            dong_code: v.dong_code.clone(),
            kind: v.kind,
            r#type: ty as i32,
            stage: v.stage,
            route: v.route,
            episode_start: v.episode_start,
            due_at: Some(timestamp(now)),
            emitted_at: Some(timestamp(now)),
            outcome,
            ..Default::default()
        };
        if let Some(seq) = store::append_event(tx, &ev, true, now.millis())? {
            fx.logged.push(Logged { seq, event: ev });
            fx.publish = true;
        }
        Ok(())
    }
}

/// One `WatchIncidents` stream: catches up from the log, then follows the
/// live events, re-reading the log whenever it fell behind them.
struct Watch {
    core: Arc<Core>,
    scope: Scoped,
    /// The last sequence number sent or skipped.
    last: i64,
    live: tokio::sync::broadcast::Receiver<Arc<Logged>>,
    tx: tokio::sync::mpsc::Sender<Result<pb::WatchIncidentsResponse, NotifyError>>,
    closing: CancellationToken,
    /// The caller's token, re-checked every [`TOKEN_RECHECK`]: the stream
    /// ends (UNAUTHENTICATED) once it expires or is revoked.
    guard: Option<TokenGuard>,
}

/// How often an open watch stream re-checks its token.
const TOKEN_RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

impl Watch {
    async fn send(&self, l: &Logged) -> bool {
        let msg = pb::WatchIncidentsResponse {
            event: Some(l.event.clone()),
            cursor: cursor(l.seq),
        };
        self.tx.send(Ok(msg)).await.is_ok()
    }

    /// Ends the stream with the token's refusal, if it no longer holds.
    async fn token_ended(&self) -> bool {
        match self.guard.as_ref().map(TokenGuard::check) {
            Some(Err(e)) => {
                metrics::counter!(m::WATCH_TOKEN_ENDED).increment(1);
                let _ = self.tx.send(Err(e)).await;
                true
            }
            _ => false,
        }
    }

    async fn run(mut self) {
        let mut recheck = tokio::time::interval(TOKEN_RECHECK);
        recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        'outer: loop {
            // Catch up from the log.
            loop {
                if self.token_ended().await {
                    break 'outer;
                }
                let (m, last) = (self.scope.municipality.clone(), self.last);
                let page = match self
                    .core
                    .read(move |_, c| store::events_after(c, last, m.as_deref(), WATCH_PAGE))
                    .await
                {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = self.tx.send(Err(e)).await;
                        break 'outer;
                    }
                };
                let n = page.len();
                for (seq, event) in page {
                    self.last = seq;
                    let l = Logged { seq, event };
                    if self.scope.matches(&l.event) && !self.send(&l).await {
                        break 'outer;
                    }
                }
                if n < WATCH_PAGE {
                    break;
                }
            }
            // Then live.
            loop {
                tokio::select! {
                    _ = self.tx.closed() => break 'outer,
                    _ = self.closing.cancelled() => break 'outer,
                    _ = recheck.tick() => if self.token_ended().await {
                        break 'outer;
                    },
                    item = self.live.recv() => match item {
                        Ok(l) => {
                            if l.seq <= self.last {
                                continue;
                            }
                            self.last = l.seq;
                            if self.scope.matches(&l.event) && !self.send(&l).await {
                                break 'outer;
                            }
                        }
                        // Fell behind the broadcast: read the gap from the log.
                        Err(RecvError::Lagged(_)) => continue 'outer,
                        Err(RecvError::Closed) => break 'outer,
                    }
                }
            }
        }
    }
}
