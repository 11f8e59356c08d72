//! What the history keeps: the records written to a [`crate::store::HistoryStore`]
//! and the shapes its queries return.
//!
//! Nothing here holds personal data. Households are pseudonymous ids; audit
//! entries name the principal and the subject (a household id), never a name,
//! phone number or address; escalation entries name a tier and a channel, never
//! a recipient's number.

use dolbom_proto::v1::{IncidentEvent, IncidentEventType, Stage, SuppressionCause};
use serde::{Deserialize, Serialize};

pub const MINUTE_MS: i64 = 60_000;
pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 86_400_000;

/// Downsampling resolution of reading aggregates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Resolution {
    Minute,
    Hour,
}

impl Resolution {
    pub fn bucket_ms(self) -> i64 {
        match self {
            Resolution::Minute => MINUTE_MS,
            Resolution::Hour => HOUR_MS,
        }
    }

    pub fn bucket_start(self, at_ms: i64) -> i64 {
        at_ms.div_euclid(self.bucket_ms()) * self.bucket_ms()
    }
}

/// Count, minimum, maximum and sum of one measured signal in a bucket.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub count: u32,
    pub min: f64,
    pub max: f64,
    pub sum: f64,
}

impl Summary {
    pub fn of(value: f64) -> Self {
        Self {
            count: 1,
            min: value,
            max: value,
            sum: value,
        }
    }

    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum / self.count as f64
        }
    }

    pub fn add(&mut self, value: f64) {
        self.merge(&Summary::of(value));
    }

    pub fn merge(&mut self, other: &Summary) {
        self.count += other.count;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum += other.sum;
    }

    /// Merges two optional summaries.
    pub fn merge_opt(into: &mut Option<Summary>, other: &Option<Summary>) {
        match (into.as_mut(), other) {
            (Some(a), Some(b)) => a.merge(b),
            (None, Some(b)) => *into = Some(*b),
            _ => {}
        }
    }
}

/// Downsampled readings of one household in one minute or hour.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Aggregate {
    pub household_id: String,
    pub resolution: Resolution,
    /// Start of the bucket, ms since the epoch (a multiple of the bucket).
    pub bucket_start_ms: i64,
    /// Readings in the bucket.
    pub readings: u32,
    pub watts: Option<Summary>,
    pub lux: Option<Summary>,
}

impl Aggregate {
    /// Rolls minute aggregates of one household and hour up into the hour's
    /// aggregate. `None` when there are none.
    pub fn roll_up(household_id: &str, hour_start_ms: i64, minutes: &[Aggregate]) -> Option<Self> {
        let mut hour: Option<Aggregate> = None;
        for m in minutes {
            debug_assert_eq!(
                Resolution::Hour.bucket_start(m.bucket_start_ms),
                hour_start_ms
            );
            let h = hour.get_or_insert_with(|| Aggregate {
                household_id: household_id.to_string(),
                resolution: Resolution::Hour,
                bucket_start_ms: hour_start_ms,
                readings: 0,
                watts: None,
                lux: None,
            });
            h.readings += m.readings;
            Summary::merge_opt(&mut h.watts, &m.watts);
            Summary::merge_opt(&mut h.lux, &m.lux);
        }
        hour
    }
}

/// An hour of one household whose minute aggregates are complete: the store
/// (re)computes its hour aggregate from the stored minutes, so the roll-up is
/// idempotent and survives a restart of whoever downsampled.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HourKey {
    pub household_id: String,
    pub hour_start_ms: i64,
}

/// The state a household's timeline moves through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StateKind {
    Normal,
    Attention,
    Caution,
    Danger,
    /// No readings at all (device fault).
    Offline,
    /// Monitoring suspended: an absence, or an area incident took over.
    Suppressed,
}

