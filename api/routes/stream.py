"""``GET /api/v1/alerts/stream``: alert changes as server-sent events, for the caller's scope."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Query, Request
from fastapi.responses import StreamingResponse

from api.deps import Conn, Ctx, StreamCaller, StreamExpiry
from api.stream import Subscriber

router = APIRouter(prefix="/api/v1", tags=["alerts"])

RETRY_MS = 3000  # EventSource reconnect delay


def _event(alert: dict) -> str:
    data = json.dumps(alert, ensure_ascii=False, separators=(",", ":"))
    hid = alert.get("history_id")
    return (f"id: {hid}\n" if hid is not None else "") + f"event: alert\ndata: {data}\n\n"


async def _events(request: Request, ctx, sub: Subscriber, backlog: list[dict],
                  keepalive_s: float, expires_s: float) -> AsyncIterator[str]:
    stream = ctx.stream
    ctx.metrics.stream_clients.inc()
    try:
        yield f"retry: {RETRY_MS}\n: connected\n\n"
        seen = 0
        for alert in backlog:
            seen = max(seen, alert.get("history_id") or 0)
            yield _event(alert)
        while not sub.closed or not sub.queue.empty():
            left_s = expires_s - ctx.clock().timestamp()
            if left_s <= 0:
                # the token ran out: a stream must not outlive its credentials
                yield "event: expired\ndata: {}\n\n"
                break
            try:
                alert = await asyncio.wait_for(sub.queue.get(), min(keepalive_s, left_s))
            except TimeoutError:
                if await request.is_disconnected():
                    break
                yield ": keepalive\n\n"
                continue
            if alert is None:
                break
            if (alert.get("history_id") or 0) > seen:
                ctx.metrics.stream_events.inc()
                yield _event(alert)
    finally:
        stream.unsubscribe(sub)
        ctx.metrics.stream_clients.dec()


@router.get("/alerts/stream", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "`event: alert`, `id:` the history id, `data:` "
                                            "the alert JSON of contract §3"},
                       403: {"description": "unit outside your scope"}})
async def alert_stream(
    request: Request, ctx: Ctx, caller: StreamCaller, expires_s: StreamExpiry, conn: Conn,
    unit: Annotated[str | None, Query(max_length=64,
                                      description="only this unit and those below it")] = None,
    last_event_id: Annotated[int | None, Header(ge=0, le=2**63 - 1,
                                                description="replay changes after this "
                                                            "history id")] = None,
) -> StreamingResponse:
    """Server-sent events of alert changes in the caller's scope, as they are committed. A
    token may come as ``?access_token=`` (EventSource cannot set headers). Keepalive comments
    every 15 s (keep proxies and EventSource from timing out); ``Last-Event-ID`` replays what was missed (at most 500 changes). The stream ends with ``event: expired`` when the token
    runs out: sign in again and reconnect."""
    units = await asyncio.to_thread(caller.unit_filter, conn, unit)
    scope = None if units is None else frozenset(units)
    stream = ctx.stream
    try:
        sub = await stream.subscribe(scope)
    except TimeoutError as exc:
        raise HTTPException(503, "the live stream is unavailable, retry / "
                                 "luồng cảnh báo trực tiếp tạm thời không có") from exc
    backlog = [] if last_event_id is None else await stream.backlog(last_event_id, scope)
    return StreamingResponse(
        _events(request, ctx, sub, backlog, ctx.keepalive_s, expires_s),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
