//! The service core: the store's two connections, the one transaction
//! runner, and what a committed change lets out.
//!
//! Every change happens in one SQLite transaction on the writer connection
//! ([`Core::write`]); the closure that makes it collects its [`Effects`]. Only
//! after the commit are they let out: the logged events go to
//! `WatchIncidents` subscribers (in log order, still under the writer lock),
//! the outbox rows to [`Deliveries`], and the publisher is woken for registry
//! changes and the service's own events. Escalation, delivery and audit
//! records go to the history writer's queue without waiting; whatever it
//! cannot take (the history store is down or slow and the queue is full)
//! is written into the history outbox and forwarded later by
//! [`crate::forward`]: nothing that alerts a person waits for the history
//! store. (Records still in the writer's memory queue are lost if the
//! process dies; the outbox survives.) A crash between commit and delivery leaves pending
//! outbox rows, which a restart delivers with the same idempotency keys; a
//! crash before the commit leaves nothing, and the Kafka offset (committed
//! after `ingest` returns) brings the event back.
//!
//! Readers never hold up the writer: transactions run on one dedicated
//! writer thread (not the shared blocking pool, which a thousand waiting
//! reads could fill), and reads ([`Core::read`]) on a small pool of reader
//! connections (WAL: they never wait for the writer), entered through a
//! semaphore so that callers queued for a connection wait as tasks, not as
//! blocked threads.
//!
//! The rest of `impl Core` lives with its job: [`crate::ingest`] (incident
//! events in), [`crate::escalate`] (the people's clock), [`crate::incidents`]
//! and [`crate::registry`] (the API's operations), [`crate::publish`] (out
//! to the bus).

use crate::channels::{Channel, RetryOptions};
use crate::crypto::Cipher;
use crate::delivery::Deliveries;
use crate::error::NotifyError;
use crate::health::Readiness;
use crate::policies::Policies;
use crate::store::{self, OutboxRow};
use dolbom_auth::Principal;
use dolbom_calendar::Router;
use dolbom_domain::{SharedClock, Ts};
use dolbom_escalation::Escalation;
use dolbom_history::{AuditEntry, HistoryWriter, Record};
use dolbom_proto::v1 as pb;
use rusqlite::Connection;
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, Notify};

/// One logged event, as `WatchIncidents` streams it.
#[derive(Clone, Debug)]
pub struct Logged {
    pub seq: i64,
    pub event: pb::IncidentEvent,
}

/// What a transaction lets out after it committed.
#[derive(Default)]
pub(crate) struct Effects {
    pub(crate) logged: Vec<Logged>,
    pub(crate) outbox: Vec<OutboxRow>,
    /// Records for the history store (its writer, or the history outbox).
    pub(crate) records: Vec<Record>,
    /// Registry changes or the service's own events wait for the bus.
    pub(crate) publish: bool,
}

/// A transaction for the writer thread.
type WriterJob = Box<dyn FnOnce() + Send>;

/// How long notify keeps what the history store also keeps.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Retention {
    /// Watch log, finished messages, ended escalations.
    pub(crate) log_ms: i64,
    /// Resolved incidents stay listable here.
    pub(crate) incident_ms: i64,
}

/// What a core is made of (see [`crate::build`]).
pub struct CoreParts {
    /// The store's exclusive lock ([`crate::store::lock`]), held as long
    /// as the core lives.
    pub lock: Option<std::fs::File>,
    pub conn: Connection,
    /// Reader connections (at least one): reads run on them in parallel.
    pub readers: Vec<Connection>,
    pub cipher: Cipher,
    pub router: Router,
    /// Current policy per municipality; `"*"` for everyone else (the
    /// platform default when absent).
    pub policies: std::collections::HashMap<String, dolbom_escalation::Policy>,
    /// Learned-detection defaults per municipality; `"*"` for everyone
    /// else (the platform default when absent).
    pub learning: std::collections::HashMap<String, dolbom_domain::Learning>,
    pub clock: SharedClock,
    pub history: Arc<HistoryWriter>,
    pub channels: Vec<Arc<dyn Channel>>,
    pub retry: RetryOptions,
    /// Most messages delivered at once.
    pub max_in_flight: usize,
    /// How long the watch log, finished messages and ended escalations are
    /// kept (the history store keeps the record).
    pub log_retention_ms: i64,
    /// How long resolved incidents stay listable here.
    pub incident_retention_ms: i64,
}

pub struct Core {
    _lock: Option<std::fs::File>,
    writer: Mutex<Connection>,
    /// Transactions for the writer thread.
    writer_jobs: std::sync::mpsc::Sender<WriterJob>,
    readers: Vec<Mutex<Connection>>,
    /// One permit per reader connection.
    read_permits: tokio::sync::Semaphore,
    pub(crate) cipher: Cipher,
    router: Router,
    pub(crate) policies: Policies,
    pub(crate) learning: std::collections::HashMap<String, dolbom_domain::Learning>,
    clock: SharedClock,
    pub(crate) history: Arc<HistoryWriter>,
    pub(crate) deliveries: Deliveries,
    pub(crate) retention: Retention,
    watch: broadcast::Sender<Arc<Logged>>,
    publish_wake: Notify,
    /// Wakes the history forwarder when records were spilled.
    pub(crate) history_wake: Arc<Notify>,
    pub(crate) readiness: Readiness,
}

