//! `dolbom notify` against a real Kafka-protocol broker (Tansu): incident
//! events from `care.incidents` reach the API (a malformed record is skipped),
//! a registered household goes out on `care.households` without its contact,
//! and an acknowledgement goes out on `care.incidents`.

use dolbom_auth::{unix_now, Principal, SigningKey};
use dolbom_notify::{run, NotifyOptions};
use dolbom_proto::v1 as pb;
use prost::Message as _;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use std::io::Write as _;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

async fn eventually<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn consumer(brokers: &str, topic: &str) -> StreamConsumer {
    let c: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("reader-{topic}"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    c.subscribe(&[topic]).unwrap();
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incidents_in_registry_and_acknowledgements_out_over_kafka() {
    let Some(broker) = dolbom_load_tests::broker::broker().expect("start tansu") else {
        if std::env::var_os("CI").is_some() {
            panic!("no Kafka broker: set DOLBOM_KAFKA_BROKERS or install tansu");
        }
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED notify over Kafka: no Kafka broker (set DOLBOM_KAFKA_BROKERS or install tansu)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate("k1").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let opts = NotifyOptions {
        listen: format!("127.0.0.1:{port}"),
        kafka: dolbom_kafka::KafkaOptions::brokers(&broker.addr),
        group_id: "notify-test".into(),
        incidents_topic: "nt.incidents".into(),
        households_topic: "nt.households".into(),
        public_keys: vec![key.verifying_key().to_text()],
        data_dir: dir.path().to_path_buf(),
        create_contact_key: true,
        tick_ms: 50,
        policies: vec![dolbom_notify::options::MunicipalityPolicy {
            municipality: "*".into(),
            policy: dolbom_escalation::Policy::watch_only(),
        }],
        ..Default::default()
    };
    let admin: AdminClient<_> = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .create()
        .unwrap();
    admin
        .create_topics(
            &[
                NewTopic::new(&opts.incidents_topic, 2, TopicReplication::Fixed(1)),
                NewTopic::new(&opts.households_topic, 2, TopicReplication::Fixed(1)),
            ],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
    let stop = CancellationToken::new();
    let service = tokio::spawn(run(opts.clone(), stop.clone()));

    let now = dolbom_domain::Ts::now().millis();
    let opened = pb::IncidentEvent {
        event_id: "INA:11110-k:1/1/2".into(),
        incident_id: "INA:11110-k:1".into(),
        household_id: "11110-k".into(),
        municipality_code: "11110".into(),
        dong_code: "1111051500".into(),
        kind: pb::IncidentKind::Inactivity as i32,
        r#type: pb::IncidentEventType::Opened as i32,
        stage: pb::Stage::Attention as i32,
        due_at: Some(dolbom_domain::convert::timestamp(dolbom_domain::Ts(now))),
        ..Default::default()
    };
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .create()
        .unwrap();
    for payload in [vec![0xff, 0x01, 0x02], opened.encode_to_vec()] {
        producer
            .send(
                FutureRecord::to(&opts.incidents_topic)
                    .key("11110-k")
                    .payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }

    let token = key
        .mint(
            &Principal::municipality("jongno", "11110", true),
            unix_now(),
            600,
        )
        .unwrap();
    let endpoint = format!("http://127.0.0.1:{port}");
    let channel = eventually("the gRPC API", async || {
        tonic::transport::Channel::from_shared(endpoint.clone())
            .unwrap()
            .connect()
            .await
            .ok()
    })
    .await;
    let auth = move |mut r: tonic::Request<()>| {
        r.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        Ok(r)
    };
    let mut incidents = pb::incident_service_client::IncidentServiceClient::with_interceptor(
        channel.clone(),
        auth.clone(),
    );
    let mut registry =
        pb::registry_service_client::RegistryServiceClient::with_interceptor(channel, auth);

    // The event arrives through the consumer; the malformed record before it
    // did not stop the partition.
    eventually("the incident over the API", async || {
        let l = incidents
            .list_incidents(pb::ListIncidentsRequest::default())
            .await
            .ok()?
            .into_inner();
        (l.incidents.len() == 1).then_some(())
    })
    .await;

    registry
        .create_household(pb::CreateHouseholdRequest {
            config: Some(pb::HouseholdConfig {
                household_id: "11110-k".into(),
                municipality_code: "11110".into(),
                dong_code: "1111051500".into(),
                device_ids: vec!["plug-k".into()],
                ..Default::default()
            }),
            contact: Some(pb::HouseholdContact {
                name: "김철수".into(),
                phone: "010-5555-6666".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    incidents
        .acknowledge(pb::AcknowledgeRequest {
            incident_id: "INA:11110-k:1".into(),
            note: String::new(),
        })
        .await
        .unwrap();

    let households = consumer(&broker.addr, &opts.households_topic);
    let m = tokio::time::timeout(Duration::from_secs(30), households.recv())
        .await
        .expect("a record on care.households")
        .unwrap();
    assert_eq!(m.key(), Some("11110-k".as_bytes()));
    let payload = m.payload().unwrap();
    let cfg = pb::HouseholdConfig::decode(payload).unwrap();
    assert_eq!(cfg.device_ids, vec!["plug-k".to_string()]);
    assert!(!payload.windows(13).any(|w| w == b"010-5555-6666"));

    let events = consumer(&broker.addr, &opts.incidents_topic);
    let ack = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let m = events.recv().await.unwrap();
            if let Some(e) = m.payload().and_then(|p| pb::IncidentEvent::decode(p).ok()) {
                if e.r#type == pb::IncidentEventType::Acknowledged as i32 {
                    return e;
                }
            }
        }
    })
    .await
    .expect("the acknowledgement on care.incidents");
    assert_eq!(ack.incident_id, "INA:11110-k:1");

    stop.cancel();
    service.await.unwrap().unwrap();
}
