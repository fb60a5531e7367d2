"""Permits (giấy phép vắng mặt): permission to be away from the place of residence.

A new permit is checked against the sentence policy by ``geofence.policy.check_permit``; a
refusal is a 422 whose ``rule`` names the rule broken (e.g. ``max_trip_days``). Permits are
versioned (``registry.permits``): revoking or shortening one is a new version recorded with who
and why, in force from when it is made; ``/permits/{id}/versions`` lists them. The policy checks
count a revoked permit up to its revocation (the registry's one rule), as the importer does.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, Body, HTTPException, Path
from pydantic import BaseModel, Field, field_validator

import registry
import registry.permits
from api.deps import ApiContext, Caller, Conn, Ctx, audit
from api.errors import Problem
from api.registry import SuperviseeId, bump_registry, refused, supervisee
from api.scope import Scope
from api.wire import MAX_MS, MIN_MS, to_dt, to_ms
from geofence.policy import Permit, PermitRefused, Supervisee, check_permit
from geofence.zones import ZoneError, check_vertices, parse_geometry

router = APIRouter(prefix="/api/v1", tags=["permits"])

Instant = Annotated[int, Field(ge=MIN_MS, le=MAX_MS)] | datetime


def _needs_offset(v: int | datetime) -> int | datetime:
    if isinstance(v, datetime) and v.tzinfo is None:
        raise ValueError("a date-time needs a UTC offset, e.g. 2026-01-02T08:00:00+07:00")
    return v


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
        return _needs_offset(v)

    def instant(self, v: int | datetime) -> datetime:
        return _instant(v)


class Revoke(BaseModel):
    """``at``: from when (epoch ms or an ISO date-time with offset; default now, never in the
    past). A permit revoked before it starts never applies."""

    reason: str = Field(min_length=1, max_length=1000)
    at: Instant | None = None

    @field_validator("at")
    @classmethod
    def _aware(cls, v: int | datetime | None) -> int | datetime | None:
        return None if v is None else _needs_offset(v)


class Shorten(BaseModel):
    """``valid_to``: the new end, before the current one and not in the past."""

    valid_to: Instant
    reason: str = Field(min_length=1, max_length=1000)

    @field_validator("valid_to")
    @classmethod
    def _aware(cls, v: int | datetime) -> int | datetime:
        return _needs_offset(v)


PermitId = Annotated[int, Path(ge=1, le=2**63 - 1, description="permit id")]


def _instant(v: int | datetime) -> datetime:
    dt = to_dt(v) if isinstance(v, int) else v
    if not MIN_MS <= to_ms(dt) <= MAX_MS:  # type: ignore[operator]
        raise Problem(422, "date-time out of range")
    return dt


def permit_json(row: dict[str, Any]) -> dict[str, Any]:
    """A permit version (``registry.permits`` row) at the API's edge, times in epoch ms;
    ``ends_at`` is when it really ends (its end, or its revocation if earlier), null when it
    was revoked before it started and never applies."""
    return {"id": row["id"], "supervisee_id": row["supervisee_id"],
            "valid_from": to_ms(row["valid_from"]), "valid_to": to_ms(row["valid_to"]),
            "reason": row["reason"], "category": row["category"],
            "destination": "anywhere" if row["anywhere"] else row["destination"],
            "granted_by": row["granted_by"], "created_at": to_ms(row["created_at"]),
            "revoked_at": to_ms(row["revoked_at"]),
            "ends_at": to_ms(row["ends_at"]) if row["applies"] else None,
            "version": row["version"], "effective_from": row["effective_from_ms"],
            "effective_to": row["effective_to_ms"], "changed_by": row["changed_by"],
            "change_reason": row["change_reason"]}


@router.get("/supervisees/{sid}/permits", responses={404: {"description": "not in your scope"}})
def list_permits(sid: SuperviseeId, caller: Caller, conn: Conn) -> list[dict]:
    """The supervisee's permits (their current versions), oldest first (times in epoch ms)."""
    supervisee(conn, caller, sid)
    return [permit_json(r) for r in registry.permits.permit_rows(conn, [sid])]


def _scoped(conn: psycopg.Connection, caller: Any, pid: int) -> dict[str, Any]:
    """The permit's current version if its supervisee is in the caller's scope; 404 otherwise."""
    row = registry.permits.permit_row(conn, pid)
    if row is None:
        raise HTTPException(404, f"no permit {pid} in your scope / không có giấy phép")
    try:
        supervisee(conn, caller, row["supervisee_id"])
    except HTTPException as exc:
        raise HTTPException(404, f"no permit {pid} in your scope / không có giấy phép") from exc
    return row


