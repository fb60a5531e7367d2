"""Alerts (contract §3): list and filter, history, acknowledge, resolve.

The lifecycle is the alerts package's: the routes call ``alerts.lifecycle.acknowledge`` and
``resolve`` and turn their ``AlertError``s into 4xx; they never change an alert themselves. The
JSON of an alert is ``alerts.payload.alert_json``, the same as published on MQTT.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

import psycopg
from fastapi import APIRouter, Body, HTTPException, Path, Query
from psycopg.rows import dict_row
from pydantic import BaseModel, Field

from alerts import lifecycle
from alerts.model import ALERT_TYPES, OUTCOMES, SEVERITIES, STATUSES, AlertError
from alerts.payload import alert_json
from api.casework.citations import alert_citation
from api.deps import ApiContext, Caller, Conn, Ctx
from api.errors import Problem
from api.scope import Scope
from api.wire import MAX_MS, MIN_MS, to_dt, to_ms

router = APIRouter(prefix="/api/v1", tags=["alerts"])

AlertId = Annotated[int, Path(ge=1, le=2**63 - 1, description="alert id")]
AlertType = Literal[ALERT_TYPES]  # type: ignore[valid-type]
Severity = Literal[SEVERITIES]  # type: ignore[valid-type]
Status = Literal[STATUSES]  # type: ignore[valid-type]
Outcome = Literal[OUTCOMES]  # type: ignore[valid-type]


class AckIn(BaseModel):
    note: str | None = Field(None, max_length=2000)


class ResolveIn(BaseModel):
    """``violation`` (the officer's violation record, biên bản), ``justified`` (a reason, e.g.
    medical) or ``false_alarm``; the note says why."""

    outcome: Outcome
    note: str | None = Field(None, max_length=2000)


_SELECT = ("SELECT a.*, u.parent AS parent_unit, s.name AS supervisee_name FROM alerts a "
           "JOIN units u ON u.code = a.unit JOIN supervisees s ON s.id = a.supervisee_id")


def _json(row: dict[str, Any]) -> dict[str, Any]:
    """The contract's alert JSON plus ``supervisee_name`` for officers (the API is scoped and
    audited; MQTT and webhook payloads stay id-only, see ``alerts.texts``)."""
    return {**alert_json(row, parent_unit=row["parent_unit"]),
            "supervisee_name": row["supervisee_name"]}


def visible_alert(conn: psycopg.Connection, caller: Scope, alert_id: int) -> dict[str, Any]:
    """The alert row if the caller may see it (its unit, or the parent it is routed to once
    escalated, is in scope); 404 otherwise."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_SELECT + " WHERE a.id = %s", (alert_id,)).fetchone()
    if row is None or not (caller.allows(row["unit"])
                           or (row["escalated"] and caller.allows(row["parent_unit"]))):
        raise HTTPException(404, f"no alert {alert_id} in your scope / không có cảnh báo")
    return row


