//! Batched, bounded, retrying writes into a [`HistoryStore`].
//!
//! Producers queue [`Record`]s; one task takes up to `max_batch` of them at a
//! time (waiting up to `linger` for a batch to fill), writes them as one
//! [`WriteBatch`] and, on failure, retries the same batch with exponential
//! backoff until the store takes it — records are never dropped once queued.
//! The queue is bounded: when the store falls behind, [`HistoryWriter::send`]
//! waits (backpressure) and [`HistoryWriter::try_send`] refuses and counts the
//! refusal, for producers that must never wait. [`HistoryWriter::flush`] waits
//! until everything queued before it is durable: a consumer commits its Kafka
//! offsets only after it, so the store, not Kafka, decides what is done.
//!
//! Metrics: `dolbom_history_queue_depth`, `dolbom_history_behind` (1 while the
//! queue is over `behind_fraction` full), `dolbom_history_store_up` (0 while
//! writes fail), `dolbom_history_write_failures_total`,
//! `dolbom_history_records_written_total{kind}`,
//! `dolbom_history_refused_total{kind}`, `dolbom_history_batch_seconds`.

use crate::error::HistoryError;
use crate::metrics as m;
use crate::model::{Record, WriteBatch};
use crate::store::HistoryStore;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// How the writer batches and retries.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct WriterOptions {
    /// Records the queue holds before producers wait.
    pub capacity: usize,
    /// Records per write.
    pub max_batch: usize,
    /// How long a partial batch waits for more records, in milliseconds.
    pub linger_ms: u64,
    /// First retry delay after a failed write, in milliseconds; doubles up to
    /// `retry_max_ms`.
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    /// Queue fill (0..1) above which `dolbom_history_behind` is 1.
    pub behind_fraction: f64,
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self {
            capacity: 200_000,
            max_batch: 10_000,
            linger_ms: 50,
            retry_initial_ms: 100,
            retry_max_ms: 30_000,
            behind_fraction: 0.8,
        }
    }
}

impl WriterOptions {
    pub fn validate(&self) -> Result<(), HistoryError> {
        if self.capacity == 0 || self.max_batch == 0 {
            return Err(HistoryError::Invalid(
                "writer.capacity and writer.max_batch must be at least 1".into(),
            ));
        }
        if !(0.0..=1.0).contains(&self.behind_fraction) {
            return Err(HistoryError::Invalid(
                "writer.behind_fraction must be between 0 and 1".into(),
            ));
        }
        if self.retry_initial_ms == 0 || self.retry_max_ms < self.retry_initial_ms {
            return Err(HistoryError::Invalid(
                "writer.retry_initial_ms must be ≥ 1 and ≤ writer.retry_max_ms".into(),
            ));
        }
        Ok(())
    }
}

// Records are the common item; boxing them would cost an allocation each.
#[allow(clippy::large_enum_variant)]
enum Item {
    Record(Record),
    Flush(oneshot::Sender<()>),
}

#[derive(Default)]
struct Counters {
    queued: AtomicUsize,
    written: AtomicU64,
    failures: AtomicU64,
    refused: AtomicU64,
    store_down: AtomicBool,
}

/// A handle to queue records; clone it freely.
#[derive(Clone)]
pub struct HistoryWriter {
    tx: mpsc::Sender<Item>,
    counters: Arc<Counters>,
    capacity: usize,
    behind_at: usize,
    backend: &'static str,
}

impl HistoryWriter {
    /// Starts the writer task. It ends once every handle is dropped and the
    /// queue is written.
    pub fn spawn(
        store: Arc<dyn HistoryStore>,
        opts: WriterOptions,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(opts.capacity.max(1));
        let counters = Arc::new(Counters::default());
        let backend = store.backend();
        let writer = Self {
            tx,
            counters: counters.clone(),
            capacity: opts.capacity,
            behind_at: ((opts.capacity as f64) * opts.behind_fraction).ceil() as usize,
            backend,
        };
        metrics::gauge!(m::STORE_UP, "backend" => backend).set(1.0);
        // The writer's series exist from the start.
        metrics::gauge!(m::BEHIND, "backend" => backend).set(0.0);
        metrics::counter!(m::WRITE_FAILURES, "backend" => backend).increment(0);
        for kind in crate::model::Record::KINDS {
            metrics::counter!(m::REFUSED, "kind" => kind).increment(0);
        }
        let task = tokio::spawn(run(store, opts, rx, counters, writer.behind_at));
        (writer, task)
    }

