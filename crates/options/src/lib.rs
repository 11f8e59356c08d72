//! How every dolbom command reads its options.
//!
//! Owns [`layered`]: a service's options struct starts from its `Default`,
//! then a TOML file (if one is given) overrides it, then `DOLBOM_*`
//! environment variables (nested fields with `__`, e.g.
//! `DOLBOM_SHARD__CLOCK=event`), then the command-line flags that were set.
//! Each service's options type implements [`Options`]: its own validation,
//! and [`Options::load`], the one "layer, then validate" every command uses.
//! [`ServiceFlags`] are the flags the Kafka services share, and
//! [`OptionsError`] the error of options that name no error of their own.
//! [`Secret`] and [`read_secret_file`] (module `secret`) keep keys and
//! passwords out of `Debug` output and refuse secret files others can read.
//!
//! Data flow: `main` parses flags → `ServiceOptions::load(file, flags)`
//! (layered, then validated) → `run(options, shutdown)`.

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::Path;
use std::path::PathBuf;

pub mod secret;
pub use secret::{check_private, read_secret_bytes, read_secret_file, Secret, SecretFileError};

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

/// Options that cannot be used: unreadable, or invalid (naming the option).
#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    #[error("configuration: {0}")]
    Figment(#[from] LayerError),
    #[error("invalid option {field}: {problem}")]
    Invalid {
        field: &'static str,
        problem: String,
    },
}

impl OptionsError {
    pub fn invalid(field: &'static str, problem: impl ToString) -> Self {
        OptionsError::Invalid {
            field,
            problem: problem.to_string(),
        }
    }
}

/// Flags every Kafka service takes (flattened into its own flags): its
/// TOML file, the brokers, and where its metrics are served.
#[derive(clap::Args, Serialize, Default, Debug)]
pub struct ServiceFlags {
    /// TOML file with the service's options.
    #[arg(long)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Kafka bootstrap servers.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub brokers: Option<String>,
    /// Serve Prometheus metrics on this address, e.g. 127.0.0.1:9464.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<String>,
    /// Load, layer and validate the options, read every file they name
    /// (keys, certificates, secrets, holidays), print what is wrong or
    /// "configuration OK", and exit without starting.
    #[arg(long)]
    #[serde(skip)]
    pub check_config: bool,
}

/// A service's options: layered with [`layered`], then validated.
pub trait Options: Default + Serialize + DeserializeOwned {
    type Error: From<LayerError>;

    /// Checks values the types cannot; the error names the option.
    fn validate(&self) -> Result<(), Self::Error>;

    /// Everything `validate` checks and what only the files the options
    /// name can tell (keys, certificates, secret files, holidays), without
    /// connecting anywhere: `--check-config`.
    fn check_files(&self) -> Result<(), Self::Error> {
        self.validate()
    }

    /// Defaults → TOML `file` → `DOLBOM_*` environment → `flags`, validated.
    fn load(file: Option<&Path>, flags: impl Serialize) -> Result<Self, Self::Error> {
        let options: Self = layered(file, flags)?;
        options.validate()?;
        Ok(options)
    }
}
