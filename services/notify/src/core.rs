//! The service core: incident events in, escalations run, messages out.
//!
//! Every change happens in one SQLite transaction on the writer connection:
//! the event is logged (a duplicate `event_id` stops there), the incident
//! view updated, the escalation loaded, moved and saved, and the messages it
//! asked for queued in the outbox. Only after the commit are the effects let
//! out: the logged events go to `WatchIncidents` subscribers (in log order,
//! under the writer lock), the outbox rows to delivery tasks, the escalation
//! and delivery records to the history writer. A crash between commit and
//! delivery leaves pending outbox rows, which a restart delivers with the
//! same idempotency keys; a crash before the commit leaves nothing, and the
//! Kafka offset (committed after `ingest` returns) brings the event back.

use crate::channels::{Channel, DeliveryError, Notification, RetryOptions};
use crate::crypto::Cipher;
use crate::store::{self, IncidentRow, OutboxRow};
use crate::NotifyError;
use dolbom_auth::Principal;
use dolbom_calendar::Router;
use dolbom_domain::convert::{timestamp, ts};
use dolbom_domain::incident::{IncidentKind, Stage};
use dolbom_domain::Ts;
use dolbom_escalation::{
    Action, ChannelKind, Escalation, Notice, Opening, Policy, Purpose, StopReason,
};
use dolbom_history::{AuditEntry, EscalationAction, EscalationEntry, HistoryWriter, Record};
use dolbom_proto::v1 as pb;
use rusqlite::Connection;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, mpsc, Semaphore};

/// The service's notion of now (simulated in standalone, manual in tests).
pub type Clock = Arc<dyn Fn() -> Ts + Send + Sync>;

/// Where registry changes and the service's own incident events go:
/// `care.households` / `care.incidents` on Kafka, or the in-process bus.
#[async_trait::async_trait]
pub trait Publisher: Send + Sync {
    /// `None` = the household was deleted (a tombstone).
    async fn household(
        &self,
        household_id: &str,
        config: Option<&pb::HouseholdConfig>,
    ) -> Result<(), NotifyError>;
    async fn incident_event(&self, event: &pb::IncidentEvent) -> Result<(), NotifyError>;
}

/// A publisher that drops everything: for tools and benchmarks that run the
/// core without a bus.
pub struct NoPublisher;

#[async_trait::async_trait]
impl Publisher for NoPublisher {
    async fn household(&self, _: &str, _: Option<&pb::HouseholdConfig>) -> Result<(), NotifyError> {
        Ok(())
    }

    async fn incident_event(&self, _: &pb::IncidentEvent) -> Result<(), NotifyError> {
        Ok(())
    }
}

/// One logged event, as `WatchIncidents` streams it.
#[derive(Clone, Debug)]
pub struct Logged {
    pub seq: i64,
    pub event: pb::IncidentEvent,
}

/// What a transaction lets out after it committed.
#[derive(Default)]
pub(crate) struct Effects {
    pub(crate) logged: Vec<Logged>,
    pub(crate) outbox: Vec<OutboxRow>,
    pub(crate) records: Vec<Record>,
    pub(crate) publish: bool,
}

pub struct CoreParts {
    pub conn: Connection,
    pub reader: Connection,
    pub cipher: Cipher,
    pub router: Router,
    /// Current policy per municipality; `"*"` for everyone else (the
    /// platform default when absent).
    pub policies: HashMap<String, Policy>,
    pub clock: Clock,
    pub history: Arc<HistoryWriter>,
    pub publisher: Arc<dyn Publisher>,
    pub channels: Vec<Arc<dyn Channel>>,
    pub retry: RetryOptions,
    /// Most messages delivered at once.
    pub max_in_flight: usize,
    /// How long the watch log, finished messages and ended escalations are
    /// kept (the history store keeps the record).
    pub log_retention_ms: i64,
    /// How long resolved incidents stay listable here.
    pub incident_retention_ms: i64,
}

pub struct Core {
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
    pub(crate) cipher: Cipher,
    router: Router,
    policies: HashMap<String, Policy>,
    pub(crate) clock: Clock,
    pub(crate) history: Arc<HistoryWriter>,
    publisher: Arc<dyn Publisher>,
    channels: HashMap<ChannelKind, Arc<dyn Channel>>,
    retry: RetryOptions,
    in_flight: Arc<Semaphore>,
    max_in_flight: usize,
    log_retention_ms: i64,
    incident_retention_ms: i64,
    watch: broadcast::Sender<Arc<Logged>>,
    publish_wake: tokio::sync::Notify,
    finished: mpsc::UnboundedSender<Finish>,
    /// Readiness inputs (see [`Core::health`]).
    publisher_ok: std::sync::atomic::AtomicBool,
    input_ok: std::sync::atomic::AtomicBool,
    health_changed: tokio::sync::Notify,
}