    fn queued_one(&self) {
        let depth = self.counters.queued.fetch_add(1, Ordering::Relaxed) + 1;
        if depth == self.behind_at {
            metrics::gauge!(m::BEHIND, "backend" => self.backend).set(1.0);
            tracing::warn!(
                depth,
                capacity = self.capacity,
                "history store is falling behind: writer queue nearly full"
            );
        }
    }

    /// Queues a record, waiting while the queue is full.
    pub async fn send(&self, record: Record) -> Result<(), HistoryError> {
        // Reserve first: a caller that gives up while waiting queued nothing.
        let permit = self
            .tx
            .reserve()
            .await
            .map_err(|_| HistoryError::WriterClosed)?;
        self.queued_one();
        permit.send(Item::Record(record));
        Ok(())
    }

    /// Queues what a [`crate::Downsampler`] closed: the minute aggregates,
    /// then the hours to roll up from them.
    pub async fn send_closed(&self, closed: crate::downsample::Closed) -> Result<(), HistoryError> {
        for a in closed.minutes {
            self.send(Record::Aggregate(a)).await?;
        }
        for h in closed.hours {
            self.send(Record::RollUpHour(h)).await?;
        }
        Ok(())
    }

    /// Queues an incident event and the household state change it implies.
    pub async fn send_incident_event(
        &self,
        event: dolbom_proto::v1::IncidentEvent,
    ) -> Result<(), HistoryError> {
        if let Some(change) = crate::model::StateChange::from_incident_event(&event) {
            self.send(Record::StateChange(change)).await?;
        }
        self.send(Record::IncidentEvent(Box::new(event))).await
    }

    /// Queues a record without waiting; `false` (counted in
    /// `dolbom_history_refused_total`) when the queue is full or closed.
    pub fn try_send(&self, record: Record) -> bool {
        let kind = record.kind();
        let Ok(permit) = self.tx.try_reserve() else {
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(m::REFUSED, "kind" => kind).increment(1);
            return false;
        };
        self.queued_one();
        permit.send(Item::Record(record));
        true
    }

    /// Queues a record without waiting; gives it back when the queue is
    /// full or closed (the caller keeps it elsewhere; not counted as refused).
    pub fn offer(&self, record: Record) -> Result<(), Box<Record>> {
        match self.tx.try_reserve() {
            Ok(permit) => {
                self.queued_one();
                permit.send(Item::Record(record));
                Ok(())
            }
            Err(_) => Err(Box::new(record)),
        }
    }

    /// Waits until every record queued before this call is in the store.
    pub async fn flush(&self) -> Result<(), HistoryError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Item::Flush(done))
            .await
            .map_err(|_| HistoryError::WriterClosed)?;
        wait.await.map_err(|_| HistoryError::WriterClosed)
    }

    /// Records queued and not yet written.
    pub fn queued(&self) -> usize {
        self.counters.queued.load(Ordering::Relaxed)
    }

    /// Records written so far.
    pub fn written(&self) -> u64 {
        self.counters.written.load(Ordering::Relaxed)
    }

    /// Failed write attempts so far (each retried).
    pub fn failures(&self) -> u64 {
        self.counters.failures.load(Ordering::Relaxed)
    }

    /// Records refused by [`HistoryWriter::try_send`].
    pub fn refused(&self) -> u64 {
        self.counters.refused.load(Ordering::Relaxed)
    }

    /// False while the last write attempt failed.
    pub fn store_up(&self) -> bool {
        !self.counters.store_down.load(Ordering::Relaxed)
    }
}

