#!/usr/bin/env python3
"""The Grafana dashboards, one source of truth.

The panels are listed here; `python3 deploy/grafana/dashboards.py` writes
deploy/grafana/dolbom-*.json (Grafana's dashboard JSON, schema 39, a
Prometheus data-source variable) and their copies in the Helm chart
(deploy/helm/dolbom/files/dashboards); `--check` fails when a file differs
from what this script would write. Expressions use no Grafana variables, so
promtool can parse them; services/dolbom/tests/observability.rs checks that
each parses and names only metrics the running services expose.
"""
import json
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
RATE = "5m"


def q(expr, legend=""):
    return {"expr": expr, "legend": legend}


def p99(metric, by=""):
    group = f"le{', ' + by if by else ''}"
    return f"histogram_quantile(0.99, sum by ({group}) (rate({metric}_bucket[{RATE}])))"


def p50(metric, by=""):
    group = f"le{', ' + by if by else ''}"
    return f"histogram_quantile(0.5, sum by ({group}) (rate({metric}_bucket[{RATE}])))"


# (title, description, unit, kind, [queries])
OVERVIEW = [
    ("Readings accepted", "Plug readings the shards took, per second.", "reqps", "timeseries",
     [q(f"sum(rate(dolbom_monitor_readings_accepted_total[{RATE}]))", "accepted"),
      q(f"sum by (reason) (rate(dolbom_monitor_readings_rejected_total[{RATE}]))", "rejected: {{reason}}")]),
    ("Consumer lag", "Records of plug.readings not yet processed: the largest partition and all.", "short", "timeseries",
     [q("max(dolbom_monitor_consumer_lag)", "largest partition"),
      q("sum(dolbom_monitor_consumer_lag)", "all partitions")]),
    ("Partitions stalled or down", "Partitions where nobody is being watched: input stalled (no inactivity inferred) or no shard running.", "short", "stat",
     [q("sum(dolbom_monitor_partition_stalled)", "stalled"),
      q("sum(dolbom_monitor_partitions_down)", "down")]),
    ("Deadline → incident latency", "Wall time from a deadline's due time to its incident event's publication (target: p99 under 1 s).", "s", "timeseries",
     [q(p99("dolbom_monitor_incident_emit_delay_seconds"), "p99"),
      q(p50("dolbom_monitor_incident_emit_delay_seconds"), "p50")]),
    ("Incidents by stage", "Incident events published in the last hour, by kind, type and stage.", "short", "timeseries",
     [q("sum by (kind, type, stage) (increase(dolbom_monitor_incident_events_total[1h]))", "{{kind}} {{type}} {{stage}}")]),
    ("Deliveries", "Delivery attempts per second by channel and result.", "reqps", "timeseries",
     [q(f"sum by (channel, result) (rate(dolbom_notify_delivery_attempts_total[{RATE}]))", "{{channel}} {{result}}")]),
    ("Held incidents", "Incidents waiting for the dong office's next opening (no night/holiday consent), and how long the longest has waited.", "short", "timeseries",
     [q("max(dolbom_notify_held_incidents)", "held"),
      q("max(dolbom_notify_longest_held_seconds) / 3600", "longest held (hours)")]),
    ("Nobody reached", "Escalation rounds whose last step reached nobody, and policies that ran out, in the last hour.", "short", "timeseries",
     [q("sum(increase(dolbom_notify_unreachable_total[1h]))", "unreachable"),
      q("sum(increase(dolbom_notify_exhausted_total[1h]))", "exhausted")]),
    ("Services up", "notify SERVING, the history store accepting writes, the snapshot store up.", "short", "stat",
     [q("min(dolbom_notify_ready)", "notify ready"),
      q("min(dolbom_history_store_up)", "history store up"),
      q("min(dolbom_monitor_snapshot_store_up)", "snapshot store up")]),
    ("Households hosted", "Households the monitors host.", "short", "stat",
     [q("sum(dolbom_monitor_households)", "households")]),
]

