//! Area inhibition: where a household's incident event goes — held for
//! `area.hold_ms` (an offline opening), absorbed by its area's outage, or
//! published — and the judging of an area's outage and recovery as a whole
//! (this shard's part plus the other partitions' on the [`AreaBoard`]).

use crate::*;

impl Shard {
    pub(crate) fn household_event(
        &mut self,
        slot: u32,
        ev: HouseholdEvent,
        now: Ts,
        wall_now: Ts,
        out: &mut Vec<Output>,
    ) {
        let closing = matches!(ev.event, EventType::Recovered | EventType::Suppressed(_));
        let area = self.entity(slot).area;
        let hold = self.opts.area.hold_ms;
        if ev.kind == IncidentKind::DeviceOffline && ev.event == EventType::Opened {
            self.entity_mut(slot).offline_open = true;
            let window = self.opts.area.window_ms;
            let a = &mut self.areas[area as usize];
            a.offline += 1;
            a.note_opening(ev.due_at, window);
            let active = a.active.is_some();
            self.area_changed(area);
            if hold > 0 {
                if active {
                    self.absorb(slot);
                    return;
                }
                self.pending.push(Pending {
                    slot,
                    event: ev,
                    until: ev.due_at.plus_ms(hold),
                    release: false,
                    closed: None,
                });
                self.check_area_outage(area, now, wall_now, out);
                return;
            }
        }
        if closing && self.entity(slot).offline_open {
            self.entity_mut(slot).offline_open = false;
            self.areas[area as usize].offline -= 1;
            self.area_changed(area);
        }
        if self.entity(slot).absorbed {
            self.stats.absorbed_by_area += 1;
            if closing {
                self.entity_mut(slot).absorbed = false;
                self.check_area_recovery(area, now, wall_now, out);
            }
            return;
        }
        if let Some(i) = self.pending.iter().position(|p| p.slot == slot) {
            let p = &mut self.pending[i];
            if closing && !p.release && p.until <= self.fired_to {
                // Its hold is over and it only waits for the other
                // partitions of its area (a replay racing ahead of another
                // monitor): whether it was part of an outage is still open,
                // so its recovery waits with it.
                p.closed = Some(ev);
                return;
            }
            let p = self.pending.remove(i);
            if p.release && closing {
                // Came back right after its area did: never announced, so no recovery either.
                return;
            }
            self.publish_household(slot, &p.event, now, wall_now, out);
        }
        self.publish_household(slot, &ev, now, wall_now, out);
        if closing {
            self.check_area_recovery(area, now, wall_now, out);
        }
    }

    fn absorb(&mut self, slot: u32) {
        self.stats.absorbed_by_area += 1;
        self.entity_mut(slot).absorbed = true;
    }

    /// Shares this shard's part of every area through `board` from now on
    /// (see [`AreaBoard`]), and judges areas as a whole: its part plus every
    /// other partition's on the board.
    pub fn share_areas(&mut self, board: AreaBoard) {
        self.board = Some(board);
        for area in 0..self.areas.len() as u32 {
            self.area_changed(area);
        }
        self.report_areas();
    }

    /// Notes that this shard's part of `area` changed: it is written to the
    /// board, if the shard shares one, when the call that changed it ends
    /// ([`Shard::report_areas`]) — once per call, not per event: a blackout
    /// changes its area once per household, and each report copies the
    /// part's recent openings.
    pub(crate) fn area_changed(&mut self, area: u32) {
        if self.board.is_some() {
            self.areas_changed.push(area);
        }
    }

    /// Writes the parts changed during this call to the board.
    pub(crate) fn report_areas(&mut self) {
        let Some(board) = &self.board else {
            return;
        };
        if self.areas_changed.is_empty() {
            return; // most calls (a reading) change no area
        }
        self.areas_changed.sort_unstable();
        self.areas_changed.dedup();
        let wall = self.elapsed.last_wall.unwrap_or_default().millis();
        for &area in &self.areas_changed {
            let a = &self.areas[area as usize];
            board.report(&a.id, self.partition, a.counts(), wall);
        }
        self.areas_changed.clear();
    }

