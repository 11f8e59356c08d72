//! The history crate's error.

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("invalid {0}")]
    Invalid(String),
    #[error("embedded store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("embedded store I/O on {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("ScyllaDB: {0}")]
    Scylla(String),
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
    #[error("schema migration {version} ({name}): {reason}")]
    Migration {
        version: u32,
        name: String,
        reason: String,
    },
    #[error("history writer stopped")]
    WriterClosed,
    #[error("store task failed: {0}")]
    Join(String),
}

impl HistoryError {
    pub(crate) fn scylla(e: impl std::fmt::Display) -> Self {
        HistoryError::Scylla(e.to_string())
    }
}
