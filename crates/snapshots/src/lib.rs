//! Where a monitor shard's snapshots live.
//!
//! A [`ShardSnapshot`] is a shard's state (opaque bytes from
//! `dolbom_shard::Shard::snapshot`) together with the input positions it
//! covers: the next `plug.readings` and `care.households` offsets of its
//! partition, and the `care.incidents` end offset once everything it emitted
//! was acknowledged. The monitor writes a snapshot, and only then commits the
//! readings offset, so a crash replays input instead of losing it.
//!
//! [`SnapshotStore`] is the seam: [`FileSnapshotStore`] (one file per
//! partition, written to a temporary file, fsynced and renamed, so a crash
//! leaves either the old or the new snapshot, never half of one) is the
//! file implementation; the history store (`dolbom-history`: embedded SQLite,
//! the monitor's default, or ScyllaDB) implements the same trait. Calls are
//! blocking: the monitor runs them on a blocking
//! thread. A partition's poisoned offsets (records that made its shard
//! fail) are kept in the same store, as one more record per partition.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A shard's state and the input positions it covers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardSnapshot {
    /// Consumer group / deployment the snapshot belongs to.
    pub group: String,
    pub partition: i32,
    /// Next `plug.readings` offset to process.
    pub readings_offset: i64,
    /// Next `care.households` offset to apply.
    pub households_offset: i64,
    /// `care.incidents` end offset after every emitted event was acknowledged.
    pub incidents_offset: i64,
    /// Wall-clock time of the snapshot, ms since the epoch.
    pub taken_at_ms: i64,
    pub state: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotStoreError {
    #[error("snapshot store I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("snapshot store backend: {0}")]
    Backend(String),
    #[error("snapshot file {path} is corrupt: {source}")]
    Corrupt {
        path: PathBuf,
        source: postcard::Error,
    },
}

/// Durable storage of the latest snapshot per partition.
pub trait SnapshotStore: Send + Sync + 'static {
    /// Durably replaces the partition's snapshot. Returns once it would
    /// survive a crash.
    fn put(&self, snapshot: &ShardSnapshot) -> Result<(), SnapshotStoreError>;
    /// The latest snapshot of a partition, if any.
    fn get(&self, group: &str, partition: i32)
        -> Result<Option<ShardSnapshot>, SnapshotStoreError>;

    /// Durably replaces the partition's poisoned offsets: `plug.readings`
    /// records that made its shard fail, to be dead-lettered instead of
    /// processed by whichever process hosts the partition next. Kept as one
    /// more record of the same store (group [`poisoned_group`]), so every
    /// store keeps them as it keeps snapshots.
    fn put_poisoned(
        &self,
        group: &str,
        partition: i32,
        offsets: &BTreeSet<i64>,
    ) -> Result<(), SnapshotStoreError> {
        self.put(&ShardSnapshot {
            group: poisoned_group(group),
            partition,
            readings_offset: offsets.first().copied().unwrap_or(0),
            households_offset: 0,
            incidents_offset: 0,
            taken_at_ms: 0,
            state: postcard::to_allocvec(offsets).expect("in-memory serialization"),
        })
    }

    /// The partition's poisoned offsets ([`put_poisoned`](Self::put_poisoned)).
    fn get_poisoned(
        &self,
        group: &str,
        partition: i32,
    ) -> Result<BTreeSet<i64>, SnapshotStoreError> {
        match self.get(&poisoned_group(group), partition)? {
            None => Ok(BTreeSet::new()),
            Some(s) => {
                postcard::from_bytes(&s.state).map_err(|source| SnapshotStoreError::Corrupt {
                    path: PathBuf::from(format!("{}/{partition}", s.group)),
                    source,
                })
            }
        }
    }
}

/// The group under which a group's poisoned offsets are kept.
pub fn poisoned_group(group: &str) -> String {
    format!("{group}.poisoned")
}

