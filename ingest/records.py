"""Domain types of the ingest stage: what a device message decodes to, and what is handed on.

A decoder turns one MQTT message into `Fix`, `Heartbeat`, `Event` or `Rejected` records
(contract §1). On the hot path fixes travel as columns (`FixColumns`, numpy arrays) rather than
one Python object each; after a batch is committed, `StoredBatch` carries only the newly stored
records downstream (geofence, alerts), never a duplicate.

Times are UTC epoch milliseconds (`ts`, `received_ms`); coordinates WGS 84 degrees; `acc`, `alt`
metres; `spd` m/s; `hdg` degrees.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Why a message (or one element of a batch) was not stored. A bounded set: it is a metric label.
REASONS: tuple[str, ...] = (
    "not_json",        # not UTF-8 JSON (orjson's message in `detail`)
    "not_object",      # JSON, but not an object (a batch element: not an object)
    "missing_field",   # a required field is absent
    "bad_type",        # a field has the wrong JSON type (a bool is not an int; null is no value)
    "out_of_range",    # a value outside its range, NaN and infinities included
    "future_ts",       # `ts` more than `max_future_ms` after the message was received
    "stale_ts",        # `ts` more than `max_fix_age_days` before the message was received
    "unknown_device",  # the topic names no registered device
    "too_large",       # payload over `max_payload_bytes`
    "bad_topic",       # a topic that is not `em/v1/dev/{device_id}/{kind}` / `owntracks/{u}/{d}`
    "too_many_fixes",  # a batch of more than `max_batch_fixes` fixes
    "unsupported",     # a well-formed message this version does not store (OwnTracks
                       # `_type` other than `location`)
    "unknown_command", # a device `ack` naming no command sent to that device
    "unstorable",      # the database refused it although it passed validation (a bug; the
                       # error is in `detail`), isolated so that the rest is stored
)

# Record kinds: metric labels and the keys of the decoder table.
KINDS: tuple[str, ...] = ("fix", "hb", "evt", "ack", "owntracks")

SOURCES: tuple[str, ...] = ("gnss", "wifi", "cell")  # fix `src`, index = column code
EVENT_TYPES: frozenset[str] = frozenset({
    "strap_open", "strap_closed", "case_open", "case_closed", "battery_low", "battery_critical",
    "power_off", "power_on", "charger_on", "charger_off", "gnss_jamming",
    "checkin",  # the wearer reports for roll-call (alerts.rollcall places it)
})


@dataclass(slots=True)
class Received:
    """One message as a consumer received it: the item of ingest's bounded queue, from the
    broker callback to the writers. Built on the broker's thread for every message, so it is
    one slotted object and nothing more (not frozen: a frozen dataclass's ``__init__`` costs
    six ``object.__setattr__`` calls, ~0.5 us a message); nothing assigns its fields."""

    topic: str          # the MQTT topic (the AMQP routing key turned back into one)
    payload: bytes
    received_ms: int    # UTC epoch ms, when the callback took it
    ack_id: int         # what acknowledges it: the MQTT packet id or the AMQP delivery tag
    qos: int            # 0: nothing to acknowledge
    generation: int     # the consumer's connection it came on; acknowledged on that one only


@dataclass(frozen=True, slots=True)
class Fix:
    """One position of a device (contract §1 `fix`)."""

    device_id: str
    seq: int
    ts: int
    lat: float
    lon: float
    acc: float
    spd: float | None = None
    hdg: float | None = None
    alt: float | None = None
    sats: int | None = None
    src: str = "gnss"
    received_ms: int = 0


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A device's periodic status (contract §1 `heartbeat`); `batt` in %, `rssi` in dBm."""

    device_id: str
    seq: int
    ts: int
    batt: float
    chg: bool | None = None
    strap: str | None = None
    case: str | None = None
    rssi: float | None = None
    gnss: str | None = None
    fw: str | None = None
    received_ms: int = 0


@dataclass(frozen=True, slots=True)
class Event:
    """A device event (contract §1 `event`), e.g. `strap_open`; `detail` is the device's object."""

    device_id: str
    seq: int
    ts: int
    type: str
    detail: dict[str, Any] | None = None
    received_ms: int = 0


@dataclass(frozen=True, slots=True)
class CommandAck:
    """A device's answer to a downlink command (contract §1 `em/v1/dev/{device_id}/ack`):
    `id` of the command, the device's `ts` (ms) and whether it was carried out (`ok`).
    `topic` and `payload` are kept to dead-letter an answer to no known command."""

    device_id: str
    id: str
    ts: int
    ok: bool
    received_ms: int = 0
    topic: str = ""
    payload: bytes = b""


@dataclass(frozen=True, slots=True)
class Rejected:
    """A message, or one element of a batch, that is dead-lettered instead of stored.

    `reason` is one of `REASONS`; `detail` names the field and what is wrong; `element` is the
    index in a `{"fixes": [...]}` batch (else None). `payload` is the raw message, or for a batch
    element that element re-encoded as JSON (so 500 bad elements do not store 500 copies of the
    whole message). `device_id` is the id the topic names, registered or not (None for a bad topic).
    """

    reason: str
    detail: str
    element: int | None = None
    device_id: str | None = None
    topic: str = ""
    payload: bytes = b""
    received_ms: int = 0


Record = Fix | Heartbeat | Event | CommandAck | Rejected


def _empty(dtype: Any) -> np.ndarray:
    return np.empty(0, dtype=dtype)


