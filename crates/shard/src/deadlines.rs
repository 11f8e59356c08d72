//! Time: each advance checks the partition's health (a stall freezes firing
//! and tells SRE), fires the deadlines the watermark has passed from the
//! timer wheel, sweeps the coming minute of stale wheel entries, and turns
//! a household's engine effects into outputs.

use crate::*;

impl Shard {
    // ── time ─────────────────────────────────────────────────────────────

    /// Checks the partition's health and fires every deadline the watermark
    /// has passed. Call after each batch of records and on a regular tick.
    pub fn advance(&mut self, wall_now: Ts, out: &mut Vec<Output>) {
        self.advance_here(wall_now, out);
        self.report_areas();
    }

    fn advance_here(&mut self, wall_now: Ts, out: &mut Vec<Output>) {
        self.check_health(wall_now, out);
        let lateness = self.opts.allowed_lateness_ms;
        let by_wall = (self.opts.clock == ClockMode::Wall
            && self.caught_up
            && self.health.stalled.is_none()
            && self.health.grace.is_none())
        .then(|| {
            let heard = self
                .health
                .last_input_wall
                .plus_ms(QUIET_PARTITION_INPUT_MS);
            // Nor more than that past the plugs' own newest time: a monitor
            // clock running ahead must not fire deadlines early.
            let plugs = self
                .event_max
                .map_or(Ts::MIN, |e| e.plus_ms(QUIET_PARTITION_INPUT_MS));
            wall_now.min(heard).min(plugs).plus_ms(-lateness)
        });
        let by_event = self.event_max.map(|e| e.plus_ms(-lateness));
        let Some(mut limit) = by_event.max(by_wall) else {
            return;
        };
        let event_max = self.event_max.unwrap_or(Ts::MIN);
        if let Some((frozen, _)) = self.health.stalled {
            limit = limit.min(frozen);
        } else if let Some((frozen, until)) = self.health.grace {
            if event_max < until {
                limit = limit.min(frozen);
            } else {
                self.health.grace = None;
            }
        }
        if limit > self.fired_to {
            self.fire_due(limit, wall_now, out);
            self.fired_to = limit;
            if let Some(b) = &self.board {
                b.progress(self.partition, limit);
            }
        }
        self.recheck_areas(wall_now, out);
        self.flush_pending(self.fired_to, wall_now, out);
        self.sweep_ahead();
    }

    /// Clears the coming minute of the wheel of stale entries, paced so
    /// that each second's bucket is swept by the time it comes due: a
    /// bucket then holds (nearly) only real deadlines when it fires, however
    /// many households once queued into it (see `wheel.rs`). An entry stays
    /// if its household is due in that bucket (or earlier); the household's
    /// earliest entry moves to its real deadline; any other is dropped —
    /// exactly what [`Shard::fire_due`] would do with it, ahead of time.
    fn sweep_ahead(&mut self) {
        if self.fired_to == Ts::MIN || self.wheel.is_empty() {
            return;
        }
        let after = self.fired_to.millis();
        let through = after.saturating_add(self.sweep_ahead_ms);
        let budget = self.wheel.pace(after, through).max(self.sweep_min);
        let slots = &mut self.slots;
        self.wheel.sweep(after, through, budget, |slot, bucket_ms| {
            let Some(e) = slots[slot as usize].as_mut() else {
                return Swept::Drop; // removed household
            };
            let bucket = bucket_ms.div_euclid(1000);
            if e.scheduled != NEVER && e.scheduled.millis().div_euclid(1000) <= bucket {
                return Swept::Keep;
            }
            let earliest = e.queued != NEVER && e.queued.millis().div_euclid(1000) == bucket;
            if !earliest {
                return Swept::Drop;
            }
            e.queued = e.scheduled;
            if e.scheduled == NEVER {
                Swept::Drop
            } else {
                Swept::Move(e.scheduled.millis())
            }
        });
    }

