//! `dolbomctl` against a real notify server on a loopback port.

mod common;

use common::ctl;

use dolbom_auth::{unix_now, Principal, SigningKey, Verifier};
use dolbom_domain::convert::timestamp;
use dolbom_domain::Ts;
use dolbom_history::{EmbeddedStore, HistoryStore, Retention};
use dolbom_notify::{NoPublisher, NotifyOptions};
use dolbom_proto::v1 as pb;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_list_watch_ack_resolve_and_stats() {
    let dir = tempfile::tempdir().unwrap();
    let opts = NotifyOptions {
        data_dir: dir.path().to_path_buf(),
        create_contact_key: true,
        policies: vec![dolbom_notify::options::MunicipalityPolicy {
            municipality: "*".into(),
            policy: dolbom_escalation::Policy::watch_only(),
        }],
        ..Default::default()
    };
    let history: Arc<dyn HistoryStore> =
        Arc::new(EmbeddedStore::open_dir(dir.path(), Retention::default()).unwrap());
    let now = Ts::now();
    let built = dolbom_notify::build(
        &opts,
        dolbom_domain::WallClock::shared(),
        Arc::new(NoPublisher),
        history,
    )
    .await
    .unwrap();
    let key = SigningKey::generate("k1").unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    let server = tokio::spawn(dolbom_notify::serve(
        built.api,
        Verifier::new(&[key.verifying_key()]),
        listener,
        stop.clone(),
    ));
    let token = key
        .mint(
            &Principal::municipality("jongno-ops", "11110", false),
            unix_now(),
            600,
        )
        .unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, &token).unwrap();
    let base = |args: &[&str]| -> Vec<String> {
        let mut v = vec![
            "--endpoint".to_string(),
            endpoint.clone(),
            "--token-file".into(),
            token_file.display().to_string(),
        ];
        v.extend(args.iter().map(|s| s.to_string()));
        v
    };

    let (ok, out, err) = ctl(base(&[
        "register",
        "--household",
        "11110-1",
        "--municipality",
        "11110",
        "--dong",
        "1111051500",
        "--plug",
        "plug-1",
        "--consent",
        "--phone",
        "010-1111-2222",
    ]))
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("11110-1") && out.contains("plug-1") && !out.contains("010-1111-2222"));

    // Another municipality's code is refused with the gRPC status.
    let (ok, _, err) = ctl(base(&[
        "register",
        "--household",
        "26110-2",
        "--municipality",
        "26110",
        "--dong",
        "2611051500",
    ]))
    .await;
    assert!(!ok && err.contains("PermissionDenied"), "{err}");

    let opened = pb::IncidentEvent {
        event_id: "INA:11110-1:1/1/2".into(),
        incident_id: "INA:11110-1:1".into(),
        household_id: "11110-1".into(),
        municipality_code: "11110".into(),
        dong_code: "1111051500".into(),
        kind: pb::IncidentKind::Inactivity as i32,
        r#type: pb::IncidentEventType::Opened as i32,
        stage: pb::Stage::Attention as i32,
        due_at: Some(timestamp(now)),
        emitted_at: Some(timestamp(now)),
        ..Default::default()
    };
    built.core.ingest(vec![opened]).await.unwrap();

    let (ok, out, err) = ctl(base(&["list", "--output", "json"])).await;
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["incident_id"], "INA:11110-1:1");
    assert_eq!(v[0]["stage"], "ATTENTION");
    assert_eq!(v[0]["state"], "OPEN");

    let (ok, out, err) = ctl(base(&[
        "watch", "--cursor", "c0", "--count", "1", "-o", "json",
    ]))
    .await;
    assert!(ok, "{err}");
    let line: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(line["type"], "OPENED");
    assert!(line["cursor"].as_str().unwrap().starts_with('c'));

    let (ok, out, err) = ctl(base(&["ack", "INA:11110-1:1", "--note", "전화함"])).await;
    assert!(ok, "{err}");
    assert!(out.contains("ACKNOWLEDGED"));
    let (ok, _, err) = ctl(base(&["resolve", "INA:11110-1:1"])).await;
    assert!(!ok && err.contains("outcome"), "{err}");
    let (ok, out, err) = ctl(base(&[
        "resolve",
        "INA:11110-1:1",
        "--outcome",
        "visited-safe",
        "-o",
        "json",
    ]))
    .await;
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["outcome"], "VISITED_SAFE");
    assert_eq!(v[0]["resolved_by"], "jongno-ops");

    let month = now.to_kst().format("%Y-%m").to_string();
    let (ok, out, err) = ctl(base(&["stats", "--from", &month])).await;
    assert!(ok, "{err}");
    assert!(out.contains(&month), "{out}");
    // A month whose local midnight fell in one of Seoul's historical offset
    // gaps (it panicked the handler once): a clear INVALID_ARGUMENT.
    for bad in ["1908-04", "1960-05", "9999-12"] {
        let (ok, _, err) = ctl(base(&["stats", "--from", bad, "--to", bad])).await;
        assert!(!ok && err.contains("InvalidArgument"), "{bad}: {err}");
    }
    let (ok, _, err) = ctl(vec![
        "--endpoint".into(),
        endpoint.clone(),
        "--token".into(),
        "not-a-token".into(),
        "list".into(),
    ])
    .await;
    assert!(!ok && err.contains("Unauthenticated"), "{err}");

    stop.cancel();
    server.await.unwrap().unwrap();
}
