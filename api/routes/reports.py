"""The monthly report of a unit (báo cáo tháng), as JSON or CSV.

For a unit (with the units below it) and a calendar month in local time (settings.timezone):

- ``supervisees_monitored``: supervisees of those units whose sentence overlaps the month and
  who wore a device at some time in it (assignment history; a device naming them with no
  assignment row counts as worn throughout);
- ``alerts_by_type``: alerts opened in the month, per type (every type listed, zeros included),
  also per severity and per resolution outcome;
- ``confirmed_violations``: violation records (biên bản: alerts resolved with outcome
  ``violation``) recorded in the month for alerts of those units;
- ``violation_rate``: the share of the supervisees monitored who have at least one confirmed
  violation recorded in the month, i.e. supervisees violating / supervisees monitored (0 when
  none is monitored), against the target of 0.5 % (``violation_rate_target`` = 0.005;
  ``meets_target`` when the rate is at or below it);
- ``ack_time_s``: p50 and p90 of the time from opening to acknowledgement, seconds, over the
  alerts opened in the month and acknowledged (by an officer, or implicitly by resolving).
"""

from __future__ import annotations

import csv
import io
import re
from datetime import date, datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

import psycopg
from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response

from alerts.model import ALERT_TYPES, OUTCOMES, SEVERITIES
from api.deps import Caller, Conn, Ctx

router = APIRouter(prefix="/api/v1", tags=["reports"])

VIOLATION_RATE_TARGET = 0.005
RATE_DEFINITION = ("supervisees with at least one confirmed violation recorded in the month / "
                   "supervisees monitored in the month")


def month_bounds(month: str, tz: str) -> tuple[datetime, datetime, date, date]:
    """(start, end) instants and (first, last) local dates of a ``YYYY-MM`` month."""
    m = re.fullmatch(r"(\d{4})-(0[1-9]|1[0-2])", month)
    if m is None or not 1970 <= int(m.group(1)) <= 9998:
        raise HTTPException(422, f"month must be YYYY-MM (1970-9998), got {month!r}")
    y, mo = int(m.group(1)), int(m.group(2))
    first = date(y, mo, 1)
    nxt = date(y + (mo == 12), mo % 12 + 1, 1)
    zone = ZoneInfo(tz)
    start = datetime(first.year, first.month, 1, tzinfo=zone)
    end = datetime(nxt.year, nxt.month, 1, tzinfo=zone)
    return start, end, first, date.fromordinal(nxt.toordinal() - 1)


_MONITORED = """
SELECT s.id FROM supervisees s
 WHERE s.unit = ANY(%(u)s) AND s.sentence_start <= %(last)s AND s.sentence_end >= %(first)s
   AND (EXISTS (SELECT 1 FROM device_assignments a WHERE a.supervisee_id = s.id
                  AND a.assigned_at < %(end)s
                  AND (a.unassigned_at IS NULL OR a.unassigned_at >= %(start)s))
        OR EXISTS (SELECT 1 FROM devices d WHERE d.supervisee_id = s.id AND NOT EXISTS (
                     SELECT 1 FROM device_assignments a2 WHERE a2.device_id = d.id
                        AND a2.unassigned_at IS NULL)))
"""


def _counts(conn: psycopg.Connection, column: str, p: dict, keys: tuple[str, ...]) -> dict:
    out = dict.fromkeys(keys, 0)
    for key, n in conn.execute(
            f"SELECT {column}, count(*) FROM alerts WHERE unit = ANY(%(u)s) "
            f"AND opened_at >= %(start)s AND opened_at < %(end)s AND {column} IS NOT NULL "
            f"GROUP BY 1", p):
        out[key] = n
    return out


def monthly(conn: psycopg.Connection, units: list[str], unit: str, month: str,
            tz: str) -> dict[str, Any]:
    """The report's figures (see the module docstring for each definition)."""
    start, end, first, last = month_bounds(month, tz)
    p = {"u": units, "start": start, "end": end, "first": first, "last": last}
    monitored = {r[0] for r in conn.execute(_MONITORED, p)}
    violations = conn.execute(
        "SELECT v.supervisee_id FROM violation_records v JOIN alerts a ON a.id = v.alert_id "
        "WHERE a.unit = ANY(%(u)s) AND v.recorded_at >= %(start)s AND v.recorded_at < %(end)s",
        p).fetchall()
    violating = {r[0] for r in violations} & monitored
    p50, p90, acked = conn.execute(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY s), "
        "percentile_cont(0.9) WITHIN GROUP (ORDER BY s), count(*) FROM ("
        "SELECT extract(epoch FROM acknowledged_at - opened_at) AS s FROM alerts "
        "WHERE unit = ANY(%(u)s) AND opened_at >= %(start)s AND opened_at < %(end)s "
        "AND acknowledged_at IS NOT NULL) t", p).fetchone()
    by_type = _counts(conn, "type", p, ALERT_TYPES)
    rate = len(violating) / len(monitored) if monitored else 0.0
    return {
        "unit": unit, "units": units, "month": month, "timezone": tz,
        "from": int(start.timestamp() * 1000), "to": int(end.timestamp() * 1000),
        "supervisees_monitored": len(monitored),
        "alerts_total": sum(by_type.values()), "alerts_by_type": by_type,
        "alerts_by_severity": _counts(conn, "severity", p, SEVERITIES),
        "alerts_by_outcome": _counts(conn, "outcome", p, OUTCOMES),
        "confirmed_violations": len(violations),
        "supervisees_with_violations": len(violating),
        "violation_rate": round(rate, 6), "violation_rate_target": VIOLATION_RATE_TARGET,
        "violation_rate_definition": RATE_DEFINITION,
        "meets_target": rate <= VIOLATION_RATE_TARGET,
        "ack_time_s": {"p50": None if p50 is None else round(float(p50), 1),
                       "p90": None if p90 is None else round(float(p90), 1),
                       "acknowledged": acked},
    }


def as_csv(report: dict[str, Any]) -> str:
    """One ``metric,key,value`` row per figure, prefixed with unit and month."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["unit", "month", "metric", "key", "value"])
    head = [report["unit"], report["month"]]
    for metric in ("supervisees_monitored", "alerts_total", "confirmed_violations",
                   "supervisees_with_violations", "violation_rate", "violation_rate_target",
                   "meets_target"):
        w.writerow([*head, metric, "", report[metric]])
    for metric in ("alerts_by_type", "alerts_by_severity", "alerts_by_outcome", "ack_time_s"):
        for key, value in report[metric].items():
            w.writerow([*head, metric, key, "" if value is None else value])
    return buf.getvalue()


@router.get("/reports/monthly",
            responses={200: {"content": {"text/csv": {}}},
                       403: {"description": "unit outside your scope"}})
def monthly_report(
    ctx: Ctx, caller: Caller, conn: Conn,
    month: Annotated[str, Query(pattern=r"^\d{4}-\d{2}$", description="YYYY-MM, local time")],
    unit: Annotated[str | None, Query(max_length=64,
                                      description="default: your own unit")] = None,
    format: Literal["json", "csv"] = "json",
) -> Any:
    """Supervisees monitored, alerts by type, confirmed violations, violation rate against the
    0.5 % target, acknowledgement time p50 / p90 (definitions: ``api.routes.reports``)."""
    unit = unit or caller.officer.unit
    if unit is None:
        raise HTTPException(422, "name a unit (?unit=CODE) / cần chọn đơn vị")
    report = monthly(conn, caller.unit_filter(conn, unit), unit, month, ctx.settings.timezone)
    if format == "csv":
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", f"report-{unit}-{month}.csv")
        return Response(as_csv(report), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})
    return report
