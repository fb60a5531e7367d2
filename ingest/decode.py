"""Decoders: MQTT message bytes -> `Fix | Heartbeat | Event | CommandAck | Rejected` (§1).

Pure and total: no I/O, no clock (the caller passes `now_ms`, the time the message was taken
from the broker), and every input, however malformed, yields records, never an exception.

Two entry points with the same meaning:
- `decode(topic, payload, ...)`: one message -> a list of records (a batch gives one per
  element). The scalar reference.
- `decode_messages(items, ...)`: a whole queue batch; fixes come out as numpy columns, validated
  column by column, with the scalar checks giving the reason for any row they flag. The tests
  check that both agree.

Decisions that the contract leaves open (documented here, the reference):
- Order of checks: topic (`bad_topic`), size (`too_large`), registry (`unknown_device`), JSON
  (`not_json`, `not_object`), then each field in table order (`missing_field`, `bad_type`,
  `out_of_range`, `future_ts`, `stale_ts`). The first problem found is the reason.
- JSON `null` for an optional field means absent; for a required field it is `bad_type`.
  A bool is not a number; a number written with a fraction or exponent (`5.0`, `1e3`) is not an
  integer (`bad_type`), except one too large for int64, which is `out_of_range`.
- NaN / Infinity are not JSON and orjson refuses them: such a payload is re-read leniently to
  name the field (`out_of_range`, "lat is NaN"); if the bad token sits only in an ignored field,
  the message is `not_json`. The valid elements of such a batch are still stored.
- Ranges the contract does not give (generous, to keep nonsense and values PostgreSQL cannot
  hold out): `seq` 0..2^63-1, `ts` >= 0 (1970) and at most `max_future_ms` ahead, `acc`
  0..1e6 m, `spd` 0..1e7 m/s, `hdg` 0..360, `alt` +-1e7 m, `sats` 0..1000, `rssi` +-300 dBm,
  `fw` at most 64 characters; no NUL character in stored strings or `detail` (PostgreSQL
  refuses it).
- A fix, heartbeat or event whose `ts` lies more than `max_past_ms` (setting
  `max_fix_age_days`, default 30 days) before the message was received is `stale_ts` (a
  compatible extension of the contract's reject list, issue 16): a device whose clock is wrong
  (1970 after a reset) must not have its evidence filed under a time that a time-partitioned
  table or its retention treats as long past. The dead letter keeps the raw payload. Devices
  buffer while out of coverage: the bound is far above any buffer. A command answer's `ts` is
  not bounded in the past (it is no telemetry).
- An empty batch `{"fixes": []}` stores nothing and rejects nothing.
- Device `ack` messages (answers to downlink commands, `{"id": str, "ts": int, "ok": bool}`)
  become `CommandAck`s; the store records them in `device_commands` in the batch's transaction
  (so an answer is acknowledged only once recorded); one naming no command sent to that device
  is dead-lettered as `unknown_command`, a repeated answer is a duplicate.
- OwnTracks (`owntracks/{user}/{device}` -> device `{user}-{device}`): `_type: location` gives a
  fix with `ts = tst * 1000` and `seq = tst` (seconds): a redelivery or repeat of the same
  location has the same `(seq, ts)` and is stored once, and it needs no counter kept across
  restarts. `acc` is required (a fix without accuracy cannot be decided); `vel` km/h -> `spd`
  m/s, `cog` -> `hdg`. Other `_type`s (`lwt`, `transition`, ...) are `unsupported`.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import repeat
from typing import Any

import numpy as np
import orjson

from ingest.records import (
    EVENT_TYPES,
    SOURCES,
    CommandAck,
    Event,
    Fix,
    FixColumns,
    Heartbeat,
    Received,
    Record,
    Rejected,
)
from protocol import parse_uplink_topic

INT64_MAX = 2**63 - 1
DAY_MS = 86_400_000
_MISSING = object()
Problem = tuple[str, str]  # (reason, detail)
Registered = Callable[[str], bool] | Container[str]


@dataclass(frozen=True)
class Limits:
    """The contract's limits, from settings: bytes, ms, fixes."""

    max_payload_bytes: int = 65536
    max_future_ms: int = 300_000
    max_batch_fixes: int = 500
    max_past_ms: int = 30 * DAY_MS

    @classmethod
    def from_settings(cls, settings: Any) -> Limits:
        return cls(settings.max_payload_bytes, settings.max_future_ms, settings.max_batch_fixes,
                   int(settings.max_fix_age_days * DAY_MS))


