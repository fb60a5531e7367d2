"""Devices (vòng đeo điện tử) and who wears them, with the assignment history kept.

Admins register devices and see all of them. An officer sees the devices worn by supervisees
of their scope (and the past assignments of those supervisees), and may assign a free device
to, or take one off, a supervisee of their scope. Every change bumps the registry version so
the pipeline attributes fixes to the right person.
"""

from __future__ import annotations

from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Body, HTTPException, Query
from psycopg.rows import dict_row
from pydantic import BaseModel, Field

import registry.devices
from api.deps import Caller, Conn, Ctx, audit
from api.registry import DeviceId, bump_registry, supervisee
from api.scope import Scope
from api.wire import to_ms
from protocol import DEVICE_ID_PATTERN

router = APIRouter(prefix="/api/v1", tags=["devices"])


class DeviceCreate(BaseModel):
    id: str = Field(pattern=f"^{DEVICE_ID_PATTERN}$")
    supervisee_id: str | None = Field(None, min_length=1, max_length=64)


class Assign(BaseModel):
    supervisee_id: str = Field(min_length=1, max_length=64)


_DEVICES = """
SELECT d.id, d.supervisee_id, s.unit, d.registered_at, st.last_seen_at, st.last_fix_ts,
       st.battery, st.charging, st.strap, st."case", st.gnss, st.fw
  FROM devices d
  LEFT JOIN supervisees s ON s.id = d.supervisee_id
  LEFT JOIN device_state st ON st.device_id = d.id
"""

_TIMES = ("registered_at", "last_seen_at", "last_fix_ts")


def _device(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, **{k: to_ms(row[k]) for k in _TIMES}}


def _visible(conn: psycopg.Connection, caller: Scope, device_id: str) -> dict[str, Any]:
    """The device if the caller may see it (admin, or worn in their scope); 404 otherwise."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_DEVICES + " WHERE d.id = %s", (device_id,)).fetchone()
    if row is None or not (caller.is_admin or (row["unit"] and caller.allows(row["unit"]))):
        raise HTTPException(404, f"no device {device_id!r} in your scope / không có thiết bị")
    return row


@router.get("/devices")
def list_devices(caller: Caller, conn: Conn,
                 unit: Annotated[str | None, Query(max_length=64)] = None) -> list[dict]:
    """Devices in scope with their last known state (admins without ``unit``: all devices,
    unassigned ones included)."""
    units = caller.unit_filter(conn, unit)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(_DEVICES + " WHERE %(u)s::text[] IS NULL OR s.unit = ANY(%(u)s) "
                           "ORDER BY d.id", {"u": units}).fetchall()
    return [_device(r) for r in rows]


def _check_not_wearing(conn: psycopg.Connection, sid: str) -> None:
    """A supervisee wears one device at a time (also a unique index, for concurrent calls)."""
    row = conn.execute("SELECT device_id FROM device_assignments WHERE supervisee_id = %s "
                       "AND unassigned_at IS NULL", (sid,)).fetchone()
    if row is not None:
        raise HTTPException(409, f"supervisee {sid!r} wears device {row[0]!r} already: "
                                 "unassign it first / đối tượng đang đeo thiết bị khác")


def _assign(conn: psycopg.Connection, ctx: Any, caller: Scope, device_id: str, sid: str) -> None:
    _check_not_wearing(conn, sid)
    registry.devices.assign(conn, device_id, sid, by=caller.username, now=ctx.now())
    bump_registry(conn)
    audit(conn, ctx, caller, "device.assign", device_id, {"supervisee_id": sid})


@router.post("/devices", status_code=201,
             responses={403: {"description": "admins only"},
                        409: {"description": "exists, or the supervisee wears another device"}})
def create_device(ctx: Ctx, caller: Caller, conn: Conn,
                  body: Annotated[DeviceCreate, Body()]) -> dict:
    """Register a device (admin), optionally assigned to a supervisee at once."""
    caller.require_admin()
    if body.supervisee_id is not None:
        supervisee(conn, caller, body.supervisee_id)
    if not registry.devices.register(conn, body.id, ctx.now()):
        raise HTTPException(409, f"device {body.id!r} exists already / thiết bị đã tồn tại")
    audit(conn, ctx, caller, "device.create", body.id)
    if body.supervisee_id is not None:
        _assign(conn, ctx, caller, body.id, body.supervisee_id)  # bumps the registry version
    else:
        bump_registry(conn)  # ingest accepts messages of registered devices only
    return _device(_visible(conn, caller, body.id))


@router.post("/devices/{device_id}/assign",
             responses={404: {"description": "device or supervisee not in your scope"},
                        409: {"description": "the device is worn by someone else, or the "
                                              "supervisee wears another device"}})
def assign_device(device_id: DeviceId, ctx: Ctx, caller: Caller, conn: Conn,
                  body: Annotated[Assign, Body()]) -> dict:
    """Put the device on a supervisee of your scope; it must be free (unassign it first)."""
    supervisee(conn, caller, body.supervisee_id)
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_DEVICES + " WHERE d.id = %s FOR UPDATE OF d",
                          (device_id,)).fetchone()
    if row is None or (row["supervisee_id"] and not caller.allows(row["unit"])):
        raise HTTPException(404, f"no device {device_id!r} in your scope / không có thiết bị")
    if row["supervisee_id"] == body.supervisee_id:
        return _device(row)
    if row["supervisee_id"] is not None:
        raise HTTPException(409, f"device {device_id!r} is worn by supervisee "
                                 f"{row['supervisee_id']!r}: unassign it first / "
                                 "thiết bị đang được gán cho đối tượng khác")
    _assign(conn, ctx, caller, device_id, body.supervisee_id)
    return _device(_visible(conn, caller, device_id))


@router.post("/devices/{device_id}/unassign",
             responses={404: {"description": "not in your scope"},
                        409: {"description": "the device is not assigned"}})
def unassign_device(device_id: DeviceId, ctx: Ctx, caller: Caller, conn: Conn) -> dict:
    """Take the device off its wearer; the assignment stays in the history."""
    row = _visible(conn, caller, device_id)
    if row["supervisee_id"] is None:
        raise HTTPException(409, f"device {device_id!r} is not assigned / thiết bị chưa được gán")
    registry.devices.unassign(conn, device_id, ctx.now())
    bump_registry(conn)
    audit(conn, ctx, caller, "device.unassign", device_id,
          {"supervisee_id": row["supervisee_id"]})
    return {**_device(row), "supervisee_id": None, "unit": None}


@router.get("/devices/{device_id}/assignments",
            responses={404: {"description": "not in your scope"}})
def device_assignments(device_id: DeviceId, caller: Caller, conn: Conn) -> list[dict]:
    """Who wore the device and when (newest first); officers see the assignments of
    supervisees in their scope only."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT a.id, a.device_id, a.supervisee_id, s.unit, a.assigned_at, a.unassigned_at, "
            "a.assigned_by FROM device_assignments a JOIN supervisees s ON s.id = a.supervisee_id "
            "WHERE a.device_id = %s ORDER BY a.assigned_at DESC, a.id DESC",
            (device_id,)).fetchall()
        known = cur.execute("SELECT 1 FROM devices WHERE id = %s", (device_id,)).fetchone()
    rows = [r for r in rows if caller.allows(r["unit"])]
    if known is None or not (rows or caller.is_admin):
        raise HTTPException(404, f"no device {device_id!r} in your scope / không có thiết bị")
    return [{**r, "assigned_at": to_ms(r["assigned_at"]),
             "unassigned_at": to_ms(r["unassigned_at"])} for r in rows]
