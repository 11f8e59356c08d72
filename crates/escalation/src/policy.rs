//! Escalation policies: who is told, over which channels, how long to wait.

use dolbom_domain::incident::Stage;
use dolbom_domain::Named;
use serde::{Deserialize, Serialize};

/// Who is told. The first three are the welfare tiers a policy escalates
/// through; maintenance and SRE receive the platform's non-welfare incidents.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Tier {
    /// 읍면동 주민센터, in office hours.
    DongOffice,
    /// 관제센터: nights and holidays for households that consented, and the
    /// next tier in office hours.
    ControlCenter,
    /// Police / 119: never held by office hours.
    Emergency,
    /// Device faults and area outages.
    Maintenance,
    /// The platform's own problems.
    Sre,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::DongOffice => "DONG_OFFICE",
            Tier::ControlCenter => "CONTROL_CENTER",
            Tier::Emergency => "EMERGENCY",
            Tier::Maintenance => "MAINTENANCE",
            Tier::Sre => "SRE",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::from_name(s)
    }
}

impl Named for Tier {
    const ALL: &'static [Self] = &[
        Tier::DongOffice,
        Tier::ControlCenter,
        Tier::Emergency,
        Tier::Maintenance,
        Tier::Sre,
    ];
    fn name(self) -> &'static str {
        self.as_str()
    }
}

/// How a tier is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    /// SMS through the configured gateway.
    Sms,
    /// An HMAC-signed HTTP POST to the tier's endpoint.
    Webhook,
    /// The gRPC `WatchIncidents` stream (a pull channel: always delivered).
    Watch,
}

impl ChannelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Sms => "sms",
            ChannelKind::Webhook => "webhook",
            ChannelKind::Watch => "watch",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::from_name(s)
    }

    /// Push channels can fail; a step whose push channels all failed
    /// escalates without waiting for its acknowledgement timeout.
    pub fn is_push(self) -> bool {
        !matches!(self, ChannelKind::Watch)
    }
}

impl Named for ChannelKind {
    const ALL: &'static [Self] = &[ChannelKind::Sms, ChannelKind::Webhook, ChannelKind::Watch];
    fn name(self) -> &'static str {
        self.as_str()
    }
}

/// One ordered step of a policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub tier: Tier,
    pub channels: Vec<ChannelKind>,
    /// Minutes to wait for an acknowledgement after each send.
    pub wait_minutes: u32,
    /// How many times the step is repeated after its first send before the
    /// policy moves to the next step.
    #[serde(default)]
    pub repeats: u32,
}

/// A municipality's escalation policy. Versions only grow; a running
/// escalation keeps the version it started with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub version: u32,
    pub steps: Vec<Step>,
    /// The first step for ATTENTION, CAUTION and DANGER. A stage raised by
    /// the monitor jumps a running escalation forward to its stage's step; it
    /// never moves it back and never starts a second escalation.
    pub stage_start: [u32; 3],
    /// Channels for the one-shot notices of non-welfare incidents (device
    /// faults, area outages, pipeline stalls).
    #[serde(default = "default_notice_channels")]
    pub notice_channels: Vec<ChannelKind>,
    /// After a person resolves a welfare incident whose home is still quiet
    /// (the person was reached and fine), how long the home may stay quiet
    /// before the incident opens again. A resolution says the person was fine
    /// at that moment; it never silences the rest of the quiet spell.
    #[serde(default = "default_recheck_minutes")]
    pub recheck_minutes: u32,
}

fn default_recheck_minutes() -> u32 {
    DEFAULT_RECHECK_MINUTES
}

fn default_notice_channels() -> Vec<ChannelKind> {
    vec![ChannelKind::Watch, ChannelKind::Webhook]
}

/// A policy that cannot be used, naming the offending field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("escalation policy: {field}: {problem}")]
pub struct PolicyError {
    pub field: String,
    pub problem: String,
}

fn err(field: impl Into<String>, problem: impl Into<String>) -> PolicyError {
    PolicyError {
        field: field.into(),
        problem: problem.into(),
    }
}

/// Longest wait of one step: a day.
pub const MAX_WAIT_MINUTES: u32 = 1440;
/// Most repeats of one step.
pub const MAX_REPEATS: u32 = 10;
/// Most steps of one policy.
pub const MAX_STEPS: usize = 16;
/// The default quiet time after a resolution before the incident opens
/// again: the default ATTENTION threshold, 12 hours.
pub const DEFAULT_RECHECK_MINUTES: u32 = 720;
/// Longest quiet time after a resolution: three days.
pub const MAX_RECHECK_MINUTES: u32 = 3 * 1440;

impl Policy {
    /// The platform default: the dong office twice 30 minutes apart, then the
    /// control center twice, then emergency services every 15 minutes until
    /// someone acknowledges (three sends). DANGER starts at the control center.
    pub fn platform_default() -> Self {
        use ChannelKind::*;
        Policy {
            version: 1,
            steps: vec![
                Step {
                    tier: Tier::DongOffice,
                    channels: vec![Watch, Sms, Webhook],
                    wait_minutes: 30,
                    repeats: 1,
                },
                Step {
                    tier: Tier::ControlCenter,
                    channels: vec![Watch, Sms, Webhook],
                    wait_minutes: 30,
                    repeats: 1,
                },
                Step {
                    tier: Tier::Emergency,
                    channels: vec![Sms, Webhook],
                    wait_minutes: 15,
                    repeats: 2,
                },
            ],
            stage_start: [0, 0, 1],
            notice_channels: default_notice_channels(),
            recheck_minutes: DEFAULT_RECHECK_MINUTES,
        }
    }

