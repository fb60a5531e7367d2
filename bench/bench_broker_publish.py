"""Benchmark (issue 12): what the broker alone takes, PUBACKed single-fix QoS 1 messages per
second from many device connections, for Mosquitto (embedded config), one RabbitMQ node and a
three-node RabbitMQ cluster (the service's quorum queues declared, nobody consuming: a paused
service). Each connection keeps `--window` publishes unacknowledged, as a device with a buffer
would. The clients run in `--processes` processes on the same cores as the brokers.

    .venv/bin/python bench/bench_broker_publish.py --seconds 15 --connections 64
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import orjson  # noqa: E402
import paho.mqtt.client as mqtt  # noqa: E402
import pika  # noqa: E402

from embedded.services import (  # noqa: E402
    EmbeddedMosquitto,
    EmbeddedRabbitMQ,
    free_port,
    node_name,
    start_cluster,
)
from ingest.amqp import connection_parameters, declare_topology  # noqa: E402


def client_main(ports: list[int], login: tuple[str, str] | None, conns: int, first: int,
                window: int, seconds: float, out: mp.Queue) -> None:
    """`conns` connections (devices) over the given ports, round robin; publish for `seconds`."""
    body = orjson.dumps({"seq": 1, "ts": 1_700_000_000_000, "lat": 21.1, "lon": 106.1,
                         "acc": 8.0})
    clients, acked = [], [0] * conns
    for k in range(conns):
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-{first + k}",
                        protocol=mqtt.MQTTv311)
        if login:
            c.username_pw_set(*login)
        c.max_inflight_messages_set(window)
        c.max_queued_messages_set(0)
        c.on_publish = (lambda i: lambda *a: acked.__setitem__(i, acked[i] + 1))(k)
        c.connect("127.0.0.1", ports[(first + k) % len(ports)], keepalive=60)
        clients.append(c)
    sent = [0] * conns
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        for k, c in enumerate(clients):
            while sent[k] - acked[k] < window:
                c.publish(f"em/v1/dev/bench-{first + k}/fix", body, qos=1)
                sent[k] += 1
            c.loop(timeout=0)
    out.put(sum(acked))
    for c in clients:
        c.disconnect()


def measure(ports: list[int], login: tuple[str, str] | None, args: argparse.Namespace) -> float:
    out: mp.Queue = mp.get_context("spawn").Queue()
    per = args.connections // args.processes
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=client_main, args=(ports, login, per, i * per, args.window,
                                                    args.seconds, out))
             for i in range(args.processes)]
    for p in procs:
        p.start()
    total = sum(out.get(timeout=args.seconds + 120) for _ in procs)
    for p in procs:
        p.join(30)
    return total / args.seconds


def _paused_service_session(port: int) -> None:
    """Mosquitto keeps messages only for a subscriber: the service's persistent session,
    subscribed and then away (as RabbitMQ's quorum queue with nobody consuming)."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-service",
                    protocol=mqtt.MQTTv311, clean_session=False)
    done = threading.Event()
    c.on_subscribe = lambda *a: done.set()
    c.connect("127.0.0.1", port)
    c.subscribe("em/v1/dev/+/fix", qos=1)
    c.loop_start()
    done.wait(10)
    c.disconnect()
    c.loop_stop()


def rabbit_nodes(base: Path, count: int) -> list[EmbeddedRabbitMQ]:
    ports = [(free_port(), free_port(), free_port()) for _ in range(count)]
    names = tuple(node_name(m) for m, _, _ in ports) if count > 1 else ()
    nodes = [EmbeddedRabbitMQ(base / f"n{i}", m, a, dist_port=d, cluster_nodes=names)
             for i, (m, a, d) in enumerate(ports)]
    if count > 1:
        start_cluster(nodes)
    else:
        nodes[0].start(timeout_s=120)
    url = f"amqp://guest:guest@127.0.0.1:{nodes[0].amqp_port}/"
    with pika.BlockingConnection(connection_parameters(url)) as conn:
        declare_topology(conn.channel(), 1)
    return nodes


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=15)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--window", type=int, default=64)
    p.add_argument("--brokers", default="mosquitto,rabbitmq,rabbitmq3")
    args = p.parse_args()
    base = Path(tempfile.mkdtemp(prefix="giamsat-bench-publish-"))
    results = {}
    try:
        for broker in args.brokers.split(","):
            if broker == "mosquitto":
                mq = EmbeddedMosquitto(base / "mosquitto", free_port())
                mq.start()
                _paused_service_session(mq.port)
                try:
                    results[broker] = measure([mq.port], None, args)
                finally:
                    mq.stop()
            else:
                nodes = rabbit_nodes(base / broker, 3 if broker == "rabbitmq3" else 1)
                try:
                    results[broker] = measure([n.mqtt_port for n in nodes], ("guest", "guest"),
                                              args)
                finally:
                    for n in nodes:
                        n.stop()
            print(f"{broker:<10} {results[broker]:>10,.0f} PUBACKed msgs/s "
                  f"({args.connections} connections, window {args.window})", flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    if "mosquitto" in results:
        for b, v in results.items():
            print(f"ratio {b}/mosquitto: {v / results['mosquitto']:.2f}")


if __name__ == "__main__":
    main()
