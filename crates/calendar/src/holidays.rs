//! The holiday rules. See the crate docs for what is covered.

use crate::elections;
use chrono::{Datelike, Days, NaiveDate, Weekday};
use korean_lunar_calendar::{lunar_to_gregorian, LunarDate};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use Substitute::{Never, SundayOrOther, WeekendOrOther};

/// First year the calendar covers.
pub const FIRST_YEAR: i32 = 2000;
/// Last year the calendar covers (the end of the KASI lunar tables we use).
pub const LAST_YEAR: i32 = 2050;

#[derive(Debug, thiserror::Error)]
pub enum CalendarError {
    #[error("year {0} is outside {FIRST_YEAR}–{LAST_YEAR}")]
    YearOutOfRange(i32),
    #[error("cannot read special days file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid special days file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("office hours: open_minute ({open}) must be before close_minute ({close}) ≤ 1440")]
    OfficeHours { open: u16, close: u16 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HolidayKind {
    /// A fixed-date holiday (국경일, 신정, 어린이날, 현충일, 기독탄신일, …).
    Fixed,
    /// 설날, 추석, 부처님오신날.
    Lunar,
    /// 대체공휴일.
    Substitute,
    /// An election day.
    Election,
    /// A temporary holiday (임시공휴일).
    Temporary,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holiday {
    pub date: NaiveDate,
    pub name: String,
    pub kind: HolidayKind,
}

/// Which substitute-holiday rule a holiday falls under.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Substitute {
    /// Never substituted (신정, 현충일, election and temporary days).
    Never,
    /// 설날/추석: a substitute when a day of the period falls on a Sunday or on
    /// another holiday (since 2014).
    SundayOrOther {
        since: NaiveDate,
        period_end: NaiveDate,
    },
    /// 어린이날 (since 2014), 국경일 (since 2021-08-15), 부처님오신날 and
    /// 기독탄신일 (since 2023-05-04): Saturday, Sunday or another holiday.
    WeekendOrOther { since: NaiveDate },
}

#[derive(Clone, Debug)]
struct Occurrence {
    name: String,
    kind: HolidayKind,
    rule: Substitute,
}

#[derive(Deserialize)]
struct SpecialDays {
    #[serde(default)]
    day: Vec<SpecialDay>,
}

#[derive(Clone, Debug, Deserialize)]
struct SpecialDay {
    date: NaiveDate,
    name: String,
    kind: HolidayKind,
    /// An election listed only to cancel its estimate (no holiday that year).
    #[serde(default)]
    cancelled: bool,
}

const BUILTIN_SPECIAL_DAYS: &str = include_str!("../data/special-days.toml");

/// The Korean public holidays of 2000–2050.
#[derive(Clone, Debug)]
pub struct HolidayCalendar {
    days: BTreeMap<NaiveDate, Vec<Holiday>>,
    extra: Vec<SpecialDay>,
}

fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("valid date")
}

fn lunar(y: i32, m: u8, d: u8) -> NaiveDate {
    lunar_to_gregorian(&LunarDate {
        year: y,
        month: (m, false),
        day: d,
    })
    .unwrap_or_else(|| panic!("lunar {y}-{m}-{d} is outside the KASI tables"))
}

fn parse_special(text: &str, path: &str) -> Result<Vec<SpecialDay>, CalendarError> {
    let parsed: SpecialDays = toml::from_str(text).map_err(|e| CalendarError::Parse {
        path: path.to_string(),
        message: e.to_string(),
    })?;
    for d in &parsed.day {
        if !matches!(d.kind, HolidayKind::Election | HolidayKind::Temporary) {
            return Err(CalendarError::Parse {
                path: path.to_string(),
                message: format!("{}: kind must be \"election\" or \"temporary\"", d.date),
            });
        }
    }
    Ok(parsed.day)
}

impl HolidayCalendar {
    /// The statutory rules plus the shipped election and temporary days.
    pub fn builtin() -> Self {
        let extra = parse_special(BUILTIN_SPECIAL_DAYS, "builtin").expect("shipped file parses");
        Self::build(extra)
    }

