//! What the registry accepts, checked before anything is stored: contact
//! limits, the municipality namespace of household ids, how far in the
//! future `registered_at` may lie, configs normalised by `dolbom-domain`
//! (errors name the wire field), id arguments, and which absence an
//! `EndAbsence` ends. Pure functions on the wire types; `registry.rs` runs
//! them inside its transactions.

use crate::error::NotifyError;
use dolbom_domain::config::HouseholdConfig;
use dolbom_domain::convert::ts;
use dolbom_proto::v1 as pb;

fn config_error(prefix: &str, e: dolbom_domain::config::ConfigError) -> NotifyError {
    NotifyError::invalid(&format!("{prefix}{}", e.field), &e.problem)
}

pub(crate) fn check_contact(c: &pb::HouseholdContact) -> Result<(), NotifyError> {
    let len = |s: &str| s.chars().count();
    if len(&c.name) > 100 {
        return Err(NotifyError::invalid(
            "contact.name",
            "at most 100 characters",
        ));
    }
    if len(&c.address) > 300 {
        return Err(NotifyError::invalid(
            "contact.address",
            "at most 300 characters",
        ));
    }
    let phone_ok = |p: &str| {
        !p.is_empty()
            && p.len() <= 20
            && p.bytes()
                .all(|b| b.is_ascii_digit() || b == b'-' || b == b'+')
    };
    if !c.phone.is_empty() && !phone_ok(&c.phone) {
        return Err(NotifyError::invalid(
            "contact.phone",
            "digits, '-' and '+', at most 20",
        ));
    }
    if c.guardians.len() > 5 {
        return Err(NotifyError::invalid("contact.guardians", "at most 5"));
    }
    for (i, g) in c.guardians.iter().enumerate() {
        if len(g) > 200 {
            return Err(NotifyError::invalid(
                &format!("contact.guardians[{i}]"),
                "at most 200 characters",
            ));
        }
    }
    Ok(())
}

/// How far in the future a household's `registered_at` may lie (clock skew
/// between the caller and the platform); later, its quiet clock would start
/// in the future and it could not raise an incident until then.
const REGISTERED_AT_SLACK_MS: i64 = 5 * 60_000;

/// Household ids are namespaced by municipality: `{municipality_code}-{its
/// own id}` (e.g. `11110-000123`). A caller can only create ids in its own
/// namespace, so "exists in another municipality" never shows.
pub(crate) fn check_namespace(cfg: &pb::HouseholdConfig) -> Result<(), NotifyError> {
    let local = cfg
        .household_id
        .strip_prefix(cfg.municipality_code.as_str())
        .and_then(|rest| rest.strip_prefix('-'));
    match local {
        Some(l) if !l.is_empty() => Ok(()),
        _ => Err(NotifyError::invalid(
            "config.household_id",
            "must be the municipality code, '-' and the municipality's own id (e.g. 11110-000123)",
        )),
    }
}

pub(crate) fn check_registered_at(
    cfg: &pb::HouseholdConfig,
    now: dolbom_domain::Ts,
) -> Result<(), NotifyError> {
    match &cfg.registered_at {
        Some(t) if ts(t).since(now) > REGISTERED_AT_SLACK_MS => Err(NotifyError::invalid(
            "config.registered_at",
            "more than 5 minutes in the future (its quiet clock would not start until then)",
        )),
        _ => Ok(()),
    }
}

/// Validates a config for storing; returns it normalised by the domain.
pub(crate) fn normalise(
    cfg: &pb::HouseholdConfig,
    prefix: &str,
) -> Result<pb::HouseholdConfig, NotifyError> {
    let domain = HouseholdConfig::try_from(cfg).map_err(|e| config_error(prefix, e))?;
    Ok(pb::HouseholdConfig::from(&domain))
}

/// A required id argument: 1–200 characters.
pub(crate) fn id_arg(v: &str, field: &str) -> Result<(), NotifyError> {
    if v.is_empty() || v.len() > 200 {
        return Err(NotifyError::invalid(
            field,
            "is required (1-200 characters)",
        ));
    }
    Ok(())
}

/// Removes the absence that starts at `starts_at`.
pub(crate) fn end_absence(
    cfg: &mut pb::HouseholdConfig,
    starts_at: &dolbom_proto::prost_types::Timestamp,
) -> Result<(), NotifyError> {
    let t = ts(starts_at);
    let before = cfg.absences.len();
    cfg.absences
        .retain(|a| a.starts_at.as_ref().map(ts) != Some(t));
    if cfg.absences.len() == before {
        return Err(NotifyError::NotFound(
            "no absence starts at starts_at".into(),
        ));
    }
    Ok(())
}