@router.get("/alerts")
def list_alerts(
    caller: Caller, conn: Conn,
    unit: Annotated[str | None, Query(max_length=64,
                                      description="this unit and the units below it")] = None,
    status: Status | None = None,
    type: AlertType | None = None,
    severity: Severity | None = None,
    active: bool | None = None,
    supervisee_id: Annotated[str | None, Query(max_length=64)] = None,
    q: Annotated[str | None, Query(max_length=100, pattern=r"^[^\x00]*$",
                                   description="part of the supervisee's name or id "
                                               "(case-insensitive)")] = None,
    start: Annotated[int | None, Query(alias="from", ge=MIN_MS, le=MAX_MS,
                                       description="opened at or after, epoch ms")] = None,
    end: Annotated[int | None, Query(alias="to", ge=MIN_MS, le=MAX_MS,
                                     description="opened before, epoch ms")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> dict:
    """Alerts in scope, newest first, filtered; ``total`` counts all that match."""
    params = {"u": caller.unit_filter(conn, unit), "status": status, "type": type,
              "severity": severity, "active": active, "sid": supervisee_id,
              "q": f"%{_like_escape(q.strip())}%" if q and q.strip() else None,
              "from": to_dt(start) if start is not None else None,
              "to": to_dt(end) if end is not None else None, "limit": limit, "offset": offset}
    where = """
     WHERE (%(u)s::text[] IS NULL OR a.unit = ANY(%(u)s)
            OR (a.escalated AND u.parent = ANY(%(u)s)))
       AND (%(status)s::text IS NULL OR a.status = %(status)s)
       AND (%(type)s::text IS NULL OR a.type = %(type)s)
       AND (%(severity)s::text IS NULL OR a.severity = %(severity)s)
       AND (%(active)s::boolean IS NULL OR a.active = %(active)s)
       AND (%(sid)s::text IS NULL OR a.supervisee_id = %(sid)s)
       AND (%(q)s::text IS NULL OR s.name ILIKE %(q)s OR a.supervisee_id ILIKE %(q)s)
       AND (%(from)s::timestamptz IS NULL OR a.opened_at >= %(from)s)
       AND (%(to)s::timestamptz IS NULL OR a.opened_at < %(to)s)"""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(_SELECT + where + " ORDER BY a.opened_at DESC, a.id DESC "
                           "LIMIT %(limit)s OFFSET %(offset)s", params).fetchall()
        total = cur.execute("SELECT count(*) AS n FROM alerts a "
                            "JOIN units u ON u.code = a.unit "
                            "JOIN supervisees s ON s.id = a.supervisee_id" + where,
                            params).fetchone()["n"]
    return {"alerts": [_json(r) for r in rows], "total": total, "limit": limit,
            "offset": offset}


def _explained(ctx: ApiContext, conn: psycopg.Connection, row: dict[str, Any]) -> dict:
    """The alert's JSON with ``citation``: the law behind the rule it enforces (issue 13)."""
    found = conn.execute("SELECT sentence_type FROM supervisees WHERE id = %s",
                         (row["supervisee_id"],)).fetchone()
    assert ctx.policies is not None
    on = row["opened_at"].astimezone(ZoneInfo(ctx.settings.timezone)).date()
    return {**_json(row), "citation": alert_citation(ctx.policies, row["type"],
                                                     found and found[0], on)}


@router.get("/alerts/{alert_id}", responses={404: {"description": "not in your scope"}})
def get_alert(alert_id: AlertId, ctx: Ctx, caller: Caller, conn: Conn) -> dict:
    """One alert (contract §3 JSON), with the citation of the rule it enforces."""
    return _explained(ctx, conn, visible_alert(conn, caller, alert_id))


@router.get("/alerts/{alert_id}/history", responses={404: {"description": "not in your scope"}})
def alert_history(alert_id: AlertId, ctx: Ctx, caller: Caller, conn: Conn) -> dict:
    """The alert and its append-only history, oldest first: who, when (ms), what, note."""
    row = visible_alert(conn, caller, alert_id)
    with conn.cursor(row_factory=dict_row) as cur:
        hist = cur.execute("SELECT id, at, actor, action, note, data FROM alert_history "
                           "WHERE alert_id = %s ORDER BY id", (alert_id,)).fetchall()
    return {"alert": _explained(ctx, conn, row),
            "history": [{**h, "at": to_ms(h["at"])} for h in hist]}


def _like_escape(text: str) -> str:
    """``text`` matched literally by LIKE (its ``%``, ``_`` and ``\\`` escaped)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _lifecycle_error(exc: AlertError) -> Problem:
    return Problem(exc.http_status, str(exc))


@router.post("/alerts/{alert_id}/ack",
             responses={404: {"description": "not in your scope"},
                        409: {"description": "not open (already acknowledged or resolved)"}})
def acknowledge(alert_id: AlertId, ctx: Ctx, caller: Caller, conn: Conn,
                body: Annotated[AckIn | None, Body()] = None) -> dict:
    """Take the alert on: ``open`` -> ``acknowledged`` (stops its escalation)."""
    visible_alert(conn, caller, alert_id)
    try:
        change = lifecycle.acknowledge(conn, alert_id, caller.username,
                                       body.note if body else None, to_ms(ctx.now()))
    except AlertError as exc:
        raise _lifecycle_error(exc) from exc
    return {"alert": dict(change.payload)}


@router.post("/alerts/{alert_id}/resolve",
             responses={404: {"description": "not in your scope"},
                        409: {"description": "already resolved"}})
def resolve(alert_id: AlertId, ctx: Ctx, caller: Caller, conn: Conn,
            body: Annotated[ResolveIn, Body()]) -> dict:
    """Close the alert with an outcome and a note. A ``violation`` is counted for the
    supervisee; ``violations`` then says whether the court threshold is reached (a proposal to
    the court is possible; officers decide)."""
    visible_alert(conn, caller, alert_id)
    try:
        res = lifecycle.resolve(conn, alert_id, caller.username, body.outcome, body.note,
                                to_ms(ctx.now()), ctx.policies)
    except AlertError as exc:
        raise _lifecycle_error(exc) from exc
    violations = None
    if res.violation_count is not None:
        violations = {"count": res.violation_count, "court_threshold": res.court_threshold,
                      "court_threshold_reached": res.court_threshold_reached}
    return {"alert": dict(res.change.payload), "violations": violations}
