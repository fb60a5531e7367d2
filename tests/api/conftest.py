"""A seeded registry for the API tests: a province (PC10) with two communes, another province
with one, officers of every role, supervisees with zones, devices, fixes, alerts made by the
alerts engine's own rule path, and dead letters.

``world`` is one database per test module (argon2 hashing and seeding once); tests that need a
pristine database use the function-scoped ``db_url`` of tests/conftest.py with ``seed``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from psycopg.types.json import Jsonb

from api.app import create_app
from api.officers import create_officer, ensure_admin
from config.settings import Settings
from schema import connect
from tests.conftest import cloned_database

PROVINCE, COMMUNE_A, COMMUNE_B = "PC10-T", "CAX-T01", "CAX-T02"
OTHER_PROVINCE, COMMUNE_X = "PC10-X", "CAX-X01"
SV_A, SV_B, SV_X = "SV-A1", "SV-B1", "SV-X1"
SV_A2 = "SV-A2"  # a second supervisee of commune A, wearing DEV_SPARE
DEV_A, DEV_B, DEV_X, DEV_FREE = "dev-a1", "dev-b1", "dev-x1", "dev-free"
DEV_SPARE = "dev-a-spare"  # SV_A2's device, for unassigning (one device per supervisee)
NAME_A, NAME_B = "Nguyễn Văn Thử A", "Trần Thị Thử B"  # never in a response to an outsider
PASSWORD = "mat-khau-thu-nghiem"
ADMIN_PASSWORD = "admin-mat-khau-1"
SECRET = "api-test-signing-key-" + "k" * 32
LAT0, LON0 = 21.18, 106.07  # Bắc Ninh
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z

OFFICERS = {  # username -> (role, unit)
    "tinh.t": ("province", PROVINCE),
    "xa.a": ("commune", COMMUNE_A),
    "xa.b": ("commune", COMMUNE_B),
    "tinh.x": ("province", OTHER_PROVINCE),
    "xa.x": ("commune", COMMUNE_X),
}


def square(lat: float, lon: float, d: float) -> dict:
    return {"type": "Polygon", "coordinates": [[[lon - d, lat - d], [lon + d, lat - d],
                                                [lon + d, lat + d], [lon - d, lat + d],
                                                [lon - d, lat - d]]]}


@dataclass
class World:
    """Ids of what ``seed`` created."""

    now_ms: int
    alerts: dict[str, int] = field(default_factory=dict)  # name -> alert id
    permits: dict[str, int] = field(default_factory=dict)  # name -> permit id
    dead_letters: list[int] = field(default_factory=list)


def _ts(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _units(conn: psycopg.Connection) -> None:
    conn.execute(
        "INSERT INTO units (code, name, parent, boundary) VALUES "
        "(%s, 'PC10 tỉnh Thử', NULL, %s), (%s, 'Công an xã A', %s, %s), "
        "(%s, 'Công an xã B', %s, %s), (%s, 'PC10 tỉnh Khác', NULL, NULL), "
        "(%s, 'Công an xã X', %s, NULL)",
        (PROVINCE, Jsonb(square(LAT0, LON0, 0.3)), COMMUNE_A, PROVINCE,
         Jsonb(square(LAT0, LON0 - 0.1, 0.05)), COMMUNE_B, PROVINCE,
         Jsonb(square(LAT0, LON0 + 0.1, 0.05)), OTHER_PROVINCE, COMMUNE_X, OTHER_PROVINCE))


def _supervisee(conn: psycopg.Connection, sid: str, name: str, stype: str, unit: str,
                dev: str) -> None:
    conn.execute("INSERT INTO supervisees (id, name, sentence_type, sentence_start, "
                 "sentence_end, unit, residence_unit) VALUES (%s, %s, %s, '2025-01-01', "
                 "'2027-12-31', %s, %s)", (sid, name, stype, unit, unit))
    conn.execute("INSERT INTO devices (id, supervisee_id, registered_at) VALUES (%s, %s, %s)",
                 (dev, sid, _ts(T0 - 86_400_000)))
    conn.execute("INSERT INTO device_assignments (device_id, supervisee_id, assigned_at, "
                 "assigned_by) VALUES (%s, %s, %s, 'test')", (dev, sid, _ts(T0 - 86_400_000)))


def _fixes(conn: psycopg.Connection, dev: str, sid: str, lat: float, lon: float,
           t0: int) -> None:
    """Ten fixes a minute apart from t0: five at home, then five ~2.2 km north (outside a
    0.01-degree residence square), the last with poor accuracy."""
    for k in range(10):
        dlat = 0.0 if k < 5 else 0.02
        acc = 8.0 if k < 9 else 250.0
        conn.execute("INSERT INTO fixes (device_id, ts, seq, lat, lon, acc, received_at, "
                     "supervisee_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                     (dev, _ts(t0 + k * 60_000), k, lat + dlat, lon, acc,
                      _ts(t0 + k * 60_000 + 500), sid))
    conn.execute("INSERT INTO device_state (device_id, last_seen_at, last_fix_ts, last_fix_lat, "
                 "last_fix_lon, last_fix_acc, battery) VALUES (%s, %s, %s, %s, %s, 8, 80)",
                 (dev, _ts(t0 + 600_000), _ts(t0 + 540_000), lat + 0.02, lon))


def _alert(conn: psycopg.Connection, sid: str, dev: str, kind: str, now_ms: int,
           zone_id: str | None = None) -> int:
    from alerts import rules
    from alerts.model import Occurrence

    occ = Occurrence(type=kind, supervisee_id=sid, active=True, ts_ms=now_ms, zone_id=zone_id,
                     device_id=dev, lat=LAT0 + 0.02, lon=LON0, since_ms=now_ms - 60_000,
                     escalate_after_s=86_400 if zone_id else None, edge=True,
                     explanation={"source": "test", "zone_id": zone_id, "distance_m": 1100.0})
    with conn.transaction():
        changes = rules.apply(conn, occ, now_ms)
    return changes[0].alert_id


def seed(conn: psycopg.Connection, now_ms: int = T0 + 3_600_000) -> World:
    """Everything the API tests read (see the module docstring)."""
    world = World(now_ms)
    with conn.transaction():
        _units(conn)
        lon_a, lon_b = LON0 - 0.1, LON0 + 0.1
        _supervisee(conn, SV_A, NAME_A, "an_treo", COMMUNE_A, DEV_A)
        _supervisee(conn, SV_B, NAME_B, "quan_che", COMMUNE_B, DEV_B)
        _supervisee(conn, SV_X, "Lê Văn X", "cam_cu_tru", COMMUNE_X, DEV_X)
        conn.execute("INSERT INTO devices (id) VALUES (%s)", (DEV_FREE,))
        _supervisee(conn, SV_A2, "Phạm Văn Thử A2", "an_treo", COMMUNE_A, DEV_SPARE)
        conn.execute("INSERT INTO zones (supervisee_id, id, kind, purpose, geometry) VALUES "
                     "(%s, 'residence', 'inclusion', 'residence', %s), "
                     "(%s, 'to-delete', 'exclusion', 'ban', %s), "
                     "(%s, 'residence', 'inclusion', 'residence', %s)",
                     (SV_A, Jsonb(square(LAT0, lon_a, 0.01)), SV_A,
                      Jsonb(square(LAT0 - 0.1, lon_a, 0.01)), SV_X,
                      Jsonb(square(LAT0, LON0 + 1, 0.01))))
        conn.execute("INSERT INTO zones (supervisee_id, id, kind, purpose, center_lon, "
                     "center_lat, radius_m, schedule) VALUES (%s, 'home', 'inclusion', "
                     "'curfew', %s, %s, 300, %s)",
                     (SV_B, lon_b, LAT0, Jsonb([{"days": [1, 2, 3, 4, 5, 6, 7],
                                                 "start": "22:00", "end": "05:00"}])))
        for name, day in (("a_june", 1), ("a_june_later", 20)):  # two trips, far from the fixes
            world.permits[name] = conn.execute(
                "INSERT INTO permits (supervisee_id, valid_from, valid_to, reason, category, "
                "anywhere, granted_by) VALUES (%s, %s, %s, %s, 'family', true, 'xa.a') "
                "RETURNING id", (SV_A, _ts(T0 + (150 + day) * 86_400_000),
                                 _ts(T0 + (153 + day) * 86_400_000), f"đám cưới {day}")
            ).fetchone()[0]
        _fixes(conn, DEV_A, SV_A, LAT0, lon_a, T0)
        _fixes(conn, DEV_B, SV_B, LAT0, lon_b, T0)
        _fixes(conn, DEV_X, SV_X, LAT0, LON0 + 1, T0)
        for dev, reason in ((DEV_A, "out_of_range"), ("ghost-7", "unknown_device")):
            world.dead_letters.append(conn.execute(
                "INSERT INTO dead_letters (received_at, topic, device_id, reason, detail, "
                "payload) VALUES (%s, %s, %s, %s, 'lat 123 > 90', %s) RETURNING id",
                (_ts(T0), f"em/v1/dev/{dev}/fix", dev, reason,
                 b'{"seq":1,"ts":1,"lat":123}')).fetchone()[0])
    for name, sid, dev, kind, zone in (
            ("a_exit", SV_A, DEV_A, "zone_exit", "residence"),
            ("a_tamper", SV_A, DEV_A, "strap_tamper", None),
            ("a_battery", SV_A, DEV_A, "battery_low", None),
            ("a_offline", SV_A, DEV_A, "device_offline", None),
            ("b_exit", SV_B, DEV_B, "zone_exit", "home"),
            ("x_exit", SV_X, DEV_X, "zone_exit", "residence")):
        world.alerts[name] = _alert(conn, sid, dev, kind, now_ms - 1_800_000, zone)
    ensure_admin(conn, ADMIN_PASSWORD)
    for user, (role, unit) in OFFICERS.items():
        create_officer(conn, user, PASSWORD, role, unit)
    conn.commit()
    return world


@dataclass
class Api:
    """An app on a seeded database, a client, and bearer headers per officer."""

    app: object
    client: TestClient
    world: World
    db_url: str
    clock: Callable[[], datetime]

    def token(self, username: str) -> str:
        """A token as sign-in would issue it (without the password's cost)."""
        officer_role = "admin" if username == "admin" else OFFICERS[username][0]
        return self.app.state.ctx.tokens.issue(username, officer_role, password_version=1)

    def auth(self, username: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(username)}"}


class MutableClock:
    """The app's injected clock (aware UTC datetimes), moved by tests."""

    def __init__(self, ms: int):
        self.ms = ms

    def __call__(self) -> datetime:
        return _ts(self.ms)


def make_app(db_url: str, clock: Callable[[], datetime], token_ttl_s: int = 900,
             session_max_s: int = 43_200, **kwargs):
    settings = Settings(token_ttl_s=token_ttl_s, session_max_s=session_max_s,
                        http="127.0.0.1:0")
    return create_app(settings, db_url, registry=CollectorRegistry(), clock=clock,
                      secret_key=SECRET, pool_max=4, **kwargs)


@pytest.fixture(scope="module")
def world_db(pg_server: str, template_db: str) -> Iterator[str]:
    """A migrated database of this module's own."""
    with cloned_database(pg_server, template_db, "giamsat_api") as url:
        yield url


@pytest.fixture(scope="module")
def api(world_db: str) -> Iterator[Api]:
    """The seeded world behind an app and its TestClient (lifespan run)."""
    with connect(world_db) as conn:
        world = seed(conn)
    clock = MutableClock(world.now_ms)
    app = make_app(world_db, clock)
    with TestClient(app) as client:
        yield Api(app, client, world, world_db, clock)
