"""The alert JSON of contract §3, as published on ``em/v1/alerts/{unit_code}``, sent to webhooks
and shown by the API.

Built from an ``alerts`` row (a dict, as ``RETURNING *`` gives it). Times are UTC epoch ms.
``history_id`` and ``change`` name the change this message announces: a receiver orders
messages of one alert by ``history_id`` and may drop one it has seen (the webhooks'
``Idempotency-Key`` is per delivery, ``history_id`` per change).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from alerts.model import dt_to_ms

# Fields every message carries (contract §3), then the extensions.
REQUIRED_FIELDS = (
    "id", "type", "severity", "status", "active", "escalated", "supervisee_id", "device_id",
    "unit", "zone_id", "lat", "lon", "opened_at", "updated_at", "message_vi", "message_en",
)


def alert_json(row: Mapping[str, Any], history_id: int | None = None,
               change: str | None = None, parent_unit: str | None = None) -> dict[str, Any]:
    """The JSON object of one alert as of ``row``; ``history_id``/``change`` when announcing a
    change; ``parent_unit`` (the province unit it is routed to once escalated) when known."""
    return {
        "id": row["id"],
        "type": row["type"],
        "severity": row["severity"],
        "status": row["status"],
        "active": row["active"],
        "escalated": row["escalated"],
        "supervisee_id": row["supervisee_id"],
        "device_id": row["device_id"],
        "unit": row["unit"],
        "zone_id": row["zone_id"],
        "lat": row["lat"],
        "lon": row["lon"],
        "opened_at": dt_to_ms(row["opened_at"]),
        "updated_at": dt_to_ms(row["updated_at"]),
        # an alert raised from late fixes: when the condition began (the fixes' times) beside
        # when the service raised it; occurred_at is null for alerts raised live
        "occurred_at": dt_to_ms(row.get("occurred_at")),
        "raised_at": dt_to_ms(row["opened_at"]),
        "message_vi": row["message_vi"],
        "message_en": row["message_en"],
        # extensions
        "parent_unit": parent_unit if row["escalated"] else None,
        "condition_since": dt_to_ms(row["condition_since"]),
        "occurrences": row["occurrences"],
        "explanation": row["explanation"],
        "acknowledged_at": dt_to_ms(row["acknowledged_at"]),
        "acknowledged_by": row["acknowledged_by"],
        "resolved_at": dt_to_ms(row["resolved_at"]),
        "resolved_by": row["resolved_by"],
        "outcome": row["outcome"],
        "history_id": history_id,
        "change": change,
    }


def encode(obj: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON bytes (Vietnamese kept as UTF-8, not escaped)."""
    return orjson.dumps(obj)
