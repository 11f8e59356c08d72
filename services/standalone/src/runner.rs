//! The standalone run loop: town → engine → router → printed incident events.

use crate::options::StandaloneOptions;
use dolbom_calendar::{CalendarError, HolidayCalendar, OfficeHours, Router};
use dolbom_domain::convert;
use dolbom_domain::incident::{EventType, IncidentKind, Route, Stage};
use dolbom_domain::{HouseholdId, Ts, MINUTE_MS};
use dolbom_engine::{Effect, HouseholdState, ReadingOutcome};
use dolbom_proto::v1 as pb;
use dolbom_town::{Scripted, Town, TownReading, TownSpec};
use serde::Serialize;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashSet};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum StandaloneError {
    #[error(transparent)]
    Calendar(#[from] CalendarError),
}

/// What happened to one incident during the run.
#[derive(Clone, Debug, Serialize)]
pub struct IncidentRecord {
    pub incident_id: String,
    pub household_id: String,
    pub kind: String,
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
    /// Events whose deterministic id was seen before (must be 0).
    pub duplicate_event_ids: u64,
    pub incidents: Vec<IncidentRecord>,
    /// Scripted households the ground truth says must have raised an incident.
    pub expected: usize,
    /// Of those, how many did.
    pub detected: usize,
    pub missed: Vec<String>,
    /// Incidents on households that did nothing unusual (false alarms), and
    /// incidents raised during a registered absence.
    pub unexpected: Vec<String>,
    /// Events held for the dong office for lack of night/holiday consent.
    pub held_for_dong_office: u64,
    pub cancelled: bool,
}

fn route_name(r: &Route) -> String {
    match r {
        Route::DongOffice => "dong office".into(),
        Route::ControlCenter => "control center".into(),
        Route::Held { until } => format!("held until {until}"),
        Route::Maintenance => "maintenance".into(),
        Route::Sre => "SRE".into(),
    }
}

fn stage_label(s: Stage) -> &'static str {
    match s {
        Stage::Normal => "- NORMAL",
        Stage::Attention => "관심 ATTENTION",
        Stage::Caution => "주의 CAUTION",
        Stage::Danger => "위험 DANGER",
    }
}

