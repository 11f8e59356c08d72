//! Options of `dolbom notify`: defaults → TOML file → `DOLBOM_` environment
//! → flags (via `dolbom-options`).
//!
//! Over 600 lines with its tests (about 220 of them): the options, their
//! validation and the tests that each refusal names its field stay together.

use crate::channels::{Recipient, RetryOptions, SmsOptions};
use crate::error::NotifyError;
use dolbom_auth::{Verifier, VerifyingKey};
use dolbom_calendar::{OfficeHours, Router};
use dolbom_domain::config::Learning;
use dolbom_domain::Named;
use dolbom_escalation::{Policy, Tier};
use dolbom_history::{Retention, ScyllaOptions, WriterOptions};
use dolbom_kafka::KafkaOptions;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;

/// One municipality's learned-detection defaults (`"*"` = for all others),
/// given to a household created without its own `learning` settings:
/// `routine` (`off`, `low`, `normal` or `high`), `recognise_automatic_loads`
/// (default true), `defer_through_usual_quiet` (default false).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MunicipalityLearning {
    pub municipality: String,
    #[serde(flatten)]
    pub learning: Learning,
}

/// One municipality's escalation policy (`"*"` = the default for all others).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MunicipalityPolicy {
    pub municipality: String,
    pub policy: Policy,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NotifyOptions {
    /// gRPC listen address. Beyond loopback it needs `[tls]` or
    /// `insecure_plaintext`.
    pub listen: String,
    /// Server TLS for the API (`[tls]`: `cert_file`, `key_file`, optional
    /// `client_ca_file` for mutual TLS).
    pub tls: Option<dolbom_tls::ServerTls>,
    /// Serve the API without TLS on an address beyond loopback (TLS ends at
    /// a proxy or service mesh in front). Off: such a listen is refused.
    pub insecure_plaintext: bool,
    /// Where `notify.sqlite` (and the embedded history store) live.
    pub data_dir: PathBuf,
    /// Brokers, extra librdkafka properties, debug contexts.
    #[serde(flatten)]
    pub kafka: KafkaOptions,
    pub group_id: String,
    pub incidents_topic: String,
    pub households_topic: String,
    /// Token verification keys, `kid:base64(ed25519 public key)`.
    pub public_keys: Vec<String>,
    /// A file with one `kid:base64` public key per line (added to `public_keys`).
    pub public_keys_file: Option<PathBuf>,
    /// Revoked tokens (`jti <id>`, `sub <subject>`, `sub <subject> <unix
    /// seconds>` per line), re-read within 10 s of a change. Calls with a
    /// revoked token are refused and open watch streams end.
    pub revoked_tokens_file: Option<PathBuf>,
    /// The longest token lifetime (`exp - iat`) accepted, hours.
    pub max_token_lifetime_hours: u64,
    /// The API's limits and reflection (the `[api]` section).
    pub api: crate::limits::ApiOptions,
    /// Contact encryption keys (`id:base64(32 bytes)` per line, the first
    /// encrypts); default `data_dir/contact.key`.
    pub contact_key_file: Option<PathBuf>,
    /// Create the contact key file if it is missing (standalone, tests).
    /// Off by default: a production service must not silently start with a
    /// new key next to data sealed with a lost one.
    pub create_contact_key: bool,
    /// `embedded` (SQLite in `data_dir`) or `scylla`: where statistics are
    /// read and escalation, delivery and audit records written.
    pub history_store: String,
    pub scylla: ScyllaOptions,
    pub retention: Retention,
    pub writer: WriterOptions,
    pub sms: SmsOptions,
    pub retry: RetryOptions,
    pub recipients: Vec<Recipient>,
    pub policies: Vec<MunicipalityPolicy>,
    /// Learned-detection defaults per municipality (`[[learning]]`).
    pub learning: Vec<MunicipalityLearning>,
    pub office_hours: OfficeHours,
    /// Extra (temporary) holidays, TOML as `dolbom holidays` documents.
    pub holidays_file: Option<PathBuf>,
    /// Milliseconds between escalation clock checks.
    pub tick_ms: u64,
    /// Messages delivered at once.
    pub max_in_flight: usize,
    /// Prometheus metrics on this address; empty = off.
    pub metrics_listen: String,
    /// OTLP trace export (`[telemetry]`; `OTEL_*` variables honoured).
    pub telemetry: dolbom_telemetry::TelemetryOptions,
    /// Days the watch log (how far back a `WatchIncidents` cursor can
    /// resume), finished messages and ended escalations are kept here; the
    /// history store keeps the record for its own retention.
    pub log_retention_days: u32,
    /// Days resolved incidents stay listable through this service.
    pub incident_retention_days: u32,
    /// Seconds between retention sweeps.
    pub sweep_interval_secs: u64,
}

