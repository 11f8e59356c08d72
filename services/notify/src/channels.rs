//! Delivery channels behind one trait: the SMS gateway (HTTP), signed
//! webhooks ([`crate::webhook`]), and the gRPC `WatchIncidents` stream.
//!
//! A [`Notification`] carries no personal data: the pseudonymous household
//! id, the dong code, the stage and the incident id are enough for staff to
//! open the case in their own system (or over the API, which audits the read).
//! Every send carries the message id as its idempotency key, so a retry or a
//! resend after a restart is recognised by the receiver.

use dolbom_domain::incident::{IncidentKind, Stage};
use dolbom_domain::named::as_name;
use dolbom_escalation::{ChannelKind, Purpose, Tier};
use dolbom_options::Secret;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// What is sent, whatever the channel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub message_id: String,
    pub incident_id: String,
    pub household_id: String,
    pub municipality_code: String,
    pub dong_code: String,
    /// `INACTIVITY`, `DEVICE_OFFLINE`, `AREA_OUTAGE`, `PIPELINE_STALL`.
    #[serde(with = "as_name")]
    pub kind: IncidentKind,
    /// `ATTENTION`, `CAUTION`, `DANGER`, `NORMAL`.
    #[serde(with = "as_name")]
    pub stage: Stage,
    /// The tier told: `DONG_OFFICE`, `CONTROL_CENTER`, `EMERGENCY`, …
    #[serde(with = "as_name")]
    pub tier: Tier,
    pub step: u32,
    pub attempt: u32,
    /// `alert`, `stage_raised`, `recovered`, `notice`.
    #[serde(with = "as_name")]
    pub purpose: Purpose,
    pub at_ms: i64,
    /// A short Korean text for SMS; no personal data.
    pub text: String,
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DeliveryError {
    /// Worth another try (timeouts, 5xx, 429, connection errors).
    #[error("retryable: {0}")]
    Retryable(String),
    /// Retrying will not help (4xx, bad configuration).
    #[error("permanent: {0}")]
    Permanent(String),
    /// Nobody is configured for this tier on this channel.
    #[error("no recipient configured")]
    NoRecipient,
}

/// One way of telling a tier.
#[async_trait::async_trait]
pub trait Channel: Send + Sync {
    fn kind(&self) -> ChannelKind;
    /// Delivers once; returns a short receipt (e.g. the gateway's status).
    async fn deliver(&self, n: &Notification) -> Result<String, DeliveryError>;
}

/// Who receives a tier's messages in a municipality (`"*"` = every
/// municipality without its own entry). Staff numbers and endpoints, never
/// household data; still never logged.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Recipient {
    pub municipality: String,
    pub tier: String,
    pub sms: Vec<String>,
    /// `https://…`; `http://` only with `allow_insecure_http`.
    pub webhook_url: String,
    /// The HMAC secret (at least 16 characters), or `webhook_secret_file`.
    pub webhook_secret: Secret,
    /// A file (mode 0600/0640) holding the webhook secret; read at start.
    pub webhook_secret_file: Option<PathBuf>,
    /// Allow a plain `http://` webhook_url for this endpoint (a receiver on
    /// the same host or behind a TLS-terminating proxy).
    pub allow_insecure_http: bool,
    /// Send this endpoint's webhooks in batches (see [`crate::webhook`]):
    /// several notifications per request, each still signed on its own.
    pub webhook_batch: bool,
}

/// Looks up the recipients of (municipality, tier).
#[derive(Clone, Debug, Default)]
pub struct Directory {
    by_key: HashMap<(String, Tier), Recipient>,
}

impl Directory {
    /// Entries with an unknown tier are left out (options validation
    /// refuses them first).
    pub fn new(entries: &[Recipient]) -> Self {
        Directory {
            by_key: entries
                .iter()
                .filter_map(|r| Some(((r.municipality.clone(), Tier::parse(&r.tier)?), r.clone())))
                .collect(),
        }
    }

    /// Whether (municipality, tier) has an address for `channel` (the
    /// watch stream needs none).
    pub fn reaches(&self, municipality: &str, tier: Tier, channel: ChannelKind) -> bool {
        let r = self.lookup(municipality, tier);
        match channel {
            ChannelKind::Watch => true,
            ChannelKind::Sms => r.is_some_and(|r| !r.sms.is_empty()),
            ChannelKind::Webhook => r.is_some_and(|r| !r.webhook_url.is_empty()),
        }
    }

    pub fn lookup(&self, municipality: &str, tier: Tier) -> Option<&Recipient> {
        self.by_key
            .get(&(municipality.to_string(), tier))
            .or_else(|| self.by_key.get(&("*".to_string(), tier)))
    }
}

/// Retries with exponential backoff.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RetryOptions {
    /// Tries per channel, the first included.
    pub attempts: u32,
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// Timeout of one HTTP request.
    pub timeout_ms: u64,
}

impl Default for RetryOptions {
    fn default() -> Self {
        RetryOptions {
            attempts: 4,
            initial_backoff_ms: 500,
            max_backoff_ms: 10_000,
            timeout_ms: 5_000,
        }
    }
}

