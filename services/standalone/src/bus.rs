//! The in-process bus: the stand-in for Kafka when the whole platform runs
//! in one process (`dolbom standalone`, the load tests' in-process
//! scenarios).
//!
//! One task per partition hosts that partition's [`Shard`] — the monitor's
//! shard code, without Kafka — and serves it one message at a time, as a
//! monitor's shard actor would: household configs, batches of readings, and
//! [`Bus::advance`], which fires what is due at the given wall time and
//! hands back everything the shards emitted since the last advance.
//! Households are partitioned by a hash of their id. The wall time is the
//! caller's: simulated time in a simulation (a shard in [`ClockMode::Event`]
//! ignores it; one in [`ClockMode::Wall`] judges stalls and skew by it).
//!
//! [`ClockMode::Event`]: dolbom_shard::ClockMode::Event
//! [`ClockMode::Wall`]: dolbom_shard::ClockMode::Wall

use dolbom_calendar::Router;
use dolbom_domain::{HouseholdConfig, Ts};
use dolbom_engine::ReadingOutcome;
use dolbom_proto::v1 as pb;
use dolbom_shard::{AreaBoard, Output, Shard, ShardOptions};
use std::hash::{Hash, Hasher};
use tokio::sync::{mpsc, oneshot};

/// Messages queued per partition before a sender waits.
const QUEUE: usize = 64;

/// What the shards emitted since the last [`Bus::advance`].
#[derive(Debug, Default)]
pub struct Advanced {
    /// Ordered by due time, then event id (deterministic across partitions).
    pub outputs: Vec<Output>,
    /// Readings the shards rejected (unknown household, malformed, …).
    pub rejected: u64,
    /// Readings seen before (same device and sequence).
    pub duplicates: u64,
}

enum Msg {
    Config(Box<HouseholdConfig>, Ts),
    Readings(Vec<pb::PlugReading>, Ts),
    Advance(Ts, oneshot::Sender<Advanced>),
}

/// See the module docs.
pub struct Bus {
    parts: Vec<mpsc::Sender<Msg>>,
    batches: Vec<Vec<pb::PlugReading>>,
}

/// The partition of a household among `partitions`: a hash of its id.
pub fn partition_of(household: &str, partitions: usize) -> usize {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    household.hash(&mut h);
    (h.finish() % partitions as u64) as usize
}

async fn serve(mut shard: Shard, mut rx: mpsc::Receiver<Msg>) {
    let mut pending = Advanced::default();
    while let Some(msg) = rx.recv().await {
        match msg {
            Msg::Config(cfg, wall) => {
                if let Err(e) = shard.apply_config(*cfg, wall, &mut pending.outputs) {
                    tracing::warn!(reason = e.label(), error = %e, "household config rejected");
                }
            }
            Msg::Readings(rs, wall) => {
                for r in &rs {
                    match shard.on_reading(r, wall, &mut pending.outputs) {
                        Ok(ReadingOutcome::Duplicate) => pending.duplicates += 1,
                        Ok(_) => {}
                        Err(e) => {
                            pending.rejected += 1;
                            tracing::debug!(household = %r.household_id, reason = e.label(), "reading rejected");
                        }
                    }
                }
            }
            Msg::Advance(wall, reply) => {
                shard.advance(wall, &mut pending.outputs);
                let _ = reply.send(std::mem::take(&mut pending));
            }
        }
    }
}

impl Bus {
    /// One shard per partition, each created at `wall`.
    /// The shards share one [`AreaBoard`]: an area is judged as a whole.
    pub fn start(partitions: usize, opts: &ShardOptions, router: &Router, wall: Ts) -> Bus {
        let board = AreaBoard::new();
        let parts = (0..partitions)
            .map(|p| {
                let (tx, rx) = mpsc::channel(QUEUE);
                let mut shard = Shard::new(p as i32, opts.clone(), router.clone(), wall);
                shard.share_areas(board.clone());
                tokio::spawn(serve(shard, rx));
                tx
            })
            .collect();
        Bus {
            parts,
            batches: vec![Vec::new(); partitions],
        }
    }

    pub fn partitions(&self) -> usize {
        self.parts.len()
    }

    async fn send(&self, p: usize, msg: Msg) {
        self.parts[p].send(msg).await.expect("shard task alive");
    }

    /// Registers or updates a household on its partition.
    pub async fn config(&self, cfg: HouseholdConfig, wall: Ts) {
        let p = partition_of(cfg.household_id.as_str(), self.parts.len());
        self.send(p, Msg::Config(Box::new(cfg), wall)).await;
    }

    /// Hands readings to their partitions (one batch per partition).
    pub async fn deliver(&mut self, readings: impl IntoIterator<Item = pb::PlugReading>, wall: Ts) {
        let n = self.parts.len();
        for r in readings {
            self.batches[partition_of(&r.household_id, n)].push(r);
        }
        for p in 0..n {
            if !self.batches[p].is_empty() {
                let batch = std::mem::take(&mut self.batches[p]);
                self.send(p, Msg::Readings(batch, wall)).await;
            }
        }
    }

    /// Every shard fires what is due at `wall`; returns what they emitted.
    pub async fn advance(&self, wall: Ts) -> Advanced {
        let mut replies = Vec::with_capacity(self.parts.len());
        for tx in &self.parts {
            let (reply, rx) = oneshot::channel();
            let _ = tx.send(Msg::Advance(wall, reply)).await;
            replies.push(rx);
        }
        let mut all = Advanced::default();
        for rx in replies {
            let a = rx.await.expect("shard task alive");
            all.outputs.extend(a.outputs);
            all.rejected += a.rejected;
            all.duplicates += a.duplicates;
        }
        all.outputs.sort_by(|a, b| match (a, b) {
            (Output::Event(x), Output::Event(y)) => (x.due_at.map(|d| d.seconds), &x.event_id)
                .cmp(&(y.due_at.map(|d| d.seconds), &y.event_id)),
            _ => std::cmp::Ordering::Equal,
        });
        all
    }
}
