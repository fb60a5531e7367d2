"""Message builders for the device protocol (contract section 1), shared by tests and simulator.

Each builder returns a plain dict with valid defaults; keyword overrides replace or add fields
(`None` values are kept, so a test can send `"lat": null`; use `drop()` to remove a field).
`encode()` turns any of them into the UTF-8 JSON bytes a device publishes.

`invalid_payloads()` gives one raw payload per rejection reason of section 1, and
`invalid_cases()` a longer list (every required field missing, mistyped, out of range, for each
message kind) for the ingest tests.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from protocol import DEVICE_TOPIC_PREFIX, DOWNLINK_KINDS, UPLINK_KINDS, device_topic
from protocol import owntracks_device_id as owntracks_device_id  # the builders' names too
from protocol import owntracks_topic as owntracks_topic

TOPIC_PREFIX = DEVICE_TOPIC_PREFIX
KINDS = UPLINK_KINDS + DOWNLINK_KINDS  # `cmd` is the downlink, the others are uplink
MAX_BATCH = 500  # fixes in one {"fixes": [...]} message
MAX_PAYLOAD_BYTES = 64 * 1024  # 64 KiB
MAX_FUTURE_MS = 5 * 60 * 1000  # a ts more than 5 min ahead of the service's clock is rejected
# ...and one more than 30 days before it (stale_ts, GIAMSAT_MAX_FIX_AGE_DAYS' default)
MAX_PAST_MS = 30 * 86_400_000
EVENT_TYPES = (
    "strap_open",
    "strap_closed",
    "case_open",
    "case_closed",
    "battery_low",
    "battery_critical",
    "power_off",
    "power_on",
    "charger_on",
    "charger_off",
    "gnss_jamming",
    "checkin",
)
FIX_SOURCES = ("gnss", "wifi", "cell")

# Default position: Bắc Ninh city centre, inside the demo province.
DEFAULT_LAT = 21.186
DEFAULT_LON = 106.076


def now_ms() -> int:
    """The wall clock as UTC epoch milliseconds (the default `ts`; pass `ts=` to be exact)."""
    return time.time_ns() // 1_000_000


def _with(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    base.update(extra)
    return base


def fix(
    seq: int = 0,
    ts: int | None = None,
    lat: float = DEFAULT_LAT,
    lon: float = DEFAULT_LON,
    acc: float = 10.0,
    **extra: Any,
) -> dict[str, Any]:
    """A fix object: `seq`, `ts` (ms, default now), `lat`, `lon` (deg), `acc` (m); extras as given.

    Optional contract fields go in `extra`: `spd` (m/s), `hdg` (deg), `alt` (m), `sats`, `src`.
    """
    ts = now_ms() if ts is None else ts
    return _with({"seq": seq, "ts": ts, "lat": lat, "lon": lon, "acc": acc}, extra)


def heartbeat(seq: int = 0, ts: int | None = None, batt: int = 80, **extra: Any) -> dict[str, Any]:
    """A heartbeat object: `seq`, `ts` (ms), `batt` (0..100 %); optional `chg`, `strap`, `case`,
    `rssi` (dBm), `gnss`, `fw` as extras."""
    ts = now_ms() if ts is None else ts
    return _with({"seq": seq, "ts": ts, "batt": batt}, extra)


def event(
    type: str = "strap_open", seq: int = 0, ts: int | None = None, **extra: Any
) -> dict[str, Any]:
    """A device event object of one of `EVENT_TYPES`; optional `detail` (object) as an extra."""
    ts = now_ms() if ts is None else ts
    return _with({"seq": seq, "ts": ts, "type": type}, extra)


def fix_batch(fixes: Iterable[Mapping[str, Any]], strict: bool = True) -> dict[str, Any]:
    """A batch message `{"fixes": [...]}`; with `strict`, more than `MAX_BATCH` is a ValueError."""
    items = [dict(f) for f in fixes]
    if strict and len(items) > MAX_BATCH:
        raise ValueError(f"a batch holds at most {MAX_BATCH} fixes, got {len(items)}")
    return {"fixes": items}


def ack(cmd_id: str, ts: int | None = None, ok: bool = True, **extra: Any) -> dict[str, Any]:
    """A device's answer to a downlink command: `{"id", "ts", "ok"}`."""
    ts = now_ms() if ts is None else ts
    return _with({"id": cmd_id, "ts": ts, "ok": ok}, extra)


