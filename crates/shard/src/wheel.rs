//! The shard's timer wheel: every household's next deadline in one structure.
//!
//! Deadlines are bucketed by second in an ordered map of slot lists (a
//! calendar queue: the near buckets are a wheel that turns, the far future is
//! sparse). An entry costs 4 bytes. Entries are never removed on reschedule;
//! the owner keeps the authoritative deadline per slot and skips or re-queues
//! stale entries when their bucket comes due (see `Shard::fire_due`).
//!
//! Stale entries cost nothing until their bucket comes due, but then they
//! all do at once: households registered in the same millisecond leave one
//! stale entry each in the same bucket (their first offline check, moved on
//! by their first reading), and at 10 M households that bucket took 0.75 s
//! to empty, delaying whatever else fell due in it. [`TimerWheel::sweep`]
//! lets the owner look at the coming buckets ahead of time, a bounded
//! number of entries per call, so that a bucket holds little more than its
//! real deadlines when it comes due.

use std::collections::BTreeMap;

#[derive(Debug, Default)]
pub struct TimerWheel {
    buckets: BTreeMap<i64, Vec<u32>>,
    len: usize,
    /// How far [`TimerWheel::sweep`] got: every bucket before `.0` that
    /// existed then, and the first `.1` entries of bucket `.0`.
    swept: Option<(i64, usize)>,
}

