"""Dead letters: device messages the ingest refused, with the reason and the raw payload.

Admins see all of them (unregistered devices included); an officer those of devices worn, now
or before, by supervisees of their scope. Every read is audited.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from psycopg.rows import dict_row

from api.deps import Caller, Conn, Ctx, audit
from api.wire import MAX_MS, MIN_MS, to_dt, to_ms
from protocol import DEVICE_ID_PATTERN

router = APIRouter(prefix="/api/v1", tags=["dead letters"])

_DEVICES_IN_SCOPE = """
SELECT d.id FROM devices d JOIN supervisees s ON s.id = d.supervisee_id
 WHERE s.unit = ANY(%(u)s)
UNION
SELECT a.device_id FROM device_assignments a JOIN supervisees s ON s.id = a.supervisee_id
 WHERE s.unit = ANY(%(u)s)
"""


def _payload(raw: bytes) -> dict[str, Any]:
    """The raw payload as UTF-8 text when it is, and always as base64."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    return {"payload_text": text, "payload_base64": base64.b64encode(raw).decode("ascii"),
            "payload_bytes": len(raw)}


@router.get("/dead-letters", responses={404: {"description": "device not in your scope"}})
def dead_letters(
    ctx: Ctx, caller: Caller, conn: Conn,
    device_id: Annotated[str | None, Query(pattern=f"^{DEVICE_ID_PATTERN}$")] = None,
    since: Annotated[int | None, Query(ge=MIN_MS, le=MAX_MS,
                                       description="received at or after, epoch ms")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict:
    """Refused messages, newest first: ``reason`` (a bounded code), ``detail`` (what exactly
    was wrong), ``element`` (index in a batch), the topic and the raw payload (text and
    base64). Audited."""
    devices = None
    if not caller.is_admin:
        devices = [r[0] for r in conn.execute(_DEVICES_IN_SCOPE, {"u": sorted(caller.units)})]
        if device_id is not None and device_id not in devices:
            raise HTTPException(404, f"no device {device_id!r} in your scope / không có thiết bị")
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            """SELECT id, received_at, topic, device_id, reason, detail, element, payload
                 FROM dead_letters
                WHERE (%(d)s::text IS NULL OR device_id = %(d)s)
                  AND (%(ds)s::text[] IS NULL OR device_id = ANY(%(ds)s))
                  AND (%(since)s::timestamptz IS NULL OR received_at >= %(since)s)
                ORDER BY received_at DESC, id DESC LIMIT %(limit)s""",
            {"d": device_id, "ds": devices, "limit": limit,
             "since": to_dt(since) if since is not None else None}).fetchall()
    audit(conn, ctx, caller, "dead_letters.read", device_id,
          {"device_id": device_id, "since": since, "count": len(rows)})
    items = [{**{k: v for k, v in r.items() if k != "payload"},
              "received_at": to_ms(r["received_at"]), **_payload(bytes(r["payload"]))}
             for r in rows]
    return {"dead_letters": items, "count": len(items), "limit": limit}
