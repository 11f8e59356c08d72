//! Readings → per-minute aggregates, pure code.
//!
//! The [`Downsampler`] keeps one accumulator per household and open minute.
//! Its watermark is the newest reading time seen minus the allowed lateness;
//! a minute closes once the watermark passes its end, and comes out of
//! [`Downsampler::drain_closed`] as an [`Aggregate`]. A reading for a minute
//! that already closed is counted in [`Downsampler::late_dropped`] and not
//! aggregated: writing a second aggregate for the minute would replace the
//! first one. When the last minute of an hour closes for a household, an
//! [`HourKey`] comes out too: the store rolls the hour up from its stored
//! minutes, so hours need no state here and survive a restart.
//!
//! Each closed minute also reports the smallest input position (e.g. Kafka
//! offset) that contributed to a minute still open, so a consumer commits only
//! what is already in the store.

use crate::model::{Aggregate, HourKey, Resolution, Summary, MINUTE_MS};
use hashbrown::HashMap;
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug)]
struct Acc {
    readings: u32,
    watts: Option<Summary>,
    lux: Option<Summary>,
}

/// Per-minute downsampling with a watermark.
#[derive(Debug)]
pub struct Downsampler {
    lateness_ms: i64,
    /// Open minutes: bucket start → household → accumulator, plus the
    /// smallest input position in the bucket.
    open: BTreeMap<i64, (HashMap<String, Acc>, i64)>,
    /// Households with minutes closed in an hour that has not closed yet.
    open_hours: BTreeMap<i64, hashbrown::HashSet<String>>,
    max_seen_ms: i64,
    /// End of the newest minute drained: readings for it or anything older
    /// would overwrite a stored aggregate.
    closed_through_ms: i64,
    late_dropped: u64,
}

/// What [`Downsampler::drain_closed`] produced.
#[derive(Debug, Default, PartialEq)]
pub struct Closed {
    pub minutes: Vec<Aggregate>,
    pub hours: Vec<HourKey>,
}

impl Downsampler {
    pub fn new(lateness_ms: i64) -> Self {
        Self {
            lateness_ms: lateness_ms.max(0),
            open: BTreeMap::new(),
            open_hours: BTreeMap::new(),
            max_seen_ms: i64::MIN,
            closed_through_ms: i64::MIN,
            late_dropped: 0,
        }
    }

    fn cutoff(&self) -> i64 {
        self.max_seen_ms.saturating_sub(self.lateness_ms)
    }

    /// Minutes ending at or before this time are stored (or given up on):
    /// persist it with the input position, and pass it to
    /// [`Downsampler::resume_after`] after a restart.
    pub fn cutoff_ms(&self) -> i64 {
        self.cutoff().max(self.closed_through_ms)
    }

    /// Resumes after a restart: readings for minutes ending at or before
    /// `cutoff_ms` are already in stored aggregates and are dropped as late.
    pub fn resume_after(&mut self, cutoff_ms: i64) {
        self.closed_through_ms = self.closed_through_ms.max(cutoff_ms);
        self.max_seen_ms = self
            .max_seen_ms
            .max(cutoff_ms.saturating_add(self.lateness_ms));
    }

    /// Adds a reading at `position` (any increasing input position, e.g. a
    /// Kafka offset). Returns false when its minute already closed.
    pub fn push(
        &mut self,
        household_id: &str,
        at_ms: i64,
        watts: Option<f64>,
        lux: Option<f64>,
        position: i64,
    ) -> bool {
        let bucket = Resolution::Minute.bucket_start(at_ms);
        if bucket + MINUTE_MS <= self.cutoff_ms() {
            self.late_dropped += 1;
            return false;
        }
        self.max_seen_ms = self.max_seen_ms.max(at_ms);
        let (households, min_pos) = self
            .open
            .entry(bucket)
            .or_insert_with(|| (HashMap::new(), position));
        *min_pos = (*min_pos).min(position);
        let acc = households.entry_ref(household_id).or_insert(Acc {
            readings: 0,
            watts: None,
            lux: None,
        });
        acc.readings += 1;
        let finite = |v: Option<f64>| v.filter(|x| x.is_finite());
        if let Some(w) = finite(watts) {
            Summary::merge_opt(&mut acc.watts, &Some(Summary::of(w)));
        }
        if let Some(l) = finite(lux) {
            Summary::merge_opt(&mut acc.lux, &Some(Summary::of(l)));
        }
        true
    }

