//! The webhook channel: signed HTTP `POST`s to a tier's endpoint, one
//! notification per request or — for endpoints that ask for it — batched.
//!
//! One notification: the body is the [`Notification`] as JSON, with
//! `X-Dolbom-Timestamp: {unix seconds}`,
//! `X-Dolbom-Signature: v1={hex HMAC-SHA256(secret, "{timestamp}.{body}")}`
//! and `Idempotency-Key: {message_id}`. Receivers check the signature and
//! reject stale timestamps: [`WebhookVerifier`] does both, and accepts the
//! previous secret too while a secret is being rotated.
//!
//! Batched (`webhook_batch = true` on the recipient): notifications for the
//! same endpoint that are ready within [`BATCH_LINGER`] (at most
//! [`BATCH_MAX`]) go in one request whose body is
//! `{"notifications": [{"idempotency_key", "timestamp", "signature", "body"}, …]}`.
//! Each element is exactly what a single webhook would have sent — `body` is
//! the notification's JSON text and `signature` is computed over
//! `"{timestamp}.{body}"` — so a receiver verifies and de-duplicates each
//! one on its own; the request as a whole is signed the same way in its
//! headers (`X-Dolbom-Batch: {count}`). The batch's HTTP status is every
//! element's result; the delivery layer retries each failed notification
//! on its own.
//!
//! Data flow: delivery task → [`Webhook::deliver`] → (batched: the
//! endpoint's batcher task collects, posts, answers each waiter) → receipt.

use crate::channels::{
    classify, status_result, Channel, DeliveryError, Directory, Notification, Recipient,
    RetryOptions,
};
use dolbom_escalation::ChannelKind;
use ring::hmac;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How long a batch waits for more notifications after its first.
pub const BATCH_LINGER: Duration = Duration::from_millis(2);
/// Most notifications in one batched request.
pub const BATCH_MAX: usize = 200;

/// One signed notification inside a batched request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedNotification {
    pub idempotency_key: String,
    pub timestamp: u64,
    pub signature: String,
    /// The notification's JSON text, exactly as signed.
    pub body: String,
}

/// The body of a batched request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    pub notifications: Vec<SignedNotification>,
}

impl SignedNotification {
    /// Whether the signature holds for `secret`.
    pub fn verify(&self, secret: &str) -> bool {
        verify_webhook(
            secret,
            self.timestamp,
            self.body.as_bytes(),
            &self.signature,
        )
    }
}

/// The `X-Dolbom-Signature` value of a webhook body.
pub fn sign_webhook(secret: &str, timestamp: u64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("v1={}", hex::encode(ctx.sign().as_ref()))
}

/// Checks a webhook signature (for receivers and tests), in constant time.
pub fn verify_webhook(secret: &str, timestamp: u64, body: &[u8], signature: &str) -> bool {
    let Some(hex_sig) = signature.strip_prefix("v1=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut msg = timestamp.to_string().into_bytes();
    msg.push(b'.');
    msg.extend_from_slice(body);
    hmac::verify(&key, &msg, &sig).is_ok()
}

/// Why a receiver refuses a webhook ([`WebhookVerifier::check`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebhookRejection {
    /// The timestamp is further from the receiver's clock than allowed: a
    /// replayed (or badly delayed) request.
    Stale,
    /// No configured secret signed it.
    BadSignature,
}

/// What a receiver checks of a webhook: a signature by one of its secrets
/// (the current one and, while the secret is being rotated, the previous
/// one) over a timestamp within `max_age_s` of its own clock.
#[derive(Clone)]
pub struct WebhookVerifier {
    secrets: Vec<String>,
    max_age_s: u64,
}

impl std::fmt::Debug for WebhookVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookVerifier")
            .field("secrets", &self.secrets.len())
            .field("max_age_s", &self.max_age_s)
            .finish()
    }
}

impl WebhookVerifier {
    /// Five minutes each way, as most webhook receivers allow.
    pub const DEFAULT_MAX_AGE_S: u64 = 300;

    /// `current` and, during a rotation, `previous` secrets.
    pub fn new(current: &str, previous: Option<&str>) -> Self {
        Self {
            secrets: std::iter::once(current)
                .chain(previous)
                .map(String::from)
                .collect(),
            max_age_s: Self::DEFAULT_MAX_AGE_S,
        }
    }

    pub fn with_max_age(mut self, secs: u64) -> Self {
        self.max_age_s = secs;
        self
    }

    /// Checks one webhook (its `X-Dolbom-Timestamp`, body and
    /// `X-Dolbom-Signature`) at the receiver's `now_s`.
    pub fn check(
        &self,
        timestamp: u64,
        now_s: u64,
        body: &[u8],
        signature: &str,
    ) -> Result<(), WebhookRejection> {
        if timestamp.abs_diff(now_s) > self.max_age_s {
            return Err(WebhookRejection::Stale);
        }
        if self
            .secrets
            .iter()
            .any(|s| verify_webhook(s, timestamp, body, signature))
        {
            Ok(())
        } else {
            Err(WebhookRejection::BadSignature)
        }
    }
}

type Waiter = oneshot::Sender<Result<String, DeliveryError>>;

