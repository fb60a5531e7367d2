"""A seeded mutational fuzzer of device messages whose every payload is invalid by contract §1.

Valid messages come from `simulators.messages`; each case then gets one or more defects that
the contract names as grounds for rejection, chosen so that no case can be valid by chance:
broken bytes (truncated, invalid UTF-8, UTF-16/32, trailing data, garbage), not an object, a required field
missing, null or mistyped, a value out of range, NaN / infinities, `ts` far in the future, a
payload over 64 KiB, a topic naming no registered device (or no valid device id), a batch of
more than 500 fixes, and batches whose every element is bad.

Each `Case` knows how many dead letters it must produce (`rows`: one per message, one per bad
element of a batch) and, per row, the reasons that fit its defect (`reasons`), so a drill can
assert exact counts. Where the contract leaves the reading open, the corpus avoids the case
(NaN tokens appear in a batch only when it has one element: "not JSON" for the whole message and
"one bad element" then agree on one row).

`contract_verdict()` is an independent reading of §1 (no service code) that tests use to check
the corpus: every case must come out as `(0 valid, rows invalid)`.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from protocol import DEVICE_ID_RE
from simulators import messages as sim

MAX_PAYLOAD = sim.MAX_PAYLOAD_BYTES
MAX_FUTURE_MS = sim.MAX_FUTURE_MS
MAX_PAST_MS = sim.MAX_PAST_MS
REQUIRED = {
    "fix": {"seq": "int", "ts": "int", "lat": "lat", "lon": "lon", "acc": "acc"},
    "hb": {"seq": "int", "ts": "int", "batt": "batt"},
    "evt": {"seq": "int", "ts": "int", "type": "type"},
}
NUMERIC = {"lat", "lon", "acc", "batt"}
NONFINITE = ("NaN", "Infinity", "-Infinity", "1e999", "-1e999")


@dataclass(frozen=True)
class Case:
    """One fuzzed MQTT message and the dead letters it must produce."""

    topic: str
    payload: bytes
    category: str
    reasons: tuple[frozenset[str], ...]  # per expected dead letter, the reasons that fit

    @property
    def rows(self) -> int:
        return len(self.reasons)


class _NonFinite:
    """A placeholder for a raw token: one JSON has no value for (NaN, Infinity, 1e999), or an
    integer orjson cannot write (beyond 64 bits)."""

    def __init__(self, token: str) -> None:
        self.token = token


def _dumps(obj: Any) -> bytes:
    """orjson, with `_NonFinite` placeholders written as their raw token."""
    tokens: list[str] = []

    def default(value: Any) -> Any:
        if isinstance(value, _NonFinite):
            tokens.append(value.token)
            return f"__NONFINITE_{len(tokens) - 1}__"
        raise TypeError(type(value).__name__)

    data = orjson.dumps(obj, default=default)
    for i, token in enumerate(tokens):
        data = data.replace(f'"__NONFINITE_{i}__"'.encode(), token.encode())
    return data


def _reasons(*names: str) -> frozenset[str]:
    return frozenset(names)


NOT_JSON = _reasons("not_json")
NOT_OBJECT = _reasons("not_object")


class Fuzzer:
    """Deterministic for (`seed`, `devices`, `now_ms`)."""

    def __init__(self, seed: int, devices: Sequence[str], now_ms: int) -> None:
        self.rng = random.Random(seed)
        self.devices = list(devices)
        self.now = now_ms
        self.n = 0
        self.categories = [
            ("truncated", 8, self.truncated), ("bad_utf8", 5, self.bad_utf8),
            ("trailing", 4, self.trailing), ("garbage", 4, self.garbage),
            ("not_utf8", 2, self.not_utf8),
            ("not_object", 8, self.not_object), ("missing", 10, self.missing),
            ("null", 5, self.null), ("mistyped", 12, self.mistyped),
            ("out_of_range", 12, self.out_of_range), ("future_ts", 6, self.future_ts),
            ("nonfinite", 6, self.nonfinite), ("unknown_device", 5, self.unknown_device),
            ("bad_topic", 3, self.bad_topic), ("batch_bad", 10, self.batch_bad),
            ("batch_not_list", 2, self.batch_not_list),
            ("batch_too_many", 0.1, self.batch_too_many), ("oversize", 0.03, self.oversize),
        ]
        self._weights = [w for _, w, _ in self.categories]

    # --- valid material -------------------------------------------------------------------

    def valid(self, kind: str) -> dict[str, Any]:
        r = self.rng
        seq, ts = r.randrange(0, 10**7), self.now - r.randrange(0, 3_600_000)
        if kind == "fix":
            extra: dict[str, Any] = {}
            if r.random() < 0.3:
                extra = {"spd": round(r.uniform(0, 30), 2), "hdg": r.randrange(0, 360),
                         "sats": r.randrange(0, 20), "src": r.choice(sim.FIX_SOURCES)}
            return sim.fix(seq=seq, ts=ts, lat=round(r.uniform(-90, 90), 6),
                           lon=round(r.uniform(-180, 180), 6), acc=round(r.uniform(0, 500), 1),
                           **extra)
        if kind == "hb":
            extra = {"strap": r.choice(("ok", "open")), "chg": r.random() < 0.5} \
                if r.random() < 0.3 else {}
            return sim.heartbeat(seq=seq, ts=ts, batt=r.randrange(0, 101), **extra)
        return sim.event(r.choice(sim.EVENT_TYPES), seq=seq, ts=ts)

    def kind(self) -> str:
        return self.rng.choice(("fix", "fix", "hb", "evt"))

    def device(self) -> str:
        return self.rng.choice(self.devices)

    def case(self, category: str, kind: str, payload: bytes, reasons: Sequence[frozenset[str]],
             topic: str | None = None) -> Case:
        return Case(topic or sim.topic(self.device(), kind), payload, category, tuple(reasons))

    # --- defects of one object (a message or a batch element) -----------------------------

    def bad_value(self, obj: dict[str, Any], kind: str, how: str) -> frozenset[str]:
        """Give `obj` (a valid `kind` object) one defect of sort `how`; return the reasons."""
        r = self.rng
        fields = REQUIRED[kind]
        name = r.choice(list(fields))
        sort = fields[name]
        if how == "missing":
            for f in r.sample(list(fields), r.randint(1, len(fields))):
                del obj[f]
            return _reasons("missing_field")
        if how == "null":
            obj[name] = None
            return _reasons("bad_type", "missing_field")
        if how == "mistyped":
            if sort == "int":
                value = r.choice([str(obj[name]), True, False, [obj[name]], {"v": obj[name]},
                                  obj[name] + 0.5, "", "0x10"])
                if r.random() < 0.1:  # an integral number written as a decimal
                    obj[name] = float(obj[name])
                    return _reasons("bad_type", "out_of_range")
            elif sort == "type":
                value = r.choice([3, True, None, ["strap_open"], {"type": "strap_open"}, 1.5])
                obj[name] = value
                return _reasons("bad_type", "missing_field")
            else:
                value = r.choice([str(obj[name]), True, False, [obj[name]], {"v": 1}, "", "1,5"])
            obj[name] = value
            return _reasons("bad_type")
        if how == "out_of_range":
            mag = 10 ** r.uniform(-4, 6)
            if sort == "int":
                name = "seq"
                obj[name] = -r.randint(1, 10**12)
            elif sort == "lat":
                obj[name] = r.choice((1, -1)) * (90 + mag)
            elif sort == "lon":
                obj[name] = r.choice((1, -1)) * (180 + mag)
            elif sort == "acc":
                obj[name] = -mag
            elif sort == "batt":
                obj[name] = r.choice((-mag, 100 + mag))
            else:
                obj[name] = r.choice(("teleported", "", "STRAP_OPEN", "strap open", "strap_opened",
                                      "battery_low ", "x" * r.randint(1, 80)))
            return _reasons("out_of_range")
        if how == "future_ts":
            if r.random() < 0.1:  # beyond 64 bits, and in the future all the same
                obj["ts"] = _NonFinite(str(2**63 + r.randrange(0, 2**70)))
                return _reasons("future_ts", "out_of_range")
            obj["ts"] = self.now + 2 * MAX_FUTURE_MS + r.randrange(0, 10**11)
            return _reasons("future_ts")
        if how == "nonfinite":
            name = r.choice([f for f in fields if fields[f] in NUMERIC or fields[f] == "int"])
            obj[name] = _NonFinite(r.choice(NONFINITE))
            return _reasons("out_of_range", "bad_type", "not_json")
        raise ValueError(how)

    OBJECT_DEFECTS = ("missing", "null", "mistyped", "out_of_range", "future_ts")

    def one_bad_object(self, category: str) -> Case:
        kind = self.kind()
        obj = self.valid(kind)
        reasons = self.bad_value(obj, kind, category)
        return self.case(category, kind, _dumps(obj), [reasons])

    def missing(self) -> Case:
        return self.one_bad_object("missing")

    def null(self) -> Case:
        return self.one_bad_object("null")

    def mistyped(self) -> Case:
        return self.one_bad_object("mistyped")

    def out_of_range(self) -> Case:
        return self.one_bad_object("out_of_range")

    def future_ts(self) -> Case:
        return self.one_bad_object("future_ts")

    def nonfinite(self) -> Case:
        return self.one_bad_object("nonfinite")

    # --- broken bytes, non-objects -----------------------------------------------------------

    def _valid_bytes(self) -> tuple[str, bytes]:
        kind = self.kind()
        return kind, sim.encode(self.valid(kind))

    def truncated(self) -> Case:
        kind, data = self._valid_bytes()
        return self.case("truncated", kind, data[:self.rng.randrange(0, len(data))], [NOT_JSON])

    def bad_utf8(self) -> Case:
        kind, data = self._valid_bytes()
        at = self.rng.randrange(0, len(data) + 1)
        junk = self.rng.choice([b"\xff", b"\xfe", b"\xc3\x28", b"\xe2\x82", b"\xed\xa0\x80",
                                b"\xf8\x88\x80\x80\x80", b"\x80"])
        reasons = NOT_JSON
        if junk == b"\xed\xa0\x80":
            # An encoded surrogate: not UTF-8, yet the service's lenient re-read (json.loads on
            # bytes decodes with 'surrogatepass') reads it and names a field instead. Rejected
            # either way; the reason is reported as a service finding.
            reasons = _reasons("not_json", "missing_field", "bad_type", "out_of_range")
        return self.case("bad_utf8", kind, data[:at] + junk + data[at:], [reasons])

    def trailing(self) -> Case:
        kind, data = self._valid_bytes()
        tail = self.rng.choice([b"}", b",", b"{}", b"]", b"x", b" 1", b'{"seq": 1}', b"\x00"])
        return self.case("trailing", kind, data + tail, [NOT_JSON])

    def garbage(self) -> Case:
        r = self.rng
        head = r.choice([b"<", b"@", b"#", b"=", b"{{", b"[}", b"'", b"{'seq': 1}", b"{seq: 1}"])
        body = bytes(r.randrange(0, 256) for _ in range(r.randrange(0, 40)))
        return self.case("garbage", self.kind(), head + body, [NOT_JSON])

    def not_utf8(self) -> Case:
        """A valid message in UTF-16 or UTF-32: not UTF-8 JSON. (Only valid content: the
        service reads these leniently, and names a field when one is bad; reported.)"""
        kind = self.kind()
        text = sim.encode(self.valid(kind)).decode()
        enc = self.rng.choice(("utf-16-le", "utf-16-be", "utf-16", "utf-32-le", "utf-32"))
        return self.case("not_utf8", kind, text.encode(enc), [NOT_JSON])

    def not_object(self) -> Case:
        r = self.rng
        kind = self.kind()
        value = r.choice([r.randint(-10**6, 10**6), r.random(), "fix", "", None, True, False, [],
                          [self.valid(kind)], [1, 2, 3], [[]], "{\"seq\": 1}"])
        return self.case("not_object", kind, sim.encode(value), [NOT_OBJECT])

    # --- topics, sizes, batches ----------------------------------------------------------

    def unknown_device(self) -> Case:
        kind, data = self._valid_bytes()
        if self.rng.random() < 0.1:
            topic = sim.owntracks_topic(f"ghost{self.rng.randrange(10**6)}", "phone")
            data = sim.encode(sim.owntracks_location(tst=self.now // 1000 - 60))
        else:
            topic = sim.topic(f"ghost-{self.rng.randrange(10**9)}", kind)
        return self.case("unknown_device", kind, data, [_reasons("unknown_device")], topic)

    def bad_topic(self) -> Case:
        r = self.rng
        kind, data = self._valid_bytes()
        bad_id = r.choice([f"dev.{r.randrange(1000)}", f"dev {r.randrange(1000)}",
                           f"dév-{r.randrange(1000)}", "d" * r.randint(65, 120),
                           f"dev@{r.randrange(1000)}", f"dev:{r.randrange(1000)}"])
        topic = f"{sim.TOPIC_PREFIX}/{bad_id}/{kind}"
        return self.case("bad_topic", kind, data, [_reasons("bad_topic", "unknown_device")],
                         topic)

    def oversize(self) -> Case:
        kind = self.kind()
        obj = self.valid(kind)
        base = len(sim.encode(obj))
        obj["pad"] = "x" * (MAX_PAYLOAD - base + self.rng.randint(16, 2000))
        data = sim.encode(obj)
        assert len(data) > MAX_PAYLOAD
        return self.case("oversize", kind, data, [_reasons("too_large")])

    def batch_bad(self) -> Case:
        r = self.rng
        k = r.randint(1, 12)
        elements: list[Any] = []
        reasons = []
        for _ in range(k):
            if r.random() < 0.15:
                elements.append(r.choice([1, "fix", None, True, [], [1], 2.5]))
                reasons.append(_reasons("not_object", "bad_type"))
                continue
            obj = self.valid("fix")
            how = r.choice(self.OBJECT_DEFECTS + (("nonfinite",) if k == 1 else ()))
            reasons.append(self.bad_value(obj, "fix", how))
            elements.append(obj)
        return self.case("batch_bad", "fix", _dumps({"fixes": elements}), reasons)

    def batch_not_list(self) -> Case:
        value = self.rng.choice([None, 1, "fixes", {"seq": 1}, True, self.valid("fix")])
        return self.case("batch_not_list", "fix", sim.encode({"fixes": value}),
                         [_reasons("bad_type", "missing_field", "not_object")])

    def batch_too_many(self) -> Case:
        n = self.rng.randint(sim.MAX_BATCH + 1, sim.MAX_BATCH + 30)
        ts = self.now - 60_000
        fixes = [{"seq": i, "ts": ts + i, "lat": 21.0, "lon": 106.0, "acc": 5} for i in range(n)]
        data = sim.encode({"fixes": fixes})
        assert len(data) <= MAX_PAYLOAD
        return self.case("batch_too_many", "fix", data, [_reasons("too_many_fixes")])

    # --- the corpus ------------------------------------------------------------------------

    def next(self) -> Case:
        self.n += 1
        _, _, make = self.rng.choices(self.categories, self._weights)[0]
        return make()


def fuzz_corpus(n: int, seed: int, devices: Sequence[str], now_ms: int) -> list[Case]:
    """`n` invalid messages for the registered `devices`, anchored at `now_ms` (UTC ms; a case
    stays invalid when received up to 5 minutes after it)."""
    fuzzer = Fuzzer(seed, devices, now_ms)
    return [fuzzer.next() for _ in range(n)]


# --- an independent reading of contract §1 -------------------------------------------------------

DEVICE_ID = DEVICE_ID_RE
EVENT_TYPES = frozenset(sim.EVENT_TYPES)


def _strict_json(payload: bytes) -> Any:
    def refuse(token: str) -> Any:
        raise ValueError(token)

    def number(text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            raise ValueError(text)
        return value

    return json.loads(payload.decode("utf-8"), parse_constant=refuse, parse_float=number)


def _is_int(v: Any) -> bool:
    return type(v) is int


def _is_num(v: Any) -> bool:
    return type(v) in (int, float) and math.isfinite(v)


def _object_ok(obj: Any, kind: str, now_ms: int) -> bool:
    if type(obj) is not dict:
        return False
    seq, ts = obj.get("seq"), obj.get("ts")
    if not (_is_int(seq) and seq >= 0 and _is_int(ts)
            and now_ms - MAX_PAST_MS <= ts <= now_ms + MAX_FUTURE_MS):
        return False
    if kind == "fix":
        lat, lon, acc = obj.get("lat"), obj.get("lon"), obj.get("acc")
        return (_is_num(lat) and -90 <= lat <= 90 and _is_num(lon) and -180 <= lon <= 180
                and _is_num(acc) and acc >= 0)
    if kind == "hb":
        batt = obj.get("batt")
        return _is_num(batt) and 0 <= batt <= 100
    return type(obj.get("type")) is str and obj["type"] in EVENT_TYPES


def contract_verdict(topic: str, payload: bytes, registered: set[str],
                     now_ms: int) -> tuple[int, int]:
    """(valid records, rejected records) of one message by contract §1, required fields only."""
    parts = topic.split("/")
    if len(parts) == 5 and parts[:3] == ["em", "v1", "dev"] and parts[4] in ("fix", "hb", "evt"):
        device, kind = parts[3], parts[4]
    elif len(parts) == 3 and parts[0] == "owntracks":
        device, kind = f"{parts[1]}-{parts[2]}", "owntracks"
    else:
        return 0, 1
    if not DEVICE_ID.fullmatch(device) or device not in registered:
        return 0, 1
    if len(payload) > MAX_PAYLOAD:
        return 0, 1
    try:
        obj = _strict_json(payload)
    except ValueError:
        return 0, 1
    if type(obj) is not dict:
        return 0, 1
    if kind == "owntracks":
        raise NotImplementedError("the corpus sends OwnTracks only for unregistered devices")
    if kind == "fix" and "fixes" in obj:
        items = obj["fixes"]
        if type(items) is not list or len(items) > sim.MAX_BATCH:
            return 0, 1
        ok = sum(_object_ok(it, "fix", now_ms) for it in items)
        return ok, len(items) - ok
    return (1, 0) if _object_ok(obj, kind, now_ms) else (0, 1)
