//! Standalone options: defaults → TOML file → `DOLBOM_` environment → flags.

use crate::error::OptionsError;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StandaloneOptions {
    /// Households in the simulated town.
    pub households: usize,
    /// Shards (partitions of the in-process bus), like Kafka partitions.
    pub partitions: usize,
    /// Households that go quiet during the run.
    pub quiet: usize,
    /// Of those, how many come back to life.
    pub quiet_recovering: usize,
    /// Households whose plug goes offline.
    pub offline: usize,
    /// Households with a hospital stay registered as an absence.
    pub hospital: usize,
    /// Simulated hours to run.
    pub sim_hours: u32,
    /// Simulated seconds per real second; 0 = as fast as possible.
    pub speed: u32,
    /// Simulation start, RFC 3339.
    pub start: String,
    pub seed: u64,
    /// Print every incident event as it happens.
    pub print_events: bool,
    /// Extra election/temporary holidays (same format as the shipped file).
    pub holidays_file: Option<PathBuf>,
    /// Data directory: the embedded history store (`history.sqlite`) keeps
    /// minute and hour aggregates, incident events and state changes here.
    /// Empty = keep no history.
    pub data_dir: PathBuf,
    /// How long the history keeps each kind, measured against simulated time.
    pub retention: dolbom_history::Retention,
    /// History writer batching and backpressure.
    pub history_writer: dolbom_history::WriterOptions,
    /// The municipality gRPC API (notify) listens here while the town runs;
    /// empty = no API. Needs a data directory. Tokens are written to
    /// `data_dir/tokens/`.
    pub grpc_listen: String,
    /// Let `grpc_listen` be reachable beyond loopback. standalone has no TLS
    /// (it is the laptop demo; `dolbom notify` has): its API, tokens and
    /// contact data would cross the network in the clear.
    pub insecure_plaintext: bool,
    /// Keep the API up after the simulation ends, until Ctrl-C.
    pub serve: bool,
}

impl Default for StandaloneOptions {
    fn default() -> Self {
        Self {
            households: 1000,
            partitions: 4,
            quiet: 6,
            quiet_recovering: 2,
            offline: 4,
            hospital: 2,
            sim_hours: 72,
            speed: 7200,
            // Friday 18:00 KST before the 3-day weekend of 삼일절 2026 (Sun
            // 1 Mar, substitute Mon 2 Mar): nights and holidays in the first days.
            start: "2026-02-27T18:00:00+09:00".into(),
            seed: 2026,
            print_events: true,
            holidays_file: None,
            data_dir: PathBuf::from("dolbom-data"),
            retention: dolbom_history::Retention::default(),
            history_writer: dolbom_history::WriterOptions::default(),
            grpc_listen: "127.0.0.1:50051".into(),
            insecure_plaintext: false,
            serve: false,
        }
    }
}

impl dolbom_options::Options for StandaloneOptions {
    type Error = OptionsError;

    fn validate(&self) -> Result<(), OptionsError> {
        let bad = |field, problem: &str| {
            Err(OptionsError::Invalid {
                field,
                problem: problem.to_string(),
            })
        };
        if self.households == 0 {
            return bad("households", "must be at least 1");
        }
        if let Err(e) = dolbom_tls::check_listen(
            "grpc_listen",
            &self.grpc_listen,
            false,
            self.insecure_plaintext,
        ) {
            return bad("grpc_listen", &e.to_string());
        }
        if self.partitions == 0 || self.partitions > 1024 {
            return bad("partitions", "must be between 1 and 1024");
        }
        if self.quiet + self.offline + self.hospital > self.households {
            return bad("quiet", "quiet + offline + hospital exceed households");
        }
        if self.quiet_recovering > self.quiet {
            return bad("quiet_recovering", "cannot exceed quiet");
        }
        if self.sim_hours == 0 || self.sim_hours > 24 * 366 {
            return bad("sim_hours", "must be between 1 and 8784");
        }
        if let Err(e) = self.retention.validate() {
            return bad("retention", &e.to_string());
        }
        if let Err(e) = self.history_writer.validate() {
            return bad("history_writer", &e.to_string());
        }
        if dolbom_domain::Ts::parse_rfc3339(&self.start).is_none() {
            return bad(
                "start",
                "must be an RFC 3339 time such as 2026-03-02T09:00:00+09:00",
            );
        }
        Ok(())
    }
}

/// `dolbom standalone` flags: each overrides the same option from the
/// environment, the TOML file and the defaults.
#[derive(clap::Args, Serialize, Default)]
pub struct StandaloneFlags {
    /// TOML file with options.
    #[arg(long)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    #[serde(skip)]
    pub json: bool,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub households: Option<usize>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quiet: Option<usize>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offline: Option<usize>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hospital: Option<usize>,
    /// Simulated hours to run.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sim_hours: Option<u32>,
    /// Simulated seconds per real second (0 = as fast as possible).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speed: Option<u32>,
    /// Simulation start, RFC 3339.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Extra holidays TOML.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holidays_file: Option<PathBuf>,
    /// History store directory (default ./dolbom-data; "" keeps no history).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// The municipality gRPC API's address (default 127.0.0.1:50051; "" = off).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_listen: Option<String>,
    /// Keep the gRPC API up after the simulation ends, until Ctrl-C.
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub serve: bool,
    /// Allow --grpc-listen beyond loopback without TLS.
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub insecure_plaintext: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use dolbom_options::Options;
    use std::path::Path;

    #[derive(Serialize, Default)]
    struct Flags {
        #[serde(skip_serializing_if = "Option::is_none")]
        households: Option<usize>,
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's closure signature
    fn layers_apply_in_order() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("dolbom.toml", "households = 50\nsim_hours = 10\nseed = 1\n")?;
            jail.set_env("DOLBOM_SIM_HOURS", "20");
            let o =
                StandaloneOptions::load(Some(Path::new("dolbom.toml")), Flags::default()).unwrap();
            assert_eq!((o.households, o.sim_hours, o.seed), (50, 20, 1));
            let o = StandaloneOptions::load(
                Some(Path::new("dolbom.toml")),
                Flags {
                    households: Some(70),
                },
            )
            .unwrap();
            assert_eq!(o.households, 70);
            Ok(())
        });
    }

    #[test]
    fn invalid_options_are_named() {
        let o = StandaloneOptions {
            quiet: 2000,
            ..Default::default()
        };
        assert!(matches!(
            o.validate(),
            Err(OptionsError::Invalid { field: "quiet", .. })
        ));
    }
}
