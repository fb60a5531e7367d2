"""Judgments (bản án, quyết định thi hành án) and the monthly reconciliation (rà soát, đối chiếu)
with the court's and the procuracy's lists.

A supervisee carries the judgment or decision being executed (number, date, court, sentence
type and term, start and end) and its changes: ``end_reduced`` (the supervision ends earlier:
``sentence_end`` moves), ``residence_transferred`` (the case moves to another commune unit:
``unit`` moves) and ``revoked`` (supervision ends on ``effective_on``). A change is applied to
the registry and kept.

The reconciliation of a unit (and those below it) for a month lists who is under supervision
(the sentence overlaps the month), who entered (sentence start or a transfer in, in the month)
and who left (sentence end, a reduction, a revocation or a transfer out, in the month), and,
given the court's or the procuracy's list as CSV (columns ``number`` or ``so_ban_an``, and
``name`` or ``ho_ten`` when given), the differences both ways: ``missing`` (on their list, not
under supervision here: a judgment not yet executed) and ``extra`` (under supervision here, not
on their list).
"""

from __future__ import annotations

import csv
import io
import unicodedata
from datetime import date, timedelta
from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, Body, HTTPException, Query
from psycopg.rows import dict_row
from pydantic import BaseModel, Field, model_validator

from api.casework.common import (
    MONTH,
    Day,
    csv_response,
    html_page,
    html_table,
    month_first,
    next_month,
    scoped_units,
)
from api.deps import Caller, Conn, Ctx, audit
from api.errors import Problem
from api.registry import SuperviseeId, bump_registry, supervisee
from api.wire import to_ms

router = APIRouter(prefix="/api/v1", tags=["casework"])

SentenceType = Literal["an_treo", "cai_tao_khong_giam_giu", "tha_tu_truoc_thoi_han",
                       "hoan_tam_dinh_chi", "quan_che", "cam_cu_tru"]
MAX_CSV = 2_000_000  # characters: a province's list is a few thousand rows


class JudgmentIn(BaseModel):
    number: str = Field(min_length=1, max_length=100)
    issued_on: Day
    court: str = Field(min_length=1, max_length=300)
    sentence_type: SentenceType
    term_months: int | None = Field(None, ge=0, le=1200)
    start_on: Day
    end_on: Day

    @model_validator(mode="after")
    def _order(self) -> JudgmentIn:
        if self.end_on < self.start_on:
            raise ValueError("end_on is before start_on")
        return self


class ChangeIn(BaseModel):
    """``end_reduced`` needs ``new_end_on``; ``residence_transferred`` needs ``to_unit``."""

    kind: Literal["end_reduced", "residence_transferred", "revoked"]
    effective_on: Day
    new_end_on: Day | None = None
    to_unit: str | None = Field(None, max_length=64)
    note: str | None = Field(None, max_length=2000)

    @model_validator(mode="after")
    def _needs(self) -> ChangeIn:
        if self.kind == "end_reduced" and self.new_end_on is None:
            raise ValueError("end_reduced needs new_end_on")
        if self.kind == "residence_transferred" and not self.to_unit:
            raise ValueError("residence_transferred needs to_unit")
        return self


class CourtListIn(BaseModel):
    """The court's or the procuracy's list for the month, as CSV text."""

    source: Literal["court", "procuracy"] = "court"
    csv: str = Field(max_length=MAX_CSV)


def _judgment(conn: psycopg.Connection, sid: str) -> dict | None:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute("SELECT * FROM judgments WHERE supervisee_id = %s", (sid,)).fetchone()
        if row is None:
            return None
        changes = cur.execute("SELECT * FROM judgment_changes WHERE supervisee_id = %s "
                              "ORDER BY effective_on, id", (sid,)).fetchall()
    out = {k: (v.isoformat() if isinstance(v, date) else v) for k, v in row.items()}
    out["updated_at"] = to_ms(row["updated_at"])
    out["changes"] = [{k: (to_ms(v) if k == "recorded_at" else
                           v.isoformat() if isinstance(v, date) else v)
                       for k, v in c.items()} for c in changes]
    return out


