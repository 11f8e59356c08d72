//! The registry: households, their plugs, consent, absences, thresholds and
//! contacts.
//!
//! Configs are validated by `dolbom-domain` (errors name the wire field),
//! versioned by the service (optimistic concurrency on update), stored with
//! the contact sealed ([`crate::crypto`]), and published to `care.households`
//! after the commit by the publisher loop. Contacts never leave this store
//! except in a `GetHousehold` with `include_contact` by a caller allowed to
//! read personal data, and each such read is audited before it is returned.

use crate::core::{Core, Effects};
use crate::error::NotifyError;
use crate::metrics as m;
use crate::registry_input::{
    check_contact, check_namespace, check_registered_at, end_absence, id_arg, normalise,
};
use crate::scope::listing_scope;
use crate::store::{self, HouseholdRow};
use dolbom_auth::Principal;
use dolbom_domain::convert::timestamp;
use dolbom_proto::v1 as pb;
use prost::Message;
use std::sync::Arc;

const MAX_PAGE: u32 = 500;

impl Core {
    /// The learned-detection settings a new household of `municipality`
    /// gets when it is created without its own.
    fn default_learning(&self, municipality: &str) -> pb::LearnedDetection {
        let l = self
            .learning
            .get(municipality)
            .or_else(|| self.learning.get("*"))
            .copied()
            .unwrap_or_default();
        dolbom_domain::convert::learning(&l)
    }

    fn seal_contact(&self, id: &str, c: &pb::HouseholdContact) -> Result<Vec<u8>, NotifyError> {
        self.cipher.encrypt(id, &c.encode_to_vec())
    }

    fn open_contact(&self, id: &str, sealed: &[u8]) -> Result<pb::HouseholdContact, NotifyError> {
        let plain = self.cipher.decrypt(id, sealed)?;
        pb::HouseholdContact::decode(plain.as_slice())
            .map_err(|e| NotifyError::Corrupt(format!("contact: {e}")))
    }

    fn household_view(row: &HouseholdRow) -> pb::Household {
        pb::Household {
            config: Some(row.config.clone()),
            contact: None,
            created_at: Some(timestamp(dolbom_domain::Ts(row.created_ms))),
            updated_at: Some(timestamp(dolbom_domain::Ts(row.updated_ms))),
        }
    }

    /// The household if it exists and the caller may see it; the same
    /// `NotFound` otherwise.
    fn visible_household(
        c: &rusqlite::Connection,
        who: &Principal,
        id: &str,
    ) -> Result<HouseholdRow, NotifyError> {
        match store::household(c, id)? {
            Some(r) if who.may_access(&r.config.municipality_code) => Ok(r),
            _ => Err(NotifyError::NotFound(format!("household {id}"))),
        }
    }

    /// Stores a household, queues it for `care.households` and audits who
    /// changed it.
    fn save_household(
        &self,
        tx: &rusqlite::Connection,
        fx: &mut Effects,
        who: &Principal,
        row: &HouseholdRow,
        action: &str,
        now: dolbom_domain::Ts,
    ) -> Result<pb::Household, NotifyError> {
        store::put_household(tx, row)?;
        keep_trace(tx, &row.config.household_id)?;
        fx.publish = true;
        fx.records.push(self.audit_record(
            who,
            &row.config.municipality_code,
            action,
            &row.config.household_id,
            now,
        ));
        Ok(Self::household_view(row))
    }

    /// A plug serial is unique within the household's municipality; what
    /// other municipalities registered is neither visible nor in the way.
    fn check_devices(
        c: &rusqlite::Connection,
        cfg: &pb::HouseholdConfig,
    ) -> Result<(), NotifyError> {
        for (i, d) in cfg.device_ids.iter().enumerate() {
            if let Some(owner) = store::device_owner(c, &cfg.municipality_code, d)? {
                if owner != cfg.household_id {
                    return Err(NotifyError::Exists(format!(
                        "config.device_ids[{i}]: the plug is registered to another household"
                    )));
                }
            }
        }
        Ok(())
    }

