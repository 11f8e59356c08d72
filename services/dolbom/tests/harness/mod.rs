//! What the tests of `dolbom monitor` against a real Kafka-protocol broker
//! (Tansu on loopback) share: the broker, per-test topics, the monitor as a
//! process, the scripted households and their readings, reading a topic
//! back and the exactly-once check.
#![allow(dead_code)]

mod receiver;
#[allow(unused_imports)]
pub use receiver::{Receiver, Seen};

use std::io::Write as _;

use dolbom_load_tests::broker::Broker;
use dolbom_proto::v1 as pb;
use prost::Message as _;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const T0_MS: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
pub const MIN: i64 = 60_000;
pub const HOUSEHOLDS: usize = 40;
pub const QUIET: [usize; 3] = [0, 1, 2];
pub const PARTITIONS: i32 = 4;

/// Dynamic group membership in these tests: Tansu 0.6 gives a static member
/// (`group.instance.id`) that rejoins during a cooperative rebalance a new
/// member id while keeping the old one as group leader, so SyncGroup never
/// completes (seen in librdkafka's `cgrp` debug log). Production runs with
/// static membership (`--instance-id`); the monitor's code path is the same.
///
/// The tests take turns: each starts a broker and monitors, and two cores
/// running three of them at once starve the group coordinator.
pub static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn broker(test: &str) -> Option<Broker> {
    let started = dolbom_load_tests::broker::broker().expect("start tansu");
    if started.is_none() {
        if std::env::var_os("CI").is_some() {
            panic!("{test}: no Kafka broker: set DOLBOM_KAFKA_BROKERS or install tansu");
        }
        // Straight to stderr: libtest captures eprintln! of passing tests,
        // and a skip must never look like a silent pass.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}: no Kafka broker (set DOLBOM_KAFKA_BROKERS, or `cargo install tansu --locked --features dynostore,libsql`)"
        );
    }
    started
}

pub use dolbom_monitor::options::Topics;

/// Every topic of one test, named after it.
pub fn topics(test: &str) -> Topics {
    Topics::with_prefix(test)
}

pub struct Monitor {
    pub child: Child,
    pub log: PathBuf,
}

/// A failing test must not leave its monitor running.
impl Drop for Monitor {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Monitor {
    /// Starts `dolbom monitor` with static membership as `instance`, or
    /// with dynamic membership when `dynamic` (see the rebalance test).
    pub fn start(
        brokers: &str,
        t: &Topics,
        dir: &Path,
        instance: &str,
        dynamic: bool,
        extra_env: &[(&str, &str)],
    ) -> Monitor {
        Self::start_with(brokers, t, dir, instance, dynamic, extra_env, &[])
    }

