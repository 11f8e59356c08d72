//! How to reach the ScyllaDB cluster: contact points, keyspace,
//! datacenter, timeouts, and the connection's security — password
//! authentication (the password from a private file) and TLS (rustls with
//! ring: the CA that signed the nodes' certificates, and a client
//! certificate for clusters that require one).
//!
//! Data flow: options → `ScyllaStore::connect` → `SessionBuilder` (`user`,
//! `tls_context`). The nodes' certificates are checked against the CA and
//! must name the address the driver connects to (the contact point or the
//! address a node advertises; usually an IP address SAN).

use crate::error::HistoryError;
use dolbom_options::Secret;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;

/// How to reach and use the cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScyllaOptions {
    /// Contact points, comma-separated `host:port` (e.g. from
    /// `DOLBOM_SCYLLA_URI`; a `scylla://` prefix is accepted).
    pub uri: String,
    pub keyspace: String,
    /// For a keyspace created here.
    pub replication_factor: u32,
    /// Keep requests in this datacenter (recommended in production).
    pub local_dc: Option<String>,
    /// Username for password authentication (with `password` or
    /// `password_file`).
    pub user: Option<String>,
    /// Prefer `password_file`: a secret inline in a file of options is
    /// easily copied where it should not be.
    pub password: Option<Secret>,
    /// A file (mode 0600/0640) holding the password.
    pub password_file: Option<PathBuf>,
    /// TLS to the nodes (`[scylla.tls]`); off when absent.
    pub tls: Option<ScyllaTls>,
    pub request_timeout_ms: u64,
    /// Statements in flight per write.
    pub concurrency: usize,
}

impl Default for ScyllaOptions {
    fn default() -> Self {
        Self {
            uri: "127.0.0.1:9042".into(),
            keyspace: "dolbom".into(),
            replication_factor: 3,
            local_dc: None,
            user: None,
            password: None,
            password_file: None,
            tls: None,
            request_timeout_ms: 5_000,
            concurrency: 256,
        }
    }
}

impl ScyllaOptions {
    pub fn nodes(&self) -> Vec<String> {
        self.uri
            .trim_start_matches("scylla://")
            .trim_start_matches("cql://")
            .split(',')
            .map(|s| s.trim().trim_end_matches('/').to_string())
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// The username and password, the password read from its file.
    pub fn credentials(&self) -> Result<Option<(String, Secret)>, HistoryError> {
        let Some(user) = &self.user else {
            return Ok(None);
        };
        let password = match (&self.password_file, &self.password) {
            (Some(f), _) => dolbom_options::read_secret_file(f)
                .map_err(|e| HistoryError::Invalid(format!("scylla.password_file: {e}")))?,
            (None, Some(p)) => p.clone(),
            (None, None) => {
                return Err(HistoryError::Invalid(
                    "scylla.user without a password".into(),
                ))
            }
        };
        Ok(Some((user.clone(), password)))
    }

    /// Reads what the files hold (password, TLS material) without
    /// connecting: `--check-config`.
    pub fn check_files(&self) -> Result<(), HistoryError> {
        self.validate()?;
        self.credentials()?;
        if let Some(t) = &self.tls {
            t.client_config()?;
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), HistoryError> {
        if self.nodes().is_empty() {
            return Err(HistoryError::Invalid("scylla.uri: no contact point".into()));
        }
        let ks = &self.keyspace;
        if ks.is_empty()
            || ks.len() > 48
            || !ks.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(HistoryError::Invalid(
                "scylla.keyspace: 1-48 letters, digits or _".into(),
            ));
        }
        if self.user.is_some() != (self.password.is_some() || self.password_file.is_some()) {
            return Err(HistoryError::Invalid(
                "scylla.user needs scylla.password_file (or password), and the other way round"
                    .into(),
            ));
        }
        if self.replication_factor == 0 || self.concurrency == 0 {
            return Err(HistoryError::Invalid(
                "scylla.replication_factor and scylla.concurrency must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// TLS to the ScyllaDB nodes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScyllaTls {
    /// PEM CA bundle the nodes' certificates chain to.
    pub ca_file: PathBuf,
    /// PEM client certificate, for clusters that require one
    /// (`require_client_auth`), with `key_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file` (mode 0600/0640).
    pub key_file: Option<PathBuf>,
}

impl ScyllaTls {
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, HistoryError> {
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            HistoryError::Invalid(format!("scylla.tls.{what}: {e}"))
        };
        let ca = std::fs::read(&self.ca_file)
            .map_err(|e| bad("ca_file", &format!("{}: {e}", self.ca_file.display())))?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&ca) {
            roots
                .add(cert.map_err(|e| bad("ca_file", &e))?)
                .map_err(|e| bad("ca_file", &e))?;
        }
        if roots.is_empty() {
            return Err(bad("ca_file", &"no certificate in it"));
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("ca_file", &e))?
        .with_root_certificates(roots);
        let config = match (&self.cert_file, &self.key_file) {
            (None, None) => builder.with_no_client_auth(),
            (Some(cert), Some(key)) => {
                let cert = std::fs::read(cert)
                    .map_err(|e| bad("cert_file", &format!("{}: {e}", cert.display())))?;
                let chain = CertificateDer::pem_slice_iter(&cert)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| bad("cert_file", &e))?;
                let key =
                    dolbom_options::read_secret_bytes(key).map_err(|e| bad("key_file", &e))?;
                let key = PrivateKeyDer::from_pem_slice(&key).map_err(|e| bad("key_file", &e))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| bad("cert_file", &e))?
            }
            _ => return Err(bad("cert_file", &"needs key_file, and the other way round")),
        };
        Ok(Arc::new(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_validate() {
        assert!(ScyllaOptions::default().validate().is_ok());
        let bad = ScyllaOptions {
            keyspace: "drop table;".into(),
            ..Default::default()
        };
        assert!(bad.validate().is_err());
        let nodes = ScyllaOptions {
            uri: "scylla://a:9042, b:9042".into(),
            ..Default::default()
        };
        assert_eq!(nodes.nodes(), vec!["a:9042", "b:9042"]);
    }
}
