"""Supervisees (người chấp hành án) and their zones, in the caller's scope."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Body, HTTPException, Path, Query, Response
from psycopg.rows import dict_row

import registry.zones
from alerts.lifecycle import violation_summary
from api.deps import Caller, Conn, Ctx, audit
from api.registry import SuperviseeId, bump_registry, refused, supervisee
from api.wire import MAX_MS, MIN_MS, collection, feature, point, to_dt, to_ms
from api.zonejson import parse_zone_document, zone_feature
from geofence.zones import zone_columns

router = APIRouter(prefix="/api/v1", tags=["supervisees"])

ZoneId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f/]+$",
                             description="zone id")]

_SUMMARY = """
SELECT s.id, s.name, s.sentence_type, s.sentence_start, s.sentence_end, s.unit,
       s.residence_unit, d.id AS device_id,
       (SELECT count(*) FROM alerts a WHERE a.supervisee_id = s.id
                                       AND a.status <> 'resolved') AS unresolved_alerts
  FROM supervisees s
  LEFT JOIN LATERAL (  -- the device worn now; of several, the one heard from last
        SELECT dv.id FROM devices dv LEFT JOIN device_state ds ON ds.device_id = dv.id
         WHERE dv.supervisee_id = s.id
         ORDER BY ds.last_seen_at DESC NULLS LAST, dv.id LIMIT 1) d ON true
"""


def _summary(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out["sentence_start"] = row["sentence_start"].isoformat()
    out["sentence_end"] = row["sentence_end"].isoformat()
    return out


@router.get("/supervisees")
def list_supervisees(caller: Caller, conn: Conn,
                     unit: Annotated[str | None, Query(max_length=64)] = None) -> list[dict]:
    """Supervisees of the caller's scope, or of ``unit`` (and the units below it)."""
    units = caller.unit_filter(conn, unit)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(_SUMMARY + " WHERE %(u)s::text[] IS NULL OR s.unit = ANY(%(u)s) "
                           "ORDER BY s.unit, s.id", {"u": units}).fetchall()
    return [_summary(r) for r in rows]


AtMs = Annotated[int | None, Query(ge=MIN_MS, le=MAX_MS, description=(
    "UTC epoch ms: the zone versions in force at that instant (default: now)"))]
EffectiveMs = Annotated[int | None, Query(ge=MIN_MS, le=MAX_MS, description=(
    "UTC epoch ms from which the change is in force (default: now; never in the past)"))]
ChangeReason = Annotated[str | None, Query(max_length=1000, description="why (kept with the "
                                                                        "version)")]


def _zones(conn: psycopg.Connection, sid: str, at: datetime | None = None) -> dict:
    rows = registry.zones.zone_rows(conn, [sid], at)
    return collection([zone_feature(r) for r in rows], supervisee_id=sid,
                      **({} if at is None else {"at": to_ms(at)}))


def last_position(conn: psycopg.Connection, device_id: str | None) -> dict | None:
    """The device's last fix and state as a GeoJSON Feature (None when it sent no fix)."""
    if device_id is None:
        return None
    with conn.cursor(row_factory=dict_row) as cur:
        st = cur.execute("SELECT * FROM device_state WHERE device_id = %s",
                         (device_id,)).fetchone()
    if st is None or st["last_fix_lat"] is None:
        return None
    return feature(point(st["last_fix_lon"], st["last_fix_lat"]), _state_props(st))


def _state_props(st: dict[str, Any]) -> dict[str, Any]:
    return {"device_id": st["device_id"], "ts": to_ms(st["last_fix_ts"]),
            "acc": st["last_fix_acc"], "last_seen_at": to_ms(st["last_seen_at"]),
            "battery": st["battery"], "charging": st["charging"], "strap": st["strap"],
            "case": st["case"], "gnss": st["gnss"]}


@router.get("/supervisees/{sid}", responses={404: {"description": "not in your scope"}})
def get_supervisee(sid: SuperviseeId, ctx: Ctx, caller: Caller, conn: Conn) -> dict:
    """One supervisee: sentence, zones (GeoJSON), current device, last position, confirmed
    violations and whether the court threshold is reached (a proposal is possible; officers
    decide), unresolved alerts."""
    supervisee(conn, caller, sid)
    with conn.cursor(row_factory=dict_row) as cur:
        out = _summary(cur.execute(_SUMMARY + " WHERE s.id = %s", (sid,)).fetchone())
    out["zones"] = _zones(conn, sid)
    out["last_position"] = last_position(conn, out["device_id"])
    out["violations"] = violation_summary(conn, sid, to_ms(ctx.now()), ctx.policies)
    return out


