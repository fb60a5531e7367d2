"""Benchmark (issues 11 and 14): the registry's loaders and change watcher on versioned zones
and permits.

A province-sized registry: ``--supervisees`` people, each with a residence, a curfew and a ban
zone and two permits; a third of the zones edited once (two versions) and a tenth of the permits
revoked. Prints the time of what the decide stage does (the stamp it polls every 2 s, the
fingerprints it compares when the stamp moves, the full load at start) and of what the track
and replay do per supervisee (the versions in force over a period).

It starts its own PostgreSQL on a free port unless ``--db-url`` (a server URL) is given; a fresh
database is created and dropped after.

    .venv/bin/python bench/bench_registry.py                    # 10,000 supervisees
    .venv/bin/python bench/bench_registry.py --supervisees 2000 # quick
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import registry  # noqa: E402
import registry.zones  # noqa: E402
from bench.scratch import scratch_database  # noqa: E402
from embedded.services import EmbeddedPostgres, free_port  # noqa: E402
from geofence.fence import Fence  # noqa: E402
from schema import connect  # noqa: E402

T = datetime(2026, 1, 1, tzinfo=UTC)


def populate(url: str, n: int) -> None:
    """n supervisees, 3 zones and 2 permits each, written as set-based SQL (the versions
    directly: the writers' per-row checks are not what is measured)."""
    with connect(url) as conn:
        conn.execute("INSERT INTO units (code, name) VALUES ('CAX-B', 'bench')")
        conn.execute("INSERT INTO supervisees (id, name, sentence_type, sentence_start, "
                     "sentence_end, unit) SELECT 'S' || i, 'n', 'an_treo', '2025-01-01', "
                     "'2027-12-31', 'CAX-B' FROM generate_series(1, %s) i", (n,))
        conn.execute("""
            INSERT INTO zone_versions (supervisee_id, zone_id, version, effective_from, kind,
                                       purpose, center_lon, center_lat, radius_m, schedule,
                                       changed_by, recorded_at)
            SELECT 'S' || i, z.id, v, CASE v WHEN 1 THEN '-infinity'::timestamptz
                                             ELSE %(t)s END,
                   z.kind, z.purpose, 105 + (i %% 300) * 0.01, 20 + (i / 300) * 0.01,
                   z.r + v, z.sched, 'bench', %(t)s
              FROM generate_series(1, %(n)s) i
             CROSS JOIN (VALUES ('home', 'inclusion', 'residence', 2000.0, NULL::jsonb),
                                ('night', 'inclusion', 'curfew', 150.0,
                                 '[{"days": [1,2,3,4,5,6,7], "start": "22:00", "end": "05:00"}]'),
                                ('ban', 'exclusion', 'ban', 300.0, NULL)) z(id, kind, purpose,
                                                                            r, sched)
             CROSS JOIN generate_series(1, 2) v
             WHERE v = 1 OR i %% 3 = 0""", {"n": n, "t": T})
        conn.execute("""
            INSERT INTO permit_versions (permit_id, version, effective_from, supervisee_id,
                                         valid_from, valid_to, reason, anywhere, created_at,
                                         revoked_at, changed_by)
            SELECT nextval('permit_ids'), 1, '-infinity', 'S' || i,
                   %(t)s + k * interval '30 days', %(t)s + k * interval '30 days' + interval '3 days',
                   'trip ' || k, true, %(t)s, NULL, 'bench'
              FROM generate_series(1, %(n)s) i CROSS JOIN generate_series(1, 2) k""",
                     {"n": n, "t": T})
        conn.execute("""
            INSERT INTO permit_versions (permit_id, version, effective_from, supervisee_id,
                                         valid_from, valid_to, reason, anywhere, created_at,
                                         revoked_at, changed_by)
            SELECT permit_id, 2, %(t)s, supervisee_id, valid_from, valid_to, reason, anywhere,
                   created_at, valid_from + interval '1 day', 'bench'
              FROM permit_versions WHERE permit_id %% 10 = 0""", {"t": T + timedelta(days=31)})
        conn.execute("ANALYZE")
        conn.commit()


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def timed(label: str, fn, repeat: int = 3):
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    print(f"{label:<58} {best * 1000:9.2f} ms")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--supervisees", type=int, default=10_000)
    ap.add_argument("--db-url", help="a PostgreSQL server URL (default: an embedded one)")
    args = ap.parse_args()
    with ExitStack() as stack:
        server = args.db_url
        if server is None:
            base = Path(tempfile.mkdtemp(prefix="giamsat-bench-registry-"))
            base.chmod(0o755)
            stack.callback(shutil.rmtree, base, True)
            pg = EmbeddedPostgres(base / "pg", free_port())
            server = pg.start()
            stack.callback(pg.stop)
        url = scratch_database(server, stack, "giamsat_bench_registry")
        n = args.supervisees
        t0 = time.perf_counter()
        populate(url, n)
        print(f"registry: {n:,} supervisees, {3 * n:,} zones (+{n:,} edits), {2 * n:,} permits "
              f"(+{n // 5:,} revocations); written in {time.perf_counter() - t0:.1f} s")
        with connect(url, autocommit=True) as conn:
            timed("registry.stamp (polled every registry_poll_s)", lambda: registry.stamp(conn), 20)
            timed("registry.fingerprints (when the stamp moved)",
                  lambda: registry.fingerprints(conn))
            timed("registry.zones.zone_rows, all (the query alone)",
                  lambda: registry.zones.zone_rows(conn))
            zones = timed("registry.load_zones, all (in force now, parsed)",
                          lambda: registry.load_zones(conn))
            permits = timed("registry.load_permits, all (the revocation rule)",
                            lambda: registry.load_permits(conn))
            print(f"{'':<58} {len(zones):,} zones, {len(permits):,} permits")

            sups = registry.load_supervisees(conn)
            timed("geofence Fence.load of those (compiling the zones)",
                  lambda: Fence().load(sups, zones, permits, {}, now_ms=_ms(T)), 1)
            frm, to = _ms(T) - 86_400_000, _ms(T) + 86_400_000 * 90
            timed("registry.zones_in_force, one supervisee, 91 days",
                  lambda: registry.zones_in_force(conn, "S3", frm, to), 20)
            timed("registry.permits_in_force, one supervisee, 91 days",
                  lambda: registry.permits_in_force(conn, "S30", frm, to), 20)


if __name__ == "__main__":
    main()