/// The webhook channel (see the module doc).
pub struct Webhook {
    client: reqwest::Client,
    directory: Arc<Directory>,
    /// One batcher per batched endpoint, started on first use.
    batchers: Mutex<HashMap<String, mpsc::UnboundedSender<(SignedNotification, Waiter)>>>,
}

impl Webhook {
    pub fn new(retry: &RetryOptions, directory: Arc<Directory>) -> Self {
        Webhook {
            client: reqwest::Client::builder()
                .timeout(Duration::from_millis(retry.timeout_ms))
                .build()
                .expect("an HTTP client with a timeout"),
            directory,
            batchers: Mutex::new(HashMap::new()),
        }
    }

    fn batcher(&self, r: &Recipient) -> mpsc::UnboundedSender<(SignedNotification, Waiter)> {
        let mut all = self.batchers.lock().expect("batchers");
        if let Some(tx) = all.get(&r.webhook_url).filter(|tx| !tx.is_closed()) {
            return tx.clone();
        }
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run_batches(
            self.client.clone(),
            r.webhook_url.clone(),
            r.webhook_secret.expose().to_string(),
            rx,
        ));
        all.insert(r.webhook_url.clone(), tx.clone());
        tx
    }
}

/// Posts `body` signed with `secret`, with `headers`.
async fn post(
    client: &reqwest::Client,
    url: &str,
    secret: &str,
    body: Vec<u8>,
    headers: &[(&str, String)],
) -> Result<String, DeliveryError> {
    let ts = dolbom_auth::unix_now();
    let mut req = client
        .post(url)
        .header("Content-Type", "application/json")
        .header("X-Dolbom-Timestamp", ts.to_string())
        .header("X-Dolbom-Signature", sign_webhook(secret, ts, &body));
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let resp = req.body(body).send().await.map_err(classify)?;
    status_result(resp.status())
}

/// One batched endpoint: takes what is ready, posts it, answers each
/// waiter with the request's result; ends when the channel is dropped.
async fn run_batches(
    client: reqwest::Client,
    url: String,
    secret: String,
    mut rx: mpsc::UnboundedReceiver<(SignedNotification, Waiter)>,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let linger = tokio::time::sleep(BATCH_LINGER);
        tokio::pin!(linger);
        while batch.len() < BATCH_MAX {
            tokio::select! {
                more = rx.recv() => match more {
                    Some(m) => batch.push(m),
                    None => break,
                },
                _ = &mut linger => break,
            }
        }
        let (items, waiters): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        let count = items.len();
        let body = serde_json::to_vec(&Batch {
            notifications: items,
        })
        .map_err(|e| DeliveryError::Permanent(e.to_string()));
        let client = client.clone();
        let (url, secret) = (url.clone(), secret.clone());
        // The next batch need not wait for this one's answer.
        tokio::spawn(async move {
            let result = match body {
                Ok(body) => {
                    post(
                        &client,
                        &url,
                        &secret,
                        body,
                        &[("X-Dolbom-Batch", count.to_string())],
                    )
                    .await
                }
                Err(e) => Err(e),
            };
            for w in waiters {
                let _ = w.send(result.clone());
            }
        });
    }
}

