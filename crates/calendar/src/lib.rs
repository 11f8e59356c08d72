//! Korean public holidays and office-hours routing, as pure functions.
//!
//! Owns:
//! - [`HolidayCalendar`]: the public holidays of the Republic of Korea
//!   (관공서의 공휴일에 관한 규정 / 공휴일에 관한 법률) for 2000–2050. Fixed-date
//!   holidays and their history (식목일 until 2005, 제헌절 until 2007 and again
//!   from 2026, 한글날 from 2013), 설날 and 추석 (three days each) and
//!   부처님오신날 from the Korean lunar calendar (the `korean-lunar-calendar`
//!   crate, built from KASI's tables — no hand-typed lunar data), and substitute
//!   holidays (대체공휴일) under the rules in force each year. Election days and
//!   temporary holidays ship as `data/special-days.toml`; operators extend it
//!   with their own file. Elections at term expiration the file does not
//!   list yet are estimated from the terms ([`elections`], named
//!   "… (예정)"); listing one in a file confirms, moves or cancels it.
//!   노동절 is a holiday from 2026, with substitutes like the 국경일.
//! - [`Router`]: who gets an incident at a given instant — the dong office in
//!   office hours (weekday, not a holiday, Asia/Seoul), otherwise the control
//!   center if the household consented to night/holiday monitoring, otherwise
//!   held until the dong office's next opening.
//!
//! Data flow: the standalone runner builds one `Router` at start and asks it
//! for every incident event; the notify service asks it (through
//! `dolbom-escalation`) for every escalation step; `dolbom holidays YEAR`
//! prints [`HolidayCalendar::holidays`].

pub mod elections;
mod holidays;
mod routing;

pub use holidays::{CalendarError, Holiday, HolidayCalendar, HolidayKind, FIRST_YEAR, LAST_YEAR};
pub use routing::{OfficeHours, Router};
