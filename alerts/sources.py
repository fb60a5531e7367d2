"""Occurrences from each source: geofence transitions, heartbeats and device events (pure).

Heartbeats and events may be ``ingest.records`` objects or dicts with the contract's field
names (``device_id``, ``seq``, ``ts`` ms, ``batt`` %, ``strap``, ``case``, ``gnss``, ``type``,
``detail``); the sweeps build their occurrences in ``alerts.sweeps``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from alerts.model import Occurrence, zone_severity
from geofence.transitions import Transition

# A battery alert ends only once the level is this far above its threshold, so a reading that
# flickers between 20 % and 21 % does not end and reopen it on every heartbeat.
BATTERY_HYSTERESIS_PCT = 2.0


@dataclass(frozen=True)
class Thresholds:
    """The §3 thresholds the rules use (from settings: battery_*_pct, offline_after_s,
    gnss_lost_after_s, late_alert_after_s, timezone)."""

    battery_low_pct: float = 20.0
    battery_critical_pct: float = 5.0
    offline_after_s: int = 600
    gnss_lost_after_s: int = 900
    late_alert_after_s: int = 60  # an occurrence older than this opens a retrospective alert
    timezone: str = "Asia/Ho_Chi_Minh"  # local days: a sentence ends at its last day's end

    @classmethod
    def from_settings(cls, settings: Any) -> Thresholds:
        return cls(settings.battery_low_pct, settings.battery_critical_pct,
                   settings.offline_after_s, settings.gnss_lost_after_s,
                   settings.late_alert_after_s, settings.timezone)

    @property
    def late_after_ms(self) -> int:
        return self.late_alert_after_s * 1000


def field(obj: Any, name: str, default: Any = None) -> Any:
    """A field of a record object or a dict (``case`` may be spelt ``case_`` on objects)."""
    if isinstance(obj, dict):
        return obj.get(name, default)
    value = getattr(obj, name, _NONE)
    if value is _NONE:
        value = getattr(obj, name + "_", default)
    return value


_NONE = object()


def from_transition(t: Transition, device_id: str | None = None) -> Occurrence:
    """A geofence transition as an occurrence (an edge: the geofence already confirmed it over
    ``confirm_fixes`` fixes). Its explanation is kept for the officer."""
    explanation = {
        "source": "geofence",
        "zone_id": t.zone_id, "purpose": t.purpose,
        "distance_m": _round(t.distance_m), "acc_m": _round(t.acc_m),
        "margin_m": _round(t.margin_m), "count": t.count,
        "since_ms": t.since_ms, "escalate_after_s": t.escalate_after_s,
    }
    return Occurrence(
        type=t.alert_type, supervisee_id=t.supervisee_id, active=bool(t.active), ts_ms=int(t.ts_ms),
        zone_id=t.zone_id, device_id=device_id, lat=_float(t.lat), lon=_float(t.lon),
        severity=zone_severity(t.purpose, t.escalate_after_s) if t.active else None,
        since_ms=t.since_ms, escalate_after_s=t.escalate_after_s, edge=True,
        explanation=explanation,
    )


def from_heartbeat(hb: Any, supervisee_id: str, th: Thresholds) -> list[Occurrence]:
    """Level occurrences from a heartbeat's battery, strap, case and gnss fields."""
    ts, device_id = int(field(hb, "ts")), field(hb, "device_id")
    base = {"source": "heartbeat", "seq": field(hb, "seq")}

    def occ(alert_type: str, active: bool, **expl: Any) -> Occurrence:
        return Occurrence(alert_type, supervisee_id, active, ts, device_id=device_id,
                          explanation={**base, **expl})

    out = []
    batt = field(hb, "batt")
    if batt is not None:
        for alert_type, limit in (("battery_low", th.battery_low_pct),
                                  ("battery_critical", th.battery_critical_pct)):
            if batt <= limit:
                out.append(occ(alert_type, True, batt=batt, threshold_pct=limit))
            elif batt > limit + BATTERY_HYSTERESIS_PCT:
                out.append(occ(alert_type, False, batt=batt, threshold_pct=limit))
    for name, alert_type in (("strap", "strap_tamper"), ("case", "case_tamper")):
        state = field(hb, name)
        if state in ("open", "ok"):
            out.append(occ(alert_type, state == "open", **{name: state}))
    gnss = field(hb, "gnss")
    if gnss is not None:
        out.append(occ("gnss_jamming", gnss == "jammed", gnss=gnss))
    return out


# device event type -> (alert type, condition started, edge)
EVENT_RULES = {
    "strap_open": ("strap_tamper", True, True),
    "strap_closed": ("strap_tamper", False, True),
    "case_open": ("case_tamper", True, True),
    "case_closed": ("case_tamper", False, True),
    "battery_low": ("battery_low", True, False),
    "battery_critical": ("battery_critical", True, False),
    "gnss_jamming": ("gnss_jamming", True, False),
}


def from_event(ev: Any, supervisee_id: str) -> list[Occurrence]:
    """The occurrence a device event means, if any (power and charger events mean none)."""
    rule = EVENT_RULES.get(field(ev, "type"))
    if rule is None:
        return []
    alert_type, active, edge = rule
    explanation = {"source": "event", "event": field(ev, "type"), "seq": field(ev, "seq")}
    detail = field(ev, "detail")
    if detail:
        explanation["detail"] = detail
    return [Occurrence(alert_type, supervisee_id, active, int(field(ev, "ts")),
                       device_id=field(ev, "device_id"), edge=edge, explanation=explanation)]


def _float(v: Any) -> float | None:
    return None if v is None else float(v)


def _round(v: Any) -> float | None:
    return None if v is None else round(float(v), 1)
