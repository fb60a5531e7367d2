"""The registry's loaders into the live fence against a real PostgreSQL (moved from
tests/geofence/test_store.py): rows written as before versioning, through the views, become
validated zones and permits under the one revocation rule; states out and back."""

import json

import numpy as np
import psycopg
import pytest

from geofence.fence import Fence
from geofence.store import load_states, save_states
from geofence.transitions import State
from registry import load_fence, load_permits, load_zones, reload_supervisee
from tests.geofence.helpers import T0, offset

pytestmark = pytest.mark.services
SQUARE = [[105.80, 21.00], [105.81, 21.00], [105.81, 21.01], [105.80, 21.01], [105.80, 21.00]]


@pytest.fixture
def conn(db: psycopg.Connection) -> psycopg.Connection:
    """A fresh database with every migration applied (tests/conftest.py)."""
    return db


def seed(c: psycopg.Connection) -> None:
    c.execute("INSERT INTO units (code, name) VALUES ('CAX-1', 'Công an xã 1')")
    c.execute("""INSERT INTO supervisees (id, name, sentence_type, sentence_start, sentence_end, unit)
                 VALUES ('S1', 'A', 'an_treo', '2025-01-01', '2027-12-31', 'CAX-1'),
                        ('S2', 'B', 'cam_cu_tru', '2025-01-01', '2027-12-31', 'CAX-1')""")  # fmt: skip
    geom = json.dumps({"type": "Polygon", "coordinates": [SQUARE]})
    sched = json.dumps([{"days": [1, 2, 3, 4, 5, 6, 7], "start": "22:00", "end": "06:00"}])
    c.execute("INSERT INTO zones (supervisee_id, id, kind, purpose, geometry, margin_m) VALUES "
              "('S1', 'home', 'inclusion', 'residence', %s, 15)", (geom,))  # fmt: skip
    c.execute("INSERT INTO zones (supervisee_id, id, kind, purpose, center_lon, center_lat, radius_m, schedule,"
              " confirm_fixes) VALUES ('S1', 'night', 'inclusion', 'curfew', 105.805, 21.005, 150, %s, 3)",
              (sched,))  # fmt: skip
    c.execute("INSERT INTO zones (supervisee_id, id, kind, purpose, geometry, escalate_after_s) VALUES "
              "('S2', 'ban', 'exclusion', 'ban', %s, 3600)", (geom,))  # fmt: skip
    dest = json.dumps({"type": "Polygon", "coordinates": [[[p[0] + 0.2, p[1]] for p in SQUARE]]})
    c.execute("""INSERT INTO permits (supervisee_id, valid_from, valid_to, reason, category, destination, anywhere)
                 VALUES ('S1', '2026-03-01T08:00+07', '2026-03-05T08:00+07', 'hospital', 'medical', %s, false),
                        ('S1', '2026-04-01T08:00+07', '2026-04-10T08:00+07', 'work', 'work', NULL, true)""",
              (dest,))  # fmt: skip
    c.execute("""INSERT INTO permits (supervisee_id, valid_from, valid_to, reason, category, anywhere, revoked_at)
                 VALUES ('S1', '2026-05-01T08:00+07', '2026-05-10T08:00+07', 'trip', 'family', true,
                         '2026-05-03T08:00+07'),
                        ('S1', '2026-06-01T08:00+07', '2026-06-10T08:00+07', 'cancelled', 'family', true,
                         '2026-05-20T08:00+07')""")  # fmt: skip
    c.commit()


def test_registry_rows_become_validated_zones_and_permits(conn):
    seed(conn)
    zones = {(z.supervisee_id, z.id): z for z in load_zones(conn)}
    assert zones[("S1", "home")].margin_m == 15 and zones[("S1", "home")].circle is None
    night = zones[("S1", "night")]
    assert (
        night.circle is not None
        and night.circle.radius_m == 150
        and night.confirm_fixes == 3
        and night.scheduled
    )
    assert zones[("S2", "ban")].escalate_after_s == 3600
    permits = load_permits(conn)
    assert [p.reason for p in permits] == [
        "hospital",
        "work",
        "trip",
    ]  # cancelled before it started
    assert permits[0].destination is not None and permits[1].anywhere
    assert permits[2].to_ms - permits[2].from_ms == 2 * 86_400_000  # revoked after two days


def test_decide_save_and_restart_from_the_database(conn):
    seed(conn)
    fence = Fence()
    load_fence(conn, fence, now_ms=T0)
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

    again = Fence()
    load_fence(conn, again, now_ms=int(ts[-1]))
    assert again.tick(int(ts[-1])) == []
    assert (
        again.decide(["S1"] * 3, ts, np.full(3, away[0]), np.full(3, away[1]), np.full(3, 10.0))
        == []
    )
    save_states(conn, {"S1": again.states["S1"].to_bytes()})  # upsert
    conn.commit()
    assert conn.execute("SELECT count(*) FROM geofence_state").fetchone() == (2,)


def test_reload_one_supervisee_after_a_zone_change(conn):
    seed(conn)
    fence = Fence()
    load_fence(conn, fence, now_ms=T0)
    conn.execute("DELETE FROM zones WHERE supervisee_id = 'S2'")
    conn.commit()
    assert reload_supervisee(conn, fence, "S2", now_ms=T0) == []
    assert fence.index.zones_of(fence.index.index_of("S2")) == ()
    conn.execute("DELETE FROM supervisees WHERE id = 'S2'")
    conn.commit()
    reload_supervisee(conn, fence, "S2", now_ms=T0)
    assert "S2" not in fence.index
