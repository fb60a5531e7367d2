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

from api.officers import OfficerError, admin_action

if TYPE_CHECKING:
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


def _new_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return secrets.token_urlsafe(12)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """``giamsat officer ...``: 0 on success, 1 with a message otherwise."""
    from embedded.database import open_database

    with open_database(settings) as conn:
        try:
            password = _new_password(args) if args.action == "reset-password" else None
            print(admin_action(conn, args.action, getattr(args, "username", None), _actor(),
                               password, show_password=not getattr(args, "password_stdin", False)))
        except LookupError as exc:
            print(f"giamsat officer: {exc.args[0]}", file=sys.stderr)
            return 1
        except OfficerError as exc:
            print(f"giamsat officer: {exc.field}: {exc.message}", file=sys.stderr)
            return 1
    return 0