impl Core {
    pub fn new(p: CoreParts) -> Arc<Self> {
        let (watch, _) = broadcast::channel(4096);
        assert!(!p.readers.is_empty(), "a core needs a reader connection");
        let (writer_jobs, jobs) = std::sync::mpsc::channel::<WriterJob>();
        std::thread::Builder::new()
            .name("notify-writer".into())
            .spawn(move || {
                // Ends when the core (the only sender) is gone.
                for job in jobs {
                    job();
                }
            })
            .expect("the notify writer thread");
        let (deliveries, finisher) =
            Deliveries::new(p.channels, p.retry, p.max_in_flight, p.clock.clone());
        let core = Arc::new(Core {
            _lock: p.lock,
            writer: Mutex::new(p.conn),
            writer_jobs,
            read_permits: tokio::sync::Semaphore::new(p.readers.len()),
            readers: p.readers.into_iter().map(Mutex::new).collect(),
            cipher: p.cipher,
            router: p.router,
            policies: Policies::new(p.policies),
            learning: p.learning,
            clock: p.clock,
            history: p.history,
            deliveries,
            retention: Retention {
                log_ms: p.log_retention_ms,
                incident_ms: p.incident_retention_ms,
            },
            watch,
            publish_wake: Notify::new(),
            history_wake: Arc::new(Notify::new()),
            readiness: Readiness::default(),
        });
        let ledger: std::sync::Weak<dyn crate::delivery::Ledger> = Arc::downgrade(&core) as _;
        finisher.spawn(ledger);
        core
    }

    pub fn router(&self) -> &Router {
        &self.router
    }

    pub fn now(&self) -> Ts {
        self.clock.now()
    }

    /// Records each configured policy version (a changed released version is
    /// an error) — call once at start.
    pub fn install_policies(&self) -> Result<(), NotifyError> {
        let c = self.writer.lock().expect("writer lock");
        self.policies.install(&c)
    }

    /// Runs `f` in a transaction on the writer connection (on the writer
    /// thread), then lets its effects out.
    pub(crate) async fn write<R, F>(self: &Arc<Self>, f: F) -> Result<R, NotifyError>
    where
        R: Send + 'static,
        F: FnOnce(&Core, &rusqlite::Transaction<'_>, &mut Effects) -> Result<R, NotifyError>
            + Send
            + 'static,
    {
        let me = self.clone();
        let (done, result) = tokio::sync::oneshot::channel();
        // The transaction runs in the caller's span (a gRPC call's, say).
        let caller = tracing::Span::current();
        let job: WriterJob = Box::new(move || {
            let _in = caller.enter();
            let run = || {
                let mut conn = me.writer.lock().expect("writer lock");
                let tx = conn.transaction()?;
                let mut fx = Effects::default();
                let r = f(&me, &tx, &mut fx)?;
                tx.commit()?;
                // Still under the writer lock: subscribers see log order.
                for l in fx.logged.drain(..) {
                    let _ = me.watch.send(Arc::new(l));
                }
                Ok::<_, NotifyError>((r, fx))
            };
            // A panicking transaction must not end the writer thread.
            let r =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).unwrap_or_else(|_| {
                    Err(NotifyError::Internal("store transaction panicked".into()))
                });
            let _ = done.send(r);
        });
        self.writer_jobs
            .send(job)
            .map_err(|_| NotifyError::Internal("the writer thread is gone".into()))?;
        let (r, fx) = result.await.map_err(|_| {
            NotifyError::Internal("the writer thread dropped a transaction".into())
        })??;
        self.let_out(fx).await;
        Ok(r)
    }

    /// Runs `f` on a free reader connection on a blocking thread; waits (as
    /// a task) while every reader is busy.
    pub(crate) async fn read<R, F>(self: &Arc<Self>, f: F) -> Result<R, NotifyError>
    where
        R: Send + 'static,
        F: FnOnce(&Core, &Connection) -> Result<R, NotifyError> + Send + 'static,
    {
        let permit = self
            .read_permits
            .acquire()
            .await
            .map_err(|_| NotifyError::Internal("readers closed".into()))?;
        let me = self.clone();
        let r = tokio::task::spawn_blocking(move || {
            // Holding a permit, at least one reader is free.
            let c = me
                .readers
                .iter()
                .find_map(|r| r.try_lock().ok())
                .unwrap_or_else(|| me.readers[0].lock().expect("reader lock"));
            f(&me, &c)
        })
        .await
        .map_err(|e| NotifyError::Internal(format!("store task: {e}")))?;
        drop(permit);
        r
    }

