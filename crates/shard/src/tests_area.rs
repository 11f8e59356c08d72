//! Areas judged across partitions: one dong's homes spread over many
//! shards that share one [`AreaBoard`], as the monitor's shards do.

use super::tests::{cfg, events, opts, reading, router, T0, WALL0};
use super::*;
use dolbom_domain::MINUTE_MS;
use proptest::prelude::*;

const DONG: &str = "1111051500";
/// Homes in the dong; all but the first `lit` lose power at `cut`.
const HOMES: usize = 40;

/// Homes of other dongs each shard also hosts (they stay active and keep
/// every partition's clock moving, as a real partition's thousands do).
const NEIGHBOURS: usize = 3;

/// A dong of [`HOMES`] homes over `partitions` shards sharing one board
/// (home i on shard i % partitions, as a hash would spread them), and
/// [`NEIGHBOURS`] homes of another dong on each shard.
fn town(partitions: usize) -> Vec<Shard> {
    let board = AreaBoard::new();
    let mut out = Vec::new();
    let mut shards: Vec<Shard> = (0..partitions)
        .map(|p| {
            let mut s = Shard::new(p as i32, opts(), router(), WALL0);
            s.share_areas(board.clone());
            s
        })
        .collect();
    for i in 0..HOMES {
        shards[i % partitions]
            .apply_config(cfg(i, DONG), WALL0, &mut out)
            .unwrap();
    }
    for (p, shard) in shards.iter_mut().enumerate() {
        for k in 0..NEIGHBOURS {
            let i = 1000 + p * NEIGHBOURS + k;
            shard
                .apply_config(cfg(i, "1111052000"), WALL0, &mut out)
                .unwrap();
        }
    }
    assert!(out.is_empty());
    shards
}

/// Runs `minutes`; `dark(i, m)` says whether home i's plug is silent in
/// minute m. Shards take each minute in the order `order` gives. Each
/// active home is busy at its own minute of the hour, so no inactivity.
fn run(
    shards: &mut [Shard],
    minutes: i64,
    dark: impl Fn(usize, i64) -> bool,
    order: impl Fn(i64, usize) -> Vec<usize>,
) -> Vec<Output> {
    let n = shards.len();
    let mut out = Vec::new();
    for m in 0..minutes {
        for p in order(m, n) {
            minute(shards, p, m, &dark, &mut out);
        }
    }
    out
}

/// Shard `p` takes minute `m` of its homes' readings and advances.
fn minute(
    shards: &mut [Shard],
    p: usize,
    m: i64,
    dark: &impl Fn(usize, i64) -> bool,
    out: &mut Vec<Output>,
) {
    minute_at(shards, p, m, dark, WALL0, out);
}

/// [`minute`] at wall time `wall`.
fn minute_at(
    shards: &mut [Shard],
    p: usize,
    m: i64,
    dark: &impl Fn(usize, i64) -> bool,
    wall: Ts,
    out: &mut Vec<Output>,
) {
    let n = shards.len();
    let t = T0.plus_ms(m * MINUTE_MS);
    let neighbours = (0..NEIGHBOURS).map(|k| 1000 + p * NEIGHBOURS + k);
    for i in (p..HOMES).step_by(n).chain(neighbours) {
        if i < HOMES && dark(i, m) {
            continue;
        }
        let w = if m % 60 == (i % 60) as i64 {
            100.0
        } else {
            5.0
        };
        shards[p]
            .on_reading(&reading(i, t, m as u64, w), wall, out)
            .unwrap();
    }
    shards[p].advance(wall, out);
}

/// Like [`run`], but shard `p` works `behind(p)` minutes behind the
/// others (a backlog, a replay: partitions do not move in step).
fn run_skewed(
    shards: &mut [Shard],
    minutes: i64,
    dark: impl Fn(usize, i64) -> bool,
    behind: impl Fn(usize) -> i64,
) -> Vec<Output> {
    let n = shards.len();
    let most = (0..n).map(&behind).max().unwrap_or(0);
    let mut out = Vec::new();
    for step in 0..minutes + most {
        for p in 0..n {
            let m = step - behind(p);
            if (0..minutes).contains(&m) {
                minute(shards, p, m, &dark, &mut out);
            }
        }
    }
    out
}

fn in_order(_: i64, n: usize) -> Vec<usize> {
    (0..n).collect()
}