MONITOR = [
    ("Households by partition", "Households each partition's shard hosts.", "short", "timeseries",
     [q("sum by (partition) (dolbom_monitor_households)", "p{{partition}}")]),
    ("Pending deadlines", "Entries in each shard's timer wheel.", "short", "timeseries",
     [q("sum by (partition) (dolbom_monitor_pending_deadlines)", "p{{partition}}")]),
    ("Event time behind the wall clock", "Wall clock minus each partition's newest accepted reading time.", "s", "timeseries",
     [q("time() - max by (partition) (dolbom_monitor_watermark_seconds)", "p{{partition}}")]),
    ("Clock offset to Kafka", "The monitor's clock minus the newest Kafka record timestamp: lag plus clock disagreement.", "s", "timeseries",
     [q("max by (partition) (dolbom_monitor_clock_offset_seconds)", "p{{partition}}")]),
    ("Consumer lag by partition", "Records of plug.readings not yet processed.", "short", "timeseries",
     [q("max by (partition) (dolbom_monitor_consumer_lag)", "p{{partition}}")]),
    ("Snapshots", "Time to take and store one snapshot (p99), and failures per second.", "s", "timeseries",
     [q(p99("dolbom_monitor_snapshot_duration_seconds"), "p99"),
      q(f"rate(dolbom_monitor_snapshot_failures_total[{RATE}])", "failures/s")]),
    ("Snapshot size", "Bytes of the last snapshot, by partition.", "bytes", "timeseries",
     [q("max by (partition) (dolbom_monitor_snapshot_bytes)", "p{{partition}}")]),
    ("Incident publishing", "Events not yet acknowledged by the broker, publish failures and producer renewals.", "short", "timeseries",
     [q("sum(dolbom_monitor_unacknowledged_incident_events)", "unacknowledged"),
      q(f"sum by (stage) (rate(dolbom_monitor_publish_failures_total[{RATE}]))", "failures {{stage}}/s"),
      q(f"rate(dolbom_monitor_producer_renewals_total[{RATE}])", "renewals/s")]),
    ("Restores and restarts", "Restore time (p99) and shard restarts in the last hour.", "s", "timeseries",
     [q(p99("dolbom_monitor_restore_duration_seconds"), "restore p99"),
      q("sum(increase(dolbom_monitor_shard_restarts_total[1h]))", "restarts")]),
    ("Rejected input", "Readings and configurations refused, and records dead-lettered, per second.", "reqps", "timeseries",
     [q(f"sum by (reason) (rate(dolbom_monitor_readings_rejected_total[{RATE}]))", "reading {{reason}}"),
      q(f"sum by (reason) (rate(dolbom_monitor_configs_rejected_total[{RATE}]))", "config {{reason}}"),
      q(f"sum by (topic) (rate(dolbom_monitor_dead_lettered_total[{RATE}]))", "dead-lettered {{topic}}")]),
    ("Partitions owned", "plug.readings partitions each monitor owns; missing snapshots refused.", "short", "timeseries",
     [q("sum(dolbom_monitor_assigned_partitions)", "owned"),
      q("sum(increase(dolbom_monitor_missing_snapshots_total[1h]))", "missing snapshots")]),
    ("Areas", "Parts of areas shared with and taken from other monitors, and shares that failed.", "reqps", "timeseries",
     [q(f"rate(dolbom_monitor_area_parts_shared_total[{RATE}])", "shared"),
      q(f"rate(dolbom_monitor_area_parts_merged_total[{RATE}])", "merged"),
      q(f"rate(dolbom_monitor_area_share_failures_total[{RATE}])", "failed")]),
]

