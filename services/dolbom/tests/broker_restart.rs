//! The broker killed and restarted (issue 14, fault list): Tansu keeps its
//! log in a SQLite file, is SIGKILLed while the monitor works through the
//! quiet homes' deadlines, and comes back on the same port with what it
//! held some seconds later. `dolbom monitor` (a process) must come through
//! with every expected incident event once and nothing else.
//!
//! Needs a Tansu built with SQLite storage (`--features libsql`, as
//! `.ci/run` installs it); without one the test says loudly that it was
//! skipped, and under CI it fails.

mod harness;

use dolbom_load_tests::broker::PersistentBroker;
use harness::*;
use std::time::{Duration, Instant};

#[test]
fn a_broker_killed_and_restarted_loses_and_doubles_nothing() {
    let _turn = serial();
    let test = "t16";
    let dir = tempfile::tempdir().unwrap();
    let Some(mut b) = PersistentBroker::start(&dir.path().join("tansu.db")).expect("start tansu")
    else {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: no Tansu with SQLite storage (cargo install tansu --locked --features dynostore,libsql)"
        );
        eprintln!(
            "SKIPPED {test}: no Tansu with SQLite storage; the broker restart was NOT tested"
        );
        return;
    };
    let t = topics(test);
    // Some openings out, then the broker dies under the monitor.
    let (m, rt, p) = monitor_past_the_first_openings(&b.addr, &t, dir.path());
    let killed = Instant::now();
    b.kill();
    std::thread::sleep(Duration::from_secs(5));
    b.restart().expect("tansu restarts on its file");
    eprintln!(
        "{test}: broker down {:.1} s",
        killed.elapsed().as_secs_f64()
    );
    rt.block_on(produce_minutes(&p, &t, 12 * 60 + 30..14 * 60));
    assert_exactly_expected(&b.addr, &t, &[&m]);
    eprintln!(
        "{test}: every expected event once, {:.1} s after the broker died",
        killed.elapsed().as_secs_f64()
    );
    m.terminate();
}
