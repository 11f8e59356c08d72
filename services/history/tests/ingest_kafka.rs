//! The history ingest against a real Kafka-protocol broker (Tansu): readings
//! become minute and hour aggregates, incident events and state changes are
//! stored once, a malformed record and readings with negative or NaN watts
//! are skipped, readings from plugs whose clocks run ahead (year 3000, seven
//! minutes) count at their send time and harm no other reading, and a
//! restart of the ingest (same group) neither loses nor double-counts
//! readings.

use std::io::Write as _;

use dolbom_history::{EmbeddedStore, HistoryStore, IncidentQuery, Resolution, HOUR_MS, MINUTE_MS};
use dolbom_history_ingest::{run, HistoryOptions};
use dolbom_proto::v1 as pb;
use prost::Message;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const HOUSEHOLDS: i64 = 6;

/// Records as (key, payload, Kafka timestamp ms: when it was sent, if set).
type Rec = (String, Vec<u8>, Option<i64>);

async fn produce(brokers: &str, topic: &str, records: Vec<Rec>) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    for (key, payload, sent) in records {
        let mut rec = FutureRecord::to(topic).key(&key).payload(&payload);
        if let Some(ms) = sent {
            rec = rec.timestamp(ms);
        }
        producer
            .send(rec, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
}

/// Every household's reading of each minute, each sent when it was observed.
fn readings(t0: i64, minutes: std::ops::Range<i64>) -> Vec<Rec> {
    let mut out = Vec::new();
    for m in minutes {
        for h in 0..HOUSEHOLDS {
            let r = pb::PlugReading {
                device_id: format!("plug-{h}"),
                household_id: format!("hh-{h}"),
                observed_at_ms: t0 + m * MINUTE_MS + h * 1000,
                watts: Some(10.0 + m as f64),
                lux: Some(100.0),
                sequence: m as u64,
                current_amps: None,
            };
            out.push((
                r.household_id.clone(),
                r.encode_to_vec(),
                Some(r.observed_at_ms),
            ));
        }
    }
    out
}

async fn readings_stored(store: &EmbeddedStore, t0: i64, to: i64) -> u32 {
    let mut n = 0;
    for h in 0..HOUSEHOLDS {
        let t = store
            .timeline(&format!("hh-{h}"), t0, to, Resolution::Minute)
            .await
            .unwrap();
        n += t.aggregates.iter().map(|a| a.readings).sum::<u32>();
    }
    n
}

async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !done().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_and_incidents_reach_the_store_once_across_a_restart() {
    let Some(broker) = dolbom_load_tests::broker::broker().expect("start tansu") else {
        if std::env::var_os("CI").is_some() {
            panic!("no Kafka broker: set DOLBOM_KAFKA_BROKERS or install tansu");
        }
        // Straight to stderr: libtest captures eprintln! of passing tests,
        // and a skip must never look like a silent pass.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED history ingest: no Kafka broker (set DOLBOM_KAFKA_BROKERS or install tansu)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let opts = HistoryOptions {
        kafka: dolbom_kafka::KafkaOptions::brokers(&broker.addr),
        group_id: "history-test".into(),
        readings_topic: "hist.readings".into(),
        incidents_topic: "hist.incidents".into(),
        data_dir: dir.path().to_path_buf(),
        commit_interval_ms: 200,
        lateness_ms: 2_000,
        ..Default::default()
    };
    let admin: AdminClient<_> = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .create()
        .unwrap();
    let topics = [
        NewTopic::new(&opts.readings_topic, 2, TopicReplication::Fixed(1)),
        NewTopic::new(&opts.incidents_topic, 2, TopicReplication::Fixed(1)),
    ];
    admin
        .create_topics(&topics, &AdminOptions::new())
        .await
        .unwrap();

    let t0 = dolbom_domain::Ts::now().millis() / HOUR_MS * HOUR_MS - 3 * HOUR_MS;
    let mut first = readings(t0, 0..11);
    first.push(("hh-x".into(), vec![0xff, 0xff, 0xff], None)); // malformed
                                                               // A plug whose clock says year 3000, its record sent at minute 10: it
                                                               // counts at its send time (as the monitor counts it), and it must not
                                                               // close every later minute of its partition (before, it did, across
                                                               // restarts; then a plug merely minutes ahead did the same).
    let future = pb::PlugReading {
        device_id: "plug-0".into(),
        household_id: "hh-0".into(),
        observed_at_ms: 32_503_680_000_000,
        watts: Some(1.0),
        ..Default::default()
    };
    first.push((
        "hh-0".into(),
        future.encode_to_vec(),
        Some(t0 + 10 * MINUTE_MS + 500),
    ));
    first.extend(readings(t0, 11..21));
    // A plug seven minutes ahead, sent on time at minute 20: the same.
    let ahead = pb::PlugReading {
        device_id: "plug-1".into(),
        household_id: "hh-1".into(),
        observed_at_ms: t0 + 27 * MINUTE_MS,
        watts: Some(1.0),
        sequence: 1_000,
        ..Default::default()
    };
    first.push((
        "hh-1".into(),
        ahead.encode_to_vec(),
        Some(t0 + 20 * MINUTE_MS + 500),
    ));
    first.extend(readings(t0, 21..90));
    // Values the engine refuses (negative, not finite): kept out of the
    // aggregates just the same.
    for watts in [-5.0, f64::NAN] {
        let absurd = pb::PlugReading {
            device_id: "plug-0".into(),
            household_id: "hh-0".into(),
            observed_at_ms: t0 + 10 * MINUTE_MS,
            watts: Some(watts),
            ..Default::default()
        };
        first.push(("hh-0".into(), absurd.encode_to_vec(), None));
    }
    produce(&broker.addr, &opts.readings_topic, first).await;
    let event = |ty: pb::IncidentEventType, stage: pb::Stage, at: i64| pb::IncidentEvent {
        event_id: format!("INA:hh-1:{t0}/{}/{}", ty as i32, stage as i32),
        incident_id: format!("INA:hh-1:{t0}"),
        household_id: "hh-1".into(),
        municipality_code: "11110".into(),
        dong_code: "1111051500".into(),
        kind: pb::IncidentKind::Inactivity as i32,
        r#type: ty as i32,
        stage: stage as i32,
        due_at: Some(prost_types::Timestamp {
            seconds: at / 1000,
            nanos: 0,
        }),
        ..Default::default()
    };
    let events = vec![
        event(
            pb::IncidentEventType::Opened,
            pb::Stage::Attention,
            t0 + 10 * MINUTE_MS,
        ),
        event(
            pb::IncidentEventType::StageRaised,
            pb::Stage::Caution,
            t0 + 20 * MINUTE_MS,
        ),
        event(
            pb::IncidentEventType::Recovered,
            pb::Stage::Caution,
            t0 + 30 * MINUTE_MS,
        ),
    ];
    let mut records: Vec<_> = events
        .iter()
        .map(|e| ("hh-1".to_string(), e.encode_to_vec(), None))
        .collect();
    records.push(records[0].clone()); // a duplicate delivery
    produce(&broker.addr, &opts.incidents_topic, records).await;

    let store = EmbeddedStore::open_dir(dir.path(), opts.retention).unwrap();
    let shutdown = CancellationToken::new();
    let ingest = tokio::spawn(run(opts.clone(), shutdown.clone()));
    // Minutes close behind the newest reading: all but the last ~2 are in.
    wait_for("the first 88 minutes", async || {
        readings_stored(&store, t0, t0 + 4 * HOUR_MS).await >= 88 * HOUSEHOLDS as u32
    })
    .await;
    shutdown.cancel();
    let summary = ingest.await.unwrap().unwrap();
    assert_eq!(
        summary.rejected, 3,
        "the malformed reading and the two with absurd watts are skipped and counted"
    );
    // The two plugs ahead of their send time were taken at it, and made no
    // neighbour's reading late.
    assert_eq!(summary.late_readings, 0);
    assert_eq!(summary.readings, 90 * HOUSEHOLDS as u64 + 2);
    assert_eq!(
        readings_stored(&store, t0, t0 + 4 * HOUR_MS).await,
        90 * HOUSEHOLDS as u32 + 2
    );

    // A restart of the same group: more readings, nothing counted twice.
    produce(&broker.addr, &opts.readings_topic, readings(t0, 90..150)).await;
    let shutdown = CancellationToken::new();
    let ingest = tokio::spawn(run(opts.clone(), shutdown.clone()));
    wait_for("the next minutes", async || {
        readings_stored(&store, t0, t0 + 4 * HOUR_MS).await >= 148 * HOUSEHOLDS as u32
    })
    .await;
    shutdown.cancel();
    let summary = ingest.await.unwrap().unwrap();
    assert_eq!(
        summary.readings,
        60 * HOUSEHOLDS as u64,
        "the restart resumed after the committed offsets"
    );
    assert_eq!(
        readings_stored(&store, t0, t0 + 4 * HOUR_MS).await,
        150 * HOUSEHOLDS as u32 + 2,
        "every reading in exactly one minute aggregate"
    );
    let hours = store
        .timeline("hh-0", t0, t0 + 4 * HOUR_MS, Resolution::Hour)
        .await
        .unwrap()
        .aggregates;
    assert_eq!(
        hours.iter().map(|a| a.readings).collect::<Vec<_>>(),
        vec![61, 60, 30],
        "hours rolled up from their minutes (the year-3000 reading in the first)"
    );
    let page = store
        .incidents(&IncidentQuery {
            municipality_code: "11110".into(),
            from_ms: t0,
            to_ms: t0 + HOUR_MS,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.events, events, "each incident event stored once");
    let t = store
        .timeline("hh-1", t0, t0 + HOUR_MS, Resolution::Hour)
        .await
        .unwrap();
    assert_eq!(t.state_changes.len(), 3, "state changes from the events");
}
