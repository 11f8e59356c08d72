//! The notify service over real gRPC connections: a server on a loopback
//! port, tonic clients with bearer tokens, a local HTTP server playing the
//! SMS gateway and a webhook receiver, a manual clock.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use dolbom_auth::{unix_now, Principal, SigningKey, Verifier};
use dolbom_domain::convert::timestamp;
use dolbom_domain::SharedClock as Clock;
use dolbom_domain::Ts;
use dolbom_history::{EmbeddedStore, HistoryError, HistoryStore, Retention};
use dolbom_notify::channels::{verify_webhook, Recipient, RetryOptions, SmsOptions};
use dolbom_notify::{Core, NotifyError, NotifyOptions, PublishLoop, Publisher};
use dolbom_proto::v1 as pb;
use pb::incident_service_client::IncidentServiceClient;
use pb::registry_service_client::RegistryServiceClient;
use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::Code;

// ------------------------------------------------------------------ helpers

fn kst(y: i32, m: u32, d: u32, h: u32, mi: u32) -> Ts {
    Ts::from_kst(
        chrono::NaiveDate::from_ymd_opt(y, m, d)
            .unwrap()
            .and_hms_opt(h, mi, 0)
            .unwrap(),
    )
}

#[derive(Default)]
struct MemoryPublisher {
    households: Mutex<Vec<(String, Option<Vec<u8>>)>>,
    events: Mutex<Vec<pb::IncidentEvent>>,
}

#[async_trait::async_trait]
impl Publisher for MemoryPublisher {
    async fn household(
        &self,
        id: &str,
        c: Option<&pb::HouseholdConfig>,
    ) -> Result<(), NotifyError> {
        use prost::Message;
        self.households
            .lock()
            .unwrap()
            .push((id.into(), c.map(|c| c.encode_to_vec())));
        Ok(())
    }
    async fn incident_event(&self, e: &pb::IncidentEvent) -> Result<(), NotifyError> {
        self.events.lock().unwrap().push(e.clone());
        Ok(())
    }
}

/// What the fake SMS gateway / webhook receiver saw.
#[derive(Clone, Debug)]
struct Hit {
    path: String,
    idempotency_key: String,
    body: serde_json::Value,
}

#[derive(Clone)]
struct Fake {
    tx: mpsc::UnboundedSender<Hit>,
    /// Numbers for which the gateway answers 503.
    failing: Arc<Mutex<HashSet<String>>>,
}

async fn sms(State(f): State<Fake>, headers: HeaderMap, body: String) -> StatusCode {
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        headers.get("authorization").unwrap().to_str().unwrap(),
        "Bearer gateway-key"
    );
    let to = v["to"][0].as_str().unwrap().to_string();
    let _ = f.tx.send(Hit {
        path: "/sms".into(),
        idempotency_key: headers["idempotency-key"].to_str().unwrap().into(),
        body: v,
    });
    // The gateway refusing the platform's API key (an expired key).
    if f.failing.lock().unwrap().contains(SMS_KEY_REFUSED) {
        return StatusCode::UNAUTHORIZED;
    }
    if f.failing.lock().unwrap().contains(&to) {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    }
}

