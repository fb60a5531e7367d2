"""What the casework endpoints share: months and periods in local time, the unit a request is
about (scoped), the chief's capability, and the two export forms (CSV, printable HTML)."""

from __future__ import annotations

import csv
import html
import io
import re
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import psycopg
from fastapi import HTTPException
from fastapi.responses import HTMLResponse, Response
from pydantic import Field

from api.routes.reports import month_bounds
from api.scope import Scope

MONTH = r"^\d{4}-(0[1-9]|1[0-2])$"
# Local dates accepted from officers: 1970 to 9998, so that the working-day and month
# arithmetic around them stays within Python's and PostgreSQL's calendars.
Day = Annotated[date, Field(ge=date(1970, 1, 1), le=date(9998, 12, 31))]
PERIOD = r"^\d{4}(-Q[1-4])?$"


def month_first(month: str) -> date:
    """The first day of a ``YYYY-MM`` month (422 when malformed; the monthly report's parser)."""
    return month_bounds(month, "UTC")[2]


def next_month(first: date, k: int = 1) -> date:
    m = first.year * 12 + first.month - 1 + k
    return date(m // 12, m % 12 + 1, 1)


def period_days(period: str) -> tuple[date, date]:
    """First and last local day of ``YYYY`` or ``YYYY-Qn`` (422 when malformed)."""
    m = re.fullmatch(r"(\d{4})(?:-Q([1-4]))?", period)
    if m is None or not 1970 <= int(m.group(1)) <= 9998:
        raise HTTPException(422, f"period must be YYYY or YYYY-Qn, got {period!r}")
    year = int(m.group(1))
    if m.group(2) is None:
        return date(year, 1, 1), date(year, 12, 31)
    first = date(year, 3 * int(m.group(2)) - 2, 1)
    return first, date.fromordinal(next_month(first, 3).toordinal() - 1)


def local_midnight(day: date, tz: str) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(tz))


def today(now: datetime, tz: str) -> date:
    return now.astimezone(ZoneInfo(tz)).date()


def scoped_units(conn: psycopg.Connection, caller: Scope, unit: str | None) -> tuple[str, list[str]]:
    """(unit, the unit and those below it in scope): ``unit`` defaults to the caller's own;
    403 outside the scope, 404 for no such unit."""
    unit = unit or caller.officer.unit
    if unit is None:
        raise HTTPException(422, "name a unit (?unit=CODE) / cần chọn đơn vị")
    units = caller.unit_filter(conn, unit)
    assert units is not None
    return unit, units


def require_chief(caller: Scope, unit: str) -> None:
    """403 unless the caller is the chief of ``unit`` (trưởng công an xã)."""
    if not (caller.officer.chief and caller.officer.unit == unit):
        raise HTTPException(403, f"only the chief of {unit} signs / chỉ trưởng công an xã "
                                 f"{unit} được ký")


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def csv_response(header: Sequence[str], rows: Iterable[Sequence[Any]], name: str) -> Response:
    """A CSV download (UTF-8 with a BOM, so spreadsheet programs read Vietnamese right)."""
    buf = io.StringIO()
    buf.write("\ufeff")
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for r in rows:
        w.writerow(["" if v is None else v for v in r])
    return Response(buf.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{safe_name(name)}"'})


_PAGE = """<!doctype html>
<html lang="vi"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: "Times New Roman", serif; margin: 2cm; color: #000; }}
h1 {{ font-size: 16pt; text-align: center; text-transform: uppercase; }}
table {{ border-collapse: collapse; width: 100%; font-size: 11pt; }}
th, td {{ border: 1px solid #000; padding: 3px 6px; vertical-align: top; }}
dl.meta {{ display: grid; grid-template-columns: max-content auto; gap: 2px 12px; }}
.sign {{ margin-top: 2cm; text-align: right; }}
@media print {{ body {{ margin: 1cm; }} }}
</style></head>
<body>
<h1>{title}</h1>
<dl class="meta">{meta}</dl>
{tables}
<p class="sign">{sign}</p>
</body></html>
"""


def html_table(header: Sequence[str], rows: Iterable[Sequence[Any]], caption: str = "") -> str:
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape('' if v is None else str(v))}</td>"
                                    for v in r) + "</tr>" for r in rows)
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def html_page(title: str, meta: dict[str, Any], tables: Sequence[str], sign: str = "") -> HTMLResponse:
    """A printable page: a title, a list of facts, tables, and a signature line."""
    facts = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>"
                    for k, v in meta.items())
    return HTMLResponse(_PAGE.format(title=html.escape(title), meta=facts,
                                     tables="".join(tables), sign=html.escape(sign)))
