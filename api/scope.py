"""Which units an officer may see: a commune its own, a province its own and those below it,
an admin every unit. Every query of the API filters by a Scope; a record outside it is 404
(or 403 when the caller named an out-of-scope unit), never data."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from fastapi import HTTPException

from api.officers import Officer

_DESCENDANTS = """
WITH RECURSIVE tree(code) AS (
    SELECT code FROM units WHERE code = %s
    UNION SELECT u.code FROM units u JOIN tree t ON u.parent = t.code
)
SELECT code FROM tree
"""


def descendants(conn: psycopg.Connection, unit: str) -> list[str]:
    """``unit`` and every unit below it (empty when there is no such unit)."""
    return [r[0] for r in conn.execute(_DESCENDANTS, (unit,))]


@dataclass(frozen=True)
class Scope:
    """The signed-in officer and the unit codes they may see (None = all, for admins)."""

    officer: Officer
    units: frozenset[str] | None

    @classmethod
    def of(cls, conn: psycopg.Connection, officer: Officer) -> Scope:
        if officer.role == "admin":
            return cls(officer, None)
        if officer.role == "province":
            return cls(officer, frozenset(descendants(conn, officer.unit or "")))
        return cls(officer, frozenset([officer.unit or ""]))

    @property
    def username(self) -> str:
        return self.officer.username

    @property
    def is_admin(self) -> bool:
        return self.units is None

    def allows(self, unit: str | None) -> bool:
        """True when records of ``unit`` are visible to this officer."""
        return self.units is None or unit in self.units

    def require_admin(self) -> None:
        if not self.is_admin:
            raise HTTPException(403, "admin role required / cần quyền quản trị")

    def unit_filter(self, conn: psycopg.Connection, unit: str | None) -> list[str] | None:
        """Unit codes a list query covers: the scope, narrowed to ``unit`` and the units below
        it when given (403 when ``unit`` is outside the scope). None = no filter (admin, all)."""
        if unit is None:
            return None if self.units is None else sorted(self.units)
        if not self.allows(unit):
            raise HTTPException(403, f"unit {unit!r} is outside your scope / ngoài phạm vi")
        below = descendants(conn, unit)
        if not below:
            raise HTTPException(404, f"no unit {unit!r} / không có đơn vị")
        return sorted(u for u in below if self.allows(u))