    /// [`Monitor::start`] with extra command-line arguments.
    pub fn start_with(
        brokers: &str,
        t: &Topics,
        dir: &Path,
        instance: &str,
        dynamic: bool,
        extra_env: &[(&str, &str)],
        extra_args: &[&str],
    ) -> Monitor {
        let log = dir.join(format!("monitor-{instance}.log"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dolbom"));
        // A flag in `extra_args` replaces its default here.
        let mut defaults: Vec<&str> = Vec::new();
        for (flag, value) in [
            ("--clock", "event"),
            ("--stall-after-ms", "600000"),
            ("--snapshot-interval-secs", "1"),
        ] {
            if !extra_args.contains(&flag) {
                defaults.extend([flag, value]);
            }
        }
        cmd.arg("monitor")
            .args(defaults)
            .args([
                "--brokers",
                brokers,
                "--group-id",
                &format!("{}-group", t.readings),
                "--instance-id",
                if dynamic { "" } else { instance },
                "--partitions",
                &PARTITIONS.to_string(),
                "--snapshot-dir",
                dir.join("snapshots").to_str().unwrap(),
            ])
            .args(extra_args)
            .env("DOLBOM_TOPICS__READINGS", &t.readings)
            .env("DOLBOM_TOPICS__HOUSEHOLDS", &t.households)
            .env("DOLBOM_TOPICS__INCIDENTS", &t.incidents)
            .env("DOLBOM_TOPICS__DEAD_LETTER", &t.dead_letter)
            .env("DOLBOM_TOPICS__AREAS", &t.areas)
            .env("DOLBOM_SESSION_TIMEOUT_MS", "6000")
            .envs(
                std::env::vars()
                    .filter(|(k, _)| k.starts_with("DOLBOM_TEST_ENV_"))
                    .map(|(k, v)| (k.replace("DOLBOM_TEST_ENV_", "DOLBOM_"), v)),
            )
            .env(
                "DOLBOM_LOG",
                std::env::var("DOLBOM_TEST_MONITOR_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        Monitor {
            child: cmd.spawn().expect("start dolbom monitor"),
            log,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn terminate(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("monitor did not drain within 30 s:\n{}", self.log());
    }

    /// Waits until the log shows `n` partitions positioned in total.
    pub fn wait_positioned(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self
            .log()
            .matches("partition positioned and resumed")
            .count()
            < n
        {
            assert!(
                Instant::now() < deadline,
                "monitor never positioned {n} partitions:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Creates `topics` (name, partitions; one replica) on `brokers`.
pub async fn create_topics(brokers: &str, topics: &[(&str, i32)]) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|&(name, partitions)| NewTopic::new(name, partitions, TopicReplication::Fixed(1)))
        .collect();
    for r in admin
        .create_topics(&new, &AdminOptions::new())
        .await
        .unwrap()
    {
        r.unwrap();
    }
}

pub fn producer(brokers: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .unwrap()
}

pub fn hh(i: usize) -> String {
    format!("hh-{i:03}")
}

pub fn config(i: usize) -> pb::HouseholdConfig {
    pb::HouseholdConfig {
        household_id: hh(i),
        municipality_code: "11110".into(),
        dong_code: format!("11110{}", 51500 + (i % 4) * 100),
        device_ids: vec![format!("plug-{i:03}")],
        registered_at: Some(dolbom_proto::prost_types::Timestamp {
            seconds: T0_MS / 1000,
            nanos: 0,
        }),
        version: 1,
        night_holiday_consent: true,
        ..Default::default()
    }
}

/// Household `i`'s reading at minute `m`: quiet households report a
/// constant value until `wakes` (if any), everyone else toggles an appliance
/// every 20 minutes.
pub fn reading(i: usize, m: i64, quiet_until: Option<i64>) -> pb::PlugReading {
    let quiet = QUIET.contains(&i) && quiet_until.is_none_or(|w| m < w);
    let watts = if quiet {
        5.0
    } else if (m + i as i64) % 20 < 10 {
        120.0
    } else {
        5.0
    };
    pb::PlugReading {
        device_id: format!("plug-{i:03}"),
        household_id: hh(i),
        observed_at_ms: T0_MS + m * MIN,
        watts: Some(watts),
        lux: Some(30.0),
        sequence: m as u64,
        current_amps: None,
    }
}

pub async fn produce_configs(p: &FutureProducer, t: &Topics) {
    for i in 0..HOUSEHOLDS {
        let c = config(i).encode_to_vec();
        p.send(
            FutureRecord::to(&t.households).key(&hh(i)).payload(&c),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    }
}

/// Household 1 wakes up at minute 13 h; the others stay quiet.
pub const WAKES: i64 = 13 * 60;

pub async fn produce_minutes(p: &FutureProducer, t: &Topics, minutes: std::ops::Range<i64>) {
    for m in minutes {
        let mut futs = Vec::with_capacity(HOUSEHOLDS);
        for i in 0..HOUSEHOLDS {
            let wake = (i == 1).then_some(WAKES);
            let r = reading(i, m, wake).encode_to_vec();
            let key = hh(i);
            let rec = FutureRecord::to(&t.readings).key(&key).payload(&r);
            futs.push(p.send_result(rec).map_err(|(e, _)| e).unwrap());
        }
        for f in futs {
            f.await.unwrap().unwrap();
        }
    }
}

/// Milliseconds since the Unix epoch on this machine's clock.
pub fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Registers `households` with `registered_at` (and `thresholds`, if any).
pub async fn produce_registered(
    p: &FutureProducer,
    t: &Topics,
    households: impl IntoIterator<Item = usize>,
    registered_ms: i64,
    thresholds: Option<pb::StageThresholds>,
) {
    for i in households {
        let mut c = config(i);
        c.registered_at = Some(dolbom_proto::prost_types::Timestamp {
            seconds: registered_ms / 1000,
            nanos: 0,
        });
        if thresholds.is_some() {
            c.thresholds = thresholds;
            c.offline_after_minutes = 1;
        }
        p.send(
            FutureRecord::to(&t.households)
                .key(&hh(i))
                .payload(&c.encode_to_vec()),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    }
}

/// The homes the wall-clock tests register with [`register_quiet_now`].
pub const QUIET_NOW: [usize; 2] = [0, 1];

/// Registers [`QUIET_NOW`] now (rounded down to the second) with ATTENTION
/// after 2 minutes (CAUTION 3, DANGER 4), for the wall-clock tests; returns
/// the registration time.
pub async fn register_quiet_now(p: &FutureProducer, t: &Topics) -> i64 {
    let registered = wall_ms() / 1000 * 1000;
    let thresholds = pb::StageThresholds {
        attention_minutes: 2,
        caution_minutes: 3,
        danger_minutes: 4,
    };
    produce_registered(p, t, QUIET_NOW, registered, Some(thresholds)).await;
    registered
}

/// The events the scripted stream must produce by minute 14 h, and nothing else.
pub fn expected() -> BTreeSet<String> {
    let mut e = BTreeSet::new();
    for i in QUIET {
        e.insert(format!(
            "INA:{}:{T0_MS}/INCIDENT_EVENT_TYPE_OPENED/STAGE_ATTENTION",
            hh(i)
        ));
    }
    e.insert(format!(
        "INA:{}:{T0_MS}/INCIDENT_EVENT_TYPE_RECOVERED/STAGE_ATTENTION",
        hh(1)
    ));
    e
}

/// A record read back: key, payload, headers.
pub type Record = (Option<Vec<u8>>, Vec<u8>, Vec<(String, String)>);

/// Every event in the incidents topic, in order, by event id.
pub fn read_all(brokers: &str, topic: &str) -> Vec<pb::IncidentEvent> {
    read_records(brokers, topic)
        .into_iter()
        .map(|(_, payload, _)| pb::IncidentEvent::decode(payload.as_slice()).unwrap())
        .collect()
}

pub fn read_records(brokers: &str, topic: &str) -> Vec<Record> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut out = Vec::new();
    for p in 0..PARTITIONS {
        let Ok((low, high)) = c.fetch_watermarks(topic, p, Duration::from_secs(10)) else {
            continue;
        };
        if high <= low {
            continue;
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, p, Offset::Offset(low))
            .unwrap();
        c.assign(&tpl).unwrap();
        let mut next = low;
        let deadline = Instant::now() + Duration::from_secs(20);
        // Tansu 0.6 reports the last batch's base offset + 1 as the high
        // watermark: read on until the partition stays quiet.
        let mut idle = 0;
        if std::env::var_os("DOLBOM_TEST_DEBUG").is_some() {
            eprintln!("watermarks {topic}/{p}: {low}..{high}");
        }
        while (next < high || idle < 3) && Instant::now() < deadline {
            let Some(Ok(m)) = c.poll(Duration::from_millis(100)) else {
                idle += 1;
                continue;
            };
            idle = 0;
            {
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|x| {
                                (
                                    x.key.to_string(),
                                    String::from_utf8_lossy(x.value.unwrap_or_default())
                                        .into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                if std::env::var_os("DOLBOM_TEST_DEBUG").is_some() {
                    eprintln!(
                        "read {topic}/{p}@{} key={:?}",
                        m.offset(),
                        m.key().map(String::from_utf8_lossy)
                    );
                }
                out.push((
                    m.key().map(<[u8]>::to_vec),
                    m.payload().unwrap_or_default().to_vec(),
                    headers,
                ));
                next = m.offset() + 1;
            }
        }
    }
    out
}

/// Waits until every expected event id is in the topic (or times out), then
/// checks exactly-once: each expected id once, nothing else.
pub fn assert_exactly_expected(brokers: &str, t: &Topics, monitors: &[&Monitor]) {
    let want = expected();
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut events;
    loop {
        events = read_all(brokers, &t.incidents);
        let have: BTreeSet<String> = events.iter().map(|e| e.event_id.clone()).collect();
        if want.is_subset(&have) || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    // Give a would-be duplicate time to show up.
    std::thread::sleep(Duration::from_secs(2));
    events = read_all(brokers, &t.incidents);
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for e in &events {
        *counts.entry(e.event_id.clone()).or_default() += 1;
    }
    let logs: String = monitors
        .iter()
        .map(|m| m.log())
        .collect::<Vec<_>>()
        .join("\n----\n");
    let tail: String = logs
        .lines()
        .rev()
        .take(60)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    let expected_counts: BTreeMap<String, usize> = want.iter().map(|w| (w.clone(), 1)).collect();
    assert_eq!(
        counts, expected_counts,
        "incident events differ from the script\nmonitor log tail:\n{tail}"
    );
    // The events carry routing and timing that make sense.
    for e in &events {
        if e.r#type == pb::IncidentEventType::Opened as i32 {
            assert_eq!(
                e.due_at.as_ref().unwrap().seconds * 1000,
                T0_MS + 12 * 60 * MIN,
                "ATTENTION falls due 12 h after the last activity"
            );
            assert!(e.route.is_some());
        }
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Writes what `dolbom notify` needs in `dir`, as deployed: its token keys
/// from `dolbom token keygen` and a `notify.toml` reading `t`'s topics on
/// `brokers`, with an SMS number and a webhook at `hook` for every tier.
pub fn write_notify_config(dir: &Path, test: &str, brokers: &str, t: &Topics, hook: &str) {
    let keys = Command::new(env!("CARGO_BIN_EXE_dolbom"))
        .args(["token", "keygen", "--kid", test, "--out"])
        .arg(dir.join("signing.key"))
        .output()
        .unwrap();
    assert!(keys.status.success(), "{keys:?}");
    std::fs::write(dir.join("public.keys"), &keys.stdout).unwrap();
    let mut toml = format!(
        "listen = \"127.0.0.1:0\"\nbrokers = \"{brokers}\"\ngroup_id = \"{test}-notify\"\nincidents_topic = \"{}\"\nhouseholds_topic = \"{}\"\ndata_dir = \"{}\"\npublic_keys_file = \"{}\"\ncreate_contact_key = true\n[sms]\nendpoint = \"{hook}/sms\"\nallow_insecure_http = true\n",
        t.incidents,
        t.households,
        dir.join("notify").display(),
        dir.join("public.keys").display(),
    );
    for tier in [
        "DONG_OFFICE",
        "CONTROL_CENTER",
        "EMERGENCY",
        "MAINTENANCE",
        "SRE",
    ] {
        toml.push_str(&format!(
            "[[recipients]]\nmunicipality = \"*\"\ntier = \"{tier}\"\nsms = [\"0200000000\"]\nwebhook_url = \"{hook}/{tier}\"\nwebhook_secret = \"{test}-webhook-secret-0123\"\nallow_insecure_http = true\n"
        ));
    }
    std::fs::write(dir.join("notify.toml"), toml).unwrap();
}

/// Starts `dolbom notify` on the configuration [`write_notify_config`]
/// wrote in `dir`, logging to `dir/log`.
pub fn start_notify(dir: &Path, log: &str) -> Child {
    start_notify_with(dir, log, &[])
}

/// [`start_notify`] with extra environment variables.
pub fn start_notify_with(dir: &Path, log: &str, env: &[(&str, &str)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_dolbom"))
        .arg("notify")
        .arg("--config")
        .arg(dir.join("notify.toml"))
        .env("DOLBOM_LOG", "info")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(log)).unwrap())
        .spawn()
        .unwrap()
}

/// The address notify's municipality API listens on, from its log in
/// `dir` (it listens on port 0 in these tests).
pub fn notify_api(dir: &Path, log: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(dir.join(log)).unwrap_or_default();
        if let Some(addr) = text
            .lines()
            .find(|l| l.contains("municipality gRPC API listening"))
            .and_then(|l| l.split("addr=").nth(1))
            .and_then(|a| a.split_whitespace().next())
        {
            return addr.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "notify's API never listened:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A national operator's token signed with the key [`write_notify_config`]
/// made in `dir`.
pub fn national_token(dir: &Path, subject: &str) -> String {
    let mint = Command::new(env!("CARGO_BIN_EXE_dolbom"))
        .args(["token", "mint", "--national", "--subject", subject, "--key"])
        .arg(dir.join("signing.key"))
        .output()
        .unwrap();
    assert!(mint.status.success(), "{mint:?}");
    String::from_utf8(mint.stdout).unwrap().trim().to_string()
}

/// `msg` with the bearer token in its metadata.
pub fn authorized<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    req
}

/// Acknowledges `incident_id` over notify's API at `api`.
pub async fn acknowledge(api: &str, token: &str, incident_id: &str) -> pb::Incident {
    let mut client =
        pb::incident_service_client::IncidentServiceClient::connect(format!("http://{api}"))
            .await
            .unwrap();
    client
        .acknowledge(authorized(
            pb::AcknowledgeRequest {
                incident_id: incident_id.to_string(),
                note: String::new(),
            },
            token,
        ))
        .await
        .unwrap()
        .into_inner()
}

/// Starts monitor "a" (dynamic membership) on `dir`, sends the script's
/// configurations and its readings up to minute 12 h 30, and waits (up to a
/// minute) until the first incident events are on `t.incidents`: the moment
/// the fault tests strike. The rest of the script is
/// `produce_minutes(p, t, 12 * 60 + 30..14 * 60)` on the returned runtime.
pub fn monitor_past_the_first_openings(
    brokers: &str,
    t: &Topics,
    dir: &Path,
) -> (Monitor, tokio::runtime::Runtime, FutureProducer) {
    let m = Monitor::start(brokers, t, dir, "a", true, &[]);
    m.wait_positioned(PARTITIONS as usize);
    let rt = runtime();
    let p = producer(brokers);
    rt.block_on(async {
        produce_configs(&p, t).await;
        produce_minutes(&p, t, 0..12 * 60 + 30).await;
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while read_all(brokers, &t.incidents).is_empty() {
        assert!(
            Instant::now() < deadline,
            "no incident before the fault:\n{}",
            m.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    (m, rt, p)
}
