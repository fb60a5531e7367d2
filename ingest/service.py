"""The ingest service: MQTT consumer -> decode -> store -> acknowledge -> `on_stored`.

`IngestService` runs inside the pipeline process (`giamsat worker`, which `giamsat up` runs;
the composition root `giamsat.pipeline` wires `on_stored` to the decide stage).
`run_forever(settings)` runs ingest alone (`python -m ingest`: the ingest benchmark and tests
use it), storing without deciding; it stops cleanly on SIGTERM / SIGINT.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import psycopg
from prometheus_client import CollectorRegistry

from ingest.amqp import AmqpConsumer, route_of
from ingest.consumer import BatchOrder, Consumer, Writer, wall_clock_ms
from ingest.decode import Decoded, Limits, decode_messages
from ingest.metrics import IngestMetrics
from ingest.records import Received, Rejected, StoredBatch
from ingest.registry import RegistryCache, RegistrySnapshot
from ingest.store import Store
from schema import UnsafeTimescale, connect, migrate

log = logging.getLogger("giamsat.ingest")

# Errors that the same batch would raise again: isolate the message instead of retrying.
DETERMINISTIC = (psycopg.DataError, psycopg.IntegrityError, UnicodeError, ValueError)


class _Lane:
    """One writer's database connection and its health."""

    def __init__(self, db_url: str, max_accuracy_m: float, on_connect: Callable[[], None]):
        self.db_url = db_url
        self.max_accuracy_m = max_accuracy_m
        self.on_connect = on_connect
        self.conn: psycopg.Connection | None = None
        self.store: Store | None = None
        self.routes: dict[str, int] = {}  # topics whose shard this connection has recorded
        self.ok = False
        self.failures = 0
        self.last_ping = 0.0

    def ensure(self) -> Store:
        if self.store is None or self.conn is None or self.conn.closed:
            self.close()
            self.conn = connect(self.db_url, application_name="giamsat-ingest")
            self.store = Store(self.conn, self.max_accuracy_m)
            self.on_connect()
        return self.store

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except psycopg.Error:
                pass
        self.conn, self.store = None, None


