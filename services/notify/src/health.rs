//! Readiness: whether the service can do its job, from the inputs that
//! decide it (the incident input, publishing to the bus). The history store
//! is not one of them: nothing that alerts a person waits for it.
//! gRPC health follows it (see [`crate::service`]).

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use tokio::sync::Notify;

pub(crate) struct Readiness {
    input_ok: AtomicBool,
    publisher_ok: AtomicBool,
    changed: Notify,
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness {
            input_ok: AtomicBool::new(true),
            publisher_ok: AtomicBool::new(true),
            changed: Notify::new(),
        }
    }
}

impl Readiness {
    /// Ready, or the reason it is not.
    pub(crate) fn check(&self) -> Result<(), &'static str> {
        if !self.input_ok.load(Relaxed) {
            return Err("the incident input stopped");
        }
        if !self.publisher_ok.load(Relaxed) {
            return Err("publishing to the bus fails");
        }
        Ok(())
    }

    pub(crate) fn set_input(&self, ok: bool) {
        self.input_ok.store(ok, Relaxed);
        self.changed.notify_waiters();
    }

    pub(crate) fn set_publisher(&self, ok: bool) {
        if self.publisher_ok.swap(ok, Relaxed) != ok {
            self.changed.notify_one();
        }
    }

    pub(crate) async fn changed(&self) {
        self.changed.notified().await
    }
}
