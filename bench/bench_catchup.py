"""Catch-up after an outage (issue 11): the service is down for an hour while 1,000 devices
send a fix every 10 s (360,000 fixes wait in the broker for the service's session); then it
starts. Measured: the time from its start until every fix is stored, and until every fix is
decided, with the alerts the backlog raised (a few devices leave their residence during the
hour: each must give one zone_exit, marked retrospective).

It starts its own PostgreSQL and Mosquitto on free loopback ports unless URLs are given, runs
``python -m giamsat worker`` as the service, and publishes with QoS 1 from publisher processes
(bench_ingest's). Bounded: --timeout per wait; loopback only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from datetime import date, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import orjson  # noqa: E402
from bench_ingest import Publishers  # noqa: E402  (beside this script)
from scratch import scratch_services  # noqa: E402

from embedded.services import free_port  # noqa: E402
from protocol import device_topic  # noqa: E402
from registry.document import import_document  # noqa: E402
from schema import connect  # noqa: E402
from simulators import messages as sim  # noqa: E402

DEVICE = "cu-d{:05d}"
RESIDENCE_M = 3000.0
OUT_NORTH_DEG = 0.04  # ~4.4 km north of the centre: outside the 3 km residence


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--devices", type=int, default=1000, help="devices (default 1,000)")
    p.add_argument("--interval-s", type=int, default=10, help="one fix every (default 10 s)")
    p.add_argument("--down-s", type=int, default=3600, help="service down for (default 1 h)")
    p.add_argument("--leavers", type=int, default=10,
                   help="devices that leave their residence during the outage (default 10)")
    p.add_argument("--publishers", type=int, default=2, help="publisher processes (default 2)")
    p.add_argument("--timeout", type=float, default=600.0, help="longest wait per step, s")
    p.add_argument("--database-url", help="a PostgreSQL server to use (default: embedded)")
    p.add_argument("--mqtt-url", help="a broker to use (default: embedded Mosquitto)")
    return p.parse_args(argv)


def registry(devices: int) -> dict:
    """One unit pair; each supervisee wears one device and has a 3 km residence at the
    simulators' default position."""
    today = date.today()
    sups = [{"id": f"cu-s{i:05d}", "name": f"Catch-up {i}", "sentence_type": "an_treo",
             "sentence_start": (today - timedelta(days=100)).isoformat(),
             "sentence_end": (today + timedelta(days=700)).isoformat(), "unit": "CAX-CU",
             "zones": [{"id": "home", "kind": "inclusion", "purpose": "residence",
                        "center": [sim.DEFAULT_LON, sim.DEFAULT_LAT], "radius_m": RESIDENCE_M}]}
            for i in range(devices)]
    return {"units": [{"code": "PC10-CU", "name": "PC10", "parent": None},
                      {"code": "CAX-CU", "name": "Xã", "parent": "PC10-CU"}],
            "supervisees": sups,
            "devices": [{"id": DEVICE.format(i), "supervisee": s["id"]}
                        for i, s in enumerate(sups)], "permits": []}


def outage_fixes(end_ms: int, devices: int, interval_s: int, down_s: int, leavers: int,
                 index: int, publishers: int) -> list[tuple[str, bytes]]:
    """This publisher's share of the fixes sent during the outage, in time order: every
    device one fix per interval; the leavers are outside in the second half of the hour."""
    steps = down_s // interval_s
    start = end_ms - down_s * 1000
    out = []
    for k in range(steps):
        ts = start + k * interval_s * 1000
        for d in range(index, devices, publishers):
            away = d < leavers and k >= steps // 2
            lat = sim.DEFAULT_LAT + (OUT_NORTH_DEG if away else 1e-4 * (d % 50))
            body = {"seq": k, "ts": ts + d, "lat": lat, "lon": sim.DEFAULT_LON, "acc": 8.0}
            out.append((device_topic(DEVICE.format(d), "fix"), orjson.dumps(body)))
    return out


