//! The calendar against the officially announced holidays, and its rules as
//! properties over 2000–2050.

use chrono::{Datelike, Days, NaiveDate, Weekday};
use dolbom_calendar::{HolidayCalendar, HolidayKind, FIRST_YEAR, LAST_YEAR};

fn listing(cal: &HolidayCalendar, year: i32) -> Vec<String> {
    cal.holidays(year)
        .unwrap()
        .iter()
        .map(|h| format!("{}\t{}", h.date, h.name))
        .collect()
}

fn lines(s: &str) -> Vec<String> {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| l.replacen(' ', "\t", 1))
        .collect()
}

#[test]
fn official_2024() {
    let cal = HolidayCalendar::builtin();
    assert_eq!(
        listing(&cal, 2024),
        lines(
            "2024-01-01 신정
             2024-02-09 설날 전날
             2024-02-10 설날
             2024-02-11 설날 다음날
             2024-02-12 대체공휴일(설날 다음날)
             2024-03-01 삼일절
             2024-04-10 제22대 국회의원선거
             2024-05-05 어린이날
             2024-05-06 대체공휴일(어린이날)
             2024-05-15 부처님오신날
             2024-06-06 현충일
             2024-08-15 광복절
             2024-09-16 추석 전날
             2024-09-17 추석
             2024-09-18 추석 다음날
             2024-10-01 임시공휴일(국군의 날)
             2024-10-03 개천절
             2024-10-09 한글날
             2024-12-25 기독탄신일"
        )
    );
}

#[test]
fn official_2025() {
    let cal = HolidayCalendar::builtin();
    assert_eq!(
        listing(&cal, 2025),
        lines(
            "2025-01-01 신정
             2025-01-27 임시공휴일
             2025-01-28 설날 전날
             2025-01-29 설날
             2025-01-30 설날 다음날
             2025-03-01 삼일절
             2025-03-03 대체공휴일(삼일절)
             2025-05-05 어린이날
             2025-05-05 부처님오신날
             2025-05-06 대체공휴일(어린이날·부처님오신날)
             2025-06-03 제21대 대통령선거
             2025-06-06 현충일
             2025-08-15 광복절
             2025-10-03 개천절
             2025-10-05 추석 전날
             2025-10-06 추석
             2025-10-07 추석 다음날
             2025-10-08 대체공휴일(추석 전날)
             2025-10-09 한글날
             2025-12-25 기독탄신일"
        )
    );
}

#[test]
fn official_2026() {
    let cal = HolidayCalendar::builtin();
    assert_eq!(
        listing(&cal, 2026),
        lines(
            "2026-01-01 신정
             2026-02-16 설날 전날
             2026-02-17 설날
             2026-02-18 설날 다음날
             2026-03-01 삼일절
             2026-03-02 대체공휴일(삼일절)
             2026-05-01 노동절
             2026-05-05 어린이날
             2026-05-24 부처님오신날
             2026-05-25 대체공휴일(부처님오신날)
             2026-06-03 제9회 전국동시지방선거
             2026-06-06 현충일
             2026-07-17 제헌절
             2026-08-15 광복절
             2026-08-17 대체공휴일(광복절)
             2026-09-24 추석 전날
             2026-09-25 추석
             2026-09-26 추석 다음날
             2026-10-03 개천절
             2026-10-05 대체공휴일(개천절)
             2026-10-09 한글날
             2026-12-25 기독탄신일"
        )
    );
}

