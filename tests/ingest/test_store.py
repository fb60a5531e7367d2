"""Batched storage against a real PostgreSQL: dedup, out-of-order fixes, exact timestamps,
device state moving forward only, dead letters, and which rows count as new."""

from __future__ import annotations

import numpy as np
import psycopg
import pytest

from ingest.decode import Decoded, decode_messages
from ingest.records import FixColumns, Received, Rejected
from ingest.registry import RegistryCache, RegistrySnapshot, load_registry
from ingest.store import Store, device_latest
from simulators import messages as m
from tests.ingest.helpers import register_devices

pytestmark = pytest.mark.services

NOW = 1_732_600_000_000
DEVICES = ["st-a", "st-b", "st-c"]


@pytest.fixture
def registry(db: psycopg.Connection) -> RegistrySnapshot:
    register_devices(db, DEVICES, supervisee_id="sv-store")
    register_devices(db, ["st-free"], supervisee_id="sv-store")
    db.execute("UPDATE devices SET supervisee_id = NULL WHERE id = 'st-free'")
    db.commit()
    return load_registry(db)


@pytest.fixture
def store(db_url: str, registry: RegistrySnapshot):
    from schema import connect

    with connect(db_url) as conn:
        yield Store(conn, max_accuracy_m=100.0)


def item(device: str, kind: str, obj: object, received: int = NOW) -> Received:
    return Received(m.topic(device, kind), m.encode(obj), received, 0, 1, 0)


def write(store: Store, registry: RegistrySnapshot, items: list[Received]):
    decoded = decode_messages(items, registered=registry)
    return decoded, store.write(decoded, registry, min(i.received_ms for i in items))


def rows(db: psycopg.Connection, sql: str, *params: object) -> list[tuple]:
    out = db.execute(sql, params).fetchall()
    db.commit()
    return out


def test_fixes_are_stored_with_exact_timestamps_and_nulls(store, registry, db) -> None:
    fixes = [m.fix(seq=1, ts=NOW - 1, spd=1.25, hdg=90, alt=-3.5, sats=7, src="cell"),
             m.fix(seq=2, ts=NOW + 999)]
    _, stored = write(store, registry, [item("st-a", "fix", f) for f in fixes])
    assert len(stored) == 2 and stored.supervisee_id.tolist() == ["sv-store", "sv-store"]
    got = rows(db, "SELECT seq, (extract(epoch FROM ts) * 1000)::int8, spd, hdg, alt, sats, src, "
               "(extract(epoch FROM received_at) * 1000)::int8, supervisee_id "
               "FROM fixes ORDER BY seq")
    assert got == [(1, NOW - 1, 1.25, 90.0, -3.5, 7, "cell", NOW, "sv-store"),
                   (2, NOW + 999, None, None, None, None, "gnss", NOW, "sv-store")]


def test_a_repeat_is_not_a_second_row_and_not_new(store, registry, db) -> None:
    batch = [item("st-a", "fix", m.fix(seq=i, ts=NOW + i)) for i in range(10)]
    _, first = write(store, registry, batch)
    _, again = write(store, registry, batch)
    assert (len(first), len(again)) == (10, 0)
    assert rows(db, "SELECT count(*) FROM fixes") == [(10,)]


def test_only_the_new_fixes_of_a_mixed_batch_are_handed_on(store, registry, db) -> None:
    old = [item("st-a", "fix", m.fix(seq=i, ts=NOW + i)) for i in range(5)]
    write(store, registry, old)
    new = [item("st-b", "fix", m.fix(seq=i, ts=NOW + i, lat=20.5)) for i in range(3)]
    repeat_in_batch = item("st-c", "fix", m.fix(seq=9, ts=NOW))
    _, stored = write(store, registry, [*old[:3], new[0], *old[3:], new[1], repeat_in_batch,
                                        repeat_in_batch, new[2]])
    assert sorted(zip(stored.device_id.tolist(), stored.seq.tolist(), strict=True)) == [
        ("st-b", 0), ("st-b", 1), ("st-b", 2), ("st-c", 9)]
    assert np.all(stored.lat[stored.device_id == "st-b"] == 20.5)
    assert rows(db, "SELECT count(*) FROM fixes") == [(9,)]


def test_same_seq_with_a_new_ts_is_a_new_fix(store, registry, db) -> None:
    """A device that restarts its counter sends new ts (contract §1)."""
    write(store, registry, [item("st-a", "fix", m.fix(seq=0, ts=NOW))])
    _, stored = write(store, registry, [item("st-a", "fix", m.fix(seq=0, ts=NOW + 60_000))])
    assert len(stored) == 1


