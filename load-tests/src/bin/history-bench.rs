//! Writes per second into the embedded history store, through the same
//! batching writer the platform uses.
//!
//! `cargo run --release -p dolbom-load-tests --bin history-bench -- [households] [minutes] [events]`
//!
//! Writes `minutes` (default 60) minute aggregates for each of `households`
//! (default 10 000) — minute-major, as a downsampler emits them — then rolls
//! their hours up, then writes `events` (default 100 000) incident events with
//! their state changes, into a fresh `history.sqlite` in a temporary
//! directory, and prints records per second for each phase and the bytes on
//! disk per record.

use dolbom_history::{
    Aggregate, EmbeddedStore, HistoryWriter, HourKey, Record, Resolution, Retention, StateChange,
    Summary, WriterOptions, HOUR_MS, MINUTE_MS,
};
use dolbom_proto::v1 as pb;
use std::sync::Arc;
use std::time::Instant;

fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|it| {
            it.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut next = |d: usize| -> anyhow::Result<usize> {
        Ok(args.next().map(|a| a.parse()).transpose()?.unwrap_or(d))
    };
    let (households, minutes, events) = (next(10_000)?, next(60)?, next(100_000)?);
    let dir = tempfile::tempdir()?;
    let store = EmbeddedStore::open_dir(dir.path(), Retention::default())?;
    let (writer, task) = HistoryWriter::spawn(Arc::new(store.clone()), WriterOptions::default());
    let now = dolbom_domain::Ts::now().millis();
    let hour0 = Resolution::Hour.bucket_start(now - 2 * 24 * HOUR_MS);
    let ids: Vec<String> = (0..households).map(|h| format!("hh-{h:07}")).collect();

    let t = Instant::now();
    for m in 0..minutes as i64 {
        for (h, id) in ids.iter().enumerate() {
            let w = (h as f64) + m as f64;
            writer
                .send(Record::Aggregate(Aggregate {
                    household_id: id.clone(),
                    resolution: Resolution::Minute,
                    bucket_start_ms: hour0 + m * MINUTE_MS,
                    readings: 1,
                    watts: Some(Summary::of(w)),
                    lux: Some(Summary::of(w / 3.0)),
                }))
                .await?;
        }
    }
    writer.flush().await?;
    let n = households * minutes;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "minute aggregates  {n} in {secs:.2} s = {:.0} writes/s",
        n as f64 / secs
    );

    let hours = (minutes as i64 + 59) / 60;
    let t = Instant::now();
    for k in 0..hours {
        for id in &ids {
            writer
                .send(Record::RollUpHour(HourKey {
                    household_id: id.clone(),
                    hour_start_ms: hour0 + k * HOUR_MS,
                }))
                .await?;
        }
    }
    writer.flush().await?;
    let n = households * hours as usize;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "hour roll-ups      {n} in {secs:.2} s = {:.0} roll-ups/s (each reads its minutes)",
        n as f64 / secs
    );

    let t = Instant::now();
    for i in 0..events {
        let at = hour0 + (i as i64) * 1000;
        let household = &ids[i % households];
        let e = pb::IncidentEvent {
            event_id: format!("INA:{household}:{i}/1/2"),
            incident_id: format!("INA:{household}:{i}"),
            household_id: household.clone(),
            municipality_code: "11110".into(),
            dong_code: format!("11110{:05}", i % 20),
            kind: pb::IncidentKind::Inactivity as i32,
            r#type: pb::IncidentEventType::Opened as i32,
            stage: pb::Stage::Attention as i32,
            due_at: Some(prost_types::Timestamp {
                seconds: at / 1000,
                nanos: 0,
            }),
            ..Default::default()
        };
        if let Some(s) = StateChange::from_incident_event(&e) {
            writer.send(Record::StateChange(s)).await?;
        }
        writer.send(Record::IncidentEvent(Box::new(e))).await?;
    }
    writer.flush().await?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "incident events    {events} (+ {events} state changes) in {secs:.2} s = {:.0} records/s",
        (2 * events) as f64 / secs
    );
    drop(writer);
    task.await?;
    let total = households * minutes + households * hours as usize + 2 * events;
    let bytes = dir_bytes(dir.path());
    println!(
        "on disk            {:.1} MB for {total} records = {:.0} B/record (SQLite file + WAL)",
        bytes as f64 / 1e6,
        bytes as f64 / total as f64
    );
    Ok(())
}