class IngestService:
    """Consume device messages from MQTT and store them (contract §1).

    `settings_like`: anything with the `config.Settings` ingest keys. `registry`: the
    Prometheus registry for the metrics (a private one when None). `on_stored(StoredBatch)`:
    called after each committed and acknowledged batch, one batch at a time (never
    concurrently). `clock`: UTC epoch ms, stamped on each message as it is taken from the broker.
    `amqp_url`: read the durable broker's quorum queues over AMQP instead of subscribing to
    `mqtt_url` (ingest/amqp.py); `on_activate(shard)` then runs when this worker becomes the
    active reader of a shard. `writers`: writer threads, each with its own database connection, so that one batch is
    decoded while another is being written (batches commit independently, but on_stored sees
    them in the order they left the queue: see `BatchOrder`).
    """

    def __init__(self, settings_like: Any, db_url: str, mqtt_url: str,
                 registry: CollectorRegistry | None = None,
                 on_stored: Callable[[StoredBatch], None] | None = None,
                 clock: Callable[[], int] = wall_clock_ms, writers: int = 2,
                 amqp_url: str | None = None,
                 on_activate: Callable[[int], None] = lambda shard: None) -> None:
        s = settings_like
        self.limits = Limits.from_settings(s)
        self.metrics = IngestMetrics(registry if registry is not None else CollectorRegistry())
        self._clock = clock
        self._on_stored = on_stored
        self._lock = threading.Lock()  # totals
        self._hand_on_lock = threading.Lock()  # one on_stored call at a time
        self.consumer: Consumer | AmqpConsumer
        if amqp_url:  # the durable broker: quorum queues read over AMQP (ingest/amqp.py)
            self.consumer = AmqpConsumer(
                amqp_url, s.ingest_queue_max, shards=s.workers, worker_index=s.worker_index,
                prefetch=s.amqp_prefetch, clock_ms=clock,
                on_overflow=self.metrics.queue_overflow.inc, on_activate=on_activate)
        else:
            self.consumer = Consumer(
                mqtt_url, s.mqtt_client_id, s.ingest_queue_max, username=s.mqtt_username,
                password=s.mqtt_password, clock_ms=clock,
                on_overflow=self.metrics.queue_overflow.inc)
        self.metrics.watch_queue(self.consumer.queue.qsize)
        self.metrics.healthy.set_function(lambda: float(self.healthy))
        self.registry_cache = RegistryCache()
        self.lanes = [_Lane(db_url, float(s.max_accuracy_m), self.registry_cache.invalidate)
                      for _ in range(max(1, writers))]
        order = BatchOrder()
        self.writers = [
            Writer(self.consumer, partial(self._store_batch, lane), batch_max=s.ingest_batch_max,
                   batch_wait_ms=s.ingest_batch_wait_ms, name=f"ingest-writer-{i}",
                   on_stored=self._hand_on, on_error=partial(self._on_error, lane),
                   idle=partial(self._idle, lane), order=order)
            for i, lane in enumerate(self.lanes)]
        self.totals = {"messages": 0, "fixes": 0, "duplicates": 0, "rejected": 0}

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Connect to the database (raises when it cannot), then start consuming."""
        for lane in self.lanes:
            lane.ensure()
            lane.ok = True
        self.registry_cache.get(self.lanes[0].conn)  # type: ignore[arg-type]
        for writer in self.writers:
            writer.start()
        self.consumer.start()
        log.info("ingest started: %s, %d writer(s)", self.consumer.description,
                 len(self.writers))

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop taking messages, store and acknowledge what is queued, disconnect."""
        self.consumer.stop_accepting()
        for writer in self.writers:
            writer.drain_and_stop()
        deadline = time.monotonic() + timeout_s
        for writer in self.writers:
            writer.join(max(0.0, deadline - time.monotonic()))
            if writer.is_alive():
                log.warning("ingest %s did not drain in %.0f s; leaving the rest "
                            "unacknowledged", writer.name, timeout_s)
                writer.abort()
                writer.join(10)
        self.consumer.disconnect()
        for lane in self.lanes:
            lane.close()
        log.info("ingest stopped: %s", self.totals)

    @property
    def healthy(self) -> bool:
        """Connected to the broker and the last storage attempts succeeded (for /readyz)."""
        return self.consumer.connected.is_set() and all(lane.ok for lane in self.lanes)

    # --- the writer threads ---------------------------------------------------------------

    def _store_batch(self, lane: _Lane, items: list[Received]) -> StoredBatch:
        store = lane.ensure()
        snapshot = self.registry_cache.get(store.conn)
        decoded = decode_messages(items, registered=snapshot, limits=self.limits)
        received_ms = min(it.received_ms for it in items)
        started = time.perf_counter()
        routes = self._new_routes(lane, items)
        try:
            if routes:  # in the batch's transaction (Store.write commits it)
                _record_routes(store.conn, routes)
            stored = store.write(decoded, snapshot, received_ms, self._clock())
            lane.routes.update(routes)
        except DETERMINISTIC as exc:
            log.error("the database refused a batch of %d messages (%s); storing them one by one",
                      len(items), exc)
            stored = self._store_one_by_one(store, items, snapshot)
        self.metrics.commit_seconds.observe(time.perf_counter() - started)
        self._count(items, decoded, stored)
        lane.ok, lane.failures = True, 0
        return stored

    def _new_routes(self, lane: _Lane, items: list[Received]) -> dict[str, int]:
        """Topics of the batch whose shard is not recorded yet (AMQP with several shards)."""
        consumer = self.consumer
        if not isinstance(consumer, AmqpConsumer) or consumer.shards <= 1:
            return {}
        routes, known = consumer.routes, lane.routes
        new = {}
        for it in items:
            topic = it.topic
            shard = routes.get(topic.replace("/", "."))
            if shard is not None and known.get(topic) != shard:
                new[topic] = shard
        return new

    def _store_one_by_one(self, store: Store, items: list[Received],
                          snapshot: RegistrySnapshot) -> StoredBatch:
        """Isolate the message(s) the database refuses; dead-letter them as `unstorable`."""
        parts = []
        for item in items:
            decoded = decode_messages([item], registered=snapshot, limits=self.limits)
            try:
                parts.append(store.write(decoded, snapshot, item.received_ms, self._clock()))
            except DETERMINISTIC as exc:
                reject = Rejected("unstorable", f"{type(exc).__name__}: {exc}"[:500], None,
                                  None, item.topic, item.payload, item.received_ms)
                parts.append(store.write(Decoded(rejected=[reject]), snapshot, item.received_ms,
                                         self._clock()))
        return StoredBatch.merge(parts)

    def _hand_on(self, stored: StoredBatch) -> None:
        if self._on_stored is not None:
            with self._hand_on_lock:
                self._on_stored(stored)

    def _count(self, items: list[Received], decoded: Decoded, stored: StoredBatch) -> None:
        m = self.metrics
        m.batch_size.observe(len(items))
        for kind, n in decoded.received.items():
            m.received.labels(kind).inc(n)
        unknown_commands = stored.rejected - len(decoded.rejected)  # found by the store
        for kind, staged, new in (
                ("fix", len(decoded.fixes), len(stored)),
                ("hb", len(decoded.heartbeats), len(stored.heartbeats)),
                ("evt", len(decoded.events), len(stored.events)),
                ("ack", len(decoded.acks) - unknown_commands, len(stored.acks))):
            if staged:
                m.stored.labels(kind).inc(new)
                m.duplicates.labels(kind).inc(staged - new)
        for r in decoded.rejected:
            m.rejected.labels(r.reason).inc()
        if unknown_commands:
            m.rejected.labels("unknown_command").inc(unknown_commands)
        with self._lock:
            t = self.totals
            t["messages"] += len(items)
            t["fixes"] += len(stored)
            t["duplicates"] += len(decoded.fixes) - len(stored)
            t["rejected"] += stored.rejected

    def _on_error(self, lane: _Lane, exc: BaseException) -> None:
        self.metrics.db_errors.inc()
        lane.ok = False
        lane.failures += 1
        if lane.failures == 1 or lane.failures % 20 == 0:
            log.warning("storing a batch failed (attempt %d, retrying): %s: %s",
                        lane.failures, type(exc).__name__, str(exc).strip()[:300])
        if lane.conn is not None and (lane.conn.closed or lane.conn.broken):
            lane.close()

    def _idle(self, lane: _Lane) -> None:
        """No traffic: after a failure, check that the database is back (for `healthy`)."""
        if lane.ok or time.monotonic() - lane.last_ping < 1.0:
            return
        lane.last_ping = time.monotonic()
        try:
            store = lane.ensure()
            store.conn.execute("SELECT 1")
            store.conn.commit()
            lane.ok = True
        except psycopg.Error as exc:
            self._on_error(lane, exc)