def test_out_of_order_fixes_are_stored_and_state_moves_forward_only(store, registry, db) -> None:
    write(store, registry, [item("st-a", "fix", m.fix(seq=5, ts=NOW, lat=21.5, acc=5))])
    _, stored = write(store, registry, [item("st-a", "fix", m.fix(seq=s, ts=NOW - 1000 * s,
                                                                   lat=20.0, acc=300))
                                        for s in (3, 1, 4, 2)])
    assert len(stored) == 4
    assert rows(db, "SELECT count(*) FROM fixes WHERE device_id = 'st-a'") == [(5,)]
    state = rows(db, "SELECT (extract(epoch FROM last_fix_ts) * 1000)::int8, last_fix_lat, "
                 "(extract(epoch FROM last_good_fix_ts) * 1000)::int8 FROM device_state "
                 "WHERE device_id = 'st-a'")
    assert state == [(NOW, 21.5, NOW)]


def test_device_state_latest_fix_good_fix_and_heartbeat(store, registry, db) -> None:
    items = [item("st-b", "fix", m.fix(seq=1, ts=NOW, acc=8)),
             item("st-b", "fix", m.fix(seq=2, ts=NOW + 10, lat=20.9, acc=250), NOW + 50),
             item("st-b", "hb", m.heartbeat(seq=1, ts=NOW + 5, batt=41, strap="open",
                                            case="ok", gnss="nofix", rssi=-90, fw="1.2",
                                            chg=True)),
             item("st-c", "evt", m.event("case_open", 1, NOW), NOW + 70)]
    write(store, registry, items)
    got = rows(db, "SELECT device_id, (extract(epoch FROM last_seen_at) * 1000)::int8, "
               "(extract(epoch FROM last_fix_ts) * 1000)::int8, last_fix_lat, last_fix_acc, "
               "(extract(epoch FROM last_good_fix_ts) * 1000)::int8, "
               "(extract(epoch FROM last_hb_ts) * 1000)::int8, battery, charging, strap, "
               "\"case\", gnss, rssi, fw FROM device_state ORDER BY device_id")
    assert got == [("st-b", NOW + 50, NOW + 10, 20.9, 250.0, NOW, NOW + 5, 41.0, True, "open",
                    "ok", "nofix", -90.0, "1.2"),
                   ("st-c", NOW + 70, None, None, None, None, None, None, None, None, None,
                    None, None, None)]
    # an older heartbeat changes nothing; a newer one without optional fields keeps them
    write(store, registry, [item("st-b", "hb", m.heartbeat(seq=0, ts=NOW, batt=99)),
                            item("st-b", "hb", m.heartbeat(seq=2, ts=NOW + 20, batt=40))])
    got = rows(db, "SELECT battery, strap, fw, (extract(epoch FROM last_hb_ts) * 1000)::int8 "
               "FROM device_state WHERE device_id = 'st-b'")
    assert got == [(40.0, "open", "1.2", NOW + 20)]


def test_heartbeats_and_events_dedup_and_return_new_ones(store, registry, db) -> None:
    hb = item("st-a", "hb", m.heartbeat(seq=1, ts=NOW))
    ev = item("st-a", "evt", m.event("strap_open", 1, NOW, detail={"ohm": 1e5, "ok": False}))
    _, first = write(store, registry, [hb, ev, hb])
    _, again = write(store, registry, [hb, ev])
    assert (len(first.heartbeats), len(first.events)) == (1, 1)
    assert (len(again.heartbeats), len(again.events)) == (0, 0)
    assert rows(db, "SELECT type, detail FROM device_events") == [
        ("strap_open", {"ohm": 100000.0, "ok": False})]
    assert first.supervisees == {"st-a": "sv-store"}


def test_dead_letters_keep_reason_detail_element_and_raw_payload(store, registry, db) -> None:
    bad_batch = m.encode(m.fix_batch([m.fix(seq=1, ts=NOW), m.fix(seq=2, ts=NOW, lat=95.0)]))
    items = [Received("em/v1/dev/st-a/fix", bad_batch, NOW + 1, 0, 1, 0),
             Received("em/v1/dev/nobody/fix", b"{}", NOW + 2, 0, 1, 0),
             Received("em/v1/dev/bad.topic/fix", b"\x00\xff", NOW + 3, 0, 1, 0)]
    decoded, stored = write(store, registry, items)
    assert len(stored) == 1 and stored.rejected == 3
    got = rows(db, "SELECT (extract(epoch FROM received_at) * 1000)::int8, topic, device_id, "
               "reason, element, payload FROM dead_letters ORDER BY received_at")
    assert got[0][:5] == (NOW + 1, "em/v1/dev/st-a/fix", "st-a", "out_of_range", 1)
    assert b'"lat":95.0' in got[0][5]
    assert got[1] == (NOW + 2, "em/v1/dev/nobody/fix", "nobody", "unknown_device", None, b"{}")
    assert got[2] == (NOW + 3, "em/v1/dev/bad.topic/fix", None, "bad_topic", None, b"\x00\xff")


def test_text_with_nul_is_stored_as_a_dead_letter(store, registry, db) -> None:
    reject = Rejected("bad_topic", "odd \x00 detail", None, None, "em/v1/dev/a\x00b/fix", b"x", NOW)
    store.write(Decoded(rejected=[reject]), registry, NOW)
    assert rows(db, "SELECT topic, detail FROM dead_letters") == [
        ("em/v1/dev/a\ufffdb/fix", "odd \ufffd detail")]


