#!/usr/bin/env python3
"""Lints, renders and validates the dolbom chart without a cluster.

For the default values and each value set in dolbom/ci/: `helm lint
--strict` (helm-python-sdk, the Helm v4 SDK), render, validate every
manifest against the Kubernetes schemas (kubernetes-validate --strict, the
version below), assert the properties the platform depends on, and run
`dolbom <service> --check-config` on the rendered TOML with stand-in secret
files. Run by services/dolbom/tests/helm_chart.rs (part of `cargo test
--workspace`):

    check_chart.py --dolbom target/debug/dolbom --secrets DIR
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import helm_python
import kubernetes_validate
import yaml

KUBERNETES = "1.33.0"
HERE = pathlib.Path(__file__).resolve().parent
CHART = HERE / "dolbom"
REPO = HERE.parent.parent
VALUE_SETS = ["default", "single-node", "production", "minimal"]
DRAIN_LIMIT_S = 45


def values(name):
    if name == "default":
        return {}
    return yaml.safe_load((CHART / "ci" / f"{name}.yaml").read_text())


def render(vals):
    chart = helm_python.Chart.load(str(CHART))
    out = chart.render(vals, name="dolbom", namespace="care", is_install=True)
    docs = []
    for path, text in sorted(out.items()):
        for d in yaml.safe_load_all(text):
            if d:
                docs.append(d)
    return docs


def pods(docs):
    for d in docs:
        if d["kind"] in ("StatefulSet", "Deployment"):
            yield d, d["spec"]["template"]["spec"]


def check_properties(name, vals, docs):
    kinds = [d["kind"] for d in docs]
    assert "Secret" not in kinds, f"{name}: the chart renders a Secret (secret values inline)"
    by = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    monitor = by[("StatefulSet", "dolbom-dolbom-monitor")]
    mspec = monitor["spec"]["template"]["spec"]
    env = {e["name"]: e for e in mspec["containers"][0]["env"]}
    assert env["DOLBOM_INSTANCE_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name", \
        f"{name}: the monitor's static group instance id is not the pod name"
    assert mspec["terminationGracePeriodSeconds"] > DRAIN_LIMIT_S, f"{name}: grace period <= drain"
    partitions = (vals.get("kafka") or {}).get("partitions", 12)
    assert monitor["spec"]["replicas"] <= partitions, f"{name}: more monitors than partitions"
    assert ("PodDisruptionBudget", "dolbom-dolbom-monitor") in by, f"{name}: no PDB"
    for d, spec in pods(docs):
        ps = spec["securityContext"]
        assert ps["runAsNonRoot"] and ps["runAsUser"] > 0, f"{name}: {d['metadata']['name']} runs as root"
        assert ps["seccompProfile"]["type"] == "RuntimeDefault"
        assert spec.get("automountServiceAccountToken") is False
        for c in spec["containers"]:
            cs = c["securityContext"]
            assert cs["readOnlyRootFilesystem"] and not cs["allowPrivilegeEscalation"], c["name"]
            assert cs["capabilities"]["drop"] == ["ALL"], c["name"]
            assert c["resources"]["requests"], c["name"]
        for v in spec["volumes"]:
            if "secret" in v:
                assert v["secret"]["defaultMode"] == 0o440, f"{name}: {v['name']} mode"
    notify = by[("StatefulSet", "dolbom-dolbom-notify")]
    nspec = notify["spec"]["template"]["spec"]
    assert notify["spec"]["replicas"] == 1, "notify's store has one writer"
    health = [p for p in nspec["containers"][0]["ports"] if p["name"] == "health"][0]["containerPort"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert nspec["containers"][0][probe]["grpc"]["port"] == health, f"{name}: {probe}"
    cm = by[("ConfigMap", "dolbom-dolbom-config")]["data"]
    for f, text in cm.items():
        for line in text.splitlines():
            if "=" not in line:
                continue
            key, value = (p.strip().strip('"') for p in line.split("=", 1))
            secret = key in ("password", "api_key", "webhook_secret") or "password" in key
            # A secret's option may only name a file mounted from a Secret.
            assert not secret or value.startswith("/etc/dolbom/"), \
                f"{name}: {f} holds a secret inline: {key}"
    if (vals.get("networkPolicy") or {}).get("enabled", True):
        assert sum(k == "NetworkPolicy" for k in kinds) == 3, f"{name}: a NetworkPolicy per component"
    rule = [d for d in docs if d["kind"] == "PrometheusRule"]
    if rule:
        source = yaml.safe_load((REPO / "deploy/prometheus/dolbom-alerts.yml").read_text())
        assert rule[0]["spec"] == source, f"{name}: PrometheusRule differs from deploy/prometheus"
    boards = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboards")]
    if (vals.get("metrics") or {}).get("grafanaDashboards", {}).get("enabled"):
        assert len(boards) == 1, f"{name}: one dashboards ConfigMap"
        source = {f.name: f.read_text() for f in (REPO / "deploy/grafana").glob("*.json")}
        got = boards[0]["data"]
        assert sorted(got) == sorted(source), f"{name}: dashboards {sorted(got)}"
        for f, text in got.items():
            assert json.loads(text) == json.loads(source[f]), f"{name}: {f} differs from deploy/grafana"
        assert boards[0]["metadata"]["labels"].get("grafana_dashboard") == "1", f"{name}: sidecar label"
    else:
        assert not boards, f"{name}: dashboards rendered while disabled"
    return cm


def check_configs(name, cm, dolbom, secrets):
    """Runs --check-config on the rendered TOML with the mounts' paths moved
    under a temporary root holding stand-in secrets."""
    with tempfile.TemporaryDirectory() as root:
        root = pathlib.Path(root)
        for f, text in cm.items():
            text = text.replace("/etc/dolbom/", f"{secrets}/").replace(
                "/var/lib/dolbom/", f"{root}/data/")
            path = root / f
            path.write_text(text)
            service = f.removesuffix(".toml")
            r = subprocess.run([dolbom, service, "--config", str(path), "--check-config"],
                               capture_output=True, text=True,
                               env={**os.environ, "DOLBOM_INSTANCE_ID": "dolbom-dolbom-monitor-0"})
            assert r.returncode == 0 and "configuration OK" in r.stdout, \
                f"{name}: {f} --check-config failed:\n{r.stdout}{r.stderr}\n--- {f}\n{text}"


def check_refusals():
    bad = [
        ({"monitor": {"replicas": 13}}, "must not exceed kafka.partitions"),
        ({"historyStore": "embedded", "monitor": {"replicas": 2}}, "one monitor replica"),
        ({"notify": {"tls": {"enabled": False}}}, "insecurePlaintext"),
        ({"monitor": {"terminationGracePeriodSeconds": 30}}, "terminationGracePeriodSeconds"),
        ({"kafka": {"properties": {"sasl.password": "x"}}}, "sasl.password"),
    ]
    for vals, why in bad:
        try:
            render(vals)
        except helm_python.HelmError as e:
            assert why in str(e), f"refused for another reason than {why!r}: {e}"
        else:
            raise AssertionError(f"rendered values that must be refused ({why})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dolbom", required=True)
    ap.add_argument("--secrets", required=True)
    a = ap.parse_args()
    for f in (REPO / "deploy/grafana").glob("*.json"):
        copy = CHART / "files" / "dashboards" / f.name
        assert copy.exists() and copy.read_text() == f.read_text(), \
            f"deploy/helm/dolbom/files/dashboards/{f.name} differs from deploy/grafana/{f.name}"
    files = CHART / "files" / "dolbom-alerts.yml"
    assert files.read_text() == (REPO / "deploy/prometheus/dolbom-alerts.yml").read_text(), \
        "deploy/helm/dolbom/files/dolbom-alerts.yml differs from deploy/prometheus/dolbom-alerts.yml"
    for name in VALUE_SETS:
        vals = values(name)
        lint = helm_python.lint(str(CHART), vals, strict=True)
        assert not lint["errors"], f"{name}: helm lint: {lint['errors']}"
        docs = render(vals)
        for d in docs:
            if d["apiVersion"].startswith("monitoring.coreos.com/"):
                continue  # CRDs of the Prometheus operator: not in the schemas
            kubernetes_validate.validate(d, KUBERNETES, strict=True)
        cm = check_properties(name, vals, docs)
        check_configs(name, cm, a.dolbom, a.secrets)
        print(f"{name}: lint clean, {len(docs)} manifests valid for Kubernetes {KUBERNETES}, "
              f"{len(cm)} configurations pass --check-config")
    check_refusals()
    print("refusals: 5 bad value sets refused with their reason")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"FAILED: {e}", file=sys.stderr)
        sys.exit(1)
