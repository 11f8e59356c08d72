//! The notify service's Prometheus metrics: every name once, with its unit
//! and help text ([`describe`] registers them with the installed recorder).
//! Labels are bounded (channel, tier, purpose, cause, field, operation);
//! never a household or incident id.

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

pub const EVENTS: &str = "dolbom_notify_events_total";
pub const DUPLICATE_EVENTS: &str = "dolbom_notify_duplicate_events_total";
pub const REJECTED_EVENTS: &str = "dolbom_notify_rejected_events_total";
pub const MESSAGES: &str = "dolbom_notify_messages_total";
pub const HELD: &str = "dolbom_notify_held_total";
pub const ESCALATED: &str = "dolbom_notify_escalated_total";
pub const EXHAUSTED: &str = "dolbom_notify_exhausted_total";
pub const UNREACHABLE: &str = "dolbom_notify_unreachable_total";
pub const REOPENED: &str = "dolbom_notify_reopened_total";
pub const HISTORY_OUTBOX: &str = "dolbom_notify_history_outbox";
pub const READY: &str = "dolbom_notify_ready";
pub const DELIVERY_SECONDS: &str = "dolbom_notify_delivery_seconds";
pub const DELIVERY_ATTEMPTS: &str = "dolbom_notify_delivery_attempts_total";
pub const ESCALATIONS_RUNNING: &str = "dolbom_notify_escalations_running";
pub const OPEN_INCIDENTS: &str = "dolbom_notify_open_incidents";
pub const MESSAGES_PENDING: &str = "dolbom_notify_messages_pending";
pub const PUBLISHER_UP: &str = "dolbom_notify_publisher_up";
pub const AUTH_FAILURES: &str = "dolbom_notify_auth_failures_total";
pub const WATCHERS: &str = "dolbom_notify_watchers";
pub const WATCH_REFUSED: &str = "dolbom_notify_watch_streams_refused_total";
pub const WATCH_TOKEN_ENDED: &str = "dolbom_notify_watch_streams_ended_by_token_total";
pub const REVOKED_TOKENS: &str = "dolbom_notify_revoked_tokens";
pub const REVOCATION_RELOAD_FAILURES: &str = "dolbom_notify_revocation_reload_failures_total";
pub const REGISTRY_CHANGES: &str = "dolbom_notify_registry_changes_total";
pub const HELD_INCIDENTS: &str = "dolbom_notify_held_incidents";
pub const LONGEST_HELD_SECONDS: &str = "dolbom_notify_longest_held_seconds";
pub const ACKNOWLEDGE_SECONDS: &str = "dolbom_notify_acknowledge_seconds";

/// Describes this crate's metrics (call once the exporter is installed).
pub fn describe() {
    describe_counter!(
        EVENTS,
        Unit::Count,
        "Incident events taken in (new event ids only)"
    );
    describe_counter!(
        DUPLICATE_EVENTS,
        Unit::Count,
        "Incident events already seen (same event id), ignored"
    );
    describe_counter!(
        REJECTED_EVENTS,
        Unit::Count,
        "Malformed incident events skipped (by the field that was wrong)"
    );
    describe_counter!(
        MESSAGES,
        Unit::Count,
        "Messages an escalation asked to send (by tier and purpose)"
    );
    describe_counter!(
        HELD,
        Unit::Count,
        "Escalation steps held for the dong office's next opening (no night/holiday consent)"
    );
    describe_counter!(
        ESCALATED,
        Unit::Count,
        "Escalations to the next tier (by cause: timeout, delivery failure)"
    );
    describe_counter!(
        EXHAUSTED,
        Unit::Count,
        "Escalation policies that ran out without an acknowledgement"
    );
    describe_histogram!(
        DELIVERY_SECONDS,
        Unit::Seconds,
        "Time of one delivery attempt (by channel)"
    );
    describe_counter!(
        DELIVERY_ATTEMPTS,
        Unit::Count,
        "Delivery attempts (by channel and result)"
    );
    describe_gauge!(
        ESCALATIONS_RUNNING,
        Unit::Count,
        "Escalations whose clock is running"
    );
    describe_gauge!(OPEN_INCIDENTS, Unit::Count, "Incidents not yet resolved");
    describe_gauge!(
        MESSAGES_PENDING,
        Unit::Count,
        "Messages queued for delivery (one per channel)"
    );
    describe_gauge!(
        PUBLISHER_UP,
        Unit::Count,
        "1 while registry changes and the service's own events reach the bus"
    );
    describe_counter!(
        AUTH_FAILURES,
        Unit::Count,
        "gRPC calls refused for a missing or invalid bearer token"
    );
    describe_gauge!(WATCHERS, Unit::Count, "Open WatchIncidents streams");
    describe_counter!(
        WATCH_REFUSED,
        Unit::Count,
        "WatchIncidents calls refused (RESOURCE_EXHAUSTED): the token had the most streams allowed open"
    );
    describe_counter!(
        WATCH_TOKEN_ENDED,
        Unit::Count,
        "Watch streams ended because their token expired or was revoked"
    );
    describe_gauge!(
        REVOKED_TOKENS,
        Unit::Count,
        "Entries (token ids and subjects) in the revocation list in force"
    );
    describe_counter!(
        REVOCATION_RELOAD_FAILURES,
        Unit::Count,
        "Revocation file reloads that failed (the previous list stays in force)"
    );
    describe_counter!(
        REGISTRY_CHANGES,
        Unit::Count,
        "Registry changes (by operation)"
    );
    describe_counter!(
        UNREACHABLE,
        Unit::Count,
        "Rounds in which an escalation's last step reached nobody (SRE paged on the first; the step is retried with backoff)"
    );
    describe_counter!(
        REOPENED,
        Unit::Count,
        "Resolved incidents opened again because the home stayed quiet or the stage rose (by cause)"
    );
    describe_gauge!(
        HISTORY_OUTBOX,
        Unit::Count,
        "Escalation, delivery and audit records waiting for the history store (grows while it is down)"
    );
    describe_gauge!(
        HELD_INCIDENTS,
        Unit::Count,
        "Incidents whose escalation step is held for the dong office's next opening"
    );
    describe_gauge!(
        LONGEST_HELD_SECONDS,
        Unit::Seconds,
        "How long the longest-held incident has been held (0 when none is)"
    );
    describe_histogram!(
        ACKNOWLEDGE_SECONDS,
        Unit::Seconds,
        "Time from an incident's opening to its acknowledgement by a person"
    );
    describe_gauge!(
        READY,
        Unit::Count,
        "1 while gRPC health says SERVING (incident input running, publishing to the bus works, not shutting down)"
    );
    // Counters without labels start at zero, so that a rate over the
    // first increment is seen and an alert's series exists from the start.
    for name in [
        AUTH_FAILURES,
        DUPLICATE_EVENTS,
        EVENTS,
        EXHAUSTED,
        HELD,
        REVOCATION_RELOAD_FAILURES,
        UNREACHABLE,
        WATCH_TOKEN_ENDED,
        WATCH_REFUSED,
    ] {
        metrics::counter!(name).increment(0);
    }
    // Bounded label sets start at zero too; no stream is open at start.
    for cause in dolbom_escalation::EscalationCause::ALL {
        metrics::counter!(ESCALATED, "cause" => cause.as_str()).increment(0);
    }
    for cause in dolbom_escalation::ReopenCause::ALL {
        metrics::counter!(REOPENED, "cause" => cause.as_str()).increment(0);
    }
    metrics::gauge!(WATCHERS).set(0.0);
}
