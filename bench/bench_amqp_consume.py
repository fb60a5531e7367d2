"""Benchmark (issue 12): how fast the AMQP side of ingest (pika, ingest/amqp.py) takes messages
from a RabbitMQ quorum queue, with nothing stored: the ceiling that the AMQP path puts on the
service, next to the MQTT path's (ingest/client.py says ~34 us of CPU per message with stock
paho). Starts its own RabbitMQ node on free ports, fills the queue over AMQP, then drains it
with `AmqpConsumer`, acking each 5,000-message batch as the writers do.

    .venv/bin/python bench/bench_amqp_consume.py --messages 100000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import orjson  # noqa: E402
import pika  # noqa: E402

from embedded.services import EmbeddedRabbitMQ, free_port  # noqa: E402
from ingest.amqp import (  # noqa: E402
    AmqpConsumer,
    connection_parameters,
    declare_topology,
    queue_name,
)


def fill(url: str, n: int) -> float:
    """Publish n single-fix messages through amq.topic (no confirms: a blocking channel would
    wait for each), then wait until the queue holds them all; return s."""
    conn = pika.BlockingConnection(connection_parameters(url))
    ch = conn.channel()
    declare_topology(ch, 1)
    body = orjson.dumps({"seq": 1, "ts": 1_700_000_000_000, "lat": 21.1, "lon": 106.1,
                         "acc": 8.0})
    t0 = time.perf_counter()
    for i in range(n):
        ch.basic_publish("amq.topic", f"em.v1.dev.bench-{i % 1000}.fix", body,
                         pika.BasicProperties(delivery_mode=2), mandatory=False)
    while ch.queue_declare(queue_name(0), passive=True).method.message_count < n:
        time.sleep(0.2)
    conn.close()
    return time.perf_counter() - t0


def drain(url: str, n: int, batch: int) -> tuple[float, float]:
    """Consume n messages, acking per batch; return (wall s, CPU s of this process)."""
    consumer = AmqpConsumer(url, queue_max=200_000, prefetch=20_000)
    t0, c0 = time.perf_counter(), time.process_time()
    consumer.start()
    got = 0
    while got < n:
        items = [consumer.queue.get()]
        while len(items) < batch and got + len(items) < n:
            try:
                items.append(consumer.queue.get(timeout=0.05))
            except Exception:  # noqa: BLE001 - queue.Empty
                break
        consumer.ack(items)
        got += len(items)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    consumer.disconnect()
    return wall, cpu


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=100_000)
    p.add_argument("--batch", type=int, default=5000)
    args = p.parse_args()
    node = EmbeddedRabbitMQ(Path(tempfile.mkdtemp(prefix="giamsat-bench-amqp-")), free_port(),
                            free_port())
    node.start()
    try:
        url = f"amqp://guest:guest@127.0.0.1:{node.amqp_port}/"
        fill_s = fill(url, args.messages)
        print(f"filled the quorum queue: {args.messages:,} messages in {fill_s:.1f} s "
              f"({args.messages / fill_s:,.0f}/s, one AMQP publisher)")
        wall, cpu = drain(url, args.messages, args.batch)
        print(f"drained: {args.messages / wall:,.0f} messages/s wall, "
              f"{cpu / args.messages * 1e6:.1f} us of this process's CPU per message "
              f"(pika + AmqpConsumer; nothing stored)")
    finally:
        node.stop()


if __name__ == "__main__":
    main()
