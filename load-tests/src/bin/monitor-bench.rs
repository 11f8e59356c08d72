//! The monitor over a real Kafka-protocol broker: throughput against a bare
//! rdkafka consume loop over the same topic in the same run, and
//! deadline-to-incident latency with many deadlines due at once.
//!
//! `cargo run --release -p dolbom-load-tests --bin monitor-bench -- [readings] [households] [latency-households]`
//!
//! Uses `DOLBOM_KAFKA_BROKERS` if set, else starts Tansu (`DOLBOM_TANSU` or
//! `~/.cargo/bin/tansu`) on a loopback port with in-memory storage.
//!
//! 1. Produces `households` configs and `readings` readings (default
//!    1 000 000 over 10 000 households, 4 partitions).
//! 2. A bare `StreamConsumer` loop reads the readings topic: rate from its
//!    first to its last record.
//! 3. `dolbom_monitor::run` (event clock) in this process consumes the same
//!    topic under another group: rate from its first to its last accepted
//!    reading (read from its Prometheus counters). Twice: with tracing off,
//!    then with spans exported over OTLP (to a discarding collector in this
//!    process) at 1 % sampling (`DOLBOM_BENCH_TRACE_RATIO` to change it),
//!    each under its own group: the cost of tracing in one run.
//! 4. Latency (wall clock): `latency-households` (default 20 000) quiet
//!    households with a 3-minute ATTENTION threshold (registered together,
//!    reporting unchanged values every 30 s, spread evenly) all fall due
//!    within about a second; one busy household per partition keeps event
//!    time moving. Latency = when the incident event is read back from
//!    `care.incidents` − its `due_at` (and, inside the monitor, its
//!    `emitted_at` − `due_at`).

use dolbom_kafka::KafkaOptions;
use dolbom_load_tests::counter;
use dolbom_monitor::{MonitorOptions, Topics};
use dolbom_proto::v1 as pb;
use dolbom_shard::ClockMode;
use prost::Message as _;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const PARTITIONS: i32 = 4;
const T0_MS: i64 = 1_767_225_600_000;

fn topics(prefix: &str) -> Topics {
    Topics::with_prefix(prefix)
}

fn options(brokers: &str, prefix: &str, clock: ClockMode, dir: &std::path::Path) -> MonitorOptions {
    let mut o = MonitorOptions {
        kafka: KafkaOptions::brokers(brokers),
        group_id: format!("{prefix}-monitor"),
        topics: topics(prefix),
        partitions: PARTITIONS,
        snapshot_dir: dir.join(prefix),
        snapshot_interval_secs: 5,
        session_timeout_ms: 6000,
        ..MonitorOptions::default()
    };
    o.shard.clock = clock;
    o.shard.stall_after_ms = 600_000;
    o
}

fn producer(brokers: &str) -> anyhow::Result<FutureProducer> {
    Ok(dolbom_load_tests::bulk_producer(&KafkaOptions::brokers(
        brokers,
    ))?)
}

/// `attention_minutes` 0 = platform defaults; otherwise the offline limit is
/// one minute shorter than ATTENTION (it must be shorter).
fn config(
    id: &str,
    device: &str,
    registered_ms: i64,
    attention_minutes: u32,
) -> pb::HouseholdConfig {
    pb::HouseholdConfig {
        household_id: id.into(),
        municipality_code: "11110".into(),
        dong_code: "1111051500".into(),
        device_ids: vec![device.into()],
        registered_at: Some(dolbom_proto::prost_types::Timestamp {
            seconds: registered_ms / 1000,
            nanos: 0,
        }),
        thresholds: (attention_minutes > 0).then_some(pb::StageThresholds {
            attention_minutes,
            caution_minutes: attention_minutes * 10,
            danger_minutes: attention_minutes * 20,
        }),
        offline_after_minutes: attention_minutes.saturating_sub(1),
        version: 1,
        ..Default::default()
    }
}

fn send(p: &FutureProducer, topic: &str, partition: i32, key: &str, payload: &[u8]) {
    loop {
        match p.send_result(
            FutureRecord::to(topic)
                .partition(partition)
                .key(key)
                .payload(payload),
        ) {
            Ok(_) => return,
            Err(_) => p.poll(Duration::from_millis(5)),
        }
    }
}

