//! The monitor's [`SnapshotStore`] seam, kept in the history store.
//!
//! The monitor calls the snapshot store on blocking threads; this adapter runs
//! the store's async calls to completion on the given tokio runtime.

use crate::store::HistoryStore;
use dolbom_snapshots::{ShardSnapshot, SnapshotStore, SnapshotStoreError};
use std::sync::Arc;

/// Shard snapshots in a [`HistoryStore`] (ScyllaDB or embedded).
pub struct HistorySnapshots {
    store: Arc<dyn HistoryStore>,
    runtime: tokio::runtime::Handle,
}

impl HistorySnapshots {
    /// `runtime` runs the store's calls; call the methods from threads that
    /// are not its async workers (e.g. `spawn_blocking`).
    pub fn new(store: Arc<dyn HistoryStore>, runtime: tokio::runtime::Handle) -> Self {
        Self { store, runtime }
    }
}

fn backend(e: crate::error::HistoryError) -> SnapshotStoreError {
    SnapshotStoreError::Backend(e.to_string())
}

/// Runs a snapshot put, recording how long it took.
fn timed_put(
    backend_name: &'static str,
    put: impl FnOnce() -> Result<(), crate::error::HistoryError>,
) -> Result<(), SnapshotStoreError> {
    let timer = std::time::Instant::now();
    let result = put().map_err(backend);
    metrics::histogram!(crate::metrics::SNAPSHOT_PUT_SECONDS, "backend" => backend_name)
        .record(timer.elapsed().as_secs_f64());
    result
}

impl SnapshotStore for HistorySnapshots {
    fn put(&self, snapshot: &ShardSnapshot) -> Result<(), SnapshotStoreError> {
        timed_put(self.store.backend(), || {
            self.runtime.block_on(self.store.put_snapshot(snapshot))
        })
    }

    fn get(
        &self,
        group: &str,
        partition: i32,
    ) -> Result<Option<ShardSnapshot>, SnapshotStoreError> {
        self.runtime
            .block_on(self.store.get_snapshot(group, partition))
            .map_err(backend)
    }
}

/// The embedded store is already blocking: no runtime hop.
impl SnapshotStore for crate::EmbeddedStore {
    fn put(&self, snapshot: &ShardSnapshot) -> Result<(), SnapshotStoreError> {
        timed_put("embedded", || self.put_snapshot_blocking(snapshot))
    }

    fn get(
        &self,
        group: &str,
        partition: i32,
    ) -> Result<Option<ShardSnapshot>, SnapshotStoreError> {
        self.get_snapshot_blocking(group, partition)
            .map_err(backend)
    }
}
