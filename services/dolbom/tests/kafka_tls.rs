//! Kafka over TLS, with real handshakes: librdkafka (built with `ssl`),
//! configured only through the platform's `KafkaOptions`, produces and
//! consumes through a TLS terminator (rustls, a certificate made here) in
//! front of Tansu. Tansu 0.6 cannot terminate TLS itself (it accepts
//! `--cert`/`--key`, builds its acceptor and never uses it), so the broker
//! advertises the terminator and every connection — bootstrap and leader —
//! goes through it. A client that does not trust the CA, or speaks
//! plaintext, gets nothing through.

mod harness;

use dolbom_kafka::KafkaOptions;
use harness::{runtime, serial};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Accepts TLS on `listener` and forwards the plaintext to `upstream`;
/// counts completed and failed handshakes.
fn terminate_tls(
    listener: std::net::TcpListener,
    upstream: String,
    config: Arc<rustls::ServerConfig>,
    ok: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
) {
    listener.set_nonblocking(true).unwrap();
    tokio::spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, upstream, ok, refused) = (
                acceptor.clone(),
                upstream.clone(),
                ok.clone(),
                refused.clone(),
            );
            tokio::spawn(async move {
                let mut tls = match acceptor.accept(tcp).await {
                    Ok(s) => s,
                    Err(_) => {
                        refused.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                };
                ok.fetch_add(1, Ordering::SeqCst);
                let Ok(mut broker) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut broker).await;
            });
        }
    });
}

fn pem(dir: &Path) -> (Arc<rustls::ServerConfig>, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    // Distinct names: OpenSSL takes a leaf named like its issuer for a
    // self-signed certificate.
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "dolbom test Kafka CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut leaf =
        rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    leaf.distinguished_name
        .push(rcgen::DnType::CommonName, "kafka broker");
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    let ca_file = dir.join("kafka-ca.crt");
    std::fs::write(&ca_file, ca_cert.pem()).unwrap();
    // Another CA, which did not sign the broker's certificate.
    let other = rcgen::KeyPair::generate().unwrap();
    let mut op = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    op.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    op.distinguished_name
        .push(rcgen::DnType::CommonName, "another CA");
    let other_file = dir.join("other-ca.crt");
    std::fs::write(&other_file, op.self_signed(&other).unwrap().pem()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
    )
    .unwrap();
    (
        Arc::new(config),
        ca_file.display().to_string(),
        other_file.display().to_string(),
    )
}

fn options(front: &str, protocol: &str, ca: Option<&str>) -> KafkaOptions {
    let mut o = KafkaOptions::brokers(front);
    o.kafka_properties
        .insert("security.protocol".into(), protocol.into());
    if let Some(ca) = ca {
        o.kafka_properties
            .insert("ssl.ca.location".into(), ca.into());
    }
    if let Ok(d) = std::env::var("DOLBOM_TEST_KAFKA_DEBUG") {
        o.kafka_debug = d;
    }
    o.validate().unwrap();
    o
}

async fn produce(o: &KafkaOptions, topic: &str, value: &str) -> bool {
    let p: FutureProducer = o.producer("dolbom-tls-test", 4000).create().unwrap();
    p.send(
        FutureRecord::to(topic).key("k").payload(value),
        Duration::from_secs(5),
    )
    .await
    .is_ok()
}

#[test]
fn kafka_clients_speak_tls_through_the_platform_options() {
    let _serial = serial();
    let test = "t13";
    let Some(bin) = dolbom_load_tests::broker::tansu_binary() else {
        assert!(std::env::var_os("CI").is_none(), "{test}: no tansu");
        eprintln!("SKIPPED {test}: no tansu");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (config, ca, other_ca) = pem(dir.path());
    let front = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let front_addr = front.local_addr().unwrap().to_string();
    let broker =
        dolbom_load_tests::broker::start_tansu_advertising(&bin, Some(&front_addr)).unwrap();
    let rt = runtime();
    rt.block_on(async {
        let (ok, refused) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        terminate_tls(
            front,
            broker.addr.clone(),
            config,
            ok.clone(),
            refused.clone(),
        );
        let topic = format!("{test}-readings");
        let tls = options(&front_addr, "SSL", Some(&ca));
        let admin: AdminClient<DefaultClientContext> =
            tls.client("dolbom-tls-admin").create().unwrap();
        for r in admin
            .create_topics(
                &[NewTopic::new(&topic, 1, TopicReplication::Fixed(1))],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            )
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "creating the topic over TLS: {e} ({} handshakes, {} refused)",
                    ok.load(Ordering::SeqCst),
                    refused.load(Ordering::SeqCst)
                )
            })
        {
            r.unwrap();
        }

        // Produced and consumed over TLS, by the group consumer the services use.
        assert!(
            produce(&tls, &topic, "over-tls").await,
            "produce over TLS failed"
        );
        let c: StreamConsumer = tls
            .group_consumer(
                "dolbom-tls-test",
                &format!("{test}-group"),
                "cooperative-sticky",
            )
            .create()
            .unwrap();
        c.subscribe(&[&topic]).unwrap();
        let m = tokio::time::timeout(Duration::from_secs(30), c.recv())
            .await
            .expect("no record over TLS within 30 s")
            .unwrap();
        assert_eq!(m.payload(), Some(&b"over-tls"[..]));
        assert!(
            ok.load(Ordering::SeqCst) >= 2,
            "bootstrap and leader connections were TLS"
        );
        let handshakes = ok.load(Ordering::SeqCst);

        // A client that does not trust the broker's CA gets nothing through.
        let untrusting = options(&front_addr, "SSL", Some(&other_ca));
        assert!(!produce(&untrusting, &topic, "untrusted").await);
        assert_eq!(
            ok.load(Ordering::SeqCst),
            handshakes,
            "a handshake succeeded without trust"
        );
        assert!(refused.load(Ordering::SeqCst) >= 1);
        // Plaintext to the TLS port: no handshake, no record.
        let plain = options(&front_addr, "PLAINTEXT", None);
        assert!(!produce(&plain, &topic, "plaintext").await);
        assert_eq!(ok.load(Ordering::SeqCst), handshakes);
    });
    drop(broker);
}