def test_an_unassigned_device_stores_fixes_without_a_supervisee(store, registry, db) -> None:
    _, stored = write(store, registry, [item("st-free", "fix", m.fix(seq=1, ts=NOW))])
    assert stored.supervisee_id.tolist() == [None]
    assert rows(db, "SELECT supervisee_id FROM fixes") == [(None,)]


def test_a_failed_write_rolls_back_everything(store, registry, db) -> None:
    decoded = decode_messages([item("st-a", "fix", m.fix(seq=1, ts=NOW)),
                               Received("em/v1/dev/nobody/fix", b"{}", NOW, 0, 1, 0)], registered=registry)
    broken = RegistrySnapshot.build([("st-a", "sv-store")])
    broken.chunks[:] = b"\x00" * broken.chunks.dtype.itemsize  # a corrupt COPY row
    with pytest.raises(psycopg.Error):
        store.write(decoded, broken, NOW)
    assert rows(db, "SELECT (SELECT count(*) FROM fixes), (SELECT count(*) FROM dead_letters)") \
        == [(0, 0)]
    assert len(store.write(decoded, registry, NOW)) == 1  # the connection is usable again


def test_a_large_batch(store, registry, db) -> None:
    items = [item(DEVICES[i % 3], "fix", m.fix(seq=i, ts=NOW - 10_000 + i)) for i in range(6000)]
    _, stored = write(store, registry, items)
    assert len(stored) == 6000
    assert rows(db, "SELECT count(*), count(DISTINCT (device_id, ts, seq)) FROM fixes") == [
        (6000, 6000)]


def test_device_latest_matches_a_scalar_reference() -> None:
    rng = np.random.default_rng(7)
    n = 500
    rows_ = rng.integers(0, 20, n)
    fixes = FixColumns(
        np.array([f"d{r}" for r in rows_], dtype=object), rng.integers(0, 5, n),
        rng.integers(0, 30, n), rng.random(n), rng.random(n), rng.choice([5.0, 150.0], n),
        np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan), np.full(n, -1, np.int16),
        np.zeros(n, np.int16), rng.integers(0, 1000, n))
    devices, last, seen, good = device_latest(fixes, rows_, 100.0)
    for d, i, s, g in zip(devices, last, seen, good, strict=True):
        mine = np.flatnonzero(rows_ == d)
        best = max(mine, key=lambda j: (fixes.ts[j], fixes.seq[j]))
        assert (fixes.ts[i], fixes.seq[i]) == (fixes.ts[best], fixes.seq[best])
        assert s == fixes.received_ms[mine].max()
        ok = [fixes.ts[j] for j in mine if fixes.acc[j] <= 100.0]
        assert g == (max(ok) if ok else np.iinfo(np.int64).min)


def test_registry_cache_reloads_when_the_registry_changes(db: psycopg.Connection) -> None:
    clock = [0.0]
    cache = RegistryCache(check_every_s=1.0, reload_every_s=60.0, clock=lambda: clock[0])
    register_devices(db, ["rc-1"], supervisee_id="sv-rc")
    first = cache.get(db)
    register_devices(db, ["rc-2"], supervisee_id="sv-rc")
    assert cache.get(db) is first  # checked at most every second
    clock[0] = 1.5
    second = cache.get(db)
    assert "rc-2" in second and "rc-2" not in first
    db.execute("UPDATE devices SET supervisee_id = NULL WHERE id = 'rc-1'")
    db.execute("UPDATE registry_version SET version = version + 1")
    db.commit()
    clock[0] = 3.0
    assert cache.get(db).supervisee("rc-1") is None


def test_command_answers_are_recorded_once_and_unknown_ones_dead_lettered(store, registry, db):
    db.execute("INSERT INTO device_commands (id, device_id, type, payload, sent_at) VALUES "
               "('c1', 'st-a', 'locate', '{}', now()), ('c2', 'st-b', 'locate', '{}', now())")
    db.commit()
    answer = item("st-a", "ack", m.ack("c1", ts=NOW - 5, ok=True), NOW)
    wrong_device = item("st-a", "ack", m.ack("c2", ts=NOW), NOW)
    _, first = write(store, registry, [answer, answer, wrong_device])
    assert [a.id for a in first.acks] == ["c1"] and first.rejected == 1
    _, again = write(store, registry, [item("st-a", "ack", m.ack("c1", ts=NOW, ok=False), NOW + 9)])
    assert again.acks == [] and again.rejected == 0  # a repeat: the first answer counts
    assert rows(db, "SELECT id, ok, (extract(epoch FROM answered_at) * 1000)::int8, "
                "(extract(epoch FROM ack_ts) * 1000)::int8 FROM device_commands ORDER BY id") == [
        ("c1", True, NOW, NOW - 5), ("c2", None, None, None)]
    assert rows(db, "SELECT reason, device_id FROM dead_letters") == [("unknown_command", "st-a")]
    assert rows(db, "SELECT (extract(epoch FROM last_seen_at) * 1000)::int8 FROM device_state "
                "WHERE device_id = 'st-a'") == [(NOW + 9,)]