@dataclass
class FixColumns:
    """Fixes as parallel numpy columns (one row per fix), the hot-path form of `Fix`.

    Absent optional values: NaN in `spd`/`hdg`/`alt`, -1 in `sats`. `src` is an index into
    `SOURCES`.
    """

    device_id: np.ndarray = field(default_factory=lambda: _empty(object))
    seq: np.ndarray = field(default_factory=lambda: _empty(np.int64))
    ts: np.ndarray = field(default_factory=lambda: _empty(np.int64))
    lat: np.ndarray = field(default_factory=lambda: _empty(np.float64))
    lon: np.ndarray = field(default_factory=lambda: _empty(np.float64))
    acc: np.ndarray = field(default_factory=lambda: _empty(np.float64))
    spd: np.ndarray = field(default_factory=lambda: _empty(np.float64))
    hdg: np.ndarray = field(default_factory=lambda: _empty(np.float64))
    alt: np.ndarray = field(default_factory=lambda: _empty(np.float64))
    sats: np.ndarray = field(default_factory=lambda: _empty(np.int16))
    src: np.ndarray = field(default_factory=lambda: _empty(np.int16))
    received_ms: np.ndarray = field(default_factory=lambda: _empty(np.int64))

    NAMES = ("device_id", "seq", "ts", "lat", "lon", "acc", "spd", "hdg", "alt", "sats", "src",
             "received_ms")

    def __len__(self) -> int:
        return len(self.seq)

    def take(self, rows: np.ndarray) -> FixColumns:
        """The rows selected by an index or boolean array."""
        return FixColumns(*(getattr(self, n)[rows] for n in self.NAMES))

    @classmethod
    def concat(cls, parts: Sequence[FixColumns]) -> FixColumns:
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls()
        if len(parts) == 1:
            return parts[0]
        return cls(*(np.concatenate([getattr(p, n) for p in parts]) for n in cls.NAMES))

    @classmethod
    def from_fixes(cls, fixes: Sequence[Fix]) -> FixColumns:
        """Columns of scalar fixes (the OwnTracks path, tests)."""
        if not fixes:
            return cls()
        nan = float("nan")
        return cls(
            np.array([f.device_id for f in fixes], dtype=object),
            np.array([f.seq for f in fixes], dtype=np.int64),
            np.array([f.ts for f in fixes], dtype=np.int64),
            np.array([f.lat for f in fixes], dtype=np.float64),
            np.array([f.lon for f in fixes], dtype=np.float64),
            np.array([f.acc for f in fixes], dtype=np.float64),
            np.array([nan if f.spd is None else f.spd for f in fixes], dtype=np.float64),
            np.array([nan if f.hdg is None else f.hdg for f in fixes], dtype=np.float64),
            np.array([nan if f.alt is None else f.alt for f in fixes], dtype=np.float64),
            np.array([-1 if f.sats is None else f.sats for f in fixes], dtype=np.int16),
            np.array([SOURCES.index(f.src) for f in fixes], dtype=np.int16),
            np.array([f.received_ms for f in fixes], dtype=np.int64),
        )

    def to_fixes(self) -> list[Fix]:
        """Scalar `Fix` objects (tests compare the columnar decoder with the scalar one)."""
        def opt(x: float) -> float | None:
            return None if x != x else x

        return [
            Fix(d, int(s), int(t), float(la), float(lo), float(a), opt(float(sp)), opt(float(h)),
                opt(float(al)), None if sa < 0 else int(sa), SOURCES[int(sr)], int(r))
            for d, s, t, la, lo, a, sp, h, al, sa, sr, r in zip(
                self.device_id, self.seq, self.ts, self.lat, self.lon, self.acc, self.spd,
                self.hdg, self.alt, self.sats, self.src, self.received_ms, strict=True)
        ]


@dataclass
class StoredBatch:
    """What one committed batch newly stored (duplicates left out), for the next stages.

    Fix columns, one row per new fix in batch order (not sorted by `ts`: a stage that decides
    in `ts` order sorts per device): `device_id`, `supervisee_id` (object arrays; the supervisee
    from the device registry when the batch was stored, None when unassigned), `seq`, `ts`
    (int64, ms), `lat`, `lon`, `acc` (float64). `heartbeats` and `events` are the new ones;
    `supervisees` maps every device of the batch to its supervisee; `received_ms` is when the
    earliest message of the batch was taken from the broker, `committed_ms` when it was committed;
    `rejected` counts its dead letters; `acks` are the command answers newly recorded.
    """

    device_id: np.ndarray
    supervisee_id: np.ndarray
    seq: np.ndarray
    ts: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    acc: np.ndarray
    heartbeats: list[Heartbeat]
    events: list[Event]
    supervisees: Mapping[str, str | None]
    received_ms: int
    committed_ms: int = 0
    rejected: int = 0
    acks: list[CommandAck] = field(default_factory=list)  # answers recorded in device_commands

    def __len__(self) -> int:
        return len(self.seq)

    @classmethod
    def merge(cls, parts: Sequence[StoredBatch]) -> StoredBatch:
        """One batch of several (stored one message at a time, see `ingest.service`)."""
        def cat(name: str) -> np.ndarray:
            return np.concatenate([getattr(p, name) for p in parts])

        return cls(cat("device_id"), cat("supervisee_id"), cat("seq"), cat("ts"), cat("lat"),
                   cat("lon"), cat("acc"), [h for p in parts for h in p.heartbeats],
                   [e for p in parts for e in p.events],
                   {k: v for p in parts for k, v in p.supervisees.items()},
                   min(p.received_ms for p in parts), max(p.committed_ms for p in parts),
                   sum(p.rejected for p in parts), [a for p in parts for a in p.acks])

    @property
    def empty(self) -> bool:
        """True when nothing new was stored (nothing for the next stages to do)."""
        return not len(self.seq) and not self.heartbeats and not self.events and not self.acks
