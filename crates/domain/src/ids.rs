//! Validated identifiers. Every id that enters from outside is checked here.

use crate::incident::IncidentKind;
use crate::time::Ts;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Why an id was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("must not be empty")]
    Empty,
    #[error("is longer than {max} characters")]
    TooLong { max: usize },
    #[error("contains {0:?}; allowed are letters, digits and {1}")]
    BadChar(char, &'static str),
    #[error("must be exactly {0} digits")]
    NotDigits(usize),
    #[error("starts with {0:02}, which is not a 시도 code")]
    UnknownProvince(u32),
    #[error("does not start with the municipality code {0}")]
    OutsideMunicipality(String),
    #[error("is not of the form KIND:household:millis")]
    BadIncidentId,
}

fn check_token(s: &str, max: usize, extra: &'static str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    if s.len() > max {
        return Err(IdError::TooLong { max });
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || extra.contains(*c)))
    {
        return Err(IdError::BadChar(c, extra));
    }
    Ok(())
}

/// Pseudonymous household id: 1–64 characters of `[A-Za-z0-9._-]`.
/// It is the Kafka key of everything about the household.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HouseholdId(Box<str>);

impl HouseholdId {
    pub fn new(s: &str) -> Result<Self, IdError> {
        check_token(s, 64, "._-")?;
        Ok(Self(s.into()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A plug's id (serial number): 1–64 characters of `[A-Za-z0-9._:-]`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DeviceId(Box<str>);

impl DeviceId {
    pub fn new(s: &str) -> Result<Self, IdError> {
        check_token(s, 64, "._:-")?;
        Ok(Self(s.into()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! string_id_impls {
    ($t:ty) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", &*self.0)
            }
        }
        impl TryFrom<String> for $t {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::new(&s)
            }
        }
        impl From<$t> for String {
            fn from(v: $t) -> String {
                v.0.into()
            }
        }
    };
}
string_id_impls!(HouseholdId);
string_id_impls!(DeviceId);

/// 시도 (province-level) prefixes of the administrative codes in use, including
/// the former codes of 강원 (42) and 전북 (45) kept by older registrations.
const PROVINCES: &[u32] = &[
    11, 26, 27, 28, 29, 30, 31, 36, 41, 42, 43, 44, 45, 46, 47, 48, 50, 51, 52,
];

fn parse_digits(s: &str, n: usize) -> Result<u64, IdError> {
    if s.len() != n || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(IdError::NotDigits(n));
    }
    s.parse().map_err(|_| IdError::NotDigits(n))
}

/// A municipality (시군구, the tenant) by its 5-digit administrative code,
/// e.g. `11110` (서울특별시 종로구).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MunicipalityCode(u32);

impl MunicipalityCode {
    pub fn new(s: &str) -> Result<Self, IdError> {
        let v = parse_digits(s, 5)? as u32;
        if !PROVINCES.contains(&(v / 1000)) {
            return Err(IdError::UnknownProvince(v / 1000));
        }
        Ok(Self(v))
    }
    pub fn value(self) -> u32 {
        self.0
    }
}

/// A dong office (읍면동) by its 10-digit administrative code, whose first five
/// digits are its municipality's code, e.g. `1111051500` (종로구 청운효자동).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DongCode(u64);

impl DongCode {
    pub fn new(s: &str, municipality: MunicipalityCode) -> Result<Self, IdError> {
        let v = parse_digits(s, 10)?;
        if (v / 100_000) as u32 != municipality.0 {
            return Err(IdError::OutsideMunicipality(municipality.to_string()));
        }
        Ok(Self(v))
    }
    pub fn municipality(self) -> MunicipalityCode {
        MunicipalityCode((self.0 / 100_000) as u32)
    }
    pub fn value(self) -> u64 {
        self.0
    }
}

impl fmt::Display for MunicipalityCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:05}", self.0)
    }
}
impl fmt::Debug for MunicipalityCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:05}", self.0)
    }
}
impl fmt::Display for DongCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:010}", self.0)
    }
}
impl fmt::Debug for DongCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:010}", self.0)
    }
}
impl TryFrom<String> for MunicipalityCode {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        Self::new(&s)
    }
}
impl From<MunicipalityCode> for String {
    fn from(v: MunicipalityCode) -> String {
        v.to_string()
    }
}
impl TryFrom<String> for DongCode {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        let m = MunicipalityCode::new(s.get(..5).ok_or(IdError::NotDigits(10))?)?;
        Self::new(&s, m)
    }
}
impl From<DongCode> for String {
    fn from(v: DongCode) -> String {
        v.to_string()
    }
}

/// Deterministic incident id: `KIND:household:episode_start_ms`, e.g.
/// `INA:hh-0001:1767225600000`. The same episode always gets the same id, so a
/// replay after a crash never creates a second incident.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct IncidentId(String);

impl IncidentId {
    pub fn new(kind: IncidentKind, subject: &str, episode_start: Ts) -> Self {
        Self(format!(
            "{}:{}:{}",
            kind.code(),
            subject,
            episode_start.millis()
        ))
    }
    pub fn parse(s: &str) -> Result<(IncidentKind, &str, Ts), IdError> {
        let mut it = s.splitn(3, ':');
        let (Some(k), Some(subject), Some(ms)) = (it.next(), it.next(), it.next()) else {
            return Err(IdError::BadIncidentId);
        };
        let kind = IncidentKind::from_code(k).ok_or(IdError::BadIncidentId)?;
        let ms: i64 = ms.parse().map_err(|_| IdError::BadIncidentId)?;
        if subject.is_empty() {
            return Err(IdError::BadIncidentId);
        }
        Ok((kind, subject, Ts(ms)))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IncidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn household_ids() {
        assert!(HouseholdId::new("hh-0001.a_b").is_ok());
        assert_eq!(HouseholdId::new(""), Err(IdError::Empty));
        assert!(matches!(
            HouseholdId::new("김철수"),
            Err(IdError::BadChar('김', _))
        ));
        assert_eq!(
            HouseholdId::new(&"a".repeat(65)),
            Err(IdError::TooLong { max: 64 })
        );
    }

    #[test]
    fn municipality_and_dong_codes() {
        let m = MunicipalityCode::new("11110").unwrap();
        assert_eq!(m.to_string(), "11110");
        assert_eq!(MunicipalityCode::new("1111"), Err(IdError::NotDigits(5)));
        assert_eq!(MunicipalityCode::new("1111a"), Err(IdError::NotDigits(5)));
        assert_eq!(
            MunicipalityCode::new("99110"),
            Err(IdError::UnknownProvince(99))
        );
        let d = DongCode::new("1111051500", m).unwrap();
        assert_eq!(d.municipality(), m);
        assert_eq!(d.to_string(), "1111051500");
        assert!(matches!(
            DongCode::new("2611051500", m),
            Err(IdError::OutsideMunicipality(_))
        ));
        let d2: DongCode = String::from("1111051500").try_into().unwrap();
        assert_eq!(d2, d);
    }

    #[test]
    fn incident_ids_round_trip() {
        let id = IncidentId::new(IncidentKind::Inactivity, "hh-1", Ts(1767225600000));
        assert_eq!(id.as_str(), "INA:hh-1:1767225600000");
        assert_eq!(
            IncidentId::parse(id.as_str()).unwrap(),
            (IncidentKind::Inactivity, "hh-1", Ts(1767225600000))
        );
        assert!(IncidentId::parse("XXX:hh:1").is_err());
        assert!(IncidentId::parse("INA:hh").is_err());
    }
}
