//! Notifications per second and their latency through the notify service.
//!
//! `cargo run --release -p dolbom-load-tests --bin notify-bench -- [--events N] [--rate R] [--batch B]`
//!
//! Starts the notify service in-process on a loopback port (its own
//! `notify.sqlite` with `synchronous=FULL`, the embedded history store, the
//! real gRPC server and token check), a signed-webhook receiver on another
//! loopback port, and one `WatchIncidents` subscriber over gRPC. It then
//! feeds `N` OPENED incident events (distinct households, office hours, the
//! policy's first step on the watch stream and a webhook) into the core in
//! batches of `B` — the way the Kafka consumer does — at `R` events/s
//! (0 = as fast as the service takes them). Each event becomes two
//! notifications: the event on the watch stream, and a signed webhook POST.
//!
//! Printed: events in per second, watch notifications per second with the
//! latency from the start of the event's ingest to its arrival at the gRPC
//! subscriber, and webhook deliveries per second with the latency to the
//! receiver, p50/p99/max. Everything shares the machine's two cores.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use clap::Parser;
use dolbom_auth::{unix_now, Principal, SigningKey, Verifier};
use dolbom_domain::convert::timestamp;
use dolbom_domain::Ts;
use dolbom_escalation::{ChannelKind, Policy};
use dolbom_history::{EmbeddedStore, HistoryStore, Retention};
use dolbom_notify::channels::{verify_webhook, Recipient, RetryOptions};
use dolbom_notify::options::MunicipalityPolicy;
use dolbom_notify::webhook::Batch;
use dolbom_notify::{NoPublisher, NotifyOptions};
use dolbom_proto::v1 as pb;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
struct Args {
    /// Incident events to send.
    #[arg(long, default_value_t = 100_000)]
    events: usize,
    /// Offered events per second (0 = as fast as possible).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Events per ingest batch.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Only the watch stream (no webhook per event).
    #[arg(long)]
    watch_only: bool,
    /// Batched webhooks: several signed notifications per request.
    #[arg(long)]
    webhook_batch: bool,
    /// Run the webhook receiver inside the benchmark's own process (and
    /// runtime) instead of a separate process.
    #[arg(long)]
    receiver_in_process: bool,
    /// (Internal) be the webhook receiver: print `listening ADDR`, then
    /// `INCIDENT_ID UNIX_MICROS` per verified webhook.
    #[arg(long, hide = true)]
    serve_receiver: bool,
}

/// Wall-clock microseconds (latencies here are sub-millisecond, finer than
/// the platform's `Ts`): comparable between the benchmark and its receiver
/// process on the same machine.
fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

const SECRET: &str = "bench-webhook-secret-0123";

#[derive(Clone)]
struct Receiver {
    tx: mpsc::UnboundedSender<(String, i64)>,
}

async fn hook(State(r): State<Receiver>, headers: HeaderMap, body: String) -> StatusCode {
    let at = now_us();
    let ts: u64 = headers["x-dolbom-timestamp"]
        .to_str()
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let sig = headers["x-dolbom-signature"].to_str().unwrap_or("");
    if !verify_webhook(SECRET, ts, body.as_bytes(), sig) {
        return StatusCode::UNAUTHORIZED;
    }
    let incident = |body: &str| {
        let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        v["incident_id"].as_str().unwrap_or("").to_string()
    };
    if headers.contains_key("x-dolbom-batch") {
        // A batch: every element verified on its own, as a receiver must.
        let Ok(batch) = serde_json::from_str::<Batch>(&body) else {
            return StatusCode::BAD_REQUEST;
        };
        if !batch.notifications.iter().all(|n| n.verify(SECRET)) {
            return StatusCode::UNAUTHORIZED;
        }
        for n in &batch.notifications {
            let _ = r.tx.send((incident(&n.body), at));
        }
    } else {
        let _ = r.tx.send((incident(&body), at));
    }
    StatusCode::NO_CONTENT
}

fn elapsed(from_us: i64, to_us: i64) -> Duration {
    Duration::from_micros((to_us - from_us).max(1) as u64)
}

