"""The simulated fleet, run on injected time: valid messages, realistic movement, scenarios."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta, timezone

import orjson
import pytest
from shapely.geometry import Point

from simulators import messages as m
from simulators.demo import build_demo_document
from simulators.fleet import Fleet, FleetConfig, batch_payloads
from simulators.geo import LocalFrame
from simulators.profiles import profiles
from tests.simulators.protocol import payload_errors

LOCAL = timezone(timedelta(hours=7))
MIN = 60_000


def local_ms(day: int, hh: int, mm: int = 0) -> int:
    """UTC ms of a local time on 2026-11-<day>."""
    return int(datetime(2026, 11, day, hh, mm, tzinfo=LOCAL).timestamp() * 1000)


@pytest.fixture(scope="module")
def doc() -> dict:
    return build_demo_document(seed=7, today=date(2026, 11, 26))


@pytest.fixture(scope="module")
def profs(doc):
    return {p.device_id: p for p in profiles(doc)}


def run(fleet: Fleet, start: int, end: int, step_ms: int) -> list[tuple[int, str, bytes, int]]:
    """Step from start to end; every message with the step time it was returned at."""
    out = []
    t = start
    while t < end:
        t = min(t + step_ms, end)
        out.extend((t, topic, payload, qos) for topic, payload, qos in fleet.step(t))
    return out


def fixes_by_device(msgs) -> dict[str, list[dict]]:
    out = defaultdict(list)
    for _, topic, payload, _ in msgs:
        if topic.endswith("/fix"):
            obj = orjson.loads(payload)
            out[topic.split("/")[3]].extend(obj["fixes"] if "fixes" in obj else [obj])
    return out


def outside_m(area, lon: float, lat: float, frame: LocalFrame) -> float:
    """Metres from a lon/lat point to a lon/lat area (0 inside)."""
    return frame.geom_to_xy(area).distance(Point(frame.to_xy(lon, lat)))


def depth_m(area, lon: float, lat: float, frame: LocalFrame) -> float:
    """Metres inside a lon/lat area (negative outside)."""
    local = frame.geom_to_xy(area)
    p = Point(frame.to_xy(lon, lat))
    return local.boundary.distance(p) if local.contains(p) else -local.distance(p)


@pytest.fixture(scope="module")
def normal_day(doc):
    """The whole demo fleet, no scenario, 07:00-13:00 local with a fix a minute."""
    fleet = Fleet.from_registry(doc, local_ms(26, 7), FleetConfig(fix_interval_s=60, seed=3))
    return fleet, run(fleet, local_ms(26, 7), local_ms(26, 13), 5 * MIN)


def test_every_message_is_valid(normal_day):
    _, msgs = normal_day
    kinds = defaultdict(int)
    for now, topic, payload, qos in msgs:
        kind = topic.rsplit("/", 1)[1]
        kinds[kind] += 1
        assert payload_errors(kind, payload, now) == [], (topic, payload)
        assert qos == (0 if kind == "hb" else 1)
        assert topic == m.topic(topic.split("/")[3], kind)
    assert kinds["fix"] > 30 * 300 and kinds["hb"] > 30 * 300


def test_timestamps_are_fix_times_not_send_times(normal_day):
    _, msgs = normal_day
    for now, _topic, payload, _ in msgs:
        obj = orjson.loads(payload)
        for item in obj.get("fixes", [obj]):
            assert local_ms(26, 7) <= item["ts"] <= now


def test_seq_increases_per_device(normal_day):
    _, msgs = normal_day
    seen = defaultdict(list)
    for _, topic, payload, _ in msgs:
        obj = orjson.loads(payload)
        seen[topic.split("/")[3]] += [(i["ts"], i["seq"]) for i in obj.get("fixes", [obj])]
    for items in seen.values():
        items.sort()
        seqs = [s for _, s in items]
        assert seqs == sorted(set(seqs)), "seq strictly increasing in ts order"


def test_normal_stays_in_residence(normal_day, profs):
    _, msgs = normal_day
    for dev, fixes in fixes_by_device(msgs).items():
        p = profs[dev]
        frame = LocalFrame(*p.home)
        for f in fixes:
            assert outside_m(p.residence, f["lon"], f["lat"], frame) <= f["acc"] + 1, (dev, f)
            for ban in p.bans:
                assert depth_m(ban, f["lon"], f["lat"], frame) <= f["acc"] + 1
            for c in p.protections:
                d = Point(frame.to_xy(f["lon"], f["lat"])).distance(Point(frame.to_xy(*c.center)))
                assert d >= c.radius_m - f["acc"] - 1


def test_people_move_at_walking_and_riding_speeds(normal_day, profs):
    _, msgs = normal_day
    far, speeds = 0, []
    for dev, fixes in fixes_by_device(msgs).items():
        frame = LocalFrame(*profs[dev].home)
        far += any(
            Point(frame.to_xy(f["lon"], f["lat"])).distance(Point(0, 0)) > 500
            for f in fixes
            if f["acc"] <= 30
        )
        speeds += [f["spd"] for f in fixes if "spd" in f]
    assert far >= 20  # most went somewhere
    assert max(speeds) <= 13
    assert any(1.0 <= s <= 1.8 for s in speeds) and any(7.5 <= s <= 12.5 for s in speeds)


def test_accuracy_and_sources_vary(normal_day):
    _, msgs = normal_day
    fixes = [f for fs in fixes_by_device(msgs).values() for f in fs]
    accs = [f["acc"] for f in fixes]
    assert sum(5 <= a <= 30 for a in accs) > 0.8 * len(accs)
    assert any(100 <= a <= 300 for a in accs)
    assert {f.get("src", "gnss") for f in fixes} == {"gnss", "wifi", "cell"}


def test_everyone_is_home_at_night(doc, profs):
    fleet = Fleet.from_registry(doc, local_ms(26, 20), FleetConfig(fix_interval_s=120, seed=4))
    msgs = run(fleet, local_ms(26, 20), local_ms(27, 2), 10 * MIN)
    for dev, fixes in fixes_by_device(msgs).items():
        frame = LocalFrame(*profs[dev].home)
        for f in fixes:
            if f["ts"] >= local_ms(26, 22) and f["acc"] <= 30:
                assert Point(frame.to_xy(f["lon"], f["lat"])).distance(Point(0, 0)) <= f["acc"] + 1


def test_same_seed_same_messages_whatever_the_step(doc):
    cfg = FleetConfig(fix_interval_s=15, seed=9, scenarios=("exit", "tamper"), gap_every_s=600)
    a = run(
        Fleet.from_registry(doc, local_ms(26, 9), cfg, limit=8),
        local_ms(26, 9),
        local_ms(26, 10),
        1000,
    )
    b = run(
        Fleet.from_registry(doc, local_ms(26, 9), cfg, limit=8),
        local_ms(26, 9),
        local_ms(26, 10),
        37 * 1000,
    )
    assert sorted(x[1:] for x in a) == sorted(x[1:] for x in b)


def test_exit_takes_them_a_kilometre_out(doc, profs):
    cfg = FleetConfig(fix_interval_s=30, scenarios=("exit",), share=1.0, seed=5)
    fleet = Fleet.from_registry(doc, local_ms(26, 9), cfg)
    msgs = run(fleet, local_ms(26, 9), local_ms(26, 11), 5 * MIN)
    leavers = [d for d, s in fleet.assignments.items() if s == "exit"]
    assert len(leavers) >= 20
    for dev, fixes in fixes_by_device(msgs).items():
        p = profs[dev]
        frame = LocalFrame(*p.home)
        if dev not in leavers:
            continue
        assert p.confined and not p.permits
        lon, lat = fleet.devices[dev].position(local_ms(26, 11))
        assert outside_m(p.residence, lon, lat, frame) >= 1000
        late = [f for f in fixes if f["ts"] >= local_ms(26, 10, 30) and f["acc"] <= 100]
        assert late and all(outside_m(p.residence, f["lon"], f["lat"], frame) >= 1000 for f in late)


def test_away_is_one_person_out_from_the_first_fix(doc, profs):
    """`away` (the demo's early alert): one confined person, whose very first fixes already lie
    far outside the residence, and who stays out; `exit` still plays its share beside it."""
    cfg = FleetConfig(fix_interval_s=10, scenarios=("away", "exit"), share=0.2, seed=1)
    start = local_ms(26, 9)
    fleet = Fleet.from_registry(doc, start, cfg)
    msgs = run(fleet, start, start + 10 * MIN, 5000)
    away = [d for d, s in fleet.assignments.items() if s == "away"]
    assert len(away) == 1 and list(fleet.assignments.values()).count("exit") >= 2
    p = profs[away[0]]
    frame = LocalFrame(*p.home)
    fixes = sorted(fixes_by_device(msgs)[away[0]], key=lambda f: f["ts"])
    assert fixes[0]["ts"] < start + 10_000  # within the first fix interval
    usable = [f for f in fixes if f["acc"] <= 100]
    assert len(usable) >= 30
    assert all(outside_m(p.residence, f["lon"], f["lat"], frame) >= 1000 for f in usable)


def test_enter_ban_goes_deep_into_a_banned_commune(doc, profs):
    cfg = FleetConfig(fix_interval_s=30, scenarios=("enter_ban",), share=1.0, seed=5)
    fleet = Fleet.from_registry(doc, local_ms(26, 9), cfg)
    run(fleet, local_ms(26, 9), local_ms(26, 11), 5 * MIN)
    banned = [d for d, s in fleet.assignments.items() if s == "enter_ban"]
    assert sorted(banned) == sorted(d for d, p in profs.items() if p.sentence_type == "cam_cu_tru")
    for dev in banned:
        p = profs[dev]
        lon, lat = fleet.devices[dev].position(local_ms(26, 11))
        frame = LocalFrame(*p.home)
        assert max(depth_m(b, lon, lat, frame) for b in p.bans) >= 500


def test_curfew_stands_outside_the_circle_at_night(doc, profs):
    cfg = FleetConfig(fix_interval_s=60, scenarios=("curfew",), share=1.0, seed=5)
    fleet = Fleet.from_registry(doc, local_ms(26, 21), cfg)
    run(fleet, local_ms(26, 21), local_ms(26, 23, 30), 5 * MIN)
    out = [d for d, s in fleet.assignments.items() if s == "curfew"]
    assert out
    for dev, p in profs.items():
        if p.curfew is None:
            continue
        frame = LocalFrame(*p.home)
        x, y = frame.to_xy(*fleet.devices[dev].position(local_ms(26, 23, 30)))
        d = Point(x, y).distance(Point(frame.to_xy(*p.curfew.center)))
        if dev in out:
            assert p.curfew.radius_m + 60 <= d <= p.curfew.radius_m + 150
        else:
            assert d <= 1  # the one with a permit is not in the scenario; at home


def test_tamper_and_offline(doc):
    cfg = FleetConfig(
        fix_interval_s=10,
        hb_interval_s=30,
        scenarios=("tamper", "offline"),
        share=0.2,
        seed=6,
        gap_every_s=0,
    )
    start = local_ms(26, 9)
    fleet = Fleet.from_registry(doc, start, cfg)
    msgs = run(fleet, start, start + 10 * MIN, 1000)
    by_dev = defaultdict(list)
    for _, topic, payload, _ in msgs:
        by_dev[topic.split("/")[3]].append((topic.rsplit("/", 1)[1], orjson.loads(payload)))
    cutoff = start + (cfg.scenario_after_s + cfg.scenario_spread_s) * 1000
    for dev, scenario in fleet.assignments.items():
        items = by_dev[dev]
        if scenario == "tamper":
            opened = [o["ts"] for k, o in items if k == "evt" and o["type"] == "strap_open"]
            assert len(opened) == 1 and opened[0] <= cutoff
            assert [o["strap"] for k, o in items if k == "hb" and o["ts"] > opened[0]][-1] == "open"
        else:
            assert all(o["ts"] <= cutoff for _, o in items)
    assert {"tamper", "offline"} == set(fleet.assignments.values())


def test_coverage_gaps_send_batches_of_at_most_500(doc):
    cfg = FleetConfig(fix_interval_s=1, hb_interval_s=60, gap_every_s=300, gap_s=(550, 700), seed=2)
    start = local_ms(26, 9)
    fleet = Fleet.from_registry(doc, start, cfg, limit=3)
    msgs = run(fleet, start, start + 60 * MIN, 10_000)
    sizes = []
    for now, topic, payload, _ in msgs:
        if topic.endswith("/fix"):
            assert len(payload) <= m.MAX_PAYLOAD_BYTES
            obj = orjson.loads(payload)
            if "fixes" in obj:
                sizes.append(len(obj["fixes"]))
                assert payload_errors("fix", payload, now) == []
    assert max(sizes) == 500 and any(s < 500 for s in sizes)


def test_batch_option(doc):
    cfg = FleetConfig(fix_interval_s=1, batch=50, gap_every_s=0, seed=2)
    start = local_ms(26, 9)
    msgs = run(Fleet.from_registry(doc, start, cfg, limit=2), start, start + 5 * MIN, 7000)
    fix_msgs = [orjson.loads(p) for _, t, p, _ in msgs if t.endswith("/fix")]
    assert fix_msgs and all(len(o["fixes"]) == 50 for o in fix_msgs)


def test_batch_payloads_split_by_size():
    big = [m.fix(seq=i, ts=1_795_000_000_000 + i, note="x" * 200) for i in range(500)]
    payloads = batch_payloads(big)
    assert len(payloads) > 1 and all(len(p) <= m.MAX_PAYLOAD_BYTES for p in payloads)
    assert sum(len(orjson.loads(p)["fixes"]) for p in payloads) == 500


def test_battery_events(doc):
    cfg = FleetConfig(fix_interval_s=300, hb_interval_s=300, gap_every_s=0, seed=1)
    start = local_ms(26, 7)
    msgs = run(Fleet.from_registry(doc, start, cfg), start, start + 30 * 60 * MIN, 60 * MIN)
    types = {orjson.loads(p)["type"] for _, t, p, _ in msgs if t.endswith("/evt")}
    assert {"battery_low", "charger_on", "charger_off"} <= types
    batts = [orjson.loads(p)["batt"] for _, t, p, _ in msgs if t.endswith("/hb")]
    assert min(batts) >= 0 and max(batts) <= 100


def test_downlink_commands(doc):
    start = local_ms(26, 9)
    fleet = Fleet.from_registry(doc, start, FleetConfig(fix_interval_s=60, gap_every_s=0), limit=1)
    fleet.step(start + 1000)
    replies = fleet.command("dev-0001", m.encode(m.command("c1", "locate")), start + 2000)
    assert [t.rsplit("/", 1)[1] for t, _, _ in replies] == ["fix", "ack"]
    assert orjson.loads(replies[1][1]) == {"id": "c1", "ts": start + 2000, "ok": True}
    fleet.command("dev-0001", m.encode(m.command("c2", "set_interval", fix_s=5)), start + 3000)
    ts = [orjson.loads(p)["ts"] for t, p, _ in fleet.step(start + 63_000) if t.endswith("/fix")]
    assert len(ts) >= 11 and all(4900 <= b - a <= 5100 for a, b in zip(ts, ts[1:], strict=False))
    bad = fleet.command("dev-0001", m.encode(m.command("c3", "self_destruct")), start + 64_000)
    assert orjson.loads(bad[-1][1])["ok"] is False
    assert (
        fleet.command("dev-9999", b"{}", start) == []
        and fleet.command("dev-0001", b"[", start) == []
    )


def test_profiles_read_zones_permits_and_fall_back(doc, profs):
    assert len(profs) == 30
    with_permit = {p.supervisee_id for p in profs.values() if p.permits}
    assert with_permit == {p["supervisee"] for p in doc["permits"]}
    for p in profs.values():
        for start, end in p.permits:
            assert 1.7e12 < start < end
    curfews = [p for p in profs.values() if p.curfew]
    assert curfews and all(p.curfew.schedule and p.home == p.curfew.center for p in curfews)
    bare = {
        "units": [],
        "supervisees": [{"id": "a", "zones": []}],
        "devices": [{"id": "d1", "supervisee": "a"}, {"id": "d2"}],
    }
    fallback = profiles(bare)
    assert [p.device_id for p in fallback] == ["d1", "d2"]
    assert all(p.residence is None and not p.confined for p in fallback)
    fleet = Fleet(fallback, local_ms(26, 9), FleetConfig(fix_interval_s=10))
    msgs = fleet.step(local_ms(26, 9, 5))
    assert {t.split("/")[3] for t, _, _ in msgs} == {"d1", "d2"}
