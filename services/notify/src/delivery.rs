//! Deliveries: outbox rows out through their channels, with retries, an
//! in-flight limit, and their results recorded in groups.
//!
//! [`Deliveries::submit`] takes the outbox rows a committed transaction
//! queued (or a restart found pending) and sends each message on each of its
//! push channels as one task, at most `max_in_flight` at once. A channel is
//! tried up to `retry.attempts` times with exponential backoff while its
//! errors are retryable; every attempt becomes a history record that travels
//! with its result (so a slow or absent history store never holds a delivery
//! up). Results go to the [`Finisher`], which records them in the outbox many
//! per transaction (one fsync for everything that finished meanwhile) and tells
//! the [`Ledger`] (the core) about an alert that reached nobody, so that the
//! escalation moves on without waiting for its acknowledgement timeout.

use crate::channels::{Channel, DeliveryError, Notification, RetryOptions};
use crate::error::NotifyError;
use crate::metrics as m;
use crate::store::OutboxRow;
use dolbom_domain::SharedClock;
use dolbom_escalation::{ChannelKind, Purpose};
use dolbom_history::{EscalationAction, EscalationEntry};
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use tokio::sync::{mpsc, oneshot, Semaphore};

/// How one message on one channel ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    Delivered,
    Failed,
}

impl Status {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::Delivered => "delivered",
            Status::Failed => "failed",
        }
    }
}

/// One message's delivery on one channel, finished.
#[derive(Clone, Debug)]
pub(crate) struct Finished {
    pub(crate) message_id: String,
    pub(crate) channel: String,
    pub(crate) status: Status,
    pub(crate) attempts: u32,
    /// One history record per attempt.
    pub(crate) records: Vec<EscalationEntry>,
}

/// What the delivery tasks tell the finisher.
enum Report {
    Finished(Finished),
    /// An alert whose push channels all failed.
    ReachedNobody(Box<Notification>),
    /// Answer once everything reported before has been recorded.
    Flush(oneshot::Sender<()>),
}

/// Where delivery results are recorded (the core).
#[async_trait::async_trait]
pub(crate) trait Ledger: Send + Sync {
    /// Records finished deliveries in one transaction.
    async fn record(self: Arc<Self>, finished: Vec<Finished>) -> Result<(), NotifyError>;
    /// An alert reached nobody: the escalation moves on.
    async fn reached_nobody(self: Arc<Self>, note: Notification) -> Result<(), NotifyError>;
}

struct Inner {
    channels: HashMap<ChannelKind, Arc<dyn Channel>>,
    retry: RetryOptions,
    in_flight: Arc<Semaphore>,
    max_in_flight: u32,
    clock: SharedClock,
    reports: mpsc::UnboundedSender<Report>,
}

/// See the module docs.
#[derive(Clone)]
pub(crate) struct Deliveries {
    inner: Arc<Inner>,
}

/// Records delivery results; started once the core exists.
pub(crate) struct Finisher {
    rx: mpsc::UnboundedReceiver<Report>,
}

impl Deliveries {
    pub(crate) fn new(
        channels: Vec<Arc<dyn Channel>>,
        retry: RetryOptions,
        max_in_flight: usize,
        clock: SharedClock,
    ) -> (Deliveries, Finisher) {
        let (reports, rx) = mpsc::unbounded_channel();
        let max = max_in_flight.clamp(1, Semaphore::MAX_PERMITS) as u32;
        let inner = Inner {
            channels: channels.into_iter().map(|c| (c.kind(), c)).collect(),
            retry,
            in_flight: Arc::new(Semaphore::new(max as usize)),
            max_in_flight: max,
            clock,
            reports,
        };
        (
            Deliveries {
                inner: Arc::new(inner),
            },
            Finisher { rx },
        )
    }

    /// Starts delivering outbox rows: one task per message.
    pub(crate) fn submit(&self, rows: Vec<OutboxRow>) {
        let mut by_message: HashMap<String, Vec<OutboxRow>> = HashMap::new();
        for r in rows {
            by_message.entry(r.message_id.clone()).or_default().push(r);
        }
        for (_, rows) in by_message {
            let inner = self.inner.clone();
            tokio::spawn(async move {
                let _permit = inner.in_flight.clone().acquire_owned().await;
                if let Err(e) = inner.deliver_message(rows).await {
                    tracing::error!(error = %e, "a queued message could not be read; it stays pending");
                }
            });
        }
    }

