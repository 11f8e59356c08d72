//! The standalone run loop: town → in-process bus → shards (the monitor's
//! shard code) → printed incident events, notify and the history → summary
//! checked against the town's ground truth.

use crate::bus::Bus;
use crate::error::StandaloneError;
use crate::history::History;
use crate::options::StandaloneOptions;
use crate::summary::{Recorder, Summary};
use dolbom_calendar::{OfficeHours, Router};
use dolbom_domain::{ManualClock, Ts, MINUTE_MS};
use dolbom_proto::v1 as pb;
use dolbom_shard::{ClockMode, Output, ShardOptions};
use dolbom_town::truth::{check, CheckOptions};
use dolbom_town::{Town, TownReading, TownSpec};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Standalone shards run on event time: a simulation has no pipeline to
/// stall, and every reading arrives in order.
fn shard_options() -> ShardOptions {
    ShardOptions {
        clock: ClockMode::Event,
        allowed_lateness_ms: 0,
        stall_after_ms: i64::MAX / 4,
        ..ShardOptions::default()
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
    let router = Router::load(opts.holidays_file.as_deref(), OfficeHours::default())?;
    let mut town = Town::new(&spec);
    let n = town.len();
    tracing::info!(
        households = n,
        partitions = opts.partitions,
        sim_hours = opts.sim_hours,
        speed = opts.speed,
        "standalone town starting"
    );

    let sim_clock = ManualClock::new(start);
    let mut history = History::open(opts, &sim_clock)?;
    let mut bus = Bus::start(opts.partitions, &shard_options(), &router, start);
    for cfg in town.configs() {
        bus.config(cfg.clone(), start).await;
    }

    // The notify service and its gRPC API, over the same history store.
    let (to_bus, mut from_api) = mpsc::unbounded_channel();
    let api = match history.as_ref() {
        Some(h) if !opts.grpc_listen.is_empty() => {
            let api = crate::api::Api::start(
                &opts.grpc_listen,
                &opts.data_dir,
                dolbom_town::MUNICIPALITY,
                std::sync::Arc::new(h.store.clone()),
                sim_clock.clone(),
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
    let mut recorder = Recorder::new(opts.print_events);
    let mut readings: Vec<TownReading> = Vec::with_capacity(n);
    let real_start = tokio::time::Instant::now();

    let end = start.plus_ms(duration_ms);
    let mut t = start;
    while t <= end {
        if shutdown.is_cancelled() {
            summary.cancelled = true;
            break;
        }
        // Registry changes made over the API reach the shards first.
        while let Ok(cfg) = from_api.try_recv() {
            bus.config(cfg, t).await;
        }
        readings.clear();
        town.readings_at(t, &mut readings);
        sim_clock.set(t);
        let mut wire = Vec::with_capacity(readings.len());
        for r in &readings {
            let w = town.wire_reading(r);
            if let Some(h) = history.as_mut() {
                h.downsampler.push(
                    &w.household_id,
                    w.observed_at_ms,
                    w.watts,
                    w.lux,
                    t.millis(),
                );
            }
            wire.push(w);
        }
        summary.readings += wire.len() as u64;
        bus.deliver(wire, t).await;
        let advanced = bus.advance(t).await;
        summary.readings_rejected += advanced.rejected;
        summary.readings_duplicate += advanced.duplicates;
        let mut events = Vec::new();
        for o in advanced.outputs {
            match o {
                Output::Event(wire) => {
                    recorder.record(&wire, &mut summary);
                    if let Some(h) = history.as_mut() {
                        h.writer.send_incident_event((*wire).clone()).await?;
                    }
                    events.push(*wire);
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
    let (incidents, seen) = recorder.finish();
    summary.incidents = incidents;
    if let Some(h) = history {
        summary.history = Some(h.finish().await?);
    }
    // The last minute handed to the shards.
    let last = t.plus_ms(-MINUTE_MS).min(end);
    let truth = town.ground_truth(start, last, opts.seed);
    summary.judge(check(&truth, &seen, &CheckOptions::default()));
    Ok(summary)
}