# --- field tables ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Spec:
    """One field of a message: JSON type (`int`, `num`, `bool`, `str`, `enum`, `obj`), whether
    it is required, and its range (inclusive), choices or longest length."""

    name: str
    type: str
    required: bool = False
    lo: float = -math.inf
    hi: float = math.inf
    choices: frozenset[str] = frozenset()
    maxlen: int = 0


def _int(name: str, lo: float = 0, hi: float = INT64_MAX, required: bool = False) -> Spec:
    return Spec(name, "int", required, lo, hi)


def _num(name: str, lo: float, hi: float, required: bool = False) -> Spec:
    return Spec(name, "num", required, lo, hi)


def _enum(name: str, choices: Sequence[str], required: bool = False) -> Spec:
    return Spec(name, "enum", required, choices=frozenset(choices))


SEQ, TS = _int("seq", required=True), _int("ts", required=True)
FIX_SPECS = (
    SEQ, TS, _num("lat", -90, 90, True), _num("lon", -180, 180, True), _num("acc", 0, 1e6, True),
    _num("spd", 0, 1e7), _num("hdg", 0, 360), _num("alt", -1e7, 1e7), _int("sats", 0, 1000),
    _enum("src", SOURCES),
)
HEARTBEAT_SPECS = (
    SEQ, TS, _num("batt", 0, 100, True), Spec("chg", "bool"), _enum("strap", ("ok", "open")),
    _enum("case", ("ok", "open")), _num("rssi", -300, 300), _enum("gnss", ("fix", "nofix", "jammed")),
    Spec("fw", "str", maxlen=64),
)
EVENT_SPECS = (SEQ, TS, _enum("type", sorted(EVENT_TYPES), True), Spec("detail", "obj"))
ACK_SPECS = (Spec("id", "str", True, maxlen=128), TS, Spec("ok", "bool", True))
OWNTRACKS_SPECS = (
    _num("lat", -90, 90, True), _num("lon", -180, 180, True),
    _int("tst", 0, INT64_MAX // 1000, True), _num("acc", 0, 1e6, True), _num("vel", 0, 1e7),
    _num("cog", 0, 360), _num("alt", -1e7, 1e7),
)

_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,), "num": (int, float), "bool": (bool,), "str": (str,), "enum": (str,),
    "obj": (dict,),
}
_EXPECTED = {"int": "an integer", "num": "a number", "bool": "true or false", "str": "a string",
             "enum": "a string", "obj": "an object"}