    fn check_health(&mut self, wall_now: Ts, out: &mut Vec<Output>) {
        let silent_ms = self.elapsed.at(wall_now) - self.last_input_elapsed;
        let idle = self.households > 0 && silent_ms > self.opts.stall_after_ms;
        let lagging = self.opts.clock == ClockMode::Wall
            && self.opts.max_event_lag_ms > 0
            && self
                .event_max
                .is_some_and(|e| wall_now.since(e) > self.opts.max_event_lag_ms);
        let unhealthy = idle || lagging;
        match (self.health.stalled, unhealthy) {
            (None, true) => {
                let frozen = self.fired_to;
                let due = if idle {
                    self.health
                        .last_input_wall
                        .plus_ms(self.opts.stall_after_ms)
                } else {
                    wall_now
                };
                // Where firing froze names the stall, so a replay names it
                // the same; a partition that never fired names it by when
                // the silence became one.
                let episode = if frozen == Ts::MIN { due } else { frozen };
                // Two stalls in one grace (the pipeline came back for a
                // moment) freeze at the same point; the same id twice would
                // be dropped downstream as a duplicate and SRE would not
                // hear of the second.
                let episode = match self.health.last_stall {
                    Some(last) if episode <= last => last.plus_ms(1),
                    _ => episode,
                };
                self.health.last_stall = Some(episode);
                self.health.stalled = Some((frozen, episode));
                self.health.grace = None;
                self.stats.stalls += 1;
                let ev = self.stall_event(EventType::Opened, episode, due, wall_now);
                self.publish(ev, out);
            }
            (Some((frozen, episode)), false) => {
                self.health.stalled = None;
                let resumed = self.event_max.unwrap_or(frozen);
                self.health.grace = Some((frozen, resumed.plus_ms(self.opts.resume_grace_ms)));
                let ev = self.stall_event(EventType::Recovered, episode, wall_now, wall_now);
                self.publish(ev, out);
            }
            _ => {}
        }
    }

    /// This partition's PIPELINE_STALL incident event (routed to SRE).
    fn stall_event(
        &self,
        event: EventType,
        episode: Ts,
        due: Ts,
        wall_now: Ts,
    ) -> pb::IncidentEvent {
        convert::platform_event(&PlatformIncident {
            kind: IncidentKind::PipelineStall,
            subject: &format!("partition-{}", self.partition),
            event,
            episode_start: episode,
            due_at: due,
            emitted_at: wall_now,
            route: Route::Sre,
            municipality: None,
            dong: None,
            affected_households: self.households as u32,
        })
    }

    fn fire_due(&mut self, limit: Ts, wall_now: Ts, out: &mut Vec<Output>) {
        let mut due = std::mem::take(&mut self.due);
        let mut ready: Vec<(Ts, u32)> = Vec::new();
        let mut requeue: Vec<u32> = Vec::new();
        let limit_bucket = limit.millis().div_euclid(1000);
        let mut effects = std::mem::take(&mut self.effects);
        loop {
            due.clear();
            self.wheel.take_due(limit.millis(), &mut due);
            if due.is_empty() {
                break;
            }
            ready.clear();
            for &slot in &due {
                let Some(e) = self.slots[slot as usize].as_mut() else {
                    continue; // removed household
                };
                let popped_earliest =
                    e.queued != NEVER && e.queued.millis().div_euclid(1000) <= limit_bucket;
                if popped_earliest {
                    e.queued = NEVER;
                }
                if e.scheduled <= limit {
                    ready.push((e.scheduled, slot));
                } else if popped_earliest && e.scheduled != NEVER {
                    requeue.push(slot);
                }
            }
            ready.sort_unstable();
            ready.dedup_by_key(|r| r.1);
            for &(t, slot) in &ready {
                let e = self.slots[slot as usize].as_mut().expect("live");
                if e.scheduled != t {
                    continue;
                }
                e.scheduled = NEVER;
                e.state.evaluate(&e.cfg, t, &mut effects);
                self.after_effects(slot, t, wall_now, &mut effects, out);
            }
        }
        for slot in requeue {
            if let Some(e) = self.slots[slot as usize].as_mut() {
                if e.scheduled != NEVER && e.scheduled < e.queued {
                    e.queued = e.scheduled;
                    self.wheel.push(e.scheduled.millis(), slot);
                }
            }
        }
        self.effects = effects;
        self.due = due;
    }

    fn reschedule(&mut self, slot: u32, now: Ts) {
        let e = self.slots[slot as usize].as_mut().expect("live");
        let next = e.state.next_deadline(&e.cfg, now).unwrap_or(NEVER);
        e.scheduled = next;
        if next != NEVER && next < e.queued {
            e.queued = next;
            self.wheel.push(next.millis(), slot);
        }
    }

    // ── effects → outputs ────────────────────────────────────────────────

    pub(crate) fn after_effects(
        &mut self,
        slot: u32,
        now: Ts,
        wall_now: Ts,
        effects: &mut Vec<Effect>,
        out: &mut Vec<Output>,
    ) {
        for eff in effects.drain(..) {
            match eff {
                Effect::AbsenceEndedEarly { starts_at, at } => {
                    out.push(Output::AbsenceEndedEarly {
                        household: self.entity(slot).cfg.household_id.clone(),
                        starts_at,
                        at,
                    });
                }
                Effect::Incident(ev) => self.household_event(slot, ev, now, wall_now, out),
            }
        }
        self.reschedule(slot, now);
    }
}