    pub async fn create_household(
        self: &Arc<Self>,
        who: &Principal,
        req: pb::CreateHouseholdRequest,
    ) -> Result<pb::Household, NotifyError> {
        let mut cfg = req
            .config
            .ok_or_else(|| NotifyError::invalid("config", "is required"))?;
        if !who.may_access(&cfg.municipality_code) {
            return Err(NotifyError::Denied(
                "config.municipality_code is not the caller's municipality".into(),
            ));
        }
        check_namespace(&cfg)?;
        let now = self.now();
        if cfg.registered_at.is_none() {
            cfg.registered_at = Some(timestamp(now));
        }
        check_registered_at(&cfg, now)?;
        if cfg.learning.is_none() {
            cfg.learning = Some(self.default_learning(&cfg.municipality_code));
        }
        cfg.version = 1;
        let mut cfg = normalise(&cfg, "config.")?;
        let contact = req.contact.unwrap_or_default();
        check_contact(&contact)?;
        let sealed = self.seal_contact(&cfg.household_id, &contact)?;
        let who = who.clone();
        let out = self
            .write(move |core, tx, fx| {
                if store::household(tx, &cfg.household_id)?.is_some() {
                    return Err(NotifyError::Exists(format!(
                        "household {} already exists",
                        cfg.household_id
                    )));
                }
                // Deleted before: versions go on rising.
                cfg.version = store::retired_version(tx, &cfg.household_id)? + 1;
                Self::check_devices(tx, &cfg)?;
                let row = HouseholdRow {
                    config: cfg,
                    contact: Some(sealed),
                    created_ms: now.millis(),
                    updated_ms: now.millis(),
                };
                core.save_household(tx, fx, &who, &row, "registry.CreateHousehold", now)
            })
            .await?;
        metrics::counter!(m::REGISTRY_CHANGES, "op" => "create").increment(1);
        Ok(out)
    }

    pub async fn update_household(
        self: &Arc<Self>,
        who: &Principal,
        req: pb::UpdateHouseholdRequest,
    ) -> Result<pb::Household, NotifyError> {
        let cfg = req
            .config
            .ok_or_else(|| NotifyError::invalid("config", "is required"))?;
        if let Some(c) = &req.contact {
            check_contact(c)?;
        }
        let (who, expected) = (who.clone(), req.expected_version);
        let contact = req.contact;
        let out = self
            .write(move |core, tx, fx| {
                let old = Self::visible_household(tx, &who, &cfg.household_id)?;
                if cfg.municipality_code != old.config.municipality_code {
                    return Err(NotifyError::invalid(
                        "config.municipality_code",
                        "a household cannot move to another municipality; delete and create it",
                    ));
                }
                if expected != old.config.version {
                    return Err(NotifyError::Conflict(format!(
                        "expected_version {expected} but the household is at version {}",
                        old.config.version
                    )));
                }
                let mut next = cfg;
                next.version = old.config.version + 1;
                if next.registered_at.is_none() {
                    next.registered_at = old.config.registered_at;
                }
                if next.learning.is_none() {
                    next.learning = old.config.learning;
                }
                check_registered_at(&next, core.now())?;
                let next = normalise(&next, "config.")?;
                Self::check_devices(tx, &next)?;
                let now = core.now();
                let sealed = match &contact {
                    Some(c) => Some(core.seal_contact(&next.household_id, c)?),
                    None => old.contact.clone(),
                };
                let row = HouseholdRow {
                    config: next,
                    contact: sealed,
                    created_ms: old.created_ms,
                    updated_ms: now.millis(),
                };
                core.save_household(tx, fx, &who, &row, "registry.UpdateHousehold", now)
            })
            .await?;
        metrics::counter!(m::REGISTRY_CHANGES, "op" => "update").increment(1);
        Ok(out)
    }

    /// Applies a small change (plug, consent, absence, thresholds) to the
    /// stored config: validated, versioned, published, audited.
    pub async fn change_household<F>(
        self: &Arc<Self>,
        who: &Principal,
        id: &str,
        action: &'static str,
        change: F,
    ) -> Result<pb::Household, NotifyError>
    where
        F: FnOnce(&mut pb::HouseholdConfig) -> Result<(), NotifyError> + Send + 'static,
    {
        let (who, id) = (who.clone(), id.to_string());
        let out = self
            .write(move |core, tx, fx| {
                let old = Self::visible_household(tx, &who, &id)?;
                let mut next = old.config.clone();
                change(&mut next)?;
                next.version = old.config.version + 1;
                let next = normalise(&next, "")?;
                Self::check_devices(tx, &next)?;
                let now = core.now();
                let row = HouseholdRow {
                    config: next,
                    contact: old.contact,
                    created_ms: old.created_ms,
                    updated_ms: now.millis(),
                };
                let view = core.save_household(tx, fx, &who, &row, action, now)?;
                // Consent changes reach a running escalation at once.
                let consent = row.config.night_holiday_consent;
                for mut e in store::running_escalations_of(tx, &id)? {
                    if e.consent != consent {
                        if let Some(inc) = store::incident(tx, &e.incident_id)? {
                            let policy = core.policies.version(
                                tx,
                                &inc.view.municipality_code,
                                e.policy_version,
                            );
                            let actions = e.set_consent(consent, &policy, core.router(), now);
                            core.carry_out(tx, &mut e, &inc.view, actions, now, fx)?;
                        }
                    }
                }
                Ok(view)
            })
            .await?;
        metrics::counter!(m::REGISTRY_CHANGES, "op" => action).increment(1);
        Ok(out)
    }