async fn run(
    store: Arc<dyn HistoryStore>,
    opts: WriterOptions,
    mut rx: mpsc::Receiver<Item>,
    counters: Arc<Counters>,
    behind_at: usize,
) {
    let backend = store.backend();
    let linger = Duration::from_millis(opts.linger_ms);
    let mut items = Vec::with_capacity(opts.max_batch);
    loop {
        items.clear();
        if rx.recv_many(&mut items, opts.max_batch).await == 0 {
            break;
        }
        let deadline = tokio::time::Instant::now() + linger;
        while items.len() < opts.max_batch && !matches!(items.last(), Some(Item::Flush(_))) {
            let room = opts.max_batch - items.len();
            match tokio::time::timeout_at(deadline, rx.recv_many(&mut items, room)).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let mut batch = WriteBatch::default();
        let mut waiters = Vec::new();
        let mut kinds: Vec<(&'static str, u64)> = Vec::new();
        for item in items.drain(..) {
            match item {
                Item::Record(r) => {
                    let kind = r.kind();
                    match kinds.iter_mut().find(|(k, _)| *k == kind) {
                        Some((_, n)) => *n += 1,
                        None => kinds.push((kind, 1)),
                    }
                    batch.push(r);
                }
                Item::Flush(done) => waiters.push(done),
            }
        }
        let n = batch.len();
        if n > 0 {
            write_until_accepted(&*store, &batch, &opts, &counters, backend).await;
            counters.written.fetch_add(n as u64, Ordering::Relaxed);
            for (kind, count) in kinds {
                metrics::counter!(m::RECORDS_WRITTEN, "kind" => kind).increment(count);
            }
            let before = counters.queued.fetch_sub(n, Ordering::Relaxed);
            let depth = before - n;
            metrics::gauge!(m::QUEUE_DEPTH, "backend" => backend).set(depth as f64);
            if before >= behind_at && depth < behind_at {
                metrics::gauge!(m::BEHIND, "backend" => backend).set(0.0);
                tracing::info!(depth, "history store caught up");
            }
        }
        for done in waiters {
            let _ = done.send(());
        }
    }
}

async fn write_until_accepted(
    store: &dyn HistoryStore,
    batch: &WriteBatch,
    opts: &WriterOptions,
    counters: &Counters,
    backend: &'static str,
) {
    let mut delay = Duration::from_millis(opts.retry_initial_ms);
    let mut attempt = 0u32;
    loop {
        let started = Instant::now();
        match store.write(batch).await {
            Ok(()) => {
                metrics::histogram!(m::BATCH_SECONDS, "backend" => backend)
                    .record(started.elapsed().as_secs_f64());
                if counters.store_down.swap(false, Ordering::Relaxed) {
                    metrics::gauge!(m::STORE_UP, "backend" => backend).set(1.0);
                    tracing::info!(attempt, "history store accepts writes again");
                }
                return;
            }
            Err(e) => {
                attempt += 1;
                counters.failures.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(m::WRITE_FAILURES, "backend" => backend).increment(1);
                if !counters.store_down.swap(true, Ordering::Relaxed) {
                    metrics::gauge!(m::STORE_UP, "backend" => backend).set(0.0);
                }
                tracing::warn!(
                    error = %e,
                    attempt,
                    records = batch.len(),
                    retry_in_ms = delay.as_millis() as u64,
                    "history write failed; retrying the same batch"
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_millis(opts.retry_max_ms));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;
    use async_trait::async_trait;
    use dolbom_proto::v1::IncidentEvent;
    use dolbom_snapshots::ShardSnapshot;
    use std::sync::Mutex;

    /// Records what was written; fails the first `fail` writes; waits for
    /// `gate` permits when gated.
    struct Recorder {
        batches: Mutex<Vec<WriteBatch>>,
        fail: AtomicU64,
        gate: Option<tokio::sync::Semaphore>,
    }

    #[async_trait]
    impl HistoryStore for Recorder {
        fn backend(&self) -> &'static str {
            "recorder"
        }
        async fn write(&self, batch: &WriteBatch) -> Result<(), HistoryError> {
            if let Some(gate) = &self.gate {
                gate.acquire().await.expect("gate").forget();
            }
            if self.fail.load(Ordering::SeqCst) > 0 {
                self.fail.fetch_sub(1, Ordering::SeqCst);
                return Err(HistoryError::Scylla("unavailable".into()));
            }
            self.batches.lock().unwrap().push(batch.clone());
            Ok(())
        }
        async fn put_snapshot(&self, _: &ShardSnapshot) -> Result<(), HistoryError> {
            unreachable!()
        }
        async fn get_snapshot(
            &self,
            _: &str,
            _: i32,
        ) -> Result<Option<ShardSnapshot>, HistoryError> {
            unreachable!()
        }
        async fn timeline(
            &self,
            _: &str,
            _: i64,
            _: i64,
            _: Resolution,
        ) -> Result<Timeline, HistoryError> {
            unreachable!()
        }
        async fn incidents(&self, _: &IncidentQuery) -> Result<IncidentPage, HistoryError> {
            unreachable!()
        }
        async fn incident_events(&self, _: &str) -> Result<Vec<IncidentEvent>, HistoryError> {
            unreachable!()
        }
        async fn escalation(&self, _: &str) -> Result<Vec<EscalationEntry>, HistoryError> {
            unreachable!()
        }
        async fn audit(&self, _: &str, _: i64, _: i64) -> Result<Vec<AuditEntry>, HistoryError> {
            unreachable!()
        }
        async fn enforce_retention(&self, _: i64) -> Result<RetentionReport, HistoryError> {
            unreachable!()
        }
    }

    fn change(i: i64) -> Record {
        Record::StateChange(StateChange {
            household_id: format!("h{i}"),
            at_ms: i,
            state: StateKind::Normal,
            cause: String::new(),
        })
    }

    fn written(r: &Recorder) -> Vec<i64> {
        r.batches
            .lock()
            .unwrap()
            .iter()
            .flat_map(|b| b.state_changes.iter().map(|s| s.at_ms))
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_store_is_retried_until_it_takes_the_batch() {
        let store = Arc::new(Recorder {
            batches: Mutex::new(Vec::new()),
            fail: AtomicU64::new(3),
            gate: None,
        });
        let (w, task) = HistoryWriter::spawn(store.clone(), WriterOptions::default());
        for i in 0..10 {
            w.send(change(i)).await.unwrap();
        }
        w.flush().await.unwrap();
        assert_eq!(
            written(&store),
            (0..10).collect::<Vec<_>>(),
            "each record once, in order"
        );
        assert_eq!(w.failures(), 3);
        assert!(w.store_up());
        assert_eq!((w.written(), w.queued()), (10, 0));
        drop(w);
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_store_pushes_back_and_loses_nothing() {
        let store = Arc::new(Recorder {
            batches: Mutex::new(Vec::new()),
            fail: AtomicU64::new(0),
            gate: Some(tokio::sync::Semaphore::new(0)),
        });
        let opts = WriterOptions {
            capacity: 4,
            max_batch: 2,
            ..Default::default()
        };
        let (w, task) = HistoryWriter::spawn(store.clone(), opts);
        // The task holds one batch of 2 at the gate; the queue holds 4 more.
        let mut sent = 0;
        while tokio::time::timeout(Duration::from_secs(1), w.send(change(sent)))
            .await
            .is_ok()
        {
            sent += 1;
            assert!(sent <= 6, "the queue is bounded");
        }
        assert_eq!(sent, 6, "send waits once batch + queue are full");
        assert!(!w.try_send(change(99)), "try_send refuses when full");
        assert_eq!(w.refused(), 1);
        store.gate.as_ref().unwrap().add_permits(100);
        w.send(change(6)).await.unwrap();
        w.flush().await.unwrap();
        // The record whose send timed out was never queued.
        assert_eq!(written(&store), (0..7).collect::<Vec<_>>());
        assert_eq!(w.queued(), 0, "a send that gave up counted nothing");
        drop(w);
        task.await.unwrap();
    }
}
