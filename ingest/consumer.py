"""The MQTT side of ingest: a persistent session, a callback that only enqueues, and a writer
thread that stores a batch, commits, and only then acknowledges its messages.

No-loss rules (contract §1):
- The session is persistent (MQTT 5, clean start off, session never expires) and messages are
  acknowledged manually: a QoS 1 message not acknowledged is redelivered by the broker after a
  reconnect, so a crash at any moment loses nothing acknowledged.
- Acknowledge after commit, and only on the connection the message came on: each queued item
  carries the connection generation; after a reconnect the broker redelivers what was not
  acknowledged (stored again as a duplicate, i.e. not at all) and an old item's packet id may
  already name another message, so old items are never acknowledged.
- Flow control: the client's MQTT 5 Receive Maximum (<= 65,535, at most the queue bound) caps
  the unacknowledged messages the broker sends, so the queue fills only with QoS 0 heartbeats
  beyond that. When the queue is full anyway, the callback blocks the MQTT thread until there is
  room (counted as overflow) rather than drop anything; while it waits, no keepalive is sent,
  and a broker that gives up on us just redelivers later.
- Stopping: the callback stops enqueueing (what arrives then is unacknowledged, redelivered
  next session), the writer drains and acknowledges what is queued, then the client
  disconnects after the acknowledgements are written.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from config.mqtt import MqttTarget, parse_mqtt_url
from ingest.client import IngestClient
from ingest.records import Received, StoredBatch
from protocol import UPLINK_FILTERS

log = logging.getLogger("giamsat.ingest")

SUBSCRIPTIONS = [(topic_filter, 1) for topic_filter in UPLINK_FILTERS]
SESSION_NEVER_EXPIRES = 0xFFFFFFFF


def wall_clock_ms() -> int:
    """UTC epoch milliseconds."""
    return time.time_ns() // 1_000_000


class MessageQueue(queue.Queue[Received]):
    """The bounded queue from a broker callback to the writers, with a lean put (`offer`).

    ``Queue.put`` costs about five Python calls and a ``notify`` per message (~0.4 us here),
    paid on the broker's thread for every message; `offer` does the same under the queue's
    lock in one call, and wakes a writer only when one waits in ``get``.
    """

    def offer(self, item: Received) -> bool:
        """Put without waiting; False when the queue is full."""
        with self.mutex:
            if 0 < self.maxsize <= len(self.queue):
                return False
            self.queue.append(item)
            self.unfinished_tasks += 1
            if self.not_empty._waiters:  # type: ignore[attr-defined]  # a writer waits: wake it
                self.not_empty.notify()
        return True


def put_waiting(q: MessageQueue, item: Received, accepting: Callable[[], bool],
                on_overflow: Callable[[], None]) -> None:
    """Put a received message on the bounded queue; when it is full, count the overflow once
    and wait for room while ``accepting()`` (back-pressure on the broker, never a drop; a
    message left when stopping is not acknowledged, so the broker delivers it again)."""
    if q.offer(item):
        return
    on_overflow()
    while accepting():
        try:
            q.put(item, timeout=0.5)
            return
        except queue.Full:
            continue


class Consumer:
    """An MQTT subscriber whose callback only puts `Received` items on a bounded queue."""

    def __init__(self, mqtt_url: str, client_id: str, queue_max: int = 200_000, *,
                 username: str | None = None, password: str | None = None, keepalive: int = 30,
                 clock_ms: Callable[[], int] = wall_clock_ms,
                 on_overflow: Callable[[], None] = lambda: None) -> None:
        target = parse_mqtt_url(mqtt_url)
        self.host, self.port = target.host, target.port
        self.keepalive = keepalive
        self.queue = MessageQueue(maxsize=queue_max)
        self.connected = threading.Event()  # connected and subscribed
        self._clock_ms = clock_ms
        self._on_overflow = on_overflow
        self._generation = 0
        self._ack_lock = threading.Lock()
        self._accepting = True
        self._still_accepting = lambda: self._accepting  # built once, not per message
        self.client = self._make_client(client_id, target, username, password)

    def _make_client(self, client_id: str, target: MqttTarget, username: str | None,
                     password: str | None) -> IngestClient:
        client = IngestClient(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                              protocol=mqtt.MQTTv5, manual_ack=True)
        if target.tls:
            client.tls_set()  # the system's CA certificates
        user = target.username or username
        secret = target.password or password
        if user:
            client.username_pw_set(user, secret)
        client.fast_message = self.enqueue
        client.on_message = self.on_message
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.reconnect_delay_set(1, 10)
        return client

    @property
    def description(self) -> str:
        return f"MQTT {self.host}:{self.port} as client id {self.client._client_id.decode()}"

    def start(self) -> None:
        """Connect in the background (paho's thread reconnects by itself)."""
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_NEVER_EXPIRES
        props.ReceiveMaximum = max(1, min(65535, self.queue.maxsize or 65535))
        self.client.connect_async(self.host, self.port, self.keepalive, clean_start=False,
                                  properties=props)
        self.client.loop_start()

    # --- the MQTT thread ------------------------------------------------------------------

    def on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        """paho's callback (the stock path, e.g. QoS 2): only enqueues."""
        try:
            topic = msg.topic
        except UnicodeDecodeError:  # a bad topic, dead-lettered as such
            topic = msg._topic.decode("utf-8", "replace")
        self.enqueue(topic, bytes(msg.payload), msg.mid, msg.qos)

    def enqueue(self, topic: str, payload: bytes, mid: int, qos: int) -> None:
        """Put one message on the queue, waiting for room when it is full."""
        if not self._accepting:
            return  # stopping: not acknowledged, so the broker redelivers it next session
        item = Received(topic, payload, self._clock_ms(), mid, qos, self._generation)
        put_waiting(self.queue, item, self._still_accepting, self._on_overflow)

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: mqtt.ConnectFlags,
                    reason: mqtt.ReasonCode, properties: Properties | None) -> None:
        if reason.is_failure:
            log.warning("MQTT connection refused: %s", reason)
            return
        with self._ack_lock:
            self._generation += 1
        client.subscribe(SUBSCRIPTIONS)
        if not flags.session_present:
            log.info("MQTT session started (none was kept for this client id)")
        log.info("connected to MQTT %s:%d", self.host, self.port)

    def _on_subscribe(self, client: mqtt.Client, userdata: object, mid: int,
                      reasons: list[mqtt.ReasonCode], properties: Properties | None) -> None:
        refused = [str(r) for r in reasons if r.is_failure]
        if refused:
            log.error("MQTT subscription refused: %s", ", ".join(refused))
            return
        self.connected.set()  # connected and subscribed: ready to receive

    def _on_disconnect(self, client: mqtt.Client, userdata: object,
                       flags: mqtt.DisconnectFlags, reason: mqtt.ReasonCode,
                       properties: Properties | None) -> None:
        with self._ack_lock:
            self._generation += 1  # what was received so far must not be acknowledged now
        if self.connected.is_set() and self._accepting:
            log.warning("MQTT connection lost (%s); reconnecting", reason)
        self.connected.clear()

    # --- the writer thread ----------------------------------------------------------------

    def ack(self, items: Sequence[Received]) -> int:
        """Acknowledge the QoS 1 items received on the current connection; return how many."""
        with self._ack_lock:
            current = self._generation
            mids = [it.ack_id for it in items if it.qos == 1 and it.generation == current]
            self.client.ack_many(mids)
        return len(mids)

    def stop_accepting(self) -> None:
        self._accepting = False

    def disconnect(self) -> None:
        """Disconnect once queued acknowledgements are written, and stop paho's thread."""
        self._accepting = False
        self.client.disconnect()
        self.client.loop_stop()
        self.connected.clear()