/// What a person did to an incident.
#[derive(Clone, Copy)]
enum PersonChange {
    Acknowledge,
    /// With the outcome (`dolbom.v1.Outcome`).
    Resolve(i32),
}

/// Delivery results on their way into the outbox (group commit).
enum Finish {
    Done(String, String, &'static str, u32),
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Writes delivery results in batches: one transaction (one fsync) for
/// everything that finished meanwhile, instead of one per message.
async fn run_finisher(core: std::sync::Weak<Core>, mut rx: mpsc::UnboundedReceiver<Finish>) {
    while let Some(first) = rx.recv().await {
        let mut done = Vec::new();
        let mut flushes = Vec::new();
        let mut next = Some(first);
        while let Some(m) = next.take() {
            match m {
                Finish::Done(a, b, c, d) => done.push((a, b, c, d)),
                Finish::Flush(tx) => flushes.push(tx),
            }
            if done.len() < 4096 {
                next = rx.try_recv().ok();
            }
        }
        let Some(core) = core.upgrade() else { break };
        if !done.is_empty() {
            let res = core
                .write(move |_, tx, _| {
                    for (m, c, status, attempts) in &done {
                        store::outbox_finish(tx, m, c, status, *attempts)?;
                    }
                    Ok(())
                })
                .await;
            if let Err(e) = res {
                // The rows stay pending and are delivered again (same
                // idempotency keys) after a restart.
                tracing::error!(error = %e, "could not record deliveries");
            }
        }
        for f in flushes {
            let _ = f.send(());
        }
    }
}

fn kind_name(k: i32) -> &'static str {
    match pb::IncidentKind::try_from(k) {
        Ok(pb::IncidentKind::Inactivity) => "INACTIVITY",
        Ok(pb::IncidentKind::DeviceOffline) => "DEVICE_OFFLINE",
        Ok(pb::IncidentKind::AreaOutage) => "AREA_OUTAGE",
        Ok(pb::IncidentKind::PipelineStall) => "PIPELINE_STALL",
        _ => "UNSPECIFIED",
    }
}

fn domain_kind(k: i32) -> Option<IncidentKind> {
    Some(match pb::IncidentKind::try_from(k).ok()? {
        pb::IncidentKind::Inactivity => IncidentKind::Inactivity,
        pb::IncidentKind::DeviceOffline => IncidentKind::DeviceOffline,
        pb::IncidentKind::AreaOutage => IncidentKind::AreaOutage,
        pb::IncidentKind::PipelineStall => IncidentKind::PipelineStall,
        pb::IncidentKind::Unspecified => return None,
    })
}

fn domain_stage(s: i32) -> Stage {
    match pb::Stage::try_from(s) {
        Ok(pb::Stage::Attention) => Stage::Attention,
        Ok(pb::Stage::Caution) => Stage::Caution,
        Ok(pb::Stage::Danger) => Stage::Danger,
        _ => Stage::Normal,
    }
}

fn stage_name(s: Stage) -> &'static str {
    match s {
        Stage::Normal => "NORMAL",
        Stage::Attention => "ATTENTION",
        Stage::Caution => "CAUTION",
        Stage::Danger => "DANGER",
    }
}

fn event_time(ev: &pb::IncidentEvent) -> Ts {
    ev.due_at
        .as_ref()
        .or(ev.emitted_at.as_ref())
        .map(ts)
        .unwrap_or_default()
}

/// Checks what every event must carry; the rest is optional.
pub fn check_event(ev: &pb::IncidentEvent) -> Result<(), String> {
    if ev.event_id.is_empty() || ev.event_id.len() > 256 {
        return Err("event_id".into());
    }
    if ev.incident_id.is_empty() || ev.incident_id.len() > 200 {
        return Err("incident_id".into());
    }
    let m = &ev.municipality_code;
    if m.len() != 5 || !m.bytes().all(|b| b.is_ascii_digit()) {
        return Err("municipality_code".into());
    }
    if domain_kind(ev.kind).is_none() {
        return Err("kind".into());
    }
    match pb::IncidentEventType::try_from(ev.r#type) {
        Ok(pb::IncidentEventType::Unspecified) | Err(_) => Err("type".into()),
        Ok(_) => Ok(()),
    }
}

