//! Escalation policies by municipality, and the versions escalations
//! started with (a running escalation keeps its policy version).

use crate::error::NotifyError;
use crate::store;
use dolbom_escalation::Policy;
use rusqlite::Connection;
use std::borrow::Cow;
use std::collections::HashMap;

/// The configured policies; `"*"` for municipalities without their own.
pub(crate) struct Policies {
    current: HashMap<String, Policy>,
}

impl Policies {
    pub(crate) fn new(mut current: HashMap<String, Policy>) -> Self {
        current
            .entry("*".into())
            .or_insert_with(Policy::platform_default);
        Policies { current }
    }

    /// Validates and records each configured version; a released version
    /// whose content changed is refused.
    pub(crate) fn install(&self, c: &Connection) -> Result<(), NotifyError> {
        for (m, p) in &self.current {
            p.validate()
                .map_err(|e| NotifyError::Config(format!("policy for {m}: {e}")))?;
            store::put_policy(c, m, p)?;
        }
        Ok(())
    }

    /// The policy a new escalation in `municipality` starts with.
    pub(crate) fn current(&self, municipality: &str) -> &Policy {
        self.current
            .get(municipality)
            .unwrap_or_else(|| &self.current["*"])
    }

    /// The policy version an escalation started with (the current one if
    /// that version is no longer known).
    pub(crate) fn version<'a>(
        &'a self,
        c: &Connection,
        municipality: &str,
        version: u32,
    ) -> Cow<'a, Policy> {
        let cur = self.current(municipality);
        if cur.version == version {
            return Cow::Borrowed(cur);
        }
        let key = if self.current.contains_key(municipality) {
            municipality
        } else {
            "*"
        };
        match store::policy(c, key, version) {
            Ok(Some(p)) => Cow::Owned(p),
            _ => {
                tracing::warn!(
                    municipality,
                    version,
                    "escalation policy version unknown; using the current one"
                );
                Cow::Borrowed(cur)
            }
        }
    }
}
