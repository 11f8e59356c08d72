//! TLS for dolbom's gRPC edges.
//!
//! Owns [`ServerTls`] (the `[tls]` section of a service: certificate, key,
//! and an optional client CA that turns on mutual TLS), [`ClientTls`]
//! (`dolbomctl --ca --cert --key`), and [`check_listen`], the rule that an
//! API listening beyond loopback speaks TLS unless the operator explicitly
//! chose `insecure_plaintext`.
//!
//! Data flow: options → [`ServerTls::config`] reads the PEM files (the key
//! only if its permissions are private, see `dolbom_options::secret`) →
//! `tonic::transport::ServerTlsConfig` → the server's TLS acceptor (rustls
//! with ring). Clients: [`ClientTls::config`] → `ClientTlsConfig` →
//! `Endpoint::tls_config`. Certificates are read at start: to rotate them,
//! restart (the Helm chart rolls pods when the Secret's checksum changes).

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// TLS material that cannot be used, or a listen address that needs it.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Secret(#[from] dolbom_options::SecretFileError),
    #[error("{what} {path}: no PEM {expected} in it")]
    NotPem {
        what: &'static str,
        path: PathBuf,
        expected: &'static str,
    },
    #[error("TLS configuration: {0}")]
    Invalid(String),
    #[error(
        "{field} = {listen} is reachable beyond this machine without TLS: set the [tls] \
         certificate and key, or pass --insecure-plaintext if a proxy terminates TLS"
    )]
    PlaintextBeyondLoopback { field: &'static str, listen: String },
    #[error("{field} = {listen}: not a host:port address")]
    BadListen { field: &'static str, listen: String },
}

/// Selects rustls' ring provider for the process, once. A binary that links
/// more than one provider (reqwest and the ScyllaDB driver may bring
/// aws-lc-rs) would otherwise panic at its first handshake.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err = another provider was installed first: that one is used.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A server's TLS: its certificate chain and key, and (for mutual TLS) the
/// CA bundle that client certificates must chain to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerTls {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1); mode 0600 (or 0640).
    pub key_file: PathBuf,
    /// PEM CA bundle: when set, clients must present a certificate it signed.
    pub client_ca_file: Option<PathBuf>,
    /// With a client CA: also accept clients without a certificate (they
    /// still need a token). Off: no certificate, no connection.
    pub client_auth_optional: bool,
}

impl ServerTls {
    /// Reads the files and builds the server configuration.
    pub fn config(&self) -> Result<ServerTlsConfig, TlsError> {
        install_crypto_provider();
        let cert = read_pem("cert_file", &self.cert_file, "CERTIFICATE")?;
        let key = dolbom_options::read_secret_bytes(&self.key_file)?;
        expect_pem("key_file", &self.key_file, &key, "PRIVATE KEY")?;
        let mut c = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
        if let Some(ca) = &self.client_ca_file {
            let ca = read_pem("client_ca_file", ca, "CERTIFICATE")?;
            c = c
                .client_ca_root(Certificate::from_pem(ca))
                .client_auth_optional(self.client_auth_optional);
        }
        Ok(c)
    }

    /// Reads the files and lets rustls parse them, as the server will at
    /// start (`--check-config`): a key that does not match or a certificate
    /// that does not parse is reported here.
    pub fn check(&self) -> Result<(), TlsError> {
        let c = self.config()?;
        tonic::transport::Server::builder()
            .tls_config(c)
            .map(|_| ())
            .map_err(|e| TlsError::Invalid(format!("{e}: {}", source_chain(&e))))
    }
}

/// A client's TLS: the CA that signed the server (or the platform's roots),
/// and a client certificate for servers that require one.
#[derive(Clone, Debug, Default)]
pub struct ClientTls {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// The name the server's certificate must carry (default: the
    /// endpoint's host).
    pub domain: Option<String>,
}

impl ClientTls {
    pub fn config(&self) -> Result<ClientTlsConfig, TlsError> {
        install_crypto_provider();
        let mut c = ClientTlsConfig::new();
        match &self.ca_file {
            Some(ca) => {
                c = c.ca_certificate(Certificate::from_pem(read_pem("ca", ca, "CERTIFICATE")?))
            }
            None => c = c.with_native_roots(),
        }
        match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => {
                let cert = read_pem("cert", cert, "CERTIFICATE")?;
                let key_bytes = dolbom_options::read_secret_bytes(key)?;
                expect_pem("key", key, &key_bytes, "PRIVATE KEY")?;
                c = c.identity(Identity::from_pem(cert, key_bytes));
            }
            (None, None) => {}
            _ => {
                return Err(TlsError::Invalid(
                    "a client certificate needs both --cert and --key".into(),
                ))
            }
        }
        if let Some(d) = &self.domain {
            c = c.domain_name(d.clone());
        }
        Ok(c)
    }

    /// Whether any TLS setting was given (an `http://` endpoint with
    /// these is a mistake).
    pub fn is_set(&self) -> bool {
        self.ca_file.is_some() || self.cert_file.is_some() || self.domain.is_some()
    }
}