class Worker:
    """``python -m giamsat worker`` with its metrics on a free port."""

    def __init__(self, db_url: str, mqtt_url: str, data_dir: Path) -> None:
        self.port = free_port()
        self.env = dict(os.environ, GIAMSAT_DATABASE_URL=db_url, GIAMSAT_MQTT_URL=mqtt_url,
                        GIAMSAT_DATA_DIR=str(data_dir), GIAMSAT_LOG_LEVEL="WARNING",
                        GIAMSAT_WORKER_METRICS_PORT=str(self.port),
                        GIAMSAT_MQTT_CLIENT_ID="bench-catchup", PYTHONPATH=str(REPO))
        self.health = data_dir / "worker-health.json"
        self.proc: subprocess.Popen | None = None

    def start(self) -> float:
        self.health.unlink(missing_ok=True)
        self.proc = subprocess.Popen([sys.executable, "-m", "giamsat", "worker"], env=self.env,
                                     cwd=REPO)
        return time.monotonic()

    def healthy(self) -> bool:
        try:
            return bool(json.loads(self.health.read_text()).get("healthy"))
        except (OSError, ValueError):
            return False

    def metric(self, name: str, labels: str = "") -> float:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return 0.0
        m = re.search(rf"^{name}{re.escape(labels)} (\S+)$", text, re.M)
        return float(m.group(1)) if m else 0.0

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def wait(what: str, done, timeout_s: float, progress=None) -> float:
    deadline = shown = time.monotonic() + 0.0
    deadline += timeout_s
    while not done():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        if progress is not None and time.monotonic() - shown >= 1.0:
            print(f"\r  {progress()}   ", end="", file=sys.stderr, flush=True)
            shown = time.monotonic()
        time.sleep(0.05)
    if progress is not None:
        print(f"\r  {progress()}   ", file=sys.stderr)
    return time.monotonic()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    total = args.devices * (args.down_s // args.interval_s)
    with ExitStack() as stack:
        db_url, mqtt_url = scratch_services(stack, args.database_url, args.mqtt_url,
                                            "giamsat_catchup")
        with connect(db_url) as conn:
            import_document(conn, registry(args.devices))
        data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="catchup-")))
        worker = Worker(db_url, mqtt_url, data_dir)
        stack.callback(worker.stop)
        worker.start()  # once, so that the broker keeps a session for it
        wait("the worker's first start", worker.healthy, args.timeout)
        worker.stop()
        print(f"catch-up benchmark: {args.devices:,} devices, a fix every {args.interval_s} s, "
              f"service down {args.down_s} s: publishing {total:,} fixes", file=sys.stderr)
        end = sim.now_ms() - 1000
        plans = [(end, args.devices, args.interval_s, args.down_s, args.leavers, i,
                  args.publishers) for i in range(args.publishers)]
        pubs = Publishers(mqtt_url, outage_fixes, plans)
        stack.callback(pubs.terminate)
        t_pub = time.monotonic()
        pubs.start()
        acked = pubs.wait(args.timeout)
        pub_s = time.monotonic() - t_pub
        print(f"  the broker acknowledged {acked:,} of {total:,} in {pub_s:.1f} s",
              file=sys.stderr)
        t0 = worker.start()

        def stored() -> float:
            return worker.metric("giamsat_ingest_stored_records_total", '{kind="fix"}')

        def decided() -> float:
            return worker.metric("giamsat_decide_fixes_total")

        t_stored = wait("every fix stored", lambda: stored() >= total, args.timeout,
                        lambda: f"stored {stored():,.0f}/{total:,}")
        t_decided = wait("every fix decided", lambda: decided() >= total, args.timeout,
                         lambda: f"decided {decided():,.0f}/{total:,}")
        with connect(db_url) as conn:
            rows = conn.execute("SELECT count(*), count(DISTINCT (device_id, seq, ts)) "
                                "FROM fixes").fetchone()
            alerts = conn.execute(
                "SELECT count(*), count(occurred_at) FROM alerts WHERE type = 'zone_exit'"
            ).fetchone()
        worker.stop()
    assert rows is not None and alerts is not None
    print(f"\nstart -> every fix stored:  {t_stored - t0:6.1f} s "
          f"({total / (t_stored - t0):,.0f} fixes/s, process start included)")
    print(f"start -> every fix decided: {t_decided - t0:6.1f} s (target <= 30 s)")
    print(f"fixes table: {rows[0]:,} rows, {rows[1]:,} distinct, expected {total:,}")
    print(f"zone_exit alerts: {alerts[0]} (expected {args.leavers}), "
          f"{alerts[1]} marked retrospective")
    ok = rows[0] == rows[1] == total and alerts[0] == alerts[1] == args.leavers
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
