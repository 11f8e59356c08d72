//! Tenant scoping of every listing: which municipality (and dong) a request
//! may address, checked against the caller before any lookup.
//!
//! A single resource of another municipality is `NOT_FOUND` after the same
//! lookup a missing one takes (see `visible_*` in [`crate::incidents`] and
//! [`crate::registry`]); a listing that names another municipality is
//! `PERMISSION_DENIED` here, before any lookup.

use crate::error::NotifyError;
use dolbom_auth::{Principal, Role};
use dolbom_proto::v1 as pb;

/// The municipality a listing addresses, checked against the caller, and
/// that `dong_code` (if any) lies in it. `prefix` names where the fields sit
/// in the request (`""` or `"filter."`).
pub(crate) fn listing_scope(
    who: &Principal,
    municipality_code: &str,
    dong_code: &str,
    prefix: &str,
) -> Result<String, NotifyError> {
    let municipality = who
        .listing_scope(municipality_code)
        .map_err(|e| NotifyError::invalid(&format!("{prefix}municipality_code"), &e.to_string()))?
        .ok_or_else(|| {
            NotifyError::Denied(format!("{prefix}municipality_code is not the caller's"))
        })?;
    if !dong_code.is_empty() && !dong_code.starts_with(&municipality) {
        return Err(NotifyError::invalid(
            &format!("{prefix}dong_code"),
            &format!("is not in {prefix}municipality_code"),
        ));
    }
    Ok(municipality)
}

/// The filter of an incident listing or a watch, checked against the caller.
#[derive(Clone, Debug)]
pub(crate) struct Scoped {
    /// `None` = every municipality (national role, watch only).
    pub(crate) municipality: Option<String>,
    pub(crate) dong: Option<String>,
    pub(crate) household: Option<String>,
    pub(crate) kind: Option<i32>,
    pub(crate) min_stage: Option<i32>,
}

impl Scoped {
    /// `allow_all`: a national caller may leave the municipality empty.
    pub(crate) fn new(
        who: &Principal,
        f: &pb::IncidentFilter,
        allow_all: bool,
    ) -> Result<Scoped, NotifyError> {
        let national_all = f.municipality_code.is_empty() && who.role == Role::National;
        let platform_kind = dolbom_domain::convert::kind_from_wire(f.kind)
            .is_some_and(dolbom_domain::incident::IncidentKind::is_platform);
        let municipality = if national_all && allow_all {
            None
        } else if national_all && platform_kind {
            // Platform incidents (stalls) belong to no municipality: the
            // national role lists them with their kind and no code.
            Some(String::new())
        } else {
            Some(listing_scope(
                who,
                &f.municipality_code,
                &f.dong_code,
                "filter.",
            )?)
        };
        let nonzero = |v: i32| (v != 0).then_some(v);
        if pb::IncidentKind::try_from(f.kind).is_err() {
            return Err(NotifyError::invalid("filter.kind", "unknown value"));
        }
        if pb::Stage::try_from(f.min_stage).is_err() {
            return Err(NotifyError::invalid("filter.min_stage", "unknown value"));
        }
        Ok(Scoped {
            municipality,
            dong: (!f.dong_code.is_empty()).then(|| f.dong_code.clone()),
            household: (!f.household_id.is_empty()).then(|| f.household_id.clone()),
            kind: nonzero(f.kind),
            min_stage: nonzero(f.min_stage),
        })
    }

    pub(crate) fn matches(&self, e: &pb::IncidentEvent) -> bool {
        self.municipality
            .as_ref()
            .is_none_or(|m| &e.municipality_code == m)
            && self.dong.as_ref().is_none_or(|d| &e.dong_code == d)
            && self.household.as_ref().is_none_or(|h| &e.household_id == h)
            && self.kind.is_none_or(|k| e.kind == k)
            && self.min_stage.is_none_or(|s| e.stage >= s)
    }
}