async fn hook(State(f): State<Fake>, headers: HeaderMap, body: String) -> StatusCode {
    let ts: u64 = headers["x-dolbom-timestamp"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let sig = headers["x-dolbom-signature"].to_str().unwrap();
    if !verify_webhook("webhook-secret-123456", ts, body.as_bytes(), sig) {
        return StatusCode::UNAUTHORIZED;
    }
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let tier = v["tier"].as_str().unwrap().to_string();
    let _ = f.tx.send(Hit {
        path: "/hook".into(),
        idempotency_key: headers["idempotency-key"].to_str().unwrap().into(),
        body: v,
    });
    if f.failing.lock().unwrap().contains(&tier) {
        StatusCode::BAD_GATEWAY
    } else {
        StatusCode::NO_CONTENT
    }
}

struct Gateway {
    url: String,
    rx: mpsc::UnboundedReceiver<Hit>,
    failing: Arc<Mutex<HashSet<String>>>,
}

impl Gateway {
    async fn start() -> Gateway {
        let (tx, rx) = mpsc::unbounded_channel();
        let failing = Arc::new(Mutex::new(HashSet::new()));
        let app = axum::Router::new()
            .route("/sms", post(sms))
            .route("/hook", post(hook))
            .with_state(Fake {
                tx,
                failing: failing.clone(),
            });
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        Gateway { url, rx, failing }
    }

    /// The next request the gateway saw.
    async fn next(&mut self) -> Hit {
        tokio::time::timeout(Duration::from_secs(10), self.rx.recv())
            .await
            .expect("a request to the gateway within 10 s")
            .unwrap()
    }

    /// Requests until one for `path` with this idempotency key.
    async fn until(&mut self, path: &str, key: &str) -> Vec<Hit> {
        let mut seen = Vec::new();
        loop {
            let h = self.next().await;
            let done = h.path == path && h.idempotency_key == key;
            seen.push(h);
            if done {
                return seen;
            }
        }
    }
}

/// In `Gateway::failing`: every SMS is answered 401.
const SMS_KEY_REFUSED: &str = "SMS_KEY_REFUSED";
const DONG_SMS: &str = "0211110000";
const CENTER_SMS: &str = "0299990000";
const EMERGENCY_SMS: &str = "0211900000";
const SRE_SMS: &str = "0100000119";
const MAINTENANCE_SMS: &str = "0100000000";

struct Service {
    core: Arc<Core>,
    publish: PublishLoop,
    addr: String,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<()>,
    history: Arc<dyn HistoryStore>,
    publisher: Arc<MemoryPublisher>,
    /// Shares its revocation list with the server's.
    verifier: Verifier,
}

impl Service {
    async fn start(dir: &Path, clock: Clock, key: &SigningKey, gateway: &str) -> Service {
        Self::start_tuned(dir, clock, key, gateway, |_| {}).await
    }

    /// [`Service::start`] with options changed by `tweak`.
    async fn start_tuned(
        dir: &Path,
        clock: Clock,
        key: &SigningKey,
        gateway: &str,
        tweak: impl FnOnce(&mut NotifyOptions),
    ) -> Service {
        let history: Arc<dyn HistoryStore> =
            Arc::new(EmbeddedStore::open_dir(dir, Retention::default()).unwrap());
        Self::start_with(dir, clock, key, gateway, history, tweak).await
    }

    /// [`Service::start`] with a given history store and options changed by `tweak`.
    async fn start_with(
        dir: &Path,
        clock: Clock,
        key: &SigningKey,
        gateway: &str,
        history: Arc<dyn HistoryStore>,
        tweak: impl FnOnce(&mut NotifyOptions),
    ) -> Service {
        let mut opts = NotifyOptions {
            data_dir: dir.to_path_buf(),
            create_contact_key: true,
            // The test's gateway is plain HTTP on loopback.
            sms: SmsOptions {
                endpoint: format!("{gateway}/sms"),
                api_key: "gateway-key".into(),
                allow_insecure_http: true,
                ..Default::default()
            },
            retry: RetryOptions {
                attempts: 3,
                initial_backoff_ms: 5,
                max_backoff_ms: 20,
                timeout_ms: 2_000,
            },
            ..Default::default()
        };
        for (tier, number) in [
            ("DONG_OFFICE", DONG_SMS),
            ("CONTROL_CENTER", CENTER_SMS),
            ("EMERGENCY", EMERGENCY_SMS),
            ("SRE", SRE_SMS),
            ("MAINTENANCE", MAINTENANCE_SMS),
        ] {
            opts.recipients.push(Recipient {
                municipality: "*".into(),
                tier: tier.into(),
                sms: vec![number.into()],
                webhook_url: format!("{gateway}/hook"),
                webhook_secret: "webhook-secret-123456".into(),
                allow_insecure_http: true,
                ..Default::default()
            });
        }
        opts.writer.linger_ms = 1;
        tweak(&mut opts);
        let publisher = Arc::new(MemoryPublisher::default());
        // A restart in the same process: the stopped instance's last
        // background tasks may hold its core (and the store's lock) for a
        // moment after `stop`.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let built = loop {
            match dolbom_notify::build(&opts, clock.clone(), publisher.clone(), history.clone())
                .await
            {
                Err(e)
                    if e.to_string().contains("another notify instance")
                        && std::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                r => break r.unwrap(),
            }
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let verifier = Verifier::new(&[key.verifying_key()]);
        let server = tokio::spawn(dolbom_notify::serve(
            built.api,
            verifier.clone(),
            listener,
            shutdown.clone(),
        ));
        let server = tokio::spawn(async move {
            server.await.unwrap().unwrap();
        });
        Service {
            core: built.core,
            publish: built.publish,
            addr,
            shutdown,
            server,
            history,
            publisher,
            verifier,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.server.await.unwrap();
        self.core.drain_deliveries().await;
        self.core.history_flush().await;
    }
}

/// The services reflection lists, asked as grpcurl asks (no token), in
/// reflection version `v1` or `v1alpha` (Python's grpcio, older tools).
macro_rules! list_services_in {
    ($refl:path, $ch:expr) => {{
        use $refl as refl;
        let mut r = refl::server_reflection_client::ServerReflectionClient::new($ch);
        let req = refl::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(
                refl::server_reflection_request::MessageRequest::ListServices(String::new()),
            ),
        };
        async move {
            let mut resp = r
                .server_reflection_info(tokio_stream::iter(vec![req]))
                .await?
                .into_inner();
            let m = resp.message().await?.expect("a reply");
            let Some(refl::server_reflection_response::MessageResponse::ListServicesResponse(l)) =
                m.message_response
            else {
                panic!("not a service list: {m:?}");
            };
            Ok::<Vec<String>, tonic::Status>(l.service.into_iter().map(|s| s.name).collect())
        }
        .await
    }};
}

async fn list_services(ch: Channel) -> Result<Vec<String>, tonic::Status> {
    list_services_in!(tonic_reflection::pb::v1, ch)
}

async fn list_services_v1alpha(ch: Channel) -> Result<Vec<String>, tonic::Status> {
    list_services_in!(tonic_reflection::pb::v1alpha, ch)
}

type Auth = Box<dyn FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Send>;

fn bearer(
    token: Option<String>,
) -> impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone {
    move |mut r: tonic::Request<()>| {
        if let Some(t) = &token {
            r.metadata_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        Ok(r)
    }
}

struct Client {
    registry: RegistryServiceClient<InterceptedService<Channel, Auth>>,
    incidents: IncidentServiceClient<InterceptedService<Channel, Auth>>,
}

async fn client(addr: &str, token: Option<String>) -> Client {
    let ch = Channel::from_shared(addr.to_string())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let a: Auth = Box::new(bearer(token.clone()));
    let b: Auth = Box::new(bearer(token));
    Client {
        registry: RegistryServiceClient::with_interceptor(ch.clone(), a),
        incidents: IncidentServiceClient::with_interceptor(ch, b),
    }
}

fn token(key: &SigningKey, p: &Principal) -> String {
    key.mint(p, unix_now(), 3600).unwrap()
}

fn manual_clock(start: Ts) -> (Clock, Arc<AtomicI64>) {
    let now = Arc::new(AtomicI64::new(start.millis()));
    let n = now.clone();
    (Arc::new(move || Ts(n.load(Ordering::SeqCst))), now)
}

/// The start most tests share: a gateway, a service on a manual clock set to
/// `t0`, and a client of municipality 11110 signed in as `subject`.
struct Setup {
    _dir: tempfile::TempDir,
    gw: Gateway,
    now: Arc<AtomicI64>,
    svc: Service,
    c: Client,
}

async fn setup(t0: Ts, subject: &str, national: bool) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate("k1").unwrap();
    let gw = Gateway::start().await;
    let (clock, now) = manual_clock(t0);
    let svc = Service::start(dir.path(), clock, &key, &gw.url).await;
    let p = Principal::municipality(subject, "11110", national);
    let c = client(&svc.addr, Some(token(&key, &p))).await;
    Setup {
        _dir: dir,
        gw,
        now,
        svc,
        c,
    }
}

fn config(id: &str, municipality: &str, consent: bool) -> pb::HouseholdConfig {
    pb::HouseholdConfig {
        household_id: id.into(),
        municipality_code: municipality.into(),
        dong_code: format!("{municipality}51500"),
        device_ids: vec![format!("plug-{id}")],
        night_holiday_consent: consent,
        ..Default::default()
    }
}

fn contact() -> pb::HouseholdContact {
    pb::HouseholdContact {
        name: "홍길동".into(),
        phone: "010-1234-5678".into(),
        address: "서울특별시 종로구 1".into(),
        guardians: vec!["딸 010-9999-0000".into()],
    }
}

fn opened(household: &str, municipality: &str, stage: pb::Stage, at: Ts) -> pb::IncidentEvent {
    let incident_id = format!("INA:{household}:{}", at.millis() - 43_200_000);
    pb::IncidentEvent {
        event_id: format!("{incident_id}/1/{}", stage as i32),
        incident_id,
        household_id: household.into(),
        municipality_code: municipality.into(),
        dong_code: format!("{municipality}51500"),
        kind: pb::IncidentKind::Inactivity as i32,
        r#type: pb::IncidentEventType::Opened as i32,
        stage: stage as i32,
        due_at: Some(timestamp(at)),
        emitted_at: Some(timestamp(at)),
        ..Default::default()
    }
}

fn follow_up(
    e: &pb::IncidentEvent,
    ty: pb::IncidentEventType,
    stage: pb::Stage,
) -> pb::IncidentEvent {
    let mut f = e.clone();
    f.r#type = ty as i32;
    f.stage = stage as i32;
    f.event_id = format!("{}/{}/{}", e.incident_id, ty as i32, stage as i32);
    f
}

// -------------------------------------------------------------------- tests

/// A stalled partition is the platform's incident, not one municipality's:
/// its event carries no municipality code (exactly as the shard emits it),
/// and it must still reach SRE — not be rejected as malformed — and be
/// visible to the national role only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_stall_reaches_sre() {
    use dolbom_domain::convert::{platform_event, PlatformIncident};
    use dolbom_domain::incident::{EventType, IncidentKind, Route};
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate("k1").unwrap();
    let mut gw = Gateway::start().await;
    let t0 = kst(2026, 11, 23, 3, 0); // night: no office is open
    let (clock, _) = manual_clock(t0);
    let svc = Service::start(dir.path(), clock, &key, &gw.url).await;
    let stall = platform_event(&PlatformIncident {
        kind: IncidentKind::PipelineStall,
        subject: "partition-3",
        event: EventType::Opened,
        episode_start: t0,
        due_at: t0,
        emitted_at: t0,
        route: Route::Sre,
        municipality: None,
        dong: None,
        affected_households: 25_000,
    });
    assert!(stall.municipality_code.is_empty());
    assert_eq!(svc.core.ingest(vec![stall.clone()]).await.unwrap(), 1);
    let hit = gw.next().await;
    let to_sre = match hit.path.as_str() {
        "/sms" => hit.body["to"][0] == SRE_SMS,
        _ => hit.body["tier"] == "SRE",
    };
    assert!(to_sre, "the stall went to SRE: {hit:?}");
    assert!(hit.idempotency_key.starts_with(&stall.incident_id));

    // The national role sees it; a municipality does not.
    let mut nat = client(&svc.addr, Some(token(&key, &Principal::national("ops")))).await;
    let seen = nat
        .incidents
        .list_incidents(pb::ListIncidentsRequest {
            filter: Some(pb::IncidentFilter {
                kind: pb::IncidentKind::PipelineStall as i32,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .incidents;
    assert!(seen.iter().any(|i| i.incident_id == stall.incident_id));
    let jongno = Principal::municipality("jongno-system", "11110", true);
    let mut a = client(&svc.addr, Some(token(&key, &jongno))).await;
    if let Ok(own) = a
        .incidents
        .list_incidents(pb::ListIncidentsRequest::default())
        .await
    {
        let own = own.into_inner().incidents;
        assert!(own.iter().all(|i| i.incident_id != stall.incident_id));
    }

    // A household incident without a municipality is still malformed.
    let mut bad = opened("hh-1", "11110", pb::Stage::Attention, t0);
    bad.municipality_code.clear();
    assert_eq!(svc.core.ingest(vec![bad]).await.unwrap(), 0);
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_are_isolated_both_ways_and_contact_reads_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate("k1").unwrap();
    let gw = Gateway::start().await;
    let (clock, _) = manual_clock(kst(2026, 11, 23, 10, 0));
    let svc = Service::start(dir.path(), clock, &key, &gw.url).await;
    let jongno = Principal::municipality("jongno-system", "11110", true);
    let busan = Principal::municipality("busan-jung-system", "26110", false);
    let mut a = client(&svc.addr, Some(token(&key, &jongno))).await;
    let mut b = client(&svc.addr, Some(token(&key, &busan))).await;
    let mut nat = client(&svc.addr, Some(token(&key, &Principal::national("ops")))).await;
    let mut anon = client(&svc.addr, None).await;

    for (c, id, m) in [(&mut a, "11110-a", "11110"), (&mut b, "26110-b", "26110")] {
        c.registry
            .create_household(pb::CreateHouseholdRequest {
                config: Some(config(id, m, false)),
                contact: Some(contact()),
            })
            .await
            .unwrap();
    }
    // Creating in another municipality is refused.
    let e = b
        .registry
        .create_household(pb::CreateHouseholdRequest {
            config: Some(config("hh-x", "11110", false)),
            contact: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);

    svc.core
        .ingest(vec![
            opened(
                "11110-a",
                "11110",
                pb::Stage::Attention,
                kst(2026, 11, 23, 10, 0),
            ),
            opened(
                "26110-b",
                "26110",
                pb::Stage::Attention,
                kst(2026, 11, 23, 10, 0),
            ),
        ])
        .await
        .unwrap();
    let inc_a = format!(
        "INA:11110-a:{}",
        kst(2026, 11, 23, 10, 0).millis() - 43_200_000
    );
    let inc_b = format!(
        "INA:26110-b:{}",
        kst(2026, 11, 23, 10, 0).millis() - 43_200_000
    );

    // Both ways: each sees its own, the other's is NOT_FOUND exactly like a
    // household or incident that does not exist.
    for (c, own, other, own_inc, other_inc, other_m) in [
        (&mut a, "11110-a", "26110-b", &inc_a, &inc_b, "26110"),
        (&mut b, "26110-b", "11110-a", &inc_b, &inc_a, "11110"),
    ] {
        let get = |id: &str| pb::GetHouseholdRequest {
            household_id: id.into(),
            include_contact: false,
        };
        c.registry.get_household(get(own)).await.unwrap();
        let foreign = c.registry.get_household(get(other)).await.unwrap_err();
        let missing = c.registry.get_household(get("hh-none")).await.unwrap_err();
        assert_eq!(
            (foreign.code(), missing.code()),
            (Code::NotFound, Code::NotFound)
        );
        assert_eq!(
            foreign.message().replace(other, "ID"),
            missing.message().replace("hh-none", "ID")
        );
        c.incidents
            .get_incident(pb::GetIncidentRequest {
                incident_id: own_inc.clone(),
            })
            .await
            .unwrap();
        for r in [
            c.incidents
                .get_incident(pb::GetIncidentRequest {
                    incident_id: other_inc.clone(),
                })
                .await,
            c.incidents
                .acknowledge(pb::AcknowledgeRequest {
                    incident_id: other_inc.clone(),
                    note: String::new(),
                })
                .await,
            c.incidents
                .resolve(pb::ResolveRequest {
                    incident_id: other_inc.clone(),
                    outcome: pb::Outcome::FalseAlarm as i32,
                    note: String::new(),
                })
                .await,
        ] {
            assert_eq!(r.unwrap_err().code(), Code::NotFound);
        }
        let e = c
            .registry
            .list_households(pb::ListHouseholdsRequest {
                municipality_code: other_m.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied);
        let filter = pb::IncidentFilter {
            municipality_code: other_m.into(),
            ..Default::default()
        };
        let e = c
            .incidents
            .list_incidents(pb::ListIncidentsRequest {
                filter: Some(filter.clone()),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied);
        let e = c
            .incidents
            .watch_incidents(pb::WatchIncidentsRequest {
                filter: Some(filter),
                resume_cursor: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied);
        // The own listing holds only the own incident.
        let own_list = c
            .incidents
            .list_incidents(pb::ListIncidentsRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(own_list.incidents.len(), 1);
        assert_eq!(&own_list.incidents[0].incident_id, own_inc);
        // A watch from the start of the log sees only its own events.
        let mut w = c
            .incidents
            .watch_incidents(pb::WatchIncidentsRequest {
                filter: None,
                resume_cursor: "c0".into(),
            })
            .await
            .unwrap()
            .into_inner();
        let first = w.message().await.unwrap().unwrap();
        assert_eq!(&first.event.unwrap().incident_id, own_inc);
    }
    // The national role sees both.
    for m in ["11110", "26110"] {
        let l = nat
            .incidents
            .list_incidents(pb::ListIncidentsRequest {
                filter: Some(pb::IncidentFilter {
                    municipality_code: m.into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(l.incidents.len(), 1);
    }
    // No token, or a token from another key: UNAUTHENTICATED.
    let e = anon
        .registry
        .get_household(pb::GetHouseholdRequest {
            household_id: "11110-a".into(),
            include_contact: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let forged = SigningKey::generate("k1").unwrap();
    let mut f = client(&svc.addr, Some(token(&forged, &Principal::national("x")))).await;
    let e = f
        .incidents
        .list_incidents(pb::ListIncidentsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);

    // Personal data: refused without the pii claim, returned and audited with it.
    let e = b
        .registry
        .get_household(pb::GetHouseholdRequest {
            household_id: "26110-b".into(),
            include_contact: true,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let h = a
        .registry
        .get_household(pb::GetHouseholdRequest {
            household_id: "11110-a".into(),
            include_contact: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(h.contact.unwrap().phone, "010-1234-5678");
    // A second read in the same millisecond (the clock stands still here)
    // leaves its own audit row: reads never collapse into one.
    a.registry
        .get_household(pb::GetHouseholdRequest {
            household_id: "11110-a".into(),
            include_contact: true,
        })
        .await
        .unwrap();
    let now = kst(2026, 11, 23, 10, 0).millis();
    let audit = svc
        .history
        .audit("11110", now - 60_000, now + 60_000)
        .await
        .unwrap();
    let reads = audit
        .iter()
        .filter(|e| {
            e.action == "registry.GetHousehold.contact"
                && e.principal == "jongno-system"
                && e.subject == "11110-a"
        })
        .count();
    assert_eq!(reads, 2, "{audit:?}");
    // The contact is sealed at rest and never published.
    let raw = std::fs::read(dir.path().join("notify.sqlite")).unwrap();
    assert!(!raw.windows(13).any(|w| w == b"010-1234-5678"));
    svc.publish.publish_pending().await.unwrap();
    let published = svc.publisher.households.lock().unwrap().clone();
    assert!(published.iter().any(|(id, _)| id == "11110-a"));
    for (_, bytes) in &published {
        let b = bytes.as_ref().unwrap();
        assert!(!b.windows(13).any(|w| w == b"010-1234-5678"));
        assert!(!b.windows("홍길동".len()).any(|w| w == "홍길동".as_bytes()));
    }
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_errors_name_the_field() {
    let Setup {
        _dir, svc, mut c, ..
    } = setup(kst(2026, 11, 23, 10, 0), "jongno", true).await;
    let create = |cfg: pb::HouseholdConfig| pb::CreateHouseholdRequest {
        config: Some(cfg),
        contact: Some(contact()),
    };
    let mut bad_dong = config("11110-1", "11110", false);
    bad_dong.dong_code = "2611051500".into();
    let mut bad_thresholds = config("11110-1", "11110", false);
    bad_thresholds.thresholds = Some(pb::StageThresholds {
        attention_minutes: 600,
        caution_minutes: 500,
        danger_minutes: 2000,
    });
    let mut bad_id = config("hh 1", "11110", false);
    bad_id.household_id = "hh 1".into();
    let mut bad_phone = create(config("11110-1", "11110", false));
    bad_phone.contact.as_mut().unwrap().phone = "call me".into();
    for (req, field) in [
        (create(bad_dong), "config.dong_code"),
        (create(bad_thresholds), "config.thresholds"),
        (create(bad_id), "config.household_id"),
        (bad_phone, "contact.phone"),
        (
            pb::CreateHouseholdRequest {
                config: None,
                contact: None,
            },
            "config",
        ),
    ] {
        let e = c.registry.create_household(req).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{field}: {e:?}");
        assert!(e.message().starts_with(field), "{field}: {}", e.message());
    }
    c.registry
        .create_household(create(config("11110-1", "11110", false)))
        .await
        .unwrap();
    // The same plug on a second household.
    let mut dup = config("11110-2", "11110", false);
    dup.device_ids = vec!["plug-11110-1".into()];
    let e = c.registry.create_household(create(dup)).await.unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    assert!(e.message().contains("device_ids[0]"));
    // Stale version.
    let e = c
        .registry
        .update_household(pb::UpdateHouseholdRequest {
            config: Some(config("11110-1", "11110", true)),
            contact: None,
            expected_version: 7,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Aborted);
    let h = c
        .registry
        .update_household(pb::UpdateHouseholdRequest {
            config: Some(config("11110-1", "11110", true)),
            contact: None,
            expected_version: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(h.config.unwrap().version, 2);
    // Thresholds through SetThresholds are validated the same way.
    let e = c
        .registry
        .set_thresholds(pb::SetThresholdsRequest {
            household_id: "11110-1".into(),
            thresholds: Some(pb::StageThresholds {
                attention_minutes: 0,
                caution_minutes: 10,
                danger_minutes: 20,
            }),
            offline_after_minutes: 0,
            learning: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("thresholds"), "{}", e.message());
    // Resolve needs an outcome, and RECOVERED is the platform's.
    svc.core
        .ingest(vec![opened(
            "11110-1",
            "11110",
            pb::Stage::Attention,
            kst(2026, 11, 23, 10, 0),
        )])
        .await
        .unwrap();
    let id = format!(
        "INA:11110-1:{}",
        kst(2026, 11, 23, 10, 0).millis() - 43_200_000
    );
    for outcome in [pb::Outcome::Unspecified, pb::Outcome::Recovered] {
        let e = c
            .incidents
            .resolve(pb::ResolveRequest {
                incident_id: id.clone(),
                outcome: outcome as i32,
                note: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().starts_with("outcome"));
    }
    let e = c
        .incidents
        .watch_incidents(pb::WatchIncidentsRequest {
            filter: None,
            resume_cursor: "garbage".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    // A malformed event is skipped; the good one in the same batch counts.
    let mut bad = opened(
        "hh-9",
        "11110",
        pb::Stage::Attention,
        kst(2026, 11, 23, 10, 0),
    );
    bad.municipality_code = "seoul".into();
    let good = opened(
        "hh-8",
        "11110",
        pb::Stage::Attention,
        kst(2026, 11, 23, 10, 0),
    );
    assert_eq!(svc.core.ingest(vec![bad, good]).await.unwrap(), 1);
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_resumes_after_a_disconnect_without_gaps_or_repeats() {
    let Setup {
        _dir, svc, mut c, ..
    } = setup(kst(2026, 11, 23, 10, 0), "jongno", false).await;
    let t = kst(2026, 11, 23, 10, 0);
    let ev = |i: u32| opened(&format!("hh-{i}"), "11110", pb::Stage::Attention, t);

    let mut w = c
        .incidents
        .watch_incidents(pb::WatchIncidentsRequest::default())
        .await
        .unwrap()
        .into_inner();
    svc.core.ingest(vec![ev(0), ev(1), ev(2)]).await.unwrap();
    let mut cursor = String::new();
    for i in 0..2 {
        let m = w.message().await.unwrap().unwrap();
        assert_eq!(m.event.unwrap().household_id, format!("hh-{i}"));
        cursor = m.cursor;
    }
    drop(w); // disconnect after two
             // Events keep coming while nobody watches, one batch at a time.
    for i in 3..8 {
        svc.core.ingest(vec![ev(i)]).await.unwrap();
    }
    let mut w = c
        .incidents
        .watch_incidents(pb::WatchIncidentsRequest {
            filter: None,
            resume_cursor: cursor,
        })
        .await
        .unwrap()
        .into_inner();
    // Live events after the reconnect, and a duplicate that must not show.
    svc.core.ingest(vec![ev(8), ev(3)]).await.unwrap();
    let mut got = Vec::new();
    for _ in 2..9 {
        got.push(
            w.message()
                .await
                .unwrap()
                .unwrap()
                .event
                .unwrap()
                .household_id,
        );
    }
    let want: Vec<String> = (2..9).map(|i| format!("hh-{i}")).collect();
    assert_eq!(got, want);
    // Nothing more is pending: the next event is the next one.
    svc.core.ingest(vec![ev(9)]).await.unwrap();
    let next = w.message().await.unwrap().unwrap();
    assert_eq!(next.event.unwrap().household_id, "hh-9");
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgement_stops_escalation_and_recovery_tells_whoever_was_told() {
    let t0 = kst(2026, 11, 23, 10, 0);
    let Setup {
        _dir,
        mut gw,
        now,
        svc,
        mut c,
    } = setup(t0, "jongno-dong-3", false).await;
    let e1 = opened("hh-1", "11110", pb::Stage::Attention, t0);
    let e2 = opened("hh-2", "11110", pb::Stage::Attention, t0);
    svc.core.ingest(vec![e1.clone(), e2.clone()]).await.unwrap();
    let k1 = format!("{}/s0/a1", e1.incident_id);
    let k2 = format!("{}/s0/a1", e2.incident_id);
    let mut hits = gw.until("/sms", &k1).await;
    if !hits.iter().any(|h| h.idempotency_key == k2) {
        hits.extend(gw.until("/sms", &k2).await);
    }
    let h = hits
        .iter()
        .find(|h| h.path == "/sms" && h.idempotency_key == k1)
        .unwrap();
    assert_eq!(h.body["to"][0], DONG_SMS);
    let text = h.body["text"].as_str().unwrap();
    assert!(text.contains("관심") && text.contains("hh-1") && !text.contains("홍길동"));

    // Incident 1 is acknowledged; incident 2 is not.
    let inc = c
        .incidents
        .acknowledge(pb::AcknowledgeRequest {
            incident_id: e1.incident_id.clone(),
            note: "전화 연결됨".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(inc.state, pb::IncidentState::Acknowledged as i32);
    assert_eq!(inc.acknowledged_by, "jongno-dong-3");
    now.store(t0.plus_minutes(30).millis(), Ordering::SeqCst);
    // Only incident 2's clock moves: its repeat goes out, nothing for 1.
    assert_eq!(svc.core.tick().await.unwrap(), 1);
    let k2b = format!("{}/s0/a2", e2.incident_id);
    let seen = gw.until("/sms", &k2b).await;
    // (The first send's webhook may still arrive; nothing new for incident 1.)
    assert!(seen
        .iter()
        .all(|h| !h.idempotency_key.starts_with(&e1.incident_id) || h.idempotency_key == k1));
    now.store(t0.plus_minutes(45).millis(), Ordering::SeqCst);
    assert_eq!(svc.core.tick().await.unwrap(), 0);
    let esc = svc.core.escalation(&e1.incident_id).await.unwrap();
    assert!(matches!(
        esc.phase,
        dolbom_escalation::Phase::Acknowledged { .. }
    ));

    // Activity comes back in home 2: everyone told hears so, and its clock ends.
    let rec = follow_up(&e2, pb::IncidentEventType::Recovered, pb::Stage::Attention);
    svc.core.ingest(vec![rec]).await.unwrap();
    let recovered = format!("{}/recovered/DONG_OFFICE", e2.incident_id);
    let seen = gw.until("/hook", &recovered).await;
    assert_eq!(seen.last().unwrap().body["purpose"], "recovered");
    let inc2 = c
        .incidents
        .get_incident(pb::GetIncidentRequest {
            incident_id: e2.incident_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(inc2.state, pb::IncidentState::Resolved as i32);
    assert_eq!(inc2.outcome, pb::Outcome::Recovered as i32);
    now.store(t0.plus_minutes(2000).millis(), Ordering::SeqCst);
    assert_eq!(svc.core.tick().await.unwrap(), 0);

    // The acknowledgement went out as an event and into the escalation log.
    svc.publish.publish_pending().await.unwrap();
    let evs = svc.publisher.events.lock().unwrap().clone();
    assert!(evs.iter().any(|e| e.incident_id == e1.incident_id
        && e.r#type == pb::IncidentEventType::Acknowledged as i32));
    svc.core.history_flush().await;
    let log = svc.history.escalation(&e1.incident_id).await.unwrap();
    assert!(log
        .iter()
        .any(|e| e.action == dolbom_history::EscalationAction::Acknowledged));
    assert!(log.iter().any(
        |e| e.action == dolbom_history::EscalationAction::DeliveryAttempt
            && e.channel == "sms"
            && e.result == "delivered"
    ));
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_escalation_resumes_without_sending_a_step_twice() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate("k1").unwrap();
    let mut gw = Gateway::start().await;
    let t0 = kst(2026, 11, 23, 10, 0);
    let (clock, now) = manual_clock(t0);
    let e = opened("hh-1", "11110", pb::Stage::Attention, t0);
    let mut keys = Vec::new();
    {
        let svc = Service::start(dir.path(), clock.clone(), &key, &gw.url).await;
        svc.core.ingest(vec![e.clone()]).await.unwrap();
        keys.push(gw.until("/sms", &format!("{}/s0/a1", e.incident_id)).await);
        now.store(t0.plus_minutes(30).millis(), Ordering::SeqCst);
        svc.core.tick().await.unwrap();
        keys.push(gw.until("/sms", &format!("{}/s0/a2", e.incident_id)).await);
        svc.stop().await;
    }
    // While it is down, the next deadline passes.
    now.store(t0.plus_minutes(65).millis(), Ordering::SeqCst);
    let svc = Service::start(dir.path(), clock, &key, &gw.url).await;
    // The replayed Kafka event (offsets not yet committed) changes nothing.
    assert_eq!(svc.core.ingest(vec![e.clone()]).await.unwrap(), 0);
    assert_eq!(svc.core.tick().await.unwrap(), 1);
    let step1 = format!("{}/s1/a1", e.incident_id);
    keys.push(gw.until("/sms", &step1).await);
    let sms: Vec<String> = keys
        .into_iter()
        .flatten()
        .filter(|h| h.path == "/sms")
        .map(|h| h.idempotency_key)
        .collect();
    let unique: HashSet<&String> = sms.iter().collect();
    assert_eq!(unique.len(), sms.len(), "a step was sent twice: {sms:?}");
    assert_eq!(sms.len(), 3);
    // Nothing else is due until the next deadline.
    assert_eq!(svc.core.tick().await.unwrap(), 0);
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_sms_gateway_is_retried_then_escalates() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate("k1").unwrap();
    let mut gw = Gateway::start().await;
    gw.failing.lock().unwrap().insert(DONG_SMS.into());
    gw.failing.lock().unwrap().insert("DONG_OFFICE".into());
    let t0 = kst(2026, 11, 23, 10, 0);
    let (clock, _) = manual_clock(t0);
    let svc = Service::start(dir.path(), clock, &key, &gw.url).await;
    let e = opened("hh-1", "11110", pb::Stage::Attention, t0);
    svc.core.ingest(vec![e.clone()]).await.unwrap();
    // Three tries at the dong office (503 each), then at once — not after
    // the 30-minute wait — the control center.
    let seen = gw.until("/sms", &format!("{}/s1/a1", e.incident_id)).await;
    let dong: Vec<&Hit> = seen
        .iter()
        .filter(|h| h.body["to"][0] == DONG_SMS)
        .collect();
    assert_eq!(dong.len(), 3);
    assert!(dong
        .iter()
        .all(|h| h.idempotency_key == format!("{}/s0/a1", e.incident_id)));
    assert_eq!(seen.last().unwrap().body["to"][0], CENTER_SMS);
    svc.core.history_flush().await;
    let log = svc.history.escalation(&e.incident_id).await.unwrap();
    let failed = log
        .iter()
        .filter(|x| {
            x.action == dolbom_history::EscalationAction::DeliveryAttempt
                && x.channel == "sms"
                && x.result == "failed"
        })
        .count();
    assert_eq!(failed, 3);
    assert!(log
        .iter()
        .any(|x| x.action == dolbom_history::EscalationAction::Escalated
            && x.detail == "delivery_failed"));
    svc.stop().await;
}

/// Nobody on the policy can be reached (every number and endpoint fails):
/// the ladder runs, then SRE is paged once and the last step is sent again
/// after a backoff, instead of the escalation ending quietly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_reachable_pages_sre_and_keeps_trying() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate("k1").unwrap();
    let mut gw = Gateway::start().await;
    for f in [
        DONG_SMS,
        CENTER_SMS,
        EMERGENCY_SMS,
        "DONG_OFFICE",
        "CONTROL_CENTER",
        "EMERGENCY",
    ] {
        gw.failing.lock().unwrap().insert(f.into());
    }
    let t0 = kst(2026, 11, 23, 10, 0);
    let (clock, now) = manual_clock(t0);
    let svc = Service::start(dir.path(), clock, &key, &gw.url).await;
    let e = opened("hh-1", "11110", pb::Stage::Attention, t0);
    svc.core.ingest(vec![e.clone()]).await.unwrap();
    let page = format!("{}/unreachable", e.incident_id);
    // Pages go out over the policy's notice channels (watch + webhook).
    let seen = gw.until("/hook", &page).await;
    assert_eq!(seen.last().unwrap().body["tier"], "SRE");
    // The last step is tried again after its backoff, with a new message id.
    now.store(t0.plus_minutes(2).millis(), Ordering::SeqCst);
    assert!(svc.core.tick().await.unwrap() >= 1);
    let last_step = svc.core.counts().await.unwrap();
    assert!(last_step.running_escalations >= 1, "still running");
    let retry = gw.next().await;
    assert!(
        retry
            .idempotency_key
            .starts_with(&format!("{}/s", e.incident_id))
            && retry.idempotency_key != page,
        "{retry:?}"
    );
    svc.core.history_flush().await;
    let log = svc.history.escalation(&e.incident_id).await.unwrap();
    assert!(log.iter().any(|x| x.detail.starts_with("unreachable")));
    assert!(!log.iter().any(|x| x.detail == "exhausted"));
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holiday_and_night_routing_with_and_without_consent() {
    // 추석 2026 (Friday 25 September), 11:00.
    let chuseok = kst(2026, 9, 25, 11, 0);
    let Setup {
        _dir,
        mut gw,
        now,
        svc,
        mut c,
    } = setup(chuseok, "jongno", false).await;
    for (id, consent) in [("11110-yes", true), ("11110-no", false)] {
        c.registry
            .create_household(pb::CreateHouseholdRequest {
                config: Some(config(id, "11110", consent)),
                contact: None,
            })
            .await
            .unwrap();
    }
    let yes = opened("11110-yes", "11110", pb::Stage::Caution, chuseok);
    let no = opened("11110-no", "11110", pb::Stage::Caution, chuseok);
    svc.core
        .ingest(vec![no.clone(), yes.clone()])
        .await
        .unwrap();
    // With consent: the control center, by SMS and signed webhook.
    let seen = gw
        .until("/hook", &format!("{}/s0/a1", yes.incident_id))
        .await;
    let mut seen = seen;
    if !seen
        .iter()
        .any(|h| h.path == "/sms" && h.idempotency_key.starts_with(&yes.incident_id))
    {
        seen.extend(
            gw.until("/sms", &format!("{}/s0/a1", yes.incident_id))
                .await,
        );
    }
    let sms = seen.iter().find(|h| h.path == "/sms").unwrap();
    assert_eq!(sms.body["to"][0], CENTER_SMS);
    assert_eq!(sms.body["message_id"], format!("{}/s0/a1", yes.incident_id));
    // Without consent nothing was sent: held until the office opens on Monday.
    assert!(seen
        .iter()
        .all(|h| !h.idempotency_key.starts_with(&no.incident_id)));
    let held = svc.core.escalation(&no.incident_id).await.unwrap();
    let monday = kst(2026, 9, 28, 9, 0);
    assert_eq!(held.phase, dolbom_escalation::Phase::Held { until: monday });
    // The held-incident gauges' counts: one held, since the opening.
    let counts = svc.core.counts().await.unwrap();
    assert_eq!(
        (counts.held_escalations, counts.held_since_ms),
        (1, Some(chuseok.millis()))
    );
    // Saturday night: still held (the yes-household's repeat goes out, to the
    // control center again).
    now.store(kst(2026, 9, 26, 23, 0).millis(), Ordering::SeqCst);
    svc.core.tick().await.unwrap();
    let counts = svc.core.counts().await.unwrap();
    assert_eq!(
        (counts.held_escalations, counts.held_since_ms),
        (1, Some(chuseok.millis()))
    );
    let seen = gw
        .until("/sms", &format!("{}/s0/a2", yes.incident_id))
        .await;
    assert!(seen
        .iter()
        .all(|h| !h.idempotency_key.starts_with(&no.incident_id)));
    assert_eq!(seen.last().unwrap().body["to"][0], CENTER_SMS);
    // Consent given over the API while a step is held: it goes out at once,
    // to the control center.
    c.registry
        .create_household(pb::CreateHouseholdRequest {
            config: Some(config("11110-late", "11110", false)),
            contact: None,
        })
        .await
        .unwrap();
    let late = opened(
        "11110-late",
        "11110",
        pb::Stage::Attention,
        kst(2026, 9, 26, 23, 0),
    );
    svc.core.ingest(vec![late.clone()]).await.unwrap();
    let held = svc.core.escalation(&late.incident_id).await.unwrap();
    assert!(matches!(held.phase, dolbom_escalation::Phase::Held { .. }));
    c.registry
        .set_consent(pb::SetConsentRequest {
            household_id: "11110-late".into(),
            night_holiday_consent: true,
        })
        .await
        .unwrap();
    let seen = gw
        .until("/sms", &format!("{}/s0/a1", late.incident_id))
        .await;
    assert_eq!(seen.last().unwrap().body["to"][0], CENTER_SMS);
    // Monday 09:00: the dong office gets the held one.
    now.store(monday.millis(), Ordering::SeqCst);
    svc.core.tick().await.unwrap();
    let seen = gw.until("/sms", &format!("{}/s0/a1", no.incident_id)).await;
    assert_eq!(seen.last().unwrap().body["to"][0], DONG_SMS);
    let counts = svc.core.counts().await.unwrap();
    assert_eq!((counts.held_escalations, counts.held_since_ms), (0, None));
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_prunes_the_watch_log_and_a_replay_never_restarts_an_ended_escalation() {
    let t0 = kst(2026, 11, 23, 10, 0);
    let Setup {
        _dir,
        now,
        svc,
        mut c,
        ..
    } = setup(t0, "jongno", false).await;
    let old: Vec<pb::IncidentEvent> = (0..3)
        .map(|i| opened(&format!("hh-{i}"), "11110", pb::Stage::Attention, t0))
        .collect();
    svc.core.ingest(old.clone()).await.unwrap();
    c.incidents
        .resolve(pb::ResolveRequest {
            incident_id: old[0].incident_id.clone(),
            // Taken to hospital: the escalation ends for good (a person found
            // fine at home would be rechecked while the home stays quiet).
            outcome: pb::Outcome::Hospitalised as i32,
            note: String::new(),
        })
        .await
        .unwrap();
    svc.publish.publish_pending().await.unwrap();
    // 31 days later: Thursday 2026-12-24, 10:00 (office hours).
    let later = kst(2026, 12, 24, 10, 0);
    now.store(later.millis(), Ordering::SeqCst);
    svc.core
        .ingest(vec![opened("hh-9", "11110", pb::Stage::Attention, later)])
        .await
        .unwrap();
    let swept = svc.core.sweep().await.unwrap();
    // The three old OPENED events and the RESOLVED event; the resolved
    // incident's ended escalation; the view stays (400 days).
    assert_eq!(swept.events, 4, "{swept:?}");
    assert_eq!(swept.escalations, 1, "{swept:?}");
    assert_eq!(swept.incidents, 0, "{swept:?}");
    let e = c
        .incidents
        .watch_incidents(pb::WatchIncidentsRequest {
            filter: None,
            resume_cursor: "c1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange);
    // From the last pruned position it resumes with the first kept event.
    let mut w = c
        .incidents
        .watch_incidents(pb::WatchIncidentsRequest {
            filter: None,
            resume_cursor: "c4".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = w.message().await.unwrap().unwrap();
    assert_eq!(first.event.unwrap().household_id, "hh-9");
    drop(w);
    // Kafka replays the resolved incident's OPENED event: it is logged again,
    // but no escalation starts for an incident that is resolved.
    svc.core.ingest(vec![old[0].clone()]).await.unwrap();
    assert!(svc.core.escalation(&old[0].incident_id).await.is_none());
    let inc = c
        .incidents
        .get_incident(pb::GetIncidentRequest {
            incident_id: old[0].incident_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(inc.state, pb::IncidentState::Resolved as i32);
    svc.stop().await;
}

/// One notify instance per store: a second one on the same data refuses
/// to start (it would send every step twice); once the first has stopped,
/// a new one starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_on_the_same_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate("k1").unwrap();
    let gw = Gateway::start().await;
    let (clock, _) = manual_clock(kst(2026, 11, 23, 10, 0));
    let svc = Service::start(dir.path(), clock.clone(), &key, &gw.url).await;
    let opts = NotifyOptions {
        data_dir: dir.path().to_path_buf(),
        policies: vec![dolbom_notify::options::MunicipalityPolicy {
            municipality: "*".into(),
            policy: dolbom_escalation::Policy::watch_only(),
        }],
        ..Default::default()
    };
    let history: Arc<dyn HistoryStore> =
        Arc::new(EmbeddedStore::open_dir(dir.path(), Retention::default()).unwrap());
    let second = dolbom_notify::build(
        &opts,
        clock.clone(),
        Arc::new(MemoryPublisher::default()),
        history.clone(),
    )
    .await;
    let e = second.err().expect("a second instance is refused");
    assert!(e.to_string().contains("another notify instance"), "{e}");
    svc.stop().await;
    let again = Service::start(dir.path(), clock, &key, &gw.url).await;
    again.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_readiness_and_reflection_lists_the_services_without_a_token() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate("k1").unwrap();
    let gw = Gateway::start().await;
    let (clock, _) = manual_clock(kst(2026, 11, 23, 10, 0));
    let svc = Service::start_tuned(dir.path(), clock, &key, &gw.url, |o| {
        o.api.reflection = true
    })
    .await;
    let ch = Channel::from_shared(svc.addr.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();

    let mut health = HealthClient::new(ch.clone());
    let mut statuses = health
        .watch(HealthCheckRequest {
            service: "dolbom.v1.IncidentService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let next = async |s: &mut tonic::Streaming<tonic_health::pb::HealthCheckResponse>| {
        tokio::time::timeout(Duration::from_secs(10), s.message())
            .await
            .expect("a health status within 10 s")
            .unwrap()
            .unwrap()
            .status
    };
    let mut status = next(&mut statuses).await;
    while status != ServingStatus::Serving as i32 {
        status = next(&mut statuses).await;
    }
    // The incident input stops: NOT_SERVING, for every service.
    svc.core.set_input_ok(false);
    while next(&mut statuses).await != ServingStatus::NotServing as i32 {}
    let overall = health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(overall.status, ServingStatus::NotServing as i32);
    svc.core.set_input_ok(true);
    while next(&mut statuses).await != ServingStatus::Serving as i32 {}

    // Reflection, as grpcurl uses it, and as older clients ask it.
    let names = list_services(ch.clone()).await.unwrap();
    // (Each version lists itself as the reflection service.)
    let not_reflection = |v: Vec<String>| -> Vec<String> {
        v.into_iter()
            .filter(|n| !n.starts_with("grpc.reflection."))
            .collect()
    };
    assert_eq!(
        not_reflection(list_services_v1alpha(ch).await.unwrap()),
        not_reflection(names.clone())
    );
    for s in [
        "dolbom.v1.RegistryService",
        "dolbom.v1.IncidentService",
        "dolbom.v1.StatisticsService",
        "grpc.health.v1.Health",
    ] {
        assert!(names.iter().any(|n| n == s), "{s} missing from {names:?}");
    }
    drop(statuses);
    svc.stop().await;
}

/// A resolution says the person was fine when someone checked; it must not
/// silence the rest of the quiet spell (issue 14, path 10). A home still
/// quiet `recheck_minutes` after a "reached by phone" resolution opens the
/// incident again (new message ids, a REOPENED event, OPEN in the API); a
/// stage raised by the monitor after a resolution opens it at once; activity
/// coming back ends it quietly. A person taken to hospital is not rechecked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolution_never_silences_a_home_that_stays_quiet() {
    // 00:30 on a Monday: without consent the first step waits for the office.
    let t0 = kst(2026, 11, 23, 0, 30);
    let Setup {
        _dir,
        mut gw,
        now,
        svc,
        mut c,
    } = setup(t0, "jongno-dong-3", false).await;
    let fine = opened("hh-1", "11110", pb::Stage::Attention, t0);
    let away = opened("hh-2", "11110", pb::Stage::Attention, t0);
    svc.core
        .ingest(vec![fine.clone(), away.clone()])
        .await
        .unwrap();
    let resolve = |id: &str, outcome: pb::Outcome| pb::ResolveRequest {
        incident_id: id.into(),
        outcome: outcome as i32,
        note: String::new(),
    };
    let t1 = t0.plus_minutes(10);
    now.store(t1.millis(), Ordering::SeqCst);
    let r = c
        .incidents
        .resolve(resolve(&fine.incident_id, pb::Outcome::ReachedByPhone))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.state, pb::IncidentState::Resolved as i32);
    c.incidents
        .resolve(resolve(&away.incident_id, pb::Outcome::Hospitalised))
        .await
        .unwrap();
    // Nothing is due before the recheck (12 h, the default policy's).
    now.store(t1.plus_minutes(719).millis(), Ordering::SeqCst);
    assert_eq!(svc.core.tick().await.unwrap(), 0);
    // 12:40, still quiet: round 1 goes to the (now open) dong office.
    now.store(t1.plus_minutes(720).millis(), Ordering::SeqCst);
    assert_eq!(svc.core.tick().await.unwrap(), 1);
    let k1 = format!("{}/r1/s0/a1", fine.incident_id);
    let seen = gw.until("/sms", &k1).await;
    assert_eq!(seen.last().unwrap().body["to"][0], DONG_SMS);
    assert!(
        seen.iter()
            .all(|h| !h.idempotency_key.starts_with(&away.incident_id)),
        "the hospitalised person's home is not rechecked: {seen:?}"
    );
    let get = |id: &str| pb::GetIncidentRequest {
        incident_id: id.into(),
    };
    let inc = c
        .incidents
        .get_incident(get(&fine.incident_id))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(inc.state, pb::IncidentState::Open as i32);
    assert_eq!(inc.reopened, 1);
    assert_eq!(inc.outcome, pb::Outcome::Unspecified as i32);
    assert!(inc.resolved_at.is_none());

    // Resolved again; then the monitor raises the stage: round 2 at once.
    c.incidents
        .resolve(resolve(&fine.incident_id, pb::Outcome::VisitedSafe))
        .await
        .unwrap();
    let caution = follow_up(
        &fine,
        pb::IncidentEventType::StageRaised,
        pb::Stage::Caution,
    );
    svc.core.ingest(vec![caution]).await.unwrap();
    let k2 = format!("{}/r2/s0/a1", fine.incident_id);
    let seen = gw.until("/sms", &k2).await;
    assert!(seen.last().unwrap().body["text"]
        .as_str()
        .unwrap()
        .contains("주의"));
    let inc = c
        .incidents
        .get_incident(get(&fine.incident_id))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (inc.state, inc.reopened),
        (pb::IncidentState::Open as i32, 2)
    );

    // Resolved a third time, then activity comes back: it ends, nobody is
    // told again, no clock is left.
    c.incidents
        .resolve(resolve(&fine.incident_id, pb::Outcome::ReachedByPhone))
        .await
        .unwrap();
    let rec = follow_up(&fine, pb::IncidentEventType::Recovered, pb::Stage::Caution);
    svc.core.ingest(vec![rec]).await.unwrap();
    let esc = svc.core.escalation(&fine.incident_id).await.unwrap();
    assert!(esc.is_stopped(), "{:?}", esc.phase);
    now.store(t1.plus_minutes(10 * 1440).millis(), Ordering::SeqCst);
    assert_eq!(svc.core.tick().await.unwrap(), 0);
    let esc = svc.core.escalation(&away.incident_id).await.unwrap();
    assert!(esc.is_stopped(), "{:?}", esc.phase);

    // Each reopening went out as its own event, with an id per round.
    svc.publish.publish_pending().await.unwrap();
    let evs = svc.publisher.events.lock().unwrap().clone();
    let reopened: Vec<&str> = evs
        .iter()
        .filter(|e| e.r#type == pb::IncidentEventType::Reopened as i32)
        .map(|e| e.event_id.as_str())
        .collect();
    assert_eq!(reopened.len(), 2, "{reopened:?}");
    let resolved = evs
        .iter()
        .filter(|e| {
            e.incident_id == fine.incident_id && e.r#type == pb::IncidentEventType::Resolved as i32
        })
        .count();
    assert_eq!(resolved, 3, "one RESOLVED event per round");
    svc.stop().await;
}

/// A history store that can be taken away: while `down`, every write fails
/// (as a ScyllaDB cluster that cannot be reached would).
struct Flaky {
    inner: Arc<dyn HistoryStore>,
    down: Arc<std::sync::atomic::AtomicBool>,
}

#[async_trait::async_trait]
impl HistoryStore for Flaky {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    async fn write(&self, batch: &dolbom_history::WriteBatch) -> Result<(), HistoryError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(HistoryError::Scylla("unreachable (test)".into()));
        }
        self.inner.write(batch).await
    }
    async fn put_snapshot(&self, s: &dolbom_snapshots::ShardSnapshot) -> Result<(), HistoryError> {
        self.inner.put_snapshot(s).await
    }
    async fn get_snapshot(
        &self,
        group: &str,
        partition: i32,
    ) -> Result<Option<dolbom_snapshots::ShardSnapshot>, HistoryError> {
        self.inner.get_snapshot(group, partition).await
    }
    async fn timeline(
        &self,
        household_id: &str,
        from_ms: i64,
        to_ms: i64,
        resolution: dolbom_history::Resolution,
    ) -> Result<dolbom_history::Timeline, HistoryError> {
        self.inner
            .timeline(household_id, from_ms, to_ms, resolution)
            .await
    }
    async fn incidents(
        &self,
        q: &dolbom_history::IncidentQuery,
    ) -> Result<dolbom_history::IncidentPage, HistoryError> {
        self.inner.incidents(q).await
    }
    async fn incident_events(&self, id: &str) -> Result<Vec<pb::IncidentEvent>, HistoryError> {
        self.inner.incident_events(id).await
    }
    async fn escalation(
        &self,
        id: &str,
    ) -> Result<Vec<dolbom_history::EscalationEntry>, HistoryError> {
        self.inner.escalation(id).await
    }
    async fn audit(
        &self,
        m: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<dolbom_history::AuditEntry>, HistoryError> {
        self.inner.audit(m, from_ms, to_ms).await
    }
    async fn enforce_retention(
        &self,
        now_ms: i64,
    ) -> Result<dolbom_history::RetentionReport, HistoryError> {
        self.inner.enforce_retention(now_ms).await
    }
}

/// Issue 14, path 12: the history store must not gate alerting. With the
/// store down and a history writer queue far smaller than the work, every
/// alert still goes out, acknowledgement works and the service stays ready;
/// the escalation, delivery and audit records wait in notify's history
/// outbox and reach the store once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_go_out_while_the_history_store_is_down_and_its_records_drain_after() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate("k1").unwrap();
    let mut gw = Gateway::start().await;
    let t0 = kst(2026, 11, 23, 10, 0);
    let (clock, _now) = manual_clock(t0);
    let inner: Arc<dyn HistoryStore> =
        Arc::new(EmbeddedStore::open_dir(dir.path(), Retention::default()).unwrap());
    let down = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flaky = Arc::new(Flaky {
        inner: inner.clone(),
        down: down.clone(),
    });
    let svc = Service::start_with(dir.path(), clock, &key, &gw.url, flaky, |o| {
        o.writer.capacity = 4;
        o.writer.max_batch = 2;
    })
    .await;
    let p = Principal::municipality("jongno-dong-3", "11110", false);
    let mut c = client(&svc.addr, Some(token(&key, &p))).await;
    let events: Vec<pb::IncidentEvent> = (0..20)
        .map(|i| opened(&format!("hh-{i}"), "11110", pb::Stage::Attention, t0))
        .collect();
    tokio::time::timeout(Duration::from_secs(10), svc.core.ingest(events.clone()))
        .await
        .expect("ingest does not wait for the history store")
        .unwrap();
    // Every home's first step reaches the dong office by SMS.
    let mut want: HashSet<String> = events
        .iter()
        .map(|e| format!("{}/s0/a1", e.incident_id))
        .collect();
    while !want.is_empty() {
        let h = gw.next().await;
        if h.path == "/sms" {
            want.remove(&h.idempotency_key);
        }
    }
    let first = &events[0].incident_id;
    let acked = tokio::time::timeout(
        Duration::from_secs(10),
        c.incidents.acknowledge(pb::AcknowledgeRequest {
            incident_id: first.clone(),
            note: String::new(),
        }),
    )
    .await
    .expect("acknowledgement does not wait for the history store")
    .unwrap()
    .into_inner();
    assert_eq!(acked.state, pb::IncidentState::Acknowledged as i32);
    assert_eq!(
        svc.core.health(),
        Ok(()),
        "ready while the history store is down"
    );
    assert!(inner.escalation(first).await.unwrap().is_empty());
    // Personal data is returned only once its read is audited: with the
    // store down the read is refused within the audit timeout, not hung.
    let pii = Principal::municipality("jongno-welfare", "11110", true);
    let mut w = client(&svc.addr, Some(token(&key, &pii))).await;
    w.registry
        .create_household(pb::CreateHouseholdRequest {
            config: Some(config("11110-c", "11110", false)),
            contact: Some(contact()),
        })
        .await
        .unwrap();
    let asked = std::time::Instant::now();
    let e = tokio::time::timeout(
        dolbom_notify::core::AUDIT_TIMEOUT + Duration::from_secs(5),
        w.registry.get_household(pb::GetHouseholdRequest {
            household_id: "11110-c".into(),
            include_contact: true,
        }),
    )
    .await
    .expect("a contact read does not hang on the history store")
    .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    eprintln!("contact read refused after {:?}", asked.elapsed());

    // The store is back: the records drain into it.
    down.store(false, Ordering::SeqCst);
    let back = std::time::Instant::now();
    let deadline = back + Duration::from_secs(30);
    loop {
        let log = inner.escalation(first).await.unwrap();
        let acked = log
            .iter()
            .any(|e| e.action == dolbom_history::EscalationAction::Acknowledged);
        let delivered = log.iter().any(|e| {
            e.action == dolbom_history::EscalationAction::DeliveryAttempt
                && e.channel == "sms"
                && e.result == "delivered"
        });
        if acked && delivered {
            eprintln!(
                "history outbox: the first incident's records in the store {} ms after it came back",
                back.elapsed().as_millis()
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "records did not drain: {log:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    svc.core.history_flush().await;
    for e in &events {
        assert!(
            !inner.escalation(&e.incident_id).await.unwrap().is_empty(),
            "{}",
            e.incident_id
        );
    }
    svc.stop().await;
}

/// Waits until the escalation of `id` is retrying an unreachable last step
/// at a time later than `after`; returns that time.
async fn retrying_after(svc: &Service, id: &str, after: Ts) -> Ts {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(e) = svc.core.escalation(id).await {
            if let dolbom_escalation::Phase::Unreachable { retry_at } = e.phase {
                if retry_at > after {
                    return retry_at;
                }
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no retry scheduled after {after:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Issue 14 (fault list): the SMS gateway answers 401 — the platform's API
/// key expired — for 5 minutes while every webhook of the ladder fails too,
/// so nobody can be reached. SRE is paged once, the last step is retried
/// after 1, 2, 4 minutes, and the first retry after the key works again
/// reaches emergency services: the alert is late, never dropped, and the
/// successful message goes out once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_refusing_its_key_for_five_minutes_delays_but_never_drops_an_alert() {
    let t0 = kst(2026, 11, 23, 10, 0);
    let Setup {
        _dir,
        mut gw,
        now,
        svc,
        ..
    } = setup(t0, "jongno", false).await;
    for f in [
        SMS_KEY_REFUSED,
        "DONG_OFFICE",
        "CONTROL_CENTER",
        "EMERGENCY",
    ] {
        gw.failing.lock().unwrap().insert(f.into());
    }
    let e = opened("hh-1", "11110", pb::Stage::Attention, t0);
    svc.core.ingest(vec![e.clone()]).await.unwrap();
    let page = format!("{}/unreachable", e.incident_id);
    let seen = gw.until("/hook", &page).await;
    assert_eq!(seen.last().unwrap().body["tier"], "SRE");
    // Still refused at the retries after 1 and 3 minutes.
    let mut retry = retrying_after(&svc, &e.incident_id, t0).await;
    assert_eq!(retry, t0.plus_minutes(1));
    for expected in [3, 7] {
        now.store(retry.millis(), Ordering::SeqCst);
        assert!(svc.core.tick().await.unwrap() >= 1);
        retry = retrying_after(&svc, &e.incident_id, retry).await;
        assert_eq!(retry, t0.plus_minutes(expected));
    }
    // The key works again from minute 5; the retry at minute 7 gets through.
    gw.failing.lock().unwrap().clear();
    while gw.rx.try_recv().is_ok() {}
    now.store(retry.millis(), Ordering::SeqCst);
    assert!(svc.core.tick().await.unwrap() >= 1);
    let sms = loop {
        let h = gw.next().await;
        if h.path == "/sms" {
            break h;
        }
    };
    assert_eq!(sms.body["to"][0], EMERGENCY_SMS);
    assert!(sms
        .idempotency_key
        .starts_with(&format!("{}/s2/a", e.incident_id)));
    // Delivered (every result recorded): the escalation waits for an
    // acknowledgement again instead of retrying.
    svc.core.drain_deliveries().await;
    let esc = svc.core.escalation(&e.incident_id).await.unwrap();
    assert!(
        matches!(esc.phase, dolbom_escalation::Phase::Waiting { .. }),
        "{:?}",
        esc.phase
    );
    let mut again = 0;
    while let Ok(h) = gw.rx.try_recv() {
        if h.path == "/sms" && h.idempotency_key == sms.idempotency_key {
            again += 1;
        }
    }
    assert_eq!(again, 0, "the delivered message went out once");
    svc.stop().await;
}

/// Issue 17, tenant isolation: a municipality can neither learn whether an id
/// or a plug serial exists in another municipality nor block another's
/// registration; a household deleted and created again goes on with rising
/// versions and its tombstone goes out before its new config; a
/// `registered_at` years ahead (a typo) is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_can_neither_probe_nor_block_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate("k1").unwrap();
    let gw = Gateway::start().await;
    let (clock, _) = manual_clock(kst(2026, 11, 23, 10, 0));
    let svc = Service::start(dir.path(), clock, &key, &gw.url).await;
    let jongno = Principal::municipality("jongno-system", "11110", false);
    let busan = Principal::municipality("busan-jung-system", "26110", false);
    let mut a = client(&svc.addr, Some(token(&key, &jongno))).await;
    let mut b = client(&svc.addr, Some(token(&key, &busan))).await;
    let create = |id: &str, m: &str, plug: &str| pb::CreateHouseholdRequest {
        config: Some(pb::HouseholdConfig {
            device_ids: vec![plug.into()],
            ..config(id, m, false)
        }),
        contact: None,
    };

    // Busan squats a serial before Jongno registers the real home: no effect.
    b.registry
        .create_household(create("26110-b", "26110", "PLUG-0001"))
        .await
        .unwrap();
    a.registry
        .create_household(create("11110-a", "11110", "PLUG-0001"))
        .await
        .unwrap();
    // Probing: an id that exists in Jongno and one that exists nowhere give
    // Busan the same answer.
    let mut answers = Vec::new();
    for probe in ["11110-a", "11110-nobody"] {
        let e = b
            .registry
            .create_household(create(probe, "26110", "PLUG-9"))
            .await
            .unwrap_err();
        answers.push((e.code(), e.message().replace(probe, "ID")));
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0].0, Code::InvalidArgument);
    assert!(
        answers[0].1.starts_with("config.household_id"),
        "{answers:?}"
    );
    // And a serial Jongno uses tells Busan nothing either.
    for serial in ["PLUG-0001", "PLUG-0002"] {
        b.registry
            .register_plug(pb::RegisterPlugRequest {
                household_id: "26110-b".into(),
                device_id: serial.into(),
            })
            .await
            .unwrap();
    }
    // Within one municipality a serial is still unique.
    let e = a
        .registry
        .create_household(create("11110-c", "11110", "PLUG-0001"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);

    // Delete and create again: versions go on rising; the tombstone is
    // published before the new config.
    svc.publish.publish_pending().await.unwrap();
    a.registry
        .set_consent(pb::SetConsentRequest {
            household_id: "11110-a".into(),
            night_holiday_consent: true,
        })
        .await
        .unwrap();
    a.registry
        .delete_household(pb::DeleteHouseholdRequest {
            household_id: "11110-a".into(),
        })
        .await
        .unwrap();
    let again = a
        .registry
        .create_household(create("11110-a", "11110", "PLUG-0001"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.config.unwrap().version, 3);
    svc.publisher.households.lock().unwrap().clear();
    svc.publish.publish_pending().await.unwrap();
    let published: Vec<(String, Option<u64>)> = svc
        .publisher
        .households
        .lock()
        .unwrap()
        .iter()
        .filter(|(id, _)| id == "11110-a")
        .map(|(id, b)| {
            use prost::Message;
            let v = b
                .as_ref()
                .map(|b| pb::HouseholdConfig::decode(b.as_slice()).unwrap().version);
            (id.clone(), v)
        })
        .collect();
    assert_eq!(
        published,
        vec![
            ("11110-a".to_string(), None),
            ("11110-a".to_string(), Some(3))
        ]
    );

    // A registration dated 2062 instead of 2026.
    let mut typo = create("11110-t", "11110", "PLUG-T");
    typo.config.as_mut().unwrap().registered_at = Some(timestamp(kst(2062, 11, 23, 10, 0)));
    let e = a.registry.create_household(typo).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("config.registered_at"), "{e:?}");
    svc.stop().await;
}

/// Issue 17, tokens: a watch stream does not outlive its token — it ends
/// (UNAUTHENTICATED) when the token expires and when it is revoked, and the
/// revoked token opens nothing new; a token living longer than the service
/// accepts is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_stream_ends_when_its_token_expires_or_is_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate("k1").unwrap();
    let gw = Gateway::start().await;
    let (clock, _) = manual_clock(kst(2026, 11, 23, 10, 0));
    let svc = Service::start(dir.path(), clock, &key, &gw.url).await;
    let p = Principal::municipality("jongno-system", "11110", false);
    let watch = |token: String| {
        let addr = svc.addr.clone();
        async move {
            let mut c = client(&addr, Some(token)).await;
            c.incidents
                .watch_incidents(pb::WatchIncidentsRequest::default())
                .await
        }
    };
    let ended = |mut s: tonic::Streaming<pb::WatchIncidentsResponse>| async move {
        let started = std::time::Instant::now();
        let end = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match s.message().await {
                    Ok(Some(_)) => continue,
                    Ok(None) => return None,
                    Err(e) => return Some(e),
                }
            }
        })
        .await
        .expect("the stream did not end");
        (end, started.elapsed())
    };

    // Expiry: a two-second token.
    let (short, _) = key.mint_with_id(&p, unix_now(), 2, 60).unwrap();
    let s = watch(short).await.unwrap().into_inner();
    let (end, took) = ended(s).await;
    assert_eq!(end.map(|e| e.code()), Some(Code::Unauthenticated));
    assert!(took <= Duration::from_secs(5), "{took:?}");

    // Revocation by id while the stream is open.
    let (long, id) = key.mint_with_id(&p, unix_now(), 3600, 3600).unwrap();
    let s = watch(long.clone()).await.unwrap().into_inner();
    svc.verifier
        .set_revocations(dolbom_auth::Revocations::parse(&format!("jti {id}"), "test").unwrap());
    let (end, took) = ended(s).await;
    assert_eq!(end.map(|e| e.code()), Some(Code::Unauthenticated));
    assert!(took <= Duration::from_secs(3), "{took:?}");
    let refused = watch(long).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);

    // A token minted for longer than the service accepts (90 days).
    let (too_long, _) = key
        .mint_with_id(&p, unix_now(), 365 * 86_400, u64::MAX)
        .unwrap();
    let e = watch(too_long).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(e.message().contains("lifetime"), "{e:?}");
    svc.stop().await;
}

/// Issue 17, limits: one token holds at most `watch_streams_per_token`
/// watch streams (more get RESOURCE_EXHAUSTED; a closed one frees its
/// place; another token is not affected); a watch stream outlives the
/// request timeout; reflection is off unless configured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_token_cannot_hold_more_watch_streams_than_allowed_and_reflection_is_off() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate("k1").unwrap();
    let gw = Gateway::start().await;
    let (clock, _) = manual_clock(kst(2026, 11, 23, 10, 0));
    let svc = Service::start_tuned(dir.path(), clock, &key, &gw.url, |o| {
        o.api.watch_streams_per_token = 3;
        o.api.request_timeout_secs = 1;
    })
    .await;
    let jongno = token(&key, &Principal::municipality("jongno", "11110", false));
    let busan = token(&key, &Principal::municipality("busan", "26110", false));
    let mut c = client(&svc.addr, Some(jongno)).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(
            c.incidents
                .watch_incidents(pb::WatchIncidentsRequest::default())
                .await
                .unwrap()
                .into_inner(),
        );
    }
    let e = c
        .incidents
        .watch_incidents(pb::WatchIncidentsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    // Another municipality's token is not held back by this one.
    let mut b = client(&svc.addr, Some(busan)).await;
    let _other = b
        .incidents
        .watch_incidents(pb::WatchIncidentsRequest::default())
        .await
        .unwrap();
    // A closed stream gives its place back.
    drop(open.pop());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let again = loop {
        match c
            .incidents
            .watch_incidents(pb::WatchIncidentsRequest::default())
            .await
        {
            Ok(s) => break s.into_inner(),
            Err(e) if e.code() == Code::ResourceExhausted => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the place never came back"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{e:?}"),
        }
    };
    open.push(again);
    // Streams live past the 1 s request timeout and still carry events.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    svc.core
        .ingest(vec![opened(
            "11110-w",
            "11110",
            pb::Stage::Attention,
            kst(2026, 11, 23, 10, 0),
        )])
        .await
        .unwrap();
    for s in &mut open {
        let m = tokio::time::timeout(Duration::from_secs(5), s.message())
            .await
            .expect("an event")
            .unwrap()
            .unwrap();
        assert_eq!(m.event.unwrap().household_id, "11110-w");
    }
    // Reflection is not served unless configured.
    let ch = Channel::from_shared(svc.addr.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let refused = list_services(ch.clone()).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unimplemented);
    let refused = list_services_v1alpha(ch).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unimplemented);
    drop(open);
    svc.stop().await;
}

/// A thousand `WatchIncidents` streams from one token, all replaying the
/// log from its start, do not hold up another municipality's alert: ingest
/// runs on its own writer thread and reads queue for a pool of reader
/// connections as tasks, so a new DANGER event for Busan reaches Busan's
/// watcher while Jongno's thousand streams read. The bound (5 s) is a
/// starvation bound, far above the milliseconds it takes; the figure is
/// printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_watch_streams_from_one_token_do_not_delay_another_municipality() {
    const STREAMS: usize = 1000;
    const LOGGED: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate("k1").unwrap();
    let gw = Gateway::start().await;
    let (clock, _) = manual_clock(kst(2026, 11, 23, 10, 0));
    let svc = Service::start_tuned(dir.path(), clock, &key, &gw.url, |o| {
        o.api.watch_streams_per_token = STREAMS;
        o.api.max_concurrent_streams = 2 * STREAMS as u32;
        o.policies = vec![dolbom_notify::options::MunicipalityPolicy {
            municipality: "*".into(),
            policy: dolbom_escalation::Policy::watch_only(),
        }];
    })
    .await;
    // A log for the streams to replay.
    let events: Vec<_> = (0..LOGGED)
        .map(|i| {
            opened(
                &format!("11110-{i}"),
                "11110",
                pb::Stage::Attention,
                kst(2026, 11, 23, 10, 0),
            )
        })
        .collect();
    for chunk in events.chunks(50) {
        svc.core.ingest(chunk.to_vec()).await.unwrap();
    }
    let jongno = token(&key, &Principal::municipality("jongno", "11110", false));
    let busan = token(&key, &Principal::municipality("busan", "26110", false));
    let mut b = client(&svc.addr, Some(busan)).await;
    let mut busan_watch = b
        .incidents
        .watch_incidents(pb::WatchIncidentsRequest::default())
        .await
        .unwrap()
        .into_inner();

    // A thousand streams over eight connections, each replaying from c0.
    let replayed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let begun = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut readers = Vec::new();
    for conn in 0..8 {
        let ch = Channel::from_shared(svc.addr.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        for _ in 0..STREAMS / 8 {
            let mut c = pb::incident_service_client::IncidentServiceClient::with_interceptor(
                ch.clone(),
                bearer(Some(jongno.clone())),
            );
            let (replayed, begun) = (replayed.clone(), begun.clone());
            readers.push(tokio::spawn(async move {
                let mut s = c
                    .watch_incidents(pb::WatchIncidentsRequest {
                        resume_cursor: "c0".into(),
                        ..Default::default()
                    })
                    .await
                    .unwrap_or_else(|e| panic!("connection {conn}: {e:?}"))
                    .into_inner();
                let mut n = 0;
                while let Ok(Some(m)) = s.message().await {
                    assert_eq!(m.event.unwrap().municipality_code, "11110");
                    n += 1;
                    if n == 1 {
                        begun.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    if n == LOGGED {
                        replayed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                }
            }));
        }
    }
    // While they replay (half of them have begun): Busan's DANGER event.
    while begun.load(std::sync::atomic::Ordering::SeqCst) < STREAMS / 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = std::time::Instant::now();
    svc.core
        .ingest(vec![opened(
            "26110-1",
            "26110",
            pb::Stage::Danger,
            kst(2026, 11, 23, 10, 0),
        )])
        .await
        .unwrap();
    let ingested = started.elapsed();
    let m = tokio::time::timeout(Duration::from_secs(5), busan_watch.message())
        .await
        .expect("Busan's DANGER event was held up by Jongno's streams")
        .unwrap()
        .unwrap();
    let seen = started.elapsed();
    assert_eq!(m.event.unwrap().household_id, "26110-1");
    let during = replayed.load(std::sync::atomic::Ordering::SeqCst);
    println!(
        "ingest {ingested:?}, ingest → Busan's watcher {seen:?}, with {during} of {STREAMS} Jongno streams done replaying {LOGGED} events"
    );
    // Every one of Jongno's streams gets its whole log.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while replayed.load(std::sync::atomic::Ordering::SeqCst) < STREAMS {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of {STREAMS} streams replayed the log",
            replayed.load(std::sync::atomic::Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for r in &readers {
        r.abort();
    }
    svc.stop().await;
}

/// Learned detection is set per municipality (the options' defaults for a
/// household created without its own) and per household (in its config,
/// or through SetThresholds); an update that leaves it out keeps it. A
/// routine break's alert explains itself in the SMS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learned_detection_per_municipality_and_household_and_its_alert_explains_itself() {
    use dolbom_domain::config::{Learning, RoutineSensitivity};
    use dolbom_notify::options::MunicipalityLearning;
    let t0 = kst(2026, 11, 23, 13, 0);
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate("k1").unwrap();
    let mut gw = Gateway::start().await;
    let (clock, _now) = manual_clock(t0);
    let svc = Service::start_tuned(dir.path(), clock, &key, &gw.url, |o| {
        o.learning = vec![MunicipalityLearning {
            municipality: "11110".into(),
            learning: Learning {
                routine: RoutineSensitivity::Low,
                recognise_automatic_loads: false,
                defer_through_usual_quiet: true,
            },
        }];
    })
    .await;
    // A national operator, to register in two municipalities.
    let p = Principal::national("ops");
    let mut c = client(&svc.addr, Some(token(&key, &p))).await;
    let learning = |h: pb::Household| h.config.unwrap().learning.unwrap();
    let create = |cfg: pb::HouseholdConfig| pb::CreateHouseholdRequest {
        config: Some(cfg),
        contact: Some(contact()),
    };
    // Jongno's default, and the platform's elsewhere.
    let h = c
        .registry
        .create_household(create(config("11110-1", "11110", false)))
        .await
        .unwrap()
        .into_inner();
    let low = pb::LearnedDetection {
        routine: pb::RoutineSensitivity::Low as i32,
        automatic_loads_are_activity: true,
        defer_attention_through_usual_quiet: true,
    };
    assert_eq!(learning(h), low);
    let h = c
        .registry
        .create_household(create(config("26110-1", "26110", false)))
        .await
        .unwrap()
        .into_inner();
    let normal = pb::LearnedDetection {
        routine: pb::RoutineSensitivity::Normal as i32,
        ..Default::default()
    };
    assert_eq!(learning(h), normal);
    // A household's own choice, kept by an update that leaves it out.
    let high = pb::LearnedDetection {
        routine: pb::RoutineSensitivity::High as i32,
        ..Default::default()
    };
    let h = c
        .registry
        .set_thresholds(pb::SetThresholdsRequest {
            household_id: "11110-1".into(),
            learning: Some(high),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(learning(h), high);
    let h = c
        .registry
        .update_household(pb::UpdateHouseholdRequest {
            config: Some(config("11110-1", "11110", true)),
            contact: None,
            expected_version: 2,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(learning(h), high);
    // An unknown sensitivity is refused and names the field.
    let mut bad = config("11110-2", "11110", false);
    bad.learning = Some(pb::LearnedDetection {
        routine: 99,
        ..Default::default()
    });
    let e = c.registry.create_household(create(bad)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().starts_with("config.learning.routine"),
        "{}",
        e.message()
    );
    // A routine break: the SMS says which usual hours went quiet.
    let mut e = opened("11110-1", "11110", pb::Stage::Attention, t0);
    e.reason = Some(pb::Reason {
        code: pb::ReasonCode::RoutineBreak as i32,
        quiet_since: Some(timestamp(kst(2026, 11, 23, 10, 20))),
        threshold_minutes: 160,
        routine: Some(pb::RoutineEvidence {
            usual_from: Some(timestamp(kst(2026, 11, 23, 11, 0))),
            usual_until: Some(timestamp(t0)),
            reference_days: 14,
            active_days: 14,
            one_in_days: 1500,
        }),
        ..Default::default()
    });
    svc.core.ingest(vec![e.clone()]).await.unwrap();
    let key1 = format!("{}/s0/a1", e.incident_id);
    let hits = gw.until("/sms", &key1).await;
    let sms = hits.iter().find(|h| h.idempotency_key == key1).unwrap();
    let text = sms.body["text"].as_str().unwrap_or_default().to_string();
    assert!(
        text.contains("평소 활동 시간대 11:00–13:00에 활동 없음")
            && text.contains("최근 14일 중 14일")
            && text.contains("약 1500일에 한 번")
            && text.contains("조용한 지 2시간 40분"),
        "{}",
        sms.body
    );
    svc.stop().await;
}
