"""Monthly assessment (đánh giá, xếp loại hằng tháng) of each supervisee.

For a supervisee and a month (local), a classification is *proposed* from the month's records:

- ``kem`` (Kém): at least one violation record (biên bản, an alert resolved as ``violation``);
- ``trung_binh`` (Trung bình): no violation record, but a roll-call window missed;
- ``kha`` (Khá): neither, but an alert opened in the month is still unresolved;
- ``tot`` (Tốt): none of these.

The commune officer confirms it or changes it with a reason; the unit's chief (``chief`` on a
commune officer) signs the unit's list once every person is confirmed, after which it no longer
changes. The list is due by day ``assessment_due_day`` (5) of the next month (the decree in
force 2026-07-01, cited, unverified); an unsigned list after that is overdue (``deadlines``).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, Body, HTTPException, Path, Query
from psycopg.types.json import Jsonb
from pydantic import BaseModel, Field

from api.casework.common import (
    MONTH,
    csv_response,
    html_page,
    html_table,
    local_midnight,
    month_first,
    next_month,
    require_chief,
    scoped_units,
    today,
)
from api.deps import ApiContext, Caller, Conn, Ctx, audit
from api.errors import Problem
from api.registry import SuperviseeId, supervisee
from api.wire import to_ms

router = APIRouter(prefix="/api/v1", tags=["casework"])

CLASSES = ("tot", "kha", "trung_binh", "kem")
LABELS = {"tot": "Tốt", "kha": "Khá", "trung_binh": "Trung bình", "kem": "Kém"}
Classification = Literal["tot", "kha", "trung_binh", "kem"]
Month = Annotated[str, Path(pattern=MONTH, description="YYYY-MM, local")]


class AssessmentIn(BaseModel):
    """The officer's classification; a ``reason`` is required when it differs from the
    proposal."""

    classification: Classification
    reason: str | None = Field(None, max_length=2000)


class SignIn(BaseModel):
    unit: str = Field(min_length=1, max_length=64)
    month: str = Field(pattern=MONTH)


def propose(basis: dict[str, int]) -> str:
    """The proposed classification from the month's counts (pure; see the module docstring)."""
    if basis["violation_records"]:
        return "kem"
    if basis["missed_checkins"]:
        return "trung_binh"
    if basis["unresolved_alerts"]:
        return "kha"
    return "tot"


def month_basis(conn: psycopg.Connection, sids: list[str], first: date,
                tz: str) -> dict[str, dict[str, int]]:
    """The month's counts per supervisee (one query for the whole list): violation records,
    roll-call windows missed (closed in the month with no check-in at the station), alerts
    opened in the month and not resolved."""
    p = {"sids": sids, "start": local_midnight(first, tz),
         "end": local_midnight(next_month(first), tz)}
    rows = conn.execute("""
        SELECT s.id,
               (SELECT count(*) FROM violation_records WHERE supervisee_id = s.id
                   AND recorded_at >= %(start)s AND recorded_at < %(end)s),
               (SELECT count(*) FROM rollcall_misses m WHERE m.supervisee_id = s.id
                   AND m.closes_at > %(start)s AND m.closes_at <= %(end)s
                   AND NOT EXISTS (SELECT 1 FROM checkins c WHERE c.supervisee_id = s.id
                                     AND c.at_station AND c.at >= m.opens_at
                                     AND c.at < m.closes_at)),
               (SELECT count(*) FROM alerts WHERE supervisee_id = s.id
                   AND opened_at >= %(start)s AND opened_at < %(end)s AND status <> 'resolved')
          FROM unnest(%(sids)s::text[]) AS s(id)
        """, p).fetchall()
    return {r[0]: {"violation_records": r[1], "missed_checkins": r[2], "unresolved_alerts": r[3]}
            for r in rows}


def _people(conn: psycopg.Connection, units: list[str], first: date) -> list[tuple]:
    last = date.fromordinal(next_month(first).toordinal() - 1)
    return conn.execute(
        "SELECT id, name, unit FROM supervisees WHERE unit = ANY(%s) AND sentence_start <= %s "
        "AND sentence_end >= %s ORDER BY unit, id", (units, last, first)).fetchall()


