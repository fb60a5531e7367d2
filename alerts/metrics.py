"""Prometheus metrics of the alert stage (bounded labels: type, action, channel, outcome).

Constructed once by the composition root with the process registry; tests pass their own
``CollectorRegistry``.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from alerts.model import Change

LAG_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


class AlertMetrics:
    """Alerts opened by type, changes by action, deliveries by channel and outcome, lag."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        reg = REGISTRY if registry is None else registry
        self.opened = Counter("giamsat_alerts_opened_total", "Alerts opened, by type",
                              ["type"], registry=reg)
        self.changes = Counter("giamsat_alert_changes_total", "Alert changes, by action",
                               ["action"], registry=reg)
        self.deliveries = Counter(
            "giamsat_alert_deliveries_total",
            "Delivery attempts by channel and outcome (delivered, failed)",
            ["channel", "outcome"], registry=reg)
        self.decide = Histogram(
            "giamsat_decide_seconds",
            "Duration of one round of the decide stage (geofence + rules + commit), by work",
            ["work"], buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
            registry=reg)
        self.decided_fixes = Counter(
            "giamsat_decide_fixes_total",
            "Fixes that went through the geofence decisions (late ones included)", registry=reg)
        self.late_fixes = Counter(
            "giamsat_decide_late_fixes_total",
            "Fixes older than their device's last decided fix: stored and shown, never decided "
            "(contract §1)", registry=reg)
        self.decide_queue = Gauge(
            "giamsat_decide_queue_depth",
            "Work items (stored batches, ticks, reloads) waiting for the decide stage",
            registry=reg)
        self.lag = Histogram(
            "giamsat_alert_delivery_lag_seconds",
            "From an alert change's commit to its delivery, by channel",
            ["channel"], buckets=LAG_BUCKETS, registry=reg)

    def observe_changes(self, changes: Iterable[Change]) -> None:
        """Count committed changes (call after the commit)."""
        for ch in changes:
            self.changes.labels(ch.action).inc()
            if ch.action == "opened":
                self.opened.labels(ch.type).inc()