@router.get("/supervisees/{sid}/judgment", responses={404: {"description": "none in scope"}})
def get_judgment(sid: SuperviseeId, caller: Caller, conn: Conn) -> dict:
    """The judgment or decision being executed, with its changes."""
    supervisee(conn, caller, sid)
    found = _judgment(conn, sid)
    if found is None:
        raise HTTPException(404, f"no judgment recorded for {sid} / chưa có bản án")
    return found


@router.put("/supervisees/{sid}/judgment", responses={404: {"description": "not in scope"}})
def put_judgment(sid: SuperviseeId, ctx: Ctx, caller: Caller, conn: Conn,
                 body: Annotated[JudgmentIn, Body()]) -> dict:
    """Record (or correct) the judgment being executed."""
    supervisee(conn, caller, sid)
    conn.execute("""
        INSERT INTO judgments (supervisee_id, number, issued_on, court, sentence_type,
                               term_months, start_on, end_on, recorded_by, updated_at)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (supervisee_id) DO UPDATE SET number = EXCLUDED.number,
            issued_on = EXCLUDED.issued_on, court = EXCLUDED.court,
            sentence_type = EXCLUDED.sentence_type, term_months = EXCLUDED.term_months,
            start_on = EXCLUDED.start_on, end_on = EXCLUDED.end_on,
            recorded_by = EXCLUDED.recorded_by, updated_at = EXCLUDED.updated_at
        """, (sid, body.number.strip(), body.issued_on, body.court, body.sentence_type,
              body.term_months, body.start_on, body.end_on, caller.username, ctx.now()))
    audit(conn, ctx, caller, "judgment.update", sid, {"number": body.number})
    return get_judgment(sid, caller, conn)


@router.post("/supervisees/{sid}/judgment/changes", status_code=201,
             responses={404: {"description": "not in scope, or no judgment"}})
def add_change(sid: SuperviseeId, ctx: Ctx, caller: Caller, conn: Conn,
               body: Annotated[ChangeIn, Body()]) -> dict:
    """Record a change of the judgment and apply it to the supervision (end date, unit)."""
    sup = supervisee(conn, caller, sid)
    if _judgment(conn, sid) is None:
        raise HTTPException(404, f"no judgment recorded for {sid} / chưa có bản án")
    new_end = body.new_end_on if body.kind == "end_reduced" else (
        body.effective_on if body.kind == "revoked" else None)
    if new_end is not None and not sup["sentence_start"] <= new_end <= sup["sentence_end"]:
        raise Problem(422, f"the new end {new_end} must lie within the sentence "
                           f"({sup['sentence_start']} to {sup['sentence_end']})")
    to_unit = body.to_unit if body.kind == "residence_transferred" else None
    if to_unit is not None and conn.execute("SELECT 1 FROM units WHERE code = %s",
                                            (to_unit,)).fetchone() is None:
        raise Problem(422, f"no unit {to_unit!r}", path="$.to_unit")
    conn.execute(
        "INSERT INTO judgment_changes (supervisee_id, kind, effective_on, new_end_on, "
        "from_unit, to_unit, note, recorded_by, recorded_at) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (sid, body.kind, body.effective_on, new_end, sup["unit"] if to_unit else None,
         to_unit, body.note, caller.username, ctx.now()))
    if new_end is not None:
        conn.execute("UPDATE supervisees SET sentence_end = %s, updated_at = now() "
                     "WHERE id = %s", (new_end, sid))
    if to_unit is not None:
        conn.execute("UPDATE supervisees SET unit = %s, residence_unit = %s, updated_at = now() "
                     "WHERE id = %s", (to_unit, to_unit, sid))
    bump_registry(conn)
    audit(conn, ctx, caller, "judgment.change", sid, {"kind": body.kind})
    found = _judgment(conn, sid)
    assert found is not None
    return found


# --- reconciliation ----------------------------------------------------------------------

def _norm(text: str | None) -> str:
    """Judgment numbers and names compared without case, accents' forms or extra spaces."""
    return " ".join(unicodedata.normalize("NFC", text or "").casefold().split())


