//! Election days at term expiration, computed from the terms (공직선거법
//! 제34조) for the years the special-days file does not list yet.
//!
//! - 대통령선거: the first Wednesday from the 70th day before the term
//!   expires (the current term ends 2030-06-03, after the 2025 early
//!   election; then every five years);
//! - 국회의원선거: the first Wednesday from the 50th day before the term
//!   expires (May 29, every four years from 2028);
//! - 전국동시지방선거: the first Wednesday from the 30th day before the term
//!   expires (June 30, every four years from 2026);
//! - moved to the Wednesday of the following week when that day, or the day
//!   before or after it, is a public holiday or folk festival day.
//!
//! An early election (a president's removal or resignation) cannot be
//! foreseen: the special-days file adds it, and moves or cancels an
//! estimate (see [`crate::HolidayCalendar`]). Estimates are named with
//! [`ESTIMATED`] so that `dolbom holidays` shows them as such.

use chrono::{Datelike, Days, NaiveDate, Weekday};

/// Appended to an estimated election's name.
pub const ESTIMATED: &str = " (예정)";

/// One kind of election held at term expiration.
struct Term {
    /// The name every election of this kind carries, e.g. "국회의원선거".
    kind: &'static str,
    /// How the ordinal is written: "대" or "회".
    unit: &'static str,
    /// The first term end to compute from, with the ordinal of its election.
    first_end: (i32, u32, u32),
    first_ordinal: u32,
    every_years: i32,
    days_before: u64,
}

const TERMS: [Term; 3] = [
    Term {
        kind: "대통령선거",
        unit: "대",
        first_end: (2030, 6, 3),
        first_ordinal: 22,
        every_years: 5,
        days_before: 70,
    },
    Term {
        kind: "국회의원선거",
        unit: "대",
        first_end: (2028, 5, 29),
        first_ordinal: 23,
        every_years: 4,
        days_before: 50,
    },
    Term {
        kind: "전국동시지방선거",
        unit: "회",
        first_end: (2026, 6, 30),
        first_ordinal: 9,
        every_years: 4,
        days_before: 30,
    },
];

/// An election computed from its term.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Estimate {
    pub date: NaiveDate,
    /// "대통령선거", "국회의원선거" or "전국동시지방선거".
    pub kind: &'static str,
    /// E.g. "제23대 국회의원선거".
    pub name: String,
}

/// The election day for a term ending `end`, `days_before` it (Article 34),
/// with `holiday` telling public holidays and folk festival days.
pub fn election_day(
    end: NaiveDate,
    days_before: u64,
    holiday: impl Fn(NaiveDate) -> bool,
) -> NaiveDate {
    let mut d = end - Days::new(days_before);
    while d.weekday() != Weekday::Wed {
        d = d + Days::new(1);
    }
    let near_holiday =
        |d: NaiveDate| holiday(d - Days::new(1)) || holiday(d) || holiday(d + Days::new(1));
    if near_holiday(d) {
        d = d + Days::new(7);
    }
    d
}

/// Every election at term expiration whose day falls in `..=last_year`.
pub fn estimates(last_year: i32, holiday: impl Fn(NaiveDate) -> bool) -> Vec<Estimate> {
    let mut out = Vec::new();
    for t in &TERMS {
        let (y0, m, d) = t.first_end;
        let mut n = 0;
        loop {
            let year = y0 + n as i32 * t.every_years;
            let end = NaiveDate::from_ymd_opt(year, m, d).expect("valid term end");
            let date = election_day(end, t.days_before, &holiday);
            if date.year() > last_year {
                break;
            }
            out.push(Estimate {
                date,
                kind: t.kind,
                name: format!("제{}{} {}", t.first_ordinal + n, t.unit, t.kind),
            });
            n += 1;
        }
    }
    out.sort_by_key(|e| e.date);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    /// The rule reproduces the elections held at term expiration.
    #[test]
    fn past_elections_follow_article_34() {
        // 삼일절 the day before: moved a week (the 20th presidential election).
        let samil = |x: NaiveDate| x == d("2022-03-01");
        assert_eq!(election_day(d("2022-05-09"), 70, samil), d("2022-03-09"));
        assert_eq!(
            election_day(d("2013-02-24"), 70, |_| false),
            d("2012-12-19")
        );
        assert_eq!(
            election_day(d("2024-05-29"), 50, |_| false),
            d("2024-04-10")
        );
        assert_eq!(
            election_day(d("2020-05-29"), 50, |_| false),
            d("2020-04-15")
        );
        assert_eq!(
            election_day(d("2016-05-29"), 50, |_| false),
            d("2016-04-13")
        );
        assert_eq!(
            election_day(d("2022-06-30"), 30, |_| false),
            d("2022-06-01")
        );
        // 현충일 on the Wednesday: moved a week (the 7th local elections).
        let memorial = |x: NaiveDate| x == d("2018-06-06");
        assert_eq!(election_day(d("2018-06-30"), 30, memorial), d("2018-06-13"));
        assert_eq!(
            election_day(d("2026-06-30"), 30, |_| false),
            d("2026-06-03")
        );
    }

    #[test]
    fn estimates_run_to_the_last_year_in_order() {
        let e = estimates(2030, |_| false);
        let names: Vec<(String, String)> = e
            .iter()
            .map(|e| (e.date.to_string(), e.name.clone()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("2026-06-03".into(), "제9회 전국동시지방선거".into()),
                ("2028-04-12".into(), "제23대 국회의원선거".into()),
                ("2030-03-27".into(), "제22대 대통령선거".into()),
                ("2030-06-05".into(), "제10회 전국동시지방선거".into()),
            ]
        );
        for e in estimates(2050, |_| false) {
            assert_eq!(e.date.weekday(), Weekday::Wed, "{e:?}");
        }
    }
}
