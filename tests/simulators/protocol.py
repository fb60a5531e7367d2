"""An independent reading of contract §1 for the simulator's tests: what a valid message is.

Written from the contract, not from the ingest code, so the simulator is checked against the
contract itself. Each check returns a list of problems (empty when valid).
"""

from __future__ import annotations

import math
from typing import Any

from simulators.messages import (
    EVENT_TYPES,
    MAX_BATCH,
    MAX_FUTURE_MS,
    MAX_PAST_MS,
    MAX_PAYLOAD_BYTES,
)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return (isinstance(v, int | float) and not isinstance(v, bool)) and math.isfinite(v)


def _common(obj: Any, now: int) -> list[str]:
    if not isinstance(obj, dict):
        return ["not an object"]
    errs = []
    if not _is_int(obj.get("seq")) or obj["seq"] < 0:
        errs.append(f"seq {obj.get('seq')!r}")
    if not _is_int(obj.get("ts")):
        errs.append(f"ts {obj.get('ts')!r}")
    elif obj["ts"] > now + MAX_FUTURE_MS:
        errs.append("ts in the future")
    elif obj["ts"] < now - MAX_PAST_MS:
        errs.append("ts too far in the past")
    return errs


def fix_errors(obj: Any, now: int) -> list[str]:
    """Problems of one fix object."""
    errs = _common(obj, now)
    if errs and errs[0] == "not an object":
        return errs
    for name, lo, hi in (("lat", -90, 90), ("lon", -180, 180), ("acc", 0, math.inf)):
        v = obj.get(name)
        if not _is_num(v) or not lo <= v <= hi:
            errs.append(f"{name} {v!r}")
    for name in ("spd", "hdg", "alt"):
        if name in obj and not _is_num(obj[name]):
            errs.append(f"{name} {obj[name]!r}")
    if "spd" in obj and _is_num(obj["spd"]) and obj["spd"] < 0:
        errs.append("spd < 0")
    if "hdg" in obj and _is_num(obj["hdg"]) and not 0 <= obj["hdg"] < 360:
        errs.append("hdg range")
    if "sats" in obj and (not _is_int(obj["sats"]) or obj["sats"] < 0):
        errs.append("sats")
    if obj.get("src", "gnss") not in ("gnss", "wifi", "cell"):
        errs.append("src")
    return errs


def heartbeat_errors(obj: Any, now: int) -> list[str]:
    """Problems of one heartbeat object."""
    errs = _common(obj, now)
    if errs and errs[0] == "not an object":
        return errs
    if not _is_num(obj.get("batt")) or not 0 <= obj["batt"] <= 100:
        errs.append(f"batt {obj.get('batt')!r}")
    enums = {"strap": ("ok", "open"), "case": ("ok", "open"), "gnss": ("fix", "nofix", "jammed")}
    errs += [
        f"{k} {obj[k]!r}" for k, allowed in enums.items() if k in obj and obj[k] not in allowed
    ]
    if "chg" in obj and not isinstance(obj["chg"], bool):
        errs.append("chg")
    if "rssi" in obj and not _is_num(obj["rssi"]):
        errs.append("rssi")
    if "fw" in obj and not isinstance(obj["fw"], str):
        errs.append("fw")
    return errs


def event_errors(obj: Any, now: int) -> list[str]:
    """Problems of one event object."""
    errs = _common(obj, now)
    if errs and errs[0] == "not an object":
        return errs
    if obj.get("type") not in EVENT_TYPES:
        errs.append(f"type {obj.get('type')!r}")
    if "detail" in obj and not isinstance(obj["detail"], dict):
        errs.append("detail")
    return errs


def fix_message_errors(obj: Any, now: int) -> list[str]:
    """Problems of a fix-topic message: one fix or a batch of at most 500."""
    if isinstance(obj, dict) and "fixes" in obj:
        fixes = obj["fixes"]
        if not isinstance(fixes, list) or not 1 <= len(fixes) <= MAX_BATCH:
            return ["batch size"]
        return [e for f in fixes for e in fix_errors(f, now)]
    return fix_errors(obj, now)


CHECKS = {"fix": fix_message_errors, "hb": heartbeat_errors, "evt": event_errors}


def payload_errors(kind: str, payload: bytes, now: int) -> list[str]:
    """Problems of a raw payload sent on a topic of this kind."""
    import orjson

    if len(payload) > MAX_PAYLOAD_BYTES:
        return ["oversized"]
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return ["not JSON"]
    return CHECKS[kind](obj, now)
