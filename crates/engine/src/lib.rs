//! The household engine: pure decision logic for one household, no I/O and no
//! wall clock — every call is told what time it is.
//!
//! Owns [`HouseholdState`], the compact per-household state the monitor keeps
//! for millions of households (see `size_of_state` in the tests: 152 bytes for
//! a one-plug household, learned routine and cycle included), and the rules
//! that turn readings and the passage of time into [`Effect`]s:
//!
//! - **Activity.** Per plug, a reading is compared with that plug's previous
//!   reading: a power change beyond `noise.watts` (an appliance switched on or
//!   off) is power activity, a light change beyond `noise.lux` is light activity.
//!   Slow drift below the floor (daylight) is not. The household's
//!   [`ActivityRule`] combines them: `PowerOrLight` is quiet since the later of
//!   the last power and light change, `PowerAndLight` since the earlier,
//!   `PowerOnly`/`LightOnly` since the one signal.
//! - **Order and duplicates.** A plug's readings are ordered by
//!   `(observed_at, sequence)`; the last 64 sequence numbers seen are kept in a
//!   bitmap. A reading already seen is a duplicate and changes nothing. A late
//!   reading never seen before (within that window) that differs from the plug's
//!   newest reading proves a change happened before that newest reading, so it
//!   counts as activity at the newest reading's time. Older late readings only
//!   prove the plug was alive, which is already known. A sequence number that
//!   goes down while time moves on is a reboot, not a duplicate.
//! - **Stages.** From the quiet start `q`, ATTENTION, CAUTION and DANGER fall due
//!   at `q + threshold`. One incident per episode: its id is household + kind +
//!   episode start, stages only move forward, and activity closes it as
//!   recovered (a late stage is emitted one event per stage, each with its own
//!   `due_at`).
//! - **Sleep window** (local time, Asia/Seoul): if the ATTENTION deadline falls
//!   inside it, ATTENTION is deferred to the window's end, but never past the
//!   CAUTION deadline. CAUTION and DANGER are never deferred.
//! - **Absences** `[start, end)`: in force while there has been no activity since
//!   `start`. While one is in force nothing is raised (an open incident is
//!   closed as suppressed); activity ends it early ([`Effect::AbsenceEndedEarly`]
//!   tells the registry); when it expires, the quiet clock restarts at `end`.
//! - **Offline.** No reading at all for `offline_after` opens a DEVICE_OFFLINE
//!   incident (stage NORMAL: a device fault for maintenance) instead of an
//!   inactivity incident; while offline, activity cannot be seen, so the same
//!   incident is raised through ATTENTION/CAUTION/DANGER as the quiet time
//!   crosses the thresholds (prolonged offline is a welfare risk). Readings
//!   coming back close it as recovered; if the home is still quiet an
//!   inactivity incident opens at once. An inactivity incident that is already
//!   open is never replaced by an offline one: it keeps escalating.
//! - A household with no plugs is not monitored.
//! - **Automatic loads** ([`cycle`]): per plug, a load that switches itself
//!   on a regular cycle (a refrigerator's compressor, a timer) is
//!   recognised after six matching cycles, and from then on its own
//!   switching is not power activity; a change off its cycle (a door
//!   opened, another load) still is. On unless the household's
//!   `learning.recognise_automatic_loads` is off.
//! - **Learned routine** ([`routine`]): which clock hours of each of the
//!   last 16 days showed activity. After a learning period (at least 12 of
//!   the 14 days before the quiet began had activity), a quiet is a
//!   *routine break* at the first whole hour by which (a) it covers at least
//!   two whole hours, (b) all but one reference day showed activity in those
//!   clock hours, and (c) by the home's hourly activity (each hour active on
//!   `k` of `n` days, taken as `(k + ½) / (n + 1)`, hours independent) such a
//!   quiet would come at most once in 1 000 days (`learning.routine`
//!   NORMAL; LOW 10 000, HIGH 100, OFF none). It raises ATTENTION then, with
//!   reason `RoutineBreak` and its evidence — never later than the fixed
//!   ATTENTION deadline, which applies during learning and always. CAUTION
//!   and DANGER stay on their fixed thresholds.
//! - **Usual quiet** (`learning.defer_through_usual_quiet`, off by default):
//!   once learned, a fixed ATTENTION deadline that falls while the quiet is
//!   still as usual as on every reference day (none of them had shown
//!   activity yet in the same clock hours) waits until an hour after the
//!   latest of them did, or for CAUTION when that is more than 16 hours
//!   away; never past CAUTION. Like a configured sleep window (the reason
//!   says `deferred_by_sleep_window`), and with the same cost: a crisis that
//!   begins like a usual night is alerted later than the fixed 12 h.
//!
//! Data flow: the monitor's shard resolves a reading's device to its household,
//! calls [`HouseholdState::on_reading`], and schedules a timer at
//! [`HouseholdState::next_deadline`]; when it fires it calls
//! [`HouseholdState::evaluate`]. Effects go out as incident events.

