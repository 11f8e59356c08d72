//! What every consumer checks of an incident event from the bus before it
//! takes it in (notify's ingest, the history ingest), so they agree on what
//! is malformed.

use crate::convert::kind_from_wire;
use dolbom_proto::v1 as pb;

/// Checks what every incident event must carry; the rest is optional. The
/// error names the wire field.
pub fn check_incident_event(ev: &pb::IncidentEvent) -> Result<(), &'static str> {
    if ev.event_id.is_empty() || ev.event_id.len() > 256 {
        return Err("event_id");
    }
    if ev.incident_id.is_empty() || ev.incident_id.len() > 200 {
        return Err("incident_id");
    }
    let Some(kind) = kind_from_wire(ev.kind) else {
        return Err("kind");
    };
    // A platform incident (a stalled partition) belongs to no municipality
    // and carries none; every other incident carries exactly one.
    let m = &ev.municipality_code;
    let platform = kind.is_platform() && m.is_empty();
    if !platform && (m.len() != 5 || !m.bytes().all(|b| b.is_ascii_digit())) {
        return Err("municipality_code");
    }
    match pb::IncidentEventType::try_from(ev.r#type) {
        Ok(pb::IncidentEventType::Unspecified) | Err(_) => Err("type"),
        Ok(_) => Ok(()),
    }
}
