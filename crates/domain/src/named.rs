//! Enums known by a display name (`ATTENTION`, `DONG_OFFICE`, `alert`):
//! [`Named`], and [`as_name`] to (de)serialise them by that name in
//! external formats such as webhook bodies.

/// An enum with one display name per value.
pub trait Named: Sized + Copy + 'static {
    /// Every value, in order.
    const ALL: &'static [Self];
    fn name(self) -> &'static str;
    fn from_name(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.name() == s)
    }
}

/// `#[serde(with = "dolbom_domain::named::as_name")]`: a [`Named`] value as
/// its name.
pub mod as_name {
    use super::Named;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<T: Named, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.name())
    }

    pub fn deserialize<'de, T: Named, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
        let s = String::deserialize(d)?;
        T::from_name(&s).ok_or_else(|| serde::de::Error::custom(format!("unknown name {s:?}")))
    }
}
