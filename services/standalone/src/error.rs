//! Standalone's errors: options that cannot be used, and what stops a run.

use dolbom_calendar::CalendarError;
use dolbom_history::HistoryError;
pub use dolbom_options::OptionsError;

#[derive(Debug, thiserror::Error)]
pub enum StandaloneError {
    #[error(transparent)]
    Calendar(#[from] CalendarError),
    #[error("history store: {0}")]
    History(#[from] HistoryError),
    #[error("notify: {0}")]
    Notify(#[from] dolbom_notify::NotifyError),
}
