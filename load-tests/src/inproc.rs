//! The in-process path: plug simulator → in-process bus → the monitor's
//! shard code → notify core and history writer, on simulated time.
//!
//! One task per partition hosts a [`Shard`] in wall-clock mode whose "wall
//! clock" is simulated time: each slice of readings is handed to the shards
//! with the slice's end as the time, then every shard advances (fires what
//! is due, checks its health). A pipeline stall is simulated by holding the
//! slices back while the clock goes on, then delivering the backlog. The
//! generator runs on its own thread, one simulated minute ahead. Every
//! incident event goes to the notify core (escalation, on simulated time)
//! and the history writer (embedded store), and is recorded with its
//! detection latency for the check.

use crate::scenario::{self, Downstream, Meter, Report, Scenario, SliceClock};
use crate::sim::{PlugSim, Slice};
use crate::truth::{self, CheckOptions, GroundTruth, SeenEvent, Stall, StallClock};
use dolbom_calendar::{HolidayCalendar, OfficeHours, Router};
use dolbom_domain::{HouseholdConfig, Ts, MINUTE_MS};
use dolbom_escalation::Policy;
use dolbom_history::{EmbeddedStore, HistoryWriter, Retention, WriterOptions};
use dolbom_notify::options::MunicipalityPolicy;
use dolbom_notify::{NoPublisher, NotifyOptions};
use dolbom_proto::v1 as pb;
use dolbom_shard::{ClockMode, Output, Shard, ShardOptions};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

enum Msg {
    Config(Box<HouseholdConfig>, Ts),
    Readings(Vec<pb::PlugReading>, Ts),
    Advance(Ts, oneshot::Sender<(Vec<Output>, u64)>),
}

async fn serve(mut shard: Shard, mut rx: mpsc::Receiver<Msg>) {
    let mut out = Vec::new();
    let mut rejected = 0u64;
    while let Some(m) = rx.recv().await {
        match m {
            Msg::Config(cfg, wall) => {
                if let Err(e) = shard.apply_config(*cfg, wall, &mut out) {
                    tracing::warn!(error = %e, "config rejected");
                }
            }
            Msg::Readings(rs, wall) => {
                for r in &rs {
                    if shard.on_reading(r, wall, &mut out).is_err() {
                        rejected += 1;
                    }
                }
            }
            Msg::Advance(wall, reply) => {
                shard.advance(wall, &mut out);
                let _ = reply.send((std::mem::take(&mut out), std::mem::take(&mut rejected)));
            }
        }
    }
}

struct Bus {
    parts: Vec<mpsc::Sender<Msg>>,
    batches: Vec<Vec<pb::PlugReading>>,
    rejected: u64,
}

fn partition_of(household: &str, n: usize) -> usize {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    household.hash(&mut h);
    (h.finish() % n as u64) as usize
}

impl Bus {
    fn start(n: usize, opts: &ShardOptions, router: &Router, start: Ts) -> Bus {
        let parts = (0..n)
            .map(|p| {
                let (tx, rx) = mpsc::channel(16);
                tokio::spawn(serve(
                    Shard::new(p as i32, opts.clone(), router.clone(), start),
                    rx,
                ));
                tx
            })
            .collect();
        Bus {
            parts,
            batches: vec![Vec::new(); n],
            rejected: 0,
        }
    }

    async fn config(&self, cfg: &HouseholdConfig, wall: Ts) {
        let p = partition_of(cfg.household_id.as_str(), self.parts.len());
        let _ = self.parts[p]
            .send(Msg::Config(Box::new(cfg.clone()), wall))
            .await;
    }

    async fn deliver(&mut self, readings: Vec<pb::PlugReading>, wall: Ts) {
        let n = self.parts.len();
        for r in readings {
            let p = partition_of(&r.household_id, n);
            self.batches[p].push(r);
        }
        for (p, b) in self.batches.iter_mut().enumerate() {
            if !b.is_empty() {
                let _ = self.parts[p]
                    .send(Msg::Readings(std::mem::take(b), wall))
                    .await;
            }
        }
    }

    async fn advance(&mut self, wall: Ts) -> Vec<Output> {
        let mut replies = Vec::with_capacity(self.parts.len());
        for p in &self.parts {
            let (tx, rx) = oneshot::channel();
            let _ = p.send(Msg::Advance(wall, tx)).await;
            replies.push(rx);
        }
        let mut all = Vec::new();
        for r in replies {
            if let Ok((out, rejected)) = r.await {
                all.extend(out);
                self.rejected += rejected;
            }
        }
        all
    }
}

