//! What the tests of the observability artefacts share: the repository's
//! alert rules and dashboards, the metric names they use and the names the
//! crates describe, and promtool.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn rules_dir() -> PathBuf {
    root().join("deploy/prometheus")
}

/// The alerting rules file's text.
pub fn rules() -> String {
    std::fs::read_to_string(rules_dir().join("dolbom-alerts.yml")).unwrap()
}

/// Every `expr:` of the alerting rules.
pub fn rule_exprs() -> Vec<String> {
    rules()
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("expr:"))
        .map(|e| e.trim().to_string())
        .collect()
}

/// Every dashboard under `deploy/grafana`, by file name.
pub fn dashboards() -> Vec<(String, serde_json::Value)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root().join("deploy/grafana")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path).unwrap();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            out.push((name, serde_json::from_str(&text).unwrap()));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Every PromQL expression of every dashboard panel: (dashboard, panel, expr).
pub fn dashboard_exprs() -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (file, d) in dashboards() {
        for p in d["panels"].as_array().unwrap() {
            let title = p["title"].as_str().unwrap().to_string();
            for t in p["targets"].as_array().unwrap() {
                out.push((
                    file.clone(),
                    title.clone(),
                    t["expr"].as_str().unwrap().to_string(),
                ));
            }
        }
    }
    out
}

/// Every `dolbom_…` name in `text` (histogram series reduced to their
/// metric's name).
pub fn metric_names(text: &str) -> Vec<String> {
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
pub fn described() -> Vec<String> {
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
    all.sort();
    all
}

/// promtool, or `None` outside CI when it is not installed (said loudly).
pub fn promtool() -> Option<PathBuf> {
    tool("DOLBOM_PROMTOOL", "promtool")
}

/// A Prometheus server binary, or `None` outside CI (said loudly).
pub fn prometheus() -> Option<PathBuf> {
    tool("DOLBOM_PROMETHEUS", "prometheus")
}

fn tool(var: &str, name: &str) -> Option<PathBuf> {
    let p = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(name));
    match Command::new(&p).arg("--version").output() {
        Ok(o) if o.status.success() => Some(p),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{name} not found (apt-get install prometheus, or set {var})"
            );
            eprintln!("SKIPPED: {name} not found, this check did NOT run");
            None
        }
    }
}

/// Runs `promtool check rules` on a rules file holding each expression as
/// a recording rule: it parses them all, or says which does not.
pub fn assert_parse(promtool: &Path, exprs: &[String]) {
    let dir = tempfile::tempdir().unwrap();
    let mut yaml = String::from("groups:\n- name: parse\n  rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        // A JSON string is a YAML double-quoted scalar.
        yaml.push_str(&format!(
            "  - record: dolbom:parse:{i}\n    expr: {}\n",
            serde_json::to_string(e).unwrap()
        ));
    }
    let file = dir.path().join("exprs.yml");
    std::fs::write(&file, yaml).unwrap();
    let out = Command::new(promtool)
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check rules on the expressions:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
