//! What a standalone run reports: every incident it saw (printed as it
//! opens, escalates and recovers), counts, and the verdict of the town's
//! ground truth ([`dolbom_town::truth::check`], the same check the load
//! tests' scenarios use).

use dolbom_domain::convert::{
    event_type_from_wire, kind_from_wire, route_from_wire, stage_from_wire, ts,
};
use dolbom_domain::incident::{EventType, IncidentKind, Route, Stage};
use dolbom_proto::v1 as pb;
use dolbom_town::truth::{SeenEvent, Verdict};
use serde::Serialize;
use std::collections::BTreeMap;

/// What went into the embedded history store.
#[derive(Clone, Debug, Default, Serialize)]
pub struct HistorySummary {
    pub path: String,
    pub records_written: u64,
    /// Readings that arrived after their minute was aggregated (none in a
    /// simulation, which delivers in order).
    pub late_readings: u64,
}

/// What happened to one incident during the run.
#[derive(Clone, Debug, Serialize)]
pub struct IncidentRecord {
    pub incident_id: String,
    pub household_id: String,
    /// `INACTIVITY`, `DEVICE_OFFLINE`, `AREA_OUTAGE`, `PIPELINE_STALL`.
    pub kind: String,
    /// `ATTENTION`, `CAUTION`, `DANGER` (`NORMAL` for device and platform
    /// incidents).
    pub highest_stage: String,
    pub opened_due_at: String,
    pub first_route: String,
    /// `RECOVERED`, `SUPPRESSED` or empty while still open.
    pub closed: String,
}

/// The end-of-run report.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    pub households: usize,
    pub simulated_minutes: i64,
    pub readings: u64,
    pub readings_rejected: u64,
    pub readings_duplicate: u64,
    pub events: u64,
    /// Household events whose deterministic id was seen before (must be 0).
    pub duplicate_event_ids: u64,
    pub incidents: Vec<IncidentRecord>,
    /// Stage events (and device-offline openings) the ground truth says the
    /// scripted households must raise, each at its deadline.
    pub expected: usize,
    /// Of those, how many were raised exactly once with the right deadline.
    pub detected: usize,
    /// Required events not raised, raised twice, or off their deadline.
    pub missed: Vec<String>,
    /// Incidents nobody should have got: households that did nothing
    /// unusual, or were away on a registered absence.
    pub unexpected: Vec<String>,
    /// Events held for the dong office for lack of night/holiday consent.
    pub held_for_dong_office: u64,
    pub cancelled: bool,
    /// The ground truth's full verdict.
    pub ground_truth: Verdict,
    /// The embedded history store, when a data directory is set.
    pub history: Option<HistorySummary>,
    /// The notify gRPC API, when it ran.
    pub api: Option<crate::api::ApiSummary>,
}

fn stage_label(s: Stage) -> String {
    match s {
        Stage::Normal => "- NORMAL".into(),
        s => format!("{} {}", s.korean(), s.name()),
    }
}

/// Collects the run's incident events.
#[derive(Default)]
pub(crate) struct Recorder {
    print: bool,
    incidents: BTreeMap<String, IncidentRecord>,
    seen: Vec<SeenEvent>,
}

impl Recorder {
    /// `print`: print each event as it comes.
    pub(crate) fn new(print: bool) -> Self {
        Recorder {
            print,
            ..Default::default()
        }
    }