def command(cmd_id: str, type: str = "locate", **extra: Any) -> dict[str, Any]:
    """A downlink command: `locate`, `set_interval` (with `fix_s`) or `notify_wearer` (`text`)."""
    return _with({"id": cmd_id, "type": type}, extra)


def drop(obj: Mapping[str, Any], *fields: str) -> dict[str, Any]:
    """A copy of a message without the given fields."""
    return {k: v for k, v in obj.items() if k not in fields}


def topic(device_id: str, kind: str) -> str:
    """The MQTT topic `em/v1/dev/{device_id}/{kind}`; kind is one of `KINDS`."""
    return device_topic(device_id, kind)


def encode(obj: Any) -> bytes:
    """UTF-8 JSON bytes of a message (orjson: compact, non-ASCII kept as UTF-8).

    orjson writes NaN and infinities as `null`; use the raw payloads of `invalid_payloads()` to
    send real NaN tokens.
    """
    return orjson.dumps(obj)


def owntracks_location(
    lat: float = DEFAULT_LAT,
    lon: float = DEFAULT_LON,
    tst: int | None = None,
    acc: int = 10,
    tid: str = "em",
    **extra: Any,
) -> dict[str, Any]:
    """An OwnTracks `location` payload; note `tst` is epoch *seconds* (OwnTracks), default now.

    Common extras: `batt` (%), `vel` (km/h), `cog` (deg), `alt` (m), `vac` (m), `conn`.
    """
    tst = now_ms() // 1000 if tst is None else tst
    base = {"_type": "location", "lat": lat, "lon": lon, "tst": tst, "acc": acc, "tid": tid}
    return _with(base, extra)




class DeviceCounter:
    """Per-device `seq` counters: each call to `next()` returns the device's next integer."""

    def __init__(self, start: int = 0) -> None:
        self._start = start
        self._next: dict[str, int] = {}

    def next(self, device_id: str) -> int:
        """The device's next `seq` (start, start + 1, ...)."""
        value = self._next.get(device_id, self._start)
        self._next[device_id] = value + 1
        return value

    def peek(self, device_id: str) -> int:
        """The `seq` that `next()` would return, without taking it."""
        return self._next.get(device_id, self._start)


# --- invalid payloads -------------------------------------------------------------------------

INVALID_REASONS = (
    "not_json",
    "not_object",
    "missing_field",
    "mistyped_field",
    "out_of_range",
    "nan",
    "infinity",
    "future_ts",
    "stale_ts",
    "oversized",
    "batch_bad_element",
)


@dataclass(frozen=True)
class InvalidCase:
    """One invalid payload: the message `kind` it is sent as, its `reason`, a `label`, the bytes.

    For `batch_bad_element`, `bad_index` is the element that must be rejected; the others are valid.
    """

    kind: str
    reason: str
    label: str
    payload: bytes
    bad_index: int | None = None


def _raw_fix(seq: int, ts: int, lat: str, lon: str) -> bytes:
    """A fix written by hand, so `lat` / `lon` can be tokens JSON has no value for (NaN)."""
    return f'{{"seq": {seq}, "ts": {ts}, "lat": {lat}, "lon": {lon}, "acc": 10.0}}'.encode()


def _oversized(seq: int, ts: int) -> bytes:
    """A valid fix padded with an unknown field to just over 64 KiB: only its size is wrong."""
    pad = "x" * (MAX_PAYLOAD_BYTES + 16)
    return encode(fix(seq=seq, ts=ts, pad=pad))