def movements(conn: psycopg.Connection, units: list[str], first: date,
              last: date | None = None) -> dict[str, Any]:
    """Who is under supervision in the period (a month from ``first`` unless ``last`` is
    given), who entered and who left, and why."""
    last = last or next_month(first) - timedelta(days=1)
    p = {"u": units, "first": first, "last": last}
    with conn.cursor(row_factory=dict_row) as cur:
        people = cur.execute("""
            SELECT s.id AS supervisee_id, s.name, s.unit, s.sentence_type, s.sentence_start,
                   s.sentence_end, j.number, j.court, j.issued_on
              FROM supervisees s LEFT JOIN judgments j ON j.supervisee_id = s.id
             WHERE s.unit = ANY(%(u)s) AND s.sentence_start <= %(last)s
               AND s.sentence_end >= %(first)s ORDER BY s.unit, s.id""", p).fetchall()
        moves = cur.execute("""
            SELECT c.supervisee_id, s.name, c.kind, c.effective_on, c.from_unit, c.to_unit
              FROM judgment_changes c JOIN supervisees s ON s.id = c.supervisee_id
             WHERE c.effective_on BETWEEN %(first)s AND %(last)s
               AND (c.from_unit = ANY(%(u)s) OR c.to_unit = ANY(%(u)s) OR s.unit = ANY(%(u)s))
             ORDER BY c.effective_on, c.id""", p).fetchall()
    last_kind = {m["supervisee_id"]: m["kind"] for m in moves if m["kind"] != "residence_transferred"}
    entered = [{"supervisee_id": r["supervisee_id"], "name": r["name"], "unit": r["unit"],
                "on": r["sentence_start"].isoformat(), "reason": "new_judgment"}
               for r in people if first <= r["sentence_start"] <= last]
    left = [{"supervisee_id": r["supervisee_id"], "name": r["name"], "unit": r["unit"],
             "on": r["sentence_end"].isoformat(),
             "reason": last_kind.get(r["supervisee_id"], "completed")}
            for r in people if first <= r["sentence_end"] <= last]
    for m in moves:
        if m["kind"] != "residence_transferred":
            continue
        row = {"supervisee_id": m["supervisee_id"], "name": m["name"],
               "on": m["effective_on"].isoformat(), "reason": "residence_transferred"}
        if m["to_unit"] in units and m["from_unit"] not in units:
            entered.append({**row, "unit": m["to_unit"], "from_unit": m["from_unit"]})
        if m["from_unit"] in units and m["to_unit"] not in units:
            left.append({**row, "unit": m["from_unit"], "to_unit": m["to_unit"]})
    supervised = [{k: (v.isoformat() if isinstance(v, date) else v) for k, v in r.items()}
                  for r in people]
    return {"under_supervision": supervised, "entered": entered, "left": left}


def read_list(text: str) -> list[dict[str, str]]:
    """The rows of a court's or procuracy's CSV: ``number`` and ``name`` (422 when the
    columns are not there)."""
    try:
        rows = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))
    except csv.Error as exc:
        raise Problem(422, f"the list is not valid CSV: {exc}") from exc
    if not rows:
        return []
    cols = {_norm(k): k for k in rows[0] if k}
    num = cols.get("number") or cols.get("so_ban_an") or cols.get("số bản án")
    name = cols.get("name") or cols.get("ho_ten") or cols.get("họ tên")
    if num is None:
        raise Problem(422, "the list needs a column 'number' (or 'so_ban_an') / thiếu cột số "
                           "bản án")
    return [{"number": (r.get(num) or "").strip(), "name": (r.get(name) or "").strip()
             if name else "", "court": (r.get(cols.get("court", "")) or "").strip()}
            for r in rows if (r.get(num) or "").strip()]


