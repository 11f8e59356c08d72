//! Scenarios: the whole platform driven by the plug simulator in
//! accelerated time, checked against the ground truth, measured.
//!
//! A [`Scenario`] says how big the town is, how long it runs and over which
//! path ([`Path::Kafka`]: plug simulator → Tansu → monitor, history and
//! notify services, exactly as deployed; [`Path::InProcess`]: simulator →
//! the monitor's shard code on an in-process bus → notify core and history
//! writer). Both paths record every incident event with its detection
//! latency ([`SliceClock`]), sample throughput and latency over time
//! ([`Meter`]), and end in a [`Report`]: figures, the [`Verdict`] of
//! [`dolbom_town::truth::check`], a JSON summary and a PNG plot.

use crate::sim::SimSpec;
use dolbom_domain::config::Thresholds;
use dolbom_domain::{Ts, MINUTE_MS};
use dolbom_town::truth::{SeenEvent, Verdict};
use dolbom_town::{Reporting, TownSpec};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

/// Which way readings travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Path {
    Kafka,
    InProcess,
}

/// One scenario's parameters.
#[derive(Clone, Debug, Serialize)]
pub struct Scenario {
    pub name: String,
    pub path: Path,
    pub households: usize,
    pub hours: u32,
    pub seed: u64,
    pub start: String,
    /// Scripted shares of the households (at least one each).
    pub quiet_share: f64,
    pub offline_share: f64,
    pub hospital_share: f64,
    /// `(attention, caution, danger, offline)` minutes for the scripted
    /// households instead of the defaults (12 h / 24 h / 36 h / 30 min), so
    /// a run of a few hours sees every stage. ATTENTION must stay above the
    /// latest script start: a natural quiet spell before the script must
    /// not reach a stage.
    pub thresholds: Option<[u32; 4]>,
    pub partitions: usize,
    /// Kafka path: simulated seconds per wall second (0 = as fast as possible).
    pub speed: u32,
    pub duplicates: f64,
    /// Blackout of the first dong: start (hours into the run) and minutes.
    pub blackout: Option<(f64, i64)>,
    /// Pipeline stall: start (hours into the run); its length is
    /// `stall_minutes` of simulated time in process, `stall_secs` of wall
    /// time over Kafka (where simulated time stands still while it lasts).
    pub stall_at_hours: Option<f64>,
    pub stall_minutes: i64,
    pub stall_secs: u64,
    /// Scripts begin within this many minutes of the start (`None`: the
    /// town's rule, 1 h to 1 h + half of (duration − 2 days)).
    pub scripts_within_minutes: Option<(i64, i64)>,
    /// Event time a slice of readings covers.
    pub slice_ms: i64,
    /// Deadlines fire this far behind event time (plug timer jitter).
    pub allowed_lateness_ms: i64,
    pub jitter_ms: i64,
    pub out_dir: PathBuf,
    pub progress: bool,
}