    pub async fn delete_household(
        self: &Arc<Self>,
        who: &Principal,
        id: &str,
    ) -> Result<(), NotifyError> {
        let (who, id) = (who.clone(), id.to_string());
        self.write(move |core, tx, fx| {
            let old = Self::visible_household(tx, &who, &id)?;
            store::delete_household(tx, &id)?;
            keep_trace(tx, &id)?;
            fx.publish = true;
            fx.records.push(core.audit_record(
                &who,
                &old.config.municipality_code,
                "registry.DeleteHousehold",
                &id,
                core.now(),
            ));
            Ok(())
        })
        .await?;
        metrics::counter!(m::REGISTRY_CHANGES, "op" => "delete").increment(1);
        Ok(())
    }

    /// One household; with `include_contact` the contact is decrypted for a
    /// caller allowed to read personal data, after the read is audited.
    pub async fn get_household(
        self: &Arc<Self>,
        who: &Principal,
        id: &str,
        include_contact: bool,
    ) -> Result<pb::Household, NotifyError> {
        if include_contact && !who.personal_data {
            return Err(NotifyError::Denied(
                "this caller may not read personal contact data".into(),
            ));
        }
        let (w, i) = (who.clone(), id.to_string());
        let row = self
            .read(move |_, c| Self::visible_household(c, &w, &i))
            .await?;
        let mut view = Self::household_view(&row);
        if include_contact {
            self.audit_now(
                who,
                &row.config.municipality_code,
                "registry.GetHousehold.contact",
                id,
            )
            .await?;
            if let Some(sealed) = &row.contact {
                view.contact = Some(self.open_contact(id, sealed)?);
            }
        }
        Ok(view)
    }

    /// Registers households that already exist elsewhere (the standalone
    /// town, a migration from a municipality's old system) in one
    /// transaction, as already published. Existing ids are left alone.
    /// Returns how many were new.
    pub async fn seed_households(
        self: &Arc<Self>,
        configs: Vec<pb::HouseholdConfig>,
    ) -> Result<usize, NotifyError> {
        let now = self.now();
        self.write(move |_, tx, _| {
            let mut n = 0;
            for (i, cfg) in configs.into_iter().enumerate() {
                let cfg = normalise(&cfg, &format!("configs[{i}]."))?;
                if store::household(tx, &cfg.household_id)?.is_some() {
                    continue;
                }
                Self::check_devices(tx, &cfg)?;
                let (id, version) = (cfg.household_id.clone(), cfg.version);
                store::put_household(
                    tx,
                    &HouseholdRow {
                        config: cfg,
                        contact: None,
                        created_ms: now.millis(),
                        updated_ms: now.millis(),
                    },
                )?;
                store::mark_household_published(tx, &id, Some(version))?;
                n += 1;
            }
            Ok(n)
        })
        .await
    }