def invalid_payloads(now: int | None = None, seq: int = 1) -> dict[str, bytes]:
    """One fix-topic payload per rejection reason of contract section 1 (`INVALID_REASONS`).

    `now` (ms, default the wall clock) anchors the timestamps; `future_ts` is 6 min after it,
    `stale_ts` 31 days before it.
    A topic that names no registered device is the other reason; it needs no special payload.
    """
    ts = now_ms() if now is None else now
    good = encode(fix(seq=seq, ts=ts))
    return {
        "not_json": good[: len(good) // 2],
        "not_object": encode([fix(seq=seq, ts=ts)]),
        "missing_field": encode(drop(fix(seq=seq, ts=ts), "lat")),
        "mistyped_field": encode({**fix(seq=seq, ts=ts), "seq": str(seq)}),
        "out_of_range": encode(fix(seq=seq, ts=ts, lat=91.0)),
        "nan": _raw_fix(seq, ts, "NaN", str(DEFAULT_LON)),
        "infinity": _raw_fix(seq, ts, str(DEFAULT_LAT), "Infinity"),
        "future_ts": encode(fix(seq=seq, ts=ts + MAX_FUTURE_MS + 60_000)),
        "stale_ts": encode(fix(seq=seq, ts=ts - MAX_PAST_MS - 86_400_000)),
        "oversized": _oversized(seq, ts),
        "batch_bad_element": encode(
            _batch_with_bad(seq, ts, fix(seq=seq + 1, ts=ts + 1, lat=123.0))
        ),
    }


def _batch_with_bad(seq: int, ts: int, bad: dict[str, Any]) -> dict[str, Any]:
    """A three-fix batch whose middle element is `bad` (index 1)."""
    return fix_batch([fix(seq=seq, ts=ts), bad, fix(seq=seq + 2, ts=ts + 2)])


# Required fields per kind, with a wrong-typed value and out-of-range values for each.
_REQUIRED: dict[str, dict[str, tuple[Any, list[Any]]]] = {
    "fix": {
        "seq": ("1", [-1]),
        "ts": ("1700000000000", []),  # the contract sets no lower bound on ts
        "lat": ("21.1", [-90.001, 90.001]),
        "lon": ([106.0], [-180.001, 180.001]),
        "acc": ("5", [-0.5]),
    },
    "hb": {"seq": (1.5, [-1]), "ts": (None, []), "batt": ("80", [-1, 101])},
    "evt": {"seq": (True, [-1]), "ts": (1.7e12 + 0.5, []), "type": (3, ["teleported"])},
}


def _valid(kind: str, seq: int, ts: int) -> dict[str, Any]:
    if kind == "fix":
        return fix(seq=seq, ts=ts)
    if kind == "hb":
        return heartbeat(seq=seq, ts=ts)
    return event("strap_open", seq=seq, ts=ts)


def invalid_cases(now: int | None = None, seq: int = 1) -> list[InvalidCase]:
    """Many invalid payloads: the fix payloads of `invalid_payloads()`, then each required field of
    each kind (fix, hb, evt) missing, mistyped (a bool `seq` included) and out of range.

    `seq` is the same in every case; give each case its own device or `seq` when that matters.
    """
    ts = now_ms() if now is None else now
    cases = [
        InvalidCase("fix", r, r, p, 1 if r == "batch_bad_element" else None)
        for r, p in invalid_payloads(ts, seq).items()
    ]
    for kind, fields in _REQUIRED.items():
        cases += _field_cases(kind, fields, seq, ts)
    return cases


def _field_cases(
    kind: str, fields: dict[str, tuple[Any, list[Any]]], seq: int, ts: int
) -> list[InvalidCase]:
    out = []
    for name, (wrong_type, out_of_range) in fields.items():
        valid = _valid(kind, seq, ts)
        out.append(
            InvalidCase(kind, "missing_field", f"{kind} without {name}", encode(drop(valid, name)))
        )
        out.append(
            InvalidCase(
                kind,
                "mistyped_field",
                f"{kind} {name}={wrong_type!r}",
                encode({**valid, name: wrong_type}),
            )
        )
        for value in out_of_range:
            out.append(
                InvalidCase(
                    kind, "out_of_range", f"{kind} {name}={value!r}", encode({**valid, name: value})
                )
            )
    return out
