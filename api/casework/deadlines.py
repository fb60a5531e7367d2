"""Case deadlines (thời hạn) from the dates stored on a case, in working days (``calendar``):

- ``officer_assigned``: an officer assigned within 3 working days of receiving the file;
- ``plan_issued``: the supervision plan within 5 working days of receiving the file;
- ``review_meeting``: a review meeting (họp kiểm điểm) within 5 working days of a violation
  record;
- ``assessment``: the unit's monthly assessment list signed by day 5 of the next month.

The day counts are the casework rules of the policy version in force on the day the clock
starts (the decree in force 2026-07-01, cited and unverified); before it, no deadline runs.
An item is overdue when it is not done and its due day has passed (``on`` defaults to today,
local), or when it was done after its due day (``late``).
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

import psycopg
from fastapi import APIRouter, Body, HTTPException, Path, Query
from pydantic import BaseModel, Field, model_validator

from api.casework.assessments import due_on as assessment_due
from api.casework.calendar import Calendar, vietnam
from api.casework.common import Day, csv_response, next_month, scoped_units, today
from api.deps import ApiContext, Caller, Conn, Ctx, audit
from api.registry import SuperviseeId, supervisee
from api.wire import to_ms
from geofence.policy import PolicyTable

router = APIRouter(prefix="/api/v1", tags=["casework"])


class CaseFileIn(BaseModel):
    """The dates of a case file (local dates)."""

    received_on: Day
    officer: str | None = Field(None, max_length=64)
    officer_assigned_on: Day | None = None
    plan_issued_on: Day | None = None

    @model_validator(mode="after")
    def _order(self) -> CaseFileIn:
        for name in ("officer_assigned_on", "plan_issued_on"):
            done = getattr(self, name)
            if done is not None and done < self.received_on:
                raise ValueError(f"{name} is before received_on")
        return self


class ReviewIn(BaseModel):
    held_on: Day
    note: str | None = Field(None, max_length=2000)


def item(cal: Calendar, policies: PolicyTable, step: str, started: date, done: date | None,
         on: date, **about: Any) -> dict[str, Any] | None:
    """One deadline (pure): due ``n`` working days after ``started`` by the rules in force."""
    rules = policies.casework_on(started)
    if rules is None or step not in rules.deadlines_working_days:
        return None
    n = rules.deadlines_working_days[step]
    due = cal.add_working_days(started, n)
    cite = rules.citations.get(step)
    overdue = done is None and on > due
    late = done is not None and done > due
    return {**about, "step": step, "started_on": started.isoformat(), "working_days": n,
            "due_on": due.isoformat(), "done_on": done and done.isoformat(),
            "overdue": overdue, "late": late,
            "working_days_late": cal.working_days_between(due, done or on) if overdue or late
            else 0,
            "calendar_covers": cal.covers(due),
            "citation": cite.as_json() if cite else None}


def case_items(conn: psycopg.Connection, ctx: ApiContext, units: list[str],
               on: date) -> list[dict[str, Any]]:
    """Every deadline of the cases of ``units`` (see the module docstring)."""
    cal, pol = vietnam(), ctx.policies
    assert pol is not None
    out = []
    for sid, unit, received, assigned, plan in conn.execute(
            "SELECT c.supervisee_id, s.unit, c.received_on, c.officer_assigned_on, "
            "c.plan_issued_on FROM case_files c JOIN supervisees s ON s.id = c.supervisee_id "
            "WHERE s.unit = ANY(%s) ORDER BY 1", (units,)):
        out += [item(cal, pol, "officer_assigned", received, assigned, on,
                     supervisee_id=sid, unit=unit),
                item(cal, pol, "plan_issued", received, plan, on, supervisee_id=sid, unit=unit)]
    tz = ZoneInfo(ctx.settings.timezone)
    for vid, sid, unit, recorded, held in conn.execute(
            "SELECT v.id, v.supervisee_id, s.unit, v.recorded_at, r.held_on "
            "FROM violation_records v JOIN supervisees s ON s.id = v.supervisee_id "
            "LEFT JOIN review_meetings r ON r.violation_record_id = v.id "
            "WHERE s.unit = ANY(%s) ORDER BY v.id", (units,)):
        out.append(item(cal, pol, "review_meeting", recorded.astimezone(tz).date(), held, on,
                        supervisee_id=sid, unit=unit, violation_record_id=vid))
    out += _assessment_items(conn, ctx, units, on)
    return [i for i in out if i is not None]


def _assessment_items(conn: psycopg.Connection, ctx: ApiContext, units: list[str],
                      on: date) -> list[dict[str, Any]]:
    """The last three months' assessment lists of each unit with people to assess."""
    out = []
    this_month = on.replace(day=1)
    for k in (3, 2, 1):
        first = next_month(this_month, -k)
        due = assessment_due(ctx, first)
        if due is None:
            continue
        last = next_month(first) - timedelta(days=1)
        for unit, signed_at in conn.execute(
                "SELECT DISTINCT s.unit, sig.signed_at FROM supervisees s "
                "LEFT JOIN assessment_signatures sig ON sig.unit = s.unit AND sig.month = %s "
                "WHERE s.unit = ANY(%s) AND s.sentence_start <= %s AND s.sentence_end >= %s "
                "ORDER BY 1", (first, units, last, first)):
            done = None if signed_at is None else signed_at.astimezone(
                ZoneInfo(ctx.settings.timezone)).date()
            out.append({"unit": unit, "supervisee_id": None, "step": "assessment",
                        "month": first.strftime("%Y-%m"), "due_on": due.isoformat(),
                        "done_on": done and done.isoformat(),
                        "overdue": done is None and on > due,
                        "late": done is not None and done > due})
    return out


