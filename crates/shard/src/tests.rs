use super::*;
use dolbom_domain::time::HOUR_MS;
use dolbom_domain::{DeviceId, DongCode, MunicipalityCode, MINUTE_MS};
use proptest::prelude::*;
use prost::Message;

pub(super) const T0: Ts = Ts(1_767_225_600_000); // 2026-01-01T00:00:00Z
pub(super) const WALL0: Ts = Ts(1_000_000_000_000);

pub(super) fn router() -> Router {
    Router::builtin()
}

pub(super) fn opts() -> ShardOptions {
    ShardOptions {
        clock: ClockMode::Event,
        allowed_lateness_ms: 0,
        stall_after_ms: 10 * MINUTE_MS,
        ..ShardOptions::default()
    }
}

pub(super) fn cfg(i: usize, dong: &str) -> HouseholdConfig {
    let muni = MunicipalityCode::new(&dong[..5]).unwrap();
    HouseholdConfig::with_defaults(
        HouseholdId::new(&format!("hh-{i}")).unwrap(),
        DongCode::new(dong, muni).unwrap(),
        [DeviceId::new(&format!("plug-{i}")).unwrap()],
        T0,
    )
}

pub(super) fn reading(i: usize, t: Ts, seq: u64, watts: f64) -> pb::PlugReading {
    pb::PlugReading {
        device_id: format!("plug-{i}"),
        household_id: format!("hh-{i}"),
        observed_at_ms: t.millis(),
        watts: Some(watts),
        lux: Some(10.0),
        sequence: seq,
        current_amps: None,
    }
}

pub(super) fn events(out: &[Output]) -> Vec<&pb::IncidentEvent> {
    out.iter()
        .filter_map(|o| match o {
            Output::Event(e) => Some(&**e),
            _ => None,
        })
        .collect()
}

fn summary(out: &[Output]) -> Vec<String> {
    events(out)
        .iter()
        .map(|e| e.event_id.clone())
        .collect::<Vec<_>>()
}

/// Household 0 stays quiet; household 1 is busy and keeps the partition's clock moving.
/// hh-0 quiet, hh-1 busy: something switched at minutes 0 and 28 of every
/// 31 (a person, not a cycle an automatic load would keep).
fn quiet_and_busy(minutes: i64, shard: &mut Shard, out: &mut Vec<Output>) {
    quiet_and_busy_from(0, minutes, shard, out)
}

fn quiet_and_busy_from(from: i64, minutes: i64, shard: &mut Shard, out: &mut Vec<Output>) {
    for m in from..minutes {
        let t = T0.plus_ms(m * MINUTE_MS);
        let wall = WALL0.plus_ms(m * 1000);
        shard
            .on_reading(&reading(0, t, m as u64, 5.0), wall, out)
            .unwrap();
        let w = if m % 31 == 0 || m % 31 == 28 {
            100.0
        } else {
            5.0
        };
        shard
            .on_reading(&reading(1, t, m as u64, w), wall, out)
            .unwrap();
        shard.advance(wall, out);
    }
}

fn two_households() -> Shard {
    let mut s = Shard::new(0, opts(), router(), WALL0);
    let mut out = Vec::new();
    s.apply_config(cfg(0, "1111051500"), WALL0, &mut out)
        .unwrap();
    s.apply_config(cfg(1, "1111051500"), WALL0, &mut out)
        .unwrap();
    assert!(out.is_empty());
    s
}

#[test]
fn a_quiet_household_raises_each_stage_once_at_its_deadline() {
    let mut s = two_households();
    let mut out = Vec::new();
    quiet_and_busy(37 * 60, &mut s, &mut out);
    let evs = events(&out);
    assert_eq!(evs.len(), 3, "{:#?}", summary(&out));
    for (e, (stage, hours)) in evs.iter().zip([
        (pb::Stage::Attention, 12),
        (pb::Stage::Caution, 24),
        (pb::Stage::Danger, 36),
    ]) {
        assert_eq!(e.household_id, "hh-0");
        assert_eq!(e.stage, stage as i32);
        assert_eq!(
            convert::ts(e.due_at.as_ref().unwrap()),
            T0.plus_ms(hours * HOUR_MS)
        );
        // Fired when the watermark reached the deadline, not later.
        assert_eq!(e.emitted_at, e.due_at);
    }
    assert_eq!(evs[0].incident_id, format!("INA:hh-0:{}", T0.millis()));
    assert_eq!(s.stats().events_emitted, 3);
}

