//! Office hours and routing (Asia/Seoul local time).

use crate::holidays::{CalendarError, HolidayCalendar};
use chrono::{Datelike, Days, NaiveDate, Weekday};
use dolbom_domain::config::HouseholdConfig;
use dolbom_domain::incident::{HouseholdEvent, IncidentKind, Route, Stage};
use dolbom_domain::Ts;
use serde::Deserialize;
use std::sync::Arc;

/// Weekday opening hours of the dong offices, minutes after local midnight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct OfficeHours {
    pub open_minute: u16,
    pub close_minute: u16,
}

impl Default for OfficeHours {
    /// 09:00–18:00, the civil-service working day.
    fn default() -> Self {
        Self {
            open_minute: 9 * 60,
            close_minute: 18 * 60,
        }
    }
}

/// Decides who gets an incident, from the calendar and office hours.
#[derive(Clone, Debug)]
pub struct Router {
    calendar: Arc<HolidayCalendar>,
    hours: OfficeHours,
}

impl Router {
    pub fn new(calendar: Arc<HolidayCalendar>, hours: OfficeHours) -> Self {
        assert!(hours.open_minute < hours.close_minute && hours.close_minute <= 1440);
        Self { calendar, hours }
    }

    /// What every service builds at start: the built-in calendar plus the
    /// operator's extra holidays file (if any), with these office hours.
    pub fn load(
        holidays_file: Option<&std::path::Path>,
        hours: OfficeHours,
    ) -> Result<Self, CalendarError> {
        if hours.open_minute >= hours.close_minute || hours.close_minute > 1440 {
            return Err(CalendarError::OfficeHours {
                open: hours.open_minute,
                close: hours.close_minute,
            });
        }
        let mut calendar = HolidayCalendar::builtin();
        if let Some(f) = holidays_file {
            calendar = calendar.with_extra_file(f)?;
        }
        Ok(Self::new(Arc::new(calendar), hours))
    }

    /// The built-in calendar with the default office hours (tests, tools).
    pub fn builtin() -> Self {
        Self::new(Arc::new(HolidayCalendar::builtin()), OfficeHours::default())
    }

    pub fn calendar(&self) -> &HolidayCalendar {
        &self.calendar
    }

    fn is_business_day(&self, d: NaiveDate) -> bool {
        !matches!(d.weekday(), Weekday::Sat | Weekday::Sun) && !self.calendar.is_holiday(d)
    }

    /// Whether the dong offices are open at `t`.
    pub fn is_office_open(&self, t: Ts) -> bool {
        let m = t.kst_minute_of_day();
        self.is_business_day(t.to_kst().date())
            && (self.hours.open_minute as u32..self.hours.close_minute as u32).contains(&m)
    }

    /// The first instant at or after `t` when the dong offices are open.
    pub fn next_opening(&self, t: Ts) -> Ts {
        if self.is_office_open(t) {
            return t;
        }
        let local = t.to_kst();
        let mut day = local.date();
        if t.kst_minute_of_day() >= self.hours.open_minute as u32 {
            day = day + Days::new(1);
        }
        // The longest run of closed days in Korea is well under a month.
        while !self.is_business_day(day) {
            day = day + Days::new(1);
        }
        Ts::kst_midnight(day).plus_minutes(self.hours.open_minute as u32)
    }

    /// Where a welfare incident goes at `t`: the dong office in office hours;
    /// otherwise the control center with consent, or held until the office
    /// opens without it.
    pub fn route(&self, t: Ts, night_holiday_consent: bool) -> Route {
        if self.is_office_open(t) {
            Route::DongOffice
        } else if night_holiday_consent {
            Route::ControlCenter
        } else {
            Route::Held {
                until: self.next_opening(t),
            }
        }
    }

    /// Where one of a household's events goes at `t`: a device-offline
    /// incident that is not yet a welfare risk goes to maintenance, platform
    /// problems to SRE, everything else by [`route`](Self::route).
    pub fn route_event(&self, cfg: &HouseholdConfig, ev: &HouseholdEvent, t: Ts) -> Route {
        match ev.kind {
            IncidentKind::PipelineStall => Route::Sre,
            IncidentKind::DeviceOffline if ev.stage == Stage::Normal => Route::Maintenance,
            _ => self.route(t, cfg.night_holiday_consent),
        }
    }
}
