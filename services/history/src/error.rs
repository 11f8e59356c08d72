//! The history ingest's error.

use dolbom_history::HistoryError;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("configuration: {0}")]
    Options(#[from] dolbom_options::LayerError),
    #[error("invalid option {0}: {1}")]
    Invalid(&'static str, String),
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Metrics(#[from] dolbom_prometheus::ExporterError),
}