use dolbom_domain::config::HouseholdConfig;
use dolbom_domain::incident::{
    EventType, HouseholdEvent, IncidentKind, Reason, ReasonCode, RoutineEvidence, Stage,
    SuppressionCause,
};
use dolbom_domain::{Absence, ActivityRule, Ts, HOUR_MS, MINUTE_MS};
use smallvec::SmallVec;

pub mod cycle;
pub mod legacy;
mod reading;
pub mod routine;

pub use reading::{
    check_values, Reading, ReadingError, ReadingOutcome, MAX_CLOCK_SKEW_MS, MAX_LUX, MAX_WATTS,
    SEEN_WINDOW,
};

use cycle::Cycle;
use routine::Routine;

/// Reference days that may have been as quiet as the current quiet for it
/// to still count as usual (the ATTENTION deferral through usual quiet).
pub const USUAL_QUIET_MISSES: u8 = 0;
/// How long past the latest end of such a quiet on the reference days the
/// deferred ATTENTION waits (a little later than ever is still usual).
pub const USUAL_QUIET_MARGIN_MS: i64 = 60 * MINUTE_MS;

/// Something the engine wants the outside world to know.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Effect {
    Incident(HouseholdEvent),
    /// Activity during an absence ended it early; the registry should record it.
    AbsenceEndedEarly {
        starts_at: Ts,
        at: Ts,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Open {
    kind: IncidentKind,
    stage: Stage,
    since: Ts,
}

/// Per-plug memory: the newest reading and which recent sequences were seen.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct PlugState {
    device: u64,
    last_at: Ts,
    last_seq: u64,
    /// Bit i set = sequence `last_seq - i` was seen.
    seen: u64,
    watts: f32,
    lux: f32,
    cycle: Cycle,
}

/// The state of one household. Time and configuration come in as arguments.
/// Serializable so the monitor can snapshot it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HouseholdState {
    last_power_change: Ts,
    last_light_change: Ts,
    last_reading: Ts,
    /// Episode start of the last inactivity incident that closed: a later
    /// episode never starts at or before it (its id would be reused).
    last_closed: Ts,
    open: Option<Open>,
    plugs: SmallVec<[PlugState; 1]>,
    routine: Routine,
}

/// How a stage's deadline was set.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Due {
    Fixed,
    /// ATTENTION deferred to the end of the sleep window.
    SleepWindow,
    /// ATTENTION deferred to the end of the home's usual quiet.
    UsualQuiet,
    /// ATTENTION raised early by the learned routine.
    Routine(RoutineEvidence),
}

fn device_hash(id: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(id.as_bytes())
}

/// The change from `prev` to `now` if it is beyond `floor`.
fn change(prev: f32, now: Option<f32>, floor: f32) -> Option<f32> {
    match now {
        Some(v) if !prev.is_nan() && (v - prev).abs() > floor => Some(v - prev),
        _ => None,
    }
}

fn changed(prev: f32, now: Option<f32>, floor: f32) -> bool {
    change(prev, now, floor).is_some()
}

impl HouseholdState {
    /// A household whose clocks all start at `start` (its registration, or the
    /// moment monitoring began).
    pub fn new(start: Ts) -> Self {
        Self {
            last_power_change: start,
            last_light_change: start,
            last_reading: start,
            last_closed: Ts::MIN,
            open: None,
            plugs: SmallVec::new(),
            routine: Routine::default(),
        }
    }

    /// The household's last activity under its rule (before absences).
    pub fn last_activity(&self, rule: ActivityRule) -> Ts {
        let (p, l) = (self.last_power_change, self.last_light_change);
        match rule {
            ActivityRule::PowerOrLight => p.max(l),
            ActivityRule::PowerAndLight => p.min(l),
            ActivityRule::PowerOnly => p,
            ActivityRule::LightOnly => l,
        }
    }