/// (distinct area incident ids, household events as "hh-i/TYPE").
fn tally(out: &[Output]) -> (BTreeSet<String>, Vec<String>) {
    let mut areas = BTreeSet::new();
    let mut homes = Vec::new();
    for e in events(out) {
        if e.kind == pb::IncidentKind::AreaOutage as i32 {
            areas.insert(e.incident_id.clone());
        } else {
            let ty = pb::IncidentEventType::try_from(e.r#type).unwrap();
            homes.push(format!("{}/{}", e.household_id, ty.as_str_name()));
        }
    }
    (areas, homes)
}

use std::collections::BTreeSet;

/// Every home but 0–3 dark from minute 60; power back at 180 except for
/// home 39, whose plug broke.
fn blackout(i: usize, m: i64) -> bool {
    i >= 4 && m >= 60 && (m < 180 || i == 39)
}

#[test]
fn a_dong_blackout_is_one_area_incident_however_many_partitions_hold_it() {
    for partitions in [1, 12, 48] {
        let mut shards = town(partitions);
        let out = run(&mut shards, 300, blackout, in_order);
        let (areas, homes) = tally(&out);
        assert_eq!(areas.len(), 1, "{partitions} partitions: {areas:?}");
        // Each id opened and recovered (possibly by several shards: same ids).
        let mut ids: Vec<String> = events(&out)
            .iter()
            .filter(|e| e.kind == pb::IncidentKind::AreaOutage as i32)
            .map(|e| e.event_id.clone())
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 2, "{partitions} partitions: {ids:?}");
        // The broken plug is released when the area recovers; nobody else.
        assert_eq!(
            homes,
            vec!["hh-39/INCIDENT_EVENT_TYPE_OPENED".to_string()],
            "{partitions} partitions"
        );
    }
}

#[test]
fn scattered_offline_plugs_stay_their_own_incidents_however_many_partitions() {
    // Six plugs of forty break at once: under the share, not an outage.
    for partitions in [1, 12, 48] {
        let mut shards = town(partitions);
        let broken = |i: usize, m: i64| m >= 60 && [3, 9, 17, 22, 30, 38].contains(&i);
        let out = run(&mut shards, 200, broken, in_order);
        let (areas, homes) = tally(&out);
        assert!(areas.is_empty(), "{partitions} partitions: {areas:?}");
        assert_eq!(homes.len(), 6, "{partitions} partitions: {homes:?}");
    }
}

#[test]
fn a_blackout_is_one_area_incident_when_partitions_are_minutes_apart() {
    // Half the shards run 20 minutes behind the others (far more than the
    // 2-minute hold): the shards ahead must wait for their share.
    for partitions in [4, 12] {
        let behind = |p: usize| if p % 2 == 1 { 20 } else { 0 };
        let mut shards = town(partitions);
        let out = run_skewed(&mut shards, 300, blackout, behind);
        let (areas, homes) = tally(&out);
        assert_eq!(areas.len(), 1, "{partitions} partitions: {areas:?}");
        assert_eq!(
            homes,
            vec!["hh-39/INCIDENT_EVENT_TYPE_OPENED".to_string()],
            "{partitions} partitions"
        );
        // Without the wait, the shards ahead announce their homes one by
        // one (the town scenario over Kafka: 251 false DEVICE_OFFLINE).
        let mut shards = town(partitions);
        for s in &mut shards {
            s.opts.area.max_wait_ms = 0;
        }
        let out = run_skewed(&mut shards, 300, blackout, behind);
        let (_, homes) = tally(&out);
        assert!(homes.len() > 10, "{partitions} partitions: {homes:?}");
    }
}