@router.get("/permits/{pid}/versions", responses={404: {"description": "not in your scope"}})
def permit_versions(pid: PermitId, caller: Caller, conn: Conn) -> list[dict]:
    """Every version of one permit, oldest first, each in force over [``effective_from``,
    ``effective_to``) (null: open end), with who changed it and why."""
    _scoped(conn, caller, pid)
    return [permit_json(r) for r in registry.permits.permit_history(conn, pid)]


_CHANGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "not in your scope"},
    422: {"description": "the change is refused: `rule` says why (effective_in_past, "
                         "already_revoked, already_ended, not_shorter, not_after_start)"}}


@router.post("/permits/{pid}/revoke", responses=_CHANGE_RESPONSES)
def revoke_permit(pid: PermitId, ctx: Ctx, caller: Caller, conn: Conn,
                  body: Annotated[Revoke, Body()]) -> dict:
    """Revoke a permit now or from ``at``, as a new version; it then counts (for the total of
    trips) and lifts zones only up to its revocation. The pipeline reloads it."""
    return _change(pid, ctx, caller, conn, "revoke", lambda: registry.permits.revoke(
        conn, pid, changed_by=caller.username, reason=body.reason,
        at=None if body.at is None else _instant(body.at), now=ctx.now()))


@router.post("/permits/{pid}/shorten", responses=_CHANGE_RESPONSES)
def shorten_permit(pid: PermitId, ctx: Ctx, caller: Caller, conn: Conn,
                   body: Annotated[Shorten, Body()]) -> dict:
    """End a permit earlier, at ``valid_to``, as a new version (a longer permit is a new one,
    checked against the sentence policy). The pipeline reloads it."""
    return _change(pid, ctx, caller, conn, "shorten", lambda: registry.permits.shorten(
        conn, pid, valid_to=_instant(body.valid_to), changed_by=caller.username,
        reason=body.reason, now=ctx.now()))


def _change(pid: int, ctx: ApiContext, caller: Scope, conn: psycopg.Connection, action: str,
            change: Callable[[], dict[str, Any]]) -> dict:
    """A change of a permit in the caller's scope, as a new version: refused with the rule that
    forbids it, or made, the pipeline told and the change audited."""
    row = _scoped(conn, caller, pid)
    try:
        new = change()
    except registry.ChangeRefused as exc:
        raise refused(exc) from exc
    bump_registry(conn)
    audit(conn, ctx, caller, f"permit.{action}", row["supervisee_id"],
          {"permit_id": pid, "version": new["version"]})
    return permit_json(new)


def _as_permit(row: dict[str, Any], destination: Any) -> Permit:
    return Permit(supervisee_id=row["supervisee_id"], valid_from=row["valid_from"],
                  valid_to=row["valid_to"], reason=row["reason"], category=row["category"],
                  destination=destination, id=row.get("id"))


@router.post("/supervisees/{sid}/permits", status_code=201,
             responses={404: {"description": "not in your scope"},
                        409: {"description": "the same permit exists already"},
                        422: {"description": "invalid, or refused by the sentence policy: "
                                             "`rule` names the rule"}})
def create_permit(sid: SuperviseeId, ctx: Ctx, caller: Caller, conn: Conn,
                  body: Annotated[PermitIn, Body()]) -> dict:
    """Grant a permit after checking it against the sentence policy."""
    sup = supervisee(conn, caller, sid)
    dest = None
    if body.destination != "anywhere":
        try:
            check_vertices(body.destination, ctx.settings.max_zone_vertices, "$.destination")
            dest = parse_geometry(body.destination, "$.destination")
        except ZoneError as exc:
            raise Problem(422, f"invalid destination: {exc.message} (or \"anywhere\")",
                          path=exc.path) from exc
    row = {"supervisee_id": sid, "valid_from": body.instant(body.valid_from),
           "valid_to": body.instant(body.valid_to), "reason": body.reason,
           "category": body.category}
    who = Supervisee(sid, sup["sentence_type"], sup["sentence_start"], sup["sentence_end"])
    try:
        check_permit(_as_permit(row, dest), who, registry.load_permits(conn, [sid]),
                     registry.load_zones(conn, [sid]), ctx.policies, ctx.settings.timezone)
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
    new = registry.permits.grant(
        conn, sid, valid_from=row["valid_from"], valid_to=row["valid_to"], reason=body.reason,
        category=body.category, destination=None if dest is None else body.destination,
        granted_by=caller.username, now=ctx.now())
    if new is None:
        raise HTTPException(409, "this permit exists already (same start, end and reason) / "
                                 "giấy phép đã tồn tại")
    bump_registry(conn)
    audit(conn, ctx, caller, "permit.create", sid, {"permit_id": new["id"]})
    return permit_json(new)
