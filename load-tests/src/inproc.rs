//! The in-process path: plug simulator → in-process bus → the monitor's
//! shard code → notify core and history writer, on simulated time.
//!
//! The standalone in-process bus ([`dolbom_standalone::bus`]) hosts one
//! [`dolbom_shard::Shard`] per partition in wall-clock mode whose "wall
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
use dolbom_calendar::Router;
use dolbom_domain::{ManualClock, MINUTE_MS};
use dolbom_escalation::Policy;
use dolbom_history::{EmbeddedStore, HistoryWriter, Retention, WriterOptions};
use dolbom_notify::options::MunicipalityPolicy;
use dolbom_notify::{NoPublisher, NotifyOptions};
use dolbom_shard::{ClockMode, Output, ShardOptions};
use dolbom_standalone::bus::Bus;
use dolbom_town::truth::{self, CheckOptions, GroundTruth, SeenEvent, Stall, StallClock};
use std::sync::Arc;

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

    let router = Router::builtin();
    let shard_opts = ShardOptions {
        clock: ClockMode::Wall,
        allowed_lateness_ms: sc.allowed_lateness_ms,
        ..ShardOptions::default()
    };
    let mut bus = Bus::start(sc.partitions, &shard_opts, &router, start);
    let mut rejected = 0;
    pb_bar.set_message("registering households");
    for cfg in sim.configs() {
        bus.config(cfg.clone(), start).await;
    }
    bus.advance(start).await;
    let rss1 = crate::resident_bytes().unwrap_or(0);
    let monitor_bytes = (rss1 > rss0).then(|| (rss1 - rss0) as f64 / n as f64);

    // History (incident events; reading aggregates are left out: at a
    // million households a minute each they would fill this disk) and notify.
    let dir = tempfile::tempdir()?;
    let sim_clock = ManualClock::new(start);
    let store =
        EmbeddedStore::open_dir_with_clock(dir.path(), Retention::default(), sim_clock.shared())?;
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
    let notify = dolbom_notify::build(
        &notify_opts,
        sim_clock.shared(),
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
            sim_clock.set(wall);
            let stalled = stall.is_some_and(|(f, u)| wall > f && wall <= u);
            let mut outputs = Vec::new();
            if stalled {
                backlog.push(slice);
                let a = bus.advance(wall).await;
                rejected += a.rejected;
                outputs = a.outputs;
            } else {
                // The backlog goes out as a consumer would read it after a
                // stall: in order, the shards ticking after each batch.
                for s in backlog.drain(..).chain(std::iter::once(slice)) {
                    clock.handed_over(s.end.millis(), meter.elapsed());
                    delivered += s.readings.len() as u64;
                    bus.deliver(s.readings, wall).await;
                    let a = bus.advance(wall).await;
                    rejected += a.rejected;
                    outputs.extend(a.outputs);
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
    tracing::info!(rejected, "readings rejected by the shards");
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
