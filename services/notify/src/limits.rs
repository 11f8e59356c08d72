//! What one caller may hold of the API: server limits (HTTP/2 streams per
//! connection, concurrent requests per connection, a request timeout),
//! `WatchIncidents` streams per token, and whether reflection is served.
//!
//! Data flow: [`ApiOptions`] (the `[api]` section) → `serve` sets the
//! server's limits → the interceptor has verified the token → a watch takes
//! a [`WatchPermit`] from [`WatchPermits`] for its token (RESOURCE_EXHAUSTED
//! past the cap) and gives it back when the stream ends.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The API's limits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ApiOptions {
    /// Serve gRPC reflection (the whole schema, without a token). On in
    /// standalone; off by default here.
    pub reflection: bool,
    /// HTTP/2 streams one connection may have open at once.
    pub max_concurrent_streams: u32,
    /// Requests one connection may have in progress at once.
    pub concurrency_per_connection: usize,
    /// A unary call (or a stream's opening) that takes longer is cancelled.
    pub request_timeout_secs: u64,
    /// Open `WatchIncidents` streams per token (per subject for a token
    /// without an id); more get RESOURCE_EXHAUSTED.
    pub watch_streams_per_token: usize,
    /// Plaintext gRPC health (and nothing else) on this address, for
    /// Kubernetes' native gRPC probes, which cannot speak TLS; empty = off.
    pub health_listen: String,
}

impl Default for ApiOptions {
    fn default() -> Self {
        Self {
            reflection: false,
            max_concurrent_streams: 128,
            concurrency_per_connection: 64,
            request_timeout_secs: 30,
            watch_streams_per_token: 8,
            health_listen: String::new(),
        }
    }
}

/// Open watch streams per token. Clones share the counts.
#[derive(Clone, Debug)]
pub struct WatchPermits {
    cap: usize,
    open: Arc<Mutex<HashMap<String, usize>>>,
}

/// One open watch stream's place; given back when dropped.
#[derive(Debug)]
pub struct WatchPermit {
    key: String,
    open: Arc<Mutex<HashMap<String, usize>>>,
}

impl WatchPermits {
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            open: Arc::default(),
        }
    }

    /// A place for one more stream of `key`, if it has fewer than the cap.
    pub fn take(&self, key: &str) -> Option<WatchPermit> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(key.to_string()).or_default();
        if *n >= self.cap {
            return None;
        }
        *n += 1;
        Some(WatchPermit {
            key: key.to_string(),
            open: self.open.clone(),
        })
    }
}

impl Drop for WatchPermit {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_are_counted_per_key_and_given_back() {
        let p = WatchPermits::new(2);
        let a1 = p.take("a").unwrap();
        let _a2 = p.take("a").unwrap();
        assert!(p.take("a").is_none());
        let _b = p.take("b").unwrap();
        drop(a1);
        assert!(p.take("a").is_some());
        assert_eq!(p.open.lock().unwrap().get("a"), Some(&1));
    }
}
