//! What an SRE sees, checked against real peers (issue 15): `dolbom
//! monitor`, `dolbom notify` and `dolbom history` run as processes over
//! Tansu and take one town through twelve quiet hours (incidents opened and
//! delivered), a malformed reading, household configuration and incident
//! event (rejected and counted), and an acknowledgement over the API; then
//! - every metric the alert rules and the dashboards name is one a running
//!   service exposes on `/metrics`;
//! - a real Prometheus (Debian's) scrapes the three services with the alert
//!   rules loaded: every target is up, every rule loaded, the deadline →
//!   incident histogram has data, and every dashboard expression evaluates.
//!
//! Without Prometheus (outside CI) the Prometheus part says loudly that it
//! was skipped; under CI a missing binary is a failure.

mod harness;
mod observe;

use harness::*;
use std::io::{Read as _, Write as _};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// GET over HTTP/1.0: the body of a 200 answer, else `None`.
fn get(addr: &str, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.split_whitespace()
        .nth(1)
        .filter(|code| *code == "200")
        .map(|_| body.to_string())
}

fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The metric names a `/metrics` page exposes.
fn exposed(page: &str) -> Vec<String> {
    observe::metric_names(
        &page
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn prometheus_scrapes_the_services_and_every_rule_and_panel_names_what_they_expose() {
    let _serial = serial();
    let test = "t15";
    let Some(b) = broker(test) else { return };
    let dir = tempfile::tempdir().unwrap();
    let t = topics(test);
    let rt = runtime();
    let (m_addr, n_addr, h_addr) = (free_addr(), free_addr(), free_addr());

    let rx = Receiver::start(false);
    write_notify_config(dir.path(), test, &b.addr, &t, &rx.url);
    let notify = Killed(start_notify_with(
        dir.path(),
        "notify.log",
        &[("DOLBOM_METRICS_LISTEN", n_addr.as_str())],
    ));
    let monitor = Monitor::start(
        &b.addr,
        &t,
        dir.path(),
        "m1",
        false,
        &[("DOLBOM_METRICS_LISTEN", m_addr.as_str())],
    );
    let history = Killed(
        Command::new(env!("CARGO_BIN_EXE_dolbom"))
            .args(["history", "--brokers", &b.addr, "--metrics-listen", &h_addr])
            .args(["--group-id", &format!("{test}-history"), "--data-dir"])
            .arg(dir.path().join("history"))
            .env("DOLBOM_READINGS_TOPIC", &t.readings)
            .env("DOLBOM_INCIDENTS_TOPIC", &t.incidents)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("history.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let p = producer(&b.addr);
    rt.block_on(async {
        produce_configs(&p, &t).await;
        // Twelve quiet hours on the event clock: the quiet homes' ATTENTION.
        produce_minutes(&p, &t, 0..12 * 60 + 5).await;
    });
    let logs = || {
        format!(
            "monitor:\n{}\nnotify:\n{}\nhistory:\n{}",
            monitor.log(),
            std::fs::read_to_string(dir.path().join("notify.log")).unwrap_or_default(),
            std::fs::read_to_string(dir.path().join("history.log")).unwrap_or_default()
        )
    };
    // Every quiet home's ATTENTION delivered by webhook.
    let deadline = Instant::now() + Duration::from_secs(120);
    while rx.seen().len() < QUIET.len() {
        assert!(Instant::now() < deadline, "no deliveries\n{}", logs());
        std::thread::sleep(Duration::from_millis(200));
    }
    // Bad input of each kind, rejected and counted; a person's
    // acknowledgement.
    rt.block_on(async {
        use rdkafka::producer::FutureRecord;
        let garbage = vec![0xffu8; 7];
        for (topic, key) in [(&t.readings, hh(0)), (&t.households, hh(0))] {
            p.send(
                FutureRecord::to(topic).key(&key).payload(&garbage),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        }
        let no_id = prost::Message::encode_to_vec(&dolbom_proto::v1::IncidentEvent {
            incident_id: "malformed".into(),
            ..Default::default()
        });
        p.send(
            FutureRecord::to(&t.incidents)
                .key("malformed")
                .payload(&no_id),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    });
    let incident = rx
        .seen()
        .iter()
        .find_map(|s| s.body["incident_id"].as_str().map(str::to_string))
        .expect("a webhook names its incident");
    let api = notify_api(dir.path(), "notify.log");
    let token = national_token(dir.path(), "t15-operator");
    rt.block_on(acknowledge(&api, &token, &incident));

    // Every name the rules and dashboards use, from the scrapes (some only
    // after the first snapshot or the bad input above: waited for).
    let mut used: Vec<(String, String)> = Vec::new();
    for e in observe::rule_exprs() {
        for n in observe::metric_names(&e) {
            used.push(("alert rules".to_string(), n));
        }
    }
    for (file, panel, expr) in observe::dashboard_exprs() {
        for n in observe::metric_names(&expr) {
            used.push((format!("{file} / {panel}"), n));
        }
    }
    let scrape = || {
        let mut names: Vec<String> = Vec::new();
        for addr in [&m_addr, &n_addr, &h_addr] {
            names.extend(exposed(&get(addr, "/metrics").unwrap_or_default()));
        }
        names.sort();
        names.dedup();
        names
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let names = loop {
        let names = scrape();
        let missing: Vec<&(String, String)> =
            used.iter().filter(|(_, n)| !names.contains(n)).collect();
        if missing.is_empty() {
            break names;
        }
        assert!(
            Instant::now() < deadline,
            "named but exposed by no running service: {missing:?}\nexposed: {names:?}\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    eprintln!(
        "{test}: {} metric names exposed; {} uses in rules and dashboards, all exposed",
        names.len(),
        used.len()
    );

    // A real Prometheus scraping the three, with the alert rules.
    let Some(prometheus) = observe::prometheus() else {
        return;
    };
    let p_addr = free_addr();
    let rules = observe::rules_dir().join("dolbom-alerts.yml");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: dolbom\n    static_configs:\n      - targets: ['{m_addr}', '{n_addr}', '{h_addr}']\n",
        rules.canonicalize().unwrap().display()
    );
    std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    let _prom = Killed(
        Command::new(prometheus)
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={p_addr}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let prom_log =
        || std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();
    let api = |path: &str| -> Option<serde_json::Value> {
        let body = get(&p_addr, path)?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        (v["status"] == "success").then_some(v)
    };
    let targets = wait_for("three healthy targets", 60, || {
        let v = api("/api/v1/targets")?;
        let active = v["data"]["activeTargets"].as_array()?.clone();
        (active.len() == 3 && active.iter().all(|t| t["health"] == "up")).then_some(active)
    });
    assert_eq!(targets.len(), 3, "{}", prom_log());
    let alerts = observe::rules()
        .lines()
        .filter(|l| l.trim_start().starts_with("- alert: "))
        .count();
    let loaded = wait_for("the rules loaded", 30, || {
        let v = api("/api/v1/rules")?;
        let n: usize = v["data"]["groups"]
            .as_array()?
            .iter()
            .map(|g| g["rules"].as_array().map_or(0, |r| r.len()))
            .sum();
        (n > 0).then_some(n)
    });
    assert_eq!(loaded, alerts, "rules loaded by Prometheus");
    // The deadline → incident histogram has data.
    let q = "sum(dolbom_monitor_incident_emit_delay_seconds_bucket{le=\"+Inf\"})";
    let count = wait_for("the deadline-latency histogram", 30, || {
        let v = api(&format!("/api/v1/query?query={}", encode(q)))?;
        let value = v["data"]["result"].as_array()?.first()?["value"][1]
            .as_str()?
            .parse::<f64>()
            .ok()?;
        (value > 0.0).then_some(value)
    });
    assert!(count >= QUIET.len() as f64, "{count}");
    // Every dashboard expression evaluates against the scraped data.
    for (file, panel, expr) in observe::dashboard_exprs() {
        let body = get(&p_addr, &format!("/api/v1/query?query={}", encode(&expr)));
        let v: serde_json::Value = body
            .as_deref()
            .and_then(|b| serde_json::from_str(b).ok())
            .unwrap_or_default();
        assert_eq!(v["status"], "success", "{file} / {panel}: {expr}: {body:?}");
    }
    eprintln!(
        "{test}: Prometheus scraped 3 targets, loaded {loaded} rules; {count} deadline-latency observations; every dashboard expression evaluated"
    );
    drop(history);
    drop(notify);
}
