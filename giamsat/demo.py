"""Demo officers for ``giamsat up --demo``: one per unit (a commune's is its chief), passwords
kept stable across starts."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import psycopg

from api.officers import create_officer


def _username(unit_code: str) -> str:
    return unit_code.lower()


def create_demo_officers(conn: psycopg.Connection, doc: dict,
                         data_dir: Path) -> list[tuple[str, str, str]]:
    """Create (or reset) an officer per demo unit; return (username, password, unit)."""
    store = data_dir / "demo-officers.json"
    known: dict[str, str] = json.loads(store.read_text()) if store.exists() else {}
    out = []
    for unit in doc["units"]:
        user = _username(unit["code"])
        password = known.get(user) or secrets.token_urlsafe(9)
        role = "commune" if unit.get("parent") else "province"
        # the demo commune officer is also the unit's chief, who signs the monthly assessment
        create_officer(conn, user, password, role, unit["code"],
                       display_name=f"Cán bộ trực {unit['name']}", exist_ok=True,
                       chief=role == "commune")
        known[user] = password
        out.append((user, password, unit["code"]))
    conn.commit()
    store.write_text(json.dumps(known, indent=1))
    store.chmod(0o600)
    return out
