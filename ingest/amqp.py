"""The AMQP side of ingest, for the durable broker (RabbitMQ): devices speak MQTT to its MQTT
plugin, the service reads quorum queues of its own over AMQP 0-9-1 and acks after commit.

Why not read as an MQTT subscriber (contract §1, issue 12):
- A device's QoS 1 publish is PUBACKed by RabbitMQ on the publisher confirm, i.e. once every
  queue it routes to has stored it; a quorum queue confirms once a majority of its replicas
  wrote it to their log (fsync). A publish that routes to no queue is PUBACKed and dropped, so
  the service's queues are declared (``declare_topology``) before devices connect: ``giamsat
  up`` declares them as soon as the broker listens, before anything else starts.
- The queues are plain durable quorum queues named ``giamsat.ingest.{shard}``, tied to no MQTT
  client id: no stray ``clean_session`` connection can wipe them, and they never expire.

Topology: ``amq.topic`` (where the MQTT plugin publishes; an MQTT topic ``a/b/c`` is the
routing key ``a.b.c``) is bound for the device topics to the consistent-hash exchange
``giamsat.ingest``, which spreads routing keys (one per device and kind) over ``shards``
quorum queues. Each queue has a single active consumer: every worker consumes every queue,
its own shard (``worker_index``) first and the others ``standby_delay_s`` later, so each queue
is read by one worker at a time in order, and another takes over at once when that one's
connection goes (kill -9 included).

No-loss rules, as for MQTT (ingest/consumer.py): an item is acked only after its batch is
committed, and only on the channel it came on (each item carries the connection generation);
acks go as ``basic_ack(multiple=True)`` up to the highest tag below which every delivery is
committed, so batches that commit out of order are never acked early.
"""

from __future__ import annotations

import heapq
import logging
import struct
import threading
import time
from collections.abc import Callable, Sequence
from urllib.parse import unquote, urlsplit

import pika
import pika.exceptions
import pika.frame
from pika.adapters.blocking_connection import BlockingChannel

from ingest.consumer import MessageQueue, put_waiting, wall_clock_ms
from ingest.records import Received
from protocol import parse_uplink_topic

log = logging.getLogger("giamsat.ingest")
logging.getLogger("pika").setLevel(logging.WARNING)  # it logs every connection step at INFO

EXCHANGE = "giamsat.ingest"
SOURCE_EXCHANGE = "amq.topic"  # the MQTT plugin's exchange
# MQTT subscriptions of ingest/consumer.py as AMQP topic bindings ('/' -> '.', '+' -> '*').
BINDINGS = ("em.v1.dev.*.fix", "em.v1.dev.*.hb", "em.v1.dev.*.evt", "em.v1.dev.*.ack",
            "owntracks.*.*")
QUEUE_ARGUMENTS = {"x-queue-type": "quorum", "x-single-active-consumer": True}


def queue_name(shard: int) -> str:
    """The quorum queue of one shard."""
    return f"{EXCHANGE}.{shard}"


def is_amqp_url(url: str | None) -> bool:
    """True for ``amqp://`` / ``amqps://`` URLs (the service reads the durable broker)."""
    return bool(url) and urlsplit(url).scheme in ("amqp", "amqps")  # type: ignore[arg-type]


def cluster_parameters(urls: str, heartbeat_s: int = 30) -> list[pika.URLParameters]:
    """One or several comma-separated AMQP URLs (the nodes of a cluster, tried in order)."""
    return [connection_parameters(u.strip(), heartbeat_s) for u in urls.split(",") if u.strip()]


def connection_parameters(url: str, heartbeat_s: int = 30) -> pika.URLParameters:
    """pika parameters from ``amqp://user:pass@host:port/vhost`` (default vhost ``/``)."""
    params = pika.URLParameters(url)
    params.heartbeat = heartbeat_s
    params.blocked_connection_timeout = None
    params.connection_attempts = 1
    parts = urlsplit(url)
    if parts.path in ("", "/"):
        params.virtual_host = "/"
    else:
        params.virtual_host = unquote(parts.path[1:])
    return params


