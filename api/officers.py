"""Officers: the people who sign in to the API, their roles and argon2 password hashes.

Roles (issue 5): ``commune`` sees its own unit only; ``province`` sees its unit and the commune
units under it; ``admin`` sees everything and manages units, officers and devices. A commune
officer may be the unit's ``chief`` (trưởng công an xã, issue 13): a capability, not a role,
that signs the monthly assessment; only commune officers can hold it.

The functions that write run in the caller's transaction when one is open (psycopg's
``conn.transaction()`` is a savepoint then) and commit on their own on an idle connection.
"""

from __future__ import annotations

import functools
import json
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

import psycopg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from psycopg.types.json import Jsonb

ROLES = ("commune", "province", "admin")
USERNAME = re.compile(r"^[A-Za-z0-9_.-]{3,64}$")
MIN_PASSWORD = 8

# argon2id with argon2-cffi's RFC 9106 "low memory" profile defaults: ~50 ms per hash.
_HASHER = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the username is unknown, so a miss costs as long as a hit."""
    return _HASHER.hash(secrets.token_urlsafe(16))


class OfficerError(ValueError):
    """An officer record that cannot be written; ``field`` names the bad input."""

    def __init__(self, field: str, message: str, *, conflict: bool = False):
        super().__init__(message)
        self.field = field
        self.message = message
        self.conflict = conflict


@dataclass(frozen=True)
class Officer:
    """A signed-in officer as the API sees them: no password hash."""

    username: str
    role: str
    unit: str | None
    display_name: str | None = None
    active: bool = True
    password_version: int = 1  # how many times the password was set; tokens carry it
    chief: bool = False  # the commune unit's chief: signs the monthly assessment

    def as_json(self) -> dict:
        return {"username": self.username, "role": self.role, "unit": self.unit,
                "display_name": self.display_name, "active": self.active, "chief": self.chief}


_COLUMNS = "username, role, unit, display_name, active, password_version, chief"


def hash_password(password: str) -> str:
    """An argon2id hash of ``password``."""
    return _HASHER.hash(password)


def check_fields(username: str, password: str | None, role: str, unit: str | None,
                 chief: bool = False) -> None:
    """Raise OfficerError for a malformed username, short password, role/unit mismatch or a
    chief who is not a commune officer."""
    if not USERNAME.match(username):
        raise OfficerError("username", "must be 3-64 letters, digits, '_', '.' or '-'")
    if password is not None and len(password) < MIN_PASSWORD:
        raise OfficerError("password", f"must be at least {MIN_PASSWORD} characters")
    if role not in ROLES:
        raise OfficerError("role", f"must be one of {', '.join(ROLES)}")
    if role != "admin" and not unit:
        raise OfficerError("unit", f"a {role} officer needs a unit")
    if role == "admin" and unit:
        raise OfficerError("unit", "an admin has no unit (admins see every unit)")
    if chief and role != "commune":
        raise OfficerError("chief", "only a commune officer can be the unit's chief")


def _check_unit(conn: psycopg.Connection, role: str, unit: str | None) -> None:
    """The unit exists and is of the role's level: a province officer belongs to a province
    unit (no parent, e.g. a PC10), a commune officer to a commune unit (one with a parent)."""
    if unit is None:
        return
    row = conn.execute("SELECT parent FROM units WHERE code = %s", (unit,)).fetchone()
    if row is None:
        raise OfficerError("unit", f"no unit with code {unit!r}")
    if role == "province" and row[0] is not None:
        raise OfficerError("unit", f"{unit!r} is a commune unit (its parent is {row[0]!r}): a "
                                   "province officer needs a province unit (one with no parent)")
    if role == "commune" and row[0] is None:
        raise OfficerError("unit", f"{unit!r} is a province unit (it has no parent): a commune "
                                   "officer needs a commune unit")


def _keep_an_admin(conn: psycopg.Connection, current: Officer, role: str,
                   active: bool | None) -> None:
    """Refuse to disable or demote the last active admin: nobody could administer the service
    any more (``giamsat officer enable`` on the machine is the way back)."""
    if current.role != "admin" or not current.active:
        return
    if role == "admin" and active is not False:
        return
    # every active admin's row, locked in one order: two admins disabling each other at once
    # are serialised, and the second sees the first's change
    admins = [r[0] for r in conn.execute(
        "SELECT username FROM officers WHERE role = 'admin' AND active "
        "ORDER BY username FOR UPDATE")]
    if not [a for a in admins if a != current.username]:
        field = "active" if active is False else "role"
        raise OfficerError(field, f"{current.username!r} is the last active admin: make another "
                                  "officer admin first / không thể khóa quản trị viên cuối cùng",
                           conflict=True)


def get_officer(conn: psycopg.Connection, username: str) -> Officer | None:
    """The officer named ``username``, active or not, or None."""
    row = conn.execute(f"SELECT {_COLUMNS} FROM officers WHERE username = %s",
                       (username,)).fetchone()
    return Officer(*row) if row else None


def list_officers(conn: psycopg.Connection) -> list[Officer]:
    """Every officer, by username."""
    return [Officer(*r) for r in conn.execute(f"SELECT {_COLUMNS} FROM officers ORDER BY 1")]


def create_officer(conn: psycopg.Connection, username: str, password: str, role: str,
                   unit: str | None, *, display_name: str | None = None,
                   chief: bool = False) -> Officer:
    """Create an officer (argon2-hashed password); raise OfficerError for bad fields or, with
    ``conflict`` set, when the username is taken (an existing officer is never reset here)."""
    check_fields(username, password, role, unit, chief)
    with conn.transaction():
        _check_unit(conn, role, unit)
        row = conn.execute(
            "INSERT INTO officers (username, password_hash, role, unit, display_name, chief) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (username) DO NOTHING "
            f"RETURNING {_COLUMNS}",
            (username, hash_password(password), role, unit, display_name, chief)).fetchone()
    if row is None:
        raise OfficerError("username", f"officer {username!r} exists already", conflict=True)
    return Officer(*row)


def update_officer(conn: psycopg.Connection, username: str, *, role: str | None = None,
                   unit: str | None = None, password: str | None = None,
                   display_name: str | None = None, active: bool | None = None,
                   chief: bool | None = None) -> Officer | None:
    """Change the given fields of an officer; None when there is no such officer. A chief
    moved to another role or unit stops being chief unless ``chief`` says otherwise."""
    with conn.transaction():
        current = get_officer(conn, username)
        if current is None:
            return None
        role = role or current.role
        if unit is None:  # kept, except by an officer who becomes admin (admins have none)
            unit = None if role == "admin" else current.unit
        if chief is None:
            chief = current.chief and (role, unit) == (current.role, current.unit)
        check_fields(username, password, role, unit, chief)
        _check_unit(conn, role, unit)
        _keep_an_admin(conn, current, role, active)
        row = conn.execute(
            "UPDATE officers SET role = %s, unit = %s, chief = %s, "
            "password_hash = coalesce(%s, password_hash), "
            "password_version = password_version + %s, "
            "display_name = coalesce(%s, display_name), active = coalesce(%s, active), "
            f"updated_at = now() WHERE username = %s RETURNING {_COLUMNS}",
            (role, unit, chief, hash_password(password) if password else None,
             int(bool(password)),
             display_name, active, username)).fetchone()
    return Officer(*row)


def authenticate(conn: psycopg.Connection, username: str, password: str) -> Officer | None:
    """The active officer whose password this is, or None (same cost for unknown names)."""
    row = conn.execute(f"SELECT password_hash, {_COLUMNS} FROM officers WHERE username = %s",
                       (username,)).fetchone()
    try:
        _HASHER.verify(row[0] if row else _dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        return None
    if row is None or not row[5]:
        return None
    if _HASHER.check_needs_rehash(row[0]):
        conn.execute("UPDATE officers SET password_hash = %s WHERE username = %s",
                     (hash_password(password), username))
    return Officer(*row[1:])


def password_matches(conn: psycopg.Connection, username: str, password: str) -> bool:
    """Whether ``password`` is the officer's password (active or not)."""
    row = conn.execute("SELECT password_hash FROM officers WHERE username = %s",
                       (username,)).fetchone()
    try:
        return row is not None and _HASHER.verify(row[0], password)
    except (VerificationError, InvalidHashError):
        return False


