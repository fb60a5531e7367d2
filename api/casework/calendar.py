"""Working days (ngày làm việc) for casework deadlines: Monday to Friday, less Vietnam's public
holidays, which are data (``holidays_vn.json``, to maintain each year).

Deadlines in the decree count working days *after* the day something happened: a file received
on a Friday with 3 working days to assign an officer is due on the next Wednesday, one day
later for each holiday on the way.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

HOLIDAYS_FILE = Path(__file__).with_name("holidays_vn.json")


@dataclass(frozen=True)
class Calendar:
    """Holidays and the weekend (ISO weekdays); ``years`` the years the data covers."""

    holidays: frozenset[date]
    weekend: frozenset[int]
    years: frozenset[int]

    def is_working_day(self, day: date) -> bool:
        return day.isoweekday() not in self.weekend and day not in self.holidays

    def add_working_days(self, start: date, n: int) -> date:
        """The ``n``-th working day after ``start`` (``start`` itself not counted)."""
        day, left = start, n
        while left > 0:
            day += timedelta(days=1)
            if self.is_working_day(day):
                left -= 1
        return day

    def working_days_between(self, start: date, end: date) -> int:
        """Working days in (start, end]; negative when ``end`` is before ``start``."""
        if end < start:
            return -self.working_days_between(end, start)
        return sum(self.is_working_day(start + timedelta(days=k))
                   for k in range(1, (end - start).days + 1))

    def covers(self, day: date) -> bool:
        """Whether the holiday data covers ``day``'s year (else only weekends count)."""
        return day.year in self.years


def from_json(obj: dict) -> Calendar:
    """A calendar from the JSON document form (see holidays_vn.json)."""
    days = {date.fromisoformat(d["date"]) for y in obj["years"].values() for d in y["days"]}
    return Calendar(frozenset(days), frozenset(obj.get("weekend", [6, 7])),
                    frozenset(int(y) for y in obj["years"]))


@functools.cache
def vietnam() -> Calendar:
    """The shipped calendar of Vietnam's public holidays."""
    return from_json(json.loads(HOLIDAYS_FILE.read_text("utf-8")))