def json_type(value: Any) -> str:
    """What a decoded JSON value is, in words, for a rejection's detail."""
    names = {bool: "a boolean", int: "an integer", float: "a decimal number", str: "a string",
             list: "an array", dict: "an object", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_field(obj: dict[str, Any], spec: Spec) -> Problem | None:
    """The problem with one field of a message object, or None."""
    value = obj.get(spec.name, _MISSING)
    if value is _MISSING or value is None:
        if not spec.required:
            return None
        if value is _MISSING:
            return "missing_field", f"{spec.name} is missing"
        return "bad_type", f"{spec.name} is null, expected {_EXPECTED[spec.type]}"
    if type(value) not in _TYPES[spec.type]:
        if spec.type == "int" and type(value) is float and value.is_integer() \
                and abs(value) > INT64_MAX:  # orjson reads integers beyond 64 bits as floats
            return "out_of_range", f"{spec.name} = {value:.0f} does not fit in 64 bits"
        return "bad_type", f"{spec.name} is {json_type(value)}, expected {_EXPECTED[spec.type]}"
    return _check_value(spec, value)


def _check_value(spec: Spec, value: Any) -> Problem | None:
    if spec.type in ("int", "num"):
        if value != value:
            return "out_of_range", f"{spec.name} is NaN"
        if not spec.lo <= value <= spec.hi:
            if value in (math.inf, -math.inf):
                return "out_of_range", f"{spec.name} is {'-' if value < 0 else ''}Infinity"
            return "out_of_range", f"{spec.name} = {_show(value)} is outside [{spec.lo:g}, {spec.hi:g}]"
    elif spec.type == "enum" and value not in spec.choices:
        return "out_of_range", f"{spec.name} = {_show(value)} is not one of {sorted(spec.choices)}"
    elif spec.type == "str" and len(value) > spec.maxlen:
        return "out_of_range", f"{spec.name} is {len(value)} characters long, at most {spec.maxlen}"
    elif spec.type == "str" and "\x00" in value:
        return "out_of_range", f"{spec.name} holds a NUL character"
    elif spec.type == "obj":
        return _check_json_object(spec.name, value)
    return None


def _check_json_object(name: str, value: dict[str, Any]) -> Problem | None:
    """A free-form object stored as jsonb: PostgreSQL refuses \\u0000 in it."""
    try:
        text = orjson.dumps(value)
    except orjson.JSONEncodeError as exc:
        return "out_of_range", f"{name} holds a value JSON cannot carry ({exc})"
    if b"\\u0000" in text:
        return "out_of_range", f"{name} holds a NUL character"
    return None


def check_object(obj: Any, specs: Sequence[Spec], now_ms: int, limits: Limits,
                 what: str = "payload", past: bool = True) -> Problem | None:
    """The first problem of a message object (fields in table order), or None. `past`: whether
    a `ts` too far in the past is one (telemetry; not a command answer)."""
    if type(obj) is not dict:
        return "not_object", f"{what} is {json_type(obj)}, expected an object"
    for spec in specs:
        problem = check_field(obj, spec)
        if problem is not None:
            return problem
        if spec is TS:
            problem = check_ts(obj["ts"], now_ms, limits, past=past)
            if problem is not None:
                return problem
    return None


def check_ts(ts: int, now_ms: int, limits: Limits, name: str = "ts",
             past: bool = True) -> Problem | None:
    """`future_ts` (or with `past`, `stale_ts`) for a message time (ms) too far from its
    receipt (`now_ms`)."""
    if ts > now_ms + limits.max_future_ms:
        return "future_ts", (f"{name} is {ts - now_ms} ms ahead of the service clock "
                             f"(at most {limits.max_future_ms})")
    if past and ts < now_ms - limits.max_past_ms:
        return "stale_ts", (f"{name} is {now_ms - ts} ms before the message was received "
                            f"(at most {limits.max_past_ms}, {limits.max_past_ms / DAY_MS:g} days)")
    return None


# --- topics and payloads --------------------------------------------------------------------


# `(kind, device_id)` of a topic, or the reason it is a bad topic (a str); the protocol's rule,
# cached: a fleet's topics repeat in every batch.
parse_topic = lru_cache(maxsize=1 << 16)(parse_uplink_topic)


def load_json(payload: bytes) -> tuple[Any, str | None]:
    """`(value, None)` for strict JSON; `(lenient value, orjson's complaint)` when only Python's
    lenient reader (NaN, Infinity, huge numbers) can read it; `(_MISSING, complaint)` when
    neither can."""
    try:
        return orjson.loads(payload), None
    except orjson.JSONDecodeError as exc:
        complaint = str(exc)
    try:
        # UTF-8 only (contract §1): json.loads on bytes would also guess UTF-16/32
        return json.loads(payload.decode("utf-8")), complaint
    except (ValueError, RecursionError):
        return _MISSING, complaint


def membership(registered: Registered) -> Callable[[str], bool]:
    """A set, dict or registry snapshot (anything with `in`) or a predicate, as a predicate."""
    contains = getattr(registered, "__contains__", None)
    return contains if contains is not None else registered  # type: ignore[return-value]


# --- the scalar decoders --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    """One message being decoded: where it came from and when (`now_ms`, UTC ms)."""

    topic: str
    payload: bytes
    device_id: str | None
    now_ms: int

    def reject(self, problem: Problem, element: int | None = None,
               payload: bytes | None = None) -> Rejected:
        reason, detail = problem
        if element is not None:
            detail = f"fixes[{element}]: {detail}"
        return Rejected(reason, detail, element, self.device_id, self.topic,
                        self.payload if payload is None else payload, self.now_ms)


def _fix(obj: dict[str, Any], device_id: str, now_ms: int) -> Fix:
    g = obj.get
    return Fix(device_id, obj["seq"], obj["ts"], float(obj["lat"]), float(obj["lon"]),
               float(obj["acc"]), _opt_float(g("spd")), _opt_float(g("hdg")),
               _opt_float(g("alt")), g("sats"), g("src") or "gnss", now_ms)


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _element_payload(element: Any) -> bytes:
    try:
        return orjson.dumps(element)
    except orjson.JSONEncodeError:
        return repr(element).encode()


def decode_fix_element(obj: Any, msg: Message, limits: Limits, element: int | None) -> Record:
    """One fix object (alone, or element `element` of a batch)."""
    what = "payload" if element is None else "element"
    problem = check_object(obj, FIX_SPECS, msg.now_ms, limits, what)
    if problem is None:
        return _fix(obj, msg.device_id or "", msg.now_ms)
    payload = None if element is None else _element_payload(obj)
    return msg.reject(problem, element, payload)


def _decode_fix(obj: Any, msg: Message, limits: Limits) -> list[Record]:
    if type(obj) is not dict:
        return [msg.reject(("not_object", f"payload is {json_type(obj)}, expected an object"))]
    if "fixes" not in obj:
        return [decode_fix_element(obj, msg, limits, None)]
    items = obj["fixes"]
    if type(items) is not list:
        return [msg.reject(("bad_type", f"fixes is {json_type(items)}, expected an array"))]
    if len(items) > limits.max_batch_fixes:
        return [msg.reject(("too_many_fixes",
                            f"{len(items)} fixes in one message, at most {limits.max_batch_fixes}"))]
    return [decode_fix_element(item, msg, limits, i) for i, item in enumerate(items)]


def _decode_heartbeat(obj: Any, msg: Message, limits: Limits) -> list[Record]:
    problem = check_object(obj, HEARTBEAT_SPECS, msg.now_ms, limits)
    if problem is not None:
        return [msg.reject(problem)]
    g = obj.get
    return [Heartbeat(msg.device_id or "", obj["seq"], obj["ts"], float(obj["batt"]), g("chg"),
                      g("strap"), g("case"), _opt_float(g("rssi")), g("gnss"), g("fw"),
                      msg.now_ms)]


def _decode_event(obj: Any, msg: Message, limits: Limits) -> list[Record]:
    problem = check_object(obj, EVENT_SPECS, msg.now_ms, limits)
    if problem is not None:
        return [msg.reject(problem)]
    return [Event(msg.device_id or "", obj["seq"], obj["ts"], obj["type"], obj.get("detail"),
                  msg.now_ms)]


def _decode_ack(obj: Any, msg: Message, limits: Limits) -> list[Record]:
    # A command answer is no telemetry (not kept by `ts`): a device clock far behind does not
    # make it stale.
    problem = check_object(obj, ACK_SPECS, msg.now_ms, limits, past=False)
    if problem is not None:
        return [msg.reject(problem)]
    return [CommandAck(msg.device_id or "", obj["id"], obj["ts"], obj["ok"], msg.now_ms,
                       msg.topic, msg.payload)]


def _decode_owntracks(obj: Any, msg: Message, limits: Limits) -> list[Record]:
    if type(obj) is dict and obj.get("_type") != "location":
        kind = obj.get("_type", _MISSING)
        if kind is _MISSING:
            return [msg.reject(("missing_field", "_type is missing"))]
        return [msg.reject(("unsupported", f"OwnTracks _type {_show(kind)} is not stored"))]
    problem = check_object(obj, OWNTRACKS_SPECS, msg.now_ms, limits)
    if problem is None:
        problem = check_ts(obj["tst"] * 1000, msg.now_ms, limits, "tst")
    if problem is not None:
        return [msg.reject(problem)]
    g = obj.get
    vel = g("vel")
    return [Fix(msg.device_id or "", obj["tst"], obj["tst"] * 1000, float(obj["lat"]),
                float(obj["lon"]), float(obj["acc"]), None if vel is None else vel / 3.6,
                _opt_float(g("cog")), _opt_float(g("alt")), None, "gnss", msg.now_ms)]


DECODERS: dict[str, Callable[[Any, Message, Limits], list[Record]]] = {
    "fix": _decode_fix,
    "hb": _decode_heartbeat,
    "evt": _decode_event,
    "ack": _decode_ack,
    "owntracks": _decode_owntracks,
}


def decode(topic: str, payload: bytes, *, now_ms: int, registered: Registered,
           limits: Limits = Limits()) -> list[Record]:
    """Decode one MQTT message into records (one per element for a fix batch).

    `now_ms`: when the message was received (UTC ms), the reference for `future_ts`.
    `registered`: the registered device ids (a set, dict, snapshot) or a predicate.
    """
    route = parse_topic(topic)
    if isinstance(route, str):
        return [Message(topic, payload, None, now_ms).reject(("bad_topic", route))]
    kind, device_id = route
    return decode_routed(kind, Message(topic, payload, device_id, now_ms),
                         membership(registered), limits)


def decode_routed(kind: str, msg: Message, is_registered: Callable[[str], bool],
                  limits: Limits) -> list[Record]:
    """Decode a message whose topic is already parsed into `kind` and `msg.device_id`."""
    if len(msg.payload) > limits.max_payload_bytes:
        return [msg.reject(("too_large",
                            f"payload of {len(msg.payload)} bytes, at most {limits.max_payload_bytes}"))]
    if not is_registered(msg.device_id or ""):
        return [msg.reject(("unknown_device", f"device {msg.device_id} is not registered"))]
    obj, complaint = load_json(msg.payload)
    if obj is _MISSING:
        return [msg.reject(("not_json", complaint or "not JSON"))]
    records = DECODERS[kind](obj, msg, limits)
    if complaint is not None and not any(isinstance(r, Rejected) for r in records):
        # Readable only leniently, with the odd token in a field we ignore.
        return [msg.reject(("not_json", f"{complaint} (NaN, Infinity and integers beyond 64 bits "
                                        "are not accepted, even in an ignored field)"))]
    return records


# --- the batch (columnar) decoder -----------------------------------------------------------


@dataclass
class Decoded:
    """A queue batch, decoded: fix columns, heartbeats, events, command answers, rejections, and
    the number of messages received by kind (`KINDS`, plus `other` for a bad topic)."""

    fixes: FixColumns = field(default_factory=FixColumns)
    heartbeats: list[Heartbeat] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    acks: list[CommandAck] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    received: Counter[str] = field(default_factory=Counter)

    def add(self, records: list[Record], scalar_fixes: list[Fix]) -> None:
        for r in records:
            if isinstance(r, Fix):
                scalar_fixes.append(r)
            elif isinstance(r, Heartbeat):
                self.heartbeats.append(r)
            elif isinstance(r, Event):
                self.events.append(r)
            elif isinstance(r, CommandAck):
                self.acks.append(r)
            else:
                self.rejected.append(r)


@dataclass
class _PendingFixes:
    """Fix objects waiting for column-wise validation, with the message each came from."""

    objs: list[Any] = field(default_factory=list)
    msg: list[int] = field(default_factory=list)       # index of the message in the batch
    element: list[int] = field(default_factory=list)   # index in its batch, -1 for a single fix

    def add_single(self, obj: dict[str, Any], i: int) -> None:
        self.objs.append(obj)
        self.msg.append(i)
        self.element.append(-1)

    def add_batch(self, items: list[Any], i: int) -> None:
        self.objs += items
        self.msg += [i] * len(items)
        self.element += range(len(items))


def decode_messages(items: Sequence[Received], *, registered: Registered,
                    limits: Limits = Limits()) -> Decoded:
    """Decode a batch of queue items (`Received`: topic, payload, received_ms, ...).

    Same records as `decode()` on each item with `now_ms = received_ms`, but fixes come out as
    `FixColumns` (the column-validated ones in message order, then the others, e.g. OwnTracks)
    and the common fix messages are validated column-wise.
    """
    is_registered = membership(registered)
    out, pending, scalar_fixes = Decoded(), _PendingFixes(), list[Fix]()
    devices: list[str | None] = []
    for i, item in enumerate(items):
        topic, payload, received_ms = item.topic, item.payload, item.received_ms
        route = parse_topic(topic)
        if isinstance(route, str):
            out.received["other"] += 1
            out.rejected.append(Message(topic, payload, None, received_ms).reject(("bad_topic", route)))
            devices.append(None)
            continue
        kind, device_id = route
        out.received[kind] += 1
        devices.append(device_id)
        if kind == "fix" and _queue_fix(payload, device_id, i, pending, is_registered, limits):
            continue
        msg = Message(topic, payload, device_id, received_ms)
        out.add(decode_routed(kind, msg, is_registered, limits), scalar_fixes)
    columns = _validate_pending(pending, items, devices, limits, out, scalar_fixes)
    out.fixes = FixColumns.concat([columns, FixColumns.from_fixes(scalar_fixes)])
    return out


def _queue_fix(payload: bytes, device_id: str, i: int, pending: _PendingFixes,
               is_registered: Callable[[str], bool], limits: Limits) -> bool:
    """Queue the fixes of a plain fix message for column-wise validation; False leaves the
    message to the scalar decoder (anything unusual: too large, unknown device, not JSON...)."""
    if len(payload) > limits.max_payload_bytes or not is_registered(device_id):
        return False
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return False
    if type(obj) is not dict:
        return False
    items = obj.get("fixes", _MISSING)
    if items is _MISSING:
        pending.add_single(obj, i)
        return True
    if type(items) is list and len(items) <= limits.max_batch_fixes:
        pending.add_batch(items, i)
        return True
    return False


def _validate_pending(pending: _PendingFixes, items: Sequence[Received],
                      devices: list[str | None], limits: Limits, out: Decoded,
                      scalar_fixes: list[Fix]) -> FixColumns:
    """Column-wise validation of the queued fixes; flagged rows get the scalar check's reason."""
    if not pending.objs:
        return FixColumns()
    msg_idx = np.array(pending.msg, dtype=np.intp)
    received = np.array([it.received_ms for it in items], dtype=np.int64)[msg_idx]
    cols, bad = fix_columns(pending.objs, received, limits)
    for row in np.flatnonzero(bad).tolist():
        i, element = pending.msg[row], pending.element[row]
        msg = Message(items[i].topic, items[i].payload, devices[i], int(received[row]))
        record = decode_fix_element(pending.objs[row], msg, limits, None if element < 0 else element)
        out.add([record], scalar_fixes)
    good = ~bad
    dev = np.array(devices, dtype=object)[msg_idx[good]]
    seq, ts, lat, lon, acc, spd, hdg, alt, sats, src = (c[good] for c in cols)
    return FixColumns(dev, seq, ts, lat, lon, acc, spd, hdg, alt, sats, src, received[good])


def fix_columns(objs: list[Any], now_ms: np.ndarray, limits: Limits
                ) -> tuple[list[np.ndarray], np.ndarray]:
    """Validate fix objects column by column.

    Returns the columns (seq, ts, lat, lon, acc, spd, hdg, alt, sats, src, as in `FixColumns`)
    and a boolean array of the rows with any problem; it flags every row the scalar check would
    reject (and may flag more: the scalar check is the authority on flagged rows).
    """
    n = len(objs)
    bad = np.zeros(n, dtype=bool)
    if set(map(type, objs)) != {dict}:
        bad[[i for i, o in enumerate(objs) if type(o) is not dict]] = True
        objs = [o if type(o) is dict else {} for o in objs]

    def get(name: str) -> list[Any]:
        return list(map(dict.get, objs, repeat(name, n)))

    seq = _int_column(get("seq"), 0, INT64_MAX, bad)
    ts = _int_column(get("ts"), 0, INT64_MAX, bad)
    bad |= (ts > now_ms + limits.max_future_ms) | (ts < now_ms - limits.max_past_ms)
    floats = [_num_column(get(s.name), s.lo, s.hi, s.required, bad) for s in FIX_SPECS[2:8]]
    sats = _num_column(get("sats"), 0, 1000, False, bad, (int, type(None)))
    src = _src_column(get("src"), bad)
    sats16 = np.nan_to_num(sats, nan=-1).clip(-1, 1000).astype(np.int16)
    return [seq, ts, *floats, sats16, src], bad


def _flag_types(values: list[Any], ok: tuple[type, ...], bad: np.ndarray, fill: Any) -> list[Any]:
    """Flag the rows whose value has a type not in `ok`; return the values with those filled."""
    if set(map(type, values)).issubset(ok):
        return values
    wrong = [i for i, v in enumerate(values) if type(v) not in ok]
    bad[wrong] = True
    return [fill if type(v) not in ok else v for v in values]


def _int_column(values: list[Any], lo: int, hi: int, bad: np.ndarray) -> np.ndarray:
    values = _flag_types(values, (int,), bad, 0)
    try:
        arr = np.array(values, dtype=np.int64)
    except OverflowError:
        values = [v if -INT64_MAX - 1 <= v <= INT64_MAX else -1 for v in values]
        arr = np.array(values, dtype=np.int64)  # -1: out of range for seq and ts alike
    bad |= (arr < lo) | (arr > hi)
    return arr


_NUMBER = (int, float)
_OPTIONAL_NUMBER = (int, float, type(None))


def _num_column(values: list[Any], lo: float, hi: float, required: bool, bad: np.ndarray,
                ok: tuple[type, ...] | None = None) -> np.ndarray:
    """Floats; absent (None) -> NaN for an optional field."""
    ok = ok or (_NUMBER if required else _OPTIONAL_NUMBER)
    values = _flag_types(values, ok, bad, 0.0 if required else None)
    arr = np.array(values, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        bad |= (arr < lo) | (arr > hi)
    if required:
        bad |= np.isnan(arr)
    return arr


_SRC_CODES: dict[Any, int] = {None: 0, **{s: i for i, s in enumerate(SOURCES)}}


def _src_column(values: list[Any], bad: np.ndarray) -> np.ndarray:
    values = _flag_types(values, (str, type(None)), bad, None)
    arr = np.fromiter(map(_SRC_CODES.get, values, repeat(-1)), np.int16, len(values))
    bad |= arr < 0
    return np.maximum(arr, 0)
