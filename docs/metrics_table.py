#!/usr/bin/env python3
"""Writes docs/metrics.md from the crates' metrics.rs files.

Each crate describes its metrics once (name, unit, help) in src/metrics.rs;
the labels are read off the places that record them. Run after changing a
metric: python3 docs/metrics_table.py (the alert_rules test checks that the
table names exactly the metrics the crates describe).
"""
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
KINDS = {"counter": "counter", "gauge": "gauge", "histogram": "histogram"}


def rows():
    out = []
    for metrics_rs in sorted(ROOT.glob("*/*/src/metrics.rs")):
        crate_dir = metrics_rs.parent.parent
        text = metrics_rs.read_text()
        consts = dict(re.findall(r'pub const (\w+): &str =\s*"(dolbom_\w+)";', text))
        src = "\n".join(p.read_text() for p in crate_dir.glob("src/**/*.rs"))
        for kind, const, unit, help_ in re.findall(
            r'describe_(counter|gauge|histogram)!\(\s*(\w+),\s*Unit::(\w+),\s*"((?:[^"\\]|\\.)*)"',
            text,
            re.S,
        ):
            name = consts[const]
            labels = set()
            for m in re.finditer(
                r'(?:counter|gauge|histogram)!\(\s*(?:crate::metrics::|m::|metrics::|)' + const + r'\b([^;]*?)\)',
                src,
                re.S,
            ):
                labels.update(re.findall(r'"(\w+)"\s*=>', m.group(1)))
            out.append((name, kind, unit, ", ".join(sorted(labels)) or "—",
                        " ".join(help_.split()), crate_dir.relative_to(ROOT).as_posix()))
    return sorted(out)


def main():
    lines = [
        "# Metrics",
        "",
        "Every metric a dolbom service exposes on `/metrics` (Prometheus text",
        "format, `metrics_listen`), generated from the `src/metrics.rs` of each",
        "crate by `python3 docs/metrics_table.py`. Histograms share one set of",
        "buckets (1 ms to 60 s, `crates/prometheus`). Labels are bounded: a",
        "partition, a reason, a kind, a channel — never a household. Counters",
        "without labels start at 0 when a service starts.",
        "",
        "| name | type | unit | labels | what it counts | crate |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, kind, unit, labels, help_, crate in rows():
        lines.append(f"| `{name}` | {kind} | {unit.lower()} | {labels} | {help_} | `{crate}` |")
    (ROOT / "docs/metrics.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
