"""The column-wise batch decoder against the scalar reference: same fixes, heartbeats, events
and rejections for any mix of valid and broken messages."""

from __future__ import annotations

from collections import Counter

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.decode import Limits, decode, decode_messages
from ingest.records import CommandAck, Event, Fix, Heartbeat, Received, Rejected
from simulators import messages as m

NOW = 1_732_600_000_000
REGISTERED = {"col-a", "col-b", "u-p"}
LIMITS = Limits(max_payload_bytes=4096, max_future_ms=300_000, max_batch_fixes=8)

ODD_VALUES = st.sampled_from([
    None, True, False, "x", "", "gnss", "wifi", 1.5, 5.0, -1, 0, 2**63, 2**64 - 1, -(2**63),
    1e300, -1e300, 91, -181, 360.5, 1001, [1], {"a": 1}, NOW + 400_000, NOW,
    NOW - 30 * 86_400_000 - 1, NOW - 30 * 86_400_000 + 2000,  # either side of stale_ts
])
FIELDS = ["seq", "ts", "lat", "lon", "acc", "spd", "hdg", "alt", "sats", "src"]


@st.composite
def fix_objects(draw) -> object:
    if draw(st.integers(0, 19)) == 0:
        return draw(st.sampled_from([7, None, "fix", [1, 2]]))
    obj = m.fix(seq=draw(st.integers(0, 3)), ts=NOW - draw(st.integers(0, 5)),
                lat=draw(st.floats(-90, 90)), lon=draw(st.floats(-180, 180)),
                acc=draw(st.floats(0, 500)))
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=3)):
        if draw(st.booleans()):
            obj.pop(name, None)
        else:
            obj[name] = draw(ODD_VALUES)
    return obj


@st.composite
def messages(draw) -> tuple[str, bytes, int]:
    device = draw(st.sampled_from(["col-a", "col-b", "col-x"]))
    received = NOW + draw(st.integers(-1000, 1000))
    shape = draw(st.integers(0, 9))
    if shape == 0:
        return draw(st.sampled_from([
            (m.topic(device, "hb"), m.encode(m.heartbeat(seq=1, ts=NOW)), received),
            (m.topic(device, "evt"), m.encode(m.event("power_on", 2, NOW)), received),
            ("owntracks/u/p", m.encode(m.owntracks_location(tst=NOW // 1000)), received),
            ("em/v1/dev/bad.id/fix", b"{}", received),
            (m.topic(device, "ack"), b'{"id": "c", "ts": 1, "ok": true}', received),
            (m.topic(device, "ack"), b'{"id": "c", "ts": 1, "ok": "yes"}', received),
        ]))
    topic = m.topic(device, "fix")
    if shape == 1:
        raw = draw(st.sampled_from([b"{", b"[]", b'{"lat": NaN}', b"x" * 5000,
                                    b'{"fixes": 3}', b'{"fixes": [1,2,3,4,5,6,7,8,9]}']))
        return topic, raw, received
    if shape <= 5:
        return topic, orjson.dumps(draw(fix_objects())), received
    batch = draw(st.lists(fix_objects(), max_size=10))
    return topic, orjson.dumps({"fixes": batch}), received


def scalar(items: list[tuple[str, bytes, int]]) -> list[object]:
    out: list[object] = []
    for topic, payload, received in items:
        out += decode(topic, payload, now_ms=received, registered=REGISTERED, limits=LIMITS)
    return out


def received(items: list[tuple[str, bytes, int]]) -> list[Received]:
    """Queue items as a consumer builds them (QoS 1, connection 0)."""
    return [Received(topic, payload, ms, 0, 1, 0) for topic, payload, ms in items]


def hashable(record: object) -> object:
    if isinstance(record, Event):
        return (record.device_id, record.seq, record.ts, record.type, orjson.dumps(record.detail))
    return record


@settings(max_examples=400, deadline=None)
@given(st.lists(messages(), min_size=1, max_size=12))
def test_columnar_decoding_matches_the_scalar_reference(items) -> None:
    batch = decode_messages(received(items), registered=REGISTERED, limits=LIMITS)
    expected = scalar(items)

    def of(kind: type) -> Counter:
        return Counter(hashable(r) for r in expected if isinstance(r, kind))

    assert Counter(batch.fixes.to_fixes()) == of(Fix)
    assert Counter(batch.heartbeats) == of(Heartbeat)
    assert Counter(hashable(e) for e in batch.events) == of(Event)
    assert Counter(batch.acks) == of(CommandAck)
    assert Counter(batch.rejected) == of(Rejected)
    assert sum(batch.received.values()) == len(items)


def test_fixes_keep_message_order_within_the_columns() -> None:
    items = [(m.topic("col-a", "fix"), m.encode(m.fix_batch([m.fix(seq=i, ts=NOW) for i in
                                                             range(3)])), NOW),
             (m.topic("col-b", "fix"), m.encode(m.fix(seq=9, ts=NOW)), NOW)]
    fixes = decode_messages(received(items), registered=REGISTERED).fixes
    assert fixes.seq.tolist() == [0, 1, 2, 9]
    assert fixes.device_id.tolist() == ["col-a"] * 3 + ["col-b"]