    /// `area` as a whole: this shard's part plus the other partitions'.
    fn whole(&self, area: u32) -> area::Whole {
        let a = &self.areas[area as usize];
        let window = self.opts.area.window_ms;
        match &self.board {
            Some(b) => b.whole(a, self.partition, window),
            None => a.whole(&[], window),
        }
    }

    /// With a shared board, what other partitions report changes an area's
    /// outage without any event here: each tick judges again the areas
    /// this shard holds openings of or has declared an outage in.
    pub(crate) fn recheck_areas(&mut self, wall_now: Ts, out: &mut Vec<Output>) {
        if self.board.is_none() {
            return;
        }
        let now = self.fired_to;
        let mut areas: Vec<u32> = self
            .pending
            .iter()
            .map(|p| self.entity(p.slot).area)
            .collect();
        areas.extend(
            (0..self.areas.len() as u32).filter(|&a| self.areas[a as usize].active.is_some()),
        );
        areas.sort_unstable();
        areas.dedup();
        for area in areas {
            if self.areas[area as usize].active.is_some() {
                self.check_area_recovery(area, now, wall_now, out);
            } else {
                self.check_area_outage(area, now, wall_now, out);
            }
        }
    }

    fn check_area_outage(&mut self, area: u32, now: Ts, wall_now: Ts, out: &mut Vec<Output>) {
        if self.areas[area as usize].active.is_some() {
            return;
        }
        // Until every other monitor's partitions were heard of, their
        // households may be missing from the count (a fresh start with a
        // backlog): a few dark homes would look like most of the area. The
        // openings wait meanwhile, and each tick judges again.
        if self
            .board
            .as_ref()
            .is_some_and(|b| b.others_unheard(self.partition))
        {
            return;
        }
        let whole = self.whole(area);
        let threshold = self.opts.area.threshold(whole.households);
        let (episode, first) = match whole.declared_elsewhere {
            // Another partition declared it and it is not over: the same outage.
            Some(episode) if whole.offline * 2 >= threshold => {
                (episode, whole.first_recent.unwrap_or(episode))
            }
            _ if whole.recent >= threshold => {
                // Aligned to the window so shards that see the same outage agree on its id.
                let window = self.opts.area.window_ms.max(1);
                let first = whole.first_recent.expect("openings within the window");
                (Ts(first.millis().div_euclid(window) * window), first)
            }
            _ => return,
        };
        self.areas[area as usize].active = Some(episode);
        self.area_changed(area);
        let mut absorbed = 0;
        let mut i = 0;
        while i < self.pending.len() {
            let slot = self.pending[i].slot;
            if self.entity(slot).area == area {
                let p = self.pending.swap_remove(i);
                if p.closed.is_some() {
                    // Part of the outage, and already back: nothing to announce.
                    self.stats.absorbed_by_area += 1;
                } else {
                    self.absorb(slot);
                }
                absorbed += 1;
            } else {
                i += 1;
            }
        }
        // Homes that went dark in this outage: still dark, absorbed here,
        // or back already (a replay that learnt of the outage late).
        let affected = (absorbed as u32)
            .max(whole.offline as u32)
            .max(whole.recent as u32);
        let emitted_at = self.emit_time(wall_now, now);
        let a = &self.areas[area as usize];
        let ev = a.event(EventType::Opened, episode, first, emitted_at, affected);
        self.publish(ev, out);
    }