def declare_topology(channel: BlockingChannel, shards: int) -> None:
    """Declare the exchange, the shard queues and their bindings (idempotent).

    Call it before any device publishes: a QoS 1 message that routes to no queue is PUBACKed
    and dropped by the broker. Shard queues are never deleted (a smaller ``shards`` leaves
    the extra queues bound: their messages wait for a worker that reads them).

    With one shard the queue is bound to ``amq.topic`` directly: routing through the
    consistent-hash exchange as well halved what one node PUBACKs per second on the 2-core
    development machine (issue 12). The new route is bound before the other one is removed,
    so a message always has one (a broker routes a message to a queue once, whatever the
    number of paths).
    """
    channel.exchange_declare(EXCHANGE, exchange_type="x-consistent-hash", durable=True)
    for shard in range(shards):
        channel.queue_declare(queue_name(shard), durable=True, arguments=QUEUE_ARGUMENTS)
        channel.queue_bind(queue_name(shard), EXCHANGE, routing_key="1")  # weight 1
    for key in BINDINGS:
        if shards == 1:
            channel.queue_bind(queue_name(0), SOURCE_EXCHANGE, routing_key=key)
        else:
            channel.exchange_bind(destination=EXCHANGE, source=SOURCE_EXCHANGE, routing_key=key)
    for key in BINDINGS:
        if shards == 1:
            channel.exchange_unbind(destination=EXCHANGE, source=SOURCE_EXCHANGE,
                                    routing_key=key)
        else:
            channel.queue_unbind(queue_name(0), SOURCE_EXCHANGE, routing_key=key)


def route_of(topic: str) -> tuple[str, str] | None:
    """(device id, kind) of a device topic (MQTT form), OwnTracks as kind ``fix``."""
    route = parse_uplink_topic(topic)
    if isinstance(route, str):
        return None
    kind, device_id = route
    return device_id, "fix" if kind == "owntracks" else kind


def mqtt_topic(routing_key: str) -> str:
    """The device's MQTT topic back from the routing key (device ids hold no '.' or '/')."""
    return routing_key.replace(".", "/")


class AckWindow:
    """Delivery tags of one channel, acked in order: ``finish(first, last)`` records a committed
    contiguous run and returns the tag to ack with ``multiple=True`` (or None)."""

    def __init__(self) -> None:
        self.acked = 0
        self._done: list[tuple[int, int]] = []

    def finish(self, first: int, last: int) -> int | None:
        heapq.heappush(self._done, (first, last))
        upto = self.acked
        while self._done and self._done[0][0] <= upto + 1:
            upto = max(upto, heapq.heappop(self._done)[1])
        if upto == self.acked:
            return None
        self.acked = upto
        return upto


_DELIVER = b"\x00\x3c\x00\x3c"  # a Basic.Deliver method frame's payload starts so
_FRAME = struct.Struct(">BHI")  # frame type, channel, payload size (then payload, 0xCE)


_PIKA_INTERNALS = ("_on_data_available", "_frame_buffer", "_process_frame", "bytes_received")


class FastDeliveries:
    """Takes a consuming channel's deliveries straight from pika's frame buffer.

    pika decodes each delivery into three frame objects, a method and a properties object and
    a pending event before the consumer callback runs (~18 us of CPU per message, about as much
    as the rest of ingest): here a ``Basic.Deliver`` method frame with its content header and
    body frames is read with ``struct`` and handed to ``on_delivery(consumer_tag,
    delivery_tag, routing_key, body)`` at once. Every other frame (and a delivery on another
    channel) goes to pika as before, in order; a delivery whose frames have not all arrived
    waits in the buffer. The bytes read here are added to pika's count of bytes received,
    which its heartbeat check watches (a stream of deliveries is a live connection).
    """

    def __init__(self, conn: pika.BlockingConnection, channel: BlockingChannel,
                 on_delivery: Callable[[str, int, str, bytes], None]) -> None:
        self._impl = conn._impl  # type: ignore[attr-defined]
        self._channel = channel.channel_number
        self._on_delivery = on_delivery
        self._impl._on_data_available = self.data_available

    @classmethod
    def install(cls, conn: pika.BlockingConnection, channel: BlockingChannel,
                on_delivery: Callable[[str, int, str, bytes], None]) -> bool:
        """Take over the connection's deliveries if this pika has the internals read here (the
        tested 1.4 series); otherwise leave them to pika's consumer callbacks, slower but the
        same deliveries."""
        impl = getattr(conn, "_impl", None)
        if not all(hasattr(impl, name) for name in _PIKA_INTERNALS):
            log.warning("pika %s lacks the internals the fast delivery path reads; using "
                        "pika's callbacks", getattr(pika, "__version__", "?"))
            return False
        cls(conn, channel, on_delivery)
        return True

    def data_available(self, data_in: bytes) -> None:
        impl = self._impl
        buf = impl._frame_buffer + data_in if impl._frame_buffer else data_in
        pos, size = 0, len(buf)
        unpack = _FRAME.unpack_from
        try:
            while size - pos >= 8:
                ftype, channel, length = unpack(buf, pos)
                end = pos + 8 + length
                if end > size:
                    break
                if ftype == 1 and channel == self._channel and buf[pos + 7:pos + 11] == _DELIVER:
                    done = self._delivery(buf, pos + 11, end, size)
                    if done < 0:
                        break  # its header or body is still on the way
                    pos = done
                    continue
                consumed, frame_value = pika.frame.decode_frame(buf[pos:end])
                if frame_value is None:
                    break
                pos += consumed
                impl._process_frame(frame_value)
        finally:
            impl._frame_buffer = buf[pos:]
            impl.bytes_received += pos  # as pika counts them: its heartbeat check watches it

    def _delivery(self, buf: bytes, at: int, end: int, size: int) -> int:
        """Hand on the delivery whose method arguments start at ``at`` (its frame ends at
        ``end``); return where the next frame starts, or -1 when the content is incomplete."""
        n = buf[at]
        consumer_tag = buf[at + 1:at + 1 + n].decode()
        at += 1 + n
        delivery_tag = int.from_bytes(buf[at:at + 8], "big")
        at += 9  # and the redelivered bit
        at += 1 + buf[at]  # exchange
        n = buf[at]
        routing_key = buf[at + 1:at + 1 + n].decode()
        pos = end  # the content header frame: class, weight, body size, properties
        if size - pos < 8:
            return -1
        ftype, _, length = _FRAME.unpack_from(buf, pos)
        if pos + 8 + length > size:
            return -1
        if ftype != 2:
            raise pika.exceptions.UnexpectedFrameError(f"frame type {ftype} after a delivery")
        body_size = int.from_bytes(buf[pos + 11:pos + 19], "big")
        pos += 8 + length
        parts = []
        while body_size > 0:
            if size - pos < 8:
                return -1
            ftype, _, length = _FRAME.unpack_from(buf, pos)
            if pos + 8 + length > size:
                return -1
            if ftype != 3:
                raise pika.exceptions.UnexpectedFrameError(f"frame type {ftype} in a body")
            parts.append(buf[pos + 7:pos + 7 + length])
            body_size -= length
            pos += 8 + length
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        self._on_delivery(consumer_tag, delivery_tag, routing_key, body)
        return pos