fn text(n: &Notice, view: &pb::Incident, kind: &str) -> String {
    let hh = &view.household_id;
    match n.purpose {
        Purpose::Recovered => format!(
            "[돌봄] 가구 {hh} 활동이 다시 확인되었습니다. 조치가 필요 없습니다. ({})",
            view.incident_id
        ),
        Purpose::Notice => match kind {
            "PIPELINE_STALL" => format!("[돌봄] 플랫폼 입력 지연: {}", view.incident_id),
            "AREA_OUTAGE" => format!(
                "[돌봄] 지역 정전·통신 장애 의심 (행정동 {}): {}",
                view.dong_code, view.incident_id
            ),
            _ => format!(
                "[돌봄] 가구 {hh} 플러그 신호 없음, 기기 점검 필요: {}",
                view.incident_id
            ),
        },
        Purpose::Alert | Purpose::StageRaised => format!(
            "[돌봄] {} 단계: 가구 {hh} (행정동 {}) 활동 없음. 확인 후 응답해 주세요: {}",
            n.stage.korean(),
            view.dong_code,
            view.incident_id
        ),
    }
}

impl Core {
    pub fn new(mut p: CoreParts) -> Arc<Self> {
        // Municipalities without their own policy use `"*"`.
        p.policies
            .entry("*".into())
            .or_insert_with(Policy::platform_default);
        let (watch, _) = broadcast::channel(4096);
        let (finished, finish_rx) = mpsc::unbounded_channel();
        let core = Arc::new(Core {
            writer: Mutex::new(p.conn),
            reader: Mutex::new(p.reader),
            cipher: p.cipher,
            router: p.router,
            policies: p.policies,
            clock: p.clock,
            history: p.history,
            publisher: p.publisher,
            channels: p.channels.into_iter().map(|c| (c.kind(), c)).collect(),
            retry: p.retry,
            in_flight: Arc::new(Semaphore::new(p.max_in_flight.max(1))),
            max_in_flight: p.max_in_flight.max(1),
            log_retention_ms: p.log_retention_ms,
            incident_retention_ms: p.incident_retention_ms,
            watch,
            publish_wake: tokio::sync::Notify::new(),
            finished,
            publisher_ok: std::sync::atomic::AtomicBool::new(true),
            input_ok: std::sync::atomic::AtomicBool::new(true),
            health_changed: tokio::sync::Notify::new(),
        });
        tokio::spawn(run_finisher(Arc::downgrade(&core), finish_rx));
        core
    }

    pub fn router(&self) -> &Router {
        &self.router
    }

    pub fn now(&self) -> Ts {
        (self.clock)()
    }

    /// Records each configured policy version (a changed released version is
    /// an error) — call once at start.
    pub fn install_policies(&self) -> Result<(), NotifyError> {
        let c = self.writer.lock().expect("writer lock");
        for (m, p) in &self.policies {
            p.validate()
                .map_err(|e| NotifyError::Config(format!("policy for {m}: {e}")))?;
            store::put_policy(&c, m, p)?;
        }
        Ok(())
    }

    fn current_policy(&self, municipality: &str) -> &Policy {
        self.policies
            .get(municipality)
            .unwrap_or_else(|| &self.policies["*"])
    }

