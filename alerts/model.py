"""The alert domain of contract §3: types, severities, statuses, occurrences and changes.

An *occurrence* is one observation that an alert condition started (``active=True``) or ended
(``active=False``): a geofence transition, a heartbeat's battery level, a strap event, a sweep
finding a silent device. Every source produces occurrences, and one rule path
(``alerts.rules.apply``) turns them into alert changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

ZONE_TYPES = ("zone_exit", "zone_enter", "curfew", "permit_overrun")
DEVICE_TYPES = (
    "device_offline",
    "gnss_lost",
    "strap_tamper",
    "case_tamper",
    "battery_low",
    "battery_critical",
    "gnss_jamming",
)
# The supervision itself: the sentence ended (remove the device); a roll-call window closed
# without a check-in (alerts.rollcall).
CASE_TYPES = ("monitoring_ended", "checkin_missed")
ALERT_TYPES = ZONE_TYPES + DEVICE_TYPES + CASE_TYPES
SEVERITIES = ("critical", "high", "medium", "low")
STATUSES = ("open", "acknowledged", "resolved")
OUTCOMES = ("violation", "justified", "false_alarm")

# Contract §3: tamper is critical; offline, gnss_lost, jamming and battery_critical high;
# battery_low low; a zone alert opens medium (see zone_severity).
DEFAULT_SEVERITY = {
    "strap_tamper": "critical",
    "case_tamper": "critical",
    "device_offline": "high",
    "gnss_lost": "high",
    "gnss_jamming": "high",
    "battery_critical": "high",
    "battery_low": "low",
    "zone_exit": "medium",
    "zone_enter": "medium",
    "curfew": "medium",
    "permit_overrun": "medium",
    "monitoring_ended": "medium",
    "checkin_missed": "medium",
}
_RANK = {s: i for i, s in enumerate(reversed(SEVERITIES))}  # low 0 .. critical 3

SYSTEM = "system"  # the actor of changes the rules make
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def zone_severity(purpose: str | None, escalate_after_s: int | None) -> str:
    """Severity a zone alert opens with: ``critical`` for a protection zone (a victim's home),
    ``high`` when the policy says any violation is serious (``escalate_after_s == 0``, quản chế),
    else ``medium`` until the condition has lasted ``escalate_after_s``."""
    if purpose == "protection":
        return "critical"
    if escalate_after_s is not None and escalate_after_s <= 0:
        return "high"
    return "medium"


def max_severity(a: str, b: str) -> str:
    """The more serious of two severities."""
    return a if _RANK[a] >= _RANK[b] else b


def ms_to_dt(ms: int | float) -> datetime:
    """UTC epoch milliseconds to an aware datetime (exact to the microsecond)."""
    return EPOCH + timedelta(milliseconds=ms)


def dt_to_ms(dt: datetime | None) -> int | None:
    """An aware datetime to UTC epoch milliseconds (None stays None)."""
    return None if dt is None else (dt - EPOCH) // timedelta(milliseconds=1)


@dataclass(frozen=True)
class Occurrence:
    """One observation that an alert condition started or ended.

    ``edge`` marks occurrences that are events in themselves (a device's ``strap_open``, a
    geofence transition): repeated while the alert is active they are folded in and counted.
    Level observations (a heartbeat still saying the battery is low) change nothing while the
    alert is active. Times are UTC epoch ms; ``since_ms`` is when the condition began (device
    clock) and drives the severity rise of zone alerts.
    """

    type: str
    supervisee_id: str
    active: bool
    ts_ms: int
    zone_id: str | None = None
    device_id: str | None = None
    lat: float | None = None
    lon: float | None = None
    severity: str | None = None  # None = the type's default
    since_ms: int | None = None
    escalate_after_s: int | None = None
    edge: bool = False
    explanation: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.type not in ALERT_TYPES:
            raise ValueError(f"unknown alert type {self.type!r}")
        if self.severity is not None and self.severity not in SEVERITIES:
            raise ValueError(f"unknown severity {self.severity!r}")

    @property
    def key(self) -> tuple[str, str, str]:
        """(supervisee, type, zone or ''): at most one unresolved alert per key."""
        return (self.supervisee_id, self.type, self.zone_id or "")

    @property
    def opening_severity(self) -> str:
        return self.severity or DEFAULT_SEVERITY[self.type]


@dataclass(frozen=True)
class Change:
    """One committed-to-be alert change: its history row and the JSON that is delivered."""

    alert_id: int
    history_id: int
    action: str  # opened, updated, active, inactive, severity, escalated, acknowledged, ...
    type: str
    unit: str
    payload: Mapping[str, Any]


class AlertError(Exception):
    """Base of the errors the lifecycle functions raise; ``http_status`` suggests the API's."""

    http_status = 400


class AlertNotFound(AlertError):
    """No alert has this id."""

    http_status = 404


class InvalidTransition(AlertError):
    """The change is not allowed from the alert's current status (e.g. resolving twice)."""

    http_status = 409

    def __init__(self, alert_id: int, status: str, wanted: str) -> None:
        super().__init__(f"alert {alert_id} is {status}: cannot {wanted}")
        self.alert_id = alert_id
        self.status = status
        self.wanted = wanted


class InvalidOutcome(AlertError, ValueError):
    """A resolution outcome other than violation, justified or false_alarm."""

    http_status = 422
