"""Permits (giấy phép vắng mặt): permission to be away from the place of residence.

A new permit is checked against the sentence policy by ``geofence.policy.check_permit``; a
refusal is a 422 whose ``rule`` names the rule broken (e.g. ``max_trip_days``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, Body
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from pydantic import BaseModel, Field, field_validator

from api.deps import Caller, Conn, Ctx, audit
from api.errors import Problem
from api.registry import SuperviseeId, bump_registry, stored_permits, supervisee
from api.wire import MAX_MS, MIN_MS, to_dt, to_ms
from api.zonejson import stored_zones
from geofence.policy import Permit, PermitRefused, Supervisee, check_permit
from geofence.zones import ZoneError, parse_geometry

router = APIRouter(prefix="/api/v1", tags=["permits"])

Instant = Annotated[int, Field(ge=MIN_MS, le=MAX_MS)] | datetime


class PermitIn(BaseModel):
    """``valid_from`` / ``valid_to``: epoch ms, or ISO date-times with an offset.
    ``destination``: a GeoJSON Polygon / MultiPolygon, or ``"anywhere"``."""

    valid_from: Instant
    valid_to: Instant
    reason: str = Field(min_length=1, max_length=1000)
    category: Literal["medical", "visit", "work", "family", "other"] = "other"
    destination: Literal["anywhere"] | dict[str, Any]

    @field_validator("valid_from", "valid_to")
    @classmethod
    def _aware(cls, v: int | datetime) -> int | datetime:
        if isinstance(v, datetime) and v.tzinfo is None:
            raise ValueError("a date-time needs a UTC offset, e.g. 2026-01-02T08:00:00+07:00")
        return v

    def instant(self, v: int | datetime) -> datetime:
        dt = to_dt(v) if isinstance(v, int) else v
        if not MIN_MS <= to_ms(dt) <= MAX_MS:
            raise Problem(422, "date-time out of range")
        return dt


def _permit_json(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "supervisee_id": row["supervisee_id"],
            "valid_from": to_ms(row["valid_from"]), "valid_to": to_ms(row["valid_to"]),
            "reason": row["reason"], "category": row["category"],
            "destination": "anywhere" if row["anywhere"] else row["destination"],
            "granted_by": row["granted_by"], "created_at": to_ms(row["created_at"]),
            "revoked_at": to_ms(row["revoked_at"])}


def _rows(conn: psycopg.Connection, sid: str) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM permits WHERE supervisee_id = %s "
                           "ORDER BY valid_from, id", (sid,)).fetchall()


@router.get("/supervisees/{sid}/permits", responses={404: {"description": "not in your scope"}})
def list_permits(sid: SuperviseeId, caller: Caller, conn: Conn) -> list[dict]:
    """The supervisee's permits, oldest first (times in epoch ms)."""
    supervisee(conn, caller, sid)
    return [_permit_json(r) for r in _rows(conn, sid)]


def _as_permit(row: dict[str, Any], destination: Any) -> Permit:
    return Permit(supervisee_id=row["supervisee_id"], valid_from=row["valid_from"],
                  valid_to=row["valid_to"], reason=row["reason"], category=row["category"],
                  destination=destination, id=row.get("id"))


@router.post("/supervisees/{sid}/permits", status_code=201,
             responses={404: {"description": "not in your scope"},
                        422: {"description": "invalid, or refused by the sentence policy: "
                                             "`rule` names the rule"}})
def create_permit(sid: SuperviseeId, ctx: Ctx, caller: Caller, conn: Conn,
                  body: Annotated[PermitIn, Body()]) -> dict:
    """Grant a permit after checking it against the sentence policy."""
    sup = supervisee(conn, caller, sid)
    dest = None
    if body.destination != "anywhere":
        try:
            dest = parse_geometry(body.destination, "$.destination")
        except ZoneError as exc:
            raise Problem(422, f"invalid destination: {exc.message} (or \"anywhere\")",
                          path=exc.path) from exc
    row = {"supervisee_id": sid, "valid_from": body.instant(body.valid_from),
           "valid_to": body.instant(body.valid_to), "reason": body.reason,
           "category": body.category}
    who = Supervisee(sid, sup["sentence_type"], sup["sentence_start"], sup["sentence_end"])
    try:
        check_permit(_as_permit(row, dest), who, stored_permits(conn, sid), stored_zones(conn, sid),
                     ctx.policies, ctx.settings.timezone)
    except PermitRefused as exc:
        cite = exc.citation
        source = "" if cite is None else (
            f" ({cite.article} {cite.clause}, {cite.law}"
            f"{'' if cite.verified else '; unverified / chưa kiểm chứng'})")
        raise Problem(422, f"refused by the sentence policy, rule {exc.rule}: {exc.message}"
                           f"{source}", rule=exc.rule,
                      citation=None if cite is None else cite.as_json()) from exc
    except LookupError as exc:  # no policy version in force on that date
        raise Problem(422, str(exc), rule="no_policy") from exc
    with conn.cursor(row_factory=dict_row) as cur:
        new = cur.execute(
            "INSERT INTO permits (supervisee_id, valid_from, valid_to, reason, category, "
            "destination, anywhere, granted_by) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
            "RETURNING *",
            (sid, row["valid_from"], row["valid_to"], body.reason, body.category,
             None if dest is None else Jsonb(body.destination), dest is None,
             caller.username)).fetchone()
    bump_registry(conn)
    audit(conn, ctx, caller, "permit.create", sid, {"permit_id": new["id"]})
    return _permit_json(new)