    /// The policy version an escalation started with (falls back to the
    /// current one if that version is no longer known).
    pub(crate) fn policy_for(
        &self,
        c: &Connection,
        municipality: &str,
        version: u32,
    ) -> std::borrow::Cow<'_, Policy> {
        use std::borrow::Cow;
        let cur = self.current_policy(municipality);
        if cur.version == version {
            return Cow::Borrowed(cur);
        }
        let key = if self.policies.contains_key(municipality) {
            municipality
        } else {
            "*"
        };
        match store::policy(c, key, version) {
            Ok(Some(p)) => Cow::Owned(p),
            _ => {
                tracing::warn!(
                    municipality,
                    version,
                    "escalation policy version unknown; using the current one"
                );
                Cow::Borrowed(cur)
            }
        }
    }

    /// Runs `f` in a transaction on the writer connection (on a blocking
    /// thread), then lets its effects out.
    pub(crate) async fn write<R, F>(self: &Arc<Self>, f: F) -> Result<R, NotifyError>
    where
        R: Send + 'static,
        F: FnOnce(&Core, &rusqlite::Transaction<'_>, &mut Effects) -> Result<R, NotifyError>
            + Send
            + 'static,
    {
        let me = self.clone();
        let (r, fx) = tokio::task::spawn_blocking(move || {
            let mut conn = me.writer.lock().expect("writer lock");
            let tx = conn.transaction()?;
            let mut fx = Effects::default();
            let r = f(&me, &tx, &mut fx)?;
            tx.commit()?;
            // Still under the writer lock: subscribers see log order.
            for l in fx.logged.drain(..) {
                let _ = me.watch.send(Arc::new(l));
            }
            Ok::<_, NotifyError>((r, fx))
        })
        .await
        .map_err(|e| NotifyError::Internal(format!("store task: {e}")))??;
        self.let_out(fx).await;
        Ok(r)
    }

    /// Runs `f` on the reader connection on a blocking thread.
    pub(crate) async fn read<R, F>(self: &Arc<Self>, f: F) -> Result<R, NotifyError>
    where
        R: Send + 'static,
        F: FnOnce(&Core, &Connection) -> Result<R, NotifyError> + Send + 'static,
    {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let c = me.reader.lock().expect("reader lock");
            f(&me, &c)
        })
        .await
        .map_err(|e| NotifyError::Internal(format!("store task: {e}")))?
    }

    async fn let_out(self: &Arc<Self>, fx: Effects) {
        for r in fx.records {
            if self.history.send(r).await.is_err() {
                tracing::error!("history writer closed; an escalation record was not kept");
            }
        }
        if !fx.outbox.is_empty() {
            self.clone().deliver(fx.outbox);
        }
        if fx.publish {
            self.publish_wake.notify_one();
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Logged>> {
        self.watch.subscribe()
    }

    // ------------------------------------------------------------- ingest

    /// Takes a batch of incident events (from `care.incidents` or the
    /// in-process bus). Malformed events are counted and skipped;
    /// duplicates (same `event_id`) change nothing. Returns how many were new.
    pub async fn ingest(
        self: &Arc<Self>,
        events: Vec<pb::IncidentEvent>,
    ) -> Result<usize, NotifyError> {
        if events.is_empty() {
            return Ok(0);
        }
        self.write(move |core, tx, fx| {
            let now = core.now();
            let mut new = 0;
            for ev in events {
                if let Err(field) = check_event(&ev) {
                    metrics::counter!("dolbom_notify_rejected_events_total", "field" => field.clone())
                        .increment(1);
                    tracing::warn!(event_id = %ev.event_id, field, "malformed incident event skipped");
                    continue;
                }
                let Some(seq) = store::append_event(tx, &ev, false, now.millis())? else {
                    metrics::counter!("dolbom_notify_duplicate_events_total").increment(1);
                    continue;
                };
                new += 1;
                core.apply_event(tx, &ev, now, fx)?;
                fx.logged.push(Logged { seq, event: ev });
            }
            metrics::counter!("dolbom_notify_events_total").increment(new as u64);
            Ok(new)
        })
        .await
    }

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
        let municipality = v.municipality_code.clone();
        let view = v.clone();
        store::put_incident(tx, &row)?;

        let existing = store::escalation(tx, &ev.incident_id)?;
        let (mut esc, actions) = match (existing, ty) {
            // (A resolved incident whose escalation retention removed does
            // not start again when an old event is replayed.)
            (None, T::Opened | T::StageRaised) if !resolved => {
                let kind = domain_kind(ev.kind).expect("checked");
                let consent = match store::household(tx, &ev.household_id)? {
                    Some(h) => h.config.night_holiday_consent,
                    None => ev
                        .route
                        .as_ref()
                        .is_some_and(|r| r.target == pb::RouteTarget::ControlCenter as i32),
                };
                let policy = self.current_policy(&municipality);
                let open = Opening {
                    incident_id: &ev.incident_id,
                    kind,
                    stage: domain_stage(ev.stage),
                    consent,
                };
                Escalation::open(&open, policy, &self.router, now)
            }
            (None, _) => return Ok(()),
            (Some(mut e), ty) => {
                let policy = self.policy_for(tx, &municipality, e.policy_version);
                let a = match ty {
                    T::StageRaised => {
                        e.stage_raised(domain_stage(ev.stage), &policy, &self.router, now)
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
        self.carry_out(tx, &mut esc, &view, actions, now, fx)?;
        Ok(())
    }

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
        let m = &view.municipality_code;
        let entry = |id: String,
                     action: EscalationAction,
                     step: u32,
                     attempt: u32,
                     tier: &str,
                     detail: String| {
            Record::Escalation(EscalationEntry {
                incident_id: view.incident_id.clone(),
                entry_id: id,
                municipality_code: m.clone(),
                at_ms: now.millis(),
                action,
                policy_version: esc.policy_version,
                step,
                attempt,
                tier: tier.to_string(),
                channel: String::new(),
                message_id: String::new(),
                result: String::new(),
                detail,
            })
        };
        let id = &view.incident_id;
        for a in actions {
            match a {
                Action::Notify(n) => {
                    let kind = kind_name(view.kind);
                    let note = Notification {
                        message_id: n.message_id.clone(),
                        incident_id: id.clone(),
                        household_id: view.household_id.clone(),
                        municipality_code: m.clone(),
                        dong_code: view.dong_code.clone(),
                        kind: kind.into(),
                        stage: stage_name(n.stage).into(),
                        tier: n.tier.as_str().into(),
                        step: n.step,
                        attempt: n.attempt,
                        purpose: n.purpose.as_str().into(),
                        at_ms: now.millis(),
                        text: text(&n, view, kind),
                    };
                    let json = serde_json::to_string(&note)
                        .map_err(|e| NotifyError::Internal(e.to_string()))?;
                    // Watch is a pull channel: the event is in the watch log
                    // (same transaction), so there is nothing to send or
                    // track; the step's record lists it among the channels.
                    for ch in n.channels.iter().filter(|c| c.is_push()) {
                        let row = OutboxRow {
                            message_id: n.message_id.clone(),
                            channel: ch.as_str().into(),
                            incident_id: id.clone(),
                            municipality: m.clone(),
                            notification: json.clone(),
                        };
                        if store::outbox_insert(tx, &row, now.millis())? {
                            fx.outbox.push(row);
                        }
                    }
                    metrics::counter!("dolbom_notify_messages_total", "tier" => n.tier.as_str(), "purpose" => n.purpose.as_str())
                        .increment(1);
                    let mut r = entry(
                        format!("{}/started", n.message_id),
                        EscalationAction::StepStarted,
                        n.step,
                        n.attempt,
                        n.tier.as_str(),
                        n.purpose.as_str().into(),
                    );
                    if let Record::Escalation(e) = &mut r {
                        e.message_id = n.message_id.clone();
                        e.channel = n
                            .channels
                            .iter()
                            .map(|c| c.as_str())
                            .collect::<Vec<_>>()
                            .join(",");
                    }
                    fx.records.push(r);
                }
                Action::Held { step, tier, until } => {
                    metrics::counter!("dolbom_notify_held_total").increment(1);
                    fx.records.push(entry(
                        format!("{id}/s{step}/held/{}", until.millis()),
                        EscalationAction::Held,
                        step,
                        esc.sends,
                        tier.as_str(),
                        format!("held until {}", until.millis()),
                    ));
                }
                Action::Escalated {
                    from_step,
                    to_step,
                    cause,
                } => {
                    metrics::counter!("dolbom_notify_escalated_total", "cause" => cause.as_str())
                        .increment(1);
                    fx.records.push(entry(
                        format!("{id}/escalated/{from_step}-{to_step}"),
                        EscalationAction::Escalated,
                        to_step,
                        0,
                        "",
                        cause.as_str().into(),
                    ));
                }
                Action::Acknowledged => fx.records.push(entry(
                    format!("{id}/acknowledged"),
                    EscalationAction::Acknowledged,
                    esc.step,
                    esc.sends,
                    "",
                    String::new(),
                )),
                Action::Exhausted { step } => {
                    metrics::counter!("dolbom_notify_exhausted_total").increment(1);
                    tracing::error!(incident_id = %id, step, "escalation policy ran out without an acknowledgement");
                    fx.records.push(entry(
                        format!("{id}/exhausted"),
                        EscalationAction::Escalated,
                        step,
                        esc.sends,
                        "",
                        "exhausted".into(),
                    ));
                }
                Action::Stopped { why } => fx.records.push(entry(
                    format!("{id}/stopped"),
                    EscalationAction::Stopped,
                    esc.step,
                    esc.sends,
                    "",
                    why.as_str().into(),
                )),
            }
        }
        store::put_escalation(tx, m, esc, now.millis())?;
        Ok(())
    }

    // ------------------------------------------------------------- clocks

    /// Moves every escalation whose clock is due. Returns how many moved.
    pub async fn tick(self: &Arc<Self>) -> Result<usize, NotifyError> {
        let mut total = 0;
        loop {
            let n = self
                .write(|core, tx, fx| {
                    let now = core.now();
                    let due = store::due_escalations(tx, now.millis(), 256)?;
                    let n = due.len();
                    for (m, mut e) in due {
                        let policy = core.policy_for(tx, &m, e.policy_version);
                        let actions = e.tick(&policy, &core.router, now);
                        let Some(row) = store::incident(tx, &e.incident_id)? else {
                            // No view to act on (cannot happen short of
                            // corruption): end the clock rather than spin.
                            e.stop(StopReason::Suppressed, &policy, now);
                            store::put_escalation(tx, &m, &e, now.millis())?;
                            continue;
                        };
                        core.carry_out(tx, &mut e, &row.view, actions, now, fx)?;
                    }
                    Ok(n)
                })
                .await?;
            total += n;
            if n < 256 {
                break;
            }
        }
        Ok(total)
    }

    // ---------------------------------------------------------- deliveries

    /// Queues delivery tasks for outbox rows (one task per message).
    pub(crate) fn deliver(self: Arc<Self>, rows: Vec<OutboxRow>) {
        let mut by_message: HashMap<String, Vec<OutboxRow>> = HashMap::new();
        for r in rows {
            by_message.entry(r.message_id.clone()).or_default().push(r);
        }
        for (_, rows) in by_message {
            let me = self.clone();
            tokio::spawn(async move {
                let _permit = me.in_flight.clone().acquire_owned().await;
                if let Err(e) = me.deliver_message(rows).await {
                    tracing::error!(error = %e, "delivery bookkeeping failed");
                }
            });
        }
    }

    /// Re-queues what was pending when the service stopped.
    pub async fn resume_deliveries(self: &Arc<Self>) -> Result<usize, NotifyError> {
        let rows = self.read(|_, c| store::outbox_pending(c)).await?;
        let n = rows.len();
        if n > 0 {
            tracing::info!(pending = n, "resuming deliveries queued before the restart");
            self.clone().deliver(rows);
        }
        Ok(n)
    }

    async fn deliver_message(self: &Arc<Self>, rows: Vec<OutboxRow>) -> Result<(), NotifyError> {
        let Some(first) = rows.first() else {
            return Ok(());
        };
        let note: Notification = serde_json::from_str(&first.notification)
            .map_err(|e| NotifyError::Corrupt(format!("outbox notification: {e}")))?;
        let results =
            futures::future::join_all(rows.iter().map(|r| self.deliver_one(r, &note))).await;
        let push: Vec<bool> = rows
            .iter()
            .zip(&results)
            .filter(|(r, _)| r.channel != ChannelKind::Watch.as_str())
            .map(|(_, ok)| *ok)
            .collect();
        if note.purpose == Purpose::Alert.as_str() && !push.is_empty() && push.iter().all(|ok| !ok)
        {
            self.delivery_failed(&note).await?;
        }
        Ok(())
    }

    /// Delivers one message on one channel with retries, recording every
    /// attempt; true when delivered.
    async fn deliver_one(self: &Arc<Self>, row: &OutboxRow, note: &Notification) -> bool {
        let kind = match row.channel.as_str() {
            "sms" => ChannelKind::Sms,
            "webhook" => ChannelKind::Webhook,
            _ => ChannelKind::Watch,
        };
        let channel = self.channels.get(&kind).cloned();
        let mut attempt = 0;
        let (ok, status) = loop {
            attempt += 1;
            let started = std::time::Instant::now();
            let result = match &channel {
                Some(c) => c.deliver(note).await,
                None => Err(DeliveryError::Permanent("channel not configured".into())),
            };
            metrics::histogram!("dolbom_notify_delivery_seconds", "channel" => kind.as_str())
                .record(started.elapsed().as_secs_f64());
            let (result_s, detail, retry) = match &result {
                Ok(d) => ("delivered", d.clone(), false),
                Err(DeliveryError::Retryable(d)) => ("failed", d.clone(), true),
                Err(e) => ("failed", e.to_string(), false),
            };
            metrics::counter!("dolbom_notify_delivery_attempts_total", "channel" => kind.as_str(), "result" => result_s)
                .increment(1);
            let rec = Record::Escalation(EscalationEntry {
                incident_id: row.incident_id.clone(),
                entry_id: format!("{}/{}/try{attempt}", row.message_id, row.channel),
                municipality_code: row.municipality.clone(),
                at_ms: self.now().millis(),
                action: EscalationAction::DeliveryAttempt,
                policy_version: 0,
                step: note.step,
                attempt: note.attempt,
                tier: note.tier.clone(),
                channel: row.channel.clone(),
                message_id: row.message_id.clone(),
                result: result_s.into(),
                detail,
            });
            let _ = self.history.send(rec).await;
            if result.is_ok() {
                break (true, "delivered");
            }
            if !retry || attempt >= self.retry.attempts {
                tracing::warn!(incident_id = %row.incident_id, message_id = %row.message_id,
                    channel = %row.channel, attempt, "delivery failed");
                break (false, "failed");
            }
            tokio::time::sleep(self.retry.backoff(attempt)).await;
        };
        let (m, c) = (row.message_id.clone(), row.channel.clone());
        // Recorded by the finisher, many per transaction.
        let _ = self.finished.send(Finish::Done(m, c, status, attempt));
        ok
    }

    async fn delivery_failed(self: &Arc<Self>, note: &Notification) -> Result<(), NotifyError> {
        let (id, step, attempt) = (note.incident_id.clone(), note.step, note.attempt);
        self.write(move |core, tx, fx| {
            let Some(mut e) = store::escalation(tx, &id)? else {
                return Ok(());
            };
            let Some(row) = store::incident(tx, &id)? else {
                return Ok(());
            };
            let now = core.now();
            let policy = core.policy_for(tx, &row.view.municipality_code, e.policy_version);
            let actions = e.delivery_failed(step, attempt, &policy, &core.router, now);
            if !actions.is_empty() {
                core.carry_out(tx, &mut e, &row.view, actions, now, fx)?;
            }
            Ok(())
        })
        .await
    }

    /// Waits until no delivery is in flight (graceful drain; tests).
    pub async fn drain_deliveries(&self) {
        let n = self.max_in_flight as u32;
        if let Ok(all) = self.in_flight.acquire_many(n).await {
            drop(all);
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.finished.send(Finish::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Waits until every escalation, delivery and audit record queued so far
    /// is in the history store.
    pub async fn history_flush(&self) {
        if let Err(e) = self.history.flush().await {
            tracing::warn!(error = %e, "history flush failed");
        }
    }

    /// What the service holds: incidents, running escalations, queued and
    /// delivered messages.
    pub async fn counts(self: &Arc<Self>) -> Result<store::Counts, NotifyError> {
        self.read(|_, c| store::counts(c)).await
    }

    /// Applies retention (see [`store::sweep`]) against the service's clock.
    pub async fn sweep(self: &Arc<Self>) -> Result<store::Swept, NotifyError> {
        let now = self.now().millis();
        let (log, inc) = (
            now.saturating_sub(self.log_retention_ms),
            now.saturating_sub(self.incident_retention_ms),
        );
        let swept = self
            .write(move |_, tx, _| store::sweep(tx, log, inc))
            .await?;
        tracing::info!(?swept, "retention sweep");
        Ok(swept)
    }

    /// Whether the service can do its job: incident events arrive, its own
    /// events and registry changes reach the bus, and the history store
    /// (audit, escalation records) takes writes. The reason when not.
    pub fn health(&self) -> Result<(), &'static str> {
        use std::sync::atomic::Ordering::Relaxed;
        if !self.input_ok.load(Relaxed) {
            return Err("the incident input stopped");
        }
        if !self.publisher_ok.load(Relaxed) {
            return Err("publishing to the bus fails");
        }
        if !self.history.store_up() {
            return Err("the history store is down");
        }
        Ok(())
    }

    /// Marks the incident input (the Kafka consumer) as running or stopped.
    pub fn set_input_ok(&self, ok: bool) {
        self.input_ok
            .store(ok, std::sync::atomic::Ordering::Relaxed);
        self.health_changed.notify_waiters();
    }

    fn set_publisher_ok(&self, ok: bool) {
        let was = self
            .publisher_ok
            .swap(ok, std::sync::atomic::Ordering::Relaxed);
        if was != ok {
            self.health_changed.notify_one();
        }
    }

    /// Resolves when a readiness input changes (or never).
    pub async fn health_changed(&self) {
        self.health_changed.notified().await
    }

    /// Sets the `dolbom_notify_*` gauges from the store.
    pub async fn publish_gauges(self: &Arc<Self>) -> Result<(), NotifyError> {
        let c = self.counts().await?;
        metrics::gauge!("dolbom_notify_escalations_running").set(c.running_escalations as f64);
        metrics::gauge!("dolbom_notify_open_incidents").set(c.open_incidents as f64);
        metrics::gauge!("dolbom_notify_messages_pending").set(c.messages_pending as f64);
        Ok(())
    }

    /// One incident's escalation state (operators, tests).
    pub async fn escalation(self: &Arc<Self>, incident_id: &str) -> Option<Escalation> {
        let id = incident_id.to_string();
        self.read(move |_, c| store::escalation(c, &id))
            .await
            .ok()
            .flatten()
    }

    // ------------------------------------------------------ people's input

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
        self.write(move |core, tx, fx| {
            let mut row = core.visible_incident(tx, &who, &id)?;
            let v = &mut row.view;
            let resolved = v.state == pb::IncidentState::Resolved as i32;
            let now = core.now();
            let (ty, outcome, action) = match change {
                PersonChange::Acknowledge => {
                    if resolved {
                        return Err(NotifyError::Precondition("the incident is resolved".into()));
                    }
                    if v.state == pb::IncidentState::Acknowledged as i32 {
                        return Ok(v.clone());
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
                        return Ok(v.clone());
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
                    PersonChange::Resolve(_) => {
                        let policy = core.policy_for(tx, &view.municipality_code, e.policy_version);
                        e.stop(StopReason::Resolved, &policy, now)
                    }
                };
                core.carry_out(tx, &mut e, &view, actions, now, fx)?;
            }
            fx.records
                .push(core.audit_record(&who, &view.municipality_code, action, &id, now));
            Ok(view)
        })
        .await
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

    fn own_event(
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
            _ => "RESOLVED",
        };
        let ev = pb::IncidentEvent {
            event_id: format!("{}/{name}/{}", v.incident_id, v.stage),
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

    pub(crate) fn audit_record(
        &self,
        who: &Principal,
        municipality: &str,
        action: &str,
        subject: &str,
        now: Ts,
    ) -> Record {
        Record::Audit(AuditEntry {
            audit_id: format!("{}/{}/{}/{}", now.millis(), who.subject, action, subject),
            municipality_code: municipality.to_string(),
            at_ms: now.millis(),
            principal: who.subject.clone(),
            action: action.to_string(),
            subject: subject.to_string(),
            detail: String::new(),
        })
    }

    /// Writes an audit entry and waits until it is durable (used before
    /// personal data is returned).
    pub(crate) async fn audit_now(
        &self,
        who: &Principal,
        municipality: &str,
        action: &str,
        subject: &str,
    ) -> Result<(), NotifyError> {
        let r = self.audit_record(who, municipality, action, subject, self.now());
        self.history
            .send(r)
            .await
            .map_err(|_| NotifyError::Unavailable("audit log".into()))?;
        self.history
            .flush()
            .await
            .map_err(|_| NotifyError::Unavailable("audit log".into()))
    }

    // ----------------------------------------------------------- publishing

    /// Publishes registry changes and the service's own incident events that
    /// have not reached the bus yet. Returns how many went out.
    pub async fn publish_pending(self: &Arc<Self>) -> Result<usize, NotifyError> {
        let (households, events) = self
            .read(|_, c| {
                Ok((
                    store::unpublished_households(c, 500)?,
                    store::unpublished_events(c, 500)?,
                ))
            })
            .await?;
        let mut n = 0;
        for (id, cfg) in households {
            self.publisher.household(&id, cfg.as_ref()).await?;
            let version = cfg.as_ref().map(|c| c.version);
            self.write(move |_, tx, _| store::mark_household_published(tx, &id, version))
                .await?;
            n += 1;
        }
        for (seq, ev) in events {
            self.publisher.incident_event(&ev).await?;
            self.write(move |_, tx, _| store::mark_event_published(tx, seq))
                .await?;
            n += 1;
        }
        Ok(n)
    }

    /// Publishes registry changes and the service's own events whenever a
    /// change asks for it (and every 5 s to retry) until `shutdown`; the
    /// result feeds readiness and `dolbom_notify_publisher_up`.
    pub async fn run_publisher(self: Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        loop {
            match self.publish_pending().await {
                Ok(_) => {
                    metrics::gauge!("dolbom_notify_publisher_up").set(1.0);
                    self.set_publisher_ok(true);
                }
                Err(e) => {
                    metrics::gauge!("dolbom_notify_publisher_up").set(0.0);
                    self.set_publisher_ok(false);
                    tracing::warn!(error = %e, "publishing to the bus failed; will retry");
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.publish_wake.notified() => {}
                _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
            }
        }
    }

    /// Background loops until `shutdown`: escalation clocks every `tick`,
    /// publishing on change (and every 5 s to retry), gauges every minute,
    /// retention every `sweep_every`.
    pub async fn run_loops(
        self: Arc<Self>,
        tick: std::time::Duration,
        sweep_every: std::time::Duration,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        let me = self.clone();
        let stop = shutdown.clone();
        let housekeeping = tokio::spawn(async move {
            let mut gauges = tokio::time::interval(std::time::Duration::from_secs(60));
            let mut sweep = tokio::time::interval(sweep_every);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = gauges.tick() => {
                        if let Err(e) = me.publish_gauges().await {
                            tracing::warn!(error = %e, "gauges");
                        }
                    }
                    _ = sweep.tick() => {
                        if let Err(e) = me.sweep().await {
                            tracing::error!(error = %e, "retention sweep failed");
                        }
                    }
                }
            }
        });
        let publisher = tokio::spawn(self.clone().run_publisher(shutdown.clone()));
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = interval.tick() => {
                    if let Err(e) = self.tick().await {
                        tracing::error!(error = %e, "escalation tick failed");
                    }
                }
            }
        }
        let _ = publisher.await;
        let _ = housekeeping.await;
        // Last chance for what acknowledgements and resolutions produced.
        if let Err(e) = self.publish_pending().await {
            tracing::warn!(error = %e, "unpublished changes stay queued for the next start");
        }
    }
}