impl Scenario {
    /// `town`, `city`, `nation` or `smoke` (the CI-sized run).
    pub fn preset(name: &str) -> Option<Scenario> {
        let base = Scenario {
            name: name.into(),
            path: Path::InProcess,
            households: 10_000,
            hours: 168,
            seed: 2026,
            start: "2026-09-21T18:00:00+09:00".into(),
            quiet_share: 0.002,
            offline_share: 0.001,
            hospital_share: 0.001,
            thresholds: None,
            partitions: 8,
            speed: 0,
            duplicates: 0.01,
            blackout: Some((30.0, 120)),
            stall_at_hours: Some(50.0),
            stall_minutes: 45,
            stall_secs: 15,
            scripts_within_minutes: None,
            slice_ms: 1000,
            allowed_lateness_ms: 2000,
            jitter_ms: 1000,
            out_dir: PathBuf::from("scenario-out"),
            progress: true,
        };
        Some(match name {
            "town" => Scenario {
                path: Path::Kafka,
                partitions: 4,
                speed: 1200,
                ..base
            },
            "city" => Scenario {
                households: 1_000_000,
                hours: 6,
                start: "2026-09-22T07:00:00+09:00".into(),
                quiet_share: 0.0005,
                offline_share: 0.0002,
                hospital_share: 0.0002,
                thresholds: Some([120, 180, 240, 30]),
                blackout: Some((2.0, 60)),
                stall_at_hours: Some(4.0),
                stall_minutes: 30,
                ..base
            },
            "nation" => Scenario {
                households: 10_000_000,
                hours: 2,
                start: "2026-09-22T09:00:00+09:00".into(),
                quiet_share: 0.0001,
                offline_share: 0.00005,
                hospital_share: 0.00005,
                scripts_within_minutes: Some((5, 25)),
                thresholds: Some([30, 50, 70, 20]),
                blackout: Some((0.75, 30)),
                // The in-process stall holds its backlog in memory; with
                // 10 M households (16 GB resident) this machine cannot carry
                // one. Stalls are exercised by town, city and smoke.
                stall_at_hours: None,
                ..base
            },
            "smoke" => Scenario {
                households: 400,
                hours: 8,
                start: "2026-09-22T07:00:00+09:00".into(),
                quiet_share: 0.02,
                offline_share: 0.01,
                hospital_share: 0.005,
                thresholds: Some([120, 180, 240, 30]),
                partitions: 2,
                blackout: Some((3.0, 60)),
                stall_at_hours: Some(5.5),
                stall_minutes: 30,
                progress: false,
                ..base
            },
            _ => return None,
        })
    }

    pub fn start_ts(&self) -> Option<Ts> {
        Ts::parse_rfc3339(&self.start)
    }

    /// The simulator's spec for this scenario.
    pub fn sim_spec(&self) -> anyhow::Result<SimSpec> {
        let start = self
            .start_ts()
            .ok_or_else(|| anyhow::anyhow!("--start is not RFC 3339"))?;
        let n = self.households;
        let count = |share: f64| ((n as f64 * share).round() as usize).max(1);
        let (quiet, offline, hospital) = (
            count(self.quiet_share),
            count(self.offline_share),
            count(self.hospital_share),
        );
        anyhow::ensure!(
            quiet + offline + hospital <= n,
            "scripted households exceed the town"
        );
        let thresholds = self
            .thresholds
            .map(|[a, c, d, o]| {
                let th = Thresholds {
                    attention_minutes: a,
                    caution_minutes: c,
                    danger_minutes: d,
                };
                th.validate()
                    .map_err(|e| anyhow::anyhow!("thresholds: {e}"))?;
                anyhow::ensure!(o > 0 && o < a, "the offline limit must be below ATTENTION");
                Ok((th, o))
            })
            .transpose()?;
        Ok(SimSpec {
            town: TownSpec {
                households: n,
                seed: self.seed,
                start,
                quiet,
                quiet_recovering: quiet / 3,
                offline,
                hospital,
                duration_ms: self.hours as i64 * 60 * MINUTE_MS,
                reporting: Reporting {
                    spread: true,
                    jitter_ms: self.jitter_ms,
                    on_change: true,
                },
                scripts_within: self
                    .scripts_within_minutes
                    .map(|(f, t)| (f * MINUTE_MS, t * MINUTE_MS)),
            },
            duplicates: self.duplicates,
            blackout: self
                .blackout
                .map(|(h, m)| ((h * 3_600_000.0) as i64, m * MINUTE_MS)),
            slice_ms: self.slice_ms,
            thresholds,
        })
    }
}

/// When each slice of readings entered the pipeline, so an incident's
/// detection latency can be measured from the moment the data that carried
/// event time past its deadline was handed over.
#[derive(Default)]
pub struct SliceClock {
    /// (slice end, event ms; wall seconds since the run began when it was
    /// handed over), in order.
    slices: Vec<(i64, f64)>,
}

impl SliceClock {
    pub fn handed_over(&mut self, end_ms: i64, wall_s: f64) {
        self.slices.push((end_ms, wall_s));
    }

    /// Wall time at which event time first passed `due_ms + lateness_ms`.
    pub fn passed(&self, due_ms: i64, lateness_ms: i64) -> Option<f64> {
        let target = due_ms + lateness_ms;
        let i = self.slices.partition_point(|(end, _)| *end <= target);
        self.slices.get(i).map(|(_, w)| *w)
    }
}