#[test]
fn activity_recovers_the_incident() {
    let mut s = two_households();
    let mut out = Vec::new();
    quiet_and_busy(13 * 60, &mut s, &mut out);
    assert_eq!(events(&out).len(), 1);
    let t = T0.plus_ms(13 * HOUR_MS);
    s.on_reading(&reading(0, t, 10_000, 300.0), WALL0, &mut out)
        .unwrap();
    let evs = events(&out);
    assert_eq!(evs.len(), 2);
    assert_eq!(evs[1].r#type, pb::IncidentEventType::Recovered as i32);
    assert_eq!(evs[1].incident_id, evs[0].incident_id);
    assert!(s.open_incident("hh-0").is_none());
}

#[test]
fn rejections_name_their_reason_and_change_nothing() {
    let mut s = two_households();
    let mut out = Vec::new();
    let e = s
        .on_reading_bytes(Some(b"hh-0"), b"\xff\xff\xff", None, WALL0, &mut out)
        .unwrap_err();
    assert_eq!(e.label(), "malformed");
    let bytes = reading(7, T0, 1, 1.0).encode_to_vec();
    let e = s
        .on_reading_bytes(Some(b"hh-7"), &bytes, None, WALL0, &mut out)
        .unwrap_err();
    assert_eq!(e, Rejection::UnknownHousehold("hh-7".into()));
    let bytes = reading(0, T0, 1, 1.0).encode_to_vec();
    let e = s
        .on_reading_bytes(Some(b"hh-1"), &bytes, None, WALL0, &mut out)
        .unwrap_err();
    assert_eq!(e.label(), "key_mismatch");
    let mut r = reading(0, T0, 1, 1.0);
    r.device_id = "plug-9".into();
    let e = s.on_reading(&r, WALL0, &mut out).unwrap_err();
    assert_eq!(e.label(), "unknown_device");
    let mut c = pb::HouseholdConfig::from(&cfg(2, "1111051500"));
    c.dong_code = "2611051500".into();
    let e = s
        .on_config_bytes(b"hh-2", Some(&c.encode_to_vec()), WALL0, &mut out)
        .unwrap_err();
    assert_eq!(e.label(), "invalid_config");
    assert!(e.to_string().contains("dong_code"), "{e}");
    assert!(s.watermark().is_none());
    assert!(out.is_empty());
    assert_eq!(s.households(), 2);
}

#[test]
fn config_versions_only_move_forward_and_tombstones_remove() {
    let mut s = two_households();
    let mut out = Vec::new();
    let mut c = cfg(0, "1111051500");
    c.version = 5;
    c.thresholds.attention_minutes = 60;
    s.apply_config(c.clone(), WALL0, &mut out).unwrap();
    c.version = 4;
    assert_eq!(
        s.apply_config(c, WALL0, &mut out).unwrap_err().label(),
        "stale_config"
    );
    s.on_config_bytes(b"hh-1", None, WALL0, &mut out).unwrap();
    assert_eq!(s.households(), 1);
    let e = s.on_reading(&reading(1, T0, 1, 1.0), WALL0, &mut out);
    assert!(matches!(e, Err(Rejection::UnknownHousehold(_))));
}

#[test]
fn wall_mode_rejects_readings_from_the_future() {
    let mut o = opts();
    o.clock = ClockMode::Wall;
    let mut s = Shard::new(0, o, router(), T0);
    let mut out = Vec::new();
    s.apply_config(cfg(0, "1111051500"), T0, &mut out).unwrap();
    let r = reading(0, T0.plus_ms(HOUR_MS), 1, 1.0);
    let e = s.on_reading(&r, T0, &mut out).unwrap_err();
    assert_eq!(e.label(), "future_timestamp");
    assert!(s.watermark().is_none(), "a runaway plug must not move time");
    // A second ahead is within any plug's skew: heard, but counted at the
    // monitor's clock, so it cannot move the partition's time ahead either.
    s.on_reading(&reading(0, T0.plus_ms(1000), 2, 1.0), T0, &mut out)
        .unwrap();
    assert_eq!(s.watermark(), Some(T0));
}

/// Ten households in one dong report every minute; at `cut` eight of them
/// stop (a blackout); `back` is when power returns (for all but household 9,
/// whose plug really broke).
fn blackout(shard: &mut Shard, cut: i64, back: i64, end: i64, out: &mut Vec<Output>) {
    for m in 0..end {
        let t = T0.plus_ms(m * MINUTE_MS);
        let wall = WALL0.plus_ms(m * 1000);
        for i in 0..10 {
            let dark = (2..10).contains(&i) && m >= cut && (m < back || i == 9);
            if dark {
                continue;
            }
            let w = if m % 60 == i as i64 { 100.0 } else { 5.0 };
            shard
                .on_reading(&reading(i, t, m as u64, w), wall, out)
                .unwrap();
        }
        shard.advance(wall, out);
    }
}

fn ten_in_a_dong() -> Shard {
    let mut s = Shard::new(3, opts(), router(), WALL0);
    let mut out = Vec::new();
    for i in 0..10 {
        s.apply_config(cfg(i, "1111051500"), WALL0, &mut out)
            .unwrap();
    }
    s
}

#[test]
fn a_blackout_is_one_area_incident_and_releases_who_stays_offline() {
    let mut s = ten_in_a_dong();
    let mut out = Vec::new();
    blackout(&mut s, 60, 180, 300, &mut out);
    let evs = events(&out);
    let kinds: Vec<(i32, i32, &str)> = evs
        .iter()
        .map(|e| (e.kind, e.r#type, e.household_id.as_str()))
        .collect();
    let area: Vec<_> = evs
        .iter()
        .filter(|e| e.kind == pb::IncidentKind::AreaOutage as i32)
        .collect();
    assert_eq!(area.len(), 2, "{kinds:?}");
    assert_eq!(area[0].r#type, pb::IncidentEventType::Opened as i32);
    assert_eq!(area[0].area_id, "1111051500");
    // Counted when the outage was recognised: the threshold (5 of 10) was met.
    assert!(area[0].affected_households >= 5);
    assert_eq!(area[1].r#type, pb::IncidentEventType::Recovered as i32);
    // The one plug that never came back is released when the area recovers.
    let own: Vec<_> = evs
        .iter()
        .filter(|e| e.kind == pb::IncidentKind::DeviceOffline as i32)
        .collect();
    assert_eq!(own.len(), 1, "{kinds:?}");
    assert_eq!(own[0].household_id, "hh-9");
    assert_eq!(own[0].r#type, pb::IncidentEventType::Opened as i32);
    assert!(evs
        .iter()
        .all(|e| e.kind != pb::IncidentKind::Inactivity as i32));
}

#[test]
fn a_single_offline_plug_is_its_own_incident_after_the_hold() {
    let mut s = ten_in_a_dong();
    let mut out = Vec::new();
    for m in 0..120 {
        let t = T0.plus_ms(m * MINUTE_MS);
        for i in 0..10 {
            if i == 4 && m >= 10 {
                continue;
            }
            let w = if m % 60 == i as i64 { 100.0 } else { 5.0 };
            s.on_reading(&reading(i, t, m as u64, w), WALL0, &mut out)
                .unwrap();
        }
        s.advance(WALL0, &mut out);
    }
    let evs = events(&out);
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].household_id, "hh-4");
    assert_eq!(evs[0].kind, pb::IncidentKind::DeviceOffline as i32);
    let due = convert::ts(evs[0].due_at.as_ref().unwrap());
    assert_eq!(due, T0.plus_ms(39 * MINUTE_MS)); // last reading at 9 min + 30 min
    assert_eq!(
        convert::ts(evs[0].emitted_at.as_ref().unwrap()),
        due.plus_ms(2 * MINUTE_MS),
        "held for the area window"
    );
}

#[test]
fn a_stall_raises_one_stall_incident_and_no_flood_when_input_resumes() {
    let mut s = two_households();
    let mut out = Vec::new();
    // An hour of normal input.
    for m in 0..60 {
        let t = T0.plus_ms(m * MINUTE_MS);
        for i in 0..2 {
            s.on_reading(
                &reading(i, t, m as u64, 5.0 + (m % 2) as f64 * 100.0),
                WALL0,
                &mut out,
            )
            .unwrap();
        }
        s.advance(WALL0.plus_ms(m * 1000), &mut out);
    }
    assert!(out.is_empty());
    // The input stops for an hour of wall time.
    let wall = WALL0.plus_ms(HOUR_MS);
    s.advance(wall, &mut out);
    assert!(s.is_stalled());
    let evs = events(&out);
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].kind, pb::IncidentKind::PipelineStall as i32);
    assert_eq!(
        evs[0].incident_id,
        format!("STALL:partition-0:{}", T0.plus_ms(59 * MINUTE_MS).millis())
    );
    s.advance(wall.plus_ms(HOUR_MS), &mut out);
    assert_eq!(
        events(&out).len(),
        1,
        "one stall incident, not one per tick"
    );
    // Input resumes three event-hours later (the plugs' buffered data was
    // lost); both households report again within the grace period.
    for m in 240..300 {
        let t = T0.plus_ms(m * MINUTE_MS);
        let wall = wall.plus_ms(2 * HOUR_MS + m * 1000);
        for i in 0..2 {
            s.on_reading(
                &reading(i, t, m as u64, 5.0 + (m % 2) as f64 * 100.0),
                wall,
                &mut out,
            )
            .unwrap();
        }
        s.advance(wall, &mut out);
    }
    let evs = events(&out);
    assert_eq!(evs.len(), 2, "{:?}", summary(&out));
    assert_eq!(evs[1].r#type, pb::IncidentEventType::Recovered as i32);
    assert!(!s.is_stalled());
}

#[test]
fn after_a_stall_a_household_that_stays_silent_is_still_reported() {
    let mut s = two_households();
    let mut out = Vec::new();
    for m in 0..60 {
        let t = T0.plus_ms(m * MINUTE_MS);
        for i in 0..2 {
            s.on_reading(
                &reading(i, t, m as u64, 5.0 + (m % 2) as f64 * 100.0),
                WALL0,
                &mut out,
            )
            .unwrap();
        }
        s.advance(WALL0, &mut out);
    }
    let wall = WALL0.plus_ms(HOUR_MS);
    s.advance(wall, &mut out);
    for m in 240..300 {
        let t = T0.plus_ms(m * MINUTE_MS);
        s.on_reading(
            &reading(1, t, m as u64, 5.0 + (m % 2) as f64 * 100.0),
            wall,
            &mut out,
        )
        .unwrap();
        s.advance(wall, &mut out);
    }
    let offline: Vec<_> = events(&out)
        .into_iter()
        .filter(|e| e.kind == pb::IncidentKind::DeviceOffline as i32)
        .collect();
    assert_eq!(offline.len(), 1);
    assert_eq!(offline[0].household_id, "hh-0");
}

#[test]
fn snapshot_round_trips() {
    let mut s = two_households();
    let mut out = Vec::new();
    quiet_and_busy(13 * 60, &mut s, &mut out);
    let bytes = s.snapshot();
    let last_wall = WALL0.plus_ms((13 * 60 - 1) * 1000);
    let r = Shard::restore(&bytes, opts(), router(), last_wall, HashSet::new()).unwrap();
    assert_eq!(r.households(), 2);
    assert_eq!(r.watermark(), s.watermark());
    assert_eq!(r.fired_to(), s.fired_to());
    assert_eq!(r.open_incident("hh-0"), s.open_incident("hh-0"));
    assert_eq!(r.snapshot(), bytes);
    assert!(matches!(
        Shard::restore(
            &bytes[..bytes.len() / 2],
            opts(),
            router(),
            WALL0,
            HashSet::new()
        ),
        Err(SnapshotError::Decode(_))
    ));
}

/// Written by the shard of commit 35f7334 (format 3) for `two_households`
/// after `quiet_and_busy(13 * 60)`: hh-0 at ATTENTION, hh-1 busy.
const FORMAT_3: &[u8] = include_bytes!("../fixtures/format3.snapshot");

#[test]
fn format_2_and_3_snapshots_restore_and_an_unknown_format_is_refused() {
    let mut s = two_households();
    let mut out = Vec::new();
    quiet_and_busy(13 * 60, &mut s, &mut out);
    assert_eq!(s.snapshot()[0], 5, "the format leads the snapshot");
    let last_wall = WALL0.plus_ms((13 * 60 - 1) * 1000);
    let mut bytes = FORMAT_3.to_vec();
    assert_eq!(bytes[0], 3);
    for format in [3, 2] {
        // Format 2 differs only in the pending openings, none here.
        bytes[0] = format;
        let mut r = Shard::restore(&bytes, opts(), router(), last_wall, HashSet::new()).unwrap();
        assert_eq!(r.households(), 2);
        assert_eq!(r.open_incident("hh-0"), s.open_incident("hh-0"));
        assert_eq!(r.open_incident("hh-1"), None);
        assert_eq!(r.snapshot()[0], 5, "written back as format 5");
        // The restored household raises its next stage when it falls due.
        let mut out = Vec::new();
        quiet_and_busy_from(13 * 60, 25 * 60, &mut r, &mut out);
        let raised = out.iter().any(|o| {
            matches!(o, Output::Event(e) if e.household_id == "hh-0"
                && e.stage == dolbom_proto::v1::Stage::Caution as i32)
        });
        assert!(raised, "{out:?}");
    }
    bytes[0] = 9;
    assert!(matches!(
        Shard::restore(&bytes, opts(), router(), last_wall, HashSet::new()),
        Err(SnapshotError::Format(9))
    ));
}

/// Written by the shard of commit 35b673a (format 4) for `two_households`
/// after `quiet_and_busy(13 * 60)` and 11 minutes without input: hh-0 at
/// ATTENTION, the partition stalled (episode 1767272340000).
const FORMAT_4: &[u8] = include_bytes!("../fixtures/format4.snapshot");

/// `shard` silent for 11 minutes of wall time after `from`, then input
/// again: returns the stall events.
fn silence_then_input(shard: &mut Shard, from: Ts, out: &mut Vec<Output>) -> Vec<String> {
    let before = out.len();
    shard.advance(from.plus_ms(11 * MINUTE_MS), out);
    let back = from.plus_ms(12 * MINUTE_MS);
    let t = shard.watermark().unwrap().plus_ms(MINUTE_MS);
    shard
        .on_reading(&reading(1, t, 10_000, 7.0), back, out)
        .unwrap();
    shard.advance(back, out);
    summary(&out[before..])
        .into_iter()
        .filter(|id| id.starts_with("STALL:"))
        .collect()
}

#[test]
fn a_format_4_snapshot_restores_with_its_stall_in_progress() {
    let stalled_at = WALL0.plus_ms((13 * 60 - 1) * 1000 + 11 * MINUTE_MS);
    let mut r = Shard::restore(FORMAT_4, opts(), router(), stalled_at, HashSet::new()).unwrap();
    assert_eq!(r.households(), 2);
    assert!(r.is_stalled());
    assert_eq!(r.snapshot()[0], 5, "written back as format 5");
    let mut out = Vec::new();
    let back = stalled_at.plus_ms(MINUTE_MS);
    let t = r.watermark().unwrap().plus_ms(MINUTE_MS);
    r.on_reading(&reading(1, t, 10_000, 7.0), back, &mut out)
        .unwrap();
    r.advance(back, &mut out);
    assert_eq!(
        summary(&out),
        ["STALL:partition-0:1767272340000/INCIDENT_EVENT_TYPE_RECOVERED/STAGE_NORMAL"]
    );
    // The next stall, still in the first one's grace, is another incident.
    let next = silence_then_input(&mut r, back, &mut out);
    assert_eq!(next.len(), 2, "{next:?}");
    assert!(
        next.iter().all(|id| !id.contains(":1767272340000/")),
        "{next:?}"
    );
}

/// Input comes back for a moment between two silences: firing stays frozen
/// through the first one's grace, so both stalls freeze at one point. Each
/// must still be an incident of its own — the same event ids twice would be
/// dropped downstream as duplicates, and SRE would not hear of the second.
#[test]
fn two_stalls_in_one_grace_are_two_incidents() {
    let mut s = two_households();
    let mut out = Vec::new();
    quiet_and_busy(60, &mut s, &mut out);
    let last = WALL0.plus_ms(59 * 1000);
    let first = silence_then_input(&mut s, last, &mut out);
    let second = silence_then_input(&mut s, last.plus_ms(12 * MINUTE_MS), &mut out);
    assert_eq!(first.len(), 2, "{first:?}");
    assert_eq!(second.len(), 2, "{second:?}");
    let episode = |id: &String| id.split('/').next().unwrap().to_string();
    assert_ne!(
        episode(&first[0]),
        episode(&second[0]),
        "{first:?} {second:?}"
    );
    assert_eq!(episode(&second[0]), episode(&second[1]));
}

#[derive(Clone, Debug)]
enum Rec {
    Reading(usize, i64, u64, f64),
    Tick,
}

fn script() -> impl Strategy<Value = Vec<Rec>> {
    // Five households; each minute some of them report, some change.
    proptest::collection::vec((0usize..5, 0u8..4, proptest::bool::ANY, 1i64..240), 1..400).prop_map(
        |steps| {
            let mut t = 0i64;
            let mut seq = [0u64; 5];
            let mut recs = Vec::new();
            for (i, kind, change, gap) in steps {
                t += gap * MINUTE_MS / 4;
                if kind == 0 {
                    recs.push(Rec::Tick);
                    continue;
                }
                seq[i] += 1;
                let w = if change { 100.0 + seq[i] as f64 } else { 5.0 };
                recs.push(Rec::Reading(i, t, seq[i], w));
            }
            recs
        },
    )
}

fn fresh() -> Shard {
    let mut s = Shard::new(0, opts(), router(), WALL0);
    let mut out = Vec::new();
    for i in 0..5 {
        let dong = if i < 3 { "1111051500" } else { "1111052000" };
        s.apply_config(cfg(i, dong), WALL0, &mut out).unwrap();
    }
    s
}

fn feed(s: &mut Shard, r: &Rec, out: &mut Vec<Output>) {
    match *r {
        Rec::Reading(i, t, seq, w) => {
            let _ = s.on_reading(&reading(i, T0.plus_ms(t), seq, w), WALL0, out);
        }
        Rec::Tick => {}
    }
    s.advance(WALL0, out);
}

proptest! {
    /// The monitor's crash contract: outputs published before a crash plus
    /// the outputs of (snapshot at k → restore told what was published →
    /// replay from k) equal the outputs of an uninterrupted run, exactly:
    /// nothing missed, nothing twice.
    #[test]
    fn restore_and_replay_equals_an_uninterrupted_run(
        recs in script(),
        k_frac in 0.0f64..1.0,
        crash_frac in 0.0f64..1.0,
    ) {
        let mut whole = fresh();
        let mut expected = Vec::new();
        for r in &recs { feed(&mut whole, r, &mut expected); }

        let k = (recs.len() as f64 * k_frac) as usize;
        let crash = k + ((recs.len() - k) as f64 * crash_frac) as usize;
        let mut first = fresh();
        let mut published = Vec::new();
        let mut snap = None;
        for (n, r) in recs.iter().enumerate() {
            if n == k { snap = Some((first.snapshot(), published.len())); }
            if n == crash { break; }
            feed(&mut first, r, &mut published);
        }
        let (snap, at_snapshot) = snap.unwrap_or_else(|| (first.snapshot(), published.len()));
        let after: HashSet<String> = summary(&published[at_snapshot..]).into_iter().collect();
        let mut restored = Shard::restore(&snap, opts(), router(), WALL0, after).unwrap();
        let mut rest = Vec::new();
        for r in &recs[k..] { feed(&mut restored, r, &mut rest); }
        let mut combined = summary(&published);
        combined.extend(summary(&rest));
        prop_assert_eq!(combined, summary(&expected));
        prop_assert_eq!(restored.replay_pending(), 0);
    }
}

/// One quiet household on the wall clock, reporting unchanged values every
/// minute until `last`; the shard advanced at `wall` afterwards.
fn quiet_partition(last: Ts, caught_up: bool, wall: Ts) -> (Vec<String>, Vec<String>) {
    let mut o = opts();
    o.clock = ClockMode::Wall;
    let mut s = Shard::new(0, o, router(), T0);
    let mut before = Vec::new();
    s.apply_config(cfg(0, "1111051500"), T0, &mut before)
        .unwrap();
    let mut t = T0;
    let mut seq = 0;
    while t <= last {
        s.on_reading(&reading(0, t, seq, 5.0), t.plus_ms(100), &mut before)
            .unwrap();
        s.advance(t.plus_ms(100), &mut before);
        t = t.plus_ms(MINUTE_MS);
        seq += 1;
    }
    s.set_caught_up(caught_up);
    let mut after = Vec::new();
    s.advance(wall, &mut after);
    (summary(&before), summary(&after))
}

/// A caught-up partition fires a deadline by the wall clock even when no
/// later reading arrives (a pilot county of a few households must not wait
/// a minute for its next reading); one that is not caught up, or whose
/// input has been missing for longer than a plug's reporting interval,
/// infers nothing from the missing data.
#[test]
fn a_caught_up_quiet_partition_fires_by_the_wall_clock_and_missing_input_does_not() {
    let due = T0.plus_ms(12 * HOUR_MS);
    let opened = |evs: &[String]| evs.iter().any(|e| e.contains("OPENED"));
    // The last reading 30 s before the deadline; 300 ms after it, caught up.
    let (before, after) = quiet_partition(due.plus_ms(-30_000), true, due.plus_ms(300));
    assert!(!opened(&before), "{before:?}");
    assert!(opened(&after), "fired by the wall clock: {after:?}");
    // Not caught up (a backlog may hold the household's readings): wait.
    let (_, after) = quiet_partition(due.plus_ms(-30_000), false, due.plus_ms(300));
    assert!(!opened(&after), "{after:?}");
    // Caught up but nothing heard for longer than a plug's reporting
    // interval: the input is missing, not quiet.
    let (_, after) = quiet_partition(due.plus_ms(-2 * MINUTE_MS), true, due.plus_ms(300));
    assert!(!opened(&after), "{after:?}");
}

/// The monitor's own clock jumps 15 minutes back: every reading now looks
/// "from the future" and is rejected. Rejected that way they are not input,
/// so the partition stalls and SRE hears of it, instead of the monitor
/// going quietly blind (before, they counted as input and nothing fired).
#[test]
fn a_monitor_clock_behind_its_plugs_is_a_stall_not_silence() {
    // Without a send time, and with the records sent (Kafka timestamps) in
    // the monitor's future too: either way its own clock is the one behind.
    for with_sent_at in [false, true] {
        let mut o = opts();
        o.clock = ClockMode::Wall;
        o.stall_after_ms = 2 * MINUTE_MS;
        let mut s = Shard::new(0, o, router(), T0);
        let mut out = Vec::new();
        s.apply_config(cfg(0, "1111051500"), T0, &mut out).unwrap();
        s.on_reading(&reading(0, T0, 0, 5.0), T0, &mut out).unwrap();
        let behind = 15 * MINUTE_MS;
        for m in 1..10 {
            let t = T0.plus_ms(m * MINUTE_MS);
            let wall = t.plus_ms(-behind);
            let sent = with_sent_at.then_some(t);
            let e = s.on_reading_sent(&reading(0, t, m as u64, 5.0), sent, wall, &mut out);
            assert_eq!(e.unwrap_err().label(), "future_timestamp");
            s.advance(wall, &mut out);
        }
        assert!(s.is_stalled(), "the partition hears nothing it can use");
        let stalls = events(&out)
            .iter()
            .filter(|e| e.kind == pb::IncidentKind::PipelineStall as i32)
            .count();
        assert_eq!(stalls, 1);
    }
}

/// Three homes on the wall clock; each minute every plug reports and its
/// record is sent at the true time. Home 0 is quiet (online, no activity);
/// home 1's plug clock runs 4 minutes ahead, home 2's 10 minutes ahead, both
/// busy. `replay_offset` delays the monitor's clock (a replay after a crash).
/// Returns every event with the wall time it was emitted at.
fn skewed_plugs(replay_offset: i64) -> (Vec<(Ts, pb::IncidentEvent)>, Shard) {
    let mut o = opts();
    o.clock = ClockMode::Wall;
    // (How far a replay may lag the wall clock is another check's business.)
    o.max_event_lag_ms = 0;
    let mut s = Shard::new(0, o, router(), T0);
    let mut out = Vec::new();
    for i in 0..3 {
        let mut c = cfg(i, "1111051500");
        c.thresholds.attention_minutes = 60;
        s.apply_config(c, T0, &mut out).unwrap();
    }
    let mut seen = Vec::new();
    for m in 0..90 {
        let sent = T0.plus_ms(m * MINUTE_MS);
        let wall = sent.plus_ms(replay_offset);
        for (i, ahead_min) in [(0, 0), (1, 4), (2, 10)] {
            let w = if i > 0 && m % 2 == 0 { 100.0 } else { 5.0 };
            let stamped = sent.plus_ms(ahead_min * MINUTE_MS);
            let r = reading(i, stamped, m as u64 + 1, w);
            s.on_reading_sent(&r, Some(sent), wall, &mut out)
                .expect("a plug whose clock runs ahead is still heard");
        }
        s.advance(wall, &mut out);
        for e in events(&out) {
            seen.push((wall, e.clone()));
        }
        out.clear();
    }
    (seen, s)
}

/// Issue 14, path 5: plugs' clocks are cheap and drift. A plug ahead of the
/// others must not move the partition's watermark (its neighbours' deadlines
/// would fire early: false ATTENTIONs), and a plug more than 5 minutes ahead
/// must not be dropped (its home would look offline). A replay decides the
/// same, so incident ids do not change.
#[test]
fn a_plug_clock_ahead_harms_neither_its_home_nor_its_neighbours() {
    let (seen, s) = skewed_plugs(0);
    let quiet: Vec<_> = seen
        .iter()
        .filter(|(_, e)| e.household_id == "hh-0")
        .collect();
    assert_eq!(quiet.len(), 1, "home 0 goes quiet once: {quiet:?}");
    let (emitted, e) = quiet[0];
    assert_eq!(e.r#type, pb::IncidentEventType::Opened as i32);
    let due = convert::ts(e.due_at.as_ref().unwrap());
    assert!(
        *emitted >= due,
        "ATTENTION fired {} ms before it was due",
        due.since(*emitted)
    );
    assert!(
        seen.iter().all(|(_, e)| e.household_id == "hh-0"),
        "the skewed homes are active and online: {seen:?}"
    );
    // Every reading of homes 1 and 2 was re-timed to its send time.
    assert_eq!(s.stats().readings_retimed, 2 * 90);
    assert!(s.watermark().unwrap() <= T0.plus_ms(89 * MINUTE_MS));

    let (replayed, _) = skewed_plugs(6 * HOUR_MS);
    let ids = |v: &[(Ts, pb::IncidentEvent)]| {
        v.iter()
            .map(|(_, e)| e.event_id.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&seen), ids(&replayed));
}

/// One quiet home on the wall clock whose ATTENTION (due at 60 minutes)
/// fires by the wall clock a second after it is due, then activity 3 s later
/// closes it. Every minute its plug reports (sent when observed). Returns
/// the records with their send times, and every event of the live run.
fn live_opening_then_activity() -> (Vec<(pb::PlugReading, Ts)>, Vec<String>, ShardOptions) {
    let mut o = opts();
    o.clock = ClockMode::Wall;
    let mut c = cfg(0, "1111051500");
    c.thresholds.attention_minutes = 60;
    let mut recs = Vec::new();
    for m in 0..70 {
        let at = T0.plus_ms(m * MINUTE_MS + if m == 60 { 3_000 } else { 0 });
        let w = if m == 60 { 100.0 } else { 5.0 };
        recs.push((reading(0, at, m as u64 + 1, w), at));
    }
    let mut live = Shard::new(0, o.clone(), router(), T0);
    let mut out = Vec::new();
    live.apply_config(c, T0, &mut out).unwrap();
    for (r, sent) in &recs {
        // A tick a second before each record (the live monitor ticks
        // every 100 ms), then the record.
        live.set_caught_up(true);
        live.advance(sent.plus_ms(-1_000), &mut out);
        live.on_reading_sent(r, Some(*sent), *sent, &mut out)
            .unwrap();
        live.advance(*sent, &mut out);
    }
    (recs, summary(&out), o)
}

/// Issue 14, path 3: after a crash, a replay must take each record on the
/// clock it was live on. Live, a quiet home's ATTENTION fired by the wall
/// clock and was published; the activity 3 s later closed it, but the
/// monitor died before that RECOVERED was published. The restored shard
/// (snapshot from before the deadline, hours later on the wall clock)
/// replays the records in one batch: the opening must fire before the
/// activity is applied, or the RECOVERED never comes and the incident stays
/// open for good.
#[test]
fn a_replay_keeps_the_recovery_of_an_opening_published_before_the_crash() {
    let (recs, live, o) = live_opening_then_activity();
    let opened: Vec<&String> = live.iter().filter(|id| id.contains("OPENED")).collect();
    let recovered: Vec<&String> = live.iter().filter(|id| id.contains("RECOVERED")).collect();
    assert_eq!((opened.len(), recovered.len()), (1, 1), "{live:?}");

    // The snapshot at minute 30; the crash right after the OPENED went out.
    let mut first = Shard::new(0, o.clone(), router(), T0);
    let mut out = Vec::new();
    let mut c = cfg(0, "1111051500");
    c.thresholds.attention_minutes = 60;
    first.apply_config(c, T0, &mut out).unwrap();
    for (r, sent) in &recs[..30] {
        first.set_caught_up(true);
        first
            .on_reading_sent(r, Some(*sent), *sent, &mut out)
            .unwrap();
        first.advance(*sent, &mut out);
    }
    let snap = first.snapshot();
    let published: HashSet<String> = [opened[0].clone()].into();
    let restart = T0.plus_ms(3 * HOUR_MS);
    let mut restored = Shard::restore(&snap, o, router(), restart, published).unwrap();
    let mut replayed = Vec::new();
    for (r, sent) in &recs[30..] {
        restored
            .on_reading_replayed(r, *sent, &mut replayed)
            .unwrap();
    }
    let ids = summary(&replayed);
    assert_eq!(
        ids,
        vec![recovered[0].clone()],
        "the RECOVERED, nothing else"
    );
    assert!(!restored.is_stalled(), "a replay's lag is not a stall");
}

/// A wall-clock script: five homes, records every 15 s to 5 min and, now
/// and then, after a silence of 2¼ to 16 min (longer than `stall_after`,
/// 2 min as deployed: the partition stalls; past 10 min its event time
/// also lags), each with how long before it an extra live tick came (0 =
/// none).
fn wall_script() -> impl Strategy<Value = Vec<(usize, i64, u64, f64, i64)>> {
    let step = (
        0usize..5,
        proptest::bool::ANY,
        1i64..20,
        0i64..15,
        proptest::option::weighted(0.05, 9i64..65),
    );
    proptest::collection::vec(step, 1..300).prop_map(|steps| {
        let mut t = 0i64;
        let mut seq = [0u64; 5];
        steps
            .into_iter()
            .map(|(i, change, gap, tick, silence)| {
                t += silence.unwrap_or(gap) * 15_000;
                seq[i] += 1;
                let w = if change { 100.0 + seq[i] as f64 } else { 5.0 };
                (i, t, seq[i], w, tick * 1_000)
            })
            .collect()
    })
}

fn wall_fresh(o: &ShardOptions) -> Shard {
    let mut s = Shard::new(0, o.clone(), router(), T0);
    let mut out = Vec::new();
    for i in 0..5 {
        let mut c = cfg(i, "1111051500");
        c.offline_after_minutes = 20;
        c.thresholds.attention_minutes = 30;
        c.thresholds.caution_minutes = 45;
        c.thresholds.danger_minutes = 60;
        s.apply_config(c, T0, &mut out).unwrap();
    }
    s
}

/// Live on the wall clock: through a silence longer than a minute a tick
/// every 10 s after the previous record (sent at `prev`), a tick `tick` ms
/// before the record (if any), the last tick (every 100 ms) before it, the
/// record when it was sent, a tick right after.
fn wall_live(
    s: &mut Shard,
    prev: Option<i64>,
    r: &(usize, i64, u64, f64, i64),
    out: &mut Vec<Output>,
) {
    let &(i, t, seq, w, tick) = r;
    let sent = T0.plus_ms(t);
    s.set_caught_up(true);
    let mut ticks: Vec<i64> = match prev.filter(|p| t - p > MINUTE_MS) {
        Some(prev) => (prev + 10_000..t - 100).step_by(10_000).collect(),
        None => Vec::new(),
    };
    if tick > 0 {
        ticks.push(t - tick);
    }
    ticks.push(t - 100);
    ticks.sort_unstable();
    for at in ticks {
        s.advance(T0.plus_ms(at), out);
    }
    s.on_reading_sent(&reading(i, sent, seq, w), Some(sent), sent, out)
        .unwrap();
    s.advance(sent, out);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// The wall-clock crash contract (issue 14, path 3): what a live
    /// wall-clock run published before a crash, plus what the restored shard
    /// emits replaying from its snapshot on the records' send times (hours
    /// later), equals the uninterrupted live run — whatever the live ticks
    /// were, and across silences that stalled the partition (live, ticks
    /// fired by the wall clock into the silence before one noticed the
    /// stall; the replay must freeze firing at the same point, or a
    /// deadline published live before the crash is never closed).
    #[test]
    fn a_wall_clock_replay_equals_the_live_run(
        recs in wall_script(),
        k_frac in 0.0f64..1.0,
        crash_frac in 0.0f64..1.0,
    ) {
        let mut o = opts();
        o.clock = ClockMode::Wall;
        o.allowed_lateness_ms = 200;
        o.stall_after_ms = ShardOptions::default().stall_after_ms;
        let mut whole = wall_fresh(&o);
        let mut expected = Vec::new();
        let prevs = || std::iter::once(None).chain(recs.iter().map(|r| Some(r.1)));
        for (prev, r) in prevs().zip(&recs) { wall_live(&mut whole, prev, r, &mut expected); }

        let k = (recs.len() as f64 * k_frac) as usize;
        let crash = k + ((recs.len() - k) as f64 * crash_frac) as usize;
        let mut first = wall_fresh(&o);
        let mut published = Vec::new();
        let mut snap = None;
        for (n, (prev, r)) in prevs().zip(&recs).enumerate() {
            if n == k { snap = Some((first.snapshot(), published.len())); }
            if n == crash { break; }
            wall_live(&mut first, prev, r, &mut published);
        }
        let (snap, at_snapshot) = snap.unwrap_or_else(|| (first.snapshot(), published.len()));
        let after: HashSet<String> = summary(&published[at_snapshot..]).into_iter().collect();
        let restart = T0.plus_ms(recs.last().unwrap().1 + 6 * HOUR_MS);
        let mut restored = Shard::restore(&snap, o, router(), restart, after).unwrap();
        let mut rest = Vec::new();
        for &(i, t, seq, w, _) in &recs[k..] {
            let sent = T0.plus_ms(t);
            restored.on_reading_replayed(&reading(i, sent, seq, w), sent, &mut rest).unwrap();
        }
        let mut combined = summary(&published);
        combined.extend(summary(&rest));
        prop_assert_eq!(per_subject(combined), per_subject(summary(&expected)));
    }
}

/// Event ids by their subject (household, or partition for a stall), in
/// order: the order that counts downstream. Between households it may
/// differ — live ticks fire a silence's deadlines a few at a time, with
/// held openings released between them; the replay fires them in one step.
fn per_subject(ids: Vec<String>) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut by = std::collections::BTreeMap::<String, Vec<String>>::new();
    for id in ids {
        let subject = id.split(':').nth(1).unwrap_or_default().to_string();
        by.entry(subject).or_default().push(id);
    }
    by
}

/// Issue 14, path 5, the other direction: the monitor's own clock jumps 15
/// minutes ahead (injected wall time) while its plugs report on time. No
/// deadline may fire early from it (that would be a flood of false
/// ATTENTIONs across the partition): wall-clock firing never runs more than
/// `QUIET_PARTITION_INPUT_MS` past the last input, and the event time now
/// lagging the clock stalls the partition, so SRE hears of it once.
#[test]
fn a_monitor_clock_ahead_stalls_and_fires_nothing_early() {
    // 8 minutes: within the lag a healthy partition may have, so no stall;
    // 15: past it, one stall.
    for (ahead_min, stalls) in [(8, 0), (15, 1)] {
        let (s, out) = monitor_clock_ahead(ahead_min);
        let evs = events(&out);
        assert!(
            evs.iter()
                .all(|e| e.kind == pb::IncidentKind::PipelineStall as i32),
            "{ahead_min} min ahead: nothing but a stall: {:?}",
            summary(&out)
        );
        assert_eq!(evs.len(), stalls, "{ahead_min} min: {:?}", summary(&out));
        assert_eq!(s.is_stalled(), stalls == 1);
        assert!(s.fired_to() < T0.plus_ms(30 * MINUTE_MS));
    }
}

/// Three quiet homes report every minute for 25 minutes, their ATTENTIONs
/// due at minute 30; from minute 10 the monitor's clock is `ahead_min`
/// ahead (so it reads past minute 30), ticking every second.
fn monitor_clock_ahead(ahead_min: i64) -> (Shard, Vec<Output>) {
    let mut o = opts();
    o.clock = ClockMode::Wall;
    let mut s = Shard::new(0, o, router(), T0);
    let mut out = Vec::new();
    for i in 0..3 {
        let mut c = cfg(i, "1111051500");
        c.offline_after_minutes = 20;
        c.thresholds.attention_minutes = 30;
        s.apply_config(c, T0, &mut out).unwrap();
    }
    let ahead = ahead_min * MINUTE_MS;
    for m in 0..25 {
        let t = T0.plus_ms(m * MINUTE_MS);
        let wall = if m < 10 { t } else { t.plus_ms(ahead) };
        s.set_caught_up(true);
        for i in 0..3 {
            s.on_reading_sent(&reading(i, t, m as u64 + 1, 5.0), Some(t), wall, &mut out)
                .unwrap();
        }
        s.advance(wall, &mut out);
        for tick in 1..60 {
            s.advance(wall.plus_ms(tick * 1_000), &mut out);
        }
    }
    (s, out)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    /// Sweeping stale wheel entries ahead of time (any horizon, any
    /// budget) changes nothing the shard emits, nor when.
    #[test]
    fn sweeping_the_wheel_ahead_changes_no_output(
        recs in script(),
        ahead_min in 1i64..(24 * 60),
        min_budget in 1usize..4,
    ) {
        let mut plain = fresh();
        plain.sweep_ahead_ms = 0;
        let mut swept = fresh();
        swept.sweep_ahead_ms = ahead_min * MINUTE_MS;
        swept.sweep_min = min_budget;
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for r in &recs {
            feed(&mut plain, r, &mut a);
            feed(&mut swept, r, &mut b);
            prop_assert_eq!(summary(&a), summary(&b));
        }
    }
}

/// Households registered in the same millisecond, each then reporting at
/// its own second: their first offline checks (30 minutes after
/// registration) all went stale in one bucket. By the time that bucket
/// comes due the sweep has moved them to their real deadlines.
#[test]
fn stale_entries_registered_together_are_swept_before_their_bucket_comes_due() {
    let mut s = Shard::new(0, opts(), router(), WALL0);
    let mut out = Vec::new();
    let n = 3_000;
    for i in 0..n {
        s.apply_config(cfg(i, "1111051500"), WALL0, &mut out)
            .unwrap();
    }
    let first_check = T0.plus_ms(30 * MINUTE_MS).millis();
    let bucket_of_first_check = |s: &Shard| s.wheel.in_bucket(first_check);
    assert_eq!(bucket_of_first_check(&s), n);
    for sec in 1..30 * 60 {
        for i in (0..n).filter(|i| (*i as i64) % 60 == sec % 60) {
            let r = reading(i, T0.plus_ms(sec * 1000 - 1), sec as u64, 5.0);
            s.on_reading(&r, WALL0, &mut out).unwrap();
        }
        s.advance(WALL0, &mut out);
    }
    assert!(events(&out).is_empty());
    assert_eq!(bucket_of_first_check(&s), 0, "every stale entry swept");
    assert_eq!(
        s.pending_deadlines(),
        n,
        "one entry each, at its real deadline"
    );
}