    /// Adds the special days of an operator's TOML file (same format as
    /// `data/special-days.toml`).
    pub fn with_extra_file(self, path: &std::path::Path) -> Result<Self, CalendarError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| CalendarError::Io {
            path: p.clone(),
            source,
        })?;
        self.with_extra_toml(&text, &p)
    }

    /// Adds special days from TOML text.
    pub fn with_extra_toml(self, text: &str, origin: &str) -> Result<Self, CalendarError> {
        let mut extra = self.extra;
        extra.extend(parse_special(text, origin)?);
        Ok(Self::build(extra))
    }

    fn build(extra: Vec<SpecialDay>) -> Self {
        let mut base: BTreeMap<NaiveDate, Vec<Occurrence>> = BTreeMap::new();
        fn add_to(
            base: &mut BTreeMap<NaiveDate, Vec<Occurrence>>,
            date: NaiveDate,
            name: &str,
            kind: HolidayKind,
            rule: Substitute,
        ) {
            let v = base.entry(date).or_default();
            if !v.iter().any(|o| o.name == name) {
                v.push(Occurrence {
                    name: name.to_string(),
                    kind,
                    rule,
                });
            }
        }
        let mut add =
            |date: NaiveDate, name: &str, kind, rule| add_to(&mut base, date, name, kind, rule);
        use HolidayKind::{Fixed, Lunar};
        let since_2014 = ymd(2014, 1, 1);
        let national = ymd(2021, 8, 15);
        let buddha_xmas = ymd(2023, 5, 4);
        for y in FIRST_YEAR..=LAST_YEAR {
            add(ymd(y, 1, 1), "신정", Fixed, Never);
            // 설날 and 추석: the day before, the day, the day after.
            for (day, names) in [
                (lunar(y, 1, 1), ["설날 전날", "설날", "설날 다음날"]),
                (lunar(y, 8, 15), ["추석 전날", "추석", "추석 다음날"]),
            ] {
                let rule = SundayOrOther {
                    since: since_2014,
                    period_end: day + Days::new(1),
                };
                for (date, name) in [day - Days::new(1), day, day + Days::new(1)]
                    .into_iter()
                    .zip(names)
                {
                    add(date, name, Lunar, rule);
                }
            }
            add(
                ymd(y, 3, 1),
                "삼일절",
                Fixed,
                WeekendOrOther { since: national },
            );
            if y <= 2005 {
                add(ymd(y, 4, 5), "식목일", Fixed, Never);
            }
            add(
                ymd(y, 5, 5),
                "어린이날",
                Fixed,
                WeekendOrOther { since: since_2014 },
            );
            add(
                lunar(y, 4, 8),
                "부처님오신날",
                Lunar,
                WeekendOrOther { since: buddha_xmas },
            );
            if y >= 2026 {
                // 노동절: a public holiday from 2026 (공휴일에 관한 법률
                // amendment promulgated 2026-02-10), substituted when it
                // falls on a Saturday or Sunday.
                add(
                    ymd(y, 5, 1),
                    "노동절",
                    Fixed,
                    WeekendOrOther {
                        since: ymd(2026, 1, 1),
                    },
                );
            }
            add(ymd(y, 6, 6), "현충일", Fixed, Never);
            if y <= 2007 {
                add(ymd(y, 7, 17), "제헌절", Fixed, Never);
            } else if y >= 2026 {
                // Restored by the 공휴일에 관한 법률 amendment of 2026-01-29,
                // which makes every 국경일 a public holiday.
                add(
                    ymd(y, 7, 17),
                    "제헌절",
                    Fixed,
                    WeekendOrOther { since: national },
                );
            }
            add(
                ymd(y, 8, 15),
                "광복절",
                Fixed,
                WeekendOrOther { since: national },
            );
            add(
                ymd(y, 10, 3),
                "개천절",
                Fixed,
                WeekendOrOther { since: national },
            );
            if y >= 2013 {
                add(
                    ymd(y, 10, 9),
                    "한글날",
                    Fixed,
                    WeekendOrOther { since: national },
                );
            }
            add(
                ymd(y, 12, 25),
                "기독탄신일",
                Fixed,
                WeekendOrOther { since: buddha_xmas },
            );
        }
        // Elections at term expiration the special days do not list yet
        // (listing one there, on any day of its year, confirms, moves or
        // cancels the estimate).
        let estimates = elections::estimates(LAST_YEAR, |d| base.contains_key(&d));
        for e in estimates {
            let listed = extra.iter().any(|s| {
                s.kind == HolidayKind::Election
                    && s.date.year() == e.date.year()
                    && s.name.contains(e.kind)
            });
            if !listed && e.date.year() >= FIRST_YEAR {
                let name = format!("{}{}", e.name, elections::ESTIMATED);
                add_to(&mut base, e.date, &name, HolidayKind::Election, Never);
            }
        }
        for d in extra.iter().filter(|d| !d.cancelled) {
            add_to(&mut base, d.date, &d.name, d.kind, Never);
        }

        // Substitute holidays: every day an eligible holiday loses to a weekend
        // or to another holiday is given back on the first following day that
        // is not a Saturday, Sunday or holiday.
        let mut demands: Vec<(NaiveDate, NaiveDate, String)> = Vec::new();
        for (date, occ) in &base {
            let wd = date.weekday();
            let eligible: Vec<&Occurrence> = occ
                .iter()
                .filter(|o| match o.rule {
                    Never => false,
                    SundayOrOther { since, .. } | WeekendOrOther { since } => *date >= since,
                })
                .collect();
            if eligible.is_empty() {
                continue;
            }
            let shared = occ.len() >= 2;
            let lost: Vec<&&Occurrence> = match wd {
                Weekday::Sun => eligible.iter().collect(),
                Weekday::Sat => eligible
                    .iter()
                    .filter(|o| matches!(o.rule, WeekendOrOther { .. }) || shared)
                    .collect(),
                // A weekday serves one holiday; the others lose it.
                _ if shared => eligible.iter().take(occ.len() - 1).collect(),
                _ => vec![],
            };
            if lost.is_empty() {
                continue;
            }
            let after = eligible
                .iter()
                .map(|o| match o.rule {
                    SundayOrOther { period_end, .. } => period_end,
                    _ => *date,
                })
                .max()
                .expect("non-empty");
            let names: Vec<&str> = if wd == Weekday::Sun || wd == Weekday::Sat {
                lost.iter().map(|o| o.name.as_str()).collect()
            } else {
                occ.iter().map(|o| o.name.as_str()).collect()
            };
            let name = format!("대체공휴일({})", names.join("·"));
            for _ in 0..lost.len() {
                demands.push((after, *date, name.clone()));
            }
        }
        demands.sort();
        let mut taken: BTreeSet<NaiveDate> = BTreeSet::new();
        let mut subs: Vec<(NaiveDate, String)> = Vec::new();
        for (after, _, name) in demands {
            let mut d = after + Days::new(1);
            while matches!(d.weekday(), Weekday::Sat | Weekday::Sun)
                || base.contains_key(&d)
                || taken.contains(&d)
            {
                d = d + Days::new(1);
            }
            taken.insert(d);
            subs.push((d, name));
        }

        let mut days: BTreeMap<NaiveDate, Vec<Holiday>> = BTreeMap::new();
        for (date, occ) in base {
            days.entry(date)
                .or_default()
                .extend(occ.into_iter().map(|o| Holiday {
                    date,
                    name: o.name,
                    kind: o.kind,
                }));
        }
        for (date, name) in subs {
            days.entry(date).or_default().push(Holiday {
                date,
                name,
                kind: HolidayKind::Substitute,
            });
        }
        Self { days, extra }
    }

    /// The holidays of `year`, sorted by date (a date with two holidays, such
    /// as 어린이날 and 부처님오신날 in 2025, has two entries).
    pub fn holidays(&self, year: i32) -> Result<Vec<Holiday>, CalendarError> {
        if !(FIRST_YEAR..=LAST_YEAR).contains(&year) {
            return Err(CalendarError::YearOutOfRange(year));
        }
        Ok(self
            .days
            .range(ymd(year, 1, 1)..=ymd(year, 12, 31))
            .flat_map(|(_, v)| v.iter().cloned())
            .collect())
    }

    /// Whether `date` is a public holiday (Sundays are not listed here; the
    /// router treats weekends itself). Outside 2000–2050 only the special days
    /// files are known.
    pub fn is_holiday(&self, date: NaiveDate) -> bool {
        self.days.contains_key(&date)
    }
}