/// Event time from which the platform can raise `ev`: its deadline, or for
/// a DEVICE_OFFLINE opening its deadline plus the area hold (the shard
/// waits that long to see whether the plug is part of an outage).
pub fn detectable_from(ev: &dolbom_proto::v1::IncidentEvent) -> i64 {
    use dolbom_proto::v1 as pb;
    let due = dolbom_town::truth::due_ms(ev);
    if ev.kind == pb::IncidentKind::DeviceOffline as i32
        && ev.r#type == pb::IncidentEventType::Opened as i32
    {
        due + dolbom_shard::ShardOptions::default().area.hold_ms
    } else {
        due
    }
}

/// One sample of the run, taken about once a wall second.
#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    pub wall_s: f64,
    pub sim: String,
    pub readings_per_s: f64,
    /// Latencies of the events that came out since the last sample.
    pub latency_p50_ms: Option<f64>,
    pub latency_max_ms: Option<f64>,
    /// Over Kafka: readings published but not yet taken by the monitor.
    pub monitor_lag: Option<f64>,
    /// Over Kafka: of those, readings still in the simulator's producer
    /// (not yet acknowledged by the broker); the rest wait in the broker.
    pub producer_queue: Option<f64>,
}

/// What a Kafka run's lag sampler reports (see [`Sample`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct Lag {
    pub monitor: Option<f64>,
    pub producer_queue: Option<f64>,
}

/// Throughput and latency over time, CPU and memory.
pub struct Meter {
    pub started: Instant,
    cpu0: f64,
    last: (f64, u64),
    pending_latencies: Vec<f64>,
    pub samples: Vec<Sample>,
    pub peak_rss: u64,
    stopped: Option<f64>,
}

impl Default for Meter {
    fn default() -> Self {
        Self::new()
    }
}

impl Meter {
    pub fn new() -> Self {
        Meter {
            started: Instant::now(),
            cpu0: cpu_seconds(None).unwrap_or(0.0),
            last: (0.0, 0),
            pending_latencies: Vec::new(),
            samples: Vec::new(),
            peak_rss: 0,
            stopped: None,
        }
    }

    /// Wall seconds since the start, or until [`Meter::stop`].
    pub fn elapsed(&self) -> f64 {
        self.stopped
            .unwrap_or_else(|| self.started.elapsed().as_secs_f64())
    }

    /// Ends the measured run (what follows, a drain, is not counted).
    pub fn stop(&mut self) {
        self.stopped = Some(self.elapsed());
    }

    pub fn latency(&mut self, s: f64) {
        self.pending_latencies.push(s);
    }

    /// Takes a sample if a second has passed since the last one.
    pub fn tick(&mut self, readings: u64, sim: Ts) {
        self.tick_with(readings, sim, Lag::default);
    }

    /// As [`Meter::tick`], with the monitor's lag (asked for only when a
    /// sample is taken).
    pub fn tick_with(&mut self, readings: u64, sim: Ts, lag: impl FnOnce() -> Lag) {
        let now = self.elapsed();
        if now - self.last.0 < 1.0 {
            return;
        }
        let rate = (readings - self.last.1) as f64 / (now - self.last.0);
        self.last = (now, readings);
        let mut l = std::mem::take(&mut self.pending_latencies);
        l.sort_by(f64::total_cmp);
        self.peak_rss = self.peak_rss.max(crate::resident_bytes().unwrap_or(0));
        let lag = lag();
        self.samples.push(Sample {
            wall_s: now,
            sim: sim.to_string(),
            readings_per_s: rate,
            latency_p50_ms: (!l.is_empty()).then(|| l[l.len() / 2] * 1000.0),
            latency_max_ms: l.last().map(|x| x * 1000.0),
            monitor_lag: lag.monitor,
            producer_queue: lag.producer_queue,
        });
    }

    /// CPU seconds this process used since the meter started.
    pub fn cpu(&self) -> f64 {
        cpu_seconds(None).unwrap_or(0.0) - self.cpu0
    }
}