/// [`dolbom_load_tests::percentile`], NaN without samples.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    dolbom_load_tests::percentile(sorted, p).unwrap_or(f64::NAN)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let readings: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let households: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(10_000);
    let latency_households: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(20_000);
    // Logs filtered by DOLBOM_LOG; the OpenTelemetry layer (off until the
    // traced pass) sees every INFO span, as in a service exporting traces.
    let (otel, otel_switch) = tracing_subscriber::reload::Layer::new(None::<OtelLayer>);
    {
        use tracing_subscriber::layer::SubscriberExt as _;
        use tracing_subscriber::util::SubscriberInitExt as _;
        use tracing_subscriber::Layer as _;
        // At INFO, as the services' `DOLBOM_LOG` default lets spans through.
        tracing_subscriber::registry()
            .with(otel.with_filter(tracing_subscriber::filter::LevelFilter::INFO))
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_filter(
                        tracing_subscriber::EnvFilter::try_from_env("DOLBOM_LOG")
                            .unwrap_or_else(|_| "warn".into()),
                    ),
            )
            .init();
    }
    let broker = dolbom_load_tests::broker::broker()?.ok_or_else(|| {
        anyhow::anyhow!("no Kafka broker: set DOLBOM_KAFKA_BROKERS or install tansu")
    })?;
    let brokers = broker.addr.clone();
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
    let dir = tempdir()?;
    let prefix = format!("bench{}", std::process::id());
    let opts = options(&brokers, &prefix, ClockMode::Event, &dir);
    dolbom_monitor::kafka::ensure_topics(&opts).await?;

    if readings > 0 {
        throughput(
            &brokers,
            &opts,
            &metrics,
            readings,
            households,
            &otel_switch,
        )
        .await?;
    }
    if latency_households > 0 {
        latency(&brokers, &prefix, &dir, latency_households).await?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

type OtelLayer = tracing_opentelemetry::OpenTelemetryLayer<
    tracing_subscriber::Registry,
    opentelemetry_sdk::trace::Tracer,
>;
type OtelSwitch =
    tracing_subscriber::reload::Handle<Option<OtelLayer>, tracing_subscriber::Registry>;

/// A collector that takes every span and keeps only a count by name.
#[derive(Clone, Default)]
struct Sink(std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, u64>>>);

#[tonic::async_trait]
impl opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService for Sink {
    async fn export(
        &self,
        req: tonic::Request<
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
        >,
    ) -> Result<
        tonic::Response<
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse,
        >,
        tonic::Status,
    > {
        let mut by_name = self.0.lock().unwrap();
        for s in req
            .into_inner()
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
        {
            *by_name.entry(s.name.clone()).or_default() += 1;
        }
        Ok(tonic::Response::new(Default::default()))
    }
}

/// Starts the sink on a loopback port; its endpoint.
async fn sink(spans: Sink) -> anyhow::Result<String> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = format!("http://{}", l.local_addr()?);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(
                opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer::new(spans),
            )
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(l)),
    );
    Ok(endpoint)
}

/// Runs the monitor under `group` until it has taken `readings` more
/// readings; its rate from its first to its last.
async fn monitor_pass(
    opts: &MonitorOptions,
    metrics: &metrics_exporter_prometheus::PrometheusHandle,
    readings: usize,
) -> anyhow::Result<f64> {
    let taken = |text: &str| {
        counter(text, dolbom_monitor::metrics::READINGS_ACCEPTED)
            + counter(text, dolbom_monitor::metrics::READINGS_REJECTED)
    };
    let base = taken(&metrics.render());
    let token = CancellationToken::new();
    let mon = tokio::spawn(dolbom_monitor::run(opts.clone(), token.clone()));
    let mut first = None;
    let readings_f = readings as f64;
    let mut processed = 0.0;
    let deadline = Instant::now() + Duration::from_secs(600);
    while processed < readings_f && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        processed = taken(&metrics.render()) - base;
        if processed > 0.0 {
            first.get_or_insert_with(Instant::now);
        }
    }
    let mon_secs = first.map_or(f64::NAN, |f| f.elapsed().as_secs_f64());
    token.cancel();
    mon.await??;
    let rate = processed / mon_secs;
    println!(
        "monitor ({})  {processed:.0} readings in {mon_secs:.2} s = {rate:.0} readings/s",
        opts.group_id
    );
    Ok(rate)
}

