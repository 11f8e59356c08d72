//! The history outbox out to the history store.
//!
//! Escalation, delivery and audit records go to the history writer's queue
//! without waiting; those it cannot take — the history store is down or slow
//! and the queue is full — are written into the history outbox
//! ([`crate::store::spill`]). [`HistoryForwarder`] takes them in order,
//! hands them to the [`dolbom_history::HistoryWriter`], waits until the store
//! holds them and only then forgets them. While the history store is down
//! the records wait (in the writer's bounded queue, then on disk:
//! `dolbom_notify_history_outbox`) and SMS, webhooks, watch streams,
//! acknowledgements and resolutions go on as before; when it is back they
//! drain. Records carry deterministic ids, so one forwarded twice is one
//! record in the store.

use crate::core::Core;
use crate::error::NotifyError;
use crate::metrics as m;
use crate::store;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::Notify;

/// Records forwarded per round.
const FORWARD_BATCH: usize = 1024;
/// How often the outbox is looked at without a wake-up (and retried after
/// a failure).
const FORWARD_IDLE: Duration = Duration::from_secs(1);

impl Core {
    /// Forwards one batch of the history outbox and waits until the store
    /// holds it. Returns how many records it forwarded.
    pub(crate) async fn forward_spilled(self: &Arc<Self>) -> Result<usize, NotifyError> {
        let rows = self
            .read(|_, c| {
                metrics::gauge!(m::HISTORY_OUTBOX).set(store::spilled_count(c)? as f64);
                store::spilled(c, FORWARD_BATCH)
            })
            .await?;
        let Some(&(last, _)) = rows.last() else {
            return Ok(0);
        };
        let n = rows.len();
        for (_, r) in rows {
            self.history
                .send(r)
                .await
                .map_err(|_| NotifyError::Unavailable("history writer".into()))?;
        }
        self.history
            .flush()
            .await
            .map_err(|e| NotifyError::Unavailable(format!("history store: {e}")))?;
        self.write(move |_, tx, _| store::forwarded(tx, last))
            .await?;
        Ok(n)
    }
}

/// Forwards the history outbox while the core lives (it holds the core
/// weakly: dropping the core ends it).
pub(crate) struct HistoryForwarder {
    pub(crate) core: Weak<Core>,
    pub(crate) wake: Arc<Notify>,
}

impl HistoryForwarder {
    pub(crate) fn spawn(core: &Arc<Core>) {
        let f = HistoryForwarder {
            core: Arc::downgrade(core),
            wake: core.history_wake.clone(),
        };
        tokio::spawn(f.run());
    }

    async fn run(self) {
        loop {
            let Some(core) = self.core.upgrade() else {
                return;
            };
            let r = core.forward_spilled().await;
            drop(core);
            match r {
                Ok(FORWARD_BATCH) => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "history outbox not forwarded yet; retrying"),
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(FORWARD_IDLE) => {}
            }
        }
    }
}
