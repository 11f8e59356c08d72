//! Kafka edges of `dolbom notify`: `care.incidents` in (own consumer group,
//! offsets committed after the batch is durable in the store), and
//! `care.households` / `care.incidents` out (idempotent producer).

use crate::core::Core;
use crate::error::NotifyError;
use crate::metrics as m;
use crate::options::NotifyOptions;
use crate::publish::Publisher;
use dolbom_domain::logsafe::LogSafe;
use dolbom_proto::v1 as pb;
use prost::Message as _;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const CLIENT_ID: &str = "dolbom-notify";

/// Publishes registry changes and the service's own incident events.
pub struct KafkaPublisher {
    producer: FutureProducer,
    households: String,
    incidents: String,
}

impl KafkaPublisher {
    pub fn new(opts: &NotifyOptions) -> Result<Self, NotifyError> {
        let producer = opts.kafka.producer(CLIENT_ID, 30_000).create()?;
        Ok(KafkaPublisher {
            producer,
            households: opts.households_topic.clone(),
            incidents: opts.incidents_topic.clone(),
        })
    }

    async fn send(
        &self,
        topic: &str,
        key: &str,
        payload: Option<Vec<u8>>,
    ) -> Result<(), NotifyError> {
        // The current span's trace context (a registry change's) in the
        // record's headers.
        let headers = dolbom_telemetry::kafka::inject(
            &tracing::Span::current(),
            rdkafka::message::OwnedHeaders::new(),
        );
        let mut rec: FutureRecord<'_, str, Vec<u8>> =
            FutureRecord::to(topic).key(key).headers(headers);
        if let Some(p) = &payload {
            rec = rec.payload(p);
        }
        self.producer
            .send(rec, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| NotifyError::Kafka(e))?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Publisher for KafkaPublisher {
    async fn household(
        &self,
        household_id: &str,
        config: Option<&pb::HouseholdConfig>,
    ) -> Result<(), NotifyError> {
        self.send(
            &self.households,
            household_id,
            config.map(|c| c.encode_to_vec()),
        )
        .await
    }

    async fn incident_event(&self, event: &pb::IncidentEvent) -> Result<(), NotifyError> {
        let key = if event.household_id.is_empty() {
            &event.incident_id
        } else {
            &event.household_id
        };
        self.send(&self.incidents, key, Some(event.encode_to_vec()))
            .await
    }
}

/// Consumes `care.incidents` into the core until `shutdown`. Batches of up
/// to 1000 events (or what arrived within 20 ms) go through one
/// [`Core::ingest`]; only then are their offsets committed. A failing store
/// stops the loop without committing, so the batch comes back after a restart.
pub async fn consume(
    opts: NotifyOptions,
    core: Arc<Core>,
    shutdown: CancellationToken,
) -> Result<(), NotifyError> {
    let consumer: StreamConsumer = opts
        .kafka
        .group_consumer(CLIENT_ID, &opts.group_id, "cooperative-sticky")
        .create()?;
    consumer.subscribe(&[&opts.incidents_topic])?;
    tracing::info!(topic = %opts.incidents_topic, group = %opts.group_id, "consuming incident events");
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => break,
            m = consumer.recv() => m,
        };
        let mut batch = Vec::new();
        let mut malformed = 0u64;
        // Each event is processed in a `care.incidents process` span whose
        // parent is the monitor's send (the record's trace context).
        let topic = opts.incidents_topic.as_str();
        let decode = |m: &rdkafka::message::BorrowedMessage<'_>| {
            let ev = m
                .payload()
                .and_then(|p| pb::IncidentEvent::decode(p).ok())?;
            let span = tracing::info_span!(
                "care.incidents process",
                otel.kind = "consumer",
                messaging.system = "kafka",
                messaging.operation.type = "process",
                messaging.destination.name = %topic,
                messaging.destination.partition.id = m.partition(),
                messaging.kafka.offset = m.offset(),
                dolbom.incident_id = %LogSafe(&ev.incident_id),
                dolbom.household_id = %LogSafe(&ev.household_id),
                dolbom.municipality = %LogSafe(&ev.municipality_code),
            );
            dolbom_telemetry::kafka::adopt(&span, m.headers());
            Some((ev, span))
        };
        match first {
            Ok(m) => match decode(&m) {
                Some(ev) => batch.push(ev),
                None => malformed += 1,
            },
            Err(e) => {
                tracing::warn!(error = %e, "consumer error");
                continue;
            }
        }
        let deadline = tokio::time::Instant::now() + Duration::from_millis(20);
        while batch.len() + (malformed as usize) < 1000 {
            match tokio::time::timeout_at(deadline, consumer.recv()).await {
                Ok(Ok(m)) => match decode(&m) {
                    Some(ev) => batch.push(ev),
                    None => malformed += 1,
                },
                Ok(Err(e)) => tracing::warn!(error = %e, "consumer error"),
                Err(_) => break,
            }
        }
        if malformed > 0 {
            metrics::counter!(m::REJECTED_EVENTS, "field" => "payload").increment(malformed);
            tracing::warn!(malformed, "undecodable incident events skipped");
        }
        core.ingest_traced(batch).await?;
        // Everything received so far is durable: commit the positions.
        if let Err(e) = consumer.commit_consumer_state(CommitMode::Async) {
            tracing::warn!(error = %e, "offset commit failed; the batch may be replayed (idempotent)");
        }
    }
    let _ = consumer.commit_consumer_state(CommitMode::Sync);
    Ok(())
}
