//! A shard's emitted incident events until the broker acknowledges them.
//!
//! Every event the shard emits is kept here, in order, until its delivery
//! to `care.incidents` is acknowledged. A failed delivery keeps that event
//! and every event after it (their order on the partition holds) and sends
//! them again; a producer whose identity broke (fenced, fatal, …) is
//! replaced first. A snapshot asks [`Unacked::acknowledged`]: it succeeds
//! only when nothing is pending, so no snapshot or offset commit ever passes
//! an event the broker does not have. A re-sent event may reach the topic
//! twice; its id is deterministic and notify keeps one.
//!
//! Data flow: shard output → [`Unacked::push`] → [`Unacked::send`] (the
//! producer) → [`Unacked::acknowledged`] (at snapshot time) → the
//! `care.incidents` offset the snapshot records.
//!
//! Tracing: each event opens its trace here, with the `incident fire` span
//! (household and incident ids, stage); it lasts until the broker
//! acknowledged the event, and every send is its child (see
//! `KafkaIo::publish`), whose context travels in the record's headers.

use super::Deps;
use crate::metrics as m;
use dolbom_proto::v1 as pb;
use rdkafka::error::KafkaError;
use rdkafka::producer::DeliveryFuture;
use std::collections::VecDeque;
use std::time::Duration;

/// How long a snapshot waits for the broker to acknowledge what the shard
/// emitted before it gives up for this round (the events stay kept; the
/// shard goes on processing and tries again at the next snapshot).
pub(crate) const ACK_WAIT: Duration = Duration::from_secs(5);

struct Pending {
    ev: pb::IncidentEvent,
    /// The event's `incident fire` span: the root of the incident's trace.
    span: tracing::Span,
    /// `None` until the producer took it (again); with the generation of
    /// the producer that took it.
    delivery: Option<(u64, DeliveryFuture)>,
}

/// One partition's unacknowledged events.
pub(crate) struct Unacked {
    partition: i32,
    p_label: String,
    queue: VecDeque<Pending>,
}

impl Unacked {
    pub(crate) fn new(partition: i32) -> Self {
        Unacked {
            partition,
            p_label: partition.to_string(),
            queue: VecDeque::new(),
        }
    }

    /// Keeps an emitted event (sent by the next [`Unacked::send`]).
    pub(crate) fn push(&mut self, ev: pb::IncidentEvent) {
        let span = tracing::info_span!(
            parent: None,
            "incident fire",
            otel.kind = "internal",
            dolbom.household_id = %ev.household_id,
            dolbom.incident_id = %ev.incident_id,
            dolbom.municipality = %ev.municipality_code,
            dolbom.stage = ev.stage,
            dolbom.event_type = ev.r#type,
            messaging.destination.partition.id = self.partition,
        );
        self.queue.push_back(Pending {
            ev,
            span,
            delivery: None,
        });
    }

    fn gauge(&self) {
        metrics::gauge!(m::UNACKNOWLEDGED_EVENTS, "partition" => self.p_label.clone())
            .set(self.queue.len() as f64);
    }

    /// Hands every event not yet with the producer to it, in order; stops
    /// at the first refusal (tried again at the next tick) so the order on
    /// the partition holds.
    pub(crate) fn send(&mut self, deps: &Deps) {
        for u in self.queue.iter_mut().filter(|u| u.delivery.is_none()) {
            match deps.producer.publish(self.partition, &u.ev, &u.span) {
                Ok(f) => u.delivery = Some(f),
                Err(e) => {
                    metrics::counter!(m::PUBLISH_FAILURES, "stage" => "enqueue").increment(1);
                    tracing::error!(partition = self.partition, incident = %u.ev.incident_id, error = %e, "incident event not enqueued; kept and retried at the next tick");
                    renew_if_broken(deps, deps.producer.generation(), Some(&e));
                    break;
                }
            }
        }
        self.gauge();
    }

    /// Waits (at most [`ACK_WAIT`]) for the broker to acknowledge every
    /// kept event; returns the `care.incidents` offset after the last one
    /// acknowledged. On a failed delivery that event and all after it are
    /// kept for re-sending and the call fails: a snapshot must never say an
    /// unacknowledged event happened.
    pub(crate) async fn acknowledged(&mut self, deps: &Deps) -> Result<Option<i64>, String> {
        self.send(deps);
        let until = tokio::time::Instant::now() + ACK_WAIT;
        let mut end = None;
        while let Some(front) = self.queue.front_mut() {
            let Some((generation, f)) = front.delivery.as_mut() else {
                return Err(format!(
                    "{} incident events not yet taken by the producer",
                    self.queue.len()
                ));
            };
            let Ok(delivered) = tokio::time::timeout_at(until, f).await else {
                self.gauge();
                return Err(format!(
                    "{} incident events not acknowledged by the broker within {ACK_WAIT:?}; kept",
                    self.queue.len()
                ));
            };
            let generation = *generation;
            front.delivery = None;
            let error = match delivered {
                Ok(Ok(d)) => {
                    end = end.max(Some(d.offset + 1));
                    self.queue.pop_front();
                    continue;
                }
                Ok(Err((e, _))) => Some(e),
                Err(_) => None,
            };
            let failure = error
                .as_ref()
                .map_or("the producer dropped the delivery".to_string(), |e| {
                    e.to_string()
                });
            for u in self.queue.iter_mut() {
                u.delivery = None;
            }
            metrics::counter!(m::PUBLISH_FAILURES, "stage" => "delivery").increment(1);
            tracing::error!(partition = self.partition, incidents = self.queue.len(), error = %failure, "incident event not delivered; it and the events after it are kept and re-sent");
            renew_if_broken(deps, generation, error.as_ref());
            self.gauge();
            return Err(format!("incident event not delivered: {failure}"));
        }
        self.gauge();
        Ok(end)
    }
}

/// A producer whose identity broke (fenced, fatal, …) delivers nothing
/// again: it is replaced, and the kept events go out through the new one.
/// If no new producer can be made the monitor stops (a restart replays from
/// the last snapshot, which precedes every unacknowledged event).
fn renew_if_broken(deps: &Deps, generation: u64, e: Option<&KafkaError>) {
    if !deps.producer.needs_renewal(generation, e) {
        return;
    }
    if let Err(e) = deps.producer.renew(generation) {
        deps.fail(format!("incident producer could not be replaced: {e}"));
    }
}
