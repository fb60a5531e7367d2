"""The cluster drill (issue 12, item 4): three RabbitMQ nodes on loopback (the service's queues
are quorum queues with a replica on each), two workers sharing the ingest (two shards, each
worker the reader of its own and the standby of the other), devices publishing QoS 1 through
the MQTT listeners of two of the nodes.

While fixes flow: kill -9 the node that leads the quorum queues, then one worker. Every fix a
broker PUBACKed is stored exactly once; a violation published after each kill alerts within
30 s, once. Figures are printed (`pytest -s`)."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import pika
import pytest

from embedded.services import EmbeddedRabbitMQ, free_port, node_name, start_cluster
from ingest.amqp import connection_parameters, declare_topology, queue_name
from simulators import messages as sim
from tests.drills.harness import (
    Proc,
    Publisher,
    Sent,
    Stack,
    assert_exactly_once,
    fix_stream,
    ledger,
    mqtt_client,
    wait_connected,
    wait_drained,
    wait_for,
)

pytestmark = [pytest.mark.services, pytest.mark.slow]

SHARDS = 2
LOGIN = ("guest", "guest")
PROBES = 6  # devices kept out of the stream: each carries one violation
ALERT_WITHIN_S = 30.0


class ClusterStack(Stack):
    """The drill's PostgreSQL and registry (harness.Stack) with three RabbitMQ nodes instead of
    Mosquitto, and two workers."""

    def __init__(self, name: str, devices: int = 20) -> None:
        super().__init__(name, devices)
        ports = [(free_port(), free_port(), free_port()) for _ in range(3)]
        names = tuple(node_name(m) for m, _, _ in ports)
        self.nodes = [EmbeddedRabbitMQ(self.base / f"rabbit{i}", m, a, dist_port=d,
                                       cluster_nodes=names)
                      for i, (m, a, d) in enumerate(ports)]
        self.workers: list[Proc] = []

    def start(self) -> None:
        self.mqtt = _NoBroker()  # type: ignore[assignment]
        super().start()
        start_cluster(self.nodes)
        # the service's queues, declared on node 0 (which then leads them) before any device
        with pika.BlockingConnection(connection_parameters(self.amqp_url(0))) as conn:
            declare_topology(conn.channel(), SHARDS)
        # a node that joined the cluster restarted its listeners: each must take a device again
        for node in self.nodes:
            probe = mqtt_client("127.0.0.1", node.mqtt_port, f"probe-{node.nodename}", LOGIN)
            try:
                wait_connected(probe, 60)
            finally:
                probe.disconnect()
                probe.loop_stop()

    def close(self, keep: bool = False) -> None:
        for w in self.workers:
            with contextlib.suppress(Exception):
                w.stop(20)
        for n in self.nodes:
            with contextlib.suppress(Exception):
                n.stop()
        super().close(keep)

    def amqp_url(self, i: int) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.nodes[i].amqp_port}/"

    def mqtt_port(self, i: int) -> int:
        return self.nodes[i].mqtt_port

    def start_workers(self) -> None:
        for index in range(SHARDS):
            order = [index, *(i for i in range(3) if i != index)]
            env = self.env()
            env.update(GIAMSAT_AMQP_URL=",".join(self.amqp_url(i) for i in order),
                       GIAMSAT_MQTT_URL=f"mqtt://guest:guest@127.0.0.1:{self.mqtt_port(1)}",
                       GIAMSAT_WORKERS=str(SHARDS), GIAMSAT_WORKER_INDEX=str(index),
                       GIAMSAT_WORKER_METRICS_PORT=str(free_port()),
                       GIAMSAT_DATA_DIR=str(self.base / f"worker{index}"),
                       GIAMSAT_MQTT_CLIENT_ID=f"giamsat-drill-w{index}")
            Path(env["GIAMSAT_DATA_DIR"]).mkdir(exist_ok=True)
            self.workers.append(Proc(f"worker{index}", self.worker_argv(), env,
                                     self.base / f"worker{index}.log").start())
        wait_for(lambda: all("consuming AMQP" in w.output() for w in self.workers), 90,
                 "both workers to consume", every_s=0.5)

    @staticmethod
    def worker_argv() -> list[str]:
        import sys

        return [sys.executable, "-m", "giamsat", "worker"]

    def leader(self) -> str:
        out = self.nodes[1].ctl("list_queues", "name", "leader", "-q")
        return " ".join(line for line in out.splitlines() if queue_name(0) in line)

    def shard_of(self, device: str) -> int | None:
        rows = self.query("SELECT shard FROM ingest_routes WHERE device_id = %s AND kind = 'fix'",
                          device)
        return rows[0][0] if rows else None

    def zone_exits(self) -> dict[str, int]:
        rows = self.query("SELECT d.id, count(*) FROM alerts a JOIN devices d "
                          "ON d.supervisee_id = a.supervisee_id WHERE a.type = 'zone_exit' "
                          "GROUP BY d.id")
        return dict(rows)

    def logs(self) -> str:
        return "\n".join(f"--- {w.name}\n{w.output()[-3000:]}" for w in self.workers)


class _NoBroker:
    """Stands in for the harness's Mosquitto: this stack's brokers are the RabbitMQ nodes."""

    port = 0

    def start(self) -> None: ...

    def stop(self) -> None: ...


def _publish(port: int, client_id: str, messages, rate: float) -> Publisher:
    p = Publisher("127.0.0.1", port, client_id, messages, rate, login=LOGIN)
    p.start()
    return p


def _violation(device: str, seq0: int) -> list:
    """Three fixes 20 km north of home (the residence is a 3 km circle): a confirmed exit."""
    now = sim.now_ms()
    return [(sim.topic(device, "fix"),
             sim.encode(sim.fix(seq=seq0 + k, ts=now + k * 1000, lat=sim.DEFAULT_LAT + 0.18,
                                lon=sim.DEFAULT_LON, acc=8.0)),
             (device, seq0 + k, now + k * 1000)) for k in range(3)]


def _home_fix(device: str) -> list:
    now = sim.now_ms() - 5000
    return [(sim.topic(device, "fix"), sim.encode(sim.fix(seq=0, ts=now, acc=8.0)),
             (device, 0, now))]


def _alerted_within(stack: ClusterStack, device: str, since: float) -> float:
    wait_for(lambda: stack.zone_exits().get(device), ALERT_WITHIN_S,
             f"the zone_exit alert of {device}", every_s=0.25)
    return time.monotonic() - since


def test_cluster_node_and_worker_kill_9_lose_nothing_and_alerts_follow():
    total, rate = 16_000, 800.0
    with ClusterStack("cluster", devices=20) as stack:
        try:
            stack.start_workers()
            stream_devices, probes = stack.devices[:-PROBES], stack.devices[-PROBES:]
            pubs = [_publish(stack.mqtt_port(1 + k), f"drill-pub-{k}",
                             fix_stream(stream_devices[k::2], total // 2, rate / 2), rate / 2)
                    for k in range(2)]
            pubs += [_publish(stack.mqtt_port(1), f"drill-home-{d}", _home_fix(d), 10)
                     for d in probes]
            wait_for(lambda: all(stack.shard_of(d) is not None for d in probes), 30,
                     "the probes' routes to be recorded")
            time.sleep(3.0)
            leader = stack.leader()
            assert stack.nodes[0].nodename in leader, leader
            stack.nodes[0].kill()  # kill -9 of the queues' leader while fixes flow
            killed_node_at = time.monotonic()
            first = probes[0]
            pubs.append(_publish(stack.mqtt_port(2), "drill-viol-1", _violation(first, 1), 10))
            node_alert_s = _alerted_within(stack, first, killed_node_at)
            new_leader = stack.leader()

            time.sleep(2.0)
            victim = stack.workers[0]
            victim.kill9()  # kill -9 of the worker reading shard 0
            killed_worker_at = time.monotonic()
            second = next(d for d in probes[1:] if stack.shard_of(d) == 0)
            pubs.append(_publish(stack.mqtt_port(1), "drill-viol-2", _violation(second, 1), 10))
            worker_alert_s = _alerted_within(stack, second, killed_worker_at)

            for p in pubs:
                p.join(60)
            assert all(p.wait_all_acked(60) for p in pubs), "some publish was never PUBACKed"
            sent = Sent()
            for p in pubs:
                sent.keys += p.sent.keys
                sent.infos += p.sent.infos
            drain_s = wait_drained(stack, sent, 90)
            for p in pubs:
                p.close()
            led = ledger(stack, sent)
            exits = stack.zone_exits()
            print(f"\n[cluster] node 0 (leader of the queues) killed -9 while streaming "
                  f"{rate:.0f} fixes/s; leader after: {new_leader!r}; violation alerted "
                  f"{node_alert_s:.1f} s after the kill")
            print(f"[cluster] worker 0 killed -9; worker 1 took shard 0; violation on shard 0 "
                  f"alerted {worker_alert_s:.1f} s after the kill; drained {drain_s:.1f} s "
                  f"after the publishers finished")
            print(f"[cluster] {led.line()}; zone_exit alerts: {exits}")
            assert_exactly_once(led)
            assert led.acked == led.published
            assert exits == {first: 1, second: 1}  # once each, nothing else fired
            assert "now the active consumer of shard 0" in stack.workers[1].output()
        except BaseException:
            print(stack.logs())
            raise