/// What [`TimerWheel::sweep`] does with one entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Swept {
    /// Leave it where it is.
    Keep,
    /// Remove it.
    Drop,
    /// Remove it and queue the slot at this time (must be in a later bucket).
    Move(i64),
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
        if self.swept.is_some_and(|(b, _)| b <= last) {
            self.swept = None;
        }
    }

    /// Looks ahead at the entries in the buckets after `after_ms`'s, up to
    /// and including `through_ms`'s, in bucket order, continuing where the
    /// last call stopped; `judge(slot, bucket_start_ms)` says what becomes
    /// of each. Sweeps at most `budget` entries; returns how many it swept.
    /// Entries pushed into a bucket after it was swept are not looked at
    /// again (they were current when pushed).
    pub fn sweep(
        &mut self,
        after_ms: i64,
        through_ms: i64,
        budget: usize,
        mut judge: impl FnMut(u32, i64) -> Swept,
    ) -> usize {
        let last = through_ms.div_euclid(BUCKET_MS);
        let (mut bucket, mut pos) = self.sweep_from(after_ms);
        let mut done = 0;
        let mut moves: Vec<(i64, u32)> = Vec::new();
        while done < budget && bucket <= last {
            let Some((&key, slots)) = self.buckets.range_mut(bucket..=last).next() else {
                bucket = last + 1;
                pos = 0;
                break;
            };
            if key != bucket {
                (bucket, pos) = (key, 0);
            }
            let end = slots.len().min(pos + (budget - done));
            let mut kept = pos;
            for i in pos..end {
                let slot = slots[i];
                match judge(slot, key * BUCKET_MS) {
                    Swept::Keep => {
                        slots[kept] = slot;
                        kept += 1;
                    }
                    Swept::Drop => {}
                    Swept::Move(at) => moves.push((at, slot)),
                }
            }
            done += end - pos;
            self.len -= end - kept;
            slots.drain(kept..end);
            pos = kept;
            if pos == slots.len() {
                if slots.is_empty() {
                    self.buckets.remove(&key);
                }
                (bucket, pos) = (key + 1, 0);
            }
        }
        self.swept = Some((bucket, pos));
        for (at, slot) in moves {
            self.push(at, slot);
        }
        done
    }

    /// Where a sweep of the buckets after `after_ms`'s starts: where the
    /// last one stopped, unless that is behind.
    fn sweep_from(&self, after_ms: i64) -> (i64, usize) {
        let first = after_ms.div_euclid(BUCKET_MS) + 1;
        match self.swept {
            Some((b, p)) if b >= first => (b, p),
            _ => (first, 0),
        }
    }

    /// How many entries a call of [`TimerWheel::sweep`] over the same range
    /// should take, if it is called once per bucket (second) of advance, for
    /// every bucket to be swept by the time it comes due: the most any
    /// coming bucket needs, its unswept entries and those of the buckets
    /// before it spread over the seconds left until it.
    pub fn pace(&self, after_ms: i64, through_ms: i64) -> usize {
        let now = after_ms.div_euclid(BUCKET_MS);
        let last = through_ms.div_euclid(BUCKET_MS);
        let (from, pos) = self.sweep_from(after_ms);
        let mut total = 0;
        let mut pace = 0;
        if from > last {
            return 0;
        }
        for (&b, slots) in self.buckets.range(from..=last) {
            total += slots.len() - if b == from { pos.min(slots.len()) } else { 0 };
            pace = pace.max(total.div_ceil((b - now) as usize));
        }
        pace
    }

    /// Entries queued (including stale ones).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Entries in the bucket holding `at_ms`.
    pub fn in_bucket(&self, at_ms: i64) -> usize {
        self.buckets
            .get(&at_ms.div_euclid(BUCKET_MS))
            .map_or(0, Vec::len)
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

    fn contents(w: &TimerWheel) -> Vec<(i64, Vec<u32>)> {
        w.buckets.iter().map(|(b, s)| (*b, s.clone())).collect()
    }

    #[test]
    fn a_sweep_keeps_drops_and_moves_within_its_budget_and_resumes_where_it_stopped() {
        let mut w = TimerWheel::default();
        for slot in 0..10 {
            w.push(5_000 + slot as i64, slot); // bucket 5
        }
        w.push(7_000, 10); // bucket 7
        w.push(70_000, 11); // bucket 70: beyond the range below

        // In bucket 5 even slots are current, odd ones stale (moved to
        // bucket 9, where they are current); 10 is dropped.
        let judge = |slot: u32, bucket_ms: i64| match slot {
            10 => Swept::Drop,
            s if s % 2 == 1 && bucket_ms == 5_000 => Swept::Move(9_500 + s as i64),
            _ => Swept::Keep,
        };
        assert_eq!(
            w.pace(4_000, 60_000),
            10,
            "bucket 5's 10 entries are 1 s away"
        );
        assert_eq!(w.sweep(4_000, 60_000, 4, judge), 4);
        assert_eq!(contents(&w)[0], (5, vec![0, 2, 4, 5, 6, 7, 8, 9]));
        assert_eq!(w.len(), 12, "moved, not lost");
        assert_eq!(w.pace(4_000, 60_000), 6, "6 left in bucket 5");
        assert_eq!(
            w.sweep(4_000, 60_000, 100, judge),
            9,
            "6 in bucket 5, 1 in bucket 7, the 2 moved by the first sweep (the ones moved now are not swept again)"
        );
        assert_eq!(
            contents(&w),
            vec![
                (5, vec![0, 2, 4, 6, 8]),
                (9, vec![1, 3, 5, 7, 9]),
                (70, vec![11])
            ]
        );
        assert_eq!(w.len(), 11);
        assert_eq!(
            w.sweep(4_000, 60_000, 100, judge),
            0,
            "nothing new to sweep"
        );
        assert_eq!(w.pace(4_000, 60_000), 0);
        // A push into a swept bucket is not swept again; into a later one it is.
        w.push(5_900, 12);
        w.push(65_000, 13);
        assert_eq!(
            w.sweep(4_000, 70_000, 100, |_, _| Swept::Keep),
            2,
            "13 and 11"
        );
        let mut out = Vec::new();
        w.take_due(9_999, &mut out);
        assert_eq!(out, vec![0, 2, 4, 6, 8, 12, 1, 3, 5, 7, 9]);
        assert_eq!(w.len(), 2);
        assert_eq!(contents(&w), vec![(65, vec![13]), (70, vec![11])]);
    }

    #[test]
    fn pace_spreads_a_coming_bucket_over_the_seconds_left() {
        let mut w = TimerWheel::default();
        for slot in 0..600 {
            w.push(61_000, slot);
        }
        for slot in 600..610 {
            w.push(2_000, slot);
        }
        // From t = 1 s: bucket 2 needs its 10 in 1 s; bucket 61 needs 610 in 60 s.
        assert_eq!(w.pace(1_000, 61_000), 11);
        assert_eq!(w.pace(1_000, 60_999), 10, "bucket 61 not in range");
        let mut t = 1_000;
        let mut swept = 0;
        while t < 61_000 {
            let budget = w.pace(t, t + 60_000);
            swept += w.sweep(t, t + 60_000, budget, |_, _| Swept::Drop);
            t += 1_000;
            let mut out = Vec::new();
            w.take_due(t, &mut out);
            assert!(
                out.is_empty(),
                "every bucket swept before it came due (t = {t})"
            );
        }
        assert_eq!(swept, 610);
    }
}