impl StateKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StateKind::Normal => "NORMAL",
            StateKind::Attention => "ATTENTION",
            StateKind::Caution => "CAUTION",
            StateKind::Danger => "DANGER",
            StateKind::Offline => "OFFLINE",
            StateKind::Suppressed => "SUPPRESSED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "NORMAL" => StateKind::Normal,
            "ATTENTION" => StateKind::Attention,
            "CAUTION" => StateKind::Caution,
            "DANGER" => StateKind::Danger,
            "OFFLINE" => StateKind::Offline,
            "SUPPRESSED" => StateKind::Suppressed,
            _ => return None,
        })
    }
}

/// One change of a household's state, with why (an incident id, an absence).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateChange {
    pub household_id: String,
    pub at_ms: i64,
    pub state: StateKind,
    /// What caused it: the incident id, or e.g. `absence`.
    pub cause: String,
}

impl StateChange {
    /// The state change an incident event implies for its household, if any
    /// (area and pipeline incidents have no single household).
    pub fn from_incident_event(e: &IncidentEvent) -> Option<Self> {
        if e.household_id.is_empty() {
            return None;
        }
        let stage = |s: i32| match Stage::try_from(s).unwrap_or(Stage::Unspecified) {
            Stage::Attention => StateKind::Attention,
            Stage::Caution => StateKind::Caution,
            Stage::Danger => StateKind::Danger,
            Stage::Normal | Stage::Unspecified => StateKind::Offline,
        };
        let state = match IncidentEventType::try_from(e.r#type).ok()? {
            IncidentEventType::Opened | IncidentEventType::StageRaised => stage(e.stage),
            IncidentEventType::Recovered => StateKind::Normal,
            IncidentEventType::Suppressed => {
                match SuppressionCause::try_from(e.suppression_cause) {
                    Ok(SuppressionCause::Absence)
                    | Ok(SuppressionCause::AreaOutage)
                    | Ok(SuppressionCause::PipelineStall) => StateKind::Suppressed,
                    _ => StateKind::Suppressed,
                }
            }
            _ => return None,
        };
        Some(StateChange {
            household_id: e.household_id.clone(),
            at_ms: event_time_ms(e),
            state,
            cause: e.incident_id.clone(),
        })
    }
}

/// When an incident event applies: its `due_at`, else its `emitted_at`.
/// Incident events are ordered and partitioned by this time.
pub fn event_time_ms(e: &IncidentEvent) -> i64 {
    e.due_at
        .as_ref()
        .or(e.emitted_at.as_ref())
        .map(|t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000)
        .unwrap_or(0)
}

/// What an escalation entry records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EscalationAction {
    /// A policy step began: a tier is to be notified.
    StepStarted,
    /// One delivery attempt over a channel.
    DeliveryAttempt,
    /// The step's wait ran out; the next step (or a repeat) follows.
    Escalated,
    /// Someone acknowledged: the clock stopped.
    Acknowledged,
    /// The incident resolved or recovered: escalation ended.
    Stopped,
    /// Routing held the step until the dong office's next opening.
    Held,
}

impl EscalationAction {
    pub fn as_str(self) -> &'static str {
        match self {
            EscalationAction::StepStarted => "STEP_STARTED",
            EscalationAction::DeliveryAttempt => "DELIVERY_ATTEMPT",
            EscalationAction::Escalated => "ESCALATED",
            EscalationAction::Acknowledged => "ACKNOWLEDGED",
            EscalationAction::Stopped => "STOPPED",
            EscalationAction::Held => "HELD",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "STEP_STARTED" => EscalationAction::StepStarted,
            "DELIVERY_ATTEMPT" => EscalationAction::DeliveryAttempt,
            "ESCALATED" => EscalationAction::Escalated,
            "ACKNOWLEDGED" => EscalationAction::Acknowledged,
            "STOPPED" => EscalationAction::Stopped,
            "HELD" => EscalationAction::Held,
            _ => return None,
        })
    }
}

