"""The API's Prometheus metrics, on a registry the composition root passes in.

Labels are bounded: the route template (``/api/v1/alerts/{alert_id}``, never the id), the
method and the status class; no officer, device or person id ever becomes a label.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class ApiMetrics:
    """Request counts and latencies, live stream clients, logins."""

    def __init__(self, registry: CollectorRegistry):
        self.registry = registry
        self.requests = Counter("giamsat_api_requests_total", "HTTP requests served",
                                ["route", "method", "status"], registry=registry)
        self.latency = Histogram("giamsat_api_request_duration_seconds",
                                 "time to the response's first byte", ["route"],
                                 registry=registry)
        self.stream_clients = Gauge("giamsat_api_stream_clients",
                                    "officers connected to the live alert stream",
                                    registry=registry)
        self.stream_events = Counter("giamsat_api_stream_events_total",
                                     "alert changes sent on the live stream", registry=registry)
        self.logins = Counter("giamsat_api_logins_total", "sign-ins (ok, failed, throttled) and token refreshes",
                              ["outcome"],
                              registry=registry)


def _route_template(scope: Scope) -> str:
    # "other": no API route matched (the static dashboard, or a 404)
    return getattr(scope.get("route"), "path", None) or "other"


class MetricsMiddleware:
    """Pure ASGI middleware (streams are not buffered) recording each request."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                self.metrics.latency.labels(_route_template(scope)).observe(
                    time.perf_counter() - start)
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.requests.labels(_route_template(scope), scope["method"],
                                         f"{status['code'] // 100}xx").inc()
