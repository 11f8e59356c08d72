//! Housekeeping: the store's gauges every minute, and retention sweeps of
//! what the history store also keeps.

use crate::core::Core;
use crate::error::NotifyError;
use crate::metrics as m;
use crate::store;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

impl Core {
    /// Applies retention (see [`store::sweep`]) against the service's clock.
    pub async fn sweep(self: &Arc<Self>) -> Result<store::Swept, NotifyError> {
        let now = self.now().millis();
        let (log, inc) = (
            now.saturating_sub(self.retention.log_ms),
            now.saturating_sub(self.retention.incident_ms),
        );
        let swept = self
            .write(move |_, tx, _| store::sweep(tx, log, inc))
            .await?;
        tracing::info!(?swept, "retention sweep");
        Ok(swept)
    }

    /// Sets the `dolbom_notify_*` gauges from the store.
    pub async fn publish_gauges(self: &Arc<Self>) -> Result<(), NotifyError> {
        let c = self.counts().await?;
        metrics::gauge!(m::ESCALATIONS_RUNNING).set(c.running_escalations as f64);
        metrics::gauge!(m::OPEN_INCIDENTS).set(c.open_incidents as f64);
        metrics::gauge!(m::MESSAGES_PENDING).set(c.messages_pending as f64);
        metrics::gauge!(m::HELD_INCIDENTS).set(c.held_escalations as f64);
        let held_for = c
            .held_since_ms
            .map_or(0, |since| self.now().millis().saturating_sub(since).max(0));
        metrics::gauge!(m::LONGEST_HELD_SECONDS).set(held_for as f64 / 1000.0);
        Ok(())
    }
}

/// Gauges every minute, a retention sweep every `sweep_every`.
pub struct Housekeeping {
    pub core: Arc<Core>,
    pub sweep_every: Duration,
}

impl Housekeeping {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut gauges = tokio::time::interval(Duration::from_secs(60));
        let mut sweep = tokio::time::interval(self.sweep_every);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = gauges.tick() => {
                    if let Err(e) = self.core.publish_gauges().await {
                        tracing::warn!(error = %e, "gauges");
                    }
                }
                _ = sweep.tick() => {
                    if let Err(e) = self.core.sweep().await {
                        tracing::error!(error = %e, "retention sweep failed");
                    }
                }
            }
        }
    }
}
