//! The Kafka path: plug simulator → Tansu → the monitor, history and notify
//! services as deployed (`dolbom_monitor::run`, `dolbom_history_ingest::run`,
//! `dolbom_notify::run`, each in its own consumer group), in this process.
//!
//! The simulator publishes its slices paced to `speed` (simulated seconds
//! per wall second) on its own thread and notes when each slice was handed
//! to the producer. A checker consumes `care.incidents` and measures each
//! event's detection latency from the slice that carried event time past
//! its deadline. The monitor runs on event time (the town is accelerated);
//! a pipeline stall is the simulator pausing for `stall_secs` of wall time,
//! which the monitor must report as a stall (after `stall_after_ms` = 10 s
//! without input) without inferring anything else. At the end the notify
//! store and the history ingest are compared with what was published.

use crate::scenario::{self, Downstream, Meter, Report, Scenario, SliceClock};
use crate::sim::{PlugSim, Slice};
use crate::{counter, produce as send};
use dolbom_kafka::KafkaOptions;
use dolbom_monitor::{MonitorOptions, Topics};
use dolbom_proto::v1 as pb;
use dolbom_shard::ClockMode;
use dolbom_town::truth::{self, CheckOptions, GroundTruth, SeenEvent, Stall, StallClock};
use futures::FutureExt as _;
use prost::Message as _;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::Producer;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const STALL_AFTER_MS: i64 = 10_000;

fn wall_ms() -> i64 {
    dolbom_domain::Ts::now().millis()
}

/// An incident event the monitor published (notify's acknowledgements,
/// resolutions and reopenings share the topic and are not judged); `None` for anything else.
fn monitor_event(payload: &[u8]) -> Option<pb::IncidentEvent> {
    let ev = pb::IncidentEvent::decode(payload).ok()?;
    let by_people = ev.r#type == pb::IncidentEventType::Acknowledged as i32
        || ev.r#type == pb::IncidentEventType::Resolved as i32
        || ev.r#type == pb::IncidentEventType::Reopened as i32;
    (!by_people).then_some(ev)
}

/// What the publishing thread shares with the runner.
#[derive(Default)]
struct Published {
    clock: SliceClock,
    readings: u64,
    minutes: u64,
    sim_ms: i64,
    /// Readings in the simulator's producer not yet acknowledged.
    producer_queue: u64,
    /// The stall: wall ms when publishing paused and resumed, and the
    /// simulated time at which it happened.
    stall: Option<(i64, i64, i64)>,
    done: bool,
}