def _record_routes(conn: psycopg.Connection, routes: dict[str, int]) -> None:
    """Which shard carries each (device, kind): a worker taking a shard over re-decides them."""
    rows = [(*r, shard) for topic, shard in routes.items() if (r := route_of(topic))]
    if rows:
        devices, kinds, shards = (list(c) for c in zip(*rows, strict=True))
        conn.execute(
            "INSERT INTO ingest_routes (device_id, kind, shard) "
            "SELECT * FROM unnest(%s::text[], %s::text[], %s::int[]) "
            "ON CONFLICT (device_id, kind) DO UPDATE SET shard = excluded.shard",
            (devices, kinds, shards))


def run_forever(settings: Any, registry: CollectorRegistry | None = None,
                metrics_port: int | None = None) -> int:
    """Run the ingest service until SIGTERM / SIGINT (`python -m ingest`). Needs
    `database_url` and `mqtt_url` or `amqp_url`; applies pending migrations first. Returns an exit status."""
    if not settings.database_url or not (settings.mqtt_url or settings.amqp_url):
        log.error("ingest needs GIAMSAT_DATABASE_URL and GIAMSAT_MQTT_URL or GIAMSAT_AMQP_URL")
        return 2
    try:
        with connect(settings.database_url) as conn:
            migrate(conn)
    except UnsafeTimescale as exc:
        log.error("%s", exc)
        return 2
    registry = registry if registry is not None else CollectorRegistry()
    if metrics_port:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr="127.0.0.1", registry=registry)
    service = IngestService(settings, settings.database_url, settings.mqtt_url or "",
                            registry=registry, amqp_url=settings.amqp_url)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.set())
    service.start()
    last = dict(service.totals)
    while not stop.wait(30.0):
        if service.totals != last:
            last = dict(service.totals)
            log.info("ingest totals: %s, healthy=%s", last, service.healthy)
    log.info("ingest stopping (signal)")
    service.stop()
    return 0
