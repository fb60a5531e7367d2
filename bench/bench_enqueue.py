"""Benchmark (issue 14): CPU time per message of the ingest consumers' enqueue path (the MQTT
callback's and the AMQP callback's share: build the queue item, put it on the bounded queue)
and of acknowledging a drained batch; "backlog" lets the queue fill (every item stays alive),
"steady" drains it every 2,000 messages as a writer that keeps up. No broker: the clients are
built, never connected.

    .venv/bin/python bench/bench_enqueue.py --messages 500000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ingest.amqp import AmqpConsumer  # noqa: E402
from ingest.consumer import Consumer  # noqa: E402


def per_message_ns(run: object, n: int) -> tuple[float, float]:
    """(CPU ns, wall ns) per message of ``run(n)``."""
    cpu, wall = time.process_time(), time.perf_counter()
    run(n)  # type: ignore[operator]
    return ((time.process_time() - cpu) / n * 1e9, (time.perf_counter() - wall) / n * 1e9)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=500_000)
    n = p.parse_args().messages
    payload = b'{"seq":1,"ts":1700000000000,"lat":21.1,"lon":106.1,"acc":8.0}'
    mqtt = Consumer("mqtt://127.0.0.1:1", "bench-enqueue", queue_max=n + 1)
    amqp = AmqpConsumer("amqp://guest:guest@127.0.0.1:1/", queue_max=n + 1)

    def mqtt_enqueue(k: int) -> None:
        for i in range(k):
            mqtt.enqueue("em/v1/dev/bench-1/fix", payload, i % 65535 + 1, 1)

    def amqp_enqueue(k: int) -> None:
        for i in range(k):
            amqp.enqueue("em.v1.dev.bench-1.fix", payload, i + 1)

    def mqtt_ack(k: int) -> None:  # no connection: paho queues nothing, the filter is measured
        items = [mqtt.queue.get_nowait() for _ in range(k)]
        for start in range(0, k, 5000):
            mqtt._generation = items[0].generation
            mqtt.ack(items[start:start + 5000])

    def steady(k: int) -> None:  # a writer keeps up: batches of 2,000, drained and acked
        for _ in range(k // 2000):
            mqtt_enqueue(2000)
            mqtt_ack(2000)

    for name, run in (("mqtt backlog", mqtt_enqueue), ("amqp backlog", amqp_enqueue),
                      ("mqtt drain+ack", mqtt_ack), ("mqtt steady", steady)):
        cpu, wall = per_message_ns(run, n)
        print(f"{name:16s} {cpu:7.0f} ns CPU/message  {wall:7.0f} ns wall/message")


if __name__ == "__main__":
    main()
