//! Automatic loads: recognising, per plug, a load that switches itself on a
//! cycle (a refrigerator's compressor, a boiler or a lamp on a timer), so
//! that its switching is not taken for a sign of life. A plug on a fridge
//! must not keep a fallen person "active" forever.
//!
//! **Rule.** Every power change beyond the noise floor is an edge: up (a
//! load started) or down. Up-edges are timed: the interval from the last
//! up-edge is compared with the plug's candidate period, and the edge's
//! size with the candidate's size. An interval within
//! `clamp(period / 16, 1 min, 10 min)` of the period, of the same size
//! (within the noise floor or an eighth), is a match; any other up-edge
//! starts a new candidate. After [`RECOGNISED_AFTER`] consecutive matches
//! (about five hours of a fridge cycling undisturbed, usually the first
//! night; three and a half days of a 12-hour timer) the plug's load is
//! recognised as automatic, for periods from [`MIN_PERIOD_S`] to
//! [`MAX_PERIOD_S`] (a person's daily habit is never one).
//!
//! Once recognised, the load's own edges are not activity: up-edges on the
//! period (or late: a compressor running late is still a compressor) and
//! down-edges of the load's size. Everything else is: an up-edge early in
//! the cycle (a door opened, the compressor started early) or of another
//! size (the fridge's lamp, another appliance on the same plug), and light.
//! [`FORGET_AFTER`] consecutive up-edges off the cycle and the plug is no
//! longer recognised: it has become something a person switches.
//!
//! State: 8 bytes per plug. Times are whole seconds since 2020-01-01 UTC
//! (32 bits last until 2156); sizes `4·√watts` in a byte.

use dolbom_domain::Ts;

/// Consecutive matching cycles before a load counts as automatic.
pub const RECOGNISED_AFTER: u8 = 6;
/// Consecutive up-edges off the cycle after which it no longer does.
pub const FORGET_AFTER: u8 = 15;
/// Shortest period recognised: 10 minutes.
pub const MIN_PERIOD_S: u32 = 10 * 60;
/// Longest period recognised: 13 hours (a twice-daily timer).
pub const MAX_PERIOD_S: u32 = 13 * 3600;

const EPOCH_MS: i64 = 1_577_836_800_000; // 2020-01-01T00:00:00Z

fn secs(t: Ts) -> u32 {
    ((t.millis() - EPOCH_MS) / 1000).clamp(1, i64::from(u32::MAX)) as u32
}

/// One plug's cycle: see the module docs. Eight bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cycle {
    /// The last up-edge of the cycle (seconds since 2020; 0 = none yet).
    anchor: u32,
    /// Candidate period in seconds (0 = none).
    period: u16,
    /// Size of the load's edges as `4·√watts` (4–5 W steps for a fridge,
    /// about 20 W for a 1.5 kW heater; up to 4 kW).
    size: u8,
    /// Consecutive matches (low 4 bits) and consecutive up-edges off the
    /// cycle (high 4 bits), each saturating at 15.
    counts: u8,
}

fn size_code(watts: f32) -> u8 {
    (watts.max(0.0).sqrt() * 4.0).round().clamp(1.0, 255.0) as u8
}

impl Cycle {
    fn matched(&self) -> u8 {
        self.counts & 0x0f
    }

    fn missed(&self) -> u8 {
        self.counts >> 4
    }

    fn set_counts(&mut self, matched: u8, missed: u8) {
        self.counts = matched.min(15) | (missed.min(15) << 4);
    }

    /// Whether the plug's load is recognised as automatic.
    pub fn recognised(&self) -> bool {
        self.matched() >= RECOGNISED_AFTER
    }

    fn same_size(&self, size: f32, floor: f32) -> bool {
        let known = (f32::from(self.size) / 4.0).powi(2);
        self.size > 0 && (size - known).abs() <= floor.max(known / 8.0)
    }

    fn start(&mut self, at: u32, size: f32, interval: u32) {
        *self = Cycle {
            anchor: at,
            period: if (MIN_PERIOD_S..=MAX_PERIOD_S).contains(&interval) {
                interval as u16
            } else {
                0
            },
            size: size_code(size),
            counts: 0,
        };
    }

    /// A power change of `delta` watts (beyond the noise floor `floor`) seen
    /// at `t`, in order: returns true when it is the automatic load's own
    /// switching, not activity.
    pub fn edge(&mut self, t: Ts, delta: f32, floor: f32) -> bool {
        let size = delta.abs();
        let same = self.same_size(size, floor);
        if delta < 0.0 {
            return self.recognised() && same;
        }
        let at = secs(t);
        if self.anchor == 0 || at <= self.anchor {
            self.start(at, size, 0);
            return false;
        }
        let interval = at - self.anchor;
        let period = u32::from(self.period);
        let tolerance = (period / 16).clamp(60, 600);
        if same && period > 0 && interval.abs_diff(period) <= tolerance {
            self.set_counts(self.matched().saturating_add(1), 0);
            // Follow a slow drift of the period.
            self.period = ((period * 7 + interval) / 8) as u16;
            self.anchor = at;
            return self.recognised();
        }
        if !self.recognised() {
            self.start(at, size, interval);
            return false;
        }
        let missed = self.missed() + 1;
        if missed >= FORGET_AFTER {
            self.start(at, size, interval);
            return false;
        }
        self.set_counts(self.matched(), missed);
        if !same {
            // Something else on the plug (the fridge's lamp, another
            // appliance): activity, and the load's cycle goes on.
            return false;
        }
        // The load started off its period: the cycle restarts from here.
        // Late is the load's own doing; early means someone opened it.
        self.anchor = at;
        interval > period
    }
}
