"""Conversions at the API's edge: epoch ms <-> datetime, rows -> GeoJSON."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

# Epoch ms bounds of every time the API accepts (queries, permits): every ms parameter is
# checked against these, in its Query(ge=MIN_MS, le=MAX_MS), and nowhere else. 1970 to
# 9999-12-30T23:59:59.999Z: a day short of Python's (and PostgreSQL's) last date, so that a
# time shown in any local time zone (case export, reports; offsets up to +14 h) is still a date
# (the end of 9999 in UTC+7 is in year 10000: OverflowError, a 500).
MIN_MS = 0
MAX_MS = 253_402_214_399_999


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def to_dt(ms: int) -> datetime:
    """UTC datetime of epoch milliseconds (exact: no float on the way)."""
    return EPOCH + ms * _MS


def to_ms(value: datetime | None) -> int | None:
    """Epoch milliseconds of an aware datetime (None stays None), exact, rounded down."""
    return None if value is None else (value - EPOCH) // _MS


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
