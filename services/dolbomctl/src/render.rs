//! Tables for people, JSON for programs.

use crate::Output;
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use dolbom_domain::convert::{explanation, ts};
use dolbom_proto::prost_types::Timestamp;
use dolbom_proto::v1 as pb;
use serde_json::{json, Value};

/// Asia/Seoul local time, or empty.
fn time(t: &Option<Timestamp>) -> String {
    t.as_ref()
        .map(|t| ts(t).to_kst().format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_default()
}

fn rfc3339(t: &Option<Timestamp>) -> Value {
    t.as_ref()
        .map(|t| Value::String(ts(t).to_utc().to_rfc3339()))
        .unwrap_or(Value::Null)
}

fn name(v: Result<&'static str, prost::UnknownEnumValue>, prefix: &str) -> String {
    match v {
        Ok(n) => n.strip_prefix(prefix).unwrap_or(n).to_string(),
        Err(e) => format!("UNKNOWN({})", e.0),
    }
}

fn stage(s: i32) -> String {
    name(pb::Stage::try_from(s).map(|e| e.as_str_name()), "STAGE_")
}
fn state(s: i32) -> String {
    name(
        pb::IncidentState::try_from(s).map(|e| e.as_str_name()),
        "INCIDENT_STATE_",
    )
}
fn kind(k: i32) -> String {
    name(
        pb::IncidentKind::try_from(k).map(|e| e.as_str_name()),
        "INCIDENT_KIND_",
    )
}
fn outcome(o: i32) -> String {
    name(
        pb::Outcome::try_from(o).map(|e| e.as_str_name()),
        "OUTCOME_",
    )
}
fn event_type(t: i32) -> String {
    name(
        pb::IncidentEventType::try_from(t).map(|e| e.as_str_name()),
        "INCIDENT_EVENT_TYPE_",
    )
}

fn incident_json(i: &pb::Incident) -> Value {
    json!({
        "incident_id": i.incident_id,
        "household_id": i.household_id,
        "municipality_code": i.municipality_code,
        "dong_code": i.dong_code,
        "kind": kind(i.kind),
        "stage": stage(i.stage),
        "state": state(i.state),
        "opened_at": rfc3339(&i.opened_at),
        "updated_at": rfc3339(&i.updated_at),
        "acknowledged_at": rfc3339(&i.acknowledged_at),
        "acknowledged_by": i.acknowledged_by,
        "resolved_at": rfc3339(&i.resolved_at),
        "resolved_by": i.resolved_by,
        "outcome": outcome(i.outcome),
        "outcome_note": i.outcome_note,
        "reason": i.reason.as_ref().map(|r| json!({
            "code": name(
                pb::ReasonCode::try_from(r.code).map(|e| e.as_str_name()),
                "REASON_CODE_"
            ),
            "quiet_since": rfc3339(&r.quiet_since),
            "threshold_minutes": r.threshold_minutes,
            "explanation": explanation(r),
        })),
    })
}

pub fn incidents(list: &[pb::Incident], out: Output) {
    if out == Output::Json {
        let v: Vec<Value> = list.iter().map(incident_json).collect();
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
        return;
    }
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_header(vec![
        "incident",
        "household",
        "dong",
        "kind",
        "stage",
        "state",
        "opened (KST)",
        "outcome",
    ]);
    for i in list {
        t.add_row(vec![
            i.incident_id.clone(),
            i.household_id.clone(),
            i.dong_code.clone(),
            kind(i.kind),
            stage(i.stage),
            state(i.state),
            time(&i.opened_at),
            if i.outcome == 0 {
                String::new()
            } else {
                outcome(i.outcome)
            },
        ]);
    }
    println!("{t}");
    println!("{} incident(s)", list.len());
}

pub fn watch_line(e: &pb::IncidentEvent, cursor: &str, out: Output, header: bool) {
    if out == Output::Json {
        let v = json!({
            "cursor": cursor,
            "event_id": e.event_id,
            "incident_id": e.incident_id,
            "household_id": e.household_id,
            "municipality_code": e.municipality_code,
            "dong_code": e.dong_code,
            "kind": kind(e.kind),
            "type": event_type(e.r#type),
            "stage": stage(e.stage),
            "due_at": rfc3339(&e.due_at),
            "outcome": outcome(e.outcome),
        });
        println!("{v}");
        return;
    }
    if header {
        println!(
            "{:<16} {:<22} {:<10} {:<14} {:<10} incident",
            "time (KST)", "type", "stage", "household", "cursor"
        );
    }
    println!(
        "{:<16} {:<22} {:<10} {:<14} {:<10} {}",
        time(&e.due_at),
        event_type(e.r#type),
        stage(e.stage),
        e.household_id,
        cursor,
        e.incident_id
    );
}

pub fn households(list: &[pb::Household], out: Output) {
    if out == Output::Json {
        let v: Vec<Value> = list
            .iter()
            .map(|h| {
                let c = h.config.clone().unwrap_or_default();
                json!({
                    "household_id": c.household_id,
                    "municipality_code": c.municipality_code,
                    "dong_code": c.dong_code,
                    "device_ids": c.device_ids,
                    "night_holiday_consent": c.night_holiday_consent,
                    "version": c.version,
                    "absences": c.absences.len(),
                    "created_at": rfc3339(&h.created_at),
                    "updated_at": rfc3339(&h.updated_at),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
        return;
    }
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_header(vec![
        "household",
        "dong",
        "plugs",
        "consent",
        "version",
        "updated (KST)",
    ]);
    for h in list {
        let c = h.config.clone().unwrap_or_default();
        t.add_row(vec![
            c.household_id,
            c.dong_code,
            c.device_ids.join(","),
            if c.night_holiday_consent { "yes" } else { "no" }.into(),
            c.version.to_string(),
            time(&h.updated_at),
        ]);
    }
    println!("{t}");
    println!("{} household(s)", list.len());
}

pub fn stats(months: &[pb::MonthStatistics], out: Output) {
    if out == Output::Json {
        let v: Vec<Value> = months
            .iter()
            .map(|m| {
                json!({
                    "month": m.month,
                    "municipality_code": m.municipality_code,
                    "dong_code": m.dong_code,
                    "incidents": m.incidents,
                    "by_stage": m.by_stage.iter().map(|s| (stage(s.stage), Value::from(s.count))).collect::<serde_json::Map<_, _>>(),
                    "by_outcome": m.by_outcome.iter().map(|o| (outcome(o.outcome), Value::from(o.count))).collect::<serde_json::Map<_, _>>(),
                    "ack_seconds_p50": m.ack_seconds_p50,
                    "ack_seconds_p90": m.ack_seconds_p90,
                    "resolve_seconds_p50": m.resolve_seconds_p50,
                    "resolve_seconds_p90": m.resolve_seconds_p90,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
        return;
    }
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_header(vec![
        "month",
        "incidents",
        "by stage",
        "by outcome",
        "ack p50/p90 (min)",
        "resolve p50/p90 (min)",
    ]);
    for m in months {
        let by_stage = m
            .by_stage
            .iter()
            .map(|s| format!("{} {}", stage(s.stage), s.count))
            .collect::<Vec<_>>()
            .join(", ");
        let by_outcome = m
            .by_outcome
            .iter()
            .map(|o| format!("{} {}", outcome(o.outcome), o.count))
            .collect::<Vec<_>>()
            .join(", ");
        t.add_row(vec![
            m.month.clone(),
            m.incidents.to_string(),
            by_stage,
            by_outcome,
            format!(
                "{:.0}/{:.0}",
                m.ack_seconds_p50 / 60.0,
                m.ack_seconds_p90 / 60.0
            ),
            format!(
                "{:.0}/{:.0}",
                m.resolve_seconds_p50 / 60.0,
                m.resolve_seconds_p90 / 60.0
            ),
        ]);
    }
    println!("{t}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_names_match_the_proto() {
        assert_eq!(stage(pb::Stage::Attention as i32), "ATTENTION");
        assert_eq!(
            kind(pb::IncidentKind::DeviceOffline as i32),
            "DEVICE_OFFLINE"
        );
        assert_eq!(outcome(pb::Outcome::VisitedSafe as i32), "VISITED_SAFE");
        assert_eq!(state(99), "UNKNOWN(99)");
    }
}
