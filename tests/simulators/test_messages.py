"""Message builders: valid defaults, overrides, and invalid payloads that are what they say."""

from __future__ import annotations

import json
import math

import orjson
import pytest

from simulators import messages as m
from tests.simulators.protocol import event_errors, fix_errors, heartbeat_errors, payload_errors

NOW = 1_795_000_000_000  # 2026-11-17, UTC ms


def test_fix_defaults_are_valid_per_contract():
    f = m.fix(ts=NOW)
    assert f == {"seq": 0, "ts": NOW, "lat": m.DEFAULT_LAT, "lon": m.DEFAULT_LON, "acc": 10.0}
    assert fix_errors(f, NOW) == []


def test_default_ts_is_now_in_ms():
    before = m.now_ms()
    f = m.fix()
    assert before <= f["ts"] <= m.now_ms()
    assert 1.7e12 < f["ts"] < 1e13  # milliseconds, not seconds


def test_overrides_replace_and_add_fields():
    f = m.fix(
        seq=7, ts=NOW, lat=-90, lon=180, acc=0, spd=1.4, hdg=359.9, alt=12.0, sats=9, src="wifi"
    )
    assert f["seq"] == 7 and f["lat"] == -90 and f["src"] == "wifi"
    assert fix_errors(f, NOW) == []
    assert "lat" not in m.drop(f, "lat")


def test_heartbeat_and_event_defaults_are_valid():
    hb = m.heartbeat(seq=3, ts=NOW, chg=True, strap="ok", case="ok", rssi=-80, gnss="fix", fw="x")
    assert heartbeat_errors(hb, NOW) == []
    assert 0 <= m.heartbeat()["batt"] <= 100
    for t in m.EVENT_TYPES:
        assert event_errors(m.event(t, seq=1, ts=NOW, detail={"k": 1}), NOW) == []


def test_batch_limit():
    batch = m.fix_batch(m.fix(seq=i, ts=NOW + i) for i in range(m.MAX_BATCH))
    assert len(batch["fixes"]) == 500
    assert payload_errors("fix", m.encode(batch), NOW + 500) == []
    with pytest.raises(ValueError):
        m.fix_batch([m.fix(seq=i, ts=NOW) for i in range(501)])
    assert len(m.fix_batch([m.fix()] * 501, strict=False)["fixes"]) == 501


def test_topics():
    assert m.topic("dev-0001", "fix") == "em/v1/dev/dev-0001/fix"
    assert [m.topic("a_B-9", k).rsplit("/", 1)[1] for k in ("fix", "hb", "evt", "ack")] == [
        "fix",
        "hb",
        "evt",
        "ack",
    ]
    with pytest.raises(ValueError):
        m.topic("dev-0001", "gps")
    with pytest.raises(ValueError):
        m.topic("dev/0001", "fix")
    with pytest.raises(ValueError):
        m.topic("x" * 65, "fix")


def test_encode_is_compact_utf8_json():
    data = m.encode(m.event("strap_open", ts=NOW, detail={"note": "Nguyễn"}))
    assert isinstance(data, bytes)
    assert json.loads(data.decode("utf-8"))["detail"]["note"] == "Nguyễn"
    assert b" " not in m.encode(m.fix(ts=NOW))


def test_owntracks_location():
    loc = m.owntracks_location(lat=21.1, lon=106.0, tst=1_795_000_000, batt=50)
    assert loc["_type"] == "location" and loc["tst"] == 1_795_000_000 and loc["batt"] == 50
    assert m.owntracks_location()["tst"] < 1e11  # seconds, as OwnTracks sends
    assert m.owntracks_topic("thanh", "phone") == "owntracks/thanh/phone"
    assert m.owntracks_device_id("thanh", "phone") == "thanh-phone"


def test_ack_and_command():
    assert m.ack("c1", ts=NOW) == {"id": "c1", "ts": NOW, "ok": True}
    assert m.command("c2", "set_interval", fix_s=30) == {
        "id": "c2",
        "type": "set_interval",
        "fix_s": 30,
    }


def test_device_counter_increases_per_device():
    c = m.DeviceCounter()
    assert [c.next("a"), c.next("a"), c.next("b"), c.next("a")] == [0, 1, 0, 2]
    assert c.peek("a") == 3 and c.peek("z") == 0
    assert m.DeviceCounter(start=10).next("a") == 10


# --- invalid payloads ---------------------------------------------------------------------


@pytest.fixture
def bad() -> dict[str, bytes]:
    return m.invalid_payloads(NOW, seq=5)


def test_one_payload_per_reason(bad):
    assert tuple(bad) == m.INVALID_REASONS
    assert all(isinstance(v, bytes) for v in bad.values())


def test_not_json(bad):
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(bad["not_json"])
    with pytest.raises(ValueError):
        json.loads(bad["not_json"])


def test_not_object(bad):
    assert not isinstance(orjson.loads(bad["not_object"]), dict)


def test_missing_and_mistyped_and_out_of_range(bad):
    missing = orjson.loads(bad["missing_field"])
    assert "lat" not in missing and fix_errors(missing, NOW) == ["lat None"]
    assert fix_errors(orjson.loads(bad["mistyped_field"]), NOW) == ["seq '5'"]
    assert fix_errors(orjson.loads(bad["out_of_range"]), NOW) == ["lat 91.0"]


def test_nan_and_infinity_are_raw_tokens(bad):
    for reason, field in (("nan", "lat"), ("infinity", "lon")):
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(bad[reason])  # strict JSON has no NaN
        value = json.loads(bad[reason])[field]  # Python's lenient parser reads them
        assert not math.isfinite(value)


def test_future_ts(bad):
    f = orjson.loads(bad["future_ts"])
    assert f["ts"] > NOW + m.MAX_FUTURE_MS
    assert fix_errors(f, NOW) == ["ts in the future"]
    assert fix_errors(f, f["ts"]) == []  # nothing else wrong


def test_stale_ts(bad):
    f = orjson.loads(bad["stale_ts"])
    assert f["ts"] < NOW - m.MAX_PAST_MS
    assert fix_errors(f, NOW) == ["ts too far in the past"]
    assert fix_errors(f, f["ts"]) == []  # nothing else wrong


def test_oversized_is_otherwise_valid(bad):
    assert len(bad["oversized"]) > m.MAX_PAYLOAD_BYTES
    assert fix_errors(orjson.loads(bad["oversized"]), NOW) == []


def test_batch_with_one_bad_element(bad):
    fixes = orjson.loads(bad["batch_bad_element"])["fixes"]
    assert [bool(fix_errors(f, NOW)) for f in fixes] == [False, True, False]
    assert [f["seq"] for f in fixes] == [5, 6, 7]


def test_every_invalid_case_is_invalid():
    cases = m.invalid_cases(NOW)
    assert {c.reason for c in cases} == set(m.INVALID_REASONS)
    assert {c.kind for c in cases} == {"fix", "hb", "evt"}
    for c in cases:
        if c.reason == "batch_bad_element":
            continue
        if c.reason in ("nan", "infinity", "not_json"):
            assert payload_errors(c.kind, c.payload, NOW) == ["not JSON"], c.label
            continue
        assert payload_errors(c.kind, c.payload, NOW), c.label


def test_invalid_cases_cover_each_required_field():
    labels = {c.label for c in m.invalid_cases(NOW)}
    for kind, fields in (
        ("fix", "seq ts lat lon acc"),
        ("hb", "seq ts batt"),
        ("evt", "seq ts type"),
    ):
        for name in fields.split():
            assert f"{kind} without {name}" in labels