impl Default for NotifyOptions {
    fn default() -> Self {
        NotifyOptions {
            listen: "127.0.0.1:50051".into(),
            tls: None,
            insecure_plaintext: false,
            data_dir: PathBuf::from("dolbom-data"),
            kafka: KafkaOptions::default(),
            group_id: "dolbom-notify".into(),
            incidents_topic: "care.incidents".into(),
            households_topic: "care.households".into(),
            public_keys: Vec::new(),
            public_keys_file: None,
            revoked_tokens_file: None,
            max_token_lifetime_hours: dolbom_auth::DEFAULT_MAX_LIFETIME_S / 3600,
            api: crate::limits::ApiOptions::default(),
            contact_key_file: None,
            create_contact_key: false,
            history_store: "embedded".into(),
            scylla: ScyllaOptions::default(),
            retention: Retention::default(),
            writer: WriterOptions::default(),
            sms: SmsOptions::default(),
            retry: RetryOptions::default(),
            recipients: Vec::new(),
            policies: Vec::new(),
            learning: Vec::new(),
            office_hours: OfficeHours::default(),
            holidays_file: None,
            tick_ms: 1000,
            max_in_flight: 256,
            metrics_listen: String::new(),
            telemetry: Default::default(),
            log_retention_days: 30,
            incident_retention_days: 400,
            sweep_interval_secs: 3600,
        }
    }
}

fn bad(field: &str, problem: &str) -> NotifyError {
    NotifyError::Config(format!("{field}: {problem}"))
}

impl dolbom_options::Options for NotifyOptions {
    type Error = NotifyError;

    fn validate(&self) -> Result<(), NotifyError> {
        self.kafka
            .validate()
            .map_err(|e| NotifyError::Config(e.to_string()))?;
        self.telemetry
            .validate()
            .map_err(|e| NotifyError::Config(e.to_string()))?;
        dolbom_tls::check_listen(
            "listen",
            &self.listen,
            self.tls.is_some(),
            self.insecure_plaintext,
        )
        .map_err(|e| NotifyError::Config(e.to_string()))?;
        if !["embedded", "scylla"].contains(&self.history_store.as_str()) {
            return Err(bad("history_store", "must be embedded or scylla"));
        }
        if self.tick_ms == 0 {
            return Err(bad("tick_ms", "must be above 0"));
        }
        if self.log_retention_days == 0 || self.incident_retention_days < self.log_retention_days {
            return Err(bad(
                "log_retention_days",
                "must be at least 1 and at most incident_retention_days",
            ));
        }
        if self.sweep_interval_secs == 0 {
            return Err(bad("sweep_interval_secs", "must be above 0"));
        }
        if self.retry.attempts == 0 {
            return Err(bad("retry.attempts", "must be at least 1"));
        }
        let oh = self.office_hours;
        if oh.open_minute >= oh.close_minute || oh.close_minute > 1440 {
            return Err(bad(
                "office_hours",
                "open_minute must be before close_minute ≤ 1440",
            ));
        }
        for (i, p) in self.policies.iter().enumerate() {
            p.policy
                .validate()
                .map_err(|e| bad(&format!("policies[{i}]"), &e.to_string()))?;
        }
        for (i, l) in self.learning.iter().enumerate() {
            let code = &l.municipality;
            if code != "*" && dolbom_domain::MunicipalityCode::new(code).is_err() {
                return Err(bad(
                    &format!("learning[{i}].municipality"),
                    "must be a 5-digit 시군구 code or \"*\"",
                ));
            }
            if self.learning[..i].iter().any(|o| &o.municipality == code) {
                return Err(bad(
                    &format!("learning[{i}].municipality"),
                    "is listed twice",
                ));
            }
        }
        self.check_reachable()?;
        check_url(
            "sms.endpoint",
            &self.sms.endpoint,
            self.sms.allow_insecure_http,
        )?;
        for (i, r) in self.recipients.iter().enumerate() {
            if dolbom_escalation::Tier::parse(&r.tier).is_none() {
                return Err(bad(&format!("recipients[{i}].tier"), "unknown tier"));
            }
            check_url(
                &format!("recipients[{i}].webhook_url"),
                &r.webhook_url,
                r.allow_insecure_http,
            )?;
            if !r.webhook_url.is_empty()
                && r.webhook_secret_file.is_none()
                && r.webhook_secret.len() < 16
            {
                return Err(bad(
                    &format!("recipients[{i}].webhook_secret"),
                    "at least 16 characters (or a webhook_secret_file) when a webhook_url is set",
                ));
            }
        }
        Ok(())
    }

