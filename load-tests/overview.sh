#!/usr/bin/env bash
# Renders docs/overview.png: what the overview dashboard shows while the
# platform carries a town. A real Prometheus (Debian's `prometheus`, or
# $PROMETHEUS) scrapes the `scenario town` run (monitor, notify and history
# as deployed, over Tansu) every 2 s with the alert rules loaded; then the
# `overview` binary queries each panel of deploy/grafana/dolbom-overview.json
# over the run and draws them.
#
#   load-tests/overview.sh [hours] [out.png]     (default: 72 simulated hours)
set -euo pipefail
cd "$(dirname "$0")/.."
hours="${1:-72}"
out="${2:-docs/overview.png}"
prom="${PROMETHEUS:-prometheus}"
dir="$(mktemp -d)"
metrics="127.0.0.1:$((20000 + RANDOM % 20000))"
web="127.0.0.1:$((20000 + RANDOM % 20000))"
cat > "$dir/prometheus.yml" <<YAML
global:
  scrape_interval: 2s
  evaluation_interval: 2s
rule_files:
  - $PWD/deploy/prometheus/dolbom-alerts.yml
scrape_configs:
  - job_name: dolbom-scenario
    static_configs:
      - targets: ['$metrics']
YAML
"$prom" --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/tsdb" \
  --web.listen-address="$web" > "$dir/prometheus.log" 2>&1 &
prom_pid=$!
trap 'kill $prom_pid 2>/dev/null; rm -rf "$dir"' EXIT
cargo build --release -q -p dolbom-load-tests --bin scenario --bin overview
bin="${CARGO_TARGET_DIR:-$PWD/target}/release"
started=$(date +%s)
"$bin"/scenario town --hours "$hours" --quiet \
  --metrics-listen "$metrics" --out-dir "$dir/scenario" || echo "(the scenario's own check failed; drawing what Prometheus saw)"
sleep 5 # the last scrapes
minutes=$(( ( $(date +%s) - started ) / 60 + 1 ))
"$bin"/overview --prometheus "http://$web" \
  --minutes "$minutes" --out "$out"