/// Refuses a listen address beyond loopback without TLS, unless
/// `insecure_plaintext` (TLS ends at a proxy or mesh in front). Loopback:
/// `127.0.0.0/8`, `::1` and `localhost`; `0.0.0.0` and any other name count
/// as reachable.
pub fn check_listen(
    field: &'static str,
    listen: &str,
    tls: bool,
    insecure_plaintext: bool,
) -> Result<(), TlsError> {
    if tls || insecure_plaintext || listen.is_empty() {
        return Ok(());
    }
    if is_loopback(listen).ok_or_else(|| TlsError::BadListen {
        field,
        listen: listen.to_string(),
    })? {
        Ok(())
    } else {
        Err(TlsError::PlaintextBeyondLoopback {
            field,
            listen: listen.to_string(),
        })
    }
}

/// Whether `host:port` is on loopback; `None` if it is not an address.
fn is_loopback(listen: &str) -> Option<bool> {
    if let Ok(a) = listen.parse::<std::net::SocketAddr>() {
        return Some(a.ip().is_loopback());
    }
    let (host, port) = listen.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    Some(host.eq_ignore_ascii_case("localhost"))
}

fn read_pem(what: &'static str, path: &Path, expected: &'static str) -> Result<Vec<u8>, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })?;
    expect_pem(what, path, &bytes, expected)?;
    Ok(bytes)
}

/// A cheap early check that a file is PEM of the expected kind (rustls
/// parses it fully when the server or channel is built).
fn expect_pem(
    what: &'static str,
    path: &Path,
    bytes: &[u8],
    expected: &'static str,
) -> Result<(), TlsError> {
    let text = String::from_utf8_lossy(bytes);
    let found = text
        .lines()
        .any(|l| l.starts_with("-----BEGIN ") && l.contains(expected));
    if found {
        Ok(())
    } else {
        Err(TlsError::NotPem {
            what,
            path: path.to_path_buf(),
            expected,
        })
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = Vec::new();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push(s.to_string());
        cur = s.source();
    }
    out.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_only_on_loopback_unless_chosen() {
        for ok in [
            "127.0.0.1:50051",
            "[::1]:1",
            "localhost:50051",
            "127.0.0.2:0",
        ] {
            check_listen("listen", ok, false, false).unwrap();
        }
        for reachable in [
            "0.0.0.0:50051",
            "[::]:50051",
            "10.0.0.5:50051",
            "notify:50051",
        ] {
            let e = check_listen("listen", reachable, false, false).unwrap_err();
            assert!(e.to_string().contains("--insecure-plaintext"), "{e}");
            check_listen("listen", reachable, true, false).unwrap();
            check_listen("listen", reachable, false, true).unwrap();
        }
        assert!(matches!(
            check_listen("listen", "nonsense", false, false),
            Err(TlsError::BadListen { .. })
        ));
    }

    #[cfg(unix)]
    #[test]
    fn files_are_checked_before_the_server_starts() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (c, k) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600)).unwrap();
        let tls = ServerTls {
            cert_file: c.clone(),
            key_file: k.clone(),
            ..Default::default()
        };
        tls.check().unwrap();
        // A world-readable key is refused.
        std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(tls.check().unwrap_err().to_string().contains("too open"));
        std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600)).unwrap();
        // Certificate and key swapped: not the PEM expected.
        let swapped = ServerTls {
            cert_file: k.clone(),
            key_file: c.clone(),
            ..Default::default()
        };
        std::fs::set_permissions(&c, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(swapped.check(), Err(TlsError::NotPem { .. })));
        // A key that belongs to another certificate.
        let other = rcgen::KeyPair::generate().unwrap();
        std::fs::write(&k, other.serialize_pem()).unwrap();
        assert!(
            matches!(tls.check(), Err(TlsError::Invalid(_))),
            "{:?}",
            tls.check()
        );
        // A missing client CA.
        let mtls = ServerTls {
            client_ca_file: Some(dir.path().join("missing-ca.crt")),
            ..tls
        };
        assert!(matches!(mtls.config(), Err(TlsError::Read { .. })));
    }
}