/// One escalation step or delivery attempt of an incident.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscalationEntry {
    pub incident_id: String,
    /// Deterministic and unique within the incident (e.g. `s2/a1/sms`), so a
    /// retried write replaces itself instead of adding a second row.
    pub entry_id: String,
    pub municipality_code: String,
    pub at_ms: i64,
    pub action: EscalationAction,
    pub policy_version: u32,
    pub step: u32,
    pub attempt: u32,
    /// `DONG_OFFICE`, `CONTROL_CENTER`, `EMERGENCY`.
    pub tier: String,
    /// `sms`, `webhook`, `watch`.
    pub channel: String,
    /// The idempotency key sent with the message.
    pub message_id: String,
    /// `sent`, `delivered`, `failed`, … (free of personal data).
    pub result: String,
    pub detail: String,
}

/// One entry of the audit trail: who read or changed what.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Unique id chosen by the writer, so retries are idempotent.
    pub audit_id: String,
    pub municipality_code: String,
    pub at_ms: i64,
    /// The authenticated caller (certificate subject or token subject).
    pub principal: String,
    /// e.g. `registry.GetHousehold`.
    pub action: String,
    /// What it touched: a household or incident id.
    pub subject: String,
    pub detail: String,
}

/// Everything one write carries. Writes are idempotent: every record has a
/// natural key, and writing it again replaces it with the same values.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WriteBatch {
    pub aggregates: Vec<Aggregate>,
    pub roll_up_hours: Vec<HourKey>,
    pub incident_events: Vec<IncidentEvent>,
    pub state_changes: Vec<StateChange>,
    pub escalation: Vec<EscalationEntry>,
    pub audit: Vec<AuditEntry>,
}

impl WriteBatch {
    pub fn len(&self) -> usize {
        self.aggregates.len()
            + self.roll_up_hours.len()
            + self.incident_events.len()
            + self.state_changes.len()
            + self.escalation.len()
            + self.audit.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn push(&mut self, record: Record) {
        match record {
            Record::Aggregate(a) => self.aggregates.push(a),
            Record::RollUpHour(h) => self.roll_up_hours.push(h),
            Record::IncidentEvent(e) => self.incident_events.push(*e),
            Record::StateChange(s) => self.state_changes.push(s),
            Record::Escalation(e) => self.escalation.push(e),
            Record::Audit(a) => self.audit.push(a),
        }
    }
}

/// One record of any kind, as queued by [`crate::HistoryWriter`].
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    Aggregate(Aggregate),
    RollUpHour(HourKey),
    IncidentEvent(Box<IncidentEvent>),
    StateChange(StateChange),
    Escalation(EscalationEntry),
    Audit(AuditEntry),
}

impl Record {
    /// The metric label of the record's kind.
    /// Every [`Record::kind`].
    pub const KINDS: [&'static str; 6] = [
        "aggregate",
        "roll_up_hour",
        "incident_event",
        "state_change",
        "escalation",
        "audit",
    ];

    pub fn kind(&self) -> &'static str {
        match self {
            Record::Aggregate(_) => "aggregate",
            Record::RollUpHour(_) => "roll_up_hour",
            Record::IncidentEvent(_) => "incident_event",
            Record::StateChange(_) => "state_change",
            Record::Escalation(_) => "escalation",
            Record::Audit(_) => "audit",
        }
    }
}

/// A household's history over a time range.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Timeline {
    pub aggregates: Vec<Aggregate>,
    pub state_changes: Vec<StateChange>,
    pub incident_events: Vec<IncidentEvent>,
}

/// Which incident events to list. Times are event times ([`event_time_ms`]),
/// `from_ms` inclusive, `to_ms` exclusive.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IncidentQuery {
    /// Required: incidents are partitioned by municipality.
    pub municipality_code: String,
    pub dong_code: Option<String>,
    pub household_id: Option<String>,
    /// `dolbom.v1.IncidentKind` as i32.
    pub kind: Option<i32>,
    pub from_ms: i64,
    pub to_ms: i64,
    /// At most this many events (1..=1000; 0 means 100).
    pub limit: u32,
    /// From a previous page's `next_page_token`.
    pub page_token: Option<String>,
}

/// The longest time range one incident query may cover.
pub const MAX_QUERY_RANGE_MS: i64 = 400 * DAY_MS;