def _stored(conn: psycopg.Connection, sids: list[str], first: date) -> dict[str, dict]:
    rows = conn.execute(
        "SELECT supervisee_id, classification, reason, confirmed_by, confirmed_at, proposed "
        "FROM assessments WHERE supervisee_id = ANY(%s) AND month = %s", (sids, first))
    return {r[0]: {"classification": r[1], "reason": r[2], "confirmed_by": r[3],
                   "confirmed_at": to_ms(r[4]), "proposed_when_confirmed": r[5]} for r in rows}


def _signature(conn: psycopg.Connection, unit: str, first: date) -> dict | None:
    row = conn.execute("SELECT signed_by, signed_at, people FROM assessment_signatures "
                       "WHERE unit = %s AND month = %s", (unit, first)).fetchone()
    return None if row is None else {"signed_by": row[0], "signed_at": to_ms(row[1]),
                                     "people": row[2]}


def due_on(ctx: ApiContext, first: date) -> date | None:
    """The day the month's list is due (None when no casework rules are in force then)."""
    assert ctx.policies is not None
    rules = ctx.policies.casework_on(next_month(first))
    return None if rules is None else next_month(first).replace(day=rules.assessment_due_day)


def unit_list(ctx: ApiContext, conn: psycopg.Connection, unit: str, units: list[str],
              month: str) -> dict[str, Any]:
    """The month's list for a unit (and those below it): each person's proposal and record."""
    first = month_first(month)
    tz = ctx.settings.timezone
    people = _people(conn, units, first)
    sids = [p[0] for p in people]
    stored, bases = _stored(conn, sids, first), month_basis(conn, sids, first, tz)
    rows = [{"supervisee_id": sid, "name": name, "unit": u, "basis": bases[sid],
             "proposed": propose(bases[sid]), **stored.get(sid, {"classification": None})}
            for sid, name, u in people]
    due = due_on(ctx, first)
    past_due = bool(due and today(ctx.now(), tz) > due)
    lists = {}  # the commune units with people to assess: each one's list is signed apart
    for u in sorted({r["unit"] for r in rows} | {unit}):
        sig = _signature(conn, u, first)
        lists[u] = {"signed": sig, "overdue": past_due and sig is None}
    for r in rows:
        r["signed_by"] = (lists[r["unit"]]["signed"] or {}).get("signed_by")
    return {"unit": unit, "month": month, "due_on": due and due.isoformat(),
            "signed": lists[unit]["signed"],
            "overdue": past_due and lists[unit]["signed"] is None and any(
                r["unit"] == unit for r in rows),
            "units": [{"unit": u, **v} for u, v in lists.items()
                      if any(r["unit"] == u for r in rows)],
            "people": rows}


@router.get("/casework/assessments", responses={403: {"description": "unit outside your scope"}})
def list_assessments(ctx: Ctx, caller: Caller, conn: Conn,
                     month: Annotated[str, Query(pattern=MONTH)],
                     unit: Annotated[str | None, Query(max_length=64)] = None) -> dict:
    """The unit's monthly assessment list: proposal, confirmed classification, signature."""
    unit, units = scoped_units(conn, caller, unit)
    return unit_list(ctx, conn, unit, units, month)


@router.put("/supervisees/{sid}/assessments/{month}",
            responses={404: {"description": "not in your scope"},
                       409: {"description": "the month is signed"}})
def confirm(sid: SuperviseeId, month: Month, ctx: Ctx, caller: Caller, conn: Conn,
            body: Annotated[AssessmentIn, Body()]) -> dict:
    """Confirm the proposed classification, or change it with a reason."""
    sup = supervisee(conn, caller, sid)
    first = month_first(month)
    last = date.fromordinal(next_month(first).toordinal() - 1)
    if not (sup["sentence_start"] <= last and sup["sentence_end"] >= first):
        raise Problem(422, f"{sid} is not under supervision in {month}")
    if _signature(conn, sup["unit"], first) is not None:
        raise HTTPException(409, f"the {month} list of {sup['unit']} is signed / đã ký")
    basis = month_basis(conn, [sid], first, ctx.settings.timezone)[sid]
    proposed = propose(basis)
    reason = (body.reason or "").strip() or None
    if body.classification != proposed and reason is None:
        raise Problem(422, f"a classification other than the proposed {proposed!r} needs a "
                           "reason / cần nêu lý do khi thay đổi xếp loại đề xuất")
    conn.execute("""
        INSERT INTO assessments (supervisee_id, month, unit, proposed, basis, classification,
                                 reason, confirmed_by, confirmed_at)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (supervisee_id, month) DO UPDATE SET unit = EXCLUDED.unit,
            proposed = EXCLUDED.proposed, basis = EXCLUDED.basis,
            classification = EXCLUDED.classification, reason = EXCLUDED.reason,
            confirmed_by = EXCLUDED.confirmed_by, confirmed_at = EXCLUDED.confirmed_at
        """, (sid, first, sup["unit"], proposed, Jsonb(basis), body.classification, reason,
              caller.username, ctx.now()))
    audit(conn, ctx, caller, "assessment.confirm", sid,
          {"month": month, "classification": body.classification, "proposed": proposed})
    return {"supervisee_id": sid, "month": month, "proposed": proposed, "basis": basis,
            "classification": body.classification, "reason": reason,
            "confirmed_by": caller.username}


