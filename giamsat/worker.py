"""``giamsat worker``: the pipeline process (ingest -> geofence -> alerts -> delivery).

``giamsat up`` runs it as a child; it also runs alone against configured services. It serves
its metrics on 127.0.0.1 for the API's ``/metrics`` and writes a health file for ``/readyz``.
"""

from __future__ import annotations

import logging
import signal
import threading

from prometheus_client import CollectorRegistry, start_http_server

from config import Settings
from embedded.brokerconfig import service_amqp_url, service_mqtt_url
from giamsat.observe import HEALTH_FILE, write_health
from giamsat.pipeline import AlertPipeline

log = logging.getLogger("giamsat.worker")


def _serve_metrics(settings: Settings, registry: CollectorRegistry) -> None:
    try:
        start_http_server(settings.worker_metrics_port, addr="127.0.0.1", registry=registry)
    except OSError as exc:
        log.warning("worker metrics not served on 127.0.0.1:%d (%s); set "
                    "GIAMSAT_WORKER_METRICS_PORT to a free port", settings.worker_metrics_port,
                    exc)


def run_worker(settings: Settings) -> int:
    """Run the pipeline until SIGTERM or SIGINT; drain it, then exit 0."""
    from embedded.database import database_url

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    registry = CollectorRegistry()
    _serve_metrics(settings, registry)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    health = settings.data_dir / HEALTH_FILE
    with database_url(settings) as db_url:
        pipeline = AlertPipeline(settings, db_url, service_mqtt_url(settings), registry=registry,
                                 amqp_url=service_amqp_url(settings))
        pipeline.start()
        log.info("pipeline worker running")
        try:
            while not stop.wait(1.0):
                ok = pipeline.ingest.healthy
                write_health(health, ok, "" if ok else "database or broker unavailable")
        finally:
            write_health(health, False, "stopping")
            pipeline.stop()
            log.info("pipeline worker stopped")
    return 0