impl IncidentQuery {
    pub fn effective_limit(&self) -> usize {
        match self.limit {
            0 => 100,
            n => n.min(1000) as usize,
        }
    }

    /// The query's start position: `(at_ms, event_id)` strictly after which
    /// events are returned, or the inclusive `from_ms`.
    pub fn start(&self) -> Result<(i64, Option<String>), crate::error::HistoryError> {
        match &self.page_token {
            None => Ok((self.from_ms, None)),
            Some(t) => {
                let (at, id) = t
                    .split_once(':')
                    .ok_or_else(|| crate::error::HistoryError::Invalid("page_token".into()))?;
                let at: i64 = at
                    .parse()
                    .map_err(|_| crate::error::HistoryError::Invalid("page_token".into()))?;
                Ok((at, Some(id.to_string())))
            }
        }
    }

    pub fn matches(&self, e: &IncidentEvent) -> bool {
        self.dong_code.as_ref().is_none_or(|d| &e.dong_code == d)
            && self
                .household_id
                .as_ref()
                .is_none_or(|h| &e.household_id == h)
            && self.kind.is_none_or(|k| e.kind == k)
    }

    pub fn validate(&self) -> Result<(), crate::error::HistoryError> {
        if self.municipality_code.is_empty() {
            return Err(crate::error::HistoryError::Invalid(
                "municipality_code".into(),
            ));
        }
        validate_range(self.from_ms, self.to_ms)?;
        self.start().map(|_| ())
    }
}

/// Every time-range query (`[from_ms, to_ms)`) must end after it starts and
/// span at most [`MAX_QUERY_RANGE_MS`]; both stores check it the same way.
pub fn validate_range(from_ms: i64, to_ms: i64) -> Result<(), crate::error::HistoryError> {
    if to_ms <= from_ms || to_ms - from_ms > MAX_QUERY_RANGE_MS {
        return Err(crate::error::HistoryError::Invalid(
            "time range (to must be after from, at most 400 days)".into(),
        ));
    }
    Ok(())
}

/// One page of incident events, ordered by (event time, event id).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IncidentPage {
    pub events: Vec<IncidentEvent>,
    /// Pass back as `page_token` for the next page; `None` at the end.
    pub next_page_token: Option<String>,
}

pub fn page_token(e: &IncidentEvent) -> String {
    format!("{}:{}", event_time_ms(e), e.event_id)
}

/// How long each kind of history is kept, in days.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Retention {
    pub minute_days: u32,
    pub hour_days: u32,
    pub incident_days: u32,
    pub escalation_days: u32,
    pub audit_days: u32,
    pub state_days: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            minute_days: 14,
            hour_days: 400,
            incident_days: 5 * 366,
            escalation_days: 5 * 366,
            audit_days: 5 * 366,
            state_days: 2 * 366,
        }
    }
}

impl Retention {
    pub fn validate(&self) -> Result<(), crate::error::HistoryError> {
        for (name, v) in [
            ("retention.minute_days", self.minute_days),
            ("retention.hour_days", self.hour_days),
            ("retention.incident_days", self.incident_days),
            ("retention.escalation_days", self.escalation_days),
            ("retention.audit_days", self.audit_days),
            ("retention.state_days", self.state_days),
        ] {
            // ScyllaDB's TTL limit is 20 years.
            if v == 0 || v > 20 * 365 {
                return Err(crate::error::HistoryError::Invalid(format!(
                    "{name} must be between 1 and 7300 days"
                )));
            }
        }
        Ok(())
    }

    pub fn aggregates_ms(&self, r: Resolution) -> i64 {
        match r {
            Resolution::Minute => i64::from(self.minute_days) * DAY_MS,
            Resolution::Hour => i64::from(self.hour_days) * DAY_MS,
        }
    }

    pub fn days_ms(days: u32) -> i64 {
        i64::from(days) * DAY_MS
    }
}

/// What retention removed (the embedded store deletes; ScyllaDB expires rows
/// by TTL and reports nothing).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub deleted_rows: u64,
}