/// [`dolbom_load_tests::percentile`], NaN without samples.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    dolbom_load_tests::percentile(sorted, p).unwrap_or(f64::NAN)
}

fn report(name: &str, mut lat_ms: Vec<f64>, elapsed: Duration) {
    lat_ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "{name:<22} {:>8} in {:>6.2} s = {:>8.0}/s   latency ms p50 {:>7.2}  p99 {:>7.2}  max {:>7.2}",
        lat_ms.len(),
        elapsed.as_secs_f64(),
        lat_ms.len() as f64 / elapsed.as_secs_f64(),
        percentile(&lat_ms, 0.50),
        percentile(&lat_ms, 0.99),
        lat_ms.last().copied().unwrap_or(f64::NAN),
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (hook_tx, mut hook_rx) = mpsc::unbounded_channel();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state(Receiver {
            tx: hook_tx.clone(),
        });
    if args.serve_receiver {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("listening {}", l.local_addr()?);
        tokio::spawn(async move { axum::serve(l, app).await });
        use std::io::Write as _;
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        while let Some((id, at)) = hook_rx.recv().await {
            writeln!(out, "{id} {at}")?;
            if hook_rx.is_empty() {
                out.flush()?;
            }
        }
        return Ok(());
    }
    let dir = tempfile::tempdir()?;

    // The webhook receiver: its own process unless asked otherwise.
    let mut receiver_child = None;
    let hook_url = if args.receiver_in_process {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hook", l.local_addr()?);
        tokio::spawn(async move { axum::serve(l, app).await });
        url
    } else {
        let mut child = tokio::process::Command::new(std::env::current_exe()?)
            .arg("--serve-receiver")
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        use tokio::io::AsyncBufReadExt as _;
        let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("piped")).lines();
        let first = lines.next_line().await?.unwrap_or_default();
        let addr = first
            .strip_prefix("listening ")
            .ok_or_else(|| anyhow::anyhow!("receiver said {first:?}"))?
            .to_string();
        let tx = hook_tx.clone();
        tokio::spawn(async move {
            while let Ok(Some(l)) = lines.next_line().await {
                if let Some((id, at)) = l.split_once(' ') {
                    let _ = tx.send((id.to_string(), at.parse().unwrap_or(0)));
                }
            }
        });
        receiver_child = Some(child);
        format!("http://{addr}/hook")
    };
    drop(hook_tx);

    // Only the first step pushes (the bench never waits for later steps).
    let mut policy = Policy::watch_only();
    policy.steps[0].channels = if args.watch_only {
        vec![ChannelKind::Watch]
    } else {
        vec![ChannelKind::Watch, ChannelKind::Webhook]
    };
    let opts = NotifyOptions {
        data_dir: dir.path().to_path_buf(),
        create_contact_key: true,
        recipients: vec![Recipient {
            municipality: "*".into(),
            tier: "DONG_OFFICE".into(),
            webhook_url: hook_url,
            webhook_secret: SECRET.into(),
            webhook_batch: args.webhook_batch,
            // The receiver is on loopback, in the clear.
            allow_insecure_http: true,
            ..Default::default()
        }],
        policies: vec![MunicipalityPolicy {
            municipality: "*".into(),
            policy,
        }],
        retry: RetryOptions::default(),
        max_in_flight: 512,
        ..Default::default()
    };
    let history: Arc<dyn HistoryStore> =
        Arc::new(EmbeddedStore::open_dir(dir.path(), Retention::default())?);
    // Monday 2026-11-23 10:00 KST: the dong offices are open.
    let now = Ts::from_kst(
        chrono::NaiveDate::from_ymd_opt(2026, 11, 23)
            .unwrap()
            .and_hms_opt(10, 0, 0)
            .unwrap(),
    );
    let built =
        dolbom_notify::build(&opts, Arc::new(move || now), Arc::new(NoPublisher), history).await?;
    let core = built.core.clone();
    let key = SigningKey::generate("bench")?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = format!("http://{}", listener.local_addr()?);
    let stop = CancellationToken::new();
    let server = tokio::spawn(dolbom_notify::serve(
        built.api,
        Verifier::new(&[key.verifying_key()]),
        listener,
        stop.clone(),
    ));

    // The watch subscriber, over gRPC with a municipality token.
    let token = key.mint(
        &Principal::municipality("bench", "11110", false),
        unix_now(),
        3600,
    )?;
    let channel = tonic::transport::Channel::from_shared(endpoint)?
        .connect()
        .await?;
    let auth = move |mut r: tonic::Request<()>| {
        r.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        Ok(r)
    };
    let mut client =
        pb::incident_service_client::IncidentServiceClient::with_interceptor(channel, auth);
    let mut stream = client
        .watch_incidents(pb::WatchIncidentsRequest::default())
        .await?
        .into_inner();
    let sent: Arc<Mutex<HashMap<String, i64>>> = Arc::new(Mutex::new(HashMap::new()));
    let n = args.events;
    let watch_sent = sent.clone();
    let watcher = tokio::spawn(async move {
        let mut lat = Vec::with_capacity(n);
        let mut last = now_us();
        while lat.len() < n {
            let Ok(Some(m)) = stream.message().await else {
                break;
            };
            let at = now_us();
            if let Some(ev) = m.event {
                if let Some(t0) = watch_sent.lock().unwrap().get(&ev.incident_id) {
                    lat.push((at - t0) as f64 / 1000.0);
                }
            }
            last = at;
        }
        (lat, last)
    });
    let hook_sent = sent.clone();
    let hooks = tokio::spawn(async move {
        let mut lat = Vec::with_capacity(n);
        let mut last = now_us();
        while lat.len() < n {
            let Some((id, at)) = hook_rx.recv().await else {
                break;
            };
            if let Some(t0) = hook_sent.lock().unwrap().get(&id) {
                lat.push((at - t0) as f64 / 1000.0);
            }
            last = at;
        }
        (lat, last)
    });

    println!(
        "notify-bench: {n} OPENED events, batches of {}, offered rate {}",
        args.batch,
        if args.rate == 0 {
            "unlimited".to_string()
        } else {
            format!("{}/s", args.rate)
        }
    );
    let started = Instant::now();
    let started_us = now_us();
    let mut i = 0usize;
    while i < n {
        let k = args.batch.min(n - i);
        if args.rate > 0 {
            let due = started + Duration::from_secs_f64(i as f64 / args.rate as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        let at = now_us();
        let mut batch = Vec::with_capacity(k);
        {
            let mut s = sent.lock().unwrap();
            for j in i..i + k {
                let incident_id = format!("INA:hh-{j:08}:1000");
                s.insert(incident_id.clone(), at);
                batch.push(pb::IncidentEvent {
                    event_id: format!("{incident_id}/1/2"),
                    incident_id,
                    household_id: format!("hh-{j:08}"),
                    municipality_code: "11110".into(),
                    dong_code: "1111051500".into(),
                    kind: pb::IncidentKind::Inactivity as i32,
                    r#type: pb::IncidentEventType::Opened as i32,
                    stage: pb::Stage::Attention as i32,
                    due_at: Some(timestamp(now)),
                    emitted_at: Some(timestamp(now)),
                    ..Default::default()
                });
            }
        }
        core.ingest(batch).await?;
        i += k;
    }
    let ingested = started.elapsed();
    println!(
        "{:<22} {:>8} in {:>6.2} s = {:>8.0}/s",
        "events ingested",
        n,
        ingested.as_secs_f64(),
        n as f64 / ingested.as_secs_f64()
    );
    let (wl, wlast) = tokio::time::timeout(Duration::from_secs(600), watcher).await??;
    report("watch notifications", wl, elapsed(started_us, wlast));
    if !args.watch_only {
        let (hl, hlast) = tokio::time::timeout(Duration::from_secs(600), hooks).await??;
        report("webhook deliveries", hl, elapsed(started_us, hlast));
    }
    let counts = core.counts().await?;
    println!(
        "store: {} incidents, {} messages delivered, {} failed, {} pending",
        counts.incidents,
        counts.messages_delivered,
        counts.messages_failed,
        counts.messages_pending
    );
    stop.cancel();
    let _ = server.await;
    drop(receiver_child);
    Ok(())
}
