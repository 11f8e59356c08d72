//! The conformance suite against the embedded store (always) and against
//! ScyllaDB when `DOLBOM_SCYLLA_URI` names a cluster (otherwise the test says
//! loudly that it skipped; under `CI` with `DOLBOM_REQUIRE_SCYLLA=1` it fails).

use std::io::Write as _;

use dolbom_history::{
    conformance, EmbeddedStore, HistoryStore, Retention, ScyllaOptions, ScyllaStore,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let retention = Retention::default();
    let store = EmbeddedStore::open_dir(dir.path(), retention).unwrap();
    conformance::run_all(&store, retention).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let retention = Retention::default();
    let snap = dolbom_snapshots::ShardSnapshot {
        group: "g".into(),
        partition: 3,
        readings_offset: 10,
        households_offset: 2,
        incidents_offset: 5,
        taken_at_ms: 1,
        state: vec![1, 2, 3],
    };
    {
        let store = EmbeddedStore::open_dir(dir.path(), retention).unwrap();
        store.put_snapshot(&snap).await.unwrap();
        assert_eq!(store.schema_version().unwrap(), 1);
    }
    let store = EmbeddedStore::open_dir(dir.path(), retention).unwrap();
    assert_eq!(store.schema_version().unwrap(), 1, "migrations apply once");
    assert_eq!(store.get_snapshot("g", 3).await.unwrap(), Some(snap));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scylla_store_conforms() {
    let Ok(uri) = std::env::var("DOLBOM_SCYLLA_URI") else {
        // Straight to stderr: libtest captures eprintln! of passing tests,
        // and a skip must never look like a silent pass.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED scylla_store_conforms: DOLBOM_SCYLLA_URI is not set, so the ScyllaDB \
             store was NOT tested (the embedded store was). Set it to host:port of a cluster."
        );
        if std::env::var("DOLBOM_REQUIRE_SCYLLA").is_ok() {
            panic!("DOLBOM_REQUIRE_SCYLLA is set but DOLBOM_SCYLLA_URI is not");
        }
        return;
    };
    let retention = Retention::default();
    let opts = ScyllaOptions {
        uri,
        keyspace: std::env::var("DOLBOM_SCYLLA_KEYSPACE").unwrap_or_else(|_| "dolbom_test".into()),
        replication_factor: 1,
        ..Default::default()
    };
    let store = ScyllaStore::connect(&opts, retention).await.unwrap();
    conformance::run_all(&store, retention).await;
}
