"""Benchmark (issue 12): `giamsat loadtest` through the embedded durable broker (RabbitMQ:
MQTT plugin, quorum queues, AMQP ingest) and through the embedded Mosquitto, one after the
other on this machine, with the same offered load; prints each run's figures and the ratio.

Each run is `giamsat up` (no demo) in a temp data dir on free ports, then `giamsat loadtest`
against it, then a clean stop. Loopback only, bounded by --duration.

    .venv/bin/python bench/bench_brokers.py --rate 15000 --duration 20 --devices 2000
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from embedded.services import free_port  # noqa: E402

FIGURES = ("stored", "decided", "p50", "p99")


def _env(data: Path, broker: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIAMSAT_")}
    env.update(GIAMSAT_DATA_DIR=str(data / "state"), GIAMSAT_EMBEDDED_BROKER=broker,
               GIAMSAT_EMBEDDED_MQTT_PORT=str(free_port()),
               GIAMSAT_EMBEDDED_AMQP_PORT=str(free_port()),
               GIAMSAT_EMBEDDED_PG_PORT=str(free_port()),
               GIAMSAT_HTTP=f"127.0.0.1:{free_port()}",
               GIAMSAT_WORKER_METRICS_PORT=str(free_port()),
               GIAMSAT_ADMIN_PASSWORD="bench-admin", PYTHONUNBUFFERED="1")
    return env


def _ready(env: dict[str, str]) -> bool:
    try:
        with urllib.request.urlopen(f"http://{env['GIAMSAT_HTTP']}/readyz", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def run_one(broker: str, args: argparse.Namespace) -> str:
    """One `up` + `loadtest`; return the load test's output."""
    data = Path(tempfile.mkdtemp(prefix=f"giamsat-bench-{broker}-"))
    data.chmod(0o755)
    env = _env(data, broker)
    log = open(data / "up.log", "wb")  # noqa: SIM115
    up = subprocess.Popen([sys.executable, "-m", "giamsat", "up"], env=env, cwd=REPO,
                          stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while not _ready(env):
            if time.monotonic() > deadline or up.poll() is not None:
                raise SystemExit(f"{broker}: the service did not get ready; see {data}/up.log")
            time.sleep(1)
        cmd = [sys.executable, "-m", "giamsat", "loadtest", "--devices", str(args.devices),
               "--publishers", str(args.publishers), "--connections", str(args.connections)]
        # a first short run registers the fleet: the worker's reload of thousands of new
        # supervisees (and the broker's new users) must not fall in the measured run
        subprocess.run([*cmd, "--rate", "500", "--duration", "5"], env=env, cwd=REPO,
                       capture_output=True, text=True)
        time.sleep(args.warmup)
        res = subprocess.run([*cmd, "--rate", str(args.rate), "--duration", str(args.duration)],
                             env=env, cwd=REPO, capture_output=True, text=True)
        return res.stdout + res.stderr
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(120)
        except subprocess.TimeoutExpired:
            up.kill()
        log.close()
        if not args.keep:
            shutil.rmtree(data, ignore_errors=True)


def figures(output: str) -> dict[str, float]:
    """The load test's sustained stored / decided fixes/s and latency percentiles (ms)."""
    out: dict[str, float] = {}
    for name, pattern in (("stored", r"stored[^\n]*?([\d,.]+) fixes/s"),
                          ("decided", r"decided[^\n]*?([\d,.]+) fixes/s"),
                          ("p50", r"p50[ =:]+([\d,.]+)"), ("p99", r"p99[ =:]+([\d,.]+)")):
        m = re.search(pattern, output)
        if m:
            out[name] = float(m[1].replace(",", ""))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=int, default=15000)
    p.add_argument("--duration", type=int, default=20)
    p.add_argument("--devices", type=int, default=2000)
    p.add_argument("--publishers", type=int, default=2)
    p.add_argument("--connections", type=int, default=16,
                   help="MQTT connections per publisher process (many devices)")
    p.add_argument("--brokers", default="rabbitmq,mosquitto")
    p.add_argument("--warmup", type=float, default=30.0,
                   help="seconds between the registering run and the measured one")
    p.add_argument("--keep", action="store_true", help="keep the data dirs and logs")
    args = p.parse_args()
    results = {}
    for broker in args.brokers.split(","):
        print(f"===== {broker}: up + loadtest --rate {args.rate} --duration {args.duration} "
              f"--devices {args.devices} --publishers {args.publishers} --connections "
              f"{args.connections}", flush=True)
        output = run_one(broker, args)
        print(output, flush=True)
        results[broker] = figures(output)
        print(f"[{broker}] {results[broker]}", flush=True)
    if {"rabbitmq", "mosquitto"} <= results.keys():
        r, m = results["rabbitmq"], results["mosquitto"]
        for key in ("stored", "decided"):
            if key in r and key in m and m[key]:
                print(f"ratio rabbitmq/mosquitto, {key} fixes/s: {r[key] / m[key]:.2f}")


if __name__ == "__main__":
    main()
