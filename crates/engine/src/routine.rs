//! A household's learned routine: in which local clock hours of its recent
//! days the home showed activity, and the routine-break rule that reads it.
//!
//! **What is kept** (48 bytes): for each of the 24 local (Asia/Seoul) clock
//! hours a 16-bit history, bit `d` set when the home showed activity in that
//! hour `d` days before the current day (the day of the household's newest
//! reading, which the caller passes in). A day without any activity (no
//! readings, away, a crisis) says nothing about the routine and is no
//! reference day. Nothing else: no watts, no times, no names. Activity is
//! what the household's activity rule counts (after automatic loads are set
//! aside).
//!
//! **The rule** ([`Routine::break_due`]): a quiet period starting at `q`
//! is a routine break at the first whole clock hour `e` when the span of
//! whole hours from the hour after `q`'s to `e` (at least
//! [`MIN_SPAN_HOURS`], at most [`MAX_SPAN_HOURS`]) was a span in which all
//! but `allowed_misses` of the reference days showed activity, and the
//! chance of a quiet through it — each hour active on `k` of the `n`
//! reference days, estimated `(k + ½) / (n + 1)`, hours taken as
//! independent — is at most `max_chance`. The reference days are the
//! [`REFERENCE_DAYS`] days before `q`'s day that had activity; until at least
//! [`MIN_REFERENCE_DAYS`] of them exist (the learning period) there is no
//! routine break. A span that crosses midnight is compared with the same
//! clock hours, shifted back a whole number of days.
//!
//! The two conditions pull together: the day count is empirical (no
//! independence assumed) but cannot certify anything rarer than one day in
//! fifteen; the chance is a model that can, and it adapts to the home — a
//! home busy every hour breaks its routine after three quiet hours, one that
//! uses its plug now and then only after many. The evidence is explainable:
//! "quiet through 10:00–13:00; on 14 of the last 14 days with activity this
//! home was active then; a quiet that long about once in 30 000 days".
//! [`Routine::usual_until`] is the same rule at its loosest (any chance): how
//! long a quiet is still as usual as on the reference days.

use dolbom_domain::{RoutineEvidence, Ts, HOUR_MS};

/// Days of history kept per clock hour (bit 0 = the current day).
pub const HISTORY_DAYS: i64 = 16;
/// How many days before the quiet's day are compared with it.
pub const REFERENCE_DAYS: i64 = 14;
/// The learning period: at least this many of the reference days must have
/// had activity before the routine is trusted.
pub const MIN_REFERENCE_DAYS: u8 = 12;
/// A routine break needs at least this many whole quiet hours…
pub const MIN_SPAN_HOURS: i64 = 2;
/// …and is looked for over at most this many; longer quiets are the fixed
/// thresholds' (the span must stay inside the reference days' history).
pub const MAX_SPAN_HOURS: i64 = 16;

/// See the module docs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Routine {
    hours: [u16; 24],
}

impl Routine {
    /// The newest reading moved from day `from` to day `to` (local day
    /// numbers, [`Ts::kst_day_number`]): the history
    /// moves with it (never backward).
    pub fn roll(&mut self, from: i64, to: i64) {
        if to <= from {
            return;
        }
        let shift = to - from;
        for h in &mut self.hours {
            *h = if shift >= HISTORY_DAYS {
                0
            } else {
                *h << shift
            };
        }
    }

    /// The home showed activity at `t`; `today` is the day of the newest
    /// reading.
    pub fn active(&mut self, t: Ts, today: i64) {
        let back = today - t.kst_day_number();
        if (0..HISTORY_DAYS).contains(&back) {
            self.hours[t.kst_hour() as usize] |= 1 << back;
        }
    }

    /// Days with any activity (bit `d` = `d` days before today).
    fn days_active(&self) -> u32 {
        self.hours.iter().fold(0u32, |a, h| a | u32::from(*h))
    }

