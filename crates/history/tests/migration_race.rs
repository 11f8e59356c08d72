//! Two services starting together on one data directory (`notify` and
//! `history` both open the embedded store) must both come up: the schema
//! version is read and the migrations applied under one write lock, so the
//! second waits and then finds nothing to do.

use dolbom_history::{EmbeddedStore, Retention};
use std::sync::{Arc, Barrier};

#[test]
fn stores_opened_at_once_on_a_fresh_directory_both_migrate_cleanly() {
    for round in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let openers = 4;
        let barrier = Arc::new(Barrier::new(openers));
        let handles: Vec<_> = (0..openers)
            .map(|_| {
                let (dir, barrier) = (dir.path().to_path_buf(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    EmbeddedStore::open_dir(&dir, Retention::default()).map(|s| s.schema_version())
                })
            })
            .collect();
        for h in handles {
            let v = h.join().unwrap();
            assert!(
                matches!(v, Ok(Ok(n)) if n >= 1),
                "round {round}: an opener failed: {v:?}"
            );
        }
    }
}
