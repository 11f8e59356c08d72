//! The alerting rules are code: `promtool check rules` and `promtool test
//! rules` (Debian's `prometheus` package, installed by `.ci/run`) run here,
//! every metric the rules name is one a dolbom crate describes in its
//! `metrics.rs`, and every alert has its runbook section. Without promtool
//! the promtool part says loudly that it was skipped; under CI (`CI` set) a
//! missing promtool is a failure.

mod observe;

use observe::*;
use std::process::Command;

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

#[test]
fn the_rules_name_only_metrics_the_services_describe() {
    let described = described();
    assert!(described.len() > 40, "{described:?}");
    // Only the metric names in expressions, not the rule names.
    let named = metric_names(&rule_exprs().join("\n"));
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
