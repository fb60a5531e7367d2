"""Sign-in attempts: audited, and throttled per username and per client address.

Every failed sign-in is an ``auth.failed`` row of the audit log (subject: the username as
typed, params: the address and why), every successful one an ``auth.sign_in`` row. The limits
are counted from those rows, so they hold across API processes and restarts:

- a username with ``max_failures`` wrong passwords within ``window_s`` since its last success
  is refused (429 with ``Retry-After``) until the oldest of them leaves the window;
- an address with ``max_per_address`` failures within ``window_s`` is refused likewise.

A refused attempt is audited (``reason: throttled``) but does not count towards the limits,
so a lock ends ``window_s`` after the failures that caused it. The password of a refused
attempt is never checked: a throttled guess learns nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

log = logging.getLogger("giamsat.api")

MAX_TYPED = 64  # a username as typed is kept to this many characters (valid ones are <= 64)


@dataclass(frozen=True)
class Throttle:
    """The sign-in limits (settings ``login_*``); 0 turns a limit off."""

    max_failures: int = 10
    max_per_address: int = 30
    window_s: int = 900


def _wait_s(rows: list[tuple[datetime]], limit: int, window: timedelta, now: datetime) -> int:
    """Seconds until fewer than ``limit`` of the failure times ``rows`` (newest first) lie
    within the window; 0 when that is so already."""
    if limit <= 0 or len(rows) < limit:
        return 0
    edge = rows[limit - 1][0]  # the limit-th newest: the window must pass it
    return max(1, int((edge + window - now).total_seconds()) + 1)


def retry_after(conn: psycopg.Connection, t: Throttle, username: str, address: str,
                now: datetime) -> int:
    """Seconds the attempt must wait (0: it may go on). Serialised per username, so that
    parallel guesses cannot slip past the limit together."""
    username = username[:MAX_TYPED]
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('sign-in:' || %s))", (username,))
    window = timedelta(seconds=t.window_s)
    since = now - window
    by_user = conn.execute(
        "SELECT at FROM audit_log WHERE action = 'auth.failed' AND subject = %s AND at > %s "
        "AND params ->> 'reason' = 'password' AND at > coalesce((SELECT max(at) FROM audit_log "
        "WHERE action = 'auth.sign_in' AND subject = %s), '-infinity') ORDER BY at DESC LIMIT %s",
        (username, since, username, max(t.max_failures, 1))).fetchall()
    by_address = conn.execute(
        "SELECT at FROM audit_log WHERE action = 'auth.failed' AND params ->> 'address' = %s "
        "AND at > %s AND params ->> 'reason' = 'password' ORDER BY at DESC LIMIT %s",
        (address, since, max(t.max_per_address, 1))).fetchall()
    return max(_wait_s(by_user, t.max_failures, window, now),
               _wait_s(by_address, t.max_per_address, window, now))


def record(conn: psycopg.Connection, username: str, address: str, now: datetime,
           reason: str | None) -> None:
    """Audit an attempt: a success (``reason`` None) or a failure (``password``, ``throttled``)."""
    username = username[:MAX_TYPED]
    action = "auth.sign_in" if reason is None else "auth.failed"
    params: dict[str, Any] = {"address": address}
    if reason is not None:
        params["reason"] = reason
        log.warning("sign-in failed user=%r address=%s reason=%s", username, address, reason)
    conn.execute("INSERT INTO audit_log (at, actor, action, subject, params) "
                 "VALUES (%s, %s, %s, %s, %s)",
                 (now, username if reason is None else f"address:{address}", action, username,
                  Jsonb(params)))


def recent_failures(conn: psycopg.Connection, t: Throttle, now: datetime, since: datetime,
                    limit: int) -> dict[str, Any]:
    """Failed sign-ins since ``since`` (newest first), and which usernames and addresses are
    refused right now."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT a.at, a.subject AS username, a.params ->> 'address' AS address, "
            "a.params ->> 'reason' AS reason, o.username IS NOT NULL AS known_username "
            "FROM audit_log a LEFT JOIN officers o ON o.username = a.subject "
            "WHERE a.action = 'auth.failed' AND a.at >= %s ORDER BY a.at DESC, a.id DESC "
            "LIMIT %s", (since, limit)).fetchall()
        window_start = now - timedelta(seconds=t.window_s)
        users = cur.execute(
            "SELECT subject AS k FROM audit_log f WHERE action = 'auth.failed' AND at > %s "
            "AND params ->> 'reason' = 'password' AND at > coalesce((SELECT max(at) FROM "
            "audit_log s WHERE s.action = 'auth.sign_in' AND s.subject = f.subject), "
            "'-infinity') GROUP BY subject HAVING count(*) >= %s ORDER BY 1",
            (window_start, max(t.max_failures, 1))).fetchall() if t.max_failures > 0 else []
        addresses = cur.execute(
            "SELECT params ->> 'address' AS k FROM audit_log WHERE action = 'auth.failed' "
            "AND at > %s AND params ->> 'reason' = 'password' GROUP BY 1 HAVING count(*) >= %s "
            "ORDER BY 1", (window_start, max(t.max_per_address, 1))).fetchall() \
            if t.max_per_address > 0 else []
    return {"failures": rows, "throttled_usernames": [r["k"] for r in users],
            "throttled_addresses": [r["k"] for r in addresses]}
