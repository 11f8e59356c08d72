//! Kafka client settings, in one place for every dolbom service.
//!
//! Owns [`KafkaOptions`] — the brokers, any extra librdkafka properties an
//! operator sets (security, tuning) and debug contexts — which each
//! service's options flatten in (`brokers`, `[kafka_properties]`,
//! `kafka_debug` in its TOML; `DOLBOM_BROKERS` …), and the client
//! configurations built from them: a group consumer that commits by hand, a
//! reader for a partition assigned by hand, and an idempotent producer.
//! Operator properties go last, so they can tune anything except the few
//! settings the platform's guarantees rest on ([`PROTECTED`]), which are
//! refused when the options are validated. Secret properties (passwords,
//! client secrets, private keys) are never written inline: they come from
//! files named in `[kafka_secret_files]` (private, see
//! `dolbom_options::secret`), are read when a client is configured, and
//! never appear in `Debug` output.
//!
//! Data flow: options → `KafkaOptions::{group_consumer, reader, producer}`
//! → `ClientConfig::create()` in the service.

use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Properties a service sets itself because its guarantees depend on them
/// (commits after durable work, the idempotent producer, its own group).
pub const PROTECTED: &[&str] = &[
    "bootstrap.servers",
    "group.id",
    "group.instance.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.idempotence",
    "acks",
    "client.id",
];

/// Options that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KafkaOptionsError {
    #[error("brokers: must name at least one broker")]
    NoBrokers,
    #[error("kafka_properties.{0}: set by the service itself and cannot be overridden")]
    Protected(String),
    #[error(
        "kafka_properties.{0}: a secret; name a file holding it in [kafka_secret_files] instead"
    )]
    InlineSecret(String),
    #[error("kafka_secret_files.{0}")]
    SecretFile(String),
}

/// Whether a librdkafka property holds a secret (a password, a client
/// secret, a private key or an OAuth configuration).
pub fn is_secret_property(key: &str) -> bool {
    key.contains("password")
        || key.contains("secret")
        || key == "ssl.key.pem"
        || key == "sasl.oauthbearer.config"
}

/// Where the brokers are and how to talk to them.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct KafkaOptions {
    /// Bootstrap servers, `host:port[,host:port…]`.
    pub brokers: String,
    /// Extra librdkafka properties for every client of the service, e.g.
    /// `security.protocol = "SASL_SSL"`, `sasl.mechanism = "SCRAM-SHA-512"`,
    /// `ssl.ca.location = "/etc/dolbom/kafka/ca.crt"`.
    pub kafka_properties: BTreeMap<String, String>,
    /// Secret librdkafka properties, each read from a file (mode 0600 or
    /// 0640), e.g. `"sasl.password" = "/etc/dolbom/kafka/password"`.
    pub kafka_secret_files: BTreeMap<String, PathBuf>,
    /// librdkafka `debug` contexts (e.g. `cgrp,topic`) for troubleshooting.
    pub kafka_debug: String,
}

impl Default for KafkaOptions {
    fn default() -> Self {
        KafkaOptions {
            brokers: "127.0.0.1:9092".into(),
            kafka_properties: BTreeMap::new(),
            kafka_secret_files: BTreeMap::new(),
            kafka_debug: String::new(),
        }
    }
}

impl std::fmt::Debug for KafkaOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown: BTreeMap<&str, &str> = self
            .kafka_properties
            .iter()
            .map(|(k, v)| {
                let v = if is_secret_property(k) {
                    "<redacted>"
                } else {
                    v.as_str()
                };
                (k.as_str(), v)
            })
            .collect();
        f.debug_struct("KafkaOptions")
            .field("brokers", &self.brokers)
            .field("kafka_properties", &shown)
            .field("kafka_secret_files", &self.kafka_secret_files)
            .field("kafka_debug", &self.kafka_debug)
            .finish()
    }
}

impl KafkaOptions {
    /// Options for `brokers` and nothing else (tests, tools).
    pub fn brokers(brokers: &str) -> Self {
        KafkaOptions {
            brokers: brokers.to_string(),
            ..Default::default()
        }
    }

    pub fn validate(&self) -> Result<(), KafkaOptionsError> {
        if self.brokers.trim().is_empty() {
            return Err(KafkaOptionsError::NoBrokers);
        }
        if let Some(k) = self
            .kafka_properties
            .keys()
            .find(|k| PROTECTED.contains(&k.as_str()))
        {
            return Err(KafkaOptionsError::Protected(k.clone()));
        }
        if let Some(k) = self.kafka_properties.keys().find(|k| is_secret_property(k)) {
            return Err(KafkaOptionsError::InlineSecret(k.clone()));
        }
        for (k, path) in &self.kafka_secret_files {
            if PROTECTED.contains(&k.as_str()) {
                return Err(KafkaOptionsError::Protected(k.clone()));
            }
            dolbom_options::read_secret_file(path)
                .map_err(|e| KafkaOptionsError::SecretFile(format!("{k}: {e}")))?;
        }
        Ok(())
    }

    /// A client of `client_id` (`dolbom-monitor`, …): brokers, then the
    /// operator's properties. Services add their own settings on top.
    pub fn client(&self, client_id: &str) -> ClientConfig {
        self.with_operator(Self::base(client_id, &self.brokers))
    }

    /// Brokers and client id, and reconnect backoff capped at 1 s
    /// (librdkafka's default cap is 10 s): after a network fault heals, an
    /// incident waits at most about a second for its producer to reconnect.
    fn base(client_id: &str, brokers: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", brokers)
            .set("client.id", client_id)
            .set("reconnect.backoff.max.ms", "1000");
        c
    }

