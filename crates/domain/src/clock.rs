//! Where "now" comes from. Services take a [`SharedClock`] so that tests and
//! simulations can run them on injected time; production passes
//! [`WallClock`].

use crate::time::Ts;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// A source of the current instant.
pub trait Clock: Send + Sync {
    fn now(&self) -> Ts;
}

/// A clock shared by the parts of a service.
pub type SharedClock = Arc<dyn Clock>;

/// The system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct WallClock;

impl Clock for WallClock {
    fn now(&self) -> Ts {
        Ts::now()
    }
}

impl WallClock {
    pub fn shared() -> SharedClock {
        Arc::new(WallClock)
    }
}

/// A clock that only moves when told: simulated time (standalone, the load
/// tests) and tests. Clones share the same instant.
#[derive(Clone, Debug, Default)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn new(at: Ts) -> Self {
        ManualClock(Arc::new(AtomicI64::new(at.millis())))
    }
    pub fn set(&self, at: Ts) {
        self.0.store(at.millis(), Ordering::Relaxed);
    }
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::Relaxed);
    }
    pub fn shared(&self) -> SharedClock {
        Arc::new(self.clone())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Ts {
        Ts(self.0.load(Ordering::Relaxed))
    }
}

/// Any closure works as a clock (a skewed or scripted one in a test).
impl<F: Fn() -> Ts + Send + Sync> Clock for F {
    fn now(&self) -> Ts {
        self()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clocks_share_their_instant() {
        let c = ManualClock::new(Ts(1_000));
        let shared = c.shared();
        c.advance(500);
        assert_eq!(shared.now(), Ts(1_500));
        c.set(Ts(7));
        assert_eq!(shared.now(), Ts(7));
        let skewed: SharedClock = Arc::new(move || Ts(c.now().millis() + 60_000));
        assert_eq!(skewed.now(), Ts(60_007));
        assert!(WallClock.now() > Ts(1_600_000_000_000));
    }
}