NOTIFY = [
    ("Incident events in", "Incident events taken in, duplicates ignored and malformed ones skipped, per second.", "reqps", "timeseries",
     [q(f"sum(rate(dolbom_notify_events_total[{RATE}]))", "new"),
      q(f"sum(rate(dolbom_notify_duplicate_events_total[{RATE}]))", "duplicates"),
      q(f"sum by (field) (rate(dolbom_notify_rejected_events_total[{RATE}]))", "rejected {{field}}")]),
    ("Messages by tier", "Messages escalations asked to send, per second, by tier and purpose.", "reqps", "timeseries",
     [q(f"sum by (tier, purpose) (rate(dolbom_notify_messages_total[{RATE}]))", "{{tier}} {{purpose}}")]),
    ("Delivery latency", "Time of one delivery attempt (p99) by channel.", "s", "timeseries",
     [q(p99("dolbom_notify_delivery_seconds", "channel"), "{{channel}} p99")]),
    ("Deliveries", "Delivery attempts per second by channel and result.", "reqps", "timeseries",
     [q(f"sum by (channel, result) (rate(dolbom_notify_delivery_attempts_total[{RATE}]))", "{{channel}} {{result}}")]),
    ("Escalations", "Escalations whose clock runs, open incidents, messages queued.", "short", "timeseries",
     [q("max(dolbom_notify_escalations_running)", "running"),
      q("max(dolbom_notify_open_incidents)", "open incidents"),
      q("max(dolbom_notify_messages_pending)", "messages pending")]),
    ("Escalated and reopened", "Escalations to the next tier by cause and reopenings, in the last hour.", "short", "timeseries",
     [q("sum by (cause) (increase(dolbom_notify_escalated_total[1h]))", "escalated {{cause}}"),
      q("sum by (cause) (increase(dolbom_notify_reopened_total[1h]))", "reopened {{cause}}")]),
    ("Held for the office", "Incidents held for the dong office's next opening and the longest hold.", "short", "timeseries",
     [q("max(dolbom_notify_held_incidents)", "held"),
      q("max(dolbom_notify_longest_held_seconds) / 3600", "longest (hours)")]),
    ("Time to acknowledge", "Opening to acknowledgement by a person: median and 90th percentile.", "s", "timeseries",
     [q(p50("dolbom_notify_acknowledge_seconds"), "p50"),
      q("histogram_quantile(0.9, sum by (le) (rate(dolbom_notify_acknowledge_seconds_bucket[1h])))", "p90")]),
    ("API", "Watch streams open, refused and ended by their token; failed authentications per second.", "short", "timeseries",
     [q("max(dolbom_notify_watchers)", "watchers"),
      q(f"rate(dolbom_notify_watch_streams_refused_total[{RATE}])", "refused/s"),
      q(f"rate(dolbom_notify_watch_streams_ended_by_token_total[{RATE}])", "ended by token/s"),
      q(f"rate(dolbom_notify_auth_failures_total[{RATE}])", "auth failures/s")]),
    ("Bus and history", "Publishing to Kafka up, records waiting for the history store.", "short", "timeseries",
     [q("min(dolbom_notify_publisher_up)", "publisher up"),
      q("max(dolbom_notify_history_outbox)", "history outbox")]),
]