class AmqpConsumer:
    """Reads the shard queues into a bounded queue of ``Received`` items (as the MQTT
    consumer's, so the writers and the rest of ingest are unchanged).

    ``on_activate(shard)`` runs (on the AMQP thread) when the first message of a shard arrives
    on a connection: this worker has just become that queue's active consumer, and the decide
    stage must catch up with what the previous owner stored but did not decide.
    """

    def __init__(self, amqp_url: str, queue_max: int = 200_000, *, shards: int = 1,
                 worker_index: int = 0, prefetch: int = 20_000, standby_delay_s: float = 3.0,
                 clock_ms: Callable[[], int] = wall_clock_ms,
                 on_overflow: Callable[[], None] = lambda: None,
                 on_activate: Callable[[int], None] = lambda shard: None) -> None:
        self.nodes = cluster_parameters(amqp_url)
        self.params = self.nodes[0]
        self.shards = max(1, shards)
        self.worker_index = worker_index % self.shards
        self.prefetch = max(1, min(prefetch, queue_max or prefetch, 65535))
        self.standby_delay_s = standby_delay_s
        self.queue = MessageQueue(maxsize=queue_max)
        self.connected = threading.Event()  # connected and consuming (active or standby)
        self.active: set[int] = set()  # shards whose messages this connection has received
        self.routes: dict[str, int] = {}  # routing key -> the shard it last came from
        self._clock_ms = clock_ms
        self._on_overflow = on_overflow
        self._on_activate = on_activate
        self._lock = threading.Lock()
        self._generation = 0
        self._window = AckWindow()
        self._shard_of: dict[str, int] = {}  # consumer tag -> shard, on this connection
        self._conn: pika.BlockingConnection | None = None
        self._channel: BlockingChannel | None = None
        self._accepting = True
        self._still_accepting = lambda: self._accepting  # built once, not per message
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ingest-amqp", daemon=True)

    @property
    def description(self) -> str:
        nodes = ",".join(f"{p.host}:{p.port}" for p in self.nodes)
        return f"AMQP {nodes}, shard {self.worker_index} of {self.shards}"

    def start(self) -> None:
        """Connect in the background; the thread reconnects by itself."""
        self._thread.start()

    # --- the AMQP thread ------------------------------------------------------------------

    def _run(self) -> None:
        delay = 0.5
        while not self._stop.is_set():
            try:
                self._session()
                delay = 0.5
            except (pika.exceptions.AMQPError, OSError) as exc:
                if not self._stop.is_set():
                    log.warning("AMQP connection lost or refused (%s: %s); retrying",
                                type(exc).__name__, exc)
            finally:
                self._end_session()
            self._stop.wait(delay)
            delay = min(delay * 2, 5.0)

    def _session(self) -> None:
        conn = pika.BlockingConnection(self.nodes)  # the first node that answers
        channel = conn.channel()
        channel.basic_qos(prefetch_count=self.prefetch)
        declare_topology(channel, self.shards)
        with self._lock:
            self._generation += 1
            self._conn, self._channel, self._window = conn, channel, AckWindow()
            self.active = set()
        self._shard_of = {}
        FastDeliveries.install(conn, channel, self._fast_delivery)
        own = self.worker_index
        self._consume(channel, own)
        standby = [s for s in range(self.shards) if s != own]
        if standby:  # after the other workers had time to take their own shard
            conn.call_later(self.standby_delay_s, lambda: self._consume_all(channel, standby))
        self.connected.set()
        log.info("consuming %s", self.description)
        while not self._stop.is_set():
            conn.process_data_events(time_limit=0.25)
        conn.process_data_events(time_limit=0)  # the last acks
        conn.close()

    def _consume_all(self, channel: BlockingChannel, shards: Sequence[int]) -> None:
        for shard in shards:
            self._consume(channel, shard)

    def _consume(self, channel: BlockingChannel, shard: int) -> None:
        if channel.is_open:
            # the tag is known before the first delivery, which may come with the ConsumeOk
            tag = f"giamsat.shard.{shard}.{self._generation}"
            self._shard_of[tag] = shard
            channel.basic_consume(queue_name(shard), self._callback(shard), auto_ack=False,
                                  consumer_tag=tag)

    def _callback(self, shard: int) -> Callable[..., None]:
        """pika's consumer callback (deliveries normally take ``FastDeliveries``)."""
        def on_message(ch: BlockingChannel, method: object, props: object, body: bytes) -> None:
            self._delivered(shard, method.routing_key, body,  # type: ignore[attr-defined]
                            method.delivery_tag)  # type: ignore[attr-defined]
        return on_message

    def _fast_delivery(self, consumer_tag: str, tag: int, key: str, body: bytes) -> None:
        self._delivered(self._shard_of[consumer_tag], key, body, tag)

    def _delivered(self, shard: int, key: str, body: bytes, tag: int) -> None:
        if shard not in self.active:
            self.active.add(shard)
            log.info("now the active consumer of shard %d", shard)
            self._on_activate(shard)
        if self.routes.get(key) != shard:
            self.routes[key] = shard
        self.enqueue(key, body, tag)

    def enqueue(self, routing_key: str, payload: bytes, tag: int) -> None:
        """Put one delivery on the queue, waiting for room when it is full (never dropped)."""
        if not self._accepting:
            return  # stopping: not acked, so the broker redelivers it
        item = Received(mqtt_topic(routing_key), payload, self._clock_ms(), tag, 1,
                        self._generation)
        put_waiting(self.queue, item, self._still_accepting, self._on_overflow)

    def _end_session(self) -> None:
        with self._lock:
            self._generation += 1  # what was received so far must not be acked any more
            conn, self._conn, self._channel = self._conn, None, None
        if self.connected.is_set() and not self._stop.is_set():
            log.warning("AMQP consumer disconnected; unacked messages go back to the queue")
        self.connected.clear()
        if conn is not None and conn.is_open:
            try:
                conn.close()
            except (pika.exceptions.AMQPError, OSError):
                pass

    # --- the writer threads ---------------------------------------------------------------

    def ack(self, items: Sequence[Received]) -> int:
        """Ack a committed batch (a contiguous run of deliveries) once every earlier delivery
        on its channel is committed too; return how many items were current."""
        current = [it for it in items if it.generation == self._generation]
        if not current:
            return 0
        with self._lock:
            if current[0].generation != self._generation or self._conn is None:
                return 0
            upto = self._window.finish(current[0].ack_id, current[-1].ack_id)
            conn, channel = self._conn, self._channel
        if upto is not None and channel is not None:
            try:
                conn.add_callback_threadsafe(lambda: self._basic_ack(channel, upto))
            except (pika.exceptions.AMQPError, OSError):
                return 0  # the connection went: the broker redelivers, stored as duplicates
        return len(current)

    @staticmethod
    def _basic_ack(channel: BlockingChannel, upto: int) -> None:
        if channel.is_open:
            channel.basic_ack(upto, multiple=True)

    def stop_accepting(self) -> None:
        self._accepting = False

    def disconnect(self) -> None:
        """Send the queued acks, close the connection and stop the thread."""
        self._accepting = False
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        self.connected.clear()


def wait_connected(consumer: AmqpConsumer, timeout_s: float) -> bool:
    """Wait until the consumer is consuming (tests)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if consumer.connected.wait(0.1):
            return True
    return False