def ensure_admin(conn: psycopg.Connection, password: str | None) -> str | None:
    """Create the user ``admin`` at first start (``GIAMSAT_ADMIN_PASSWORD``).

    Returns the password when the user was created now (a random one when ``password`` is
    None, for the composition root to print once), None when ``admin`` existed already: a
    later change of the setting does not overwrite a password set since.
    """
    password = password or secrets.token_urlsafe(12)
    try:
        create_officer(conn, "admin", password, "admin", None, display_name="Administrator")
    except OfficerError as exc:
        if exc.conflict:  # created at an earlier start (or by another process just now)
            return None
        raise
    return password


def create_demo_officers(conn: psycopg.Connection, doc: dict,
                         data_dir: Path) -> list[tuple[str, str, str]]:
    """Create the officer of each demo unit (``giamsat up --demo``; a commune's is its chief,
    who signs the monthly assessment) that has none yet; return (username, password shown,
    unit). Every start does it again and changes nothing users did since: an existing officer
    keeps their password; the one shown is the one the demo gave, or says that it was changed
    since (``giamsat officer reset-password`` sets a new one)."""
    store = data_dir / "demo-officers.json"
    known: dict[str, str] = json.loads(store.read_text()) if store.exists() else {}
    out = []
    for unit in doc["units"]:
        user = unit["code"].lower()
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


def admin_action(conn: psycopg.Connection, action: str, username: str | None, actor: str,
                 password: str | None = None, *, show_password: bool = True) -> str:
    """``giamsat officer``'s actions from the machine (``list``, ``reset-password``, ``enable``,
    ``disable``), each change audited as ``actor`` in one transaction; the line to print.
    Raise OfficerError or LookupError."""
    if action == "list":
        rows = conn.execute("SELECT username, role, coalesce(unit, '-'), active "
                            "FROM officers ORDER BY username").fetchall()
        return "\n".join(f"{u:<24} {r:<9} {n:<12} {'active' if a else 'disabled'}"
                         for u, r, n, a in rows)
    assert username is not None
    if get_officer(conn, username) is None:
        raise LookupError(f"no officer {username!r}")
    with conn.transaction():
        if action == "reset-password":
            assert password is not None
            update_officer(conn, username, password=password)
            _audit(conn, actor, "officer.reset_password", username, {})
            shown = f": {password}" if show_password else ""
            return f"new password for {username}{shown} (signed out everywhere)"
        active = action == "enable"
        update_officer(conn, username, active=active)
        _audit(conn, actor, f"officer.{action}", username, {"active": active})
    return f"{username} {'enabled' if active else 'disabled'}"


def _audit(conn: psycopg.Connection, actor: str, action: str, username: str,
           params: dict) -> None:
    conn.execute("INSERT INTO audit_log (at, actor, action, subject, params) "
                 "VALUES (now(), %s, %s, %s, %s)", (actor, action, username, Jsonb(params)))
