//! What the monitor's guarantees ask of the broker, checked against the
//! broker the other Kafka tests run on (Tansu, in memory and on SQLite).
//!
//! A monitor snapshots a shard after any reading and resumes — after a
//! restart, a rebalance or a restore — from the offset its snapshot covers,
//! which can lie inside a producer's batch. Kafka answers a
//! fetch there with the batch holding that offset (the client skips what
//! lies before it); a broker that answered with the *next* batch would drop
//! the rest of the batch, and every Kafka fault test would run on a broker
//! that loses readings.

mod harness;

use dolbom_load_tests::broker::PersistentBroker;
use harness::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use std::time::{Duration, Instant};

/// Records in the first batch, the offset a consumer resumes from (inside
/// it), and records in a second batch after it.
const FIRST: i64 = 40;
const RESUME: i64 = 17;
const SECOND: i64 = 5;

#[test]
fn a_fetch_from_inside_a_batch_reads_the_rest_of_that_batch() {
    let _turn = serial();
    let Some(b) = broker("t20") else { return };
    resumes_inside_a_batch(&b.addr, "t20");
}

#[test]
fn a_fetch_from_inside_a_batch_reads_the_rest_of_it_on_sqlite_storage() {
    let _turn = serial();
    let test = "t21";
    let dir = tempfile::tempdir().unwrap();
    let Some(b) = PersistentBroker::start(&dir.path().join("tansu.db")).expect("start tansu")
    else {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: no Tansu with SQLite storage"
        );
        eprintln!("SKIPPED {test}: no Tansu with SQLite storage");
        return;
    };
    resumes_inside_a_batch(&b.addr, test);
}

fn resumes_inside_a_batch(brokers: &str, test: &str) {
    let topic = format!("{test}.contract");
    let rt = runtime();
    rt.block_on(async {
        create_topics(brokers, &[(&topic, 1)]).await;
        // Two batches: the producer lingers long enough to gather each.
        let p: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set("linger.ms", "200")
            .create()
            .unwrap();
        for (from, n) in [(0, FIRST), (FIRST, SECOND)] {
            let mut sent = Vec::new();
            for i in from..from + n {
                let payload = i.to_string();
                let rec = FutureRecord::to(&topic).key("k").payload(&payload);
                sent.push(p.send_result(rec).map_err(|(e, _)| e).unwrap());
            }
            for (i, s) in (from..).zip(sent) {
                let offset = s.await.unwrap().unwrap().offset;
                assert_eq!(offset, i, "{test}: record {i} at offset {offset}");
            }
        }
        p.flush(Duration::from_secs(10)).unwrap();
    });

    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("{test}-reader"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Offset(RESUME))
        .unwrap();
    c.assign(&tpl).unwrap();
    let mut read = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while read.len() < (FIRST + SECOND - RESUME) as usize && Instant::now() < deadline {
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            let m = m.unwrap();
            let payload: i64 = std::str::from_utf8(m.payload().unwrap())
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(m.offset(), payload, "{test}: a record at the wrong offset");
            read.push(m.offset());
        }
    }
    let expected: Vec<i64> = (RESUME..FIRST + SECOND).collect();
    assert_eq!(
        read, expected,
        "{test}: resuming at offset {RESUME} inside the first batch (offsets 0..{FIRST}) must read \
         the rest of that batch, then the next"
    );
}