impl RetryOptions {
    pub fn backoff(&self, after_attempt: u32) -> Duration {
        let ms = self
            .initial_backoff_ms
            .saturating_mul(1u64 << after_attempt.saturating_sub(1).min(20));
        Duration::from_millis(ms.min(self.max_backoff_ms))
    }
}

pub(crate) fn classify(e: reqwest::Error) -> DeliveryError {
    DeliveryError::Retryable(if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else {
        "request failed".into()
    })
}

pub(crate) fn status_result(status: reqwest::StatusCode) -> Result<String, DeliveryError> {
    if status.is_success() {
        Ok(format!("http {}", status.as_u16()))
    } else if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        Err(DeliveryError::Retryable(format!(
            "http {}",
            status.as_u16()
        )))
    } else {
        Err(DeliveryError::Permanent(format!(
            "http {}",
            status.as_u16()
        )))
    }
}

/// The SMS gateway adapter.
///
/// `POST {endpoint}` with `Authorization: Bearer {api_key}`,
/// `Idempotency-Key: {message_id}` and the JSON body
/// `{"message_id", "to": [numbers], "text"}`. 2xx is delivered; 429, 5xx and
/// transport errors are retried; other statuses are permanent failures.
pub struct SmsGateway {
    client: reqwest::Client,
    endpoint: String,
    api_key: Secret,
    directory: Arc<Directory>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SmsOptions {
    /// Empty = SMS disabled (every SMS send fails as not configured).
    /// `https://…`; `http://` only with `allow_insecure_http`.
    pub endpoint: String,
    /// The gateway's bearer key, or `api_key_file`.
    pub api_key: Secret,
    /// A file (mode 0600/0640) holding the API key; read at start.
    pub api_key_file: Option<PathBuf>,
    /// Allow a plain `http://` endpoint (a gateway on the same host or
    /// behind a TLS-terminating proxy).
    pub allow_insecure_http: bool,
}

impl SmsGateway {
    pub fn new(opts: &SmsOptions, retry: &RetryOptions, directory: Arc<Directory>) -> Self {
        SmsGateway {
            client: reqwest::Client::builder()
                .timeout(Duration::from_millis(retry.timeout_ms))
                .build()
                .expect("an HTTP client with a timeout"),
            endpoint: opts.endpoint.clone(),
            api_key: opts.api_key.clone(),
            directory,
        }
    }
}

#[derive(Serialize)]
struct SmsBody<'a> {
    message_id: &'a str,
    to: &'a [String],
    text: &'a str,
}

#[async_trait::async_trait]
impl Channel for SmsGateway {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Sms
    }

    async fn deliver(&self, n: &Notification) -> Result<String, DeliveryError> {
        if self.endpoint.is_empty() {
            return Err(DeliveryError::Permanent("no SMS gateway configured".into()));
        }
        let to = match self.directory.lookup(&n.municipality_code, n.tier) {
            Some(r) if !r.sms.is_empty() => &r.sms,
            _ => return Err(DeliveryError::NoRecipient),
        };
        let resp = self
            .client
            .post(&self.endpoint)
            .bearer_auth(self.api_key.expose())
            .header("Idempotency-Key", &n.message_id)
            .json(&SmsBody {
                message_id: &n.message_id,
                to,
                text: &n.text,
            })
            .send()
            .await
            .map_err(classify)?;
        status_result(resp.status())
    }
}

pub use crate::webhook::{
    sign_webhook, verify_webhook, Webhook, WebhookRejection, WebhookVerifier,
};

/// The `WatchIncidents` stream as a channel: subscribers pull incident
/// events from the event log, so a message is delivered once the event is
/// logged, which happened before the message was queued.
pub struct WatchChannel;

#[async_trait::async_trait]
impl Channel for WatchChannel {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Watch
    }

    async fn deliver(&self, _n: &Notification) -> Result<String, DeliveryError> {
        Ok("on the watch stream".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let r = RetryOptions::default();
        assert_eq!(r.backoff(1), Duration::from_millis(500));
        assert_eq!(r.backoff(2), Duration::from_millis(1000));
        assert_eq!(r.backoff(3), Duration::from_millis(2000));
        assert_eq!(r.backoff(30), Duration::from_millis(10_000));
    }

    #[test]
    fn directory_falls_back_to_the_wildcard() {
        let d = Directory::new(&[
            Recipient {
                municipality: "*".into(),
                tier: "DONG_OFFICE".into(),
                sms: vec!["0200000000".into()],
                ..Default::default()
            },
            Recipient {
                municipality: "11110".into(),
                tier: "DONG_OFFICE".into(),
                sms: vec!["0211111111".into()],
                ..Default::default()
            },
        ]);
        assert_eq!(
            d.lookup("11110", Tier::DongOffice).unwrap().sms[0],
            "0211111111"
        );
        assert_eq!(
            d.lookup("26110", Tier::DongOffice).unwrap().sms[0],
            "0200000000"
        );
        assert!(d.lookup("26110", Tier::Emergency).is_none());
    }
}