    fn check_area_recovery(&mut self, area: u32, now: Ts, wall_now: Ts, out: &mut Vec<Output>) {
        let Some(episode) = self.areas[area as usize].active else {
            return;
        };
        // Only the counts: every returning household asks, and a blackout's
        // recent openings are as many as its households.
        let a = &self.areas[area as usize];
        let (households, offline) = match &self.board {
            Some(b) => b.others_totals(&a.id, self.partition),
            None => (0, 0),
        };
        let households = (a.households + households) as usize;
        let offline = (a.offline + offline) as usize;
        // Recovered when fewer than half the outage threshold are still offline.
        if offline * 2 >= self.opts.area.threshold(households) {
            return;
        }
        let emitted_at = self.emit_time(wall_now, now);
        let a = &mut self.areas[area as usize];
        let ev = a.event(
            EventType::Recovered,
            episode,
            now,
            emitted_at,
            offline as u32,
        );
        a.active = None;
        a.recent.clear();
        a.recovered_at = now;
        self.area_changed(area);
        self.publish(ev, out);
        // Whoever is still offline is released: their incident is announced
        // unless they report within the hold time.
        let members: Vec<u32> = (0..self.slots.len() as u32)
            .filter(|&s| {
                self.slots[s as usize]
                    .as_ref()
                    .is_some_and(|e| e.area == area && e.absorbed)
            })
            .collect();
        // They get the hold time to report like their neighbours did,
        // counted from where the partitions that saw the recovery first
        // are (a shard behind them learns of it early in its own time).
        let base = match &self.board {
            Some(b) => b
                .others_progress(&self.areas[area as usize].id, self.partition)
                .map_or(now, |ahead| {
                    ahead.max(now).min(now.plus_ms(self.opts.area.max_wait_ms))
                }),
            None => now,
        };
        let until = base.plus_ms(self.opts.area.hold_ms);
        for slot in members {
            self.entity_mut(slot).absorbed = false;
            let e = self.entity(slot);
            if let Some(ev) = e.state.describe_open(&e.cfg, now) {
                self.pending.push(Pending {
                    slot,
                    event: ev,
                    until,
                    release: true,
                    closed: None,
                });
            }
        }
    }

    /// Publishes a household's open incident as opened now.
    pub(crate) fn announce(&mut self, slot: u32, now: Ts, wall_now: Ts, out: &mut Vec<Output>) {
        let e = self.entity(slot);
        if let Some(ev) = e.state.describe_open(&e.cfg, now) {
            self.publish_household(slot, &ev, now, wall_now, out);
        }
    }

    pub(crate) fn flush_pending(&mut self, limit: Ts, wall_now: Ts, out: &mut Vec<Output>) {
        if self.pending.is_empty() {
            self.waiting_since.clear();
            return;
        }
        let mut i = 0;
        while i < self.pending.len() {
            let p = &self.pending[i];
            let slot = p.slot;
            // A held opening also waits (a bounded time) for the other
            // partitions of its area to get there: if they are behind, their
            // share of an outage is still to come. Another monitor's
            // partitions are waited for on the wall clock too: their
            // progress comes late, and a replay runs through event time.
            let behind = match (&self.board, p.release) {
                (Some(b), false) => {
                    let area = &self.areas[self.entity(slot).area as usize].id;
                    b.others_behind(area, self.partition, p.until)
                }
                _ => Behind::No,
            };
            let within_event = limit < p.until.plus_ms(self.opts.area.max_wait_ms);
            let waiting = match behind {
                Behind::No => false,
                Behind::Here => within_event,
                Behind::Elsewhere => {
                    let since = *self.waiting_since.entry(slot).or_insert(wall_now);
                    within_event || wall_now.since(since) < self.opts.area.remote_wait_ms
                }
            };
            if p.until <= limit && !waiting {
                let p = self.pending.remove(i);
                self.waiting_since.remove(&p.slot);
                let now = self.fired_to;
                self.publish_household(p.slot, &p.event, now, wall_now, out);
                if let Some(closed) = p.closed {
                    self.publish_household(p.slot, &closed, now, wall_now, out);
                }
            } else {
                i += 1;
            }
        }
        if self.waiting_since.len() > self.pending.len() {
            let held: HashSet<u32> = self.pending.iter().map(|p| p.slot).collect();
            self.waiting_since.retain(|slot, _| held.contains(slot));
        }
    }

    fn publish_household(
        &mut self,
        slot: u32,
        ev: &HouseholdEvent,
        now: Ts,
        wall_now: Ts,
        out: &mut Vec<Output>,
    ) {
        let emitted_at = self.emit_time(wall_now, now);
        let cfg = &self.entity(slot).cfg;
        let route = self.router.route_event(cfg, ev, emitted_at);
        let wire = convert::incident_event(cfg, ev, route, emitted_at);
        self.publish(wire, out);
    }

    pub(crate) fn publish(&mut self, ev: pb::IncidentEvent, out: &mut Vec<Output>) {
        if !self.already_published.is_empty() && self.already_published.remove(&ev.event_id) {
            self.stats.replays_suppressed += 1;
            return;
        }
        self.stats.events_emitted += 1;
        out.push(Output::Event(Box::new(ev)));
    }
}