class Source(Protocol):
    """What a writer drains and acknowledges: the MQTT `Consumer` or ingest.amqp's."""

    queue: MessageQueue

    def ack(self, items: Sequence[Received]) -> int: ...


class BatchOrder:
    """Keeps the writers' batches in queue order for the next stage.

    One writer drains the queue at a time and takes a ticket for its batch; stored batches are
    handed on in ticket order, whichever writer commits first. So the decide stage sees each
    device's messages in the order they arrived, as with a single writer (a fix handed on after
    a later one would count as late and never be decided).
    """

    def __init__(self) -> None:
        self.drain_lock = threading.Lock()
        self._lock = threading.Lock()
        self._next_ticket = 0
        self._next_out = 0
        self._done: dict[int, StoredBatch | None] = {}

    def ticket(self) -> int:
        """The next ticket; call while holding ``drain_lock``."""
        self._next_ticket += 1
        return self._next_ticket - 1

    def finish(self, ticket: int, stored: StoredBatch | None,
               hand_on: Callable[[StoredBatch], None]) -> None:
        """Record a finished batch (None: abandoned) and hand on every batch now in order."""
        with self._lock:
            self._done[ticket] = stored
            while self._next_out in self._done:
                batch = self._done.pop(self._next_out)
                self._next_out += 1
                if batch is not None:
                    hand_on(batch)