    /// Waits until no delivery is in flight and every result is recorded.
    pub(crate) async fn drain(&self) {
        if let Ok(all) = self
            .inner
            .in_flight
            .acquire_many(self.inner.max_in_flight)
            .await
        {
            drop(all);
        }
        let (tx, rx) = oneshot::channel();
        if self.inner.reports.send(Report::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

impl Inner {
    async fn deliver_message(&self, rows: Vec<OutboxRow>) -> Result<(), NotifyError> {
        let Some(first) = rows.first() else {
            return Ok(());
        };
        let note: Notification = serde_json::from_str(&first.notification)
            .map_err(|e| NotifyError::Corrupt(format!("outbox notification: {e}")))?;
        let results =
            futures::future::join_all(rows.iter().map(|r| self.deliver_one(r, &note))).await;
        let push: Vec<bool> = rows
            .iter()
            .zip(&results)
            .filter(|(r, _)| ChannelKind::parse(&r.channel).is_none_or(ChannelKind::is_push))
            .map(|(_, ok)| *ok)
            .collect();
        if note.purpose == Purpose::Alert && !push.is_empty() && push.iter().all(|ok| !ok) {
            let _ = self.reports.send(Report::ReachedNobody(Box::new(note)));
        }
        Ok(())
    }

    /// Delivers one message on one channel with retries, recording every
    /// attempt; true when delivered.
    async fn deliver_one(&self, row: &OutboxRow, note: &Notification) -> bool {
        let kind = ChannelKind::parse(&row.channel);
        let channel = kind.and_then(|k| self.channels.get(&k)).cloned();
        let label = kind.map_or("unknown", ChannelKind::as_str);
        let mut attempt = 0;
        let mut records = Vec::new();
        let status = loop {
            attempt += 1;
            let started = std::time::Instant::now();
            let span = tracing::info_span!(
                parent: &row.span,
                "delivery attempt",
                otel.kind = "client",
                dolbom.incident_id = %row.incident_id,
                dolbom.channel = label,
                dolbom.attempt = attempt,
            );
            let result = match &channel {
                Some(c) => tracing::Instrument::instrument(c.deliver(note), span).await,
                None => Err(DeliveryError::Permanent("channel not configured".into())),
            };
            metrics::histogram!(m::DELIVERY_SECONDS, "channel" => label)
                .record(started.elapsed().as_secs_f64());
            let (status, detail, retry) = match &result {
                Ok(d) => (Status::Delivered, d.clone(), false),
                Err(DeliveryError::Retryable(d)) => (Status::Failed, d.clone(), true),
                Err(e) => (Status::Failed, e.to_string(), false),
            };
            metrics::counter!(m::DELIVERY_ATTEMPTS, "channel" => label, "result" => status.as_str())
                .increment(1);
            records.push(EscalationEntry {
                incident_id: row.incident_id.clone(),
                entry_id: format!("{}/{}/try{attempt}", row.message_id, row.channel),
                municipality_code: row.municipality.clone(),
                at_ms: self.clock.now().millis(),
                action: EscalationAction::DeliveryAttempt,
                policy_version: 0,
                step: note.step,
                attempt: note.attempt,
                tier: note.tier.as_str().into(),
                channel: row.channel.clone(),
                message_id: row.message_id.clone(),
                result: status.as_str().into(),
                detail,
            });
            if status == Status::Delivered {
                break status;
            }
            if !retry || attempt >= self.retry.attempts {
                tracing::warn!(incident_id = %row.incident_id, message_id = %row.message_id,
                    channel = %row.channel, attempt, "delivery failed");
                break status;
            }
            tokio::time::sleep(self.retry.backoff(attempt)).await;
        };
        let _ = self.reports.send(Report::Finished(Finished {
            message_id: row.message_id.clone(),
            channel: row.channel.clone(),
            status,
            attempts: attempt,
            records,
        }));
        status == Status::Delivered
    }
}

impl Finisher {
    /// Runs until the deliveries are gone or the ledger is dropped.
    pub(crate) fn spawn(self, ledger: Weak<dyn Ledger>) {
        tokio::spawn(self.run(ledger));
    }

    async fn run(mut self, ledger: Weak<dyn Ledger>) {
        while let Some(first) = self.rx.recv().await {
            let mut finished = Vec::new();
            let mut nobody = Vec::new();
            let mut flushes = Vec::new();
            let mut next = Some(first);
            while let Some(r) = next.take() {
                match r {
                    Report::Finished(f) => finished.push(f),
                    Report::ReachedNobody(n) => nobody.push(*n),
                    Report::Flush(tx) => flushes.push(tx),
                }
                if finished.len() < 4096 {
                    next = self.rx.try_recv().ok();
                }
            }
            let Some(ledger) = ledger.upgrade() else {
                break;
            };
            if !finished.is_empty() {
                if let Err(e) = ledger.clone().record(finished).await {
                    // The rows stay pending and are delivered again (same
                    // idempotency keys) after a restart.
                    tracing::error!(error = %e, "could not record deliveries");
                }
            }
            for note in nobody {
                if let Err(e) = ledger.clone().reached_nobody(note).await {
                    tracing::error!(error = %e, "could not escalate a message that reached nobody");
                }
            }
            for f in flushes {
                let _ = f.send(());
            }
        }
    }
}