async fn throughput(
    brokers: &str,
    opts: &MonitorOptions,
    metrics: &metrics_exporter_prometheus::PrometheusHandle,
    readings: usize,
    households: usize,
    otel_switch: &OtelSwitch,
) -> anyhow::Result<()> {
    let brokers = brokers.to_string();
    let prefix = opts.group_id.trim_end_matches("-monitor").to_string();
    // ── produce ──
    let p = producer(&brokers)?;
    let t = &opts.topics;
    for h in 0..households {
        let id = format!("hh-{h:07}");
        let c = config(&id, &format!("plug-{h:07}"), T0_MS, 0).encode_to_vec();
        send(&p, &t.households, (h % PARTITIONS as usize) as i32, &id, &c);
    }
    let started = Instant::now();
    for n in 0..readings {
        let h = n % households;
        let minute = (n / households) as i64;
        let r = pb::PlugReading {
            device_id: format!("plug-{h:07}"),
            household_id: format!("hh-{h:07}"),
            observed_at_ms: T0_MS + minute * 60_000,
            watts: Some(if (minute + h as i64) % 30 < 15 {
                120.0
            } else {
                4.0
            }),
            lux: Some(80.0),
            sequence: minute as u64,
            current_amps: None,
        }
        .encode_to_vec();
        send(
            &p,
            &t.readings,
            (h % PARTITIONS as usize) as i32,
            &format!("hh-{h:07}"),
            &r,
        );
    }
    p.flush(Duration::from_secs(60))?;
    let produce_secs = started.elapsed().as_secs_f64();
    println!("produced            {readings} readings for {households} households in {produce_secs:.1} s ({:.0}/s)", readings as f64 / produce_secs);

    // ── bare consume loops ──
    // (a) one `recv().await` per record; (b) the same, but draining what is
    // already buffered without yielding (`now_or_never`), as the monitor's
    // ingest loop does. Same consumer settings as the monitor's.
    let mut bare_rate = 0.0f64;
    for batched in [false, true] {
        // The monitor's group consumer settings, so only the loop differs.
        let bare: StreamConsumer = KafkaOptions::brokers(&brokers)
            .group_consumer(
                "dolbom-bench",
                &format!("{prefix}-bare-{batched}"),
                "cooperative-sticky",
            )
            .create()?;
        bare.subscribe(&[t.readings.as_str()])?;
        let mut n = 0usize;
        let mut bytes = 0usize;
        let mut first = None;
        let bare_deadline = Instant::now() + Duration::from_secs(600);
        while n < readings && Instant::now() < bare_deadline {
            if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_secs(5), bare.recv()).await {
                first.get_or_insert_with(Instant::now);
                bytes += m.payload().map_or(0, <[u8]>::len);
                n += 1;
                drop(m);
                while batched && n < readings {
                    match futures::FutureExt::now_or_never(bare.recv()) {
                        Some(Ok(m)) => {
                            bytes += m.payload().map_or(0, <[u8]>::len);
                            n += 1;
                        }
                        _ => break,
                    }
                }
            }
        }
        let secs = first.map_or(f64::NAN, |f| f.elapsed().as_secs_f64());
        let rate = n as f64 / secs;
        bare_rate = bare_rate.max(rate);
        println!(
            "bare loop {}  {n} records ({bytes} B) in {secs:.2} s = {rate:.0} records/s",
            if batched { "batched " } else { "per-recv" }
        );
    }

    // ── the monitor, tracing off, then exporting at the sampling ratio ──
    let off = monitor_pass(opts, metrics, readings).await?;
    println!(
        "ratio               {:.2} of the faster bare loop (target ≥ 0.5; aim ≥ 300k readings/s)",
        off / bare_rate
    );
    let ratio: f64 = std::env::var("DOLBOM_BENCH_TRACE_RATIO")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0.01);
    let spans = Sink::default();
    let telemetry = dolbom_telemetry::TelemetryOptions {
        otlp_endpoint: sink(spans.clone()).await?,
        sample_ratio: ratio,
        ..Default::default()
    };
    let provider = dolbom_telemetry::provider("monitor-bench", &telemetry)?
        .ok_or_else(|| anyhow::anyhow!("no tracer provider"))?;
    {
        use opentelemetry::trace::TracerProvider as _;
        otel_switch.reload(Some(
            tracing_opentelemetry::layer().with_tracer(provider.tracer("dolbom")),
        ))?;
    }
    let traced_opts = MonitorOptions {
        group_id: format!("{}-traced", opts.group_id),
        snapshot_dir: opts.snapshot_dir.with_extension("traced"),
        ..opts.clone()
    };
    let traced = monitor_pass(&traced_opts, metrics, readings).await?;
    let _ = provider.force_flush();
    otel_switch.reload(None)?;
    println!(
        "tracing at {:.0} %    {:.2} of the faster bare loop; {:.3} of the monitor without tracing (spans exported: {:?})",
        ratio * 100.0,
        traced / bare_rate,
        traced / off,
        spans.0.lock().unwrap()
    );
    Ok(())
}