    /// Also: token keys, the revocation list, the contact key, secret
    /// files, TLS material and the holidays file.
    fn check_files(&self) -> Result<(), NotifyError> {
        self.validate()?;
        self.verifier()?;
        self.router()?;
        self.with_secrets()?;
        if self.history_store == "scylla" {
            self.scylla
                .check_files()
                .map_err(|e| NotifyError::Config(format!("scylla: {e}")))?;
        }
        if let Some(t) = &self.tls {
            t.check()
                .map_err(|e| NotifyError::Config(format!("tls: {e}")))?;
        }
        if let Some(f) = &self.revoked_tokens_file {
            dolbom_auth::Revocations::load(f)
                .map_err(|e| bad("revoked_tokens_file", &e.to_string()))?;
        }
        let key = self.contact_key_path();
        if key.exists() {
            crate::crypto::Cipher::from_file(&key, false)?;
        } else if !self.create_contact_key {
            return Err(bad(
                "contact_key_file",
                &format!(
                    "{} does not exist (and create_contact_key is off)",
                    key.display()
                ),
            ));
        }
        Ok(())
    }
}

/// An endpoint that carries names and phone numbers: `https://` unless the
/// operator allowed plain `http://` for it; empty = not configured.
fn check_url(field: &str, url: &str, allow_http: bool) -> Result<(), NotifyError> {
    if url.is_empty() || url.starts_with("https://") || (allow_http && url.starts_with("http://")) {
        Ok(())
    } else if url.starts_with("http://") {
        Err(bad(
            field,
            "must be https:// (set allow_insecure_http = true for this endpoint to send in the clear)",
        ))
    } else {
        Err(bad(field, "must be an https:// URL"))
    }
}

impl NotifyOptions {
    /// These options with every secret file read into its value (SMS API
    /// key, webhook secrets); a file that is missing, empty or readable by
    /// others is refused.
    pub fn with_secrets(&self) -> Result<NotifyOptions, NotifyError> {
        let mut o = self.clone();
        if let Some(f) = &o.sms.api_key_file {
            o.sms.api_key = dolbom_options::read_secret_file(f)
                .map_err(|e| bad("sms.api_key_file", &e.to_string()))?;
        }
        for (i, r) in o.recipients.iter_mut().enumerate() {
            if let Some(f) = &r.webhook_secret_file {
                let field = format!("recipients[{i}].webhook_secret_file");
                r.webhook_secret =
                    dolbom_options::read_secret_file(f).map_err(|e| bad(&field, &e.to_string()))?;
                if r.webhook_secret.len() < 16 {
                    return Err(bad(&field, "the secret must have at least 16 characters"));
                }
            }
        }
        Ok(o)
    }

