//! The standalone run loop: town → in-process bus → shards (the monitor's
//! shard code) → printed incident events → summary vs. ground truth.

use crate::options::StandaloneOptions;
use dolbom_calendar::{CalendarError, HolidayCalendar, OfficeHours, Router};
use dolbom_domain::convert;
use dolbom_domain::incident::{Route, Stage};
use dolbom_domain::{HouseholdConfig, HouseholdId, Ts, MINUTE_MS};
use dolbom_engine::ReadingOutcome;
use dolbom_history::{Downsampler, EmbeddedStore, HistoryError, HistoryWriter};
use dolbom_proto::v1 as pb;
use dolbom_shard::{ClockMode, Output, Shard, ShardOptions};
use dolbom_town::{Scripted, Town, TownReading, TownSpec};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum StandaloneError {
    #[error(transparent)]
    Calendar(#[from] CalendarError),
    #[error("history store: {0}")]
    History(#[from] HistoryError),
    #[error("notify: {0}")]
    Notify(#[from] dolbom_notify::NotifyError),
}

/// What went into the embedded history store.
#[derive(Clone, Debug, Default, Serialize)]
pub struct HistorySummary {
    pub path: String,
    pub records_written: u64,
    /// Readings that arrived after their minute was aggregated (none in a
    /// simulation, which delivers in order).
    pub late_readings: u64,
}

/// The history pipeline: readings → downsampler → writer → embedded store;
/// incident events and the state changes they imply → writer.
struct History {
    store: EmbeddedStore,
    writer: HistoryWriter,
    task: tokio::task::JoinHandle<()>,
    downsampler: Downsampler,
}

impl History {
    fn open(
        opts: &StandaloneOptions,
        sim_now: Arc<AtomicI64>,
    ) -> Result<Option<Self>, HistoryError> {
        if opts.data_dir.as_os_str().is_empty() {
            return Ok(None);
        }
        let clock: dolbom_history::embedded::Clock =
            Arc::new(move || sim_now.load(Ordering::Relaxed));
        let store = EmbeddedStore::open_dir_with_clock(&opts.data_dir, opts.retention, clock)?;
        let (writer, task) =
            HistoryWriter::spawn(Arc::new(store.clone()), opts.history_writer.clone());
        Ok(Some(Self {
            store,
            writer,
            task,
            downsampler: Downsampler::new(0),
        }))
    }

    async fn finish(mut self) -> Result<HistorySummary, HistoryError> {
        self.writer
            .send_closed(self.downsampler.drain_all())
            .await?;
        self.writer.flush().await?;
        let written = self.writer.written();
        drop(self.writer);
        self.task
            .await
            .map_err(|e| HistoryError::Join(e.to_string()))?;
        Ok(HistorySummary {
            path: self.store.path().display().to_string(),
            records_written: written,
            late_readings: self.downsampler.late_dropped(),
        })
    }
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
    /// The embedded history store, when a data directory is set.
    pub history: Option<HistorySummary>,
    /// The notify gRPC API, when it ran.
    pub api: Option<crate::api::ApiSummary>,
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

/// What a partition's shard hands back at the end of a simulated minute.
#[derive(Default)]
struct Flushed {
    outputs: Vec<Output>,
    rejected: u64,
    duplicates: u64,
}

/// Messages on the in-process bus (the standalone stand-in for Kafka).
enum BusMsg {
    Config(Box<HouseholdConfig>),
    Readings(Vec<pb::PlugReading>),
    /// Fire what is due and hand back everything emitted since the last flush.
    Flush(oneshot::Sender<Flushed>),
}

/// The in-process bus: one channel per partition, each served by a task
/// hosting that partition's [`Shard`] — the monitor's shard code, without
/// Kafka. Households are partitioned by a hash of their id.
struct Bus {
    partitions: Vec<mpsc::Sender<BusMsg>>,
}

/// Standalone shards run on event time; the wall clock they are given is
/// fixed (a simulation has no pipeline to stall).
const SIM_WALL: Ts = Ts(0);

impl Bus {
    fn start(partitions: usize, router: &Router) -> Bus {
        let opts = ShardOptions {
            clock: ClockMode::Event,
            allowed_lateness_ms: 0,
            stall_after_ms: i64::MAX / 4,
            ..ShardOptions::default()
        };
        let partitions = (0..partitions)
            .map(|p| {
                let (tx, rx) = mpsc::channel(64);
                let shard = Shard::new(p as i32, opts.clone(), router.clone(), SIM_WALL);
                tokio::spawn(serve(shard, rx));
                tx
            })
            .collect();
        Bus { partitions }
    }

    fn partition_of(&self, household: &str) -> usize {
        partition_of(household, self.partitions.len())
    }

    async fn send(&self, p: usize, msg: BusMsg) {
        self.partitions[p]
            .send(msg)
            .await
            .expect("shard task alive");
    }

    async fn flush(&self) -> Flushed {
        let mut all = Flushed::default();
        for tx in &self.partitions {
            let (reply, rx) = oneshot::channel();
            tx.send(BusMsg::Flush(reply))
                .await
                .expect("shard task alive");
            let f = rx.await.expect("shard task alive");
            all.outputs.extend(f.outputs);
            all.rejected += f.rejected;
            all.duplicates += f.duplicates;
        }
        // Deterministic order across partitions: by due time, then id.
        all.outputs.sort_by(|a, b| match (a, b) {
            (Output::Event(x), Output::Event(y)) => (x.due_at.map(|d| d.seconds), &x.event_id)
                .cmp(&(y.due_at.map(|d| d.seconds), &y.event_id)),
            _ => std::cmp::Ordering::Equal,
        });
        all
    }
}

/// The partition of a household: a hash of its id.
fn partition_of(household: &str, partitions: usize) -> usize {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    household.hash(&mut h);
    (h.finish() % partitions as u64) as usize
}

async fn serve(mut shard: Shard, mut rx: mpsc::Receiver<BusMsg>) {
    let mut pending = Flushed::default();
    while let Some(msg) = rx.recv().await {
        match msg {
            BusMsg::Config(cfg) => {
                if let Err(e) = shard.apply_config(*cfg, SIM_WALL, &mut pending.outputs) {
                    tracing::warn!(reason = e.label(), error = %e, "household config rejected");
                }
            }
            BusMsg::Readings(rs) => {
                for r in &rs {
                    match shard.on_reading(r, SIM_WALL, &mut pending.outputs) {
                        Ok(ReadingOutcome::Duplicate) => pending.duplicates += 1,
                        Ok(_) => {}
                        Err(e) => {
                            pending.rejected += 1;
                            tracing::warn!(household = %r.household_id, reason = e.label(), "reading rejected");
                        }
                    }
                }
            }
            BusMsg::Flush(reply) => {
                shard.advance(SIM_WALL, &mut pending.outputs);
                let _ = reply.send(std::mem::take(&mut pending));
            }
        }
    }
}

fn wire_route(r: Option<&pb::Route>) -> (String, bool) {
    let Some(r) = r else {
        return ("?".into(), false);
    };
    match pb::RouteTarget::try_from(r.target).unwrap_or(pb::RouteTarget::Unspecified) {
        pb::RouteTarget::DongOffice => (route_name(&Route::DongOffice), false),
        pb::RouteTarget::ControlCenter => (route_name(&Route::ControlCenter), false),
        pb::RouteTarget::Held => {
            let until = r.held_until.as_ref().map(convert::ts).unwrap_or_default();
            (route_name(&Route::Held { until }), true)
        }
        pb::RouteTarget::Maintenance => (route_name(&Route::Maintenance), false),
        pb::RouteTarget::Sre => (route_name(&Route::Sre), false),
        pb::RouteTarget::Unspecified => ("?".into(), false),
    }
}

fn wire_kind(k: i32) -> (&'static str, &'static str) {
    match pb::IncidentKind::try_from(k).unwrap_or(pb::IncidentKind::Unspecified) {
        pb::IncidentKind::Inactivity => ("Inactivity", "inactivity"),
        pb::IncidentKind::DeviceOffline => ("DeviceOffline", "device offline"),
        pb::IncidentKind::AreaOutage => ("AreaOutage", "area outage"),
        pb::IncidentKind::PipelineStall => ("PipelineStall", "pipeline stall"),
        pb::IncidentKind::Unspecified => ("Unspecified", "?"),
    }
}

fn wire_stage(s: i32) -> Stage {
    match pb::Stage::try_from(s).unwrap_or(pb::Stage::Unspecified) {
        pb::Stage::Attention => Stage::Attention,
        pb::Stage::Caution => Stage::Caution,
        pb::Stage::Danger => Stage::Danger,
        _ => Stage::Normal,
    }
}

/// Takes one published event into the summary (and prints it).
fn record(
    wire: &pb::IncidentEvent,
    opts: &StandaloneOptions,
    seen_events: &mut HashSet<String>,
    incidents: &mut BTreeMap<String, IncidentRecord>,
    summary: &mut Summary,
) {
    summary.events += 1;
    if !seen_events.insert(wire.event_id.clone()) {
        summary.duplicate_event_ids += 1;
    }
    let (route, held) = wire_route(wire.route.as_ref());
    if held {
        summary.held_for_dong_office += 1;
    }
    let ty = pb::IncidentEventType::try_from(wire.r#type)
        .map(|t| t.as_str_name().trim_start_matches("INCIDENT_EVENT_TYPE_"))
        .unwrap_or("?");
    let (kind, kind_text) = wire_kind(wire.kind);
    let stage = wire_stage(wire.stage);
    let due = wire.due_at.as_ref().map(convert::ts).unwrap_or_default();
    let rec = incidents
        .entry(wire.incident_id.clone())
        .or_insert_with(|| IncidentRecord {
            incident_id: wire.incident_id.clone(),
            household_id: wire.household_id.clone(),
            kind: kind.to_string(),
            highest_stage: String::new(),
            opened_due_at: due.to_string(),
            first_route: route.clone(),
            closed: String::new(),
        });
    rec.highest_stage = format!("{stage:?}");
    if ty == "RECOVERED" || ty == "SUPPRESSED" {
        rec.closed = ty.to_string();
    }
    if opts.print_events {
        let now = wire
            .emitted_at
            .as_ref()
            .map(convert::ts)
            .unwrap_or_default();
        let quiet_since = wire
            .reason
            .as_ref()
            .and_then(|r| r.quiet_since.as_ref())
            .map(convert::ts)
            .unwrap_or_default();
        let subject = if wire.area_id.is_empty() {
            String::new()
        } else {
            format!(" ({} households)", wire.affected_households)
        };
        println!(
            "{}  {:<12} {:<15} {:<15} {}{}  dong {}  → {}  (quiet since {}, due {})",
            now,
            ty,
            stage_label(stage),
            kind_text,
            wire.incident_id,
            subject,
            wire.dong_code,
            route,
            quiet_since,
            due,
        );
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
        reporting: Default::default(),
        scripts_within: None,
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
        partitions = opts.partitions,
        sim_hours = opts.sim_hours,
        speed = opts.speed,
        "standalone town starting"
    );

    let sim_now = Arc::new(AtomicI64::new(start.millis()));
    let mut history = History::open(opts, sim_now.clone())?;
    let bus = Bus::start(opts.partitions, &router);
    let household_partition: Vec<usize> = town
        .configs()
        .map(|c| bus.partition_of(c.household_id.as_str()))
        .collect();
    for (cfg, &p) in town.configs().zip(&household_partition) {
        bus.send(p, BusMsg::Config(Box::new(cfg.clone()))).await;
    }

    // The notify service and its gRPC API, over the same history store.
    let (to_bus, mut from_api) = mpsc::unbounded_channel();
    let api = match history.as_ref() {
        Some(h) if !opts.grpc_listen.is_empty() => {
            let parts = opts.partitions;
            let route: crate::api::Route = Arc::new(move |c: HouseholdConfig| {
                (partition_of(c.household_id.as_str(), parts), Box::new(c))
            });
            let api = crate::api::Api::start(
                &opts.grpc_listen,
                &opts.data_dir,
                dolbom_town::MUNICIPALITY,
                Arc::new(h.store.clone()),
                sim_now.clone(),
                route,
                to_bus,
                opts.holidays_file.clone(),
            )
            .await?;
            let seeded = api
                .core
                .seed_households(town.configs().map(pb::HouseholdConfig::from).collect())
                .await?;
            tracing::info!(
                endpoint = %api.endpoint,
                tokens = %api.token_dir.display(),
                seeded,
                "municipality gRPC API up; try: dolbomctl --endpoint {} --token-file {}/{}.token list",
                api.endpoint,
                api.token_dir.display(),
                dolbom_town::MUNICIPALITY,
            );
            Some(api)
        }
        _ => None,
    };

    let mut summary = Summary {
        households: n,
        ..Default::default()
    };
    let mut seen_events = HashSet::new();
    let mut incidents: BTreeMap<String, IncidentRecord> = BTreeMap::new();
    let mut readings: Vec<TownReading> = Vec::with_capacity(n);
    let mut batches: Vec<Vec<pb::PlugReading>> = vec![Vec::new(); opts.partitions];
    let real_start = tokio::time::Instant::now();

    let end = start.plus_ms(duration_ms);
    let mut t = start;
    while t <= end {
        if shutdown.is_cancelled() {
            summary.cancelled = true;
            break;
        }
        // Registry changes made over the API reach the shards first.
        while let Ok((p, cfg)) = from_api.try_recv() {
            bus.send(p, BusMsg::Config(cfg)).await;
        }
        readings.clear();
        town.readings_at(t, &mut readings);
        sim_now.store(t.millis(), Ordering::Relaxed);
        for r in &readings {
            let wire = town.wire_reading(r);
            if let Some(h) = history.as_mut() {
                h.downsampler.push(
                    &wire.household_id,
                    wire.observed_at_ms,
                    wire.watts,
                    wire.lux,
                    t.millis(),
                );
            }
            batches[household_partition[r.household]].push(wire);
        }
        summary.readings += readings.len() as u64;
        for (p, batch) in batches.iter_mut().enumerate() {
            if !batch.is_empty() {
                bus.send(p, BusMsg::Readings(std::mem::take(batch))).await;
            }
        }
        let flushed = bus.flush().await;
        summary.readings_rejected += flushed.rejected;
        summary.readings_duplicate += flushed.duplicates;
        for o in &flushed.outputs {
            match o {
                Output::Event(wire) => {
                    record(wire, opts, &mut seen_events, &mut incidents, &mut summary);
                    if let Some(h) = history.as_mut() {
                        h.writer.send_incident_event((**wire).clone()).await?;
                    }
                }
                Output::AbsenceEndedEarly { household, .. } => {
                    tracing::info!(household = %household, "absence ended early by activity");
                }
            }
        }
        if let Some(h) = history.as_mut() {
            h.writer.send_closed(h.downsampler.drain_closed()).await?;
        }
        if let Some(api) = &api {
            let events: Vec<pb::IncidentEvent> = flushed
                .outputs
                .iter()
                .filter_map(|o| match o {
                    Output::Event(w) => Some((**w).clone()),
                    _ => None,
                })
                .collect();
            api.core.ingest(events).await?;
            api.core.tick().await?;
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
        }
    }

    if let Some(api) = api {
        if opts.serve && !shutdown.is_cancelled() {
            tracing::info!(endpoint = %api.endpoint, "simulation finished; the gRPC API stays up until Ctrl-C");
            shutdown.cancelled().await;
        }
        summary.api = Some(api.finish().await?);
    }
    summary.incidents = incidents.into_values().collect();
    if let Some(h) = history {
        summary.history = Some(h.finish().await?);
    }
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
