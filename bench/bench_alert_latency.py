"""Benchmark (issue 4): time from a violating fix's arrival at the broker to the alert's publish
on `em/v1/alerts/{unit}`, with a background load of compliant fixes.

Processes, all on loopback:
- the pipeline (ingest + decide stage + deliverer, `giamsat.pipeline.AlertPipeline`) in a child
  process, as `giamsat up` runs it;
- a load child publishing single-fix QoS 1 messages from `--devices` devices at `--rate`
  fixes/s, every fix inside its supervisee's residence zone (decided, no alert);
- this process: probe devices, each sending one fix 5 km outside its residence zone (the probe
  zones confirm on one fix, `confirm_fixes` = 1, so the fix that arrives is the one that opens
  the alert), and an MQTT subscriber on `em/v1/alerts/#`. Latency = the alert's receipt by the
  subscriber - the probe fix's publish (both clocks of this process; loopback).

It starts its own PostgreSQL and Mosquitto on free ports (`embedded.services`) unless
`--db-url` / `--mqtt-url` are given (a server URL: a fresh database is created on it and
dropped after). Bounded: `--duration` seconds of load, `--probes` probes.

    .venv/bin/python bench/bench_alert_latency.py                 # 5,000 fixes/s, 60 s, 300 probes
    .venv/bin/python bench/bench_alert_latency.py --duration 20 --probes 100   # quick
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import orjson  # noqa: E402
import paho.mqtt.client as mqtt  # noqa: E402
from scratch import scratch_services  # noqa: E402  (bench/scratch.py, beside this script)

from protocol import ALERT_TOPICS_ALL, device_topic  # noqa: E402
from schema import connect  # noqa: E402

UNIT, PROVINCE = "CAX-BENCH", "PC10-BENCH"
LOAD_DEV, PROBE_DEV = "bl{:05d}", "bp{:05d}"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=float, default=5000.0, help="background fixes/s (default 5000)")
    p.add_argument("--devices", type=int, default=2000, help="background devices (default 2000)")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of load (default 60)")
    p.add_argument("--probes", type=int, default=300, help="violating fixes measured (300)")
    p.add_argument("--warmup", type=float, default=5.0, help="load before the first probe, s")
    p.add_argument("--db-url", help="PostgreSQL server URL (default: an embedded one)")
    p.add_argument("--mqtt-url", help="MQTT broker URL (default: an embedded Mosquitto)")
    p.add_argument(
        "--role", choices=["main", "pipeline", "load"], default="main", help=argparse.SUPPRESS
    )
    p.add_argument("--seed", type=int, default=1)
    return p.parse_args(argv)


# --- geometry --------------------------------------------------------------------------------------


def homes(n: int, seed: int) -> np.ndarray:
    """(n, 2) lon/lat around Bắc Ninh."""
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.uniform(105.9, 106.3, n), rng.uniform(21.0, 21.35, n)])


def moved(lon: float, lat: float, east_m: float, north_m: float) -> tuple[float, float]:
    return (
        float(lon + east_m / (111_320.0 * math.cos(math.radians(lat)))),
        float(lat + north_m / 110_574.0),
    )


# --- setup -----------------------------------------------------------------------------------------


def seed_registry(url: str, n_load: int, n_probe: int, seed: int) -> None:
    with connect(url) as conn:
        conn.execute(
            "INSERT INTO units (code, name, parent) VALUES (%s, 'PC10', NULL), "
            "(%s, 'Công an xã (bench)', %s)",
            (PROVINCE, UNIT, PROVINCE),
        )
        rows = []
        for prefix, n, hs, confirm in (
            ("L", n_load, homes(n_load, seed), None),
            ("P", n_probe, homes(n_probe, seed + 1), 1),
        ):
            fmt = LOAD_DEV if prefix == "L" else PROBE_DEV
            for i in range(n):
                rows.append((f"{prefix}{i:05d}", fmt.format(i), hs[i, 0], hs[i, 1], confirm))
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO supervisees (id, name, sentence_type, sentence_start, "
                "sentence_end, unit) VALUES (%s, 'bench', 'an_treo', '2025-01-01', "
                "'2030-12-31', %s)",
                [(r[0], UNIT) for r in rows],
            )
            cur.executemany(
                "INSERT INTO devices (id, supervisee_id) VALUES (%s, %s)",
                [(r[1], r[0]) for r in rows],
            )
            cur.executemany(
                "INSERT INTO zones (supervisee_id, id, kind, purpose, center_lon, "
                "center_lat, radius_m, confirm_fixes) VALUES (%s, 'home', "
                "'inclusion', 'residence', %s, %s, 2000, %s)",
                [(r[0], r[2], r[3], r[4]) for r in rows],
            )
        conn.execute("UPDATE registry_version SET version = version + 1")
        conn.commit()


# --- roles -----------------------------------------------------------------------------------------


def run_pipeline(db_url: str, mqtt_url: str) -> int:
    """Child: the pipeline until SIGTERM; prints READY, then its totals."""
    from prometheus_client import CollectorRegistry

    from config import Settings
    from giamsat.pipeline import AlertPipeline

    settings = Settings(_env_file=None, mqtt_client_id=f"bench-ingest-{uuid.uuid4().hex[:6]}")
    pipe = AlertPipeline(settings, db_url, mqtt_url, registry=CollectorRegistry())
    if os.environ.get("BENCH_NO_DECIDE"):  # diagnosis: ingest alone, nothing decided
        pipe.ingest.writer.on_stored = lambda batch: None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    pipe.start()
    deadline = time.monotonic() + 30
    while not pipe.ingest.consumer.connected.is_set() and time.monotonic() < deadline:
        time.sleep(0.05)
    pipe.stage.wait_idle(60)
    time.sleep(0.5)  # the subscription is in place
    print("READY", flush=True)
    stop.wait()
    pipe.stop()
    rounds = np.array(pipe.stage.round_ms) if pipe.stage.round_ms else np.zeros(1)
    p50, p99 = np.percentile(rounds, [50, 99])
    print(f"pipeline: ingest {orjson.dumps(pipe.ingest.totals).decode()}; decide rounds "
          f"{pipe.stage.decided_batches}, p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
          f"max {rounds.max():.1f} ms", flush=True)
    return 0


def run_load(mqtt_url: str, n: int, rate: float, duration: float, seed: int) -> int:
    """Child: `rate` compliant single-fix messages/s from `n` devices for `duration` s."""
    p = urlsplit(mqtt_url)
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-load-{os.getpid()}")
    acked = [0]
    c.on_publish = lambda *a: acked.__setitem__(0, acked[0] + 1)
    c.max_inflight_messages_set(5000)
    c.max_queued_messages_set(0)
    c.connect(p.hostname or "127.0.0.1", p.port or 1883)
    c.loop_start()
    hs = homes(n, seed)
    rng = np.random.default_rng(seed + 7)
    seq = np.zeros(n, dtype=np.int64)
    topics = [device_topic(LOAD_DEV.format(i), "fix") for i in range(n)]
    tick = 0.01
    per_tick = rate * tick
    start = time.monotonic()
    sent, carry, k = 0, 0.0, 0
    while time.monotonic() - start < duration:
        carry += per_tick
        m, carry = int(carry), carry - int(carry)
        ts = time.time_ns() // 1_000_000
        for _ in range(m):
            i = k % n
            k += 1
            lon, lat = moved(hs[i, 0], hs[i, 1], *rng.uniform(-500, 500, 2))
            c.publish(
                topics[i],
                orjson.dumps({"seq": int(seq[i]), "ts": ts, "lat": lat, "lon": lon, "acc": 8.0}),
                qos=1,
            )
            seq[i] += 1
            sent += 1
        time.sleep(max(0.0, start + (sent / rate) - time.monotonic()))
    elapsed = time.monotonic() - start
    acked_in_time = acked[0]
    deadline = time.monotonic() + 60
    while acked[0] < sent and time.monotonic() < deadline:
        time.sleep(0.05)
    c.disconnect()
    c.loop_stop()
    print(f"LOAD published={sent} in {elapsed:.1f} s, broker acknowledged {acked_in_time} "
          f"of them by then ({acked_in_time / elapsed:.0f}/s), {acked[0]} in the end", flush=True)
    return 0


class Probe:
    """Probe publisher + alerts subscriber in this process."""

    def __init__(self, mqtt_url: str, n: int, seed: int) -> None:
        p = urlsplit(mqtt_url)
        host, port = p.hostname or "127.0.0.1", p.port or 1883
        self.homes = homes(n, seed + 1)
        self.sent_at: dict[str, float] = {}
        self.latency_ms: dict[str, float] = {}
        self.other = 0
        self._lock = threading.Lock()
        ready = threading.Event()
        self.sub = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-sub-{os.getpid()}"
        )
        self.sub.on_connect = lambda cl, u, f, rc, pr: cl.subscribe(ALERT_TOPICS_ALL, qos=1)
        self.sub.on_subscribe = lambda *a: ready.set()
        self.sub.on_message = self._on_alert
        self.sub.connect(host, port)
        self.sub.loop_start()
        if not ready.wait(10):
            raise RuntimeError("alerts subscriber could not subscribe")
        self.pub = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-probe-{os.getpid()}"
        )
        self.pub.connect(host, port)
        self.pub.loop_start()

    def _on_alert(self, client, userdata, msg) -> None:
        t = time.perf_counter()
        alert = orjson.loads(msg.payload)
        sid = alert.get("supervisee_id", "")
        with self._lock:
            if (
                alert.get("change") == "opened"
                and sid in self.sent_at
                and sid not in self.latency_ms
            ):
                self.latency_ms[sid] = (t - self.sent_at[sid]) * 1000
            elif not sid.startswith("P"):
                self.other += 1

    def fire(self, i: int) -> None:
        sid = f"P{i:05d}"
        lon, lat = moved(self.homes[i, 0], self.homes[i, 1], 0, 5000)
        body = orjson.dumps(
            {"seq": 1, "ts": time.time_ns() // 1_000_000, "lat": lat, "lon": lon, "acc": 8.0}
        )
        with self._lock:
            self.sent_at[sid] = time.perf_counter()
        self.pub.publish(device_topic(PROBE_DEV.format(i), "fix"), body, qos=1)

    def close(self) -> None:
        for c in (self.pub, self.sub):
            c.disconnect()
            c.loop_stop()


# --- main ------------------------------------------------------------------------------------------


def services(args: argparse.Namespace, stack: ExitStack) -> tuple[str, str]:
    return scratch_services(stack, args.db_url, args.mqtt_url, "giamsat_bench_alerts")


def child(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True, cwd=REPO
    )


def main(args: argparse.Namespace) -> int:
    with ExitStack() as stack:
        db_url, mqtt_url = services(args, stack)
        seed_registry(db_url, args.devices, args.probes, args.seed)
        log(f"registry: {args.devices} background + {args.probes} probe supervisees")
        pipeline = child(["--role", "pipeline", "--db-url", db_url, "--mqtt-url", mqtt_url])
        stack.callback(lambda: pipeline.poll() is None and pipeline.kill())
        assert pipeline.stdout is not None
        line = pipeline.stdout.readline().strip()
        if line != "READY":
            log(f"pipeline did not start: {line!r}")
            return 1
        probe = Probe(mqtt_url, args.probes, args.seed)
        stack.callback(probe.close)
        load = child(
            [
                "--role",
                "load",
                "--mqtt-url",
                mqtt_url,
                "--devices",
                str(args.devices),
                "--rate",
                str(args.rate),
                "--duration",
                str(args.duration),
                "--seed",
                str(args.seed),
            ]
        )
        stack.callback(lambda: load.poll() is None and load.kill())
        log(f"load: {args.rate:.0f} fixes/s for {args.duration:.0f} s; warm-up {args.warmup} s")
        time.sleep(args.warmup)
        window = max(1.0, args.duration - args.warmup - 3.0)
        gap = window / args.probes
        t0 = time.monotonic()
        for i in range(args.probes):
            time.sleep(max(0.0, t0 + i * gap - time.monotonic()))
            probe.fire(i)
        deadline = time.monotonic() + 30
        while len(probe.latency_ms) < args.probes and time.monotonic() < deadline:
            time.sleep(0.1)
        load_out, _ = load.communicate(timeout=args.duration + 90)
        with connect(db_url) as conn:
            at_end = conn.execute("SELECT count(*) FROM fixes WHERE device_id LIKE 'bl%'"
                                  ).fetchone()[0]
        pipeline.send_signal(signal.SIGTERM)
        pipe_out, _ = pipeline.communicate(timeout=120)
        with connect(db_url) as conn:
            stored = conn.execute(
                "SELECT count(*) FROM fixes WHERE device_id LIKE 'bl%'"
            ).fetchone()[0]
        report(args, probe, stored, at_end, load_out + pipe_out)
    return 0


def report(args: argparse.Namespace, probe: Probe, stored: int, at_end: int,
           load_out: str) -> None:
    lat = np.array(sorted(probe.latency_ms.values()))
    print(load_out.strip())
    print(f"background: {stored} compliant fixes stored in all, {at_end} of them by the end of "
          f"the load (~{at_end / args.duration:.0f}/s over {args.duration:.0f} s, offered "
          f"{args.rate:.0f}/s); alerts for background devices: {probe.other}")
    if not len(lat):
        print("no alert arrived")
        return
    p50, p90, p99 = np.percentile(lat, [50, 90, 99])
    print(
        f"fix-to-alert latency over {len(lat)}/{args.probes} probes: p50 {p50:.1f} ms, "
        f"p90 {p90:.1f} ms, p99 {p99:.1f} ms, max {lat[-1]:.1f} ms (target p99 <= 250 ms)"
    )


if __name__ == "__main__":
    a = parse_args()
    if a.role == "pipeline":
        sys.exit(run_pipeline(a.db_url, a.mqtt_url))
    if a.role == "load":
        sys.exit(run_load(a.mqtt_url, a.devices, a.rate, a.duration, a.seed))
    sys.exit(main(a))
