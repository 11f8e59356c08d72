//! The `smoke` scenario end to end, in process: the plug simulator's town
//! (routines, on-change reports, jitter, duplicates, shuffled delivery, a
//! dong blackout, a pipeline stall) through the monitor's shards, notify and
//! the history writer, checked against the ground truth. Correctness only:
//! latency is measured but never judged here.

use dolbom_load_tests::scenario::Scenario;
use dolbom_town::truth::ScriptKind;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_scenario_matches_its_ground_truth() {
    let mut sc = Scenario::preset("smoke").unwrap();
    sc.progress = false;
    let (report, truth, _) = dolbom_load_tests::inproc::run(&sc).await.unwrap();
    let v = &report.verdict;
    assert!(v.correct(), "{}", report.render());
    assert!(report.downstream.consistent(), "{}", report.render());
    // The run exercised what it claims to.
    let quiet = truth
        .scripted
        .iter()
        .filter(|s| s.kind == ScriptKind::Quiet)
        .count();
    assert!(quiet >= 5 && v.expected >= 3 * quiet, "{}", report.render());
    assert_eq!(v.matched, v.expected);
    assert!(v.area_incidents >= 1 && v.stall_incidents >= 1);
    assert!(report.duplicates > 0 && report.dropped_by_blackout > 0);
    assert!(!truth.blackouts[0].households.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_stall_and_blackout_nothing_of_theirs_is_raised() {
    let mut sc = Scenario::preset("smoke").unwrap();
    sc.progress = false;
    sc.stall_at_hours = None;
    sc.blackout = None;
    sc.seed = 7;
    let (report, _, _) = dolbom_load_tests::inproc::run(&sc).await.unwrap();
    let v = &report.verdict;
    assert!(v.correct(), "{}", report.render());
    assert_eq!((v.area_incidents, v.stall_incidents), (0, 0));
}

/// Issue 14, path 7: the area decision must not depend on the partition
/// count. The smoke town's blackout darkens one dong (about 40 homes); with
/// 12 and 48 partitions each shard hosts only a few of them, under any
/// shard's own threshold, yet the blackout must come out as one area
/// incident and no household incident.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dong_blackout_is_one_area_incident_with_12_and_with_48_partitions() {
    for partitions in [12, 48] {
        let mut sc = Scenario::preset("smoke").unwrap();
        sc.progress = false;
        sc.stall_at_hours = None;
        sc.partitions = partitions;
        let (report, truth, _) = dolbom_load_tests::inproc::run(&sc).await.unwrap();
        let v = &report.verdict;
        assert!(v.correct(), "{partitions} partitions: {}", report.render());
        assert_eq!(
            v.area_incidents,
            1,
            "{partitions} partitions: {}",
            report.render()
        );
        assert!(truth.blackouts[0].households.len() >= 20);
    }
}
