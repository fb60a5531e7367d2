"""``giamsat officer``: manage officer accounts from the machine the service runs on.

The way back when nobody can sign in as an admin any more (a forgotten password, an account
disabled): whoever can run ``giamsat`` with the service's settings reaches the database
directly. Each change is written to the audit log (actor ``giamsat-cli:<system user>``).
"""

from __future__ import annotations

import argparse
import getpass
import secrets
import sys
from typing import TYPE_CHECKING

from psycopg.types.json import Jsonb

from api.officers import OfficerError, get_officer, update_officer

if TYPE_CHECKING:
    import psycopg

    from config import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``giamsat officer reset-password|enable|disable|list``."""
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = sub.add_parser("reset-password", help="set a new password (signs the officer out "
                                               "everywhere); prints a random one unless "
                                               "--password-stdin")
    p.add_argument("username")
    p.add_argument("--password-stdin", action="store_true",
                   help="read the new password from standard input (first line)")
    p = sub.add_parser("enable", help="let a disabled officer sign in again")
    p.add_argument("username")
    p = sub.add_parser("disable", help="stop an officer from signing in (not the last admin)")
    p.add_argument("username")
    sub.add_parser("list", help="every officer: username, role, unit, active")


def _actor() -> str:
    try:
        return f"giamsat-cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "giamsat-cli"


def _audit(conn: psycopg.Connection, action: str, username: str, params: dict) -> None:
    conn.execute("INSERT INTO audit_log (at, actor, action, subject, params) "
                 "VALUES (now(), %s, %s, %s, %s)", (_actor(), action, username, Jsonb(params)))


def _new_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return secrets.token_urlsafe(12)


def change(conn: psycopg.Connection, args: argparse.Namespace) -> str:
    """Apply one action in a transaction; the line to print. Raise OfficerError or LookupError."""
    if args.action == "list":
        rows = conn.execute("SELECT username, role, coalesce(unit, '-'), active "
                            "FROM officers ORDER BY username").fetchall()
        return "\n".join(f"{u:<24} {r:<9} {n:<12} {'active' if a else 'disabled'}"
                         for u, r, n, a in rows)
    if get_officer(conn, args.username) is None:
        raise LookupError(f"no officer {args.username!r}")
    with conn.transaction():
        if args.action == "reset-password":
            password = _new_password(args)
            update_officer(conn, args.username, password=password)
            _audit(conn, "officer.reset_password", args.username, {})
            shown = "" if args.password_stdin else f": {password}"
            return f"new password for {args.username}{shown} (signed out everywhere)"
        active = args.action == "enable"
        update_officer(conn, args.username, active=active)
        _audit(conn, f"officer.{args.action}", args.username, {"active": active})
    return f"{args.username} {'enabled' if active else 'disabled'}"


def run(args: argparse.Namespace, settings: Settings) -> int:
    """``giamsat officer ...``: 0 on success, 1 with a message otherwise."""
    from giamsat.app import open_database

    with open_database(settings) as conn:
        try:
            print(change(conn, args))
        except LookupError as exc:
            print(f"giamsat officer: {exc.args[0]}", file=sys.stderr)
            return 1
        except OfficerError as exc:
            print(f"giamsat officer: {exc.field}: {exc.message}", file=sys.stderr)
            return 1
    return 0
