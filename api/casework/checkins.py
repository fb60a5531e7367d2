"""Roll-call (điểm danh, kiểm diện) in the dashboard: a supervisee's windows of a month and
their state, an in-person check-in recorded by an officer, an ad-hoc roll-call.

The windows and the missed-check-in rule are the alerts package's (``alerts.rollcall``); a
device's ``checkin`` event reaches the same table through the decide stage.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from pydantic import BaseModel, Field, model_validator

from alerts.rollcall import Window, ad_hoc_windows, monthly_windows, record_checkin
from api.casework.common import MONTH, local_midnight, month_first, next_month
from api.deps import Caller, Conn, Ctx, audit
from api.errors import Problem
from api.registry import SuperviseeId, supervisee
from api.wire import MAX_MS, MIN_MS, to_dt, to_ms

router = APIRouter(prefix="/api/v1", tags=["casework"])

Ms = Annotated[int, Field(ge=MIN_MS, le=MAX_MS)]


class CheckinIn(BaseModel):
    """An in-person check-in at the station; ``at`` epoch ms (default: now)."""

    at: Ms | None = None
    note: str | None = Field(None, max_length=2000)


class RollCallIn(BaseModel):
    """An ad-hoc roll-call window [opens_at, closes_at), epoch ms."""

    opens_at: Ms
    closes_at: Ms
    reason: str | None = Field(None, max_length=2000)

    @model_validator(mode="after")
    def _order(self) -> RollCallIn:
        if self.closes_at <= self.opens_at:
            raise ValueError("closes_at must be after opens_at")
        if self.closes_at - self.opens_at > 31 * 86_400_000:
            raise ValueError("an ad-hoc roll-call lasts at most 31 days")
        return self


def _state(w: Window, checkins: list[dict[str, Any]], missed: set, now_ms: int) -> dict:
    hit = next((c for c in checkins if c["at_station"]
                and w.holds(to_dt(c["at"]))), None)
    closes = to_ms(w.closes) or 0
    state = ("done" if hit else "missed" if closes <= now_ms
             else "open" if (to_ms(w.opens) or 0) <= now_ms else "upcoming")
    return {**w.as_json(), "state": state, "checkin_id": hit["id"] if hit else None,
            "alerted": (w.supervisee_id, w.opens) in missed}


@router.get("/supervisees/{sid}/rollcall", responses={404: {"description": "not in your scope"}})
def rollcall(sid: SuperviseeId, ctx: Ctx, caller: Caller, conn: Conn,
             month: Annotated[str, Query(pattern=MONTH, description="YYYY-MM, local")]) -> dict:
    """The month's roll-call windows (monthly by the sentence policy, ad hoc) with their state
    (``done``, ``missed``, ``open``, ``upcoming``) and the month's check-ins."""
    sup = supervisee(conn, caller, sid)
    tz = ctx.settings.timezone
    first = month_first(month)
    start, end = local_midnight(first, tz), local_midnight(next_month(first), tz)
    windows = monthly_windows(ctx.policies, sup["sentence_type"], sup["sentence_start"],
                              sup["sentence_end"], [first], tz, sid)
    windows += ad_hoc_windows(conn, tz, [sid], start, end)
    rows = conn.execute(
        "SELECT id, at, method, device_id, at_station, recorded_by, note FROM checkins "
        "WHERE supervisee_id = %s AND at >= %s AND at < %s + interval '31 days' ORDER BY at",
        (sid, start, end)).fetchall()
    checkins = [{"id": r[0], "at": to_ms(r[1]), "method": r[2], "device_id": r[3],
                 "at_station": r[4], "recorded_by": r[5], "note": r[6]} for r in rows]
    missed = {(r[0], r[1]) for r in conn.execute(
        "SELECT supervisee_id, opens_at FROM rollcall_misses WHERE supervisee_id = %s", (sid,))}
    now_ms = to_ms(ctx.now()) or 0
    cite = _citation(ctx.policies, sup["sentence_type"], first)
    return {"supervisee_id": sid, "month": month,
            "windows": [_state(w, checkins, missed, now_ms) for w in windows],
            "checkins": [c for c in checkins if start <= to_dt(c["at"]) < end],
            "citation": cite.as_json() if cite else None}


def _citation(policies: Any, sentence_type: str, on: Any) -> Any:
    try:
        return policies.for_sentence(sentence_type, on).citation("roll_call")
    except LookupError:
        return None


@router.post("/supervisees/{sid}/checkins", status_code=201,
             responses={404: {"description": "not in your scope"}})
def record_in_person(sid: SuperviseeId, ctx: Ctx, caller: Caller, conn: Conn,
                     body: Annotated[CheckinIn, Body()]) -> dict:
    """Record an in-person check-in at the station (kiểm diện trực tiếp)."""
    supervisee(conn, caller, sid)
    now_ms = to_ms(ctx.now()) or 0
    at_ms = body.at if body.at is not None else now_ms
    if at_ms > now_ms + 60_000:
        raise Problem(422, "a check-in cannot be in the future / không ghi nhận trước")
    cid, _changes = record_checkin(conn, sid, to_dt(at_ms), method="in_person",
                                   placed_at_station=True, recorded_by=caller.username,
                                   note=body.note, now_ms=now_ms)
    audit(conn, ctx, caller, "checkin.record", sid, {"checkin_id": cid, "at": at_ms})
    return {"id": cid, "supervisee_id": sid, "at": at_ms, "method": "in_person",
            "at_station": True, "recorded_by": caller.username, "note": body.note}


@router.post("/supervisees/{sid}/rollcall", status_code=201,
             responses={404: {"description": "not in your scope"}})
def call_ad_hoc(sid: SuperviseeId, ctx: Ctx, caller: Caller, conn: Conn,
                body: Annotated[RollCallIn, Body()]) -> dict:
    """Call an ad-hoc roll-call (điểm danh đột xuất): the person must check in at the
    station within the window, or a ``checkin_missed`` alert opens when it closes."""
    supervisee(conn, caller, sid)
    wid = conn.execute(
        "INSERT INTO rollcall_windows (supervisee_id, opens_at, closes_at, called_by, reason) "
        "VALUES (%s, %s, %s, %s, %s) RETURNING id",
        (sid, to_dt(body.opens_at), to_dt(body.closes_at), caller.username,
         body.reason)).fetchone()[0]
    audit(conn, ctx, caller, "rollcall.call", sid, {"window_id": wid})
    return {"id": wid, "supervisee_id": sid, "opens_at": body.opens_at,
            "closes_at": body.closes_at, "reason": body.reason, "called_by": caller.username}
