//! Routing by office hours, weekends and holidays, with and without consent.

use dolbom_calendar::Router;
use dolbom_domain::incident::Route;
use dolbom_domain::Ts;
use proptest::prelude::*;

fn router() -> Router {
    Router::builtin()
}

fn at(s: &str) -> Ts {
    Ts::parse_rfc3339(s).unwrap()
}

#[test]
fn weekday_office_hours_go_to_the_dong_office() {
    let r = router();
    // Tuesday 2026-03-03, 10:00 KST.
    assert_eq!(
        r.route(at("2026-03-03T10:00:00+09:00"), false),
        Route::DongOffice
    );
    assert_eq!(
        r.route(at("2026-03-03T09:00:00+09:00"), true),
        Route::DongOffice
    );
    assert_eq!(
        r.route(at("2026-03-03T17:59:00+09:00"), false),
        Route::DongOffice
    );
}

#[test]
fn nights_weekends_and_holidays_go_to_the_control_center_with_consent() {
    let r = router();
    for t in [
        "2026-03-03T18:00:00+09:00", // closing time
        "2026-03-03T02:00:00+09:00", // night
        "2026-03-07T11:00:00+09:00", // Saturday
        "2026-03-02T11:00:00+09:00", // 대체공휴일(삼일절), a Monday
        "2026-09-25T11:00:00+09:00", // 추석
    ] {
        assert_eq!(r.route(at(t), true), Route::ControlCenter, "{t}");
    }
}

#[test]
fn without_consent_it_is_held_until_the_next_opening() {
    let r = router();
    let held = |t: &str| match r.route(at(t), false) {
        Route::Held { until } => until,
        other => panic!("{t}: {other:?}"),
    };
    // Friday evening → Monday 09:00.
    assert_eq!(
        held("2026-03-06T20:00:00+09:00"),
        at("2026-03-09T09:00:00+09:00")
    );
    // Early Tuesday → same day 09:00.
    assert_eq!(
        held("2026-03-03T06:30:00+09:00"),
        at("2026-03-03T09:00:00+09:00")
    );
    // 설날 연휴 2026 (Mon 16 – Wed 18 Feb) seen from Saturday the 14th → Thursday the 19th.
    assert_eq!(
        held("2026-02-14T12:00:00+09:00"),
        at("2026-02-19T09:00:00+09:00")
    );
    // 추석 2025 (Sun 5 – Tue 7 Oct), 대체공휴일 Wed 8, 한글날 Thu 9 → Fri 10 Oct.
    assert_eq!(
        held("2025-10-03T12:00:00+09:00"),
        at("2025-10-10T09:00:00+09:00")
    );
}

proptest! {
    #[test]
    fn routing_is_consistent(ms in 946_684_800_000i64..2_556_057_600_000, consent in any::<bool>()) {
        let r = router();
        let t = Ts(ms);
        let route = r.route(t, consent);
        if r.is_office_open(t) {
            prop_assert_eq!(route, Route::DongOffice);
        } else if consent {
            prop_assert_eq!(route, Route::ControlCenter);
        } else {
            let Route::Held { until } = route else { panic!("{route:?}") };
            prop_assert!(until > t);
            prop_assert!(r.is_office_open(until));
            // Nothing opens in between: one minute earlier it was still closed.
            prop_assert!(!r.is_office_open(until.plus_ms(-60_000)));
        }
    }
}