    /// The platform default with every step and notice on the watch stream
    /// only: for a machine without an SMS gateway or webhook receivers
    /// (standalone, load tests), where a push channel with no receiver would
    /// count as a failed delivery and escalate.
    pub fn watch_only() -> Self {
        let mut p = Self::platform_default();
        for s in &mut p.steps {
            s.channels = vec![ChannelKind::Watch];
        }
        p.notice_channels = vec![ChannelKind::Watch];
        p
    }

    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.version == 0 {
            return Err(err("version", "must be at least 1"));
        }
        if self.steps.is_empty() || self.steps.len() > MAX_STEPS {
            return Err(err("steps", format!("must have 1 to {MAX_STEPS} steps")));
        }
        for (i, s) in self.steps.iter().enumerate() {
            if !matches!(
                s.tier,
                Tier::DongOffice | Tier::ControlCenter | Tier::Emergency
            ) {
                return Err(err(
                    format!("steps[{i}].tier"),
                    "must be DONG_OFFICE, CONTROL_CENTER or EMERGENCY",
                ));
            }
            if s.channels.is_empty() {
                return Err(err(format!("steps[{i}].channels"), "must not be empty"));
            }
            let mut seen = s.channels.clone();
            seen.sort();
            seen.dedup();
            if seen.len() != s.channels.len() {
                return Err(err(format!("steps[{i}].channels"), "lists a channel twice"));
            }
            if s.wait_minutes == 0 || s.wait_minutes > MAX_WAIT_MINUTES {
                return Err(err(
                    format!("steps[{i}].wait_minutes"),
                    format!("must be 1 to {MAX_WAIT_MINUTES}"),
                ));
            }
            if s.repeats > MAX_REPEATS {
                return Err(err(
                    format!("steps[{i}].repeats"),
                    format!("must be at most {MAX_REPEATS}"),
                ));
            }
        }
        for (i, &s) in self.stage_start.iter().enumerate() {
            if s as usize >= self.steps.len() {
                return Err(err(format!("stage_start[{i}]"), "names no step"));
            }
            if i > 0 && s < self.stage_start[i - 1] {
                return Err(err(
                    format!("stage_start[{i}]"),
                    "a higher stage must not start at an earlier step",
                ));
            }
        }
        if self.notice_channels.is_empty() {
            return Err(err("notice_channels", "must not be empty"));
        }
        if self.recheck_minutes == 0 || self.recheck_minutes > MAX_RECHECK_MINUTES {
            return Err(err(
                "recheck_minutes",
                format!("must be 1 to {MAX_RECHECK_MINUTES}"),
            ));
        }
        Ok(())
    }

    /// The first step for a welfare stage (NORMAL has none).
    pub fn start_step(&self, stage: Stage) -> Option<u32> {
        match stage {
            Stage::Normal => None,
            Stage::Attention => Some(self.stage_start[0]),
            Stage::Caution => Some(self.stage_start[1]),
            Stage::Danger => Some(self.stage_start[2]),
        }
    }

    pub fn step(&self, i: u32) -> &Step {
        &self.steps[i as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_is_valid_and_round_trips_through_toml_shaped_json() {
        let p = Policy::platform_default();
        p.validate().unwrap();
        let json = serde_json::to_string(&p).unwrap();
        assert!(json.contains("\"DONG_OFFICE\"") && json.contains("\"sms\""));
        let back: Policy = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn invalid_policies_name_the_field() {
        let base = Policy::platform_default();
        type Mutation = Box<dyn Fn(&mut Policy)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (Box::new(|p| p.version = 0), "version"),
            (Box::new(|p| p.steps.clear()), "steps"),
            (
                Box::new(|p| p.steps[1].channels.clear()),
                "steps[1].channels",
            ),
            (
                Box::new(|p| p.steps[0].channels.push(ChannelKind::Sms)),
                "steps[0].channels",
            ),
            (
                Box::new(|p| p.steps[2].wait_minutes = 0),
                "steps[2].wait_minutes",
            ),
            (
                Box::new(|p| p.steps[0].wait_minutes = 1441),
                "steps[0].wait_minutes",
            ),
            (Box::new(|p| p.steps[0].repeats = 11), "steps[0].repeats"),
            (Box::new(|p| p.steps[0].tier = Tier::Sre), "steps[0].tier"),
            (Box::new(|p| p.stage_start = [0, 0, 3]), "stage_start[2]"),
            (Box::new(|p| p.stage_start = [1, 0, 2]), "stage_start[1]"),
            (Box::new(|p| p.notice_channels.clear()), "notice_channels"),
            (Box::new(|p| p.recheck_minutes = 0), "recheck_minutes"),
            (
                Box::new(|p| p.recheck_minutes = MAX_RECHECK_MINUTES + 1),
                "recheck_minutes",
            ),
        ];
        for (mutate, field) in cases {
            let mut p = base.clone();
            mutate(&mut p);
            assert_eq!(p.validate().unwrap_err().field, field);
        }
    }

    #[test]
    fn tier_names_round_trip() {
        for t in [
            Tier::DongOffice,
            Tier::ControlCenter,
            Tier::Emergency,
            Tier::Maintenance,
            Tier::Sre,
        ] {
            assert_eq!(Tier::parse(t.as_str()), Some(t));
        }
        assert_eq!(Tier::parse("dong"), None);
    }
}