@router.get("/casework/deadlines", responses={403: {"description": "unit outside your scope"}})
def deadlines(ctx: Ctx, caller: Caller, conn: Conn,
              unit: Annotated[str | None, Query(max_length=64)] = None,
              on: Annotated[date | None, Query(ge=date(1970, 4, 1), le=date(9998, 12, 31),
                                               description="the day to judge by (local); "
                                                           "default today")] = None,
              overdue_only: bool = False,
              format: Literal["json", "csv"] = "json") -> Any:
    """The unit's (and those below it) case deadlines in working days, overdue ones flagged:
    the unit's queue, and the province's report of overdue items."""
    unit, units = scoped_units(conn, caller, unit)
    day = on or today(ctx.now(), ctx.settings.timezone)
    items = case_items(conn, ctx, units, day)
    if overdue_only:
        items = [i for i in items if i["overdue"]]
    if format == "csv":
        cols = ["unit", "supervisee_id", "step", "month", "violation_record_id", "started_on",
                "due_on", "done_on", "overdue", "late", "working_days_late"]
        return csv_response(cols, ([i.get(c) for c in cols] for i in items),
                            f"thoi-han-{unit}-{day}.csv")
    return {"unit": unit, "on": day.isoformat(), "items": items,
            "overdue": sum(i["overdue"] for i in items)}


@router.get("/supervisees/{sid}/case-file", responses={404: {"description": "not in scope"}})
def get_case_file(sid: SuperviseeId, ctx: Ctx, caller: Caller, conn: Conn) -> dict:
    """The case file's dates and their deadlines."""
    sup = supervisee(conn, caller, sid)
    row = conn.execute("SELECT received_on, officer, officer_assigned_on, plan_issued_on, "
                       "updated_by, updated_at FROM case_files WHERE supervisee_id = %s",
                       (sid,)).fetchone()
    if row is None:
        raise HTTPException(404, f"no case file recorded for {sid} / chưa có hồ sơ")
    day = today(ctx.now(), ctx.settings.timezone)
    items = [i for i in case_items(conn, ctx, [sup["unit"]], day) if i["supervisee_id"] == sid]
    return {"supervisee_id": sid, "received_on": row[0].isoformat(), "officer": row[1],
            "officer_assigned_on": row[2] and row[2].isoformat(),
            "plan_issued_on": row[3] and row[3].isoformat(), "updated_by": row[4],
            "updated_at": to_ms(row[5]), "deadlines": items}


@router.put("/supervisees/{sid}/case-file", responses={404: {"description": "not in scope"}})
def put_case_file(sid: SuperviseeId, ctx: Ctx, caller: Caller, conn: Conn,
                  body: Annotated[CaseFileIn, Body()]) -> dict:
    """Record the case file's dates: received, officer assigned, plan issued."""
    supervisee(conn, caller, sid)
    conn.execute("""
        INSERT INTO case_files (supervisee_id, received_on, officer, officer_assigned_on,
                                plan_issued_on, updated_by, updated_at)
        VALUES (%s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (supervisee_id) DO UPDATE SET received_on = EXCLUDED.received_on,
            officer = EXCLUDED.officer, officer_assigned_on = EXCLUDED.officer_assigned_on,
            plan_issued_on = EXCLUDED.plan_issued_on, updated_by = EXCLUDED.updated_by,
            updated_at = EXCLUDED.updated_at
        """, (sid, body.received_on, body.officer, body.officer_assigned_on,
              body.plan_issued_on, caller.username, ctx.now()))
    audit(conn, ctx, caller, "case_file.update", sid)
    return get_case_file(sid, ctx, caller, conn)


@router.put("/casework/violations/{record_id}/review-meeting",
            responses={404: {"description": "not in your scope"}})
def record_review(record_id: Annotated[int, Path(ge=1, le=2**63 - 1)], ctx: Ctx,
                  caller: Caller, conn: Conn, body: Annotated[ReviewIn, Body()]) -> dict:
    """Record the review meeting held after a violation record."""
    row = conn.execute("SELECT v.supervisee_id, s.unit, v.recorded_at FROM violation_records v "
                       "JOIN supervisees s ON s.id = v.supervisee_id WHERE v.id = %s",
                       (record_id,)).fetchone()
    if row is None or not caller.allows(row[1]):
        raise HTTPException(404, f"no violation record {record_id} in your scope")
    conn.execute("INSERT INTO review_meetings (violation_record_id, held_on, recorded_by, note) "
                 "VALUES (%s, %s, %s, %s) ON CONFLICT (violation_record_id) DO UPDATE SET "
                 "held_on = EXCLUDED.held_on, recorded_by = EXCLUDED.recorded_by, "
                 "note = EXCLUDED.note", (record_id, body.held_on, caller.username, body.note))
    audit(conn, ctx, caller, "review_meeting.record", row[0], {"violation_record_id": record_id})
    return {"violation_record_id": record_id, "supervisee_id": row[0],
            "held_on": body.held_on.isoformat(), "note": body.note}