    /// Newest reading time from any plug.
    pub fn last_reading(&self) -> Ts {
        self.last_reading
    }

    /// The open incident, if any: kind, stage and episode start.
    pub fn open_incident(&self) -> Option<(IncidentKind, Stage, Ts)> {
        self.open.map(|o| (o.kind, o.stage, o.since))
    }

    /// The open incident as an `Opened` event at its current stage, due at
    /// `now`: used to re-announce an incident whose events were held back
    /// (an area outage absorbed it and then ended without it).
    pub fn describe_open(&self, cfg: &HouseholdConfig, now: Ts) -> Option<HouseholdEvent> {
        let open = self.open?;
        let q = self.quiet_since(cfg, now);
        Some(HouseholdEvent {
            kind: open.kind,
            event: EventType::Opened,
            stage: open.stage,
            episode_start: open.since,
            due_at: now,
            reason: self.reason(cfg, open, q),
        })
    }

    fn absence_in_force<'c>(&self, cfg: &'c HouseholdConfig, at: Ts) -> Option<&'c Absence> {
        let a = self.last_activity(cfg.rule);
        cfg.absences
            .iter()
            .find(|x| x.starts_at <= at && at < x.ends_at && a < x.starts_at)
    }

    /// End of the latest absence that expired by `at` (and was not ended early).
    fn expired_absence_end(&self, cfg: &HouseholdConfig, at: Ts) -> Ts {
        let a = self.last_activity(cfg.rule);
        cfg.absences
            .iter()
            .filter(|x| a < x.starts_at && x.ends_at <= at)
            .map(|x| x.ends_at)
            .fold(Ts::MIN, Ts::max)
    }

    /// Start of the quiet period at `at`: the last activity, or the end of an
    /// absence that expired since.
    pub fn quiet_since(&self, cfg: &HouseholdConfig, at: Ts) -> Ts {
        self.last_activity(cfg.rule)
            .max(self.expired_absence_end(cfg, at))
    }

    /// Start of the silence (no readings) at `at`: the newest reading, or the
    /// end of an absence that expired since (an unplugged plug while away is
    /// expected).
    fn silent_since(&self, cfg: &HouseholdConfig, at: Ts) -> Ts {
        self.last_reading.max(self.expired_absence_end(cfg, at))
    }

    fn is_offline(&self, cfg: &HouseholdConfig, at: Ts) -> bool {
        at.since(self.silent_since(cfg, at)) >= cfg.offline_after_ms()
    }

    /// When `stage` falls due for a quiet period starting at `q`, and how
    /// that deadline was set: the fixed threshold, deferred by the sleep
    /// window (ATTENTION only), or brought forward by the learned routine
    /// (ATTENTION only, never later than the fixed deadline).
    fn stage_due(&self, cfg: &HouseholdConfig, q: Ts, stage: Stage) -> (Ts, Due) {
        let due = q.plus_minutes(cfg.thresholds.minutes(stage));
        if stage != Stage::Attention {
            return (due, Due::Fixed);
        }
        let caution = q.plus_minutes(cfg.thresholds.caution_minutes);
        let (mut fixed, mut how) = match cfg.sleep_window.and_then(|w| w.end_after(due)) {
            Some(end) => (end.min(caution), Due::SleepWindow),
            None => (due, Due::Fixed),
        };
        let sensitivity = cfg.learning.routine;
        if cfg.learning.defer_through_usual_quiet && sensitivity.one_in_days().is_some() {
            // While as quiet as this home has been on other days, the fixed
            // ATTENTION waits (never past CAUTION); a home the plug shows
            // little of waits for CAUTION.
            let until = match self
                .routine
                .usual_until(q, self.today(), USUAL_QUIET_MISSES)
            {
                Some(t) if t.since(q) >= routine::MAX_SPAN_HOURS * HOUR_MS => Some(caution),
                other => other.map(|t| t.plus_ms(USUAL_QUIET_MARGIN_MS)),
            };
            if let Some(until) = until.filter(|u| *u > fixed) {
                (fixed, how) = (until.min(caution), Due::UsualQuiet);
            }
        }
        if let Some(days) = sensitivity.one_in_days() {
            let max_chance = 1.0 / f64::from(days);
            if let Some((at, evidence)) =
                self.routine
                    .break_due(q, self.today(), max_chance, sensitivity.allowed_misses())
            {
                if at < fixed {
                    return (at, Due::Routine(evidence));
                }
            }
        }
        (fixed, how)
    }

    /// The routine's current day: the day of the newest reading.
    fn today(&self) -> i64 {
        self.last_reading.kst_day_number()
    }

    /// A reading observed at `t`: the newest reading (and the routine's
    /// day) move forward to it.
    fn saw_reading(&mut self, t: Ts) {
        if t > self.last_reading {
            let from = self.today();
            self.last_reading = t;
            self.routine.roll(from, self.today());
        }
    }

    fn reason(&self, cfg: &HouseholdConfig, open: Open, q: Ts) -> Reason {
        let Open { kind, stage, since } = open;
        let (p, l) = (self.last_power_change, self.last_light_change);
        let code = match (kind, cfg.rule) {
            (IncidentKind::DeviceOffline, _) => ReasonCode::NoReadings,
            (_, ActivityRule::PowerOrLight) => ReasonCode::NoPowerOrLightChange,
            (_, ActivityRule::PowerOnly) => ReasonCode::NoPowerChange,
            (_, ActivityRule::LightOnly) => ReasonCode::NoLightChange,
            (_, ActivityRule::PowerAndLight) if p <= l => ReasonCode::NoPowerChange,
            (_, ActivityRule::PowerAndLight) => ReasonCode::NoLightChange,
        };
        let (quiet_since, threshold_minutes, how) = match stage {
            // A device-offline incident before it became a welfare risk: silent since its start.
            Stage::Normal => (since, cfg.offline_after_minutes, Due::Fixed),
            s => {
                let (due, how) = self.stage_due(cfg, q, s);
                let minutes = match how {
                    Due::Routine(_) => (due.since(q) / MINUTE_MS) as u32,
                    _ => cfg.thresholds.minutes(s),
                };
                (q, minutes, how)
            }
        };
        let (code, routine) = match how {
            Due::Routine(e) if kind == IncidentKind::Inactivity => {
                (ReasonCode::RoutineBreak, Some(e))
            }
            _ => (code, None),
        };
        Reason {
            code,
            rule: cfg.rule,
            quiet_since,
            threshold_minutes,
            last_power_change: p,
            last_light_change: l,
            last_reading: self.last_reading,
            deferred_by_sleep_window: matches!(how, Due::SleepWindow | Due::UsualQuiet),
            routine,
        }
    }

    fn emit(
        &self,
        cfg: &HouseholdConfig,
        open: Open,
        event: EventType,
        due_at: Ts,
        q: Ts,
        out: &mut Vec<Effect>,
    ) {
        out.push(Effect::Incident(HouseholdEvent {
            kind: open.kind,
            event,
            stage: open.stage,
            episode_start: open.since,
            due_at,
            reason: self.reason(cfg, open, q),
        }));
    }

    fn closed(&mut self, open: Open) {
        if open.kind == IncidentKind::Inactivity {
            self.last_closed = self.last_closed.max(open.since);
        }
    }

    /// Raises the open incident through every welfare stage due by `now`.
    fn raise(&mut self, cfg: &HouseholdConfig, q: Ts, now: Ts, out: &mut Vec<Effect>) {
        let Some(mut open) = self.open else { return };
        for stage in Stage::WELFARE {
            if stage <= open.stage {
                continue;
            }
            let (due, _) = self.stage_due(cfg, q, stage);
            if due > now {
                break;
            }
            // An inactivity incident exists only from its first welfare stage on.
            let first = open.kind == IncidentKind::Inactivity && open.stage == Stage::Normal;
            open.stage = stage;
            self.open = Some(open);
            let ev = if first {
                EventType::Opened
            } else {
                EventType::StageRaised
            };
            self.emit(cfg, open, ev, due, q, out);
        }
    }

    /// Brings the household up to date at `now`: opens, raises, recovers or
    /// suppresses its incident. Idempotent: a second call at the same `now`
    /// emits nothing.
    pub fn evaluate(&mut self, cfg: &HouseholdConfig, now: Ts, out: &mut Vec<Effect>) {
        if cfg.devices.is_empty() {
            return;
        }
        let q = self.quiet_since(cfg, now);
        if let Some(absence) = self.absence_in_force(cfg, now) {
            if let Some(open) = self.open.take() {
                self.closed(open);
                let cause = EventType::Suppressed(SuppressionCause::Absence);
                self.emit(cfg, open, cause, absence.starts_at, q, out);
            }
            return;
        }
        if let Some(open) = self.open {
            match open.kind {
                IncidentKind::Inactivity if q > open.since => {
                    self.open = None;
                    self.closed(open);
                    let a = self.last_activity(cfg.rule);
                    if a > open.since {
                        self.emit(cfg, open, EventType::Recovered, a, q, out);
                    } else {
                        // The clock restarted because an absence expired.
                        let cause = EventType::Suppressed(SuppressionCause::Absence);
                        self.emit(cfg, open, cause, q, q, out);
                    }
                }
                IncidentKind::DeviceOffline if !self.is_offline(cfg, now) => {
                    self.open = None;
                    self.emit(cfg, open, EventType::Recovered, self.last_reading, q, out);
                }
                _ => {}
            }
        }
        if self.open.is_none() {
            if self.is_offline(cfg, now) {
                let since = self.silent_since(cfg, now);
                let open = Open {
                    kind: IncidentKind::DeviceOffline,
                    stage: Stage::Normal,
                    since,
                };
                self.open = Some(open);
                let due = since.plus_ms(cfg.offline_after_ms());
                self.emit(cfg, open, EventType::Opened, due, q, out);
            } else if self.stage_due(cfg, q, Stage::Attention).0 <= now {
                self.open = Some(Open {
                    kind: IncidentKind::Inactivity,
                    stage: Stage::Normal,
                    // Only a configuration change (e.g. OR → AND) can move the
                    // quiet start back to or before a closed episode's start;
                    // the new episode then gets its own id, 1 ms later.
                    since: q.max(self.last_closed.plus_ms(1)),
                });
            }
        }
        self.raise(cfg, q, now, out);
    }

    /// The next instant at which [`evaluate`](Self::evaluate) has something to
    /// do if no reading arrives before it; `None` if nothing is pending. Always
    /// later than `now` after `evaluate(now)`.
    pub fn next_deadline(&self, cfg: &HouseholdConfig, now: Ts) -> Option<Ts> {
        if cfg.devices.is_empty() {
            return None;
        }
        if let Some(absence) = self.absence_in_force(cfg, now) {
            return Some(absence.ends_at);
        }
        let q = self.quiet_since(cfg, now);
        let mut next = Ts::MAX;
        let stage = match self.open {
            None => {
                let silent = self.silent_since(cfg, now);
                next = next.min(silent.plus_ms(cfg.offline_after_ms()));
                Stage::Normal
            }
            Some(o) => {
                // An absence starting later suppresses the open incident then.
                let a = self.last_activity(cfg.rule);
                if let Some(s) = cfg
                    .absences
                    .iter()
                    .filter(|x| x.starts_at > now && a < x.starts_at)
                    .map(|x| x.starts_at)
                    .min()
                {
                    next = next.min(s);
                }
                o.stage
            }
        };
        if let Some(s) = Stage::WELFARE.into_iter().find(|s| *s > stage) {
            next = next.min(self.stage_due(cfg, q, s).0);
        }
        // An absence expiring restarts the quiet clock.
        let a = self.last_activity(cfg.rule);
        if let Some(e) = cfg
            .absences
            .iter()
            .filter(|x| a < x.starts_at && x.ends_at > now)
            .map(|x| x.ends_at)
            .min()
        {
            next = next.min(e);
        }
        (next < Ts::MAX).then_some(next)
    }

    /// Takes one reading observed by one of the household's plugs, processed at
    /// `now`, and evaluates the household. Rejected readings change nothing.
    pub fn on_reading(
        &mut self,
        cfg: &HouseholdConfig,
        r: &Reading<'_>,
        now: Ts,
        out: &mut Vec<Effect>,
    ) -> Result<ReadingOutcome, ReadingError> {
        if cfg.device_index(r.device_id).is_none() {
            return Err(ReadingError::UnknownDevice(r.device_id.to_string()));
        }
        let ahead_ms = r.observed_at.since(now);
        if ahead_ms > MAX_CLOCK_SKEW_MS {
            return Err(ReadingError::FromTheFuture { ahead_ms });
        }
        check_values(r.watts, r.lux)?;
        let absence_before = self.absence_in_force(cfg, now).map(|a| a.starts_at);
        let device = device_hash(r.device_id);
        let noise = cfg.noise;
        let idx = match self.plugs.iter().position(|p| p.device == device) {
            Some(i) => i,
            None => {
                self.plugs.push(PlugState {
                    device,
                    last_at: r.observed_at,
                    last_seq: r.sequence,
                    seen: 1,
                    watts: r.watts.unwrap_or(f32::NAN),
                    lux: r.lux.unwrap_or(f32::NAN),
                    cycle: Cycle::default(),
                });
                self.saw_reading(r.observed_at);
                self.evaluate(cfg, now, out);
                return Ok(ReadingOutcome::Fresh { activity: false });
            }
        };
        let activity_before = self.last_activity(cfg.rule);
        let automatic = cfg.learning.recognise_automatic_loads;
        let plug = &mut self.plugs[idx];
        let key = (r.observed_at, r.sequence);
        let last = (plug.last_at, plug.last_seq);
        let (power, light, outcome);
        if key > last {
            // Every edge teaches the plug's cycle; its own switching is not
            // activity when automatic loads are recognised.
            power = change(plug.watts, r.watts, noise.watts)
                .is_some_and(|d| !plug.cycle.edge(r.observed_at, d, noise.watts) || !automatic);
            light = changed(plug.lux, r.lux, noise.lux);
            if r.sequence > plug.last_seq {
                let shift = r.sequence - plug.last_seq;
                plug.seen = if shift >= SEEN_WINDOW {
                    0
                } else {
                    plug.seen << shift
                };
                plug.seen |= 1;
            } else {
                // Time moved on but the counter went down: the plug rebooted.
                plug.seen = 1;
            }
            plug.last_at = r.observed_at;
            plug.last_seq = r.sequence;
            if let Some(w) = r.watts {
                plug.watts = w;
            }
            if let Some(l) = r.lux {
                plug.lux = l;
            }
            if power {
                self.last_power_change = self.last_power_change.max(r.observed_at);
            }
            if light {
                self.last_light_change = self.last_light_change.max(r.observed_at);
            }
            self.saw_reading(r.observed_at);
            outcome = ReadingOutcome::Fresh {
                activity: power || light,
            };
        } else {
            let behind = plug.last_seq.wrapping_sub(r.sequence);
            if key == last || r.sequence > plug.last_seq || behind >= SEEN_WINDOW {
                return Ok(ReadingOutcome::Duplicate);
            }
            let bit = 1u64 << behind;
            if plug.seen & bit != 0 {
                return Ok(ReadingOutcome::Duplicate);
            }
            plug.seen |= bit;
            // A change between this reading and the newest one happened by
            // then (unless the plug's load is automatic: its own switching).
            power = changed(plug.watts, r.watts, noise.watts)
                && !(automatic && plug.cycle.recognised());
            light = changed(plug.lux, r.lux, noise.lux);
            let at = plug.last_at;
            if power {
                self.last_power_change = self.last_power_change.max(at);
            }
            if light {
                self.last_light_change = self.last_light_change.max(at);
            }
            outcome = ReadingOutcome::Late {
                activity: power || light,
            };
            if !(power || light) {
                return Ok(outcome);
            }
        }
        let activity = self.last_activity(cfg.rule);
        if activity > activity_before {
            let today = self.today();
            self.routine.active(activity, today);
        }
        if let Some(starts_at) = absence_before {
            if self.absence_in_force(cfg, now).is_none() {
                let at = self.last_activity(cfg.rule);
                out.push(Effect::AbsenceEndedEarly { starts_at, at });
            }
        }
        self.evaluate(cfg, now, out);
        Ok(outcome)
    }

    /// Applies a new configuration: forgets plugs no longer registered and
    /// re-evaluates (thresholds, rule or absences may have changed).
    ///
    /// A change that moves the quiet start backwards (a rule change from
    /// `PowerOrLight` to `PowerAndLight`, a removed absence) keeps an open
    /// incident as it is; after an incident has closed, a new episode starts
    /// at least 1 ms after the closed one's start, so it never reuses its id.
    pub fn apply_config(&mut self, cfg: &HouseholdConfig, now: Ts, out: &mut Vec<Effect>) {
        self.plugs.retain(|p| {
            cfg.devices
                .iter()
                .any(|d| device_hash(d.as_str()) == p.device)
        });
        self.evaluate(cfg, now, out);
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_learning;
