"""Alerts (contract §3): rules, lifecycle, routing to the responsible unit, and delivery.

Everything that can raise or end an alert becomes an ``Occurrence`` and goes through one rule
path, ``rules.apply`` (geofence transitions via ``sources.from_transition``, heartbeats and
device events via ``telemetry.apply_device_messages``, the scheduled ``sweeps``). Each change
is written with its append-only history row and its outbox rows in the caller's transaction
(``store.record_change``); ``delivery.Deliverer`` sends the outbox afterwards.

For the API: ``acknowledge``, ``resolve``, ``add_note`` (``alerts.lifecycle``), the errors
``AlertNotFound`` / ``InvalidTransition`` / ``InvalidOutcome`` (``http_status`` 404/409/422),
``alert_json`` (``alerts.payload``) and the live stream helpers in ``alerts.delivery.stream``.
"""

from alerts.lifecycle import Resolution, acknowledge, add_note, resolve, violation_summary
from alerts.model import (
    ALERT_TYPES,
    OUTCOMES,
    SEVERITIES,
    AlertError,
    AlertNotFound,
    Change,
    InvalidOutcome,
    InvalidTransition,
    Occurrence,
)
from alerts.payload import alert_json
from alerts.rules import apply, apply_all
from alerts.sources import Thresholds

__all__ = [
    "ALERT_TYPES", "OUTCOMES", "SEVERITIES", "AlertError", "AlertNotFound", "Change",
    "InvalidOutcome", "InvalidTransition", "Occurrence", "Resolution", "Thresholds",
    "acknowledge", "add_note", "alert_json", "apply", "apply_all", "resolve",
    "violation_summary",
]
