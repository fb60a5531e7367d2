"""Write ``deploy/grafana/dashboards/giamsat.json`` (Grafana dashboard, schema 39).

The panels are data here so that every query is easy to review; run it after changing one:

    python3 deploy/grafana/build_dashboard.py

``tests/deploy/test_grafana_dashboard.py`` checks that each metric and label a query names is
defined in the code (prometheus_client Counter / Gauge / Histogram calls), and that the JSON
file is what this script writes.
"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).parent / "dashboards" / "giamsat.json"
DS = {"type": "prometheus", "uid": "prometheus"}
RI = "$__rate_interval"


def quantiles(metric: str, by: str = "", qs: tuple[float, ...] = (0.5, 0.95, 0.99)) -> list[dict]:
    """p50/p95/p99 targets of a histogram, optionally split by a label."""
    group = f"le, {by}" if by else "le"
    suffix = f" {{{{{by}}}}}" if by else ""  # Grafana legend: p99 {{channel}}
    return [{"expr": f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket[{RI}])))",
             "legendFormat": f"p{round(q * 100)}{suffix}"} for q in qs]


def target(expr: str, legend: str) -> dict:
    return {"expr": expr, "legendFormat": legend}


# (title, description, unit, targets, width)
ROWS: list[tuple[str, list[tuple[str, str, str, list[dict], int]]]] = [
    ("Ingest", [
        ("Stored records by kind",
         "Records newly stored per second (a batch message counts each fix); received "
         "messages for comparison.", "ops",
         [target(f"sum by (kind) (rate(giamsat_ingest_stored_records_total[{RI}]))",
                 "stored {{kind}}"),
          target(f"sum(rate(giamsat_ingest_received_messages_total[{RI}]))", "messages received"),
          target(f"sum by (kind) (rate(giamsat_ingest_duplicate_records_total[{RI}]))",
                 "duplicate {{kind}}")], 12),
        ("Rejections by reason",
         "Messages or batch elements dead-lettered per second, by reason (contract §1).", "ops",
         [target(f"sum by (reason) (rate(giamsat_ingest_rejected_total[{RI}])) > 0",
                 "{{reason}}")], 12),
        ("Batch commit latency",
         "Time to store and commit one batch (COPY + INSERT ... ON CONFLICT). Devices are "
         "acknowledged only after it.", "s",
         quantiles("giamsat_ingest_batch_commit_seconds"), 8),
        ("Batch size",
         "Messages per storage transaction.", "short",
         quantiles("giamsat_ingest_batch_messages", qs=(0.5, 0.99)), 8),
        ("Queue depth and overflow",
         "Messages waiting between the MQTT callback and the writer; overflow means the MQTT "
         "thread had to wait (back-pressure, nothing dropped).", "short",
         [target("sum(giamsat_ingest_queue_depth)", "queue depth"),
          target("sum(giamsat_decide_queue_depth)", "decide queue (work items)"),
          target(f"sum(rate(giamsat_ingest_queue_overflow_total[{RI}]))", "overflow /s"),
          target(f"sum(rate(giamsat_ingest_db_errors_total[{RI}]))", "DB errors /s"),
          target("min(giamsat_ingest_healthy)", "healthy (1 = storing)")], 8),
    ]),
    ("Decisions", [
        ("Decision latency",
         "Time to decide one batch of fixes against the zones in force (geofence stage).", "s",
         quantiles("giamsat_decide_seconds"), 12),
        ("Fixes decided",
         "Fixes decided per second.", "ops",
         [target(f"sum(rate(giamsat_decide_fixes_total[{RI}]))", "decided")], 12),
    ]),
    ("Alerts and deliveries", [
        ("Alerts opened by type",
         "Alerts opened per minute, by type (contract §3).", "opm",
         [target(f"sum by (type) (rate(giamsat_alerts_opened_total[{RI}])) * 60", "{{type}}")],
         8),
        ("Alert changes by action",
         "Every alert change per minute (opened, updated, escalated, acknowledged, ...).", "opm",
         [target(f"sum by (action) (rate(giamsat_alert_changes_total[{RI}])) * 60",
                 "{{action}}")], 8),
        ("Deliveries by channel and outcome",
         "Delivery attempts per second; failed ones are retried until delivered.", "ops",
         [target(f"sum by (channel, outcome) (rate(giamsat_alert_deliveries_total[{RI}]))",
                 "{{channel}} {{outcome}}")], 8),
        ("Delivery lag",
         "From an alert change's commit to its delivery, by channel.", "s",
         quantiles("giamsat_alert_delivery_lag_seconds", by="channel", qs=(0.5, 0.99)), 24),
    ]),
    ("API", [
        ("Requests by status",
         "HTTP requests per second.", "reqps",
         [target(f"sum by (status) (rate(giamsat_api_requests_total[{RI}]))", "{{status}}")],
         8),
        ("Request latency",
         "Time to the response's first byte, all routes.", "s",
         quantiles("giamsat_api_request_duration_seconds", qs=(0.5, 0.99)), 8),
        ("Live stream",
         "Officers connected to the live alert stream; events sent.", "short",
         [target("sum(giamsat_api_stream_clients)", "clients"),
          target(f"sum(rate(giamsat_api_stream_events_total[{RI}]))", "events /s")], 8),
    ]),
]


def panel(pid: int, title: str, desc: str, unit: str, targets: list[dict], x: int, y: int,
          w: int) -> dict:
    refs = [dict(t, refId=chr(ord("A") + i), datasource=DS) for i, t in enumerate(targets)]
    return {
        "id": pid, "type": "timeseries", "title": title, "description": desc,
        "datasource": DS, "gridPos": {"h": 8, "w": w, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit, "min": 0,
                                     "custom": {"lineWidth": 1, "fillOpacity": 10,
                                                "showPoints": "never"}},
                        "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                    "tooltip": {"mode": "multi", "sort": "desc"}},
        "targets": refs,
    }


def dashboard() -> dict:
    panels, pid, y = [], 1, 0
    for row_title, row_panels in ROWS:
        panels.append({"id": pid, "type": "row", "title": row_title, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        pid, y, x = pid + 1, y + 1, 0
        for title, desc, unit, targets, w in row_panels:
            if x + w > 24:
                x, y = 0, y + 8
            panels.append(panel(pid, title, desc, unit, targets, x, y, w))
            pid, x = pid + 1, x + w
        y += 8
    return {
        "uid": "giamsat-overview", "title": "giamsat: ingest, decisions, alerts",
        "description": "Electronic-monitoring pipeline: device messages in, fixes decided, "
                       "alerts raised and delivered (deploy/grafana/build_dashboard.py).",
        "tags": ["giamsat"], "timezone": "browser", "schemaVersion": 39, "version": 1,
        "editable": False, "graphTooltip": 1, "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"}, "templating": {"list": []},
        "annotations": {"list": []}, "links": [], "panels": panels,
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    print(f"wrote {OUT}")