async fn latency(
    brokers: &str,
    prefix: &str,
    dir: &std::path::Path,
    latency_households: usize,
) -> anyhow::Result<()> {
    let brokers = brokers.to_string();
    // ── latency: many deadlines due at once ──
    let prefix = format!("{prefix}lat");
    let opts = options(&brokers, &prefix, ClockMode::Wall, dir);
    dolbom_monitor::kafka::ensure_topics(&opts).await?;
    let t = opts.topics.clone();
    let token = CancellationToken::new();
    let mon = tokio::spawn(dolbom_monitor::run(opts.clone(), token.clone()));
    tokio::time::sleep(Duration::from_secs(8)).await; // group join + restore
    let now_ms = || dolbom_domain::Ts::now().millis();
    let clocks: Vec<String> = (0..PARTITIONS).map(|p| format!("clock-{p}")).collect();
    let prod = producer(&brokers)?;
    for (part, id) in clocks.iter().enumerate() {
        let c = config(id, &format!("{id}-plug"), now_ms(), 0).encode_to_vec();
        send(&prod, &t.households, part as i32, id, &c);
    }
    for h in 0..latency_households {
        let id = format!("quiet-{h:07}");
        let c = config(&id, &format!("{id}-plug"), now_ms(), 3).encode_to_vec();
        send(
            &prod,
            &t.households,
            (h % PARTITIONS as usize) as i32,
            &id,
            &c,
        );
    }
    prod.flush(Duration::from_secs(30))?;
    // Busy households keep event time moving; quiet ones report once, unchanged.
    let clock_task = {
        let prod = prod.clone();
        let t = t.clone();
        let clocks = clocks.clone();
        let stop = token.clone();
        tokio::spawn(async move {
            let mut seq = 0u64;
            while !stop.is_cancelled() {
                seq += 1;
                {
                    // Quiet households: alive, unchanged, each every 30 s,
                    // spread evenly like real plugs (1/300 of them per tick).
                    for h in (0..latency_households).filter(|h| (*h as u64) % 300 == seq % 300) {
                        let id = format!("quiet-{h:07}");
                        let r = pb::PlugReading {
                            device_id: format!("{id}-plug"),
                            household_id: id.clone(),
                            observed_at_ms: dolbom_domain::Ts::now().millis(),
                            watts: Some(2.0),
                            lux: Some(5.0),
                            sequence: seq,
                            current_amps: None,
                        }
                        .encode_to_vec();
                        send(
                            &prod,
                            &t.readings,
                            (h % PARTITIONS as usize) as i32,
                            &id,
                            &r,
                        );
                    }
                }
                for (p, id) in clocks.iter().enumerate() {
                    let r = pb::PlugReading {
                        device_id: format!("{id}-plug"),
                        household_id: id.clone(),
                        observed_at_ms: dolbom_domain::Ts::now().millis(),
                        watts: Some(if seq.is_multiple_of(2) { 200.0 } else { 3.0 }),
                        lux: Some(50.0),
                        sequence: seq,
                        current_amps: None,
                    }
                    .encode_to_vec();
                    send(&prod, &t.readings, p as i32, id, &r);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let reader: StreamConsumer = KafkaOptions::brokers(&brokers)
        .group_consumer(
            "dolbom-bench",
            &format!("{prefix}-reader"),
            "cooperative-sticky",
        )
        .set("fetch.wait.max.ms", "10")
        .create()?;
    reader.subscribe(&[t.incidents.as_str()])?;
    let mut lat = Vec::with_capacity(latency_households);
    let mut emit_lat = Vec::with_capacity(latency_households);
    let (mut due_min, mut due_max) = (i64::MAX, i64::MIN);
    let deadline = Instant::now() + Duration::from_secs(300);
    while lat.len() < latency_households && Instant::now() < deadline {
        if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_secs(1), reader.recv()).await {
            let Some(ev) = m.payload().and_then(|b| pb::IncidentEvent::decode(b).ok()) else {
                continue;
            };
            if ev.r#type == pb::IncidentEventType::Opened as i32
                && ev.household_id.starts_with("quiet-")
            {
                let due = ev
                    .due_at
                    .map_or(0, |d| d.seconds * 1000 + d.nanos as i64 / 1_000_000);
                lat.push((dolbom_domain::Ts::now().millis() - due) as f64 / 1000.0);
                let emitted = ev
                    .emitted_at
                    .map_or(0, |d| d.seconds * 1000 + d.nanos as i64 / 1_000_000);
                emit_lat.push((emitted - due) as f64 / 1000.0);
                due_min = due_min.min(due);
                due_max = due_max.max(due);
            }
        }
    }
    token.cancel();
    let _ = clock_task.await;
    mon.await??;
    lat.sort_by(f64::total_cmp);
    emit_lat.sort_by(f64::total_cmp);
    println!(
        "latency             {} of {latency_households} deadlines (due within ~{:.1} s of each other) raised; \
         due→read back p50 {:.3} s, p99 {:.3} s, max {:.3} s (target p99 ≤ 1 s)",
        lat.len(),
        (due_max - due_min) as f64 / 1000.0,
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "  of which in the monitor (due → emitted_at): p50 {:.3} s, p99 {:.3} s",
        percentile(&emit_lat, 0.5),
        percentile(&emit_lat, 0.99)
    );
    Ok(())
}

fn tempdir() -> anyhow::Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!("dolbom-monitor-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}