    pub fn contact_key_path(&self) -> PathBuf {
        self.contact_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("contact.key"))
    }

    pub fn verifier(&self) -> Result<Verifier, NotifyError> {
        let mut lines: Vec<String> = self.public_keys.clone();
        if let Some(f) = &self.public_keys_file {
            let text = std::fs::read_to_string(f)
                .map_err(|e| bad("public_keys_file", &format!("{}: {e}", f.display())))?;
            lines.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(String::from),
            );
        }
        if lines.is_empty() {
            return Err(bad(
                "public_keys",
                "no token verification key: every call must be authenticated (see `dolbom token`)",
            ));
        }
        let keys = lines
            .iter()
            .map(|l| VerifyingKey::from_text(l).map_err(|e| bad("public_keys", &e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        if self.max_token_lifetime_hours == 0 {
            return Err(bad("max_token_lifetime_hours", "must be at least 1"));
        }
        let v = Verifier::new(&keys).with_max_lifetime(self.max_token_lifetime_hours * 3600);
        if let Some(f) = &self.revoked_tokens_file {
            let r = dolbom_auth::Revocations::load(f)
                .map_err(|e| bad("revoked_tokens_file", &e.to_string()))?;
            v.set_revocations(r);
        }
        Ok(v)
    }

    pub fn router(&self) -> Result<Router, NotifyError> {
        Router::load(self.holidays_file.as_deref(), self.office_hours)
            .map_err(|e| bad("holidays_file", &e.to_string()))
    }

    /// Every tier a policy can reach — its steps, and maintenance and SRE
    /// for the notices — has an address for each push channel it uses:
    /// a policy that would tell nobody is refused at start-up instead of
    /// failing when a person needs help. The `"*"` policy must be covered
    /// by `"*"` recipients; a municipality's own policy by its own or `"*"`.
    fn check_reachable(&self) -> Result<(), NotifyError> {
        let dir = crate::channels::Directory::new(&self.recipients);
        let mut policies: Vec<(String, Policy)> = self.policy_map().into_iter().collect();
        policies.sort_by(|a, b| a.0.cmp(&b.0));
        let uses_sms = policies.iter().any(|(_, p)| {
            p.notice_channels
                .contains(&dolbom_escalation::ChannelKind::Sms)
                || p.steps
                    .iter()
                    .any(|s| s.channels.contains(&dolbom_escalation::ChannelKind::Sms))
        });
        if uses_sms && self.sms.endpoint.is_empty() {
            return Err(bad(
                "sms.endpoint",
                "a policy sends SMS but no SMS gateway is configured",
            ));
        }
        for (m, p) in &policies {
            let steps = p.steps.iter().map(|s| (s.tier, &s.channels));
            let notices = [Tier::Maintenance, Tier::Sre].map(|t| (t, &p.notice_channels));
            for (tier, channels) in steps.chain(notices) {
                if let Some(c) = channels.iter().find(|c| !dir.reaches(m, tier, **c)) {
                    return Err(bad(
                        "recipients",
                        &format!(
                            "the policy for municipality {m:?} sends {} to {} but no recipient has that address (add a recipient with tier {:?} for {m:?}{})",
                            c.name(),
                            tier.name(),
                            tier.name(),
                            if m == "*" { "" } else { " or \"*\"" }
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Learned-detection defaults per municipality; `"*"` for all others
    /// (the platform's defaults when absent).
    pub fn learning_map(&self) -> HashMap<String, Learning> {
        let mut m: HashMap<String, Learning> = self
            .learning
            .iter()
            .map(|l| (l.municipality.clone(), l.learning))
            .collect();
        m.entry("*".into()).or_default();
        m
    }

    pub fn policy_map(&self) -> HashMap<String, Policy> {
        let mut m: HashMap<String, Policy> = self
            .policies
            .iter()
            .map(|p| (p.municipality.clone(), p.policy.clone()))
            .collect();
        m.entry("*".into()).or_insert_with(Policy::platform_default);
        m
    }
}

/// `dolbom notify` flags: each overrides the same option from the
/// environment, the TOML file and the defaults.
#[derive(clap::Args, Serialize, Default)]
pub struct NotifyFlags {
    #[command(flatten)]
    #[serde(flatten)]
    pub common: dolbom_options::ServiceFlags,
    /// gRPC listen address.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// Directory of notify.sqlite, the contact key and the embedded history.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// File of token verification keys (`kid:base64` per line).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_keys_file: Option<PathBuf>,
    /// File of revoked tokens (`jti <id>` / `sub <subject> [before]` per line).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_tokens_file: Option<PathBuf>,
    /// Create the contact encryption key if it is missing.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub create_contact_key: Option<bool>,
    /// Serve the API without TLS beyond loopback (TLS ends at a proxy).
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub insecure_plaintext: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use dolbom_domain::config::RoutineSensitivity;
    use dolbom_options::Options;

    #[test]
    fn toml_policies_recipients_and_bad_values() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("notify.toml");
        std::fs::write(
            &f,
            r#"
listen = "127.0.0.1:0"
public_keys = ["k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="]
[sms]
endpoint = "https://sms.example/v1"
[[recipients]]
municipality = "11110"
tier = "DONG_OFFICE"
sms = ["0200000000"]
[[recipients]]
municipality = "*"
tier = "DONG_OFFICE"
sms = ["0299990000"]
webhook_url = "https://ops.example/dong_office"
webhook_secret = "0123456789abcdef"
[[recipients]]
municipality = "*"
tier = "CONTROL_CENTER"
sms = ["0299990000"]
webhook_url = "https://ops.example/control_center"
webhook_secret = "0123456789abcdef"
[[recipients]]
municipality = "*"
tier = "EMERGENCY"
sms = ["0299990000"]
webhook_url = "https://ops.example/emergency"
webhook_secret = "0123456789abcdef"
[[recipients]]
municipality = "*"
tier = "MAINTENANCE"
sms = ["0299990000"]
webhook_url = "https://ops.example/maintenance"
webhook_secret = "0123456789abcdef"
[[recipients]]
municipality = "*"
tier = "SRE"
sms = ["0299990000"]
webhook_url = "https://ops.example/sre"
webhook_secret = "0123456789abcdef"
[[policies]]
municipality = "11110"
[policies.policy]
version = 2
stage_start = [0, 0, 1]
[[policies.policy.steps]]
tier = "DONG_OFFICE"
channels = ["watch", "sms"]
wait_minutes = 20
repeats = 2
[[policies.policy.steps]]
tier = "EMERGENCY"
channels = ["webhook"]
wait_minutes = 10
"#,
        )
        .unwrap();
        let o = NotifyOptions::load(Some(&f), serde_json::json!({})).unwrap();
        assert_eq!(o.policies[0].policy.steps[0].repeats, 2);
        assert_eq!(o.policy_map().len(), 2);
        assert!(o.verifier().is_ok());
        let mut bad = o.clone();
        bad.policies[0].policy.stage_start = [0, 0, 5];
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("policies[0]"));
        let mut bad = o.clone();
        bad.recipients[0].tier = "MAYOR".into();
        assert!(bad.validate().is_err());
        let none = NotifyOptions::default();
        assert!(none.verifier().is_err());
        // A policy that would tell nobody is refused at start-up.
        let e = none.validate().unwrap_err().to_string();
        assert!(e.contains("sms"), "{e}");
        let mut gateway_only = NotifyOptions::default();
        gateway_only.sms.endpoint = "https://sms.example".into();
        let e = gateway_only.validate().unwrap_err().to_string();
        assert!(e.contains("to DONG_OFFICE"), "{e}");
        let mut no_sre = o.clone();
        no_sre.recipients.retain(|r| r.tier != "SRE");
        let e = no_sre.validate().unwrap_err().to_string();
        assert!(e.contains("to SRE"), "{e}");
        let mut watch_only = NotifyOptions::default();
        watch_only.policies.push(MunicipalityPolicy {
            municipality: "*".into(),
            policy: Policy::watch_only(),
        });
        assert!(watch_only.validate().is_ok());
        // The example configuration in deploy/ is one that starts.
        let example = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/notify.example.toml"
        );
        let mut ex =
            NotifyOptions::load(Some(std::path::Path::new(example)), serde_json::json!({}))
                .unwrap();
        ex.validate().unwrap();
        ex.sms.endpoint.clear();
        assert!(ex
            .validate()
            .unwrap_err()
            .to_string()
            .contains("sms.endpoint"));
    }

    #[test]
    fn learning_defaults_name_a_municipality_once_and_a_known_sensitivity() {
        let example = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/notify.example.toml"
        );
        let ex = NotifyOptions::load(Some(std::path::Path::new(example)), serde_json::json!({}))
            .unwrap();
        let m = ex.learning_map();
        assert_eq!(m["11110"].routine, RoutineSensitivity::Normal);
        assert_eq!(m["*"], Learning::default());
        let with = |code: &str| MunicipalityLearning {
            municipality: code.into(),
            learning: Learning {
                routine: RoutineSensitivity::Low,
                recognise_automatic_loads: true,
                defer_through_usual_quiet: true,
            },
        };
        let mut o = ex.clone();
        o.learning = vec![with("1111")];
        assert!(o
            .validate()
            .unwrap_err()
            .to_string()
            .contains("learning[0].municipality"));
        o.learning = vec![with("*"), with("11110"), with("11110")];
        assert!(o
            .validate()
            .unwrap_err()
            .to_string()
            .contains("learning[2]"));
        // An unknown or missing sensitivity does not load; the switches
        // default as for a household.
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("n.toml");
        // The example, which starts, plus one more entry.
        let base = std::fs::read_to_string(example).unwrap();
        let load = |toml: &str| {
            std::fs::write(&f, format!("{base}\n{toml}")).unwrap();
            NotifyOptions::load(Some(&f), serde_json::json!({})).map_err(|e| e.to_string())
        };
        let entry = "[[learning]]\nmunicipality = \"*\"\n";
        let e = load(&format!("{entry}routine = \"loud\"\n")).unwrap_err();
        assert!(e.contains("loud"), "{e}");
        let e = load(entry).unwrap_err();
        assert!(e.contains("routine"), "{e}");
        let low = load(&format!("{entry}routine = \"low\"\n")).unwrap();
        let expected = Learning {
            routine: RoutineSensitivity::Low,
            ..Learning::default()
        };
        assert_eq!(low.learning_map()["*"], expected);
    }

    #[test]
    fn endpoints_need_https_and_secrets_stay_out_of_debug_and_open_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = NotifyOptions::default();
        o.policies.push(MunicipalityPolicy {
            municipality: "*".into(),
            policy: Policy::watch_only(),
        });
        o.sms.endpoint = "http://sms.example/v1".into();
        o.sms.api_key = "sms-api-key-value".into();
        let e = o.validate().unwrap_err().to_string();
        assert!(e.contains("sms.endpoint") && e.contains("https"), "{e}");
        o.sms.allow_insecure_http = true;
        o.validate().unwrap();
        o.recipients.push(Recipient {
            municipality: "*".into(),
            tier: "SRE".into(),
            webhook_url: "http://sre.example/hook".into(),
            webhook_secret_file: Some(dir.path().join("hook.secret")),
            ..Default::default()
        });
        let e = o.validate().unwrap_err().to_string();
        assert!(e.contains("recipients[0].webhook_url"), "{e}");
        o.recipients[0].webhook_url = "https://sre.example/hook".into();
        o.validate().unwrap();
        // Secrets never show in Debug output (options are logged at start).
        let shown = format!("{o:?}");
        assert!(!shown.contains("sms-api-key-value"), "{shown}");
        // Secret files: missing, too open, too short, then good.
        assert!(o.with_secrets().is_err());
        let f = dir.path().join("hook.secret");
        std::fs::write(&f, "a-webhook-secret-of-24ch\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
            let e = o.with_secrets().unwrap_err().to_string();
            assert!(e.contains("too open"), "{e}");
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let resolved = o.with_secrets().unwrap();
        assert_eq!(
            resolved.recipients[0].webhook_secret.expose(),
            "a-webhook-secret-of-24ch"
        );
        std::fs::write(&f, "short\n").unwrap();
        assert!(o.with_secrets().is_err());
    }
}