/// Runs the simulated town until `sim_hours` have passed or `shutdown` fires.
pub async fn run(
    opts: &StandaloneOptions,
    shutdown: CancellationToken,
) -> Result<Summary, StandaloneError> {
    let start = Ts::parse_rfc3339(&opts.start).expect("validated");
    let duration_ms = opts.sim_hours as i64 * 60 * MINUTE_MS;
    let spec = TownSpec {
        households: opts.households,
        seed: opts.seed,
        start,
        quiet: opts.quiet,
        quiet_recovering: opts.quiet_recovering,
        offline: opts.offline,
        hospital: opts.hospital,
        duration_ms,
    };
    let mut calendar = HolidayCalendar::builtin();
    if let Some(f) = &opts.holidays_file {
        calendar = calendar.with_extra_file(f)?;
    }
    let router = Router::new(Arc::new(calendar), OfficeHours::default());
    let mut town = Town::new(&spec);
    let n = town.len();
    tracing::info!(
        households = n,
        sim_hours = opts.sim_hours,
        speed = opts.speed,
        "standalone town starting"
    );

    let mut states: Vec<HouseholdState> = (0..n).map(|_| HouseholdState::new(start)).collect();
    let mut scheduled: Vec<Option<Ts>> = vec![None; n];
    let mut timers: BinaryHeap<Reverse<(Ts, usize)>> = BinaryHeap::new();
    let mut summary = Summary {
        households: n,
        ..Default::default()
    };
    let mut seen_events = HashSet::new();
    let mut incidents: BTreeMap<String, IncidentRecord> = BTreeMap::new();
    let mut effects = Vec::new();
    let mut readings: Vec<TownReading> = Vec::with_capacity(n);
    let real_start = tokio::time::Instant::now();

    let mut handle = |i: usize,
                      cfg: &dolbom_domain::HouseholdConfig,
                      now: Ts,
                      effects: &mut Vec<Effect>,
                      states: &mut [HouseholdState],
                      scheduled: &mut [Option<Ts>],
                      timers: &mut BinaryHeap<Reverse<(Ts, usize)>>,
                      summary: &mut Summary| {
        for e in effects.drain(..) {
            let Effect::Incident(ev) = e else { continue };
            let route = router.route_event(cfg, &ev, now);
            let wire = convert::incident_event(cfg, &ev, route, now);
            summary.events += 1;
            if !seen_events.insert(wire.event_id.clone()) {
                summary.duplicate_event_ids += 1;
            }
            if matches!(route, Route::Held { .. }) {
                summary.held_for_dong_office += 1;
            }
            let ty = pb::IncidentEventType::try_from(wire.r#type)
                .map(|t| t.as_str_name().trim_start_matches("INCIDENT_EVENT_TYPE_"))
                .unwrap_or("?");
            let rec = incidents
                .entry(wire.incident_id.clone())
                .or_insert_with(|| IncidentRecord {
                    incident_id: wire.incident_id.clone(),
                    household_id: wire.household_id.clone(),
                    kind: format!("{:?}", ev.kind),
                    highest_stage: String::new(),
                    opened_due_at: ev.due_at.to_string(),
                    first_route: route_name(&route),
                    closed: String::new(),
                });
            rec.highest_stage = format!("{:?}", ev.stage);
            if matches!(ev.event, EventType::Recovered | EventType::Suppressed(_)) {
                rec.closed = ty.to_string();
            }
            if opts.print_events {
                let kind = match ev.kind {
                    IncidentKind::Inactivity => "inactivity",
                    IncidentKind::DeviceOffline => "device offline",
                    IncidentKind::AreaOutage => "area outage",
                    IncidentKind::PipelineStall => "pipeline stall",
                };
                println!(
                    "{}  {:<12} {:<15} {:<15} {}  dong {}  → {}  (quiet since {}, due {})",
                    now,
                    ty,
                    stage_label(ev.stage),
                    kind,
                    wire.incident_id,
                    wire.dong_code,
                    route_name(&route),
                    ev.reason.quiet_since,
                    ev.due_at,
                );
            }
        }
        let next = states[i].next_deadline(cfg, now);
        if next != scheduled[i] {
            scheduled[i] = next;
            if let Some(t) = next {
                timers.push(Reverse((t, i)));
            }
        }
    };

    // Every household starts with a deadline (its offline limit).
    for i in 0..n {
        handle(
            i,
            town.config(i),
            start,
            &mut effects,
            &mut states,
            &mut scheduled,
            &mut timers,
            &mut summary,
        );
    }

    let end = start.plus_ms(duration_ms);
    let mut t = start;
    while t <= end {
        if shutdown.is_cancelled() {
            summary.cancelled = true;
            break;
        }
        // Fire every deadline due by this minute, in order.
        while let Some(&Reverse((due, i))) = timers.peek() {
            if due > t {
                break;
            }
            timers.pop();
            if scheduled[i] != Some(due) {
                continue; // superseded
            }
            scheduled[i] = None;
            states[i].evaluate(town.config(i), due, &mut effects);
            handle(
                i,
                town.config(i),
                due,
                &mut effects,
                &mut states,
                &mut scheduled,
                &mut timers,
                &mut summary,
            );
        }
        readings.clear();
        town.readings_at(t, &mut readings);
        for r in &readings {
            let i = r.household;
            summary.readings += 1;
            match states[i].on_reading(town.config(i), &r.reading(), t, &mut effects) {
                Ok(ReadingOutcome::Duplicate) => summary.readings_duplicate += 1,
                Ok(_) => {}
                Err(e) => {
                    summary.readings_rejected += 1;
                    tracing::warn!(household = %town.config(i).household_id, reason = e.label(), "reading rejected");
                }
            }
            handle(
                i,
                town.config(i),
                t,
                &mut effects,
                &mut states,
                &mut scheduled,
                &mut timers,
                &mut summary,
            );
        }
        summary.simulated_minutes = t.since(start) / MINUTE_MS;
        t = t.plus_ms(MINUTE_MS);
        if opts.speed > 0 {
            let sim_elapsed_ms = t.since(start) as u64;
            let due = real_start
                + std::time::Duration::from_micros(sim_elapsed_ms * 1000 / opts.speed as u64);
            tokio::select! {
                _ = tokio::time::sleep_until(due) => {}
                _ = shutdown.cancelled() => {}
            }
        } else if t.millis() % (60 * MINUTE_MS) == 0 {
            tokio::task::yield_now().await;
        }
    }

    summary.incidents = incidents.into_values().collect();
    check_truth(&town, t.min(end), &mut summary);
    Ok(summary)
}

/// Compares incidents with the town's ground truth.
fn check_truth(town: &Town, end: Ts, s: &mut Summary) {
    let mut by_household: BTreeMap<&str, Vec<&IncidentRecord>> = BTreeMap::new();
    for rec in &s.incidents {
        by_household.entry(&rec.household_id).or_default().push(rec);
    }
    let scripted: HashSet<&HouseholdId> = town.truth().iter().map(|t| &t.household).collect();
    for cfg in town.configs() {
        let id = cfg.household_id.as_str();
        if !scripted.contains(&cfg.household_id) {
            for rec in by_household.get(id).into_iter().flatten() {
                s.unexpected.push(rec.incident_id.clone());
            }
        }
    }
    let hour = 60 * MINUTE_MS;
    for truth in town.truth() {
        let cfg = town
            .configs()
            .find(|c| c.household_id == truth.household)
            .expect("scripted household exists");
        let recs = by_household.get(truth.household.as_str());
        let has = |kind: &str| recs.is_some_and(|v| v.iter().any(|r| r.kind == kind));
        match &truth.script {
            Scripted::Quiet { at, resumes } => {
                // Quiet long enough that ATTENTION is due even after the
                // longest sleep-window deferral (~10 h)?
                let until = resumes.unwrap_or(end).min(end);
                let needed = cfg.thresholds.attention_minutes as i64 * MINUTE_MS + 10 * hour;
                if until.since(*at) >= needed {
                    s.expected += 1;
                    if has("Inactivity") {
                        s.detected += 1;
                    } else {
                        s.missed.push(truth.household.to_string());
                    }
                }
            }
            Scripted::Offline { at, back } => {
                let until = back.unwrap_or(end).min(end);
                if until.since(*at) >= cfg.offline_after_ms() + 2 * MINUTE_MS {
                    s.expected += 1;
                    if has("DeviceOffline") {
                        s.detected += 1;
                    } else {
                        s.missed.push(truth.household.to_string());
                    }
                }
            }
            Scripted::Hospital { .. } => {
                // Nothing may be raised while away; after the stay the person
                // is active again, so nothing at all is expected.
                for rec in recs.into_iter().flatten() {
                    s.unexpected.push(rec.incident_id.clone());
                }
            }
        }
    }
}

impl Summary {
    /// Whether the run matched its ground truth: nothing missed, nothing
    /// invented, no event emitted twice.
    pub fn passed(&self) -> bool {
        self.missed.is_empty() && self.unexpected.is_empty() && self.duplicate_event_ids == 0
    }

    /// A human-readable report.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut o = String::new();
        let by_kind = |k: &str| self.incidents.iter().filter(|r| r.kind == k).count();
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
            by_kind("Inactivity"),
            by_kind("DeviceOffline"),
            self.events,
            self.held_for_dong_office
        );
        for stage in ["Attention", "Caution", "Danger"] {
            let n = self
                .incidents
                .iter()
                .filter(|r| r.highest_stage == stage)
                .count();
            let _ = writeln!(o, "  reached {stage:<10} {n}");
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
            "ground truth   {}/{} expected incidents raised, {} missed, {} unexpected, {} duplicate event ids",
            self.detected,
            self.expected,
            self.missed.len(),
            self.unexpected.len(),
            self.duplicate_event_ids
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