/// Runs `sc` in process; returns the report and the ground truth.
pub async fn run(sc: &Scenario) -> anyhow::Result<(Report, GroundTruth, Vec<SeenEvent>)> {
    let spec = sc.sim_spec()?;
    let start = spec.town.start;
    let setup = std::time::Instant::now();
    let pb_bar = scenario::progress(sc.hours as u64 * 60, sc.progress);
    pb_bar.set_message("building the town");
    let sim = PlugSim::new(spec);
    let n = sim.households();
    let rss0 = crate::resident_bytes().unwrap_or(0);

    let router = Router::new(Arc::new(HolidayCalendar::builtin()), OfficeHours::default());
    let shard_opts = ShardOptions {
        clock: ClockMode::Wall,
        allowed_lateness_ms: sc.allowed_lateness_ms,
        ..ShardOptions::default()
    };
    let mut bus = Bus::start(sc.partitions, &shard_opts, &router, start);
    pb_bar.set_message("registering households");
    for cfg in sim.configs() {
        bus.config(cfg, start).await;
    }
    bus.advance(start).await;
    let rss1 = crate::resident_bytes().unwrap_or(0);
    let monitor_bytes = (rss1 > rss0).then(|| (rss1 - rss0) as f64 / n as f64);

    // History (incident events; reading aggregates are left out: at a
    // million households a minute each they would fill this disk) and notify.
    let dir = tempfile::tempdir()?;
    let sim_now = Arc::new(AtomicI64::new(start.millis()));
    let now = sim_now.clone();
    let store = EmbeddedStore::open_dir_with_clock(
        dir.path(),
        Retention::default(),
        Arc::new(move || now.load(Ordering::Relaxed)),
    )?;
    let (writer, writer_task) =
        HistoryWriter::spawn(Arc::new(store.clone()), WriterOptions::default());
    let notify_opts = NotifyOptions {
        data_dir: dir.path().join("notify"),
        create_contact_key: true,
        policies: vec![MunicipalityPolicy {
            municipality: "*".into(),
            policy: Policy::watch_only(),
        }],
        ..Default::default()
    };
    std::fs::create_dir_all(&notify_opts.data_dir)?;
    let now = sim_now.clone();
    let clock: dolbom_notify::Clock = Arc::new(move || Ts(now.load(Ordering::Relaxed)));
    let notify = dolbom_notify::build(
        &notify_opts,
        clock,
        Arc::new(NoPublisher),
        Arc::new(store.clone()),
    )
    .await?;

    // The generator, one minute ahead on its own thread.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Slice>>(1);
    let generator = std::thread::spawn(move || {
        let mut sim = sim;
        while !sim.done() {
            let mut slices = Vec::new();
            sim.next_minute(&mut slices);
            if tx.send(slices).is_err() {
                break;
            }
        }
        sim
    });
    let rx = Arc::new(std::sync::Mutex::new(rx));

    let stall = sc.stall_at_hours.map(|h| {
        let from = start.plus_ms((h * 3_600_000.0) as i64);
        (from, from.plus_ms(sc.stall_minutes * MINUTE_MS))
    });
    let mut clock = SliceClock::default();
    let mut seen: Vec<SeenEvent> = Vec::new();
    let mut backlog: Vec<Slice> = Vec::new();
    let mut delivered = 0u64;
    let mut minute = 0u64;
    pb_bar.set_message("");
    let setup_s = setup.elapsed().as_secs_f64();
    let mut meter = Meter::new();
    loop {
        let r = rx.clone();
        let Some(slices) =
            tokio::task::spawn_blocking(move || r.lock().expect("rx").recv().ok()).await?
        else {
            break;
        };
        for slice in slices {
            let wall = slice.end;
            sim_now.store(wall.millis(), Ordering::Relaxed);
            let stalled = stall.is_some_and(|(f, u)| wall > f && wall <= u);
            let mut outputs = Vec::new();
            if stalled {
                backlog.push(slice);
                outputs = bus.advance(wall).await;
            } else {
                // The backlog goes out as a consumer would read it after a
                // stall: in order, the shards ticking after each batch.
                for s in backlog.drain(..).chain(std::iter::once(slice)) {
                    clock.handed_over(s.end.millis(), meter.elapsed());
                    delivered += s.readings.len() as u64;
                    bus.deliver(s.readings, wall).await;
                    outputs.extend(bus.advance(wall).await);
                }
            }
            let at = meter.elapsed();
            let mut events = Vec::new();
            for o in outputs {
                if let Output::Event(ev) = o {
                    let due = scenario::detectable_from(&ev);
                    let latency = clock
                        .passed(due, sc.allowed_lateness_ms)
                        .map(|w| (at - w).max(0.0));
                    if let Some(l) = latency {
                        meter.latency(l);
                    }
                    seen.push(SeenEvent::from_wire(&ev, latency, at));
                    writer.send_incident_event((*ev).clone()).await?;
                    events.push(*ev);
                }
            }
            if !events.is_empty() {
                notify.core.ingest(events).await?;
            }
            meter.tick(delivered, wall);
        }
        notify.core.tick().await?;
        minute += 1;
        pb_bar.set_position(minute);
        if minute.is_multiple_of(10) {
            let msg = format!(
                "{:.0} readings/s, {} incident events",
                delivered as f64 / meter.elapsed().max(1e-9),
                seen.len()
            );
            if sc.progress && pb_bar.is_hidden() && minute.is_multiple_of(60) {
                eprintln!(
                    "{minute} simulated minutes in {:.0} s: {msg}",
                    meter.elapsed()
                );
            }
            pb_bar.set_message(msg);
        }
    }
    pb_bar.finish_and_clear();
    let sim = generator
        .join()
        .map_err(|_| anyhow::anyhow!("generator thread panicked"))?;
    let end = sim.end();
    // Whatever a stall still held back at the very end.
    for s in backlog.drain(..) {
        bus.deliver(s.readings, end).await;
    }

    notify.core.drain_deliveries().await;
    let counts = notify.core.counts().await?;
    writer.flush().await?;
    let history_events = writer.written();
    drop(writer);
    notify.history_writer.flush().await?;
    drop(notify);
    let _ = writer_task.await;

    let mut truth = sim.truth();
    if let Some((f, u)) = stall {
        truth.stalls.push(Stall {
            clock: StallClock::Simulated,
            from_ms: f.millis(),
            until_ms: u.millis(),
            sim_from_ms: f.millis(),
            sim_until_ms: u.millis(),
        });
    }
    let verdict = truth::check(&truth, &seen, &CheckOptions::default());
    let downstream = Downstream::new(&seen, &counts, history_events);
    tracing::info!(rejected = bus.rejected, "readings rejected by the shards");
    let report = scenario::report(
        sc,
        &meter,
        setup_s,
        sim.stats,
        end.since(start),
        monitor_bytes,
        None,
        verdict,
        downstream,
    );
    Ok((report, truth, seen))
}
