"""The pure decoders (contract §1): every rejection reason, valid messages of each kind,
OwnTracks, batches with a bad element, and totality."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.decode import Limits, decode, parse_topic
from ingest.records import REASONS, CommandAck, Event, Fix, Heartbeat, Rejected
from simulators import messages as m

PAYLOADS = Path(__file__).parent / "payloads"
NOW = 1_732_600_000_000  # the injected clock, UTC ms
DEV = "em-0001"
REGISTERED = {DEV, "nguoi01-dt01"}
FIX_TOPIC = m.topic(DEV, "fix")

# simulators.messages names its invalid cases after what is wrong; ours are the stored reasons.
SIM_REASON = {"mistyped_field": "bad_type", "nan": "out_of_range", "infinity": "out_of_range",
              "oversized": "too_large"}


def one(topic: str, payload: bytes, now_ms: int = NOW, **kw) -> object:
    records = decode(topic, payload, now_ms=now_ms, registered=REGISTERED, **kw)
    assert len(records) == 1, records
    return records[0]


def rejected(topic: str, payload: bytes, **kw) -> Rejected:
    record = one(topic, payload, **kw)
    assert isinstance(record, Rejected), record
    assert record.reason in REASONS
    return record


def fix_payload(**over) -> bytes:
    return m.encode(m.fix(seq=5, ts=NOW - 1000, **over))


# --- valid messages -------------------------------------------------------------------------

def test_a_fix_with_every_field() -> None:
    payload = fix_payload(spd=1.5, hdg=270, alt=12.5, sats=9, src="wifi", extra="ignored")
    f = one(FIX_TOPIC, payload)
    assert f == Fix(DEV, 5, NOW - 1000, m.DEFAULT_LAT, m.DEFAULT_LON, 10.0, 1.5, 270.0, 12.5, 9,
                    "wifi", NOW)


def test_optional_fields_absent_or_null_are_none_and_src_defaults_to_gnss() -> None:
    f = one(FIX_TOPIC, fix_payload(spd=None))
    assert isinstance(f, Fix)
    assert (f.spd, f.hdg, f.alt, f.sats, f.src) == (None, None, None, None, "gnss")


def test_integer_coordinates_are_numbers() -> None:
    f = one(FIX_TOPIC, m.encode(m.fix(seq=1, ts=NOW, lat=21, lon=106, acc=0)))
    assert isinstance(f, Fix) and (f.lat, f.lon, f.acc) == (21.0, 106.0, 0.0)


def test_a_heartbeat() -> None:
    payload = (PAYLOADS / "hb_full.json").read_bytes()
    hb = one(m.topic(DEV, "hb"), payload)
    assert hb == Heartbeat(DEV, 501, 1_732_600_000_000, 64.0, False, "ok", "ok", -87.0, "fix",
                           "em-2.3.1", NOW)


def test_an_event_with_detail() -> None:
    payload = (PAYLOADS / "evt_strap_open.json").read_bytes()
    ev = one(m.topic(DEV, "evt"), payload)
    assert ev == Event(DEV, 88, 1_732_600_000_000, "strap_open",
                       {"sensor": "continuity", "ohm": 100000}, NOW)


def test_every_event_type_is_accepted() -> None:
    for kind in m.EVENT_TYPES:
        assert isinstance(one(m.topic(DEV, "evt"), m.encode(m.event(kind, 1, NOW))), Event)


def test_a_batch_gives_one_fix_per_element() -> None:
    fixes = [m.fix(seq=i, ts=NOW - 100 + i) for i in range(500)]
    records = decode(FIX_TOPIC, m.encode(m.fix_batch(fixes)), now_ms=NOW, registered=REGISTERED)
    assert [r.seq for r in records] == list(range(500))
    assert all(isinstance(r, Fix) for r in records)


def test_an_empty_batch_stores_and_rejects_nothing() -> None:
    assert decode(FIX_TOPIC, b'{"fixes": []}', now_ms=NOW, registered=REGISTERED) == []


def test_ts_exactly_at_the_future_limit_is_accepted() -> None:
    limits = Limits(max_future_ms=300_000)
    f = one(FIX_TOPIC, m.encode(m.fix(seq=1, ts=NOW + 300_000)), limits=limits)
    assert isinstance(f, Fix)


# --- how far in the past a ts may lie (stale_ts, issue 16) ------------------------------------

DAY = 86_400_000
PAST = Limits(max_past_ms=30 * DAY)


@pytest.mark.parametrize("kind", ["fix", "hb", "evt"])
def test_a_ts_beyond_the_past_limit_is_stale(kind: str) -> None:
    build = {"fix": lambda ts: m.fix(seq=1, ts=ts), "hb": lambda ts: m.heartbeat(seq=1, ts=ts),
             "evt": lambda ts: m.event("strap_open", 1, ts)}[kind]
    topic = m.topic(DEV, kind)
    assert not isinstance(one(topic, m.encode(build(NOW - 30 * DAY)), limits=PAST), Rejected)
    r = rejected(topic, m.encode(build(NOW - 30 * DAY - 1)), limits=PAST)
    assert r.reason == "stale_ts" and "before the message was received" in r.detail
    r = rejected(topic, m.encode(build(0)), limits=PAST)  # a clock reset to 1970
    assert r.reason == "stale_ts" and r.payload == m.encode(build(0))


def test_the_past_limit_is_a_setting_and_defaults_to_30_days() -> None:
    from config import Settings

    assert Limits().max_past_ms == 30 * DAY
    limits = Limits.from_settings(Settings(_env_file=None, max_fix_age_days=2))  # type: ignore[call-arg]
    assert limits.max_past_ms == 2 * DAY
    assert rejected(FIX_TOPIC, m.encode(m.fix(seq=1, ts=NOW - 3 * DAY)),
                    limits=limits).reason == "stale_ts"


def test_a_stale_element_rejects_only_itself() -> None:
    batch = m.fix_batch([m.fix(seq=1, ts=NOW), m.fix(seq=2, ts=5), m.fix(seq=3, ts=NOW)])
    records = decode(FIX_TOPIC, m.encode(batch), now_ms=NOW, registered=REGISTERED)
    assert [type(r).__name__ for r in records] == ["Fix", "Rejected", "Fix"]
    assert records[1].reason == "stale_ts" and records[1].element == 1


def test_owntracks_stale_and_command_answers_not_bounded_in_the_past() -> None:
    old = m.owntracks_location(tst=(NOW - 31 * DAY) // 1000)
    assert rejected("owntracks/nguoi01/dt01", m.encode(old)).reason == "stale_ts"
    answer = one(m.topic(DEV, "ack"), b'{"id": "c1", "ts": 1000, "ok": true}')
    assert not isinstance(answer, Rejected)


def test_registered_may_be_a_predicate() -> None:
    records = decode(FIX_TOPIC, fix_payload(), now_ms=NOW, registered=lambda d: d == DEV)
    assert isinstance(records[0], Fix)


# --- OwnTracks ------------------------------------------------------------------------------

def test_owntracks_location_is_a_fix_of_user_device() -> None:
    payload = (PAYLOADS / "owntracks_location.json").read_bytes()
    f = one("owntracks/nguoi01/dt01", payload)
    # seq = tst (s), ts = tst in ms: a redelivery of the same location is the same key
    assert f == Fix("nguoi01-dt01", 1_732_600_000, 1_732_600_000_000, 21.18632, 106.07641, 12.0,
                    18 / 3.6, 270.0, 18.0, None, "gnss", NOW)


def test_owntracks_built_by_the_simulator_helpers() -> None:
    payload = m.encode(m.owntracks_location(tst=NOW // 1000, acc=7))
    f = one(m.owntracks_topic("nguoi01", "dt01"), payload)
    assert isinstance(f, Fix) and f.device_id == m.owntracks_device_id("nguoi01", "dt01")


def test_owntracks_other_types_are_unsupported() -> None:
    r = rejected("owntracks/nguoi01/dt01", (PAYLOADS / "owntracks_lwt.json").read_bytes())
    assert r.reason == "unsupported" and "lwt" in r.detail


def test_owntracks_without_acc_or_type() -> None:
    loc = m.owntracks_location(tst=NOW // 1000)
    assert rejected("owntracks/nguoi01/dt01", m.encode(m.drop(loc, "acc"))).reason == "missing_field"
    assert rejected("owntracks/nguoi01/dt01", m.encode(m.drop(loc, "_type"))).reason == "missing_field"


def test_owntracks_unregistered_and_future() -> None:
    loc = m.owntracks_location(tst=NOW // 1000)
    assert rejected("owntracks/other/phone", m.encode(loc)).reason == "unknown_device"
    ahead = m.owntracks_location(tst=NOW // 1000 + 600)
    assert rejected("owntracks/nguoi01/dt01", m.encode(ahead)).reason == "future_ts"


# --- every rejection reason -----------------------------------------------------------------

@pytest.mark.parametrize("case", m.invalid_cases(now=NOW), ids=lambda c: c.label)
def test_the_simulator_invalid_cases(case: m.InvalidCase) -> None:
    records = decode(m.topic(DEV, case.kind), case.payload, now_ms=NOW, registered=REGISTERED)
    bad = [r for r in records if isinstance(r, Rejected)]
    if case.bad_index is not None:  # one bad element: only it is rejected
        assert len(bad) == 1 and bad[0].element == case.bad_index
        assert sum(isinstance(r, Fix) for r in records) == len(records) - 1
        return
    assert len(records) == 1 and len(bad) == 1
    assert bad[0].reason == SIM_REASON.get(case.reason, case.reason), bad[0]


def test_not_json_and_not_object() -> None:
    assert rejected(FIX_TOPIC, b'{"seq": 1, "ts"').reason == "not_json"
    assert rejected(FIX_TOPIC, b"\xff\xfe{}").reason == "not_json"
    assert rejected(FIX_TOPIC, b"").reason == "not_json"
    r = rejected(FIX_TOPIC, b'[{"seq": 1}]')
    assert r.reason == "not_object" and "array" in r.detail
    assert rejected(m.topic(DEV, "hb"), b'"hello"').reason == "not_object"


@pytest.mark.parametrize("field", ["seq", "ts", "lat", "lon", "acc"])
def test_each_required_fix_field_missing(field: str) -> None:
    r = rejected(FIX_TOPIC, m.encode(m.drop(m.fix(seq=1, ts=NOW), field)))
    assert (r.reason, r.detail) == ("missing_field", f"{field} is missing")


@pytest.mark.parametrize(("field", "value"), [
    ("seq", True), ("seq", False), ("seq", "1"), ("seq", 1.5), ("seq", 5.0), ("ts", None),
    ("ts", float(NOW)), ("lat", True), ("lat", "21.1"), ("lon", [106.0]), ("acc", {"m": 5}),
    ("spd", True), ("sats", 9.0), ("src", 1), ("hdg", "east"),
])
def test_mistyped_fix_fields(field: str, value: object) -> None:
    r = rejected(FIX_TOPIC, m.encode({**m.fix(seq=1, ts=NOW), field: value}))
    assert r.reason == "bad_type" and r.detail.startswith(field), r


def test_booleans_are_not_integers_anywhere() -> None:
    hb = {**m.heartbeat(seq=1, ts=NOW), "batt": True}
    assert rejected(m.topic(DEV, "hb"), m.encode(hb)).reason == "bad_type"
    assert rejected(m.topic(DEV, "evt"), m.encode(m.event(seq=True, ts=NOW))).reason == "bad_type"
    chg = {**m.heartbeat(seq=1, ts=NOW), "chg": 1}
    assert rejected(m.topic(DEV, "hb"), m.encode(chg)).reason == "bad_type"


@pytest.mark.parametrize(("field", "value"), [
    ("seq", -1), ("ts", -1), ("lat", 90.0001), ("lat", -91), ("lon", 180.5), ("lon", -180.01),
    ("acc", -0.1), ("acc", 1e7), ("spd", -1), ("hdg", 360.5), ("sats", -1), ("sats", 5000),
    ("src", "gps"), ("alt", 1e30), ("seq", 2**63), ("seq", 2**64 - 1),
])
def test_out_of_range_fix_fields(field: str, value: object) -> None:
    r = rejected(FIX_TOPIC, m.encode({**m.fix(seq=1, ts=NOW), field: value}))
    assert r.reason == "out_of_range" and r.detail.startswith(field), r


def test_integers_beyond_64_bits_are_out_of_range() -> None:
    payload = b'{"seq": 123456789012345678901234567890, "ts": %d, "lat": 1, "lon": 2, "acc": 3}' % NOW
    assert rejected(FIX_TOPIC, payload).reason == "out_of_range"


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_nan_and_infinities_are_out_of_range_and_name_the_field(token: str) -> None:
    payload = b'{"seq": 1, "ts": %d, "lat": 21.0, "lon": %s, "acc": 5}' % (NOW, token.encode())
    r = rejected(FIX_TOPIC, payload)
    assert r.reason == "out_of_range" and r.detail.startswith("lon"), r
    assert r.payload == payload


def test_a_recorded_nan_payload() -> None:
    r = rejected(FIX_TOPIC, (PAYLOADS / "fix_nan.json").read_bytes())
    assert (r.reason, r.detail) == ("out_of_range", "lat is NaN")


def test_nan_in_an_ignored_field_is_not_json() -> None:
    payload = b'{"seq": 1, "ts": %d, "lat": 21.0, "lon": 106, "acc": 5, "temp": NaN}' % NOW
    r = rejected(FIX_TOPIC, payload)
    assert r.reason == "not_json" and "NaN" in r.detail


def test_heartbeat_and_event_ranges() -> None:
    hb_topic, evt_topic = m.topic(DEV, "hb"), m.topic(DEV, "evt")
    for over in ({"batt": 100.5}, {"batt": -1}, {"strap": "cut"}, {"case": "broken"},
                 {"gnss": "lost"}, {"rssi": -1000}, {"fw": "x" * 65}, {"fw": "a\x00b"}):
        r = rejected(hb_topic, m.encode({**m.heartbeat(seq=1, ts=NOW), **over}))
        assert r.reason == "out_of_range", (over, r)
    r = rejected(evt_topic, m.encode(m.event("teleported", 1, NOW)))
    assert r.reason == "out_of_range" and "type" in r.detail
    r = rejected(evt_topic, m.encode(m.event("strap_open", 1, NOW, detail={"note": "a\x00"})))
    assert r.reason == "out_of_range" and "NUL" in r.detail
    r = rejected(evt_topic, m.encode(m.event("strap_open", 1, NOW, detail=[1])))
    assert r.reason == "bad_type"


def test_future_ts_is_judged_against_the_injected_clock() -> None:
    payload = m.encode(m.fix(seq=1, ts=NOW + 300_001))
    assert rejected(FIX_TOPIC, payload, now_ms=NOW).reason == "future_ts"
    assert isinstance(one(FIX_TOPIC, payload, now_ms=NOW + 1), Fix)
    hb = m.encode(m.heartbeat(seq=1, ts=NOW + 10 * 60_000))
    assert rejected(m.topic(DEV, "hb"), hb).reason == "future_ts"


def test_unknown_device() -> None:
    r = rejected(m.topic("em-9999", "fix"), fix_payload())
    assert (r.reason, r.device_id) == ("unknown_device", "em-9999")


def test_too_large_is_judged_before_parsing() -> None:
    limits = Limits(max_payload_bytes=100)
    big = b"{" + b" " * 200 + b"}"
    r = rejected(FIX_TOPIC, big, limits=limits)
    assert r.reason == "too_large" and r.payload == big
    at_limit = fix_payload()
    assert isinstance(one(FIX_TOPIC, at_limit, limits=Limits(max_payload_bytes=len(at_limit))), Fix)


@pytest.mark.parametrize("topic", [
    "em/v1/dev/bad.id/fix", "em/v1/dev//fix", f"em/v1/dev/{'x' * 65}/fix", "em/v1/dev/a b/fix",
    "em/v1/dev/em-0001/gps", "em/v1/dev/em-0001/fix/extra", "em/v2/dev/em-0001/fix",
    "owntracks/a.b/c", "owntracks//c", "owntracks/u/" + "d" * 64,
])
def test_bad_topics(topic: str) -> None:
    r = rejected(topic, fix_payload())
    assert r.reason == "bad_topic" and r.device_id is None and r.topic == topic


def test_a_64_character_device_id_is_fine() -> None:
    assert parse_topic(f"em/v1/dev/{'a' * 64}/fix") == ("fix", "a" * 64)


def test_too_many_fixes_rejects_the_whole_message() -> None:
    fixes = [m.fix(seq=i, ts=NOW) for i in range(501)]
    r = rejected(FIX_TOPIC, m.encode(m.fix_batch(fixes, strict=False)))
    assert r.reason == "too_many_fixes" and r.element is None
    assert rejected(FIX_TOPIC, b'{"fixes": {"seq": 1}}').reason == "bad_type"


def test_a_device_answer_to_a_command() -> None:
    payload = (PAYLOADS / "ack_locate.json").read_bytes()
    ack = one(m.topic(DEV, "ack"), payload)
    assert ack == CommandAck(DEV, "cmd-7f3a", 1_732_600_000_000, True, NOW, m.topic(DEV, "ack"),
                             payload)
    for bad, reason in (({"ts": NOW, "ok": True}, "missing_field"),
                        ({"id": 7, "ts": NOW, "ok": True}, "bad_type"),
                        ({"id": "c", "ts": NOW, "ok": 1}, "bad_type"),
                        ({"id": "c" * 129, "ts": NOW, "ok": True}, "out_of_range"),
                        ({"id": "c", "ts": NOW + 3_600_000, "ok": True}, "future_ts")):
        assert rejected(m.topic(DEV, "ack"), m.encode(bad)).reason == reason


# --- batches --------------------------------------------------------------------------------

def test_a_recorded_batch_with_one_bad_element_keeps_its_neighbours() -> None:
    payload = (PAYLOADS / "fix_batch_buffered.json").read_bytes()
    records = decode(FIX_TOPIC, payload, now_ms=NOW + 120_000, registered=REGISTERED)
    assert [type(r).__name__ for r in records] == ["Fix", "Rejected", "Fix"]
    bad = records[1]
    assert isinstance(bad, Rejected)
    assert (bad.reason, bad.element) == ("bad_type", 1)
    assert bad.detail == "fixes[1]: lat is a string, expected a number"
    assert orjson.loads(bad.payload)["seq"] == 1202  # the element, re-encoded
    assert records[2].src == "wifi" and records[0].sats == 9


def test_batch_elements_that_are_not_objects() -> None:
    payload = m.encode({"fixes": [m.fix(seq=1, ts=NOW), 7, None, m.fix(seq=2, ts=NOW)]})
    records = decode(FIX_TOPIC, payload, now_ms=NOW, registered=REGISTERED)
    assert [getattr(r, "reason", "ok") for r in records] == ["ok", "not_object", "not_object", "ok"]
    assert [getattr(r, "element", None) for r in records[1:3]] == [1, 2]


# --- totality -------------------------------------------------------------------------------

TOPICS = [FIX_TOPIC, m.topic(DEV, "hb"), m.topic(DEV, "evt"), m.topic(DEV, "ack"),
          "owntracks/nguoi01/dt01", "em/v1/dev/nope/fix", "em/v1/dev/x.y/fix"]
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["seq", "ts", "lat", "lon", "acc", "batt", "type", "fixes", "_type",
                         "tst", "src", "detail", "x"]), inner, max_size=6),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(TOPICS), st.binary(max_size=200))
def test_decode_is_total_on_any_bytes(topic: str, payload: bytes) -> None:
    records = decode(topic, payload, now_ms=NOW, registered=REGISTERED)
    assert records == [] or all(isinstance(r, Fix | Heartbeat | Event | CommandAck | Rejected) for r in records)
    assert all(r.reason in REASONS for r in records if isinstance(r, Rejected))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(TOPICS), JSON)
def test_decode_is_total_on_any_json(topic: str, value: object) -> None:
    try:
        payload = orjson.dumps(value)
    except orjson.JSONEncodeError:  # integers beyond 64 bits
        payload = repr(value).encode()
    records = decode(topic, payload, now_ms=NOW, registered=REGISTERED)
    assert all(isinstance(r, Fix | Heartbeat | Event | CommandAck | Rejected) for r in records)