#[test]
fn a_partition_that_stays_behind_delays_a_lone_offline_plug_at_most_max_wait() {
    // One plug breaks; a shard hosting part of its dong never gets past
    // minute 70: the opening waits for it no longer than max_wait_ms.
    let mut shards = town(4);
    let broken = |i: usize, m: i64| i == 8 && m >= 60;
    let mut out = Vec::new();
    for m in 0..200 {
        for p in 0..4 {
            if p == 1 && m > 70 {
                continue;
            }
            minute(&mut shards, p, m, &broken, &mut out);
        }
    }
    let opened: Vec<&pb::IncidentEvent> = events(&out)
        .into_iter()
        .filter(|e| e.household_id == "hh-8")
        .collect();
    assert_eq!(opened.len(), 1, "{opened:?}");
    let emitted = dolbom_domain::convert::ts(opened[0].emitted_at.as_ref().unwrap());
    let due = dolbom_domain::convert::ts(opened[0].due_at.as_ref().unwrap());
    let wait = emitted.since(due);
    let most = shards[0].opts.area.hold_ms + shards[0].opts.area.max_wait_ms;
    assert!(
        wait > shards[0].opts.area.hold_ms && wait <= most + MINUTE_MS,
        "announced {wait} ms after due"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    /// However far apart (within the wait) the partitions work, a
    /// dong-wide blackout is one area incident.
    #[test]
    fn the_area_decision_does_not_depend_on_how_far_apart_partitions_are(
        partitions in 2usize..=24,
        lags in proptest::collection::vec(0i64..25, 24),
    ) {
        let mut shards = town(partitions);
        let out = run_skewed(&mut shards, 300, blackout, |p| lags[p]);
        let (areas, homes) = tally(&out);
        prop_assert_eq!(areas.len(), 1);
        prop_assert_eq!(homes, vec!["hh-39/INCIDENT_EVENT_TYPE_OPENED".to_string()]);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    /// Whatever the partition count and whichever shard works first each
    /// minute, a dong-wide blackout is one area incident and only the plug
    /// that stays dark is announced.
    #[test]
    fn the_area_decision_depends_neither_on_partitions_nor_on_order(
        partitions in 1usize..=48,
        seed in any::<u64>(),
        cut in 30i64..90,
    ) {
        let mut shards = town(partitions);
        let order = |m: i64, n: usize| {
            let mut v: Vec<usize> = (0..n).collect();
            let mut x = seed ^ (m as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            for i in (1..n).rev() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                v.swap(i, (x % (i as u64 + 1)) as usize);
            }
            v
        };
        let dark = |i: usize, m: i64| i >= 4 && m >= cut && (m < cut + 120 || i == 39);
        let out = run(&mut shards, cut + 240, dark, order);
        let (areas, homes) = tally(&out);
        prop_assert_eq!(areas.len(), 1);
        prop_assert_eq!(homes, vec!["hh-39/INCIDENT_EVENT_TYPE_OPENED".to_string()]);
    }
}

/// Two monitors, each with its own board and half the partitions, that
/// exchange parts and progress every `every` steps as the areas task does
/// (progress taken before the parts; one copy of the topic). Monitor B runs
/// `lag` minutes behind A; each step is `step_ms` of wall time; `tweak`
/// adjusts every shard. Each replays 300 minutes and then twice `every`
/// more (what the exchanges settle still has minutes to play out).
/// Returns everything both published.
fn two_monitors(
    partitions: usize,
    lag: i64,
    step_ms: i64,
    every: i64,
    tweak: impl Fn(&mut Shard),
) -> Vec<Output> {
    let (a, b) = (AreaBoard::new(), AreaBoard::new());
    a.share_progress_on(1, partitions as i32);
    b.share_progress_on(1, partitions as i32);
    let mut shards = town(partitions);
    let half = partitions / 2;
    for (p, s) in shards.iter_mut().enumerate() {
        tweak(s);
        s.share_areas(if p < half { a.clone() } else { b.clone() });
    }
    let share = |from: &AreaBoard, name: &str, to: &AreaBoard, wall: Ts| {
        let progress = from.take_progress(name, wall.millis());
        for part in from.take_changed() {
            to.merge(part);
        }
        if let Some(progress) = progress {
            to.merge_progress(0, &progress);
        }
    };
    let minutes = 300 + 2 * every;
    let mut out = Vec::new();
    for step in 0..minutes + lag + 40 {
        let wall = WALL0.plus_ms(step * step_ms);
        for p in 0..partitions {
            let m = if p < half { step } else { step - lag };
            if (0..minutes).contains(&m) {
                minute_at(&mut shards, p, m, &blackout, wall, &mut out);
            } else {
                shards[p].advance(wall, &mut out);
            }
        }
        // The first exchange comes `every` steps in: a monitor's parts (its
        // households too) reach the other one late.
        if step % every == every - 1 {
            share(&a, "a", &b, wall);
            share(&b, "b", &a, wall);
        }
    }
    out
}

/// The blackout came out as one area incident, and only the plug that
/// stays dark was announced (when its area recovered).
fn assert_one_area_incident(out: &[Output], label: &str) {
    let (areas, homes) = tally(out);
    assert_eq!(areas.len(), 1, "{label}: {areas:?}");
    assert_eq!(
        homes,
        vec!["hh-39/INCIDENT_EVENT_TYPE_OPENED".to_string()],
        "{label}"
    );
}

#[test]
fn a_blackout_split_over_two_monitors_replaying_far_faster_than_real_time_is_one_area_incident() {
    // Both monitors replay a backlog at 6 000× real time (a minute of
    // readings every 10 ms); B is 60 minutes behind A and their boards
    // meet every 0.5 s, so A is 30 minutes past its openings' release —
    // beyond max_wait_ms — before B's progress and parts arrive.
    for partitions in [4, 12] {
        let out = two_monitors(partitions, 60, 10, 50, |_| {});
        assert_one_area_incident(&out, &format!("{partitions} partitions"));
    }
}

#[test]
fn homes_back_before_the_other_monitors_share_arrives_are_absorbed_with_the_blackout() {
    // B is two hours behind, and the boards meet only every 1.5 s of wall
    // time (150 replayed minutes): the dark homes are back (minute 180)
    // while their openings still wait for the other monitor. Their
    // recoveries wait with them, and both are absorbed once the other
    // monitor's share shows the outage.
    for partitions in [4, 12] {
        let out = two_monitors(partitions, 120, 10, 150, |_| {});
        assert_one_area_incident(&out, &format!("{partitions} partitions"));
    }
}

#[test]
fn without_the_wall_clock_wait_a_fast_replay_announces_the_blackout_home_by_home() {
    // The same replay with remote_wait_ms = 0: the event-time wait alone
    // runs out before the other monitor's share arrives, and A's dark homes
    // come out one by one as DEVICE_OFFLINE (what monitors replaying a
    // backlog did before they shared progress).
    let out = two_monitors(4, 60, 10, 50, |s| s.opts.area.remote_wait_ms = 0);
    let (_, homes) = tally(&out);
    assert!(homes.len() > 10, "{homes:?}");
}
