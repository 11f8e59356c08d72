//! The notify service's error, and how it reaches a gRPC caller.

use dolbom_history::HistoryError;
use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("{field}: {problem}")]
    Invalid { field: String, problem: String },
    #[error("not found: {0}")]
    NotFound(String),
    #[error("permission denied: {0}")]
    Denied(String),
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    #[error("already exists: {0}")]
    Exists(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("failed precondition: {0}")]
    Precondition(String),
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("out of range: {0}")]
    OutOfRange(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error("encryption: {0}")]
    Crypto(String),
    #[error("corrupt store: {0}")]
    Corrupt(String),
    #[error("store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("history: {0}")]
    History(#[from] HistoryError),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("options: {0}")]
    Options(#[from] dolbom_options::LayerError),
    #[error("grpc server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("internal: {0}")]
    Internal(String),
}

impl NotifyError {
    pub fn invalid(field: &str, problem: &str) -> Self {
        NotifyError::Invalid {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

impl From<NotifyError> for Status {
    fn from(e: NotifyError) -> Status {
        match e {
            NotifyError::Invalid { field, problem } => {
                Status::invalid_argument(format!("{field}: {problem}"))
            }
            NotifyError::NotFound(m) => Status::not_found(m),
            NotifyError::Denied(m) => Status::permission_denied(m),
            NotifyError::Unauthenticated(m) => Status::unauthenticated(m),
            NotifyError::Exists(m) => Status::already_exists(m),
            NotifyError::Conflict(m) => Status::aborted(m),
            NotifyError::Precondition(m) => Status::failed_precondition(m),
            NotifyError::Unavailable(m) => Status::unavailable(m),
            NotifyError::OutOfRange(m) => Status::out_of_range(m),
            other => {
                tracing::error!(error = %other, "internal error");
                Status::internal("internal error")
            }
        }
    }
}
