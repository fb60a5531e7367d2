"""Violation rates as the provincial plans count them, and the quarterly report for PC10.

``violation_rate`` = violation records (biên bản: alerts resolved as ``violation``) recorded in
the period / people supervised in the period (a sentence overlapping it, in the unit), against
the plans' target of below 0.5 % a year. Per commune unit and for the whole unit asked for.
People are counted in the unit that supervises them now (a transfer moves their past too).

The quarterly report adds, for PC10, the quarter's movements (people who entered and left
supervision) and the casework deadlines overdue today, per commune.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, Query

from api.casework.common import (
    PERIOD,
    csv_response,
    html_page,
    html_table,
    local_midnight,
    period_days,
    scoped_units,
    today,
)
from api.casework.deadlines import case_items
from api.casework.judgments import movements
from api.deps import Caller, Conn, Ctx, audit

router = APIRouter(prefix="/api/v1", tags=["casework"])

TARGET = 0.005
DEFINITION = ("violation records recorded in the period / people supervised in the period "
              "(sentence overlapping the period); target: below 0.5 % "
              "(tỷ lệ vi phạm pháp luật của người chấp hành án dưới 0,5 %)")


def rates(conn: psycopg.Connection, units: list[str], first: date, last: date,
          tz: str) -> list[dict[str, Any]]:
    """Per unit: people supervised, violation records, rate (0 when nobody is supervised)."""
    p = {"u": units, "first": first, "last": last, "start": local_midnight(first, tz),
         "end": local_midnight(last + timedelta(days=1), tz)}
    rows = conn.execute("""
        SELECT u.code, u.name,
               (SELECT count(*) FROM supervisees s WHERE s.unit = u.code
                   AND s.sentence_start <= %(last)s AND s.sentence_end >= %(first)s),
               (SELECT count(*) FROM violation_records v JOIN supervisees s
                   ON s.id = v.supervisee_id WHERE s.unit = u.code
                   AND v.recorded_at >= %(start)s AND v.recorded_at < %(end)s)
          FROM units u WHERE u.code = ANY(%(u)s) ORDER BY u.code""", p).fetchall()
    return [_rate({"unit": r[0], "name": r[1], "supervised": r[2], "violation_records": r[3]})
            for r in rows]


def _rate(row: dict[str, Any]) -> dict[str, Any]:
    rate = row["violation_records"] / row["supervised"] if row["supervised"] else 0.0
    return {**row, "violation_rate": round(rate, 6), "meets_target": rate < TARGET}


def rate_report(conn: psycopg.Connection, units: list[str], unit: str, period: str,
                tz: str) -> dict[str, Any]:
    first, last = period_days(period)
    per_unit = rates(conn, units, first, last, tz)
    total = _rate({"unit": unit, "name": None,
                   "supervised": sum(r["supervised"] for r in per_unit),
                   "violation_records": sum(r["violation_records"] for r in per_unit)})
    return {"unit": unit, "period": period, "from": first.isoformat(), "to": last.isoformat(),
            "definition": DEFINITION, "target": TARGET, "total": total, "units": per_unit}


_COLS = ["unit", "name", "supervised", "violation_records", "violation_rate", "meets_target"]


def _rows(report: dict[str, Any]) -> list[list[Any]]:
    return [[r[c] for c in _COLS] for r in (*report["units"], report["total"])]


@router.get("/casework/reports/violation-rate",
            responses={200: {"content": {"text/csv": {}, "text/html": {}}},
                       403: {"description": "unit outside your scope"}})
def violation_rate(ctx: Ctx, caller: Caller, conn: Conn,
                   period: Annotated[str, Query(pattern=PERIOD,
                                                description="YYYY or YYYY-Qn (local)")],
                   unit: Annotated[str | None, Query(max_length=64)] = None,
                   format: Literal["json", "csv", "html"] = "json") -> Any:
    """Yearly or quarterly violation rate per commune and in total, against the 0.5 % target
    (the definition is in the answer)."""
    unit, units = scoped_units(conn, caller, unit)
    report = rate_report(conn, units, unit, period, ctx.settings.timezone)
    audit(conn, ctx, caller, "report.violation_rate", unit, {"period": period})
    if format == "csv":
        return csv_response(_COLS, _rows(report), f"ty-le-vi-pham-{unit}-{period}.csv")
    if format == "html":
        return html_page(f"Tỷ lệ vi phạm pháp luật của người chấp hành án {period}",
                         {"Đơn vị": unit, "Từ": report["from"], "Đến": report["to"],
                          "Cách tính": DEFINITION, "Chỉ tiêu": "< 0,5 %"},
                         [html_table(_COLS, _rows(report))])
    return report


@router.get("/casework/reports/quarterly",
            responses={200: {"content": {"text/csv": {}, "text/html": {}}},
                       403: {"description": "unit outside your scope"}})
def quarterly(ctx: Ctx, caller: Caller, conn: Conn,
              quarter: Annotated[str, Query(pattern=r"^\d{4}-Q[1-4]$")],
              unit: Annotated[str | None, Query(max_length=64)] = None,
              format: Literal["json", "csv", "html"] = "json") -> Any:
    """The quarterly report for PC10: violation rates per commune, people supervised, and the
    casework deadlines overdue today per commune."""
    unit, units = scoped_units(conn, caller, unit)
    tz = ctx.settings.timezone
    report = rate_report(conn, units, unit, quarter, tz)
    overdue: dict[str, int] = {}
    for i in case_items(conn, ctx, units, today(ctx.now(), tz)):
        if i["overdue"]:
            overdue[i["unit"]] = overdue.get(i["unit"], 0) + 1
    first, last = period_days(quarter)
    moved = movements(conn, units, first, last)
    for r in report["units"]:
        r["deadlines_overdue"] = overdue.get(r["unit"], 0)
        r["entered"] = sum(m["unit"] == r["unit"] for m in moved["entered"])
        r["left"] = sum(m["unit"] == r["unit"] for m in moved["left"])
    for key in ("deadlines_overdue", "entered", "left"):
        report["total"][key] = sum(r[key] for r in report["units"])
    audit(conn, ctx, caller, "report.quarterly", unit, {"quarter": quarter})
    cols = [*_COLS, "entered", "left", "deadlines_overdue"]
    rows = [[r[c] for c in cols] for r in (*report["units"], report["total"])]
    if format == "csv":
        return csv_response(cols, rows, f"bao-cao-quy-{unit}-{quarter}.csv")
    if format == "html":
        return html_page(f"Báo cáo quý {quarter} về công tác thi hành án hình sự tại cộng đồng",
                         {"Đơn vị": unit, "Cách tính tỷ lệ": DEFINITION},
                         [html_table(cols, rows)], "Thủ trưởng đơn vị")
    return report