@router.post("/casework/assessments/sign",
             responses={403: {"description": "not the unit's chief"},
                        409: {"description": "signed already, or people not confirmed"}})
def sign(ctx: Ctx, caller: Caller, conn: Conn, body: Annotated[SignIn, Body()]) -> dict:
    """The chief signs the unit's monthly list once every person is confirmed."""
    unit, _ = scoped_units(conn, caller, body.unit)
    require_chief(caller, unit)
    first = month_first(body.month)
    listing = unit_list(ctx, conn, unit, [unit], body.month)
    if listing["signed"] is not None:
        raise HTTPException(409, f"the {body.month} list of {unit} is signed already / đã ký")
    waiting = [p["supervisee_id"] for p in listing["people"] if p["classification"] is None]
    if waiting:
        raise HTTPException(409, f"not confirmed yet / chưa xếp loại: {', '.join(waiting)}")
    conn.execute("INSERT INTO assessment_signatures (unit, month, signed_by, signed_at, people) "
                 "VALUES (%s, %s, %s, %s, %s)",
                 (unit, first, caller.username, ctx.now(), len(listing["people"])))
    audit(conn, ctx, caller, "assessment.sign", unit,
          {"month": body.month, "people": len(listing["people"])})
    return unit_list(ctx, conn, unit, [unit], body.month)


_HEADER = ["unit", "month", "supervisee_id", "name", "proposed", "classification",
           "classification_vi", "reason", "confirmed_by", "violation_records",
           "missed_checkins", "unresolved_alerts", "signed_by"]


@router.get("/casework/assessments/export",
            responses={200: {"content": {"text/csv": {}, "text/html": {}}},
                       403: {"description": "unit outside your scope"}})
def export(ctx: Ctx, caller: Caller, conn: Conn,
           month: Annotated[str, Query(pattern=MONTH)],
           unit: Annotated[str | None, Query(max_length=64)] = None,
           format: Literal["csv", "html"] = "csv") -> Any:
    """The unit's list for the province: CSV, or a printable page (bảng xếp loại)."""
    unit, units = scoped_units(conn, caller, unit)
    listing = unit_list(ctx, conn, unit, units, month)
    rows = [[p["unit"], month, p["supervisee_id"], p["name"], p["proposed"],
             p["classification"], LABELS.get(p["classification"] or "", ""), p.get("reason"),
             p.get("confirmed_by"), p["basis"]["violation_records"],
             p["basis"]["missed_checkins"], p["basis"]["unresolved_alerts"],
             p["signed_by"]] for p in listing["people"]]
    audit(conn, ctx, caller, "assessment.export", unit, {"month": month, "format": format})
    if format == "csv":
        return csv_response(_HEADER, rows, f"xep-loai-{unit}-{month}.csv")
    sign_line = "; ".join(
        f"{u['unit']}: " + (f"Trưởng Công an xã đã ký {u['signed']['signed_by']}"
                            if u["signed"] else "CHƯA KÝ (not signed)")
        for u in listing["units"])
    return html_page(f"Bảng đánh giá, xếp loại người chấp hành án tháng {month}",
                     {"Đơn vị": unit, "Tháng": month, "Hạn nộp": listing["due_on"] or "",
                      "Số người": len(rows)},
                     [html_table(_HEADER, rows)], sign_line)
