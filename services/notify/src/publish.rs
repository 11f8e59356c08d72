//! Out to the bus: registry changes (`care.households`) and the service's
//! own incident events (ACKNOWLEDGED, RESOLVED on `care.incidents`).
//!
//! Changes are committed to the store first, marked unpublished; the
//! [`PublishLoop`] sends them through a [`Publisher`] (Kafka, or the
//! in-process bus in standalone) whenever a change asks for it and every
//! 5 s to retry, then marks them published. A failure keeps them queued and
//! turns readiness and `dolbom_notify_publisher_up` down until the next
//! success.

use crate::core::Core;
use crate::error::NotifyError;
use crate::metrics as m;
use crate::store;
use dolbom_proto::v1 as pb;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Where registry changes and the service's own incident events go:
/// `care.households` / `care.incidents` on Kafka, or the in-process bus.
#[async_trait::async_trait]
pub trait Publisher: Send + Sync {
    /// `None` = the household was deleted (a tombstone).
    async fn household(
        &self,
        household_id: &str,
        config: Option<&pb::HouseholdConfig>,
    ) -> Result<(), NotifyError>;
    async fn incident_event(&self, event: &pb::IncidentEvent) -> Result<(), NotifyError>;
}

/// A publisher that drops everything: for tools and benchmarks that run the
/// core without a bus.
pub struct NoPublisher;

#[async_trait::async_trait]
impl Publisher for NoPublisher {
    async fn household(&self, _: &str, _: Option<&pb::HouseholdConfig>) -> Result<(), NotifyError> {
        Ok(())
    }

    async fn incident_event(&self, _: &pb::IncidentEvent) -> Result<(), NotifyError> {
        Ok(())
    }
}

/// Rows read per round.
const PAGE: usize = 500;

/// Publishes what the store holds unpublished. See the module docs.
#[derive(Clone)]
pub struct PublishLoop {
    pub core: Arc<Core>,
    pub publisher: Arc<dyn Publisher>,
}

impl PublishLoop {
    /// Publishes what has not reached the bus yet. Returns how many went out.
    pub async fn publish_pending(&self) -> Result<usize, NotifyError> {
        let (households, events) = self
            .core
            .read(|_, c| {
                Ok((
                    store::unpublished_households(c, PAGE)?,
                    store::unpublished_events(c, PAGE)?,
                ))
            })
            .await?;
        let mut n = 0;
        for u in households {
            let (id, cfg) = (u.household_id, u.config);
            // In the registry change's trace; the record carries it on.
            let span = tracing::info_span!(
                "care.households publish",
                otel.kind = "producer",
                messaging.system = "kafka",
                messaging.operation.type = "publish",
                dolbom.household_id = %id,
            );
            if let Some(tp) = &u.traceparent {
                dolbom_telemetry::stored::continue_trace(&span, tp);
            }
            tracing::Instrument::instrument(self.publisher.household(&id, cfg.as_ref()), span)
                .await?;
            let version = cfg.as_ref().map(|c| c.version);
            self.core
                .write(move |_, tx, _| store::mark_household_published(tx, &id, version))
                .await?;
            n += 1;
        }
        for (seq, ev) in events {
            self.publisher.incident_event(&ev).await?;
            self.core
                .write(move |_, tx, _| store::mark_event_published(tx, seq))
                .await?;
            n += 1;
        }
        Ok(n)
    }

    /// Publishes on every change and every 5 s until `shutdown`, then once
    /// more for what the last changes produced.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            match self.publish_pending().await {
                Ok(_) => {
                    metrics::gauge!(m::PUBLISHER_UP).set(1.0);
                    self.core.readiness.set_publisher(true);
                }
                Err(e) => {
                    metrics::gauge!(m::PUBLISHER_UP).set(0.0);
                    self.core.readiness.set_publisher(false);
                    tracing::warn!(error = %e, "publishing to the bus failed; will retry");
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.core.publish_wanted() => {}
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
        }
        if let Err(e) = self.publish_pending().await {
            tracing::warn!(error = %e, "unpublished changes stay queued for the next start");
        }
    }
}