class Writer(threading.Thread):
    """Drains the queue in batches, stores each (retrying until it is stored), then acks it.

    A batch ends at `batch_max` messages, `batch_max_bytes` of payload (a transaction of a few
    tens of thousands of fixes, whatever the message shape) or `batch_wait_ms` after its first
    message. Several writers may drain one queue (each with its own database connection).

    `store_batch(items)` decodes and stores a batch in one transaction and returns what it
    newly stored; it raises on a database error (rolled back), and is called again with the
    same items after a backoff. `on_stored` runs after the acknowledgement.
    """

    def __init__(self, consumer: Source, store_batch: Callable[[list[Received]], StoredBatch],
                 *, batch_max: int = 5000, batch_wait_ms: int = 20,
                 batch_max_bytes: int = 2 * 1024 * 1024, name: str = "ingest-writer",
                 on_stored: Callable[[StoredBatch], None] = lambda batch: None,
                 on_error: Callable[[BaseException], None] = lambda exc: None,
                 idle: Callable[[], None] = lambda: None,
                 order: BatchOrder | None = None) -> None:
        super().__init__(name=name, daemon=True)
        self.order = order or BatchOrder()
        self.consumer = consumer
        self.store_batch = store_batch
        self.batch_max = batch_max
        self.batch_max_bytes = batch_max_bytes
        self.batch_wait_s = batch_wait_ms / 1000
        self.on_stored = on_stored
        self.on_error = on_error
        self.idle = idle
        self._draining = threading.Event()
        self._abort = threading.Event()

    def run(self) -> None:
        q = self.consumer.queue
        while not self._abort.is_set():
            with self.order.drain_lock:
                items = self._drain(q)
                ticket = self.order.ticket() if items else -1
            if not items:
                if self._draining.is_set():
                    return
                self.idle()
                continue
            stored = self._store(items)
            if stored is None:
                self.order.finish(ticket, None, self._hand_on)
                return  # aborted while the database was failing: left unacknowledged
            self.consumer.ack(items)
            self.order.finish(ticket, stored, self._hand_on)

    def drain_and_stop(self) -> None:
        """Finish what is queued, then stop."""
        self._draining.set()

    def abort(self) -> None:
        """Stop now, even with a batch not stored (it stays unacknowledged)."""
        self._abort.set()

    def _drain(self, q: queue.Queue[Received]) -> list[Received]:
        try:
            items = [q.get(timeout=0.05 if self._draining.is_set() else 0.25)]
        except queue.Empty:
            return []
        deadline = time.monotonic() + self.batch_wait_s
        size = len(items[0].payload)
        while len(items) < self.batch_max and size < self.batch_max_bytes:
            try:
                items.append(q.get_nowait())
            except queue.Empty:
                wait = deadline - time.monotonic()
                if wait <= 0:
                    break
                try:
                    items.append(q.get(timeout=wait))
                except queue.Empty:
                    break
            size += len(items[-1].payload)
        return items

    def _store(self, items: list[Received]) -> StoredBatch | None:
        delay = 0.1
        while not self._abort.is_set():
            try:
                return self.store_batch(items)
            except Exception as exc:  # noqa: BLE001 - any failure: keep the batch, retry
                self.on_error(exc)
                if self._abort.wait(delay):
                    break
                delay = min(delay * 2, 5.0)
        return None

    def _hand_on(self, stored: StoredBatch) -> None:
        try:
            self.on_stored(stored)
        except Exception:  # the batch is stored and acknowledged; the next stage must cope
            log.exception("downstream on_stored failed for a batch of %d fixes", len(stored))
