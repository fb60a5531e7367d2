"""How the API process sees the worker process: its metrics and its health.

The worker serves its Prometheus registry on 127.0.0.1:``worker_metrics_port`` and writes a
small health file every second; the API's ``/metrics`` re-exposes the worker's metrics (so one
scrape sees every stage) and ``/readyz`` reads the health file.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

log = logging.getLogger("giamsat.observe")

HEALTH_FILE = "worker-health.json"
STALE_AFTER_S = 5.0


class WorkerMetrics:
    """A collector that re-exposes the worker's metrics, fetched at each scrape."""

    def __init__(self, url: str, timeout_s: float = 2.0) -> None:
        self.url = url
        self.timeout_s = timeout_s

    def collect(self) -> Iterator[Metric]:
        try:
            with urllib.request.urlopen(self.url, timeout=self.timeout_s) as resp:
                text = resp.read().decode()
        except OSError as exc:
            log.debug("worker metrics unavailable: %s", exc)
            return
        yield from text_string_to_metric_families(text)


def write_health(path: Path, healthy: bool, detail: str, now: float | None = None) -> None:
    """Replace the health file atomically."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"at": now or time.time(), "healthy": healthy, "detail": detail}))
    os.replace(tmp, path)


def worker_readiness(path: Path, clock: Callable[[], float] = time.time) -> Callable[[], str | None]:
    """A readiness check for the API: None when the worker reported healthy just now."""

    def check() -> str | None:
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            return "the pipeline worker has not reported"
        age = clock() - float(state.get("at", 0))
        if age > STALE_AFTER_S:
            return f"the pipeline worker last reported {age:.0f} s ago"
        if not state.get("healthy"):
            return f"the pipeline worker is not healthy: {state.get('detail') or 'unknown'}"
        return None

    return check