fn d(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

#[test]
fn substitute_holidays_of_earlier_years_follow_the_rules_then_in_force() {
    let cal = HolidayCalendar::builtin();
    let subs: Vec<NaiveDate> = (2013..=2023)
        .flat_map(|y| cal.holidays(y).unwrap())
        .filter(|h| h.kind == HolidayKind::Substitute)
        .map(|h| h.date)
        .collect();
    let want: Vec<NaiveDate> = [
        "2014-09-10", // 추석 on a Sunday, first year of the rule
        "2015-09-29",
        "2016-02-10", // 설날 전날 on a Sunday
        "2017-01-30", // 설날 다음날 on a Sunday
        "2017-10-06", // 추석 전날 shared with 개천절
        "2018-05-07", // 어린이날 on a Saturday
        "2018-09-26",
        "2019-05-06",
        "2020-01-27",
        "2021-08-16", // 국경일 become eligible from 2021-08-15
        "2021-10-04",
        "2021-10-11",
        "2022-09-12",
        "2022-10-10",
        "2023-01-24",
        "2023-05-29", // 부처님오신날 eligible from 2023-05-04
    ]
    .iter()
    .map(|s| d(s))
    .collect();
    assert_eq!(subs, want);
    // Before 2014 there were none; before 2008 제헌절 was a holiday, 식목일
    // until 2005; 한글날 returns in 2013.
    assert!(cal.is_holiday(d("2007-07-17")) && !cal.is_holiday(d("2008-07-17")));
    assert!(cal.is_holiday(d("2005-04-05")) && !cal.is_holiday(d("2006-04-05")));
    assert!(!cal.is_holiday(d("2012-10-09")) && cal.is_holiday(d("2013-10-09")));
}

#[test]
fn every_year_has_its_lunar_holidays_and_sane_substitutes() {
    let cal = HolidayCalendar::builtin();
    for y in FIRST_YEAR..=LAST_YEAR {
        let hs = cal.holidays(y).unwrap();
        let find = |n: &str| hs.iter().find(|h| h.name == n).map(|h| h.date);
        let seol = find("설날").unwrap();
        assert!((1..=2).contains(&seol.month()), "{y} 설날 {seol}");
        assert_eq!(find("설날 전날").unwrap() + Days::new(1), seol);
        assert_eq!(seol + Days::new(1), find("설날 다음날").unwrap());
        let chuseok = find("추석").unwrap();
        assert!((9..=10).contains(&chuseok.month()), "{y} 추석 {chuseok}");
        assert_eq!(find("추석 전날").unwrap() + Days::new(1), chuseok);
        let buddha = find("부처님오신날").unwrap();
        assert!(
            (4..=6).contains(&buddha.month()),
            "{y} 부처님오신날 {buddha}"
        );
        assert!((13..=26).contains(&hs.len()), "{y}: {} holidays", hs.len());
        let mut dates: Vec<NaiveDate> = hs.iter().map(|h| h.date).collect();
        assert!(dates.windows(2).all(|w| w[0] <= w[1]), "{y} not sorted");
        dates.dedup();
        for h in hs.iter().filter(|h| h.kind == HolidayKind::Substitute) {
            assert!(
                !matches!(h.date.weekday(), Weekday::Sat | Weekday::Sun),
                "{y}: substitute on a weekend: {h:?}"
            );
            let same_day = hs.iter().filter(|o| o.date == h.date).count();
            assert_eq!(same_day, 1, "{y}: substitute shares its day: {h:?}");
            assert!(y >= 2014);
        }
    }
    assert!(cal.holidays(1999).is_err());
    assert!(cal.holidays(2051).is_err());
}

#[test]
fn operators_can_add_temporary_holidays() {
    let cal = HolidayCalendar::builtin()
        .with_extra_toml(
            "[[day]]\ndate = \"2027-05-03\"\nname = \"임시공휴일\"\nkind = \"temporary\"\n",
            "test",
        )
        .unwrap();
    assert!(cal.is_holiday(d("2027-05-03")));
    assert!(HolidayCalendar::builtin()
        .with_extra_toml(
            "[[day]]\ndate = \"2027-05-03\"\nname = \"x\"\nkind = \"fixed\"\n",
            "t"
        )
        .is_err());
    assert!(HolidayCalendar::builtin()
        .with_extra_toml("not toml", "t")
        .is_err());
}

/// 노동절 from 2026 (the amendment promulgated 2026-02-10), substituted when
/// it falls on a weekend, in every year the calendar covers.
#[test]
fn labour_day_is_a_holiday_from_2026_with_its_substitute() {
    let cal = HolidayCalendar::builtin();
    for y in FIRST_YEAR..2026 {
        let named = cal
            .holidays(y)
            .unwrap()
            .iter()
            .any(|h| h.name.contains("노동절"));
        assert!(!named, "{y}: no 노동절 before 2026");
    }
    let mut substituted = 0;
    for y in 2026..=LAST_YEAR {
        let may1 = NaiveDate::from_ymd_opt(y, 5, 1).unwrap();
        let hs = cal.holidays(y).unwrap();
        assert!(
            hs.iter().any(|h| h.date == may1 && h.name == "노동절"),
            "{y}"
        );
        let sub = hs
            .iter()
            .find(|h| h.kind == HolidayKind::Substitute && h.name.contains("노동절"));
        if matches!(may1.weekday(), Weekday::Sat | Weekday::Sun) {
            // The first following day that is neither a weekend nor another
            // holiday (nor another holiday's substitute: 2039 gives
            // 부처님오신날's the Monday, 노동절's the Tuesday).
            let sub = sub.unwrap_or_else(|| panic!("{y}: no substitute for 노동절"));
            let mut want = may1 + Days::new(1);
            while matches!(want.weekday(), Weekday::Sat | Weekday::Sun)
                || hs.iter().any(|h| h.date == want && h.name != sub.name)
            {
                want = want + Days::new(1);
            }
            assert_eq!(sub.date, want, "{y}");
            substituted += 1;
        } else {
            assert!(sub.is_none(), "{y}: {sub:?}");
        }
    }
    assert!(substituted >= 5, "{substituted}");
    assert_eq!(
        cal.holidays(2027)
            .unwrap()
            .iter()
            .find(|h| h.name == "대체공휴일(노동절)")
            .map(|h| h.date),
        Some(d("2027-05-03")),
        "2027-05-01 is a Saturday"
    );
}

/// Elections the special days do not list are estimated from the terms
/// (Article 34) and shown as such; a listed one replaces or cancels them.
#[test]
fn future_elections_are_estimated_and_a_special_day_confirms_moves_or_cancels_them() {
    let cal = HolidayCalendar::builtin();
    let elections = |cal: &HolidayCalendar, y: i32| -> Vec<String> {
        cal.holidays(y)
            .unwrap()
            .iter()
            .filter(|h| h.kind == HolidayKind::Election)
            .map(|h| format!("{} {}", h.date, h.name))
            .collect()
    };
    assert_eq!(
        elections(&cal, 2026),
        vec!["2026-06-03 제9회 전국동시지방선거"]
    );
    assert_eq!(
        elections(&cal, 2028),
        vec!["2028-04-12 제23대 국회의원선거 (예정)"]
    );
    // 2030: the presidential election from the term ending 2030-06-03; the
    // local one would fall on 06-05, the day before 현충일: a week later.
    assert_eq!(
        elections(&cal, 2030),
        vec![
            "2030-03-27 제22대 대통령선거 (예정)",
            "2030-06-12 제10회 전국동시지방선거 (예정)"
        ]
    );
    for y in 2027..=LAST_YEAR {
        for h in cal.holidays(y).unwrap() {
            if h.kind == HolidayKind::Election {
                assert_eq!(h.date.weekday(), Weekday::Wed, "{h:?}");
                assert!(h.name.ends_with("(예정)"), "{h:?}");
            }
        }
    }
    // Confirmed on another day (moved), and one cancelled.
    let cal = HolidayCalendar::builtin()
        .with_extra_toml(
            "[[day]]\ndate = \"2028-04-19\"\nname = \"제23대 국회의원선거\"\nkind = \"election\"\n\
             [[day]]\ndate = \"2030-03-27\"\nname = \"제22대 대통령선거\"\nkind = \"election\"\ncancelled = true\n",
            "test",
        )
        .unwrap();
    assert_eq!(
        elections(&cal, 2028),
        vec!["2028-04-19 제23대 국회의원선거"]
    );
    assert!(!cal.is_holiday(d("2028-04-12")));
    assert_eq!(
        elections(&cal, 2030),
        vec!["2030-06-12 제10회 전국동시지방선거 (예정)"]
    );
    assert!(!cal.is_holiday(d("2030-03-27")));
}