    /// Reference days (the `REFERENCE_DAYS` before `q`'s day) with
    /// activity, as a mask of offsets `r` (bit `r` = the day `r` days before
    /// `q`'s), and the lag of `q`'s day behind today; `None` if `q` is
    /// outside the history.
    fn references(&self, q: Ts, today: i64) -> Option<(i64, u16)> {
        let lag = today - q.kst_day_number();
        if !(0..=HISTORY_DAYS - 1 - REFERENCE_DAYS).contains(&lag) {
            return None;
        }
        // Bits lag+1 ..= lag+REFERENCE_DAYS, moved to 1..=REFERENCE_DAYS.
        let window = ((1u32 << REFERENCE_DAYS) - 1) << 1;
        Some((lag, ((self.days_active() >> lag) & window) as u16))
    }

    /// Whether the learning period is over for a quiet starting at `q`.
    pub fn learned(&self, q: Ts, today: i64) -> bool {
        self.references(q, today)
            .is_some_and(|(_, refs)| refs.count_ones() >= u32::from(MIN_REFERENCE_DAYS))
    }

    /// Until when a quiet period starting at `q` is still usual for this
    /// home: the first whole hour by which all but `allowed_misses` of the
    /// reference days had shown some activity in the same clock hours
    /// (the routine-break rule at its loosest, one active hour); at least
    /// [`MAX_SPAN_HOURS`] from `q`'s next hour if that never happens (the
    /// plug shows this home little: a boiler, a rarely used appliance).
    /// `None` while the routine is being learned.
    pub fn usual_until(&self, q: Ts, today: i64, allowed_misses: u8) -> Option<Ts> {
        if !self.learned(q, today) {
            return None;
        }
        Some(match self.break_due(q, today, 1.0, allowed_misses) {
            Some((t, _)) => t,
            None => Ts::kst_day_start(q.kst_day_number())
                .plus_ms((i64::from(q.kst_hour()) + 1 + MAX_SPAN_HOURS) * HOUR_MS),
        })
    }

    /// The history of clock hour `x` (hours from the quiet's midnight, up
    /// to 47) with bit `r` = the same clock hour `r` days earlier: bit
    /// lag + r of its history for an hour on q's day, one less past its
    /// midnight.
    fn shifted(&self, x: i64, lag: i64) -> u32 {
        let history = u32::from(self.hours[(x % 24) as usize]);
        let shift = lag - x / 24;
        if shift >= 0 {
            history >> shift
        } else {
            history << -shift
        }
    }

    /// When a quiet period starting at `q` becomes a routine break (see the
    /// module docs): the first whole hour by which the quiet span was
    /// active on all but `allowed_misses` reference days and its chance by
    /// the routine is at most `max_chance` (1.0: any chance); with the
    /// evidence. `None` if that never happens within [`MAX_SPAN_HOURS`] or
    /// the routine is still being learned.
    pub fn break_due(
        &self,
        q: Ts,
        today: i64,
        max_chance: f64,
        allowed_misses: u8,
    ) -> Option<(Ts, RoutineEvidence)> {
        let (lag, refs) = self.references(q, today)?;
        let n = refs.count_ones() as u8;
        if n < MIN_REFERENCE_DAYS {
            return None;
        }
        let need = n.saturating_sub(allowed_misses);
        let midnight = Ts::kst_day_start(q.kst_day_number());
        let start = i64::from(q.kst_hour()) + 1;
        // Reference days active somewhere in the span so far (bit r).
        let mut active_in_span = 0u32;
        let mut chance = 1.0f64;
        for end in start + 1..=start + MAX_SPAN_HOURS {
            let hit = self.shifted(end - 1, lag) & u32::from(refs);
            active_in_span |= hit;
            // How often this hour is active, smoothed (never 0 or 1).
            let p = (f64::from(hit.count_ones()) + 0.5) / (f64::from(n) + 1.0);
            chance *= 1.0 - p;
            if end - start < MIN_SPAN_HOURS {
                continue;
            }
            let active = active_in_span.count_ones() as u8;
            if active >= need && chance <= max_chance {
                return Some((
                    midnight.plus_ms(end * HOUR_MS),
                    RoutineEvidence {
                        usual_from: midnight.plus_ms(start * HOUR_MS),
                        usual_until: midnight.plus_ms(end * HOUR_MS),
                        active_days: active,
                        reference_days: n,
                        one_in_days: (1.0 / chance).min(f64::from(u32::MAX)) as u32,
                    },
                ));
            }
        }
        None
    }
}
