"""The demo's data for ``giamsat up --demo``: what is missing of the demo registry, and an
officer per demo unit (a commune's is its chief, who signs the monthly
assessment).

Every start loads the demo again, and a restart must not change what users did since: only
records that do not exist yet are created. An existing unit, supervisee (with its zones and
permits), device or officer is left as it is, whatever users changed in it (a zone added, a
password set, an account disabled).
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import psycopg

from api.officers import OfficerError, create_officer, password_matches


def _username(unit_code: str) -> str:
    return unit_code.lower()


def _ids(conn: psycopg.Connection, table: str, column: str) -> set[str]:
    return {r[0] for r in conn.execute(f"SELECT {column} FROM {table}")}  # noqa: S608 (names)


def missing_part(conn: psycopg.Connection, doc: dict) -> dict:
    """The records of the demo document ``doc`` that the database does not hold yet: units,
    supervisees (with their zones and permits) and devices, as an import document."""
    units = _ids(conn, "units", "code")
    sups = _ids(conn, "supervisees", "id")
    devices = _ids(conn, "devices", "id")
    new_sups = {s["id"] for s in doc["supervisees"] if s["id"] not in sups}
    return {
        "units": [u for u in doc["units"] if u["code"] not in units],
        "supervisees": [s for s in doc["supervisees"] if s["id"] in new_sups],
        "devices": [d for d in doc["devices"] if d["id"] not in devices],
        "permits": [p for p in doc.get("permits", []) if p["supervisee"] in new_sups],
    }


def create_demo_officers(conn: psycopg.Connection, doc: dict,
                         data_dir: Path) -> list[tuple[str, str, str]]:
    """Create the officer of each demo unit that has none yet; return (username, password
    shown, unit). An existing officer keeps their password: the one shown is the one the demo
    gave, or says that it was changed since (``giamsat officer reset-password`` sets a new
    one)."""
    store = data_dir / "demo-officers.json"
    known: dict[str, str] = json.loads(store.read_text()) if store.exists() else {}
    out = []
    for unit in doc["units"]:
        user = _username(unit["code"])
        role = "commune" if unit.get("parent") else "province"
        password = known.get(user) or secrets.token_urlsafe(9)
        try:
            create_officer(conn, user, password, role, unit["code"],
                           display_name=f"Cán bộ trực {unit['name']}", chief=role == "commune")
        except OfficerError as exc:
            if not exc.conflict:
                raise
            if user not in known or not password_matches(conn, user, known[user]):
                out.append((user, "(changed since)", unit["code"]))
                continue
        known[user] = password
        out.append((user, password, unit["code"]))
    conn.commit()
    store.write_text(json.dumps(known, indent=1))
    store.chmod(0o600)
    return out
