"""The audit log of a province's units: who read or changed what (province officers: their
units; admins: all). Commune officers may not read it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from psycopg.rows import dict_row

from api.deps import Caller, Conn, Ctx, audit
from api.wire import MAX_MS, MIN_MS, to_dt, to_ms

router = APIRouter(prefix="/api/v1", tags=["audit"])

# An entry belongs to the units of its actor (the officer's unit) and of its subject (a unit, a
# supervisee, a device worn by one, an alert).
_ENTRIES = """
SELECT l.id, l.at, l.actor, l.action, l.subject, l.params, o.unit AS actor_unit
  FROM audit_log l
  LEFT JOIN officers o ON o.username = l.actor
 WHERE (%(u)s::text[] IS NULL
        OR o.unit = ANY(%(u)s)
        OR l.subject = ANY(%(u)s)
        OR l.subject IN (SELECT id FROM supervisees WHERE unit = ANY(%(u)s))
        OR l.subject IN (SELECT d.id FROM devices d JOIN supervisees s ON s.id = d.supervisee_id
                          WHERE s.unit = ANY(%(u)s))
        OR l.subject IN (SELECT id::text FROM alerts WHERE unit = ANY(%(u)s)))
   AND (%(from)s::timestamptz IS NULL OR l.at >= %(from)s)
   AND (%(to)s::timestamptz IS NULL OR l.at < %(to)s)
   AND (%(actor)s::text IS NULL OR l.actor = %(actor)s)
   AND (%(action)s::text IS NULL OR l.action = %(action)s)
   AND (%(subject)s::text IS NULL OR l.subject = %(subject)s)
 ORDER BY l.id DESC
 LIMIT %(limit)s OFFSET %(offset)s
"""


@router.get("/audit", responses={403: {"description": "commune officers, or a unit outside "
                                                      "the scope"}})
def audit_log(
    ctx: Ctx, caller: Caller, conn: Conn,
    unit: Annotated[str | None, Query(max_length=64, description="this unit and below")] = None,
    start: Annotated[int | None, Query(alias="from", ge=MIN_MS, le=MAX_MS)] = None,
    end: Annotated[int | None, Query(alias="to", ge=MIN_MS, le=MAX_MS)] = None,
    actor: Annotated[str | None, Query(max_length=64)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    subject: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> dict:
    """Audit entries of the caller's units, newest first (times in epoch ms). Reading it is
    itself audited."""
    if caller.officer.role not in ("province", "admin"):
        raise HTTPException(403, "province or admin role required / cần quyền cấp tỉnh")
    params = {"u": caller.unit_filter(conn, unit), "actor": actor, "action": action,
              "subject": subject, "from": to_dt(start) if start is not None else None,
              "to": to_dt(end) if end is not None else None, "limit": limit, "offset": offset}
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(_ENTRIES, params).fetchall()
    audit(conn, ctx, caller, "audit.read", unit, {"count": len(rows)})
    return {"entries": [{**r, "at": to_ms(r["at"])} for r in rows], "limit": limit,
            "offset": offset}
