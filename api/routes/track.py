"""A supervisee's track (GeoJSON) and case export (printable HTML); every read is audited."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import HTMLResponse
from psycopg.rows import dict_row

import registry.permits
import registry.zones
from api import case_export, track
from api.deps import Caller, Conn, Ctx, audit
from api.registry import SuperviseeId, supervisee
from api.routes.permits import permit_json
from api.wire import MAX_MS, MIN_MS, to_dt, to_ms
from api.zonejson import zone_feature

router = APIRouter(prefix="/api/v1", tags=["supervisees"])

FromMs = Annotated[int, Query(alias="from", ge=MIN_MS, le=MAX_MS,
                              description="start, UTC epoch ms (inclusive)")]
ToMs = Annotated[int, Query(alias="to", ge=MIN_MS, le=MAX_MS,
                            description="end, UTC epoch ms (exclusive)")]


def _range(start: int, end: int) -> tuple[datetime, datetime]:
    if end <= start:
        raise HTTPException(400, "invalid range: 'to' must be after 'from' (epoch ms) / "
                                 "khoảng thời gian không hợp lệ")
    return to_dt(start), to_dt(end)


def _load(ctx, conn, sid: str, start: datetime, end: datetime) -> track.Track:
    s = ctx.settings
    return track.load(conn, sid, start, end, max_accuracy_m=s.max_accuracy_m,
                      margin_m=s.margin_m, tz=s.timezone)


@router.get("/supervisees/{sid}/track",
            responses={400: {"description": "invalid range"},
                       404: {"description": "not in your scope"}})
def get_track(sid: SuperviseeId, ctx: Ctx, caller: Caller, conn: Conn, start: FromMs,
              end: ToMs) -> dict:
    """The stored fixes of the devices the supervisee wore in [from, to), oldest first, as a
    GeoJSON FeatureCollection of Points (``properties``: ``ts``, ``seq``, ``acc``, device, and
    the ``decision`` recomputed by the geofence engine against the zone and permit versions in
    force at the fix's time: see ``api.track``). At most 50,000 fixes (``truncated`` says when
    there were more); the alerts of the period ride along in ``alerts``. Audited."""
    supervisee(conn, caller, sid)
    a, b = _range(start, end)
    t = _load(ctx, conn, sid, a, b)
    audit(conn, ctx, caller, "track.read", sid,
          {"from": start, "to": end, "count": len(t.fixes), "truncated": t.truncated})
    return track.as_geojson(t, sid, a, b)


def _history(conn, alert_ids: list[int]) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = {i: [] for i in alert_ids}
    with conn.cursor(row_factory=dict_row) as cur:
        for h in cur.execute("SELECT * FROM alert_history WHERE alert_id = ANY(%s) "
                             "ORDER BY alert_id, id", (alert_ids,)):
            out[h["alert_id"]].append(h)
    return out


@router.get("/supervisees/{sid}/case-export", response_class=HTMLResponse,
            responses={400: {"description": "invalid range"},
                       404: {"description": "not in your scope"}})
def case_export_page(sid: SuperviseeId, ctx: Ctx, caller: Caller, conn: Conn, start: FromMs,
                     end: ToMs) -> HTMLResponse:
    """One supervisee, one period, as a self-contained printable HTML page: track summary and
    sketch, fixes with decisions, the zone and permit versions in force during the period,
    alerts and their history. Audited."""
    sup = supervisee(conn, caller, sid)
    a, b = _range(start, end)
    t = _load(ctx, conn, sid, a, b)
    with conn.cursor(row_factory=dict_row) as cur:
        unit = cur.execute("SELECT code, name FROM units WHERE code = %s",
                           (sup["unit"],)).fetchone()
    permits = [p for p in map(permit_json, registry.permits.permit_rows_over(conn, sid, start, end))
               if p["valid_from"] < end and p["valid_to"] > start]
    zones = [zone_feature(r) for r in registry.zones.zone_rows_over(conn, sid, start, end)]
    page = case_export.render(
        sup=sup, unit=unit, zones=zones, permits=permits,
        track=t, history=_history(conn, [x["id"] for x in t.alerts]), start_ms=start,
        end_ms=end, generated_ms=to_ms(ctx.now()), officer=caller.username,
        tz=ctx.settings.timezone)
    audit(conn, ctx, caller, "case_export.read", sid,
          {"from": start, "to": end, "count": len(t.fixes), "alerts": len(t.alerts)})
    filename = re.sub(r"[^A-Za-z0-9_.-]", "_", f"case-{sid}-{start}-{end}.html")
    return HTMLResponse(page, headers={
        "Content-Disposition": f'inline; filename="{filename}"',
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:",
        "Cache-Control": "no-store"})