/// CPU seconds (user + system) of a process (`None` = this one), from
/// `/proc/<pid>/stat`.
pub fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".into(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which may contain spaces).
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// What the services other than the monitor did with the incidents.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Downstream {
    /// Distinct incidents the platform raised / notify holds.
    pub incidents_raised: usize,
    pub notify_incidents: i64,
    pub notify_messages_delivered: i64,
    pub notify_running_escalations: i64,
    /// Incident events published / written to the history store.
    pub events_published: usize,
    pub history_events: u64,
}

impl Downstream {
    /// What notify and the history hold, against the events seen.
    pub fn new(
        seen: &[SeenEvent],
        notify: &dolbom_notify::store::Counts,
        history_events: u64,
    ) -> Self {
        Downstream {
            incidents_raised: distinct_incidents(seen),
            notify_incidents: notify.incidents,
            notify_messages_delivered: notify.messages_delivered,
            notify_running_escalations: notify.running_escalations,
            events_published: seen.len(),
            history_events,
        }
    }

    /// Notify holds every incident — household, area and stall (a stall is
    /// routed to SRE) — and the history stored every event (with the state
    /// changes they imply).
    pub fn consistent(&self) -> bool {
        self.notify_incidents as usize == self.incidents_raised
            && self.history_events as usize >= self.events_published
    }
}

/// Everything a scenario measured and concluded.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub scenario: Scenario,
    pub commit: String,
    pub date: String,
    /// Wall seconds of the run, after `setup_s` spent building the town
    /// and registering its households.
    pub wall_s: f64,
    pub setup_s: f64,
    pub simulated_hours: f64,
    /// Simulated seconds per wall second.
    pub acceleration: f64,
    pub readings: u64,
    pub duplicates: u64,
    pub dropped_by_blackout: u64,
    pub readings_per_s: f64,
    /// Resident memory of the monitor's shards per household (the growth
    /// from before the households were registered to after), and of the
    /// whole process per household at its peak.
    pub monitor_bytes_per_household: Option<f64>,
    pub process_bytes_per_household: f64,
    pub cpu_s: f64,
    /// CPU use as a share of one core over the run (200 % = both cores).
    pub cpu_percent: f64,
    pub broker_cpu_s: Option<f64>,
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub latency_max_ms: Option<f64>,
    pub verdict: Verdict,
    pub downstream: Downstream,
    pub samples: Vec<Sample>,
    pub passed: bool,
}

