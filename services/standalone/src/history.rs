//! Standalone's history pipeline: readings → downsampler → writer →
//! embedded store; incident events (and the state changes they imply) →
//! writer. Retention is measured on simulated time.

use crate::options::StandaloneOptions;
use crate::summary::HistorySummary;
use dolbom_domain::ManualClock;
use dolbom_history::{Downsampler, EmbeddedStore, HistoryError, HistoryWriter};
use std::sync::Arc;

pub(crate) struct History {
    pub(crate) store: EmbeddedStore,
    pub(crate) writer: HistoryWriter,
    task: tokio::task::JoinHandle<()>,
    pub(crate) downsampler: Downsampler,
}

impl History {
    /// `None` when the options keep no data directory.
    pub(crate) fn open(
        opts: &StandaloneOptions,
        sim_clock: &ManualClock,
    ) -> Result<Option<Self>, HistoryError> {
        if opts.data_dir.as_os_str().is_empty() {
            return Ok(None);
        }
        let store =
            EmbeddedStore::open_dir_with_clock(&opts.data_dir, opts.retention, sim_clock.shared())?;
        let (writer, task) =
            HistoryWriter::spawn(Arc::new(store.clone()), opts.history_writer.clone());
        Ok(Some(Self {
            store,
            writer,
            task,
            downsampler: Downsampler::new(0),
        }))
    }

    pub(crate) async fn finish(mut self) -> Result<HistorySummary, HistoryError> {
        self.writer
            .send_closed(self.downsampler.drain_all())
            .await?;
        self.writer.flush().await?;
        let written = self.writer.written();
        drop(self.writer);
        self.task
            .await
            .map_err(|e| HistoryError::Join(e.to_string()))?;
        Ok(HistorySummary {
            path: self.store.path().display().to_string(),
            records_written: written,
            late_readings: self.downsampler.late_dropped(),
        })
    }
}