    /// Readings that arrived after their minute closed.
    pub fn late_dropped(&self) -> u64 {
        self.late_dropped
    }

    /// Households × minutes still open.
    pub fn open_buckets(&self) -> usize {
        self.open.values().map(|(h, _)| h.len()).sum()
    }

    /// The smallest input position still held in an open minute: everything
    /// before it is in closed (drained) minutes.
    pub fn low_position(&self) -> Option<i64> {
        self.open.values().map(|(_, p)| *p).min()
    }

    /// Minutes (and hours) the watermark has passed.
    pub fn drain_closed(&mut self) -> Closed {
        self.drain(self.cutoff())
    }

    /// Everything, open or not (shutdown).
    pub fn drain_all(&mut self) -> Closed {
        self.drain(i64::MAX)
    }

    fn drain(&mut self, cutoff: i64) -> Closed {
        let mut out = Closed::default();
        while let Some((&bucket, _)) = self.open.first_key_value() {
            if bucket.saturating_add(MINUTE_MS) > cutoff {
                break;
            }
            let (households, _) = self.open.pop_first().expect("present").1;
            self.closed_through_ms = self.closed_through_ms.max(bucket + MINUTE_MS);
            let hour = Resolution::Hour.bucket_start(bucket);
            let touched = self.open_hours.entry(hour).or_default();
            for (household_id, acc) in households {
                touched.insert(household_id.clone());
                out.minutes.push(Aggregate {
                    household_id,
                    resolution: Resolution::Minute,
                    bucket_start_ms: bucket,
                    readings: acc.readings,
                    watts: acc.watts,
                    lux: acc.lux,
                });
            }
        }
        // An hour is complete when no open minute remains in it and the
        // cutoff passed its end.
        while let Some((&hour, _)) = self.open_hours.first_key_value() {
            let end = hour + Resolution::Hour.bucket_ms();
            let still_open = self.open.range(hour..end).next().is_some();
            if end > cutoff || still_open {
                break;
            }
            let (_, households) = self.open_hours.pop_first().expect("present");
            out.hours
                .extend(households.into_iter().map(|household_id| HourKey {
                    household_id,
                    hour_start_ms: hour,
                }));
        }
        if cutoff == i64::MAX {
            // Shutdown: roll up the partial hours too; a later roll-up with
            // more minutes replaces them.
            while let Some((hour, households)) = self.open_hours.pop_first() {
                out.hours
                    .extend(households.into_iter().map(|household_id| HourKey {
                        household_id,
                        hour_start_ms: hour,
                    }));
            }
        }
        out.minutes.sort_by(|a, b| {
            (a.bucket_start_ms, &a.household_id).cmp(&(b.bucket_start_ms, &b.household_id))
        });
        out.hours.sort_by(|a, b| {
            (a.hour_start_ms, &a.household_id).cmp(&(b.hour_start_ms, &b.household_id))
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T0: i64 = 1_780_000_000_000 / crate::model::HOUR_MS * crate::model::HOUR_MS;

    #[test]
    fn minutes_close_behind_the_watermark() {
        let mut d = Downsampler::new(5_000);
        assert!(d.push("h1", T0 + 1_000, Some(10.0), Some(100.0), 0));
        assert!(d.push("h1", T0 + 30_000, Some(30.0), None, 1));
        assert!(d.push("h2", T0 + 59_000, None, Some(5.0), 2));
        // Next minute, but within the lateness: nothing closes yet.
        assert!(d.push("h1", T0 + 62_000, Some(1.0), None, 3));
        assert!(d.drain_closed().minutes.is_empty());
        assert_eq!(d.low_position(), Some(0));
        assert!(d.push("h1", T0 + 66_000, Some(1.0), None, 4));
        let closed = d.drain_closed();
        assert_eq!(closed.minutes.len(), 2);
        let h1 = &closed.minutes[0];
        assert_eq!((h1.household_id.as_str(), h1.readings), ("h1", 2));
        let w = h1.watts.unwrap();
        assert_eq!((w.count, w.min, w.max, w.mean()), (2, 10.0, 30.0, 20.0));
        assert_eq!(h1.lux.unwrap().count, 1);
        assert!(closed.minutes[1].watts.is_none());
        assert_eq!(d.low_position(), Some(3));
        // Late for the closed minute: dropped and counted.
        assert!(!d.push("h1", T0 + 2_000, Some(99.0), None, 5));
        assert_eq!(d.late_dropped(), 1);
        assert!(closed.hours.is_empty());
    }

    #[test]
    fn hours_close_when_their_last_minute_does() {
        let mut d = Downsampler::new(0);
        for m in 0..60 {
            d.push("h1", T0 + m * MINUTE_MS, Some(1.0), None, m);
        }
        d.push("h1", T0 + 60 * MINUTE_MS + 1, Some(1.0), None, 60);
        let closed = d.drain_closed();
        assert_eq!(closed.minutes.len(), 60);
        assert_eq!(
            closed.hours,
            vec![HourKey {
                household_id: "h1".into(),
                hour_start_ms: T0
            }]
        );
        let all = d.drain_all();
        assert_eq!(all.minutes.len(), 1);
        assert_eq!(all.hours.len(), 1);
        assert_eq!(all.hours[0].hour_start_ms, T0 + 60 * MINUTE_MS);
    }

    #[test]
    fn a_resumed_downsampler_does_not_reopen_stored_minutes() {
        let mut d = Downsampler::new(5_000);
        d.push("h1", T0 + 1_000, Some(1.0), None, 0);
        let all = d.drain_all();
        assert_eq!(all.minutes.len(), 1);
        // After drain_all the minute is stored: a reading for it is late.
        assert!(!d.push("h1", T0 + 2_000, Some(1.0), None, 1));
        let cutoff = d.cutoff_ms();
        assert_eq!(cutoff, T0 + MINUTE_MS);
        let mut resumed = Downsampler::new(5_000);
        resumed.resume_after(cutoff);
        assert!(!resumed.push("h1", T0 + 3_000, Some(1.0), None, 2));
        assert!(resumed.push("h1", T0 + MINUTE_MS, Some(1.0), None, 3));
    }

    proptest! {
        /// Whatever the order (within the lateness), every accepted reading is
        /// in exactly one minute aggregate and the sums match.
        #[test]
        fn every_accepted_reading_is_aggregated_once(
            readings in prop::collection::vec((0usize..5, 0i64..600_000, 0.0f64..100.0), 1..300),
            lateness in 0i64..120_000,
        ) {
            let mut d = Downsampler::new(lateness);
            let mut accepted = 0u32;
            let mut sum = 0.0;
            let mut out = Vec::new();
            for (i, (h, at, w)) in readings.iter().enumerate() {
                if d.push(&format!("h{h}"), T0 + at, Some(*w), None, i as i64) {
                    accepted += 1;
                    sum += w;
                }
                if i % 7 == 0 {
                    out.extend(d.drain_closed().minutes);
                }
            }
            out.extend(d.drain_all().minutes);
            prop_assert_eq!(out.iter().map(|a| a.readings).sum::<u32>(), accepted);
            let got: f64 = out.iter().map(|a| a.watts.unwrap().sum).sum();
            prop_assert!((got - sum).abs() < 1e-6);
            let mut keys: Vec<_> = out.iter().map(|a| (a.household_id.clone(), a.bucket_start_ms)).collect();
            let n = keys.len();
            keys.sort();
            keys.dedup();
            prop_assert_eq!(keys.len(), n, "one aggregate per household and minute");
        }
    }
}