impl Report {
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let v = &self.verdict;
        let ms = |x: Option<f64>| x.map_or("-".into(), |x| format!("{x:.1} ms"));
        let mut o = String::new();
        let _ = writeln!(
            o,
            "── scenario {} ({} households, {:.0} simulated h, {:?}) ──",
            self.scenario.name, self.scenario.households, self.simulated_hours, self.scenario.path
        );
        let _ = writeln!(
            o,
            "wall          {:.1} s ({:.0}× real time), after {:.1} s of set-up",
            self.wall_s, self.acceleration, self.setup_s
        );
        let _ = writeln!(
            o,
            "throughput    {:.0} readings/s ({} readings, {} duplicates, {} dropped by the blackout)",
            self.readings_per_s, self.readings, self.duplicates, self.dropped_by_blackout
        );
        let _ = writeln!(
            o,
            "memory        {} per household in the monitor's shards; {:.0} B per household for the whole process at its peak",
            self.monitor_bytes_per_household
                .map_or("-".into(), |b| format!("{b:.0} B")),
            self.process_bytes_per_household
        );
        let _ = writeln!(
            o,
            "cpu           {:.1} s ({:.0} % of one core){}",
            self.cpu_s,
            self.cpu_percent,
            self.broker_cpu_s
                .map_or(String::new(), |b| format!("; broker {b:.1} s"))
        );
        let _ = writeln!(
            o,
            "latency       p50 {}  p99 {}  max {}  ({} events judged, {} delayed by the stall)",
            ms(self.latency_p50_ms),
            ms(self.latency_p99_ms),
            ms(self.latency_max_ms),
            v.latencies_s.len(),
            v.delayed_by_stall
        );
        let _ = writeln!(
            o,
            "ground truth  {}/{} stage events raised once on time; missed {}, false incidents {}, duplicated {}, wrong deadline {}, late {}, duplicate event ids {}; {} not judged (within 2 min of the end or of a recovery); {} lost to the stall (household back before the platform caught up)",
            v.matched,
            v.expected,
            v.missed.len(),
            v.false_incidents.len(),
            v.duplicated.len(),
            v.wrong_due.len(),
            v.late.len(),
            v.duplicate_event_ids,
            v.not_judged,
            v.lost_in_stall.len()
        );
        let _ = writeln!(
            o,
            "areas/stalls  {} area incidents ({} blackouts missed), {} stall incidents ({} stalls missed)",
            v.area_incidents,
            v.blackouts_missed.len(),
            v.stall_incidents,
            v.stalls_missed
        );
        let d = &self.downstream;
        let _ = writeln!(
            o,
            "downstream    notify holds {}/{} incidents ({} messages delivered, {} escalations running); history stored {}/{} events",
            d.notify_incidents,
            d.incidents_raised,
            d.notify_messages_delivered,
            d.notify_running_escalations,
            d.history_events,
            d.events_published
        );
        for (what, list) in [
            ("MISSED", &v.missed),
            ("FALSE", &v.false_incidents),
            ("DUPLICATED", &v.duplicated),
            ("WRONG DUE", &v.wrong_due),
            ("LATE", &v.late),
            ("BLACKOUT MISSED", &v.blackouts_missed),
            ("LOST IN STALL", &v.lost_in_stall),
        ] {
            for x in list.iter().take(10) {
                let _ = writeln!(o, "  {what:<15} {x}");
            }
            if list.len() > 10 {
                let _ = writeln!(o, "  {what:<15} … {} more", list.len() - 10);
            }
        }
        let _ = writeln!(
            o,
            "result        {}",
            if self.passed { "OK" } else { "FAILED" }
        );
        o
    }
}

/// Assembles the report of a finished run.
#[allow(clippy::too_many_arguments)]
pub fn report(
    scenario: &Scenario,
    meter: &Meter,
    setup_s: f64,
    stats: crate::sim::SimStats,
    simulated_ms: i64,
    monitor_bytes: Option<f64>,
    broker_cpu_s: Option<f64>,
    verdict: Verdict,
    downstream: Downstream,
) -> Report {
    let wall = meter.elapsed();
    let cpu = meter.cpu();
    let p = |q| verdict.percentile(q).map(|s| s * 1000.0);
    let passed = verdict.passed() && downstream.consistent();
    Report {
        commit: git_commit(),
        date: chrono::Local::now().format("%Y-%m-%d").to_string(),
        wall_s: wall,
        setup_s,
        simulated_hours: simulated_ms as f64 / 3_600_000.0,
        acceleration: simulated_ms as f64 / 1000.0 / wall.max(1e-9),
        readings: stats.readings,
        duplicates: stats.duplicates,
        dropped_by_blackout: stats.dropped_by_blackout,
        readings_per_s: stats.readings as f64 / wall.max(1e-9),
        monitor_bytes_per_household: monitor_bytes,
        process_bytes_per_household: meter.peak_rss.max(crate::resident_bytes().unwrap_or(0))
            as f64
            / scenario.households.max(1) as f64,
        cpu_s: cpu,
        cpu_percent: cpu / wall.max(1e-9) * 100.0,
        broker_cpu_s,
        latency_p50_ms: p(0.5),
        latency_p99_ms: p(0.99),
        latency_max_ms: verdict.latencies_s.last().map(|s| s * 1000.0),
        verdict,
        downstream,
        samples: meter.samples.clone(),
        passed,
        scenario: scenario.clone(),
    }
}

fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// A progress bar over simulated minutes (hidden when `show` is false).
pub fn progress(minutes: u64, show: bool) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(minutes);
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} sim min ({eta} left) {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    pb
}

/// Distinct incident ids among the seen events.
pub fn distinct_incidents(seen: &[SeenEvent]) -> usize {
    seen.iter()
        .map(|e| e.incident_id.as_str())
        .collect::<std::collections::HashSet<_>>()
        .len()
}