    pub async fn list_households(
        self: &Arc<Self>,
        who: &Principal,
        req: pb::ListHouseholdsRequest,
    ) -> Result<pb::ListHouseholdsResponse, NotifyError> {
        let municipality = listing_scope(who, &req.municipality_code, &req.dong_code, "")?;
        let dong = (!req.dong_code.is_empty()).then_some(req.dong_code.clone());
        let limit = match req.page_size {
            0 => 100,
            n => n.min(MAX_PAGE),
        } as usize;
        let after = match req.page_token.strip_prefix("h:") {
            Some(a) => a.to_string(),
            None if req.page_token.is_empty() => String::new(),
            None => {
                return Err(NotifyError::invalid(
                    "page_token",
                    "not a token from this API",
                ))
            }
        };
        let rows = self
            .read(move |_, c| {
                store::list_households(c, &municipality, dong.as_deref(), &after, limit + 1)
            })
            .await?;
        let more = rows.len() > limit;
        let households: Vec<pb::Household> =
            rows.iter().take(limit).map(Self::household_view).collect();
        let next_page_token = if more {
            households
                .last()
                .and_then(|h| h.config.as_ref())
                .map(|c| format!("h:{}", c.household_id))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(pb::ListHouseholdsResponse {
            households,
            next_page_token,
        })
    }

    pub async fn register_plug(
        self: &Arc<Self>,
        who: &Principal,
        r: pb::RegisterPlugRequest,
    ) -> Result<pb::Household, NotifyError> {
        id_arg(&r.device_id, "device_id")?;
        self.change(who, &r.household_id, "registry.RegisterPlug", move |c| {
            if !c.device_ids.contains(&r.device_id) {
                c.device_ids.push(r.device_id);
            }
            Ok(())
        })
        .await
    }

    pub async fn remove_plug(
        self: &Arc<Self>,
        who: &Principal,
        r: pb::RemovePlugRequest,
    ) -> Result<pb::Household, NotifyError> {
        self.change(who, &r.household_id, "registry.RemovePlug", move |c| {
            let before = c.device_ids.len();
            c.device_ids.retain(|d| d != &r.device_id);
            if c.device_ids.len() == before {
                return Err(NotifyError::NotFound(format!("plug {}", r.device_id)));
            }
            Ok(())
        })
        .await
    }

    pub async fn set_consent(
        self: &Arc<Self>,
        who: &Principal,
        r: pb::SetConsentRequest,
    ) -> Result<pb::Household, NotifyError> {
        self.change(who, &r.household_id, "registry.SetConsent", move |c| {
            c.night_holiday_consent = r.night_holiday_consent;
            Ok(())
        })
        .await
    }

    pub async fn add_absence(
        self: &Arc<Self>,
        who: &Principal,
        r: pb::AddAbsenceRequest,
    ) -> Result<pb::Household, NotifyError> {
        let absence = r
            .absence
            .ok_or_else(|| NotifyError::invalid("absence", "is required"))?;
        self.change(who, &r.household_id, "registry.AddAbsence", move |c| {
            c.absences.push(absence);
            Ok(())
        })
        .await
    }

    pub async fn end_absence(
        self: &Arc<Self>,
        who: &Principal,
        r: pb::EndAbsenceRequest,
    ) -> Result<pb::Household, NotifyError> {
        let starts = r
            .starts_at
            .ok_or_else(|| NotifyError::invalid("starts_at", "is required"))?;
        self.change(who, &r.household_id, "registry.EndAbsence", move |c| {
            end_absence(c, &starts)
        })
        .await
    }

    pub async fn set_thresholds(
        self: &Arc<Self>,
        who: &Principal,
        r: pb::SetThresholdsRequest,
    ) -> Result<pb::Household, NotifyError> {
        self.change(who, &r.household_id, "registry.SetThresholds", move |c| {
            if r.thresholds.is_some() {
                c.thresholds = r.thresholds;
            }
            if r.offline_after_minutes != 0 {
                c.offline_after_minutes = r.offline_after_minutes;
            }
            if r.learning.is_some() {
                c.learning = r.learning;
            }
            Ok(())
        })
        .await
    }

    /// One small registry change (plug, consent, absence, thresholds).
    async fn change<F>(
        self: &Arc<Self>,
        who: &Principal,
        household_id: &str,
        action: &'static str,
        f: F,
    ) -> Result<pb::Household, NotifyError>
    where
        F: FnOnce(&mut pb::HouseholdConfig) -> Result<(), NotifyError> + Send + 'static,
    {
        id_arg(household_id, "household_id")?;
        self.change_household(who, household_id, action, f).await
    }
}

/// The change's trace (the gRPC call's span, when sampled) goes with it
/// onto `care.households`.
fn keep_trace(tx: &rusqlite::Connection, household_id: &str) -> Result<(), NotifyError> {
    if let Some(tp) = dolbom_telemetry::stored::traceparent(&tracing::Span::current()) {
        store::put_household_trace(tx, household_id, &tp)?;
    }
    Ok(())
}
