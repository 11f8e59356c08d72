//! How every dolbom command reads its options.
//!
//! Owns [`layered`]: a service's options struct starts from its `Default`,
//! then a TOML file (if one is given) overrides it, then `DOLBOM_*`
//! environment variables (nested fields with `__`, e.g.
//! `DOLBOM_SHARD__CLOCK=event`), then the command-line flags that were set.
//! Validation stays with each service's options type.
//!
//! Data flow: `main` parses flags → `layered::<ServiceOptions>(file, flags)`
//! → the service validates → `run(options, shutdown)`.

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::Path;

/// Options that cannot be read (a missing or malformed file, a wrongly typed
/// variable or flag); the message names the key and where it came from.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LayerError(#[from] Box<figment::Error>);

/// Defaults → TOML `file` → `DOLBOM_*` environment → `flags` (only the
/// fields it serializes).
pub fn layered<T>(file: Option<&Path>, flags: impl Serialize) -> Result<T, LayerError>
where
    T: Default + Serialize + DeserializeOwned,
{
    let mut fig = Figment::from(Serialized::defaults(T::default()));
    if let Some(f) = file {
        fig = fig.merge(Toml::file_exact(f));
    }
    fig.merge(Env::prefixed("DOLBOM_").split("__"))
        .merge(Serialized::defaults(flags))
        .extract()
        .map_err(|e| LayerError(Box::new(e)))
}
