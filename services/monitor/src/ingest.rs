//! The ingest loop: polls `plug.readings` from the group consumer, batches
//! records per partition and hands them to the partitions' supervisors,
//! followed by `CaughtUp` when the consumer reached a partition's end;
//! positions and resumes a partition when its restored shard asks
//! ([`Control::Ready`]).

use crate::actors::partition::PartitionMsg;
use crate::actors::{Control, Routes};
use crate::kafka::{GroupConsumer, Rec};
use crate::metrics as m;
use futures::FutureExt;
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::TopicPartitionList;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How long a failed seek/resume waits before it is tried again.
const RESEEK_AFTER: Duration = Duration::from_millis(500);

pub(crate) struct Ingest {
    pub(crate) consumer: Arc<GroupConsumer>,
    pub(crate) routes: Routes,
    pub(crate) control: mpsc::UnboundedReceiver<Control>,
    /// To retry a positioning that failed.
    pub(crate) control_tx: mpsc::UnboundedSender<Control>,
    pub(crate) readings_topic: String,
    /// Largest batch handed over at once.
    pub(crate) batch_size: usize,
}

impl Ingest {
    /// Runs until `shutdown`; returns how many records it handed over.
    pub(crate) async fn run(mut self, shutdown: CancellationToken) -> u64 {
        let mut records = 0u64;
        let mut batches: HashMap<i32, Vec<Rec>> = HashMap::new();
        let mut at_end: Vec<i32> = Vec::new();
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(ctl) = self.control.recv() => self.position(ctl),
                m = self.consumer.recv() => {
                    let mut n = 0;
                    match m {
                        Ok(m) => {
                            batches.entry(m.partition()).or_default().push(Rec::from_message(&m));
                            n += 1;
                        }
                        Err(KafkaError::PartitionEOF(p)) => at_end.push(p),
                        Err(e) => {
                            tracing::warn!(error = %e, "consume error");
                            continue;
                        }
                    }
                    while n < self.batch_size {
                        match self.consumer.recv().now_or_never() {
                            Some(Ok(m)) => {
                                // A record after the end: not caught up after all.
                                at_end.retain(|&p| p != m.partition());
                                batches.entry(m.partition()).or_default().push(Rec::from_message(&m));
                                n += 1;
                            }
                            Some(Err(KafkaError::PartitionEOF(p))) => at_end.push(p),
                            _ => break,
                        }
                    }
                    records += n as u64;
                    let routes = self.routes.read().expect("routes");
                    for (p, batch) in batches.drain() {
                        if let Some(sup) = routes.get(&p) {
                            let _ = sup.cast(PartitionMsg::Readings { batch });
                        }
                    }
                    // After the records that came before it.
                    for p in at_end.drain(..) {
                        if let Some(sup) = routes.get(&p) {
                            let _ = sup.cast(PartitionMsg::CaughtUp);
                        }
                    }
                }
            }
        }
        records
    }

    /// A restored shard asks for its partition: route its records, seek
    /// and resume it.
    fn position(&self, ctl: Control) {
        let Control::Ready {
            partition,
            offset,
            supervisor,
        } = ctl;
        // Route first: records polled after the resume must find their shard.
        self.routes
            .write()
            .expect("routes")
            .insert(partition, supervisor.clone());
        let c = self.consumer.clone();
        let topic = self.readings_topic.clone();
        let r = tokio::task::block_in_place(move || {
            c.seek(&topic, partition, offset, Duration::from_secs(10))?;
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&topic, partition);
            c.resume(&tpl)
        });
        if let Err(e) = r {
            tracing::warn!(partition, error = %e, "seek/resume failed; retrying");
            let tx = self.control_tx.clone();
            tokio::spawn(async move {
                tokio::time::sleep(RESEEK_AFTER).await;
                let _ = tx.send(Control::Ready {
                    partition,
                    offset,
                    supervisor,
                });
            });
            return;
        }
        tracing::info!(partition, ?offset, "partition positioned and resumed");
        let _ = supervisor.cast(PartitionMsg::Seeked);
        metrics::gauge!(m::ASSIGNED_PARTITIONS)
            .set(self.routes.read().expect("routes").len() as f64);
    }
}