HISTORY = [
    ("Records written", "Records the history store accepted, per second, by kind.", "reqps", "timeseries",
     [q(f"sum by (kind) (rate(dolbom_history_records_written_total[{RATE}]))", "{{kind}}")]),
    ("Writer queue", "Records waiting in the history writer's queue, and whether it is full.", "short", "timeseries",
     [q("max by (backend) (dolbom_history_queue_depth)", "depth {{backend}}"),
      q("max by (backend) (dolbom_history_behind)", "behind {{backend}}")]),
    ("Write latency", "Time to write one batch (p99), and to store one snapshot (p99).", "s", "timeseries",
     [q(p99("dolbom_history_batch_seconds", "backend"), "batch {{backend}}"),
      q(p99("dolbom_history_snapshot_put_seconds", "backend"), "snapshot {{backend}}")]),
    ("Store up", "1 while the history store accepts writes.", "short", "stat",
     [q("min by (backend) (dolbom_history_store_up)", "{{backend}}")]),
    ("Failures", "Batches that failed, records refused, per second.", "reqps", "timeseries",
     [q(f"sum by (backend) (rate(dolbom_history_write_failures_total[{RATE}]))", "failed batches {{backend}}"),
      q(f"sum by (kind) (rate(dolbom_history_refused_total[{RATE}]))", "refused {{kind}}")]),
    ("Ingest", "Readings too late for their minute, re-timed to their send time, malformed records skipped, per second.", "reqps", "timeseries",
     [q(f"rate(dolbom_history_late_readings_total[{RATE}])", "late"),
      q(f"rate(dolbom_history_readings_retimed_total[{RATE}])", "re-timed"),
      q(f"sum by (kind) (rate(dolbom_history_rejected_total[{RATE}]))", "rejected {{kind}}")]),
    ("Traces", "Spans exported, refused by the collector and dropped on a full queue, per second (every service).", "reqps", "timeseries",
     [q(f"sum(rate(dolbom_telemetry_spans_exported_total[{RATE}]))", "exported"),
      q(f"sum(rate(dolbom_telemetry_spans_failed_total[{RATE}]))", "failed"),
      q(f"sum(rate(dolbom_telemetry_spans_dropped_total[{RATE}]))", "dropped")]),
]

DASHBOARDS = [
    ("overview", "dolbom: platform overview", "What on-call reads first: input, latency, incidents, deliveries, held incidents.", OVERVIEW),
    ("monitor", "dolbom: monitor", "Partitions, shards, snapshots and incident publishing.", MONITOR),
    ("notify", "dolbom: notify", "Incident intake, escalations, deliveries and the API.", NOTIFY),
    ("history", "dolbom: history and traces", "The history store's writer and ingest, and trace export.", HISTORY),
]


def panel(i, title, description, unit, kind, queries):
    width, height = (6, 5) if kind == "stat" else (12, 8)
    return {
        "id": i + 1,
        "type": kind,
        "title": title,
        "description": description,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}} if kind == "timeseries" else {},
        "targets": [
            {"refId": chr(ord("A") + j), "expr": t["expr"], "legendFormat": t["legend"]}
            for j, t in enumerate(queries)
        ],
        "gridPos": {"h": height, "w": width, "x": 0, "y": 0},
    }


def layout(panels):
    x = y = row_h = 0
    for p in panels:
        w, h = p["gridPos"]["w"], p["gridPos"]["h"]
        if x + w > 24:
            x, y, row_h = 0, y + row_h, 0
        p["gridPos"].update(x=x, y=y)
        x += w
        row_h = max(row_h, h)
    return panels


def dashboard(slug, title, description, spec):
    return {
        "uid": f"dolbom-{slug}",
        "title": title,
        "description": description,
        "tags": ["dolbom"],
        "editable": False,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "timezone": "browser",
        "templating": {"list": [{
            "name": "datasource",
            "label": "Prometheus",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "hide": 0,
        }]},
        "annotations": {"list": []},
        "links": [{"title": "dolbom dashboards", "type": "dashboards", "tags": ["dolbom"], "asDropdown": True}],
        "panels": layout([panel(i, *s) for i, s in enumerate(spec)]),
    }


CHART_COPIES = HERE.parent / "helm/dolbom/files/dashboards"


def rendered():
    """Each dashboard's file here and its copy in the Helm chart."""
    out = {}
    for slug, title, d, spec in DASHBOARDS:
        text = json.dumps(dashboard(slug, title, d, spec), indent=2, ensure_ascii=False) + "\n"
        out[HERE / f"dolbom-{slug}.json"] = text
        out[CHART_COPIES / f"dolbom-{slug}.json"] = text
    return out


def main():
    files = rendered()
    if "--check" in sys.argv[1:]:
        stale = [p.name for p, text in files.items() if not p.exists() or p.read_text() != text]
        if stale:
            sys.exit(f"out of date (run python3 deploy/grafana/dashboards.py): {', '.join(stale)}")
        return
    for path, text in files.items():
        path.write_text(text)


if __name__ == "__main__":
    main()