/// One file per group and partition in a directory.
#[derive(Clone, Debug)]
pub struct FileSnapshotStore {
    dir: PathBuf,
}

impl FileSnapshotStore {
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, SnapshotStoreError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|source| SnapshotStoreError::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(Self { dir })
    }

    fn path(&self, group: &str, partition: i32) -> PathBuf {
        let safe: String = group
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.dir.join(format!("{safe}-p{partition}.snap"))
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotStoreError + '_ {
    move |source| SnapshotStoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl SnapshotStore for FileSnapshotStore {
    fn put(&self, snapshot: &ShardSnapshot) -> Result<(), SnapshotStoreError> {
        let path = self.path(&snapshot.group, snapshot.partition);
        let tmp = path.with_extension("tmp");
        let bytes = postcard::to_allocvec(snapshot).expect("in-memory serialization");
        let mut f = fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(&bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        drop(f);
        fs::rename(&tmp, &path).map_err(io(&path))?;
        // Make the rename itself durable.
        fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))?;
        Ok(())
    }

    fn get(
        &self,
        group: &str,
        partition: i32,
    ) -> Result<Option<ShardSnapshot>, SnapshotStoreError> {
        let path = self.path(group, partition);
        match fs::read(&path) {
            Ok(bytes) => postcard::from_bytes(&bytes)
                .map(Some)
                .map_err(|source| SnapshotStoreError::Corrupt { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(p: i32, offset: i64) -> ShardSnapshot {
        ShardSnapshot {
            group: "dolbom-monitor".into(),
            partition: p,
            readings_offset: offset,
            households_offset: 7,
            incidents_offset: 3,
            taken_at_ms: 1,
            state: vec![1, 2, 3],
        }
    }

    #[test]
    fn put_replaces_and_get_reads_back_per_partition() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileSnapshotStore::open(dir.path()).unwrap();
        assert_eq!(store.get("dolbom-monitor", 0).unwrap(), None);
        store.put(&snap(0, 10)).unwrap();
        store.put(&snap(1, 20)).unwrap();
        store.put(&snap(0, 30)).unwrap();
        assert_eq!(store.get("dolbom-monitor", 0).unwrap(), Some(snap(0, 30)));
        assert_eq!(store.get("dolbom-monitor", 1).unwrap(), Some(snap(1, 20)));
        assert_eq!(store.get("other", 1).unwrap(), None);
        // A fresh handle on the same directory sees the same (it is on disk).
        let again = FileSnapshotStore::open(dir.path()).unwrap();
        assert_eq!(again.get("dolbom-monitor", 1).unwrap(), Some(snap(1, 20)));
    }

    #[test]
    fn poisoned_offsets_are_kept_beside_the_snapshot_and_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileSnapshotStore::open(dir.path()).unwrap();
        let g = "dolbom-monitor";
        assert!(store.get_poisoned(g, 3).unwrap().is_empty());
        store.put(&snap(3, 10)).unwrap();
        store.put_poisoned(g, 3, &BTreeSet::from([17])).unwrap();
        store.put_poisoned(g, 3, &BTreeSet::from([17, 42])).unwrap();
        assert_eq!(store.get_poisoned(g, 3).unwrap(), BTreeSet::from([17, 42]));
        assert!(store.get_poisoned(g, 4).unwrap().is_empty());
        assert!(store.get_poisoned("other", 3).unwrap().is_empty());
        assert_eq!(
            store.get(g, 3).unwrap(),
            Some(snap(3, 10)),
            "the snapshot is untouched"
        );
    }

    #[test]
    fn a_corrupt_file_is_an_error_not_an_empty_shard() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileSnapshotStore::open(dir.path()).unwrap();
        store.put(&snap(2, 10)).unwrap();
        fs::write(store.path("dolbom-monitor", 2), b"\xff").unwrap();
        assert!(matches!(
            store.get("dolbom-monitor", 2),
            Err(SnapshotStoreError::Corrupt { .. })
        ));
    }
}
