//! What the monitor feeds a shard: `care.households` records (register,
//! update, remove a household; its area membership follows) and
//! `plug.readings` records (decoded, checked against the clocks, applied to
//! the household's state). Each record's effects go on to `outage.rs`.

use crate::*;
use dolbom_engine::{Reading, ReadingError, ReadingOutcome};
use prost::Message;

impl Shard {
    // ── configuration ────────────────────────────────────────────────────

    /// A `care.households` record: a `dolbom.v1.HouseholdConfig`, or a
    /// tombstone (`None`) that removes the household named by the key.
    pub fn on_config_bytes(
        &mut self,
        key: &[u8],
        payload: Option<&[u8]>,
        wall_now: Ts,
        out: &mut Vec<Output>,
    ) -> Result<(), Rejection> {
        let key = std::str::from_utf8(key).map_err(|e| Rejection::Malformed {
            what: "household key",
            detail: e.to_string(),
        })?;
        let Some(bytes) = payload else {
            self.remove(key);
            return Ok(());
        };
        let wire = pb::HouseholdConfig::decode(bytes).map_err(|e| Rejection::Malformed {
            what: "dolbom.v1.HouseholdConfig",
            detail: e.to_string(),
        })?;
        let cfg = HouseholdConfig::try_from(&wire)?;
        if cfg.household_id.as_str() != key {
            return Err(Rejection::KeyMismatch {
                key: key.to_string(),
                household: cfg.household_id.to_string(),
            });
        }
        self.apply_config(cfg, wall_now, out)
    }

    /// Registers a household or updates it. Versions only move forward.
    pub fn apply_config(
        &mut self,
        cfg: HouseholdConfig,
        wall_now: Ts,
        out: &mut Vec<Output>,
    ) -> Result<(), Rejection> {
        let applied = self.apply_config_here(cfg, wall_now, out);
        self.report_areas();
        applied
    }

