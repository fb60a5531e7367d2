"""Weekly schedules of local-time windows (contract §2).

A window is `{"days": [1..7], "start": "HH:MM", "end": "HH:MM"}`: ISO weekdays on which it
starts; an `end` not after `start` crosses midnight (`start == end` is 24 hours). A schedule is
compiled to a boolean mask over the 10,080 minutes of a week (Monday 00:00 local = minute 0), so
"in force" for a batch of fixes is one gather.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray

from geofence.errors import ZoneError

DEFAULT_TZ = "Asia/Ho_Chi_Minh"
MINUTES_PER_WEEK = 7 * 24 * 60
MS_PER_MINUTE = 60_000
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
# 1970-01-01 was a Thursday: minute-of-week of the epoch (Monday 00:00 = 0)
_EPOCH_MOW = 3 * 24 * 60


@dataclass(frozen=True)
class Window:
    """One weekly window: starts on each of `days` (ISO 1..7) at `start_min` local minutes."""

    days: tuple[int, ...]
    start_min: int
    end_min: int

    def to_json(self) -> dict[str, Any]:
        """The contract's JSON form of this window."""
        return {"days": list(self.days), "start": _fmt(self.start_min), "end": _fmt(self.end_min)}


def _fmt(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _parse_hhmm(value: Any, path: str, allow_24: bool) -> int:
    if allow_24 and value == "24:00":
        return 24 * 60
    if not isinstance(value, str) or not _HHMM.match(value):
        raise ZoneError(path, f"expected a local time 'HH:MM' (00:00..23:59), got {value!r}")
    return int(value[:2]) * 60 + int(value[3:])


def _parse_days(value: Any, path: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise ZoneError(path, "expected a non-empty list of ISO weekdays 1 (Monday) .. 7 (Sunday)")
    for i, d in enumerate(value):
        if isinstance(d, bool) or not isinstance(d, int) or not 1 <= d <= 7:
            raise ZoneError(f"{path}[{i}]", f"expected an ISO weekday 1..7, got {d!r}")
    if len(set(value)) != len(value):
        raise ZoneError(path, "a weekday is listed twice")
    return tuple(sorted(value))


def parse_window(obj: Any, path: str) -> Window:
    """Parse one window object, raising `ZoneError` with the path of the bad field."""
    if not isinstance(obj, dict):
        raise ZoneError(
            path, 'expected an object {"days": [...], "start": "HH:MM", "end": "HH:MM"}'
        )
    unknown = set(obj) - {"days", "start", "end"}
    if unknown:
        raise ZoneError(f"{path}.{sorted(unknown)[0]}", "unknown field in a schedule window")
    for key in ("days", "start", "end"):
        if key not in obj:
            raise ZoneError(f"{path}.{key}", "missing")
    days = _parse_days(obj["days"], f"{path}.days")
    start = _parse_hhmm(obj["start"], f"{path}.start", allow_24=False)
    end = _parse_hhmm(obj["end"], f"{path}.end", allow_24=True)
    return Window(days, start, end)


def parse_schedule(obj: Any, path: str) -> tuple[Window, ...]:
    """Parse a schedule (a non-empty list of windows); None means no schedule (always in force)."""
    if obj is None:
        return ()
    if not isinstance(obj, list) or not obj:
        raise ZoneError(path, "expected a non-empty list of windows, or null for 'always'")
    return tuple(parse_window(w, f"{path}[{i}]") for i, w in enumerate(obj))


def week_mask(windows: tuple[Window, ...]) -> NDArray[np.bool_]:
    """Boolean mask over the minutes of the week: True where a window is in force."""
    mask = np.zeros(MINUTES_PER_WEEK, dtype=bool)
    for w in windows:
        length = (w.end_min - w.start_min) % (24 * 60) or 24 * 60
        for d in w.days:
            start = (d - 1) * 24 * 60 + w.start_min
            idx = (start + np.arange(length)) % MINUTES_PER_WEEK
            mask[idx] = True
    return mask


@lru_cache(maxsize=64)
def _zone(tz: str) -> ZoneInfo:
    return ZoneInfo(tz)


def utc_offset_ms(ts_ms: NDArray[np.int64], tz: str) -> NDArray[np.int64]:
    """UTC offset of `tz` in ms at each instant (looked up once per distinct hour of the batch)."""
    hours = ts_ms // 3_600_000
    uniq, inv = np.unique(hours, return_inverse=True)
    offs = np.array([_offset_ms(int(h) * 3_600_000, tz) for h in uniq], dtype=np.int64)
    return offs[inv.reshape(-1)]


def _offset_ms(ms: int, tz: str) -> int:
    offset = datetime.fromtimestamp(ms / 1000, UTC).astimezone(_zone(tz)).utcoffset()
    return 0 if offset is None else int(offset.total_seconds() * 1000)


def minute_of_week(ts_ms: NDArray[np.int64], tz: str = DEFAULT_TZ) -> NDArray[np.intp]:
    """Local minute of the week (Monday 00:00 = 0) of each UTC epoch-ms instant."""
    ts = np.asarray(ts_ms, dtype=np.int64)
    local = ts + utc_offset_ms(ts, tz)
    return ((local // MS_PER_MINUTE + _EPOCH_MOW) % MINUTES_PER_WEEK).astype(np.intp)


def in_force(mask: NDArray[np.bool_], ts_ms: int, tz: str = DEFAULT_TZ) -> bool:
    """Whether the schedule `mask` is in force at one instant."""
    return bool(mask[minute_of_week(np.array([ts_ms], dtype=np.int64), tz)[0]])


def next_change_ms(mask: NDArray[np.bool_], after_ms: int, tz: str = DEFAULT_TZ) -> int | None:
    """First instant > `after_ms` at which the mask's value changes; None if it never does.

    Uses the UTC offset in force at `after_ms` (exact for Asia/Ho_Chi_Minh, which has no DST).
    """
    changes = np.flatnonzero(mask != np.roll(mask, 1))
    if changes.size == 0:
        return None
    local_ms = after_ms + _offset_ms(after_ms, tz)
    minute = (local_ms // MS_PER_MINUTE + _EPOCH_MOW) % MINUTES_PER_WEEK
    minute_start_ms = after_ms - (local_ms % MS_PER_MINUTE)
    ahead = (changes - minute) % MINUTES_PER_WEEK
    ahead[ahead == 0] = MINUTES_PER_WEEK
    return int(minute_start_ms + int(ahead.min()) * MS_PER_MINUTE)


MS_PER_WEEK = MINUTES_PER_WEEK * MS_PER_MINUTE


def changes_between(
    mask: NDArray[np.bool_], after_ms: int, until_ms: int, tz: str = DEFAULT_TZ
) -> NDArray[np.int64]:
    """Every instant in (`after_ms`, `until_ms`] at which the mask's value changes, ascending.

    Uses the UTC offset in force at `after_ms`, like `next_change_ms` (exact for
    Asia/Ho_Chi_Minh, which has no DST)."""
    changes = np.flatnonzero(mask != np.roll(mask, 1)).astype(np.int64)
    if changes.size == 0 or until_ms <= after_ms:
        return np.zeros(0, dtype=np.int64)
    offset = _offset_ms(after_ms, tz)
    local = after_ms + offset
    # UTC instant of the Monday 00:00 local that starts the week holding `after_ms`
    week0 = local - ((local // MS_PER_MINUTE + _EPOCH_MOW) % MINUTES_PER_WEEK) * MS_PER_MINUTE
    week0 -= local % MS_PER_MINUTE + offset
    weeks = np.arange((until_ms - week0) // MS_PER_WEEK + 1, dtype=np.int64)
    at = (week0 + weeks[:, None] * MS_PER_WEEK + changes[None, :] * MS_PER_MINUTE).ravel()
    return at[(at > after_ms) & (at <= until_ms)]
