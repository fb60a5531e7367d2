"""The officers' API (FastAPI under ``/api/v1``) and the dashboard at ``/``.

``create_app`` builds the whole app from what the composition root passes in; nothing is read
from the environment or created at import time.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry

from api import errors
from api.bodylimit import BodyLimit
from api.casework import ROUTERS as CASEWORK_ROUTERS
from api.deps import ApiContext
from api.downlink import Downlink
from api.metrics import ApiMetrics, MetricsMiddleware
from api.routes import (
    alerts,
    audit,
    auth,
    commands,
    dead_letters,
    devices,
    evidence,
    officers,
    ops,
    permits,
    positions,
    replay,
    reports,
    stream,
    supervisees,
    track,
    units,
    webhooks,
)
from api.stream import AlertStream
from api.tokens import Tokens
from config.settings import Settings
from geofence.policy import PolicyTable

log = logging.getLogger("giamsat.api")

STATIC_DIR = Path(__file__).parent / "static"

# Order matters where paths overlap: /alerts/stream before /alerts/{alert_id}.
ROUTERS = (ops, auth, units, officers, supervisees, permits, track, devices, positions, stream,
           alerts, dead_letters, reports, replay, commands, evidence, webhooks, audit,
           *CASEWORK_ROUTERS)


def _wall_clock() -> datetime:
    return datetime.now(UTC)


def create_app(settings: Settings, db_url: str, *, registry: CollectorRegistry | None = None,
               clock: Callable[[], datetime] | None = None, secret_key: str | None = None,
               readiness: Callable[[], str | None] | None = None,
               policies: PolicyTable | None = None, static_dir: Path | None = STATIC_DIR,
               pool_max: int = 8, mqtt_url: str | None = None) -> FastAPI:
    """The API app.

    - ``settings``: read once by the entrypoint (http, timezone, token_ttl_s, session_max_s,
      map_tiles_url, max_accuracy_m, margin_m, login_*, max_body_bytes, max_zone_vertices are
      used here);
    - ``db_url``: the migrated database; connections are pooled (``pool_max``), opened lazily;
    - ``registry``: the Prometheus registry ``/metrics`` exposes (a fresh one if None);
    - ``clock``: now as an aware UTC datetime (tests move time; token expiry follows it);
    - ``secret_key``: the token signing key (>= 32 bytes), else ``settings.secret_key``, else a
      random one for this process only (tokens die with it; a warning says so);
    - ``readiness``: called by ``/readyz``; returns None when ready, else the reason (503);
    - ``policies``: the sentence-policy table (``PolicyTable.default()`` if None);
    - ``static_dir``: the dashboard, mounted at ``/`` when the directory exists;
    - ``mqtt_url``: the broker the API publishes downlink commands to (connected on first
      use; None = commands answer 503).
    """
    clock = clock or _wall_clock
    key = secret_key or settings.secret_key
    if not key:
        log.warning("no token signing key given: tokens will not survive a restart")
        key = secrets.token_urlsafe(48)
    metrics = ApiMetrics(registry or CollectorRegistry())
    ctx = ApiContext(settings=settings, db_url=db_url, clock=clock,
                     tokens=Tokens(key, settings.token_ttl_s, clock, settings.session_max_s), metrics=metrics,
                     readiness=readiness, policies=policies or PolicyTable.default(),
                     pool_max=pool_max)
    ctx.stream = AlertStream(db_url, lambda fn: _with_connection(ctx, fn))
    ctx.downlink = Downlink(mqtt_url)
    ctx.evidence_key = key

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await ctx.stream.close()
        ctx.downlink.close()
        ctx.close()

    app = FastAPI(title="giamsat API", version="1",
                  description="Officers' API of giamsat (contract §4): units, officers, "
                              "supervisees, zones, permits, devices, tracks, alerts, reports.",
                  lifespan=lifespan)
    app.state.ctx = ctx
    errors.install(app)
    for module in ROUTERS:
        app.include_router(module.router)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    if static_dir is not None and static_dir.is_dir():
        app.mount("/", StaticFiles(directory=static_dir, html=True), name="dashboard")
    return app


def _with_connection(ctx: ApiContext, fn: Callable[[Any], Any]) -> Any:
    """Run ``fn(conn)`` on a pooled connection (read-only use, by the live stream)."""
    with ctx.pool.connection() as conn:
        return fn(conn)
