//! The core's promise that readers never hold up the writer, checked as
//! liveness (no timing): a thousand reads that cannot finish must not stop
//! an incident from being ingested.

use crate::options::{MunicipalityPolicy, NotifyOptions};
use dolbom_domain::convert::timestamp;
use dolbom_domain::Ts;
use dolbom_history::{EmbeddedStore, HistoryStore, Retention};
use dolbom_proto::v1 as pb;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Reads that block until the gate opens.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
}

impl Gate {
    fn wait(&self) {
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.opened.wait(open).unwrap();
        }
    }
    fn release(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_stuck_reads_do_not_stop_ingest() {
    let dir = tempfile::tempdir().unwrap();
    let opts = NotifyOptions {
        data_dir: dir.path().to_path_buf(),
        create_contact_key: true,
        policies: vec![MunicipalityPolicy {
            municipality: "*".into(),
            policy: dolbom_escalation::Policy::watch_only(),
        }],
        ..Default::default()
    };
    let history: Arc<dyn HistoryStore> =
        Arc::new(EmbeddedStore::open_dir(dir.path(), Retention::default()).unwrap());
    let built = crate::build(
        &opts,
        dolbom_domain::WallClock::shared(),
        Arc::new(crate::NoPublisher),
        history,
    )
    .await
    .unwrap();
    let core = built.core.clone();
    let gate = Arc::new(Gate::default());
    // More stuck reads than tokio's blocking pool has threads (512): were
    // each a blocked thread, the writer could never get one.
    let reads: Vec<_> = (0..1000)
        .map(|_| {
            let (core, gate) = (core.clone(), gate.clone());
            tokio::spawn(async move {
                core.read(move |_, _| {
                    gate.wait();
                    Ok(())
                })
                .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let at = Ts::now();
    let id = format!("INA:26110-1:{}", at.millis());
    let danger = pb::IncidentEvent {
        event_id: format!("{id}/1/3"),
        incident_id: id,
        household_id: "26110-1".into(),
        municipality_code: "26110".into(),
        dong_code: "2611051500".into(),
        kind: pb::IncidentKind::Inactivity as i32,
        r#type: pb::IncidentEventType::Opened as i32,
        stage: pb::Stage::Danger as i32,
        due_at: Some(timestamp(at)),
        emitted_at: Some(timestamp(at)),
        ..Default::default()
    };
    let mut live = core.subscribe();
    // Liveness, not timing: generous enough for any machine, and never
    // reached by a writer that waits behind the reads.
    let ingested = tokio::time::timeout(Duration::from_secs(30), core.ingest(vec![danger])).await;
    // Opened before judging, so that a failure ends instead of hanging on
    // the stuck reads.
    gate.release();
    ingested
        .expect("ingest waited for readers that cannot finish")
        .unwrap();
    let logged = tokio::time::timeout(Duration::from_secs(30), live.recv())
        .await
        .expect("the event reached no watcher")
        .unwrap();
    assert_eq!(logged.event.household_id, "26110-1");
    for r in reads {
        r.await.unwrap().unwrap();
    }
}
