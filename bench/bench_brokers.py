"""Benchmark (issue 12): `giamsat loadtest` through the embedded durable broker (RabbitMQ:
MQTT plugin, quorum queues, AMQP ingest), through the embedded Mosquitto and through a
three-node RabbitMQ cluster on loopback, one after the other on this machine, with the same
offered load; prints each run's figures, the CPU each part used per stored fix, and the ratio.

Each run is `giamsat up` (no demo) in a temp data dir on free ports, then `giamsat loadtest`
against it, then a clean stop. For `rabbitmq3` the bench starts the three nodes itself (as
tests/drills/test_cluster.py does), declares the service's quorum queues (a replica on each
node) and runs `giamsat up` with GIAMSAT_MQTT_URL / GIAMSAT_AMQP_URL pointing at them; the load
test's connections spread over the three MQTT listeners. Loopback only, bounded by --duration.

    .venv/bin/python bench/bench_brokers.py --brokers rabbitmq,mosquitto,rabbitmq3
"""

from __future__ import annotations

import argparse
import os
import re
import resource
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

import pika  # noqa: E402

from embedded.services import EmbeddedRabbitMQ, free_port, node_name, start_cluster  # noqa: E402
from ingest.amqp import connection_parameters, declare_topology  # noqa: E402
from simulators.loadtest import cpu_by_process, cpu_used  # noqa: E402

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


def cluster(data: Path, shards: int) -> list[EmbeddedRabbitMQ]:
    """Three clustered RabbitMQ nodes with the service's queues declared."""
    ports = [(free_port(), free_port(), free_port()) for _ in range(3)]
    names = tuple(node_name(m) for m, _, _ in ports)
    nodes = [EmbeddedRabbitMQ(data / f"rabbit{i}", m, a, dist_port=d, cluster_nodes=names)
             for i, (m, a, d) in enumerate(ports)]
    start_cluster(nodes)
    with pika.BlockingConnection(connection_parameters(_amqp(nodes[0]))) as conn:
        declare_topology(conn.channel(), shards)  # after the join: a replica on each node
    return nodes


def _amqp(node: EmbeddedRabbitMQ) -> str:
    return f"amqp://guest:guest@127.0.0.1:{node.amqp_port}/"


def _mqtt(node: EmbeddedRabbitMQ) -> str:
    return f"mqtt://guest:guest@127.0.0.1:{node.mqtt_port}"


def run_one(broker: str, args: argparse.Namespace) -> tuple[str, dict[str, float]]:
    """One `up` + `loadtest`; return the load test's output and the CPU-seconds each group of
    processes (under this bench: the service, the broker, the load test) used during it."""
    data = Path(tempfile.mkdtemp(prefix=f"giamsat-bench-{broker}-"))
    data.chmod(0o755)
    nodes = cluster(data, args.shards) if broker == "rabbitmq3" else []
    env = _env(data, "rabbitmq" if nodes else broker)
    env["GIAMSAT_WORKERS"] = str(args.shards)  # `up` runs one worker: it reads every shard
    extra: list[str] = []
    if nodes:
        env.update(GIAMSAT_MQTT_URL=_mqtt(nodes[0]),
                   GIAMSAT_AMQP_URL=",".join(_amqp(n) for n in nodes))
        extra = ["--mqtt-url", ",".join(_mqtt(n) for n in nodes)]
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
               "--publishers", str(args.publishers), "--connections", str(args.connections),
               *extra]
        # a first short run registers the fleet: the worker's reload of thousands of new
        # supervisees (and the broker's new users) must not fall in the measured run
        subprocess.run([*cmd, "--rate", "500", "--duration", "5"], env=env, cwd=REPO,
                       capture_output=True, text=True)
        time.sleep(args.warmup)
        cpu0, ru0 = cpu_by_process({os.getpid()}), resource.getrusage(resource.RUSAGE_CHILDREN)
        res = subprocess.run([*cmd, "--rate", str(args.rate), "--duration", str(args.duration),
                              "--no-register"], env=env, cwd=REPO, capture_output=True, text=True)
        cpu1, ru1 = cpu_by_process({os.getpid()}), resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = cpu_used(cpu0, cpu1)
        # the load test and its publishers have exited: their CPU is in our children's usage
        cpu["loadtest (publishers)"] = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime +
                                                                        ru0.ru_stime)
        return res.stdout + res.stderr, cpu
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(120)
        except subprocess.TimeoutExpired:
            up.kill()
        for n in nodes:
            n.stop()
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


def _stored(output: str) -> int:
    m = re.search(r"\(([\d,]+) stored;", output)
    return int(m[1].replace(",", "")) if m else 0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=int, default=15000)
    p.add_argument("--duration", type=int, default=20)
    p.add_argument("--devices", type=int, default=2000)
    p.add_argument("--publishers", type=int, default=2)
    p.add_argument("--connections", type=int, default=100,
                   help="MQTT connections per publisher process (default 100: 2,000 devices "
                        "over 200 connections, 10 each; RabbitMQ caches a connection's last "
                        "12 topic permission checks, and a real device publishes one topic)")
    p.add_argument("--shards", type=int, default=1,
                   help="GIAMSAT_WORKERS: quorum queues (RabbitMQ); `up`'s one worker reads all")
    p.add_argument("--brokers", default="rabbitmq,mosquitto",
                   help="comma-separated: rabbitmq (embedded node), mosquitto, rabbitmq3 "
                        "(three-node cluster)")
    p.add_argument("--warmup", type=float, default=30.0,
                   help="seconds between the registering run and the measured one")
    p.add_argument("--keep", action="store_true", help="keep the data dirs and logs")
    args = p.parse_args()
    results = {}
    for broker in args.brokers.split(","):
        print(f"===== {broker}: up + loadtest --rate {args.rate} --duration {args.duration} "
              f"--devices {args.devices} --publishers {args.publishers} --connections "
              f"{args.connections}", flush=True)
        output, cpu = run_one(broker, args)
        print(output, flush=True)
        results[broker] = figures(output)
        print(f"[{broker}] {results[broker]}", flush=True)
        stored = _stored(output)
        print(f"[{broker}] CPU during the measured run (processes under this bench), "
              f"us per stored fix: " + ", ".join(
                  f"{g} {v / max(1, stored) * 1e6:.0f}" for g, v in sorted(cpu.items())
                  if v > 0.001) + f"; all {sum(cpu.values()) / max(1, stored) * 1e6:.0f}",
              flush=True)
    m = results.get("mosquitto", {})
    for name in ("rabbitmq", "rabbitmq3"):
        r = results.get(name, {})
        for key in ("stored", "decided"):
            if key in r and m.get(key):
                print(f"ratio {name}/mosquitto, {key} fixes/s: {r[key] / m[key]:.2f}")


if __name__ == "__main__":
    main()