    /// Takes one published event into the summary (and prints it).
    pub(crate) fn record(&mut self, wire: &pb::IncidentEvent, summary: &mut Summary) {
        summary.events += 1;
        self.seen.push(SeenEvent::from_wire(wire, None, 0.0));
        let route = wire.route.as_ref().and_then(route_from_wire);
        if matches!(route, Some(Route::Held { .. })) {
            summary.held_for_dong_office += 1;
        }
        let route = route.map_or_else(|| "?".into(), |r| r.describe());
        let ty = event_type_from_wire(wire.r#type, wire.suppression_cause);
        let kind = kind_from_wire(wire.kind);
        let stage = stage_from_wire(wire.stage).unwrap_or(Stage::Normal);
        let due = wire.due_at.as_ref().map(ts).unwrap_or_default();
        let rec = self
            .incidents
            .entry(wire.incident_id.clone())
            .or_insert_with(|| IncidentRecord {
                incident_id: wire.incident_id.clone(),
                household_id: wire.household_id.clone(),
                kind: kind.map_or("?", IncidentKind::name).to_string(),
                highest_stage: String::new(),
                opened_due_at: due.to_string(),
                first_route: route.clone(),
                closed: String::new(),
            });
        rec.highest_stage = stage.name().to_string();
        if let Some(t) = ty.filter(|t| t.closes()) {
            rec.closed = t.name().to_string();
        }
        if self.print {
            let now = wire.emitted_at.as_ref().map(ts).unwrap_or_default();
            let quiet_since = wire
                .reason
                .as_ref()
                .and_then(|r| r.quiet_since.as_ref())
                .map(ts)
                .unwrap_or_default();
            let subject = if wire.area_id.is_empty() {
                String::new()
            } else {
                format!(" ({} households)", wire.affected_households)
            };
            println!(
                "{}  {:<12} {:<15} {:<15} {}{}  dong {}  → {}  (quiet since {}, due {})",
                now,
                ty.map_or("?", EventType::name),
                stage_label(stage),
                kind.map_or("?", IncidentKind::describe),
                wire.incident_id,
                subject,
                wire.dong_code,
                route,
                quiet_since,
                due,
            );
        }
    }

    /// The incidents seen, and every event for the ground-truth check.
    pub(crate) fn finish(self) -> (Vec<IncidentRecord>, Vec<SeenEvent>) {
        (self.incidents.into_values().collect(), self.seen)
    }
}

impl Summary {
    /// Takes the ground truth's verdict into the summary.
    pub(crate) fn judge(&mut self, v: Verdict) {
        self.expected = v.expected;
        self.detected = v.matched;
        self.missed = v
            .missed
            .iter()
            .chain(&v.duplicated)
            .chain(&v.wrong_due)
            .cloned()
            .collect();
        self.unexpected = v.false_incidents.clone();
        self.duplicate_event_ids = v.duplicate_event_ids as u64;
        self.ground_truth = v;
    }

    /// Whether the run matched its ground truth: nothing missed, nothing
    /// invented, no event emitted twice.
    pub fn passed(&self) -> bool {
        self.ground_truth.correct()
            && self.missed.is_empty()
            && self.unexpected.is_empty()
            && self.duplicate_event_ids == 0
    }

    /// A human-readable report.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut o = String::new();
        let by_kind =
            |k: IncidentKind| self.incidents.iter().filter(|r| r.kind == k.name()).count();
        let closed = |c: &str| self.incidents.iter().filter(|r| r.closed == c).count();
        let _ = writeln!(
            o,
            "── dolbom standalone summary ──────────────────────────────"
        );
        let _ = writeln!(
            o,
            "simulated      {} h {} min{} across {} households",
            self.simulated_minutes / 60,
            self.simulated_minutes % 60,
            if self.cancelled {
                " (stopped early)"
            } else {
                ""
            },
            self.households
        );
        let _ = writeln!(
            o,
            "readings       {} processed, {} rejected, {} duplicates",
            self.readings, self.readings_rejected, self.readings_duplicate
        );
        let _ = writeln!(
            o,
            "incidents      {} ({} inactivity, {} device offline); {} events, {} held for the dong office",
            self.incidents.len(),
            by_kind(IncidentKind::Inactivity),
            by_kind(IncidentKind::DeviceOffline),
            self.events,
            self.held_for_dong_office
        );
        if let Some(h) = &self.history {
            let _ = writeln!(
                o,
                "history        {} records written to {}",
                h.records_written, h.path
            );
        }
        if let Some(a) = &self.api {
            let _ = writeln!(
                o,
                "gRPC API       {} (tokens in {}): {} households, {} incidents ({} open), {} escalations running, {} messages delivered",
                a.endpoint,
                a.token_dir,
                a.counts.households,
                a.counts.incidents,
                a.counts.open_incidents,
                a.counts.running_escalations,
                a.counts.messages_delivered,
            );
        }
        for stage in Stage::WELFARE {
            let n = self
                .incidents
                .iter()
                .filter(|r| r.highest_stage == stage.name())
                .count();
            let _ = writeln!(o, "  reached {:<10} {n}", stage.name());
        }
        let _ = writeln!(
            o,
            "  recovered {}, suppressed {}, still open {}",
            closed("RECOVERED"),
            closed("SUPPRESSED"),
            self.incidents
                .iter()
                .filter(|r| r.closed.is_empty())
                .count()
        );
        let _ = writeln!(
            o,
            "ground truth   {}/{} expected stage events raised once at their deadline, {} missed, {} unexpected, {} duplicate event ids ({} not judged: within 2 minutes of the end or of a recovery)",
            self.detected,
            self.expected,
            self.missed.len(),
            self.unexpected.len(),
            self.duplicate_event_ids,
            self.ground_truth.not_judged,
        );
        for m in &self.missed {
            let _ = writeln!(o, "  MISSED     {m}");
        }
        for u in &self.unexpected {
            let _ = writeln!(o, "  UNEXPECTED {u}");
        }
        let _ = writeln!(
            o,
            "result         {}",
            if self.passed() { "OK" } else { "FAILED" }
        );
        o
    }
}
