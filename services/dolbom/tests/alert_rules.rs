//! The alerting rules are code: `promtool check rules` and `promtool test
//! rules` (Debian's `prometheus` package, installed by `.ci/run`) run here,
//! every metric the rules name is one a dolbom crate describes in its
//! `metrics.rs`, and every alert has its runbook section. Without promtool
//! the promtool part says loudly that it was skipped; under CI (`CI` set) a
//! missing promtool is a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rules_dir() -> PathBuf {
    root().join("deploy/prometheus")
}

fn rules() -> String {
    std::fs::read_to_string(rules_dir().join("dolbom-alerts.yml")).unwrap()
}

fn promtool() -> Option<PathBuf> {
    let p = std::env::var_os("DOLBOM_PROMTOOL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("promtool"));
    match Command::new(&p).arg("--version").output() {
        Ok(o) if o.status.success() => Some(p),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "promtool not found (apt-get install prometheus, or set DOLBOM_PROMTOOL)"
            );
            eprintln!(
                "SKIPPED: promtool not found, the alert rules were NOT checked or unit-tested"
            );
            None
        }
    }
}

#[test]
fn the_rules_load_and_each_alert_fires_on_its_fault_and_not_when_healthy() {
    let Some(promtool) = promtool() else { return };
    for args in [
        ["check", "rules", "dolbom-alerts.yml"],
        ["test", "rules", "dolbom-alerts.test.yml"],
    ] {
        let out = Command::new(&promtool)
            .args(args)
            .current_dir(rules_dir())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Every `dolbom_…` name in `text` (histogram series reduced to their
/// metric's name).
fn metric_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("dolbom_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(tail.len());
        let mut name = &tail[..end];
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = name.strip_suffix(suffix) {
                if base.ends_with("_seconds") || base.ends_with("_bytes") {
                    name = base;
                }
            }
        }
        names.push(name.to_string());
        rest = &tail[end..];
    }
    names.sort();
    names.dedup();
    names
}

/// Every metric name some crate's `metrics.rs` defines.
fn described() -> Vec<String> {
    let mut all = Vec::new();
    for dir in ["crates", "services"] {
        for entry in std::fs::read_dir(root().join(dir)).unwrap() {
            let f = entry.unwrap().path().join("src/metrics.rs");
            if let Ok(text) = std::fs::read_to_string(&f) {
                all.extend(
                    metric_names(&text)
                        .into_iter()
                        .filter(|n| text.contains(&format!("\"{n}\""))),
                );
            }
        }
    }
    all
}

#[test]
fn the_rules_name_only_metrics_the_services_describe() {
    let described = described();
    assert!(described.len() > 40, "{described:?}");
    // Only the metric names in expressions, not the rule names.
    let exprs: String = rules()
        .lines()
        .filter(|l| l.trim_start().starts_with("expr:"))
        .collect::<Vec<_>>()
        .join("\n");
    let named = metric_names(&exprs);
    assert!(named.len() > 10, "{named:?}");
    for n in named {
        assert!(
            described.contains(&n),
            "{n} is not described by any metrics.rs"
        );
    }
}

#[test]
fn every_alert_has_a_severity_a_summary_and_a_runbook_section() {
    let rules = rules();
    let runbook = std::fs::read_to_string(root().join("docs/runbook.md")).unwrap();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("- alert: "))
        .collect();
    assert!(alerts.len() >= 15, "{alerts:?}");
    for a in &alerts {
        assert!(
            runbook.contains(&format!("\n## {a}\n")),
            "docs/runbook.md has no section for {a}"
        );
        assert!(
            rules.contains(&format!("runbook: docs/runbook.md#{}", a.to_lowercase())),
            "{a} does not point at its runbook section"
        );
    }
    let blocks: Vec<&str> = rules.split("- alert: ").skip(1).collect();
    for b in blocks {
        assert!(
            b.contains("severity: critical") || b.contains("severity: warning"),
            "{b}"
        );
        assert!(b.contains("summary: "), "{b}");
    }
}
