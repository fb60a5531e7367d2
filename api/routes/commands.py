"""Downlink commands from officers (contract §1): locate now, a fix interval, a message to the
wearer; and what the device answered.

A command goes to a device worn by a supervisee of the caller's scope (admins: any device).
The API publishes it itself (``api.downlink``), QoS 1, and answers once the broker has
acknowledged it; the device's answer (``em/v1/dev/{id}/ack``) is matched by ingest to the
stored command, and the first fix received after the command is shown beside it. Every command
is audited.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, Body, Query
from psycopg.rows import dict_row
from pydantic import BaseModel, Field

from alerts.delivery.commands import MAX_WEARER_TEXT
from api.deps import Caller, Conn, Ctx, audit
from api.errors import Problem
from api.registry import DeviceId
from api.routes.devices import _visible
from api.wire import to_ms

router = APIRouter(prefix="/api/v1", tags=["devices"])


class CommandIn(BaseModel):
    """``locate``: send a fix now; ``set_interval``: a fix every ``fix_s`` seconds;
    ``notify_wearer``: show a short ``text`` on the device. ``alert_id``: the alert the
    command was sent for (recorded in the audit)."""

    type: Literal["locate", "set_interval", "notify_wearer"]
    fix_s: int | None = Field(None, ge=1, le=86_400)
    text: str | None = Field(None, min_length=1, max_length=MAX_WEARER_TEXT)
    alert_id: int | None = Field(None, ge=1, le=2**63 - 1)

    def fields(self) -> dict[str, Any]:
        if self.type == "set_interval":
            return {"fix_s": self.fix_s}
        if self.type == "notify_wearer":
            return {"text": self.text}
        return {}


_COMMANDS = """
SELECT c.*, f.ts AS fix_ts, f.lat AS fix_lat, f.lon AS fix_lon, f.acc AS fix_acc,
       f.received_at AS fix_received_at
  FROM device_commands c
  LEFT JOIN LATERAL (  -- the first fix the service received after the command was sent
        SELECT ts, lat, lon, acc, received_at FROM fixes
         WHERE device_id = c.device_id AND received_at >= c.sent_at
           AND received_at < c.sent_at + interval '1 day'
         ORDER BY received_at, ts LIMIT 1) f ON true
"""


def command_json(row: dict[str, Any]) -> dict[str, Any]:
    """A command, its answer (``ok``, ``answered_at``, ``ack_ts``) and the fix that followed."""
    fix = None
    if row.get("fix_ts") is not None:
        fix = {"ts": to_ms(row["fix_ts"]), "lat": row["fix_lat"], "lon": row["fix_lon"],
               "acc": row["fix_acc"], "received_at": to_ms(row["fix_received_at"])}
    return {"id": row["id"], "device_id": row["device_id"], "type": row["type"],
            "payload": row["payload"], "sent_at": to_ms(row["sent_at"]),
            "sent_by": row["sent_by"], "answered_at": to_ms(row["answered_at"]),
            "ack_ts": to_ms(row["ack_ts"]), "ok": row["ok"], "fix": fix}


def commands_of(conn: psycopg.Connection, device_id: str, limit: int = 50) -> list[dict]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(_COMMANDS + " WHERE c.device_id = %s ORDER BY c.sent_at DESC, c.id "
                           "LIMIT %s", (device_id, limit)).fetchall()
    return [command_json(r) for r in rows]


@router.post("/devices/{device_id}/commands", status_code=201,
             responses={404: {"description": "no such device in your scope"},
                        503: {"description": "the MQTT broker is unavailable: not sent"}})
def send(device_id: DeviceId, ctx: Ctx, caller: Caller, conn: Conn,
         body: Annotated[CommandIn, Body()]) -> dict:
    """Send a command to the device (QoS 1; answered once the broker acknowledged it)."""
    _visible(conn, caller, device_id)
    if body.type == "set_interval" and body.fix_s is None:
        raise Problem(422, "set_interval needs fix_s (seconds) / cần fix_s")
    if body.type == "notify_wearer" and body.text is None:
        raise Problem(422, "notify_wearer needs a text / cần nội dung")
    now_ms = int(ctx.now().timestamp() * 1000)
    cid = ctx.downlink.send(conn, device_id, body.type, sent_by=caller.username, now_ms=now_ms,
                            **body.fields())
    audit(conn, ctx, caller, "device.command", device_id,
          {"command_id": cid, "type": body.type, "alert_id": body.alert_id, **body.fields()})
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_COMMANDS + " WHERE c.id = %s", (cid,)).fetchone()
    return command_json(row)


@router.get("/devices/{device_id}/commands",
            responses={404: {"description": "no such device in your scope"}})
def list_commands(device_id: DeviceId, caller: Caller, conn: Conn,
                  limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[dict]:
    """The device's commands, newest first, with the device's answers and the fix after each."""
    _visible(conn, caller, device_id)
    return commands_of(conn, device_id, limit)
