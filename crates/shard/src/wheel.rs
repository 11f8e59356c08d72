//! The shard's timer wheel: every household's next deadline in one structure.
//!
//! Deadlines are bucketed by second in an ordered map of slot lists (a
//! calendar queue: the near buckets are a wheel that turns, the far future is
//! sparse). An entry costs 4 bytes. Entries are never removed on reschedule;
//! the owner keeps the authoritative deadline per slot and skips or re-queues
//! stale entries when their bucket comes due (see `Shard::fire_due`).

use std::collections::BTreeMap;

#[derive(Debug, Default)]
pub struct TimerWheel {
    buckets: BTreeMap<i64, Vec<u32>>,
    len: usize,
}

/// Bucket width: one second.
const BUCKET_MS: i64 = 1_000;

impl TimerWheel {
    pub fn push(&mut self, at_ms: i64, slot: u32) {
        self.buckets
            .entry(at_ms.div_euclid(BUCKET_MS))
            .or_default()
            .push(slot);
        self.len += 1;
    }

    /// Takes every entry whose bucket starts at or before `limit_ms`, in
    /// bucket order. The caller re-queues entries that are not yet due (the
    /// bucket holding `limit_ms` may contain later deadlines).
    pub fn take_due(&mut self, limit_ms: i64, out: &mut Vec<u32>) {
        let last = limit_ms.div_euclid(BUCKET_MS);
        while let Some(entry) = self.buckets.first_entry() {
            if *entry.key() > last {
                break;
            }
            let slots = entry.remove();
            self.len -= slots.len();
            out.extend(slots);
        }
    }

    /// Entries queued (including stale ones).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Start of the earliest bucket.
    pub fn next_bucket_ms(&self) -> Option<i64> {
        self.buckets.keys().next().map(|b| b * BUCKET_MS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_buckets_in_order_up_to_the_limit() {
        let mut w = TimerWheel::default();
        w.push(5_500, 1);
        w.push(1_200, 2);
        w.push(9_000, 3);
        w.push(5_100, 4);
        let mut out = Vec::new();
        w.take_due(5_000, &mut out);
        assert_eq!(out, vec![2, 1, 4], "bucket 5 holds 5_100 and 5_500");
        assert_eq!(w.len(), 1);
        out.clear();
        w.take_due(8_999, &mut out);
        assert!(out.is_empty());
        w.take_due(9_000, &mut out);
        assert_eq!(out, vec![3]);
        assert!(w.is_empty());
    }
}