    fn apply_config_here(
        &mut self,
        cfg: HouseholdConfig,
        wall_now: Ts,
        out: &mut Vec<Output>,
    ) -> Result<(), Rejection> {
        cfg.validate()?;
        let now = self.fired_to;
        if let Some(slot) = self.lookup(cfg.household_id.as_str()) {
            let have = self.entity(slot).cfg.version;
            if cfg.version < have {
                return Err(Rejection::StaleConfig {
                    household: cfg.household_id.to_string(),
                    got: cfg.version,
                    have,
                });
            }
            let area = self.area_for(&cfg);
            if area != self.entity(slot).area {
                self.leave_area(slot, wall_now, out);
                let e = self.entity_mut(slot);
                e.area = area;
                self.areas[area as usize].households += 1;
                self.area_changed(area);
            }
            let mut effects = std::mem::take(&mut self.effects);
            let e = self.entity_mut(slot);
            e.cfg = cfg;
            e.state.apply_config(&e.cfg, now, &mut effects);
            self.after_effects(slot, now, wall_now, &mut effects, out);
            self.effects = effects;
            return Ok(());
        }
        let start = match self.opts.clock {
            ClockMode::Wall => wall_now,
            ClockMode::Event => self.event_max.unwrap_or(cfg.registered_at),
        }
        .max(cfg.registered_at);
        let area = self.area_for(&cfg);
        self.areas[area as usize].households += 1;
        self.area_changed(area);
        let entity = Entity {
            state: HouseholdState::new(start),
            cfg,
            scheduled: NEVER,
            queued: NEVER,
            area,
            absorbed: false,
            offline_open: false,
        };
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = Some(entity);
                s
            }
            None => {
                self.slots.push(Some(entity));
                (self.slots.len() - 1) as u32
            }
        };
        index_insert(&mut self.index, &self.slots, slot);
        self.households += 1;
        let mut effects = std::mem::take(&mut self.effects);
        let e = self.entity_mut(slot);
        e.state.evaluate(&e.cfg, now.max(start), &mut effects);
        self.after_effects(slot, now.max(start), wall_now, &mut effects, out);
        self.effects = effects;
        Ok(())
    }

    /// Stops monitoring a household (deregistered).
    pub fn remove(&mut self, household: &str) -> bool {
        let Some(slot) = self.lookup(household) else {
            return false;
        };
        let (area, offline_open) = {
            let e = self.entity(slot);
            (e.area, e.offline_open)
        };
        let a = &mut self.areas[area as usize];
        a.households -= 1;
        if offline_open {
            a.offline -= 1;
        }
        self.area_changed(area);
        self.pending.retain(|p| p.slot != slot);
        if let Ok(entry) = self.index.find_entry(hash_id(household), |&s| s == slot) {
            entry.remove();
        }
        self.slots[slot as usize] = None;
        self.free.push(slot);
        self.households -= 1;
        self.report_areas();
        true
    }

    fn area_for(&mut self, cfg: &HouseholdConfig) -> u32 {
        let id = match (&cfg.building_id, self.opts.area.by_building) {
            (Some(b), true) => format!("{}/{}", cfg.dong, b),
            _ => cfg.dong.to_string(),
        };
        if let Some(&i) = self.area_index.get(&id) {
            return i;
        }
        let i = self.areas.len() as u32;
        self.areas
            .push(Area::new(id.clone(), cfg.municipality, cfg.dong));
        self.area_index.insert(id, i);
        i
    }

    fn leave_area(&mut self, slot: u32, wall_now: Ts, out: &mut Vec<Output>) {
        let now = self.fired_to;
        let e = self.entity_mut(slot);
        let (area, absorbed, offline) = (e.area, e.absorbed, e.offline_open);
        e.absorbed = false;
        e.offline_open = false;
        let a = &mut self.areas[area as usize];
        a.households -= 1;
        if offline {
            a.offline -= 1;
        }
        self.area_changed(area);
        if absorbed {
            self.announce(slot, now, wall_now, out);
        }
    }

    // ── readings ─────────────────────────────────────────────────────────

    /// Marks that input arrived (any record, accepted or not): the pipeline is alive.
    pub fn note_input(&mut self, wall_now: Ts) {
        self.health.last_input_wall = self.health.last_input_wall.max(wall_now);
        self.last_input_elapsed = self.elapsed.at(wall_now);
    }

    /// A `plug.readings` record. `key` is the record key (the household id),
    /// when there is one; `sent_at` the record's Kafka timestamp, when it has
    /// one (see [`Shard::on_reading_sent`]).
    pub fn on_reading_bytes(
        &mut self,
        key: Option<&[u8]>,
        payload: &[u8],
        sent_at: Option<Ts>,
        wall_now: Ts,
        out: &mut Vec<Output>,
    ) -> Result<ReadingOutcome, Rejection> {
        self.note_input(wall_now);
        let r = pb::PlugReading::decode(payload).map_err(|e| Rejection::Malformed {
            what: "dolbom.v1.PlugReading",
            detail: e.to_string(),
        })?;
        if let Some(k) = key {
            if !r.household_id.is_empty() && k != r.household_id.as_bytes() {
                return Err(Rejection::KeyMismatch {
                    key: String::from_utf8_lossy(k).into_owned(),
                    household: r.household_id,
                });
            }
        }
        self.on_reading_sent(&r, sent_at, wall_now, out)
    }

    /// One decoded reading without a send time.
    pub fn on_reading(
        &mut self,
        r: &pb::PlugReading,
        wall_now: Ts,
        out: &mut Vec<Output>,
    ) -> Result<ReadingOutcome, Rejection> {
        self.on_reading_sent(r, None, wall_now, out)
    }

    /// When a reading counts on the wall clock. A plug's clock is cheap and
    /// drifts; one running ahead must neither push the partition's watermark
    /// (firing its neighbours' deadlines early) nor be dropped (its home would
    /// look offline). A reading cannot have been observed after it was sent,
    /// so one stamped after `sent_at` (the record's Kafka timestamp: the
    /// broker's clock with LogAppendTime, the gateway's with CreateTime)
    /// counts at `sent_at`. Without a send time, one stamped up to
    /// [`MAX_CLOCK_SKEW_MS`] ahead of the monitor's clock counts at the
    /// monitor's clock. The decision uses the record alone where it can, so a
    /// replay decides the same (incident ids stay the same). Returns the time
    /// and how far the stamp was ahead.
    fn reading_time(observed: Ts, sent_at: Option<Ts>, wall_now: Ts) -> (Ts, i64) {
        match sent_at {
            Some(sent) if observed > sent => (sent, observed.since(sent)),
            Some(_) => (observed, 0),
            None if observed > wall_now && observed.since(wall_now) <= MAX_CLOCK_SKEW_MS => {
                (wall_now, observed.since(wall_now))
            }
            None => (observed, 0),
        }
    }

    /// A reading replayed after a restore, on the clock it was live on: the
    /// shard's wall clock is the record's send time (its Kafka timestamp),
    /// and the partition counts as caught up, as it was live. So the
    /// deadlines that fell due before the record was sent fire before it is
    /// applied — as they did live — and a replay neither skips an opening
    /// (whose RECOVERED would then never come) nor reads a lag that was not
    /// there as a stall. The caller stops replaying once it has read to the
    /// partition's end and returns to [`Shard::advance`] on its own clock.
    pub fn on_reading_replayed(
        &mut self,
        r: &pb::PlugReading,
        sent_at: Ts,
        out: &mut Vec<Output>,
    ) -> Result<ReadingOutcome, Rejection> {
        self.replayed(sent_at, out, |s, out| {
            s.on_reading_sent(r, Some(sent_at), sent_at, out)
        })
    }

    /// [`Shard::on_reading_bytes`] for a replayed record (see
    /// [`Shard::on_reading_replayed`]).
    pub fn on_reading_bytes_replayed(
        &mut self,
        key: Option<&[u8]>,
        payload: &[u8],
        sent_at: Ts,
        out: &mut Vec<Output>,
    ) -> Result<ReadingOutcome, Rejection> {
        self.replayed(sent_at, out, |s, out| {
            s.on_reading_bytes(key, payload, Some(sent_at), sent_at, out)
        })
    }

    /// Applies a replayed record at `sent_at` as the live run did: the live
    /// ticks before it moved the clock to `sent_at`, the record was applied,
    /// and the tick after it moved the clock again.
    ///
    /// A silence before the record longer than `stall_after` stalled the
    /// live run: its ticks first fired by the wall clock into the silence
    /// (up to [`QUIET_PARTITION_INPUT_MS`] past the last input), then one
    /// noticed the stall and froze firing there. The replay ticks once at
    /// the last moment the silence was not yet a stall, so it freezes at the
    /// same point: otherwise a deadline fired live inside the silence (and
    /// published before a crash) would not fire in the replay — the
    /// household reports after the silence — and its incident would never
    /// be closed. The silence is counted from the snapshot's last input for
    /// the first record replayed.
    fn replayed<T>(
        &mut self,
        sent_at: Ts,
        out: &mut Vec<Output>,
        apply: impl FnOnce(&mut Self, &mut Vec<Output>) -> T,
    ) -> T {
        if let Some(t) = self.replay_from_input.take() {
            self.health.last_input_wall = t;
            if t != Ts::MIN {
                self.elapsed = Elapsed {
                    last_wall: Some(t),
                    ms: 0,
                };
                self.last_input_elapsed = 0;
            }
        }
        self.caught_up = true;
        let last_input = self.health.last_input_wall;
        if last_input != Ts::MIN && self.health.stalled.is_none() {
            let not_yet_stalled = last_input.plus_ms(self.opts.stall_after_ms);
            if sent_at > not_yet_stalled {
                self.advance(not_yet_stalled, out);
            }
        }
        self.advance(sent_at, out);
        let r = apply(self, out);
        self.advance(sent_at, out);
        r
    }

    /// One decoded reading; `sent_at` is when it was sent, if known.
    pub fn on_reading_sent(
        &mut self,
        r: &pb::PlugReading,
        sent_at: Option<Ts>,
        wall_now: Ts,
        out: &mut Vec<Output>,
    ) -> Result<ReadingOutcome, Rejection> {
        let taken = self.take_reading(r, sent_at, wall_now, out);
        self.report_areas();
        taken
    }

    fn take_reading(
        &mut self,
        r: &pb::PlugReading,
        sent_at: Option<Ts>,
        wall_now: Ts,
        out: &mut Vec<Output>,
    ) -> Result<ReadingOutcome, Rejection> {
        let mut observed = Ts(r.observed_at_ms);
        let wall = self.opts.clock == ClockMode::Wall;
        let mut retimed_by = 0;
        if wall {
            (observed, retimed_by) = Self::reading_time(observed, sent_at, wall_now);
        }
        // Still ahead of the monitor's clock: the record itself was sent in
        // the monitor's future, so it is the monitor's clock that is behind.
        if wall && observed.since(wall_now) > MAX_CLOCK_SKEW_MS {
            // Not input: if every reading is "from the future" (the
            // monitor's own clock went back), the partition stalls and SRE
            // hears of it, instead of silently firing nothing.
            return Err(ReadingError::FromTheFuture {
                ahead_ms: observed.since(wall_now),
            }
            .into());
        }
        self.note_input(wall_now);
        if r.household_id.is_empty() {
            return Err(Rejection::MissingHousehold);
        }
        let slot = self
            .lookup(&r.household_id)
            .ok_or_else(|| Rejection::UnknownHousehold(r.household_id.clone()))?;
        if retimed_by > RETIME_REPORT_MS {
            self.stats.readings_retimed += 1;
        }
        let watts = convert::reading_watts(r);
        let reading = Reading {
            device_id: &r.device_id,
            observed_at: observed,
            sequence: r.sequence,
            watts: watts.map(|w| w as f32),
            lux: r.lux.map(|l| l as f32),
        };
        let now = self.engine_now(observed);
        let mut effects = std::mem::take(&mut self.effects);
        let e = self.slots[slot as usize].as_mut().expect("live slot");
        let result = e.state.on_reading(&e.cfg, &reading, now, &mut effects);
        if result.is_ok() {
            self.event_max = Some(self.event_max.map_or(observed, |m| m.max(observed)));
        }
        self.after_effects(slot, now, wall_now, &mut effects, out);
        self.effects = effects;
        Ok(result?)
    }
}