@router.get("/supervisees/{sid}/zones", responses={404: {"description": "not in your scope"}})
def get_zones(sid: SuperviseeId, caller: Caller, conn: Conn, at: AtMs = None) -> dict:
    """The supervisee's zones in force now, or at ``at``, as a GeoJSON FeatureCollection
    (circles: Point + radius_m; each with its ``version``, ``effective_from``, ``changed_by``)."""
    supervisee(conn, caller, sid)
    return _zones(conn, sid, None if at is None else to_dt(at))


@router.get("/supervisees/{sid}/zones/{zone_id}/versions",
            responses={404: {"description": "no such zone in your scope"}})
def zone_versions(sid: SuperviseeId, zone_id: ZoneId, caller: Caller, conn: Conn) -> dict:
    """Every version of one zone, oldest first, as a FeatureCollection: each in force over
    [``effective_from``, ``effective_to``) (null: open end); a removal is a version with
    ``ended: true`` and no geometry."""
    supervisee(conn, caller, sid)
    rows = registry.zones.zone_history(conn, sid, zone_id)
    if not rows:
        raise HTTPException(404, f"no zone {zone_id!r} / không có vùng")
    return collection([zone_feature(r) for r in rows], supervisee_id=sid, zone_id=zone_id)

_ZONE_EXAMPLE = {
    "type": "Feature",
    "geometry": {"type": "Polygon", "coordinates": [[[106.05, 21.17], [106.08, 21.17],
                                                     [106.08, 21.20], [106.05, 21.17]]]},
    "properties": {"kind": "inclusion", "purpose": "residence"},
}


@router.put("/supervisees/{sid}/zones/{zone_id}",
            responses={404: {"description": "not in your scope"},
                       422: {"description": "invalid zone; `path` points at the bad part"}})
def put_zone(sid: SuperviseeId, zone_id: ZoneId, ctx: Ctx, caller: Caller, conn: Conn,
             response: Response,
             body: Annotated[dict[str, Any], Body(
                 description="a GeoJSON Feature (properties: kind, purpose, schedule, "
                             "margin_m, confirm_fixes, escalate_after_s; a circle is a Point "
                             "with properties.radius_m) or the contract's zone object",
                 openapi_examples={"polygon": {"value": _ZONE_EXAMPLE}})],
             effective_from: EffectiveMs = None, reason: ChangeReason = None) -> dict:
    """Create or change one zone: a new version in force from ``effective_from`` (default now),
    recorded as yours; the earlier versions stay (``.../versions``). The pipeline reloads it
    (registry version bumped). The same zone again writes nothing (200)."""
    supervisee(conn, caller, sid)
    obj, zone = parse_zone_document(body, sid, zone_id, ctx.settings.max_zone_vertices)
    try:
        outcome, row = registry.zones.put_zone(
            conn, sid, zone_id, zone_columns(obj, zone), changed_by=caller.username,
            now=ctx.now(), effective_from=None if effective_from is None else to_dt(effective_from),
            reason=reason)
    except registry.ChangeRefused as exc:
        raise refused(exc) from exc
    if outcome != "unchanged":
        bump_registry(conn)
        audit(conn, ctx, caller, "zone.put", sid, {"zone_id": zone_id, "version": row["version"]})
    response.status_code = 201 if outcome == "created" else 200
    return zone_feature(row)


@router.delete("/supervisees/{sid}/zones/{zone_id}", status_code=204,
               responses={404: {"description": "no such zone in your scope"}})
def delete_zone(sid: SuperviseeId, zone_id: ZoneId, ctx: Ctx, caller: Caller,
                conn: Conn, effective_from: EffectiveMs = None,
                reason: ChangeReason = None) -> Response:
    """End one zone from ``effective_from`` (default now) with a version saying so; what it
    decided before stays on record. The pipeline reloads (registry version bumped)."""
    supervisee(conn, caller, sid)
    try:
        gone = registry.zones.end_zone(
            conn, sid, zone_id, changed_by=caller.username, now=ctx.now(),
            effective_from=None if effective_from is None else to_dt(effective_from),
            reason=reason)
    except registry.ChangeRefused as exc:
        raise refused(exc) from exc
    if not gone:
        raise HTTPException(404, f"no zone {zone_id!r} / không có vùng")
    bump_registry(conn)
    audit(conn, ctx, caller, "zone.delete", sid, {"zone_id": zone_id})
    return Response(status_code=204)