#[async_trait::async_trait]
impl Channel for Webhook {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Webhook
    }

    async fn deliver(&self, n: &Notification) -> Result<String, DeliveryError> {
        let r = match self.directory.lookup(&n.municipality_code, n.tier) {
            Some(r) if !r.webhook_url.is_empty() => r,
            _ => return Err(DeliveryError::NoRecipient),
        };
        let body = serde_json::to_vec(n).map_err(|e| DeliveryError::Permanent(e.to_string()))?;
        if !r.webhook_batch {
            return post(
                &self.client,
                &r.webhook_url,
                r.webhook_secret.expose(),
                body,
                &[("Idempotency-Key", n.message_id.clone())],
            )
            .await;
        }
        let ts = dolbom_auth::unix_now();
        let body = String::from_utf8(body).map_err(|e| DeliveryError::Permanent(e.to_string()))?;
        let item = SignedNotification {
            idempotency_key: n.message_id.clone(),
            timestamp: ts,
            signature: sign_webhook(r.webhook_secret.expose(), ts, body.as_bytes()),
            body,
        };
        let (tx, rx) = oneshot::channel();
        self.batcher(r)
            .send((item, tx))
            .map_err(|_| DeliveryError::Retryable("webhook batcher stopped".into()))?;
        rx.await
            .map_err(|_| DeliveryError::Retryable("webhook batch dropped".into()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receiver_takes_fresh_webhooks_signed_by_either_secret_during_a_rotation() {
        let body = br#"{"incident_id":"INA:11110-1:1"}"#;
        let now = 1_800_000_000;
        let old = sign_webhook("old-secret-0123456789", now, body);
        let new = sign_webhook("new-secret-0123456789", now, body);
        let v = WebhookVerifier::new("new-secret-0123456789", Some("old-secret-0123456789"));
        assert_eq!(v.check(now, now + 10, body, &new), Ok(()));
        assert_eq!(v.check(now, now + 10, body, &old), Ok(()));
        // After the rotation only the new secret holds.
        let after = WebhookVerifier::new("new-secret-0123456789", None);
        assert_eq!(
            after.check(now, now, body, &old),
            Err(WebhookRejection::BadSignature)
        );
        // A replay ten minutes later (or a timestamp from the future) is stale.
        assert_eq!(
            v.check(now, now + 600, body, &new),
            Err(WebhookRejection::Stale)
        );
        assert_eq!(
            v.check(now, now - 600, body, &new),
            Err(WebhookRejection::Stale)
        );
        assert_eq!(
            v.check(now, now, b"tampered", &new),
            Err(WebhookRejection::BadSignature)
        );
    }

    #[test]
    fn webhook_signatures_verify_and_bind_the_timestamp() {
        let sig = sign_webhook("s3cret", 1_700_000_000, b"{\"a\":1}");
        assert!(verify_webhook("s3cret", 1_700_000_000, b"{\"a\":1}", &sig));
        assert!(!verify_webhook("s3cret", 1_700_000_001, b"{\"a\":1}", &sig));
        assert!(!verify_webhook("other", 1_700_000_000, b"{\"a\":1}", &sig));
        assert!(!verify_webhook("s3cret", 1_700_000_000, b"{\"a\":2}", &sig));
        assert!(!verify_webhook(
            "s3cret",
            1_700_000_000,
            b"{\"a\":1}",
            "v1=zz"
        ));
    }

    #[test]
    fn a_batch_element_verifies_on_its_own() {
        let body = "{\"message_id\":\"INA:hh-1:1/s0/a1\"}".to_string();
        let item = SignedNotification {
            idempotency_key: "INA:hh-1:1/s0/a1".into(),
            timestamp: 1_700_000_000,
            signature: sign_webhook("s3cret", 1_700_000_000, body.as_bytes()),
            body,
        };
        assert!(item.verify("s3cret"));
        let json = serde_json::to_string(&Batch {
            notifications: vec![item.clone()],
        })
        .unwrap();
        let back: Batch = serde_json::from_str(&json).unwrap();
        assert!(back.notifications[0].verify("s3cret"));
        let mut forged = item;
        forged.body = forged.body.replace("a1", "a2");
        assert!(!forged.verify("s3cret"));
    }

    /// Fifty notifications at once to a batched endpoint: all delivered,
    /// in far fewer requests, each element verifying on its own.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batched_webhooks_carry_many_signed_notifications_per_request() {
        use axum::http::{HeaderMap, StatusCode};
        type Seen = Arc<Mutex<(usize, Vec<String>)>>;
        async fn hook(
            axum::extract::State(seen): axum::extract::State<Seen>,
            headers: HeaderMap,
            body: String,
        ) -> StatusCode {
            let ts: u64 = headers["x-dolbom-timestamp"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            let sig = headers["x-dolbom-signature"].to_str().unwrap();
            assert!(verify_webhook("0123456789abcdef", ts, body.as_bytes(), sig));
            let batch: Batch = serde_json::from_str(&body).unwrap();
            assert_eq!(
                headers["x-dolbom-batch"].to_str().unwrap(),
                batch.notifications.len().to_string()
            );
            let mut s = seen.lock().unwrap();
            s.0 += 1;
            for n in batch.notifications {
                assert!(n.verify("0123456789abcdef"));
                let v: Notification = serde_json::from_str(&n.body).unwrap();
                assert_eq!(v.message_id, n.idempotency_key);
                s.1.push(n.idempotency_key);
            }
            StatusCode::NO_CONTENT
        }
        let seen: Seen = Arc::default();
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(hook))
            .with_state(seen.clone());
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", l.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(l, app).await });
        let dir = Arc::new(Directory::new(&[Recipient {
            municipality: "*".into(),
            tier: "DONG_OFFICE".into(),
            webhook_url: url,
            webhook_secret: "0123456789abcdef".into(),
            webhook_batch: true,
            ..Default::default()
        }]));
        let w = Arc::new(Webhook::new(&RetryOptions::default(), dir));
        let sends = (0..50).map(|i| {
            let w = w.clone();
            tokio::spawn(async move {
                let n = Notification {
                    message_id: format!("INA:hh-{i}:1/s0/a1"),
                    incident_id: format!("INA:hh-{i}:1"),
                    household_id: format!("hh-{i}"),
                    municipality_code: "11110".into(),
                    dong_code: "1111051500".into(),
                    kind: dolbom_domain::incident::IncidentKind::Inactivity,
                    stage: dolbom_domain::incident::Stage::Attention,
                    tier: dolbom_escalation::Tier::DongOffice,
                    step: 0,
                    attempt: 1,
                    purpose: dolbom_escalation::Purpose::Alert,
                    at_ms: 0,
                    text: String::new(),
                };
                w.deliver(&n).await
            })
        });
        for r in futures::future::join_all(sends).await {
            assert!(r.unwrap().is_ok());
        }
        let s = seen.lock().unwrap();
        let mut ids = s.1.clone();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 50, "every notification once");
        assert!(s.0 < 50, "{} requests for 50 notifications", s.0);
    }
}