    /// The operator's properties over the platform's defaults (the
    /// [`PROTECTED`] ones are refused by `validate`).
    fn with_operator(&self, mut c: ClientConfig) -> ClientConfig {
        for (k, v) in &self.kafka_properties {
            c.set(k, v);
        }
        // Read again for each client, so a rotated password is picked up by
        // the next client; `validate` has checked the files at start.
        for (k, path) in &self.kafka_secret_files {
            match dolbom_options::read_secret_file(path) {
                Ok(v) => {
                    c.set(k, v.expose());
                }
                Err(e) => {
                    tracing::error!(property = %k, error = %e, "Kafka secret file unreadable; the client will fail to authenticate")
                }
            }
        }
        if !self.kafka_debug.is_empty() {
            c.set("debug", &self.kafka_debug);
        }
        c
    }

    /// A member of consumer group `group`: offsets committed by the service
    /// (after its work is durable; what it consumed is the position
    /// `commit_consumer_state` commits), from the earliest offset when the
    /// group has none, cooperative-sticky unless `strategy` names another,
    /// fetches answered within 50 ms.
    pub fn group_consumer(&self, client_id: &str, group: &str, strategy: &str) -> ClientConfig {
        let mut c = Self::base(client_id, &self.brokers);
        c.set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("partition.assignment.strategy", strategy)
            .set("fetch.wait.max.ms", "50");
        self.with_operator(c)
    }

    /// A consumer whose partitions are assigned by hand (restores, changelog
    /// followers): it never commits and joins no group's assignment.
    pub fn reader(&self, client_id: &str, group: &str) -> ClientConfig {
        let mut c = Self::base(client_id, &self.brokers);
        c.set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .set("fetch.wait.max.ms", "50");
        self.with_operator(c)
    }

    /// An idempotent producer (acks from all in-sync replicas, no duplicates
    /// from its own retries) that gives up on a record after
    /// `message_timeout_ms`.
    pub fn producer(&self, client_id: &str, message_timeout_ms: u32) -> ClientConfig {
        let mut c = Self::base(client_id, &self.brokers);
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("message.timeout.ms", message_timeout_ms.to_string());
        self.with_operator(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default, Serialize, Deserialize)]
    #[serde(default)]
    struct ServiceOptions {
        group_id: String,
        #[serde(flatten)]
        kafka: KafkaOptions,
    }

    #[test]
    fn layers_flattened_into_a_service_and_refuses_protected_keys() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("svc.toml");
        std::fs::write(
            &f,
            "group_id = \"g\"\nbrokers = \"a:1,b:2\"\n[kafka_properties]\n\"security.protocol\" = \"SASL_SSL\"\n",
        )
        .unwrap();
        #[derive(Serialize)]
        struct Flags {
            brokers: &'static str,
        }
        let o: ServiceOptions =
            dolbom_options::layered(Some(&f), Flags { brokers: "c:3" }).unwrap();
        assert_eq!(o.group_id, "g");
        assert_eq!(o.kafka.brokers, "c:3");
        assert_eq!(o.kafka.kafka_properties["security.protocol"], "SASL_SSL");
        assert_eq!(o.kafka.validate(), Ok(()));
        let c = o.kafka.producer("dolbom-test", 1000);
        assert_eq!(c.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(c.get("enable.idempotence"), Some("true"));
        assert_eq!(c.get("bootstrap.servers"), Some("c:3"));
        // The operator's tuning wins over the platform's defaults.
        let mut tuned = o.kafka.clone();
        tuned
            .kafka_properties
            .insert("message.timeout.ms".into(), "2000".into());
        tuned
            .kafka_properties
            .insert("fetch.wait.max.ms".into(), "10".into());
        let p = tuned.producer("dolbom-test", 60_000);
        assert_eq!(p.get("message.timeout.ms"), Some("2000"));
        let g = tuned.group_consumer("dolbom-test", "g", "cooperative-sticky");
        assert_eq!(g.get("fetch.wait.max.ms"), Some("10"));

        let mut bad = o.kafka.clone();
        bad.kafka_properties
            .insert("enable.auto.commit".into(), "true".into());
        assert_eq!(
            bad.validate(),
            Err(KafkaOptionsError::Protected("enable.auto.commit".into()))
        );
        bad.brokers = " ".into();
        assert_eq!(bad.validate(), Err(KafkaOptionsError::NoBrokers));
    }

    #[test]
    fn secrets_come_from_private_files_and_never_show() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = KafkaOptions::brokers("b:1");
        o.kafka_properties
            .insert("sasl.password".into(), "inline-pass".into());
        assert_eq!(
            o.validate(),
            Err(KafkaOptionsError::InlineSecret("sasl.password".into()))
        );
        assert!(!format!("{o:?}").contains("inline-pass"));
        o.kafka_properties.clear();
        o.kafka_properties
            .insert("sasl.username".into(), "dolbom".into());
        let f = dir.path().join("kafka-password");
        o.kafka_secret_files
            .insert("sasl.password".into(), f.clone());
        assert!(matches!(
            o.validate(),
            Err(KafkaOptionsError::SecretFile(_))
        ));
        std::fs::write(&f, "s3cret-pass\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
            let e = o.validate().unwrap_err().to_string();
            assert!(e.contains("too open"), "{e}");
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        o.validate().unwrap();
        let c = o.producer("dolbom-test", 1000);
        assert_eq!(c.get("sasl.password"), Some("s3cret-pass"));
        assert_eq!(c.get("sasl.username"), Some("dolbom"));
        assert!(!format!("{o:?}").contains("s3cret-pass"));
    }
}
