"""Conversions at the API's edge: epoch ms <-> datetime, rows -> GeoJSON."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

# Epoch ms bounds accepted in queries: 1970 to the end of 9999 (PostgreSQL's and Python's range).
MIN_MS = 0
MAX_MS = 253_402_300_799_999


def to_dt(ms: int) -> datetime:
    """UTC datetime of epoch milliseconds."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def to_ms(value: datetime | None) -> int | None:
    """Epoch milliseconds of a datetime (None stays None)."""
    return None if value is None else int(value.timestamp() * 1000)


def feature(geometry: dict | None, properties: dict[str, Any], id: Any = None) -> dict:
    """A GeoJSON Feature (RFC 7946)."""
    out: dict[str, Any] = {"type": "Feature", "geometry": geometry, "properties": properties}
    if id is not None:
        out["id"] = id
    return out


def collection(features: list[dict], **foreign: Any) -> dict:
    """A GeoJSON FeatureCollection; ``foreign`` members (RFC 7946 §6.1) ride along."""
    return {"type": "FeatureCollection", "features": features, **foreign}


def point(lon: float, lat: float) -> dict:
    return {"type": "Point", "coordinates": [lon, lat]}