def differences(ours: list[dict[str, Any]], theirs: list[dict[str, str]]) -> dict[str, list]:
    """``missing``: on their list, not ours; ``extra``: ours, not on their list (pure). A row
    matches on the judgment number and, when their list names people, the name too."""
    with_names = any(t["name"] for t in theirs)

    def key(number: str | None, name: str | None) -> tuple[str, str]:
        return (_norm(number), _norm(name) if with_names else "")

    our_keys = {key(o.get("number"), o.get("name")) for o in ours if o.get("number")}
    their_keys = {key(t["number"], t["name"]) for t in theirs}
    missing = [t for t in theirs if key(t["number"], t["name"]) not in our_keys]
    extra = [{"supervisee_id": o["supervisee_id"], "name": o["name"], "unit": o["unit"],
              "number": o.get("number"),
              "why": "no judgment recorded" if not o.get("number") else "not on their list"}
             for o in ours
             if not o.get("number") or key(o.get("number"), o.get("name")) not in their_keys]
    return {"missing": missing, "extra": extra}


def _export(report: dict[str, Any], format: str) -> Any:
    unit, month = report["unit"], report["month"]
    header = ["section", "supervisee_id", "name", "unit", "number", "on", "reason"]
    rows = [["under_supervision", r["supervisee_id"], r["name"], r["unit"], r["number"],
             r["sentence_end"], r["sentence_type"]] for r in report["under_supervision"]]
    rows += [["entered", r["supervisee_id"], r["name"], r["unit"], "", r["on"], r["reason"]]
             for r in report["entered"]]
    rows += [["left", r["supervisee_id"], r["name"], r["unit"], "", r["on"], r["reason"]]
             for r in report["left"]]
    diff = report.get("differences") or {"missing": [], "extra": []}
    rows += [["missing", "", r["name"], "", r["number"], "", "on their list only"]
             for r in diff["missing"]]
    rows += [["extra", r["supervisee_id"], r["name"], r["unit"], r["number"], "", r["why"]]
             for r in diff["extra"]]
    if format == "csv":
        return csv_response(header, rows, f"doi-chieu-{unit}-{month}.csv")
    return html_page(f"Rà soát, đối chiếu người chấp hành án tháng {month}",
                     {"Đơn vị": unit, "Tháng": month,
                      "Đang quản lý": len(report["under_supervision"]),
                      "Tăng": len(report["entered"]), "Giảm": len(report["left"]),
                      "Nguồn đối chiếu": report.get("source") or "—"},
                     [html_table(header, rows)], "Người lập biểu")


@router.get("/casework/reconciliation",
            responses={200: {"content": {"text/csv": {}, "text/html": {}}},
                       403: {"description": "unit outside your scope"}})
def reconciliation(ctx: Ctx, caller: Caller, conn: Conn,
                   month: Annotated[str, Query(pattern=MONTH)],
                   unit: Annotated[str | None, Query(max_length=64)] = None,
                   format: Literal["json", "csv", "html"] = "json") -> Any:
    """The month's reconciliation export: under supervision, entered, left (and why)."""
    unit, units = scoped_units(conn, caller, unit)
    report = {"unit": unit, "month": month, **movements(conn, units, month_first(month))}
    audit(conn, ctx, caller, "reconciliation.read", unit, {"month": month, "format": format})
    return report if format == "json" else _export(report, format)


@router.post("/casework/reconciliation",
             responses={200: {"content": {"text/csv": {}, "text/html": {}}},
                        403: {"description": "unit outside your scope"}})
def reconcile(ctx: Ctx, caller: Caller, conn: Conn, body: Annotated[CourtListIn, Body()],
              month: Annotated[str, Query(pattern=MONTH)],
              unit: Annotated[str | None, Query(max_length=64)] = None,
              format: Literal["json", "csv", "html"] = "json") -> Any:
    """The reconciliation against the court's or the procuracy's list (CSV): the month's
    movements and the differences both ways."""
    unit, units = scoped_units(conn, caller, unit)
    report: dict[str, Any] = {"unit": unit, "month": month, "source": body.source,
                              **movements(conn, units, month_first(month))}
    report["differences"] = differences(report["under_supervision"], read_list(body.csv))
    audit(conn, ctx, caller, "reconciliation.compare", unit,
          {"month": month, "source": body.source, "missing": len(report["differences"]["missing"]),
           "extra": len(report["differences"]["extra"])})
    return report if format == "json" else _export(report, format)
