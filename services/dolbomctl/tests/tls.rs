//! Real TLS handshakes between `dolbomctl` and a notify server that
//! requires client certificates (mutual TLS), with certificates made here.

mod common;

use common::ctl;
use dolbom_auth::{unix_now, Principal, SigningKey, Verifier};
use dolbom_history::{EmbeddedStore, HistoryStore, Retention};
use dolbom_notify::{NoPublisher, NotifyOptions};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// A CA and certificates it signs, written as PEM files (keys 0600).
struct Pki {
    dir: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    fn new(dir: &Path, name: &str) -> (Self, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} CA"));
        let cert = params.self_signed(&key).unwrap();
        let ca = dir.join(format!("{name}-ca.crt"));
        std::fs::write(&ca, cert.pem()).unwrap();
        let pki = Pki {
            dir: dir.to_path_buf(),
            issuer: Issuer::new(params, key),
        };
        (pki, ca)
    }

    /// A leaf certificate for `names`; returns (cert, key) paths.
    fn leaf(&self, file: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, file);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (c, k) = (
            self.dir.join(format!("{file}.crt")),
            self.dir.join(format!("{file}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        write_private(&k, &key.serialize_pem());
        (c, k)
    }
}

fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_admits_only_clients_with_a_certificate_from_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, ca) = Pki::new(dir.path(), "dolbom");
    let (server_cert, server_key) = pki.leaf("notify", &["localhost", "127.0.0.1"]);
    let (client_cert, client_key) = pki.leaf("jongno-ops", &["jongno-ops"]);
    let (rogue, rogue_ca) = Pki::new(dir.path(), "rogue");
    let (rogue_cert, rogue_key) = rogue.leaf("mallory", &["mallory"]);

    let health_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let opts = NotifyOptions {
        data_dir: dir.path().join("notify"),
        create_contact_key: true,
        policies: vec![dolbom_notify::options::MunicipalityPolicy {
            municipality: "*".into(),
            policy: dolbom_escalation::Policy::watch_only(),
        }],
        tls: Some(dolbom_tls::ServerTls {
            cert_file: server_cert,
            key_file: server_key,
            client_ca_file: Some(ca.clone()),
            client_auth_optional: false,
        }),
        api: dolbom_notify::limits::ApiOptions {
            health_listen: format!("127.0.0.1:{health_port}"),
            ..Default::default()
        },
        ..Default::default()
    };
    // Beyond loopback, TLS is what makes the listen acceptable.
    let reachable = NotifyOptions {
        listen: "0.0.0.0:50051".into(),
        ..opts.clone()
    };
    dolbom_options::Options::validate(&reachable).unwrap();
    let plain = NotifyOptions {
        tls: None,
        ..reachable
    };
    let e = dolbom_options::Options::validate(&plain).unwrap_err();
    assert!(e.to_string().contains("insecure-plaintext"), "{e}");

    let history: Arc<dyn HistoryStore> =
        Arc::new(EmbeddedStore::open_dir(dir.path(), Retention::default()).unwrap());
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
    let port = listener.local_addr().unwrap().port();
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
    let p = |x: &Path| x.display().to_string();
    let call = |endpoint: String, tls: &[String]| -> Vec<String> {
        let mut v = vec![
            "--endpoint".to_string(),
            endpoint,
            "--token-file".into(),
            p(&token_file),
        ];
        v.extend(tls.iter().cloned());
        v.push("list".into());
        v
    };
    let https = format!("https://localhost:{port}");
    let with_cert = [
        "--ca".to_string(),
        p(&ca),
        "--cert".into(),
        p(&client_cert),
        "--key".into(),
        p(&client_key),
    ];

    // A client certificate from the CA and a token: served.
    let (ok, _, err) = ctl(call(https.clone(), &with_cert)).await;
    assert!(ok, "{err}");
    // The IP address in the certificate works too.
    let (ok, _, err) = ctl(call(format!("https://127.0.0.1:{port}"), &with_cert)).await;
    assert!(ok, "{err}");

    // No client certificate: the handshake is refused.
    let (ok, _, err) = ctl(call(https.clone(), &["--ca".into(), p(&ca)])).await;
    assert!(!ok, "served without a client certificate");
    assert!(!err.contains("NotFound"), "{err}");
    // A certificate from another CA: refused.
    let rogue_args = [
        "--ca".to_string(),
        p(&ca),
        "--cert".into(),
        p(&rogue_cert),
        "--key".into(),
        p(&rogue_key),
    ];
    let (ok, _, _) = ctl(call(https.clone(), &rogue_args)).await;
    assert!(!ok, "served a client certificate from another CA");
    // The client does not trust a server it cannot verify.
    let (ok, _, _) = ctl(call(
        https.clone(),
        &[
            "--ca".into(),
            p(&rogue_ca),
            "--cert".into(),
            p(&client_cert),
            "--key".into(),
            p(&client_key),
        ],
    ))
    .await;
    assert!(!ok, "trusted a server certificate from an unknown CA");
    // Plaintext to the TLS port: refused.
    let (ok, _, _) = ctl(call(format!("http://127.0.0.1:{port}"), &[])).await;
    assert!(!ok, "served plaintext on the TLS port");
    // A certificate does not replace the token.
    let mut no_token = call(https.clone(), &with_cert);
    no_token[3] = p(&dir.path().join("missing-token"));
    let (ok, _, _) = ctl(no_token).await;
    assert!(!ok);
    std::fs::write(dir.path().join("bad-token"), "not-a-token").unwrap();
    let mut bad_token = call(https.clone(), &with_cert);
    bad_token[3] = p(&dir.path().join("bad-token"));
    let (ok, _, err) = ctl(bad_token).await;
    assert!(!ok && err.contains("Unauthenticated"), "{err}");
    // A client key others can read is refused before connecting.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&client_key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (ok, _, err) = ctl(call(https.clone(), &with_cert)).await;
        assert!(!ok && err.contains("too open"), "{err}");
    }

    // Kubernetes' gRPC probes speak plaintext: the health port answers
    // without TLS and without a token, and serves nothing else.
    let ch = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{health_port}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(ch.clone());
    let r = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    let mut incidents = dolbom_proto::v1::incident_service_client::IncidentServiceClient::new(ch);
    let e = incidents
        .list_incidents(dolbom_proto::v1::ListIncidentsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unimplemented, "{e}");

    stop.cancel();
    server.await.unwrap().unwrap();
}