/// Runs `sc` over Kafka; returns the report and the ground truth.
pub async fn run(
    sc: &Scenario,
    metrics: &metrics_exporter_prometheus::PrometheusHandle,
) -> anyhow::Result<(Report, GroundTruth, Vec<SeenEvent>)> {
    let setup = Instant::now();
    let broker = crate::broker::broker()?.ok_or_else(|| {
        anyhow::anyhow!("no Kafka broker: set DOLBOM_KAFKA_BROKERS or install tansu")
    })?;
    let kafka = KafkaOptions::brokers(&broker.addr);
    let broker_cpu0 = broker.pid().and_then(|p| scenario::cpu_seconds(Some(p)));
    let spec = sc.sim_spec()?;
    let start = spec.town.start;
    let sim = PlugSim::new(spec);
    let dir = tempfile::tempdir()?;
    let prefix = format!("scn{}", std::process::id());
    let topics = Topics::with_prefix(&prefix);
    let mut mopts = MonitorOptions {
        kafka: kafka.clone(),
        group_id: format!("{prefix}-monitor"),
        topics: topics.clone(),
        partitions: sc.partitions as i32,
        snapshot_dir: dir.path().join("monitor"),
        snapshot_interval_secs: 10,
        session_timeout_ms: 6000,
        ..MonitorOptions::default()
    };
    mopts.shard.clock = ClockMode::Event;
    mopts.shard.allowed_lateness_ms = sc.allowed_lateness_ms;
    mopts.shard.stall_after_ms = STALL_AFTER_MS;
    dolbom_monitor::kafka::ensure_topics(&mopts).await?;

    let producer = crate::bulk_producer(&kafka)?;
    for cfg in sim.configs() {
        let wire = pb::HouseholdConfig::from(cfg).encode_to_vec();
        send(
            &producer,
            &topics.households,
            cfg.household_id.as_str(),
            &wire,
        );
    }
    producer.flush(Duration::from_secs(60))?;

    // The checker's consumer, from the beginning of care.incidents.
    let incidents: StreamConsumer = kafka
        .group_consumer(
            "dolbom-scenario",
            &format!("{prefix}-checker"),
            "cooperative-sticky",
        )
        .set("fetch.wait.max.ms", "10")
        .create()?;
    incidents.subscribe(&[&topics.incidents])?;

    // The services.
    let stop_monitor = CancellationToken::new();
    let stop_rest = CancellationToken::new();
    let rss0 = crate::resident_bytes().unwrap_or(0);
    let monitor = tokio::spawn(dolbom_monitor::run(mopts.clone(), stop_monitor.clone()));
    let hopts = dolbom_history_ingest::HistoryOptions {
        kafka: kafka.clone(),
        group_id: format!("{prefix}-history"),
        // Incident events only: a week of minute aggregates for 10 000
        // households would be 100 M rows.
        readings_topic: String::new(),
        incidents_topic: topics.incidents.clone(),
        data_dir: dir.path().join("history"),
        commit_interval_ms: 1000,
        ..Default::default()
    };
    std::fs::create_dir_all(&hopts.data_dir)?;
    let history = tokio::spawn(dolbom_history_ingest::run(hopts, stop_rest.clone()));
    let key = dolbom_auth::SigningKey::generate("scenario")?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let listen = listener.local_addr()?.to_string();
    drop(listener);
    let nopts = dolbom_notify::NotifyOptions {
        listen,
        data_dir: dir.path().join("notify"),
        kafka: kafka.clone(),
        group_id: format!("{prefix}-notify"),
        incidents_topic: topics.incidents.clone(),
        households_topic: topics.households.clone(),
        public_keys: vec![key.verifying_key().to_text()],
        create_contact_key: true,
        policies: vec![dolbom_notify::options::MunicipalityPolicy {
            municipality: "*".into(),
            policy: dolbom_escalation::Policy::watch_only(),
        }],
        ..Default::default()
    };
    std::fs::create_dir_all(&nopts.data_dir)?;
    let notify_db = nopts.data_dir.join("notify.sqlite");
    let notify = tokio::spawn(dolbom_notify::run(nopts, stop_rest.clone()));

    // Wait for the monitor to own every partition before the plugs start.
    let wait = Instant::now();
    while counter(
        &metrics.render(),
        dolbom_monitor::metrics::ASSIGNED_PARTITIONS,
    ) < sc.partitions as f64
    {
        anyhow::ensure!(
            wait.elapsed() < Duration::from_secs(60),
            "the monitor did not get its partitions"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss1 = crate::resident_bytes().unwrap_or(0);
    let monitor_bytes = (rss1 > rss0).then(|| (rss1 - rss0) as f64 / sim.households() as f64);
    let setup_s = setup.elapsed().as_secs_f64();

    // The plugs, on their own thread.
    let mut meter = Meter::new();
    let published = Arc::new(Mutex::new(Published::default()));
    let shared = published.clone();
    let started = meter.started;
    let speed = sc.speed;
    let stall_at = sc
        .stall_at_hours
        .map(|h| start.plus_ms((h * 3_600_000.0) as i64));
    let stall_for = Duration::from_secs(sc.stall_secs);
    let readings_topic = topics.readings.clone();
    let plugs = std::thread::spawn(move || {
        let mut sim = sim;
        let mut slices: Vec<Slice> = Vec::new();
        let mut paused = Duration::ZERO;
        let mut stalled = false;
        while !sim.done() {
            sim.next_minute(&mut slices);
            for s in slices.drain(..) {
                if speed > 0 {
                    let due =
                        Duration::from_micros(s.end.since(start) as u64 * 1000 / speed as u64)
                            + paused;
                    if let Some(w) = due.checked_sub(started.elapsed()) {
                        std::thread::sleep(w);
                    }
                }
                if !stalled && stall_at.is_some_and(|at| s.end > at) {
                    stalled = true;
                    producer.flush(Duration::from_secs(30)).ok();
                    let from = wall_ms();
                    std::thread::sleep(stall_for);
                    paused += stall_for;
                    let sim_at = s.end.millis();
                    shared.lock().expect("published").stall = Some((from, wall_ms(), sim_at));
                }
                let n = s.readings.len() as u64;
                for r in &s.readings {
                    send(
                        &producer,
                        &readings_topic,
                        &r.household_id,
                        &r.encode_to_vec(),
                    );
                }
                let mut p = shared.lock().expect("published");
                p.clock
                    .handed_over(s.end.millis(), started.elapsed().as_secs_f64());
                p.readings += n;
                p.sim_ms = s.end.since(start);
                p.producer_queue = producer.in_flight_count().max(0) as u64;
            }
            shared.lock().expect("published").minutes += 1;
        }
        producer.flush(Duration::from_secs(60)).ok();
        shared.lock().expect("published").done = true;
        sim
    });

    // Consume incidents while the plugs publish; stop when the monitor has
    // taken every reading and a moment has passed for the last deadlines.
    let bar = scenario::progress(sc.hours as u64 * 60, sc.progress);
    let mut seen: Vec<SeenEvent> = Vec::new();
    let mut caught_up: Option<Instant> = None;
    let mut last_progress = Instant::now();
    loop {
        let m = tokio::time::timeout(Duration::from_millis(100), incidents.recv()).await;
        let at = meter.elapsed();
        let mut batch = Vec::new();
        if let Ok(Ok(m)) = m {
            batch.push(m.payload().map(<[u8]>::to_vec));
            while let Some(Ok(m)) = incidents.recv().now_or_never() {
                batch.push(m.payload().map(<[u8]>::to_vec));
            }
        }
        {
            let p = published.lock().expect("published");
            for payload in batch.into_iter().flatten() {
                let Some(ev) = monitor_event(&payload) else {
                    continue;
                };
                let due = scenario::detectable_from(&ev);
                let latency = p
                    .clock
                    .passed(due, sc.allowed_lateness_ms)
                    .map(|w| (at - w).max(0.0));
                if let Some(l) = latency {
                    meter.latency(l);
                }
                seen.push(SeenEvent::from_wire(&ev, latency, at));
            }
            meter.tick_with(p.readings, start.plus_ms(p.sim_ms), || {
                let text = metrics.render();
                let taken = counter(&text, dolbom_monitor::metrics::READINGS_ACCEPTED)
                    + counter(&text, dolbom_monitor::metrics::READINGS_REJECTED);
                scenario::Lag {
                    monitor: Some(p.readings as f64 - taken),
                    producer_queue: Some(p.producer_queue as f64),
                }
            });
            if last_progress.elapsed() > Duration::from_millis(250) {
                last_progress = Instant::now();
                bar.set_position(p.minutes);
                bar.set_message(format!(
                    "{:.0} readings/s, {} incident events",
                    p.readings as f64 / meter.elapsed().max(1e-9),
                    seen.len()
                ));
            }
            if p.done && caught_up.is_none() {
                let text = metrics.render();
                let processed = counter(&text, dolbom_monitor::metrics::READINGS_ACCEPTED)
                    + counter(&text, dolbom_monitor::metrics::READINGS_REJECTED);
                if processed >= p.readings as f64 {
                    caught_up = Some(Instant::now());
                }
            }
        }
        if caught_up.is_some_and(|c| c.elapsed() > Duration::from_millis(1500)) {
            break;
        }
    }
    bar.finish_and_clear();
    meter.stop();
    stop_monitor.cancel();
    monitor.await??;
    // Let notify and the history ingest read the last events, then stop them.
    let quiet = Instant::now();
    while quiet.elapsed() < Duration::from_secs(3) {
        if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_millis(200), incidents.recv()).await
        {
            if let Some(ev) = m.payload().and_then(monitor_event) {
                seen.push(SeenEvent::from_wire(
                    &ev,
                    None,
                    meter.started.elapsed().as_secs_f64(),
                ));
            }
        }
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop_rest.cancel();
    let ingest = history.await??;
    notify.await??;
    let counts = dolbom_notify::store::counts(&dolbom_notify::store::open(&notify_db)?)?;
    let broker_cpu = broker
        .pid()
        .and_then(|p| scenario::cpu_seconds(Some(p)))
        .zip(broker_cpu0)
        .map(|(b, a)| b - a);

    let sim = plugs
        .join()
        .map_err(|_| anyhow::anyhow!("publishing thread panicked"))?;
    let mut truth = sim.truth();
    let p = published.lock().expect("published");
    if let Some((from, until, sim_at)) = p.stall {
        truth.stalls.push(Stall {
            clock: StallClock::Wall,
            from_ms: from,
            until_ms: until,
            sim_from_ms: sim_at,
            sim_until_ms: sim_at,
        });
    }
    let verdict = truth::check(&truth, &seen, &CheckOptions::default());
    let downstream = Downstream::new(&seen, &counts, ingest.incident_events);
    let report = scenario::report(
        sc,
        &meter,
        setup_s,
        sim.stats,
        p.sim_ms,
        monitor_bytes,
        broker_cpu,
        verdict,
        downstream,
    );
    Ok((report, truth, seen))
}
