"""Operations: Prometheus metrics, liveness, readiness, and the dashboard's public config."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import Ctx

router = APIRouter(tags=["operations"])
log = logging.getLogger("giamsat.api")


@router.get("/metrics", response_class=Response, include_in_schema=False)
def metrics(ctx: Ctx) -> Response:
    """Prometheus exposition of the registry the composition root passed in."""
    return Response(generate_latest(ctx.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/healthz")
def healthz() -> dict:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "not ready, with the reason"}})
def readyz(ctx: Ctx) -> JSONResponse:
    """Readiness: the database answers and, when the composition root passed a readiness
    callback, it reports no problem. 503 with the reason otherwise."""
    try:
        with ctx.pool.connection(timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:  # any failure to reach the database means not ready
        log.warning("readiness: database unreachable (%s)", type(exc).__name__)
        return JSONResponse({"status": "unavailable", "reason": "database unreachable"}, 503)
    reason = ctx.readiness() if ctx.readiness is not None else None
    if reason:
        return JSONResponse({"status": "unavailable", "reason": str(reason)}, 503)
    return JSONResponse({"status": "ok"})


@router.get("/api/v1/config", tags=["dashboard"])
def config(ctx: Ctx) -> dict:
    """What the dashboard needs before sign-in: the XYZ tile URL and its attribution (null =
    offline boundary map; ``tile_url`` repeats it for older clients), local time zone and
    token lifetime. Public: holds no data."""
    s = ctx.settings
    return {"map_tiles_url": s.map_tiles_url, "map_tiles_attribution": s.map_tiles_attribution,
            "tile_url": s.map_tiles_url, "timezone": s.timezone, "token_ttl_s": s.token_ttl_s}
