"""The state store against a real PostgreSQL: decision states out and back, one statement per
batch. (Loading the registry into a fence is the registry package's: tests/registry.)"""

import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import psycopg
import pytest

from geofence.fence import Fence
from geofence.policy import Supervisee
from geofence.store import load_states, save_states
from geofence.transitions import State
from geofence.zones import parse_zone

from .helpers import T0, offset

pytestmark = pytest.mark.services
MIGRATIONS = Path(__file__).resolve().parents[2] / "schema" / "migrations"
SQUARE = [[105.80, 21.00], [105.81, 21.00], [105.81, 21.01], [105.80, 21.01], [105.80, 21.00]]


def _with_db(url: str, name: str) -> str:
    p = urlsplit(url)
    return urlunsplit((p.scheme, p.netloc, "/" + name, p.query, p.fragment))


@pytest.fixture
def conn(pg_server: str) -> Iterator[psycopg.Connection]:
    """A scratch database with the registry (0001) and the geofence state (0010) tables."""
    name = f"gf_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        with psycopg.connect(_with_db(pg_server, name)) as c:
            for f in ("0001_registry.sql", "0010_geofence_state.sql"):
                c.execute((MIGRATIONS / f).read_text("utf-8"))
            c.commit()
            yield c
    finally:
        with psycopg.connect(pg_server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def seed(c: psycopg.Connection) -> Fence:
    """Two supervisees in the database; a fence holding S1's home zone (in memory)."""
    c.execute("INSERT INTO units (code, name) VALUES ('CAX-1', 'Công an xã 1')")
    c.execute("""INSERT INTO supervisees (id, name, sentence_type, sentence_start, sentence_end, unit)
                 VALUES ('S1', 'A', 'an_treo', '2025-01-01', '2027-12-31', 'CAX-1'),
                        ('S2', 'B', 'cam_cu_tru', '2025-01-01', '2027-12-31', 'CAX-1')""")  # fmt: skip
    c.commit()
    return _fence(load_states(c))


def _fence(states: dict[str, bytes]) -> Fence:
    home = parse_zone({"id": "home", "kind": "inclusion", "purpose": "residence",
                       "geometry": {"type": "Polygon", "coordinates": [SQUARE]}}, "S1")
    ban = parse_zone({"id": "ban", "kind": "exclusion", "purpose": "ban",
                      "geometry": {"type": "Polygon", "coordinates": [SQUARE]}}, "S2")
    sups = [Supervisee(s, t, date(2025, 1, 1), date(2027, 12, 31))
            for s, t in (("S1", "an_treo"), ("S2", "cam_cu_tru"))]
    fence = Fence()
    fence.load(sups, [home, ban], [], states, now_ms=T0)
    return fence


def test_decide_save_and_restart_from_the_database(conn):
    fence = seed(conn)
    away = offset(105.805, 21.005, 4000, 0)
    ts = T0 + np.arange(3) * 30_000
    out = fence.decide(["S1"] * 3, ts, np.full(3, away[0]), np.full(3, away[1]), np.full(3, 10.0))
    assert [(t.zone_id, t.active) for t in out] == [("home", True)]
    calls = []

    class Counting:
        def execute(self, *a):
            calls.append(a[0])
            return conn.execute(*a)

    assert save_states(Counting(), fence.drain_changed()) == 2  # type: ignore[arg-type]
    assert len(calls) == 1  # one statement for the batch
    conn.commit()
    stored = load_states(conn)
    assert State.from_bytes(stored["S1"]) == fence.states["S1"]

    again = _fence(load_states(conn))
    assert again.tick(int(ts[-1])) == []
    assert (
        again.decide(["S1"] * 3, ts, np.full(3, away[0]), np.full(3, away[1]), np.full(3, 10.0))
        == []
    )
    save_states(conn, {"S1": again.states["S1"].to_bytes()})  # upsert
    conn.commit()
    assert conn.execute("SELECT count(*) FROM geofence_state").fetchone() == (2,)
    assert save_states(conn, {}) == 0
