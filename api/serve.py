"""Serving the API with uvicorn on ``settings.http`` (``giamsat api``, run by ``giamsat up``)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

import uvicorn
from prometheus_client import CollectorRegistry

from api.app import create_app
from config.settings import Settings

GRACEFUL_SHUTDOWN_S = 5  # live streams never end on their own: cut them after this long


class RedactTokens(logging.Filter):
    """Keep bearer tokens given as ``?access_token=`` (EventSource) out of the access log."""

    _TOKEN = re.compile(r"(access_token=)[^&\s\"]+")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self._TOKEN.sub(r"\1<redacted>", a) if isinstance(a, str) else a
                                for a in record.args)
        return True


def run(settings: Settings, db_url: str, secret_key: str | None = None, *,
        readiness: Callable[[], str | None] | None = None,
        registry: CollectorRegistry | None = None, mqtt_url: str | None = None) -> None:
    """Serve until SIGINT/SIGTERM. Logging is the caller's to configure (``log_config=None``)."""
    logging.getLogger("uvicorn.access").addFilter(RedactTokens())
    app = create_app(settings, db_url, registry=registry or CollectorRegistry(),
                     secret_key=secret_key, readiness=readiness, mqtt_url=mqtt_url)
    host, port = settings.http_host_port()
    uvicorn.run(app, host=host, port=port, log_config=None, proxy_headers=False,
                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S, server_header=False)