    async fn let_out(&self, fx: Effects) {
        // To the history writer without waiting; what it cannot take now
        // goes into the history outbox.
        let full: Vec<Record> = fx
            .records
            .into_iter()
            .filter_map(|r| self.history.offer(r).err().map(|b| *b))
            .collect();
        if !full.is_empty() {
            if let Err(e) = self.spill(full) {
                tracing::error!(error = %e, "history records could not be kept in the outbox");
            }
            self.history_wake.notify_one();
        }
        if !fx.outbox.is_empty() {
            self.deliveries.submit(fx.outbox);
        }
        if fx.publish {
            self.publish_wake.notify_one();
        }
    }

    /// Keeps records the history writer could not take in the history outbox
    /// (the rare path: the writer's queue is full; a short transaction).
    fn spill(&self, records: Vec<Record>) -> Result<(), NotifyError> {
        let mut conn = self.writer.lock().expect("writer lock");
        let tx = conn.transaction()?;
        for r in records {
            store::spill(&tx, r)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Live logged events (after their commit, in log order).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Logged>> {
        self.watch.subscribe()
    }

    /// Resolves when a change wants something published (or never).
    pub(crate) async fn publish_wanted(&self) {
        self.publish_wake.notified().await
    }

    pub(crate) fn audit_record(
        &self,
        who: &Principal,
        municipality: &str,
        action: &str,
        subject: &str,
        now: Ts,
    ) -> Record {
        Record::Audit(AuditEntry {
            // Unique per entry: two reads in the same millisecond are two
            // rows (the store writes by id).
            audit_id: format!(
                "{}/{}/{}/{}/{}",
                now.millis(),
                who.subject,
                action,
                subject,
                audit_nonce()
            ),
            municipality_code: municipality.to_string(),
            at_ms: now.millis(),
            principal: who.subject.clone(),
            action: action.to_string(),
            subject: subject.to_string(),
            detail: String::new(),
        })
    }

    /// Writes an audit entry and waits until it is durable (used before
    /// personal data is returned), at most [`AUDIT_TIMEOUT`]: with the
    /// history store down the read is refused (UNAVAILABLE), not hung.
    pub(crate) async fn audit_now(
        &self,
        who: &Principal,
        municipality: &str,
        action: &str,
        subject: &str,
    ) -> Result<(), NotifyError> {
        let r = self.audit_record(who, municipality, action, subject, self.now());
        let unavailable = || NotifyError::Unavailable("audit log (the history store)".into());
        let durable = async {
            self.history.send(r).await.map_err(|_| unavailable())?;
            self.history.flush().await.map_err(|_| unavailable())
        };
        tokio::time::timeout(AUDIT_TIMEOUT, durable)
            .await
            .map_err(|_| unavailable())?
    }

    /// Waits until every escalation, delivery and audit record recorded so
    /// far is in the history store (graceful drain; tests).
    pub async fn history_flush(self: &Arc<Self>) {
        loop {
            match self.forward_spilled().await {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "history flush failed");
                    return;
                }
            }
        }
        if let Err(e) = self.history.flush().await {
            tracing::warn!(error = %e, "history flush failed");
        }
    }

    /// Waits until no delivery is in flight and every result is recorded
    /// (graceful drain; tests).
    pub async fn drain_deliveries(&self) {
        self.deliveries.drain().await
    }

    /// What the service holds: incidents, running escalations, queued and
    /// delivered messages.
    pub async fn counts(self: &Arc<Self>) -> Result<store::Counts, NotifyError> {
        self.read(|_, c| store::counts(c)).await
    }

    /// One incident's escalation state (operators, tests).
    pub async fn escalation(self: &Arc<Self>, incident_id: &str) -> Option<Escalation> {
        let id = incident_id.to_string();
        self.read(move |_, c| store::escalation(c, &id))
            .await
            .ok()
            .flatten()
    }

    /// Whether the service can do its job: incident events arrive, and its
    /// own events and registry changes reach the bus. The reason when not.
    /// (The history store is not needed to alert anyone: its records wait in
    /// the history outbox; `dolbom_notify_history_outbox` and the writer's
    /// `dolbom_history_store_up` tell SRE.)
    pub fn health(&self) -> Result<(), &'static str> {
        self.readiness.check()
    }

    /// Marks the incident input (the Kafka consumer) as running or stopped.
    pub fn set_input_ok(&self, ok: bool) {
        self.readiness.set_input(ok)
    }

    /// Resolves when a readiness input changes (or never).
    pub async fn health_changed(&self) {
        self.readiness.changed().await
    }
}

/// How long a read of personal data waits for its audit entry to be durable.
pub const AUDIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A value no other audit entry of any notify process has: a random
/// per-process base (the standard library's hasher keys come from the OS)
/// plus a counter.
fn audit_nonce() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static BASE: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let base = *BASE.get_or_init(|| {
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
    });
    format!("{base:016x}{:08x}", NEXT.fetch_add(1, Ordering::Relaxed))
}
