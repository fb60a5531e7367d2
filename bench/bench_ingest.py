"""Benchmark of the ingest service through Mosquitto (issue 2): stored fixes/s with single-fix
messages and with 50-fix batches, and the ingest process's CPU-seconds per 1,000 fixes.

It starts its own PostgreSQL and Mosquitto on free loopback ports (embedded.services) unless
URLs are given, registers a fleet, runs `python -m ingest` as a child process, publishes with
QoS 1 from paho publisher processes, and waits until every fix is stored (read from the
child's Prometheus counter, checked against the table at the end). Every fix is committed
before its acknowledgement, as in production (`synchronous_commit` on).

Two ways to measure, per message shape (`--mode`):
- `live`: the service runs while the publishers publish; the rate is fixes stored over the time
  from the first publish to the last fix stored. On a small machine the publishers, the broker,
  PostgreSQL and the service share the cores, so this is bounded by the publishers.
- `backlog`: the fixes are published while the service is stopped (its persistent session
  queues them in the broker), then the service is started and timed from its start until the
  last fix is stored: the service's own sustained rate, the publishers idle.

Bounded: at most --max-fixes fixes per phase and --timeout seconds per wait; loopback only.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import orjson  # noqa: E402
from scratch import scratch_services  # noqa: E402  (bench/scratch.py, beside this script)

from config.mqtt import PUBLISH_WINDOW  # noqa: E402
from embedded.services import free_port  # noqa: E402
from protocol import device_topic  # noqa: E402
from schema import connect  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
DEVICE = "bench-d{:05d}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Phases: single (N one-fix messages), batch (N/50 50-fix messages).",
    )
    p.add_argument(
        "-n", "--fixes", type=int, default=200_000, help="fixes per phase (default 200,000)"
    )
    p.add_argument("--batch", type=int, default=50, help="fixes per batch message (default 50)")
    p.add_argument(
        "--mode",
        choices=("live", "backlog", "both"),
        default="both",
        help="see above (default both)",
    )
    p.add_argument("--phases", default="single,batch", help="single, batch or both (default)")
    p.add_argument("--devices", type=int, default=1000, help="registered devices (default 1000)")
    p.add_argument("--publishers", type=int, default=2, help="paho publisher processes (default 2)")
    p.add_argument(
        "--database-url",
        default=None,
        help="a PostgreSQL server URL (a scratch database is created on it); "
        "default: an embedded one",
    )
    p.add_argument("--mqtt-url", default=None, help="broker URL; default: an embedded Mosquitto")
    p.add_argument(
        "--batch-max",
        type=int,
        default=None,
        help="GIAMSAT_INGEST_BATCH_MAX for the service (default: the setting's)",
    )
    p.add_argument(
        "--timeout", type=float, default=300.0, help="longest wait for one phase, s (default 300)"
    )
    p.add_argument("--max-fixes", type=int, default=2_000_000, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.fixes = min(args.fixes, args.max_fixes)
    return args


# --- services ----------------------------------------------------------------------------


@dataclass
class Services:
    db_url: str
    mqtt_url: str


def start_services(args: argparse.Namespace, stack: ExitStack) -> Services:
    """The given servers, or embedded ones on free ports (stopped when the stack closes)."""
    return Services(*scratch_services(stack, args.database_url, args.mqtt_url))


def register_fleet(db_url: str, devices: int) -> None:
    with connect(db_url) as conn:
        conn.execute("INSERT INTO units (code, name) VALUES ('BENCH', 'bench')")
        conn.execute(
            "INSERT INTO supervisees (id, name, sentence_type, sentence_start, "
            "sentence_end, unit) VALUES ('bench-s', 'bench', 'an_treo', '2025-01-01', "
            "'2030-01-01', 'BENCH')"
        )
        conn.execute(
            "INSERT INTO devices (id, supervisee_id) SELECT "
            "'bench-d' || lpad(g::text, 5, '0'), 'bench-s' "
            "FROM generate_series(0, %s - 1) g",
            (devices,),
        )
        conn.commit()


# --- the ingest child process ------------------------------------------------------------


class IngestProcess:
    """`python -m ingest` with its metrics on a free port; CPU time from /proc."""

    def __init__(self, services: Services, client_id: str, args: argparse.Namespace) -> None:
        self.port = free_port()
        env = dict(
            os.environ,
            GIAMSAT_DATABASE_URL=services.db_url,
            GIAMSAT_MQTT_URL=services.mqtt_url,
            GIAMSAT_MQTT_CLIENT_ID=client_id,
            GIAMSAT_LOG_LEVEL="WARNING",
            PYTHONPATH=str(REPO),
        )
        if args.batch_max:
            env["GIAMSAT_INGEST_BATCH_MAX"] = str(args.batch_max)
        cmd = [sys.executable, "-m", "ingest", "--metrics-port", str(self.port)]
        self.proc = subprocess.Popen(cmd, env=env, cwd=REPO)

    def wait_ready(self, connected: bool = False, timeout_s: float = 60.0) -> None:
        """Until it serves metrics (or, with `connected`, is connected and storing)."""
        deadline = time.monotonic() + timeout_s

        def ready() -> bool:
            if connected:
                return bool(self.metric("giamsat_ingest_healthy"))
            return self.stored() is not None

        while not ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the ingest process did not start")
            time.sleep(0.02)

    def metric(self, name: str, labels: str = "") -> float | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return None
        m = re.search(rf"^{name}{re.escape(labels)} (\S+)$", text, re.M)
        return float(m.group(1)) if m else 0.0

    def stored(self) -> int | None:
        """Fixes stored so far (its counter), None until it serves metrics."""
        value = self.metric("giamsat_ingest_stored_records_total", '{kind="fix"}')
        return None if value is None else int(value)

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


# --- publishers --------------------------------------------------------------------------


def _payloads(
    phase: str, first_seq: int, n_fixes: int, batch: int, devices: int, index: int, publishers: int
) -> list[tuple[str, bytes]]:
    """This publisher's share: (topic, payload) per message; seq unique per device."""
    now = int(time.time() * 1000) - 3_600_000
    out = []
    per_msg = 1 if phase == "single" else batch
    for m in range(index, n_fixes // per_msg, publishers):
        dev = m % devices
        fixes = []
        for k in range(per_msg):
            seq = first_seq + (m // devices) * per_msg + k
            fixes.append(
                {
                    "seq": seq,
                    "ts": now + seq,
                    "lat": 21.0 + dev * 1e-4,
                    "lon": 105.8 + k * 1e-5,
                    "acc": 8.5,
                    "spd": 1.2,
                    "src": "gnss",
                }
            )
        body = fixes[0] if per_msg == 1 else {"fixes": fixes}
        out.append((device_topic(DEVICE.format(dev), "fix"), orjson.dumps(body)))
    return out


def publisher_main(mqtt_url: str, build, plan: tuple, ready, go, results) -> None:
    """One publisher process: build its payloads (``build(*plan)``: [(topic, payload)]), wait
    for `go`, publish QoS 1 (at most PUBLISH_WINDOW unacknowledged), wait for the broker's
    acknowledgements.

    paho runs without its network thread: ``publish`` writes to the socket and this loop
    reads the PUBACKs, so no second thread competes for the GIL.
    """
    import paho.mqtt.client as mqtt

    messages = build(*plan)
    url = urlsplit(mqtt_url)
    acked = [0]

    def on_publish(client, userdata, mid, reason, props) -> None:
        acked[0] += 1

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"bench-pub-{uuid.uuid4().hex[:6]}",
        protocol=mqtt.MQTTv311,
    )
    client.max_inflight_messages_set(PUBLISH_WINDOW)
    client.max_queued_messages_set(0)
    client.on_publish = on_publish
    client.connect(url.hostname or "127.0.0.1", url.port or 1883, keepalive=60)
    ready.put(len(messages))
    while not go.wait(0.5):
        client.loop(timeout=0)  # keep the connection alive while the others get ready
    sent, deadline = 0, time.monotonic() + 600
    while acked[0] < len(messages) and time.monotonic() < deadline:
        while sent < len(messages) and sent - acked[0] < PUBLISH_WINDOW:
            topic, payload = messages[sent]
            client.publish(topic, payload, qos=1)
            sent += 1
        if client.loop(timeout=0.01) != mqtt.MQTT_ERR_SUCCESS:
            print(f"publisher: lost the broker after {acked[0]:,} acknowledgements",
                  file=sys.stderr)
            break  # the phase then reports what was acknowledged
    results.put(acked[0])
    client.disconnect()


class Publishers:
    """Publisher processes (forked: ``build`` and the plans are not pickled); each builds its
    share with ``build(*plan)`` and publishes it once ``start()`` is called."""

    def __init__(self, mqtt_url: str, build, plans: list[tuple]):
        ctx = mp.get_context("fork")
        self.ready, self.results, self.go = ctx.Queue(), ctx.Queue(), ctx.Event()
        self.procs = [
            ctx.Process(target=publisher_main, daemon=True,
                        args=(mqtt_url, build, plan, self.ready, self.go, self.results))
            for plan in plans
        ]
        for p in self.procs:
            p.start()
        self.messages = sum(self.ready.get(timeout=120) for _ in self.procs)

    def start(self) -> None:
        self.go.set()

    def terminate(self) -> None:
        for p in self.procs:
            if p.is_alive():
                p.terminate()
                p.join(5)

    def wait(self, timeout_s: float) -> int:
        acked = sum(self.results.get(timeout=timeout_s) for _ in self.procs)
        for p in self.procs:
            p.join(10)
        return acked


# --- phases ------------------------------------------------------------------------------


def wait_stored(ingest: IngestProcess, target: int, timeout_s: float, label: str) -> float:
    """Wait until `target` fixes are stored; print a progress line; return the time."""
    deadline = time.monotonic() + timeout_s
    start, last = time.monotonic(), 0
    while True:
        stored = ingest.stored() or 0
        now = time.monotonic()
        rate = stored / max(now - start, 1e-9)
        print(
            f"\r  {label}: stored {stored:,}/{target:,} fixes ({rate:,.0f}/s)   ",
            end="",
            file=sys.stderr,
            flush=True,
        )
        if stored >= target:
            print(file=sys.stderr)
            return now
        if now > deadline or ingest.proc.poll() is not None:
            print(file=sys.stderr)
            raise SystemExit(f"{label}: only {stored:,} of {target:,} fixes stored")
        last = stored
        time.sleep(0.1 if target - last > 1000 else 0.02)


def run_phase(
    args: argparse.Namespace, services: Services, phase: str, mode: str, first_seq: int
) -> dict:
    with ExitStack() as stack:
        return _run_phase(args, services, phase, mode, first_seq, stack)


def _run_phase(
    args: argparse.Namespace, services: Services, phase: str, mode: str, first_seq: int,
    stack: ExitStack,
) -> dict:
    client_id = f"bench-ingest-{uuid.uuid4().hex[:6]}"
    plans = [(phase, first_seq, args.fixes, args.batch, args.devices, i, args.publishers)
             for i in range(args.publishers)]
    pubs = Publishers(services.mqtt_url, _payloads, plans)
    stack.callback(pubs.terminate)
    fixes = pubs.messages * (1 if phase == "single" else args.batch)
    ingest = IngestProcess(services, client_id, args)
    stack.callback(lambda: ingest.stop())
    ingest.wait_ready(connected=True)
    label = f"{phase}/{mode}"
    if mode == "backlog":  # the session exists now; stop the service, publish, restart it
        ingest.stop()
        pubs.start()
        pubs.wait(args.timeout)
        ingest = IngestProcess(services, client_id, args)
        ingest.wait_ready()  # serving metrics: imports done, about to connect
        t0 = time.monotonic()
        cpu0 = ingest.cpu_s()
    else:
        cpu0 = ingest.cpu_s()
        t0 = time.monotonic()
        pubs.start()
    t1 = wait_stored(ingest, fixes, args.timeout, label)
    cpu = ingest.cpu_s() - cpu0
    if mode == "live":
        pubs.wait(args.timeout)
    ingest.stop()
    return {
        "phase": phase,
        "mode": mode,
        "messages": pubs.messages,
        "fixes": fixes,
        "seconds": t1 - t0,
        "fixes_per_s": fixes / (t1 - t0),
        "messages_per_s": pubs.messages / (t1 - t0),
        "cpu_s_per_1000": cpu / fixes * 1000,
    }


def check_table(db_url: str, expected: int) -> tuple[int, int]:
    with connect(db_url) as conn:
        rows = conn.execute(
            "SELECT count(*), count(DISTINCT (device_id, ts, seq)) FROM fixes"
        ).fetchone()
    assert rows is not None
    return int(rows[0]), int(rows[1])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    modes = ("live", "backlog") if args.mode == "both" else (args.mode,)
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    results, total, seq = [], 0, 0
    with ExitStack() as stack:
        services = start_services(args, stack)
        register_fleet(services.db_url, args.devices)
        print(
            f"ingest benchmark: {args.fixes:,} fixes per phase, {args.devices} devices, "
            f"{args.publishers} publisher(s), {os.cpu_count()} CPU(s)",
            file=sys.stderr,
        )
        for phase in phases:
            for mode in modes:
                results.append(run_phase(args, services, phase, mode, seq))
                total += results[-1]["fixes"]
                seq += args.fixes
        rows, distinct = check_table(services.db_url, total)
    print(
        f"\n{'phase':<8}{'mode':<9}{'messages':>10}{'fixes':>10}{'seconds':>9}"
        f"{'fixes/s':>10}{'msgs/s':>9}{'cpu-s/1000 fixes':>18}"
    )
    for r in results:
        print(
            f"{r['phase']:<8}{r['mode']:<9}{r['messages']:>10,}{r['fixes']:>10,}"
            f"{r['seconds']:>9.2f}{r['fixes_per_s']:>10,.0f}{r['messages_per_s']:>9,.0f}"
            f"{r['cpu_s_per_1000']:>18.4f}"
        )
    ok = rows == distinct == total
    print(
        f"\nfixes table: {rows:,} rows, {distinct:,} distinct keys, expected {total:,}: "
        f"{'OK' if ok else 'MISMATCH'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
