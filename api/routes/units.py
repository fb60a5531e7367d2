"""Police units (commune units under their province's PC10): read in scope, managed by admins."""

from __future__ import annotations

from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Body, HTTPException, Path, Query
from pydantic import BaseModel, Field

import registry.units
from api.deps import Caller, Conn, Ctx, audit
from api.errors import Problem
from api.scope import Scope, descendants
from geofence.zones import ZoneError, parse_geometry, parse_station

router = APIRouter(prefix="/api/v1", tags=["units"])

UnitCode = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="unit code")]


class UnitIn(BaseModel):
    """A unit as written by an admin; ``boundary`` is a GeoJSON Polygon or MultiPolygon."""

    name: str = Field(min_length=1, max_length=200)
    parent: str | None = Field(None, max_length=64)
    boundary: dict[str, Any] | None = None
    ack_within_s: int = Field(300, gt=0, le=7 * 86400)
    station: dict[str, Any] | None = Field(
        None, description="the police station's zone, where check-ins count: "
                          "{center: [lon, lat], radius_m} or {geometry}")


class UnitCreate(UnitIn):
    code: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")


_COLUMNS = registry.units.COLUMNS


def _unit(row: tuple, boundary: Any = None, with_boundary: bool = False) -> dict:
    out = {"code": row[0], "name": row[1], "parent": row[2], "ack_within_s": row[3]}
    if with_boundary:
        out["boundary"] = boundary
    return out


@router.get("/units")
def list_units(caller: Caller, conn: Conn,
               with_boundary: Annotated[bool, Query(
                   description="include each unit's GeoJSON boundary")] = False) -> list[dict]:
    """The units the caller may see, parents first."""
    rows = conn.execute(
        f"SELECT {_COLUMNS}, boundary FROM units "
        "WHERE %(units)s::text[] IS NULL OR code = ANY(%(units)s) "
        "ORDER BY parent NULLS FIRST, code", {"units": caller.unit_filter(conn, None)}).fetchall()
    return [_unit(r, r[4], with_boundary) for r in rows]


@router.get("/units/{code}", responses={404: {"description": "no such unit in your scope"}})
def get_unit(code: UnitCode, caller: Caller, conn: Conn) -> dict:
    """One unit with its GeoJSON boundary (null when none is registered) and its children in
    scope. The units above one's own (the province, for its map outline) may be read too."""
    row = conn.execute(f"SELECT {_COLUMNS}, boundary FROM units WHERE code = %s",
                       (code,)).fetchone()
    if row is None or not (caller.allows(code) or code in _ancestors(conn, caller)):
        raise HTTPException(404, f"no unit {code!r} in your scope / không có đơn vị")
    out = _unit(row, row[4], True)
    out["station"] = conn.execute("SELECT station FROM units WHERE code = %s",
                                  (code,)).fetchone()[0]
    out["children"] = [r[0] for r in conn.execute(
        "SELECT code FROM units WHERE parent = %s ORDER BY code", (code,))
        if caller.allows(r[0])]
    return out


def _ancestors(conn: psycopg.Connection, caller: Scope) -> list[str]:
    """The units above the caller's own."""
    return [r[0] for r in conn.execute(
        "WITH RECURSIVE up(code, parent) AS (SELECT code, parent FROM units WHERE code = %s "
        "UNION SELECT u.code, u.parent FROM units u JOIN up ON u.code = up.parent) "
        "SELECT code FROM up WHERE code <> %s", (caller.officer.unit, caller.officer.unit))]


def _check(conn: psycopg.Connection, code: str, unit: UnitIn) -> None:
    if unit.boundary is not None:
        try:
            parse_geometry(unit.boundary, "$.boundary")
        except ZoneError as exc:
            raise Problem(422, f"invalid boundary: {exc.message}", path=exc.path) from exc
    if unit.station is not None:
        try:
            parse_station(unit.station)
        except ZoneError as exc:
            raise Problem(422, f"invalid station: {exc.message}", path=exc.path) from exc
    if unit.parent is None:
        return
    if conn.execute("SELECT 1 FROM units WHERE code = %s", (unit.parent,)).fetchone() is None:
        raise Problem(422, f"no parent unit {unit.parent!r}", path="$.parent")
    if unit.parent in descendants(conn, code):
        raise Problem(422, "a unit cannot be placed under itself or a unit below it",
                      path="$.parent")


@router.post("/units", status_code=201,
             responses={403: {"description": "admins only"}, 409: {"description": "exists"}})
def create_unit(ctx: Ctx, caller: Caller, conn: Conn, unit: Annotated[UnitCreate, Body()]) -> dict:
    """Create a unit (admin)."""
    caller.require_admin()
    _check(conn, unit.code, unit)
    row = registry.units.create_unit(conn, unit.code, unit.name, unit.parent, unit.boundary,
                                     unit.ack_within_s, unit.station)
    if row is None:
        raise HTTPException(409, f"unit {unit.code!r} exists already / đơn vị đã tồn tại")
    audit(conn, ctx, caller, "unit.create", unit.code)
    return {**_unit(row, unit.boundary, True), "station": unit.station}


@router.put("/units/{code}", responses={403: {"description": "admins only"}})
def update_unit(code: UnitCode, ctx: Ctx, caller: Caller, conn: Conn,
                unit: Annotated[UnitIn, Body()]) -> dict:
    """Replace a unit's name, parent, boundary and acknowledgement time (admin)."""
    caller.require_admin()
    _check(conn, code, unit)
    row = registry.units.update_unit(conn, code, unit.name, unit.parent, unit.boundary,
                                     unit.ack_within_s, unit.station)
    if row is None:
        raise HTTPException(404, f"no unit {code!r} / không có đơn vị")
    audit(conn, ctx, caller, "unit.update", code)
    return {**_unit(row, unit.boundary, True), "station": unit.station}

