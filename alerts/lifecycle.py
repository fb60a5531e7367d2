"""Alert lifecycle (contract §3): ``open`` -> ``acknowledged`` -> ``resolved``, escalation and
severity rise. These are what the API and the scheduled jobs call.

Each function runs in the caller's transaction (commit afterwards), locks the alert row, checks
the transition, updates the alert, appends a history row and writes the outbox rows that
publish the change. Invalid requests raise an ``AlertError`` subclass carrying ``http_status``:

- ``AlertNotFound`` (404): no such alert;
- ``InvalidTransition`` (409): e.g. acknowledging an acknowledged alert, resolving twice;
- ``InvalidOutcome`` (422): an outcome other than violation, justified, false_alarm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from alerts import store
from alerts.model import (
    OUTCOMES,
    SYSTEM,
    AlertNotFound,
    Change,
    InvalidOutcome,
    InvalidTransition,
    max_severity,
    ms_to_dt,
)
from alerts.policy import court_threshold


@dataclass(frozen=True)
class Resolution:
    """What resolving did: the change, and for a violation the supervisee's count of confirmed
    violations, the policy's court threshold (None when the sentence has none) and whether it
    is reached (a proposal to the court is possible; officers decide)."""

    change: Change
    violation_count: int | None = None
    court_threshold: int | None = None
    court_threshold_reached: bool = False


def _locked(conn: psycopg.Connection, alert_id: int) -> dict[str, Any]:
    row = store.fetch(conn, alert_id, lock=True)
    if row is None:
        raise AlertNotFound(f"alert {alert_id} does not exist")
    return row


def acknowledge(conn: psycopg.Connection, alert_id: int, actor: str, note: str | None,
                now_ms: int) -> Change:
    """An officer (``actor``) takes the alert on: ``open`` -> ``acknowledged``. Stops escalation."""
    row = _locked(conn, alert_id)
    if row["status"] != "open":
        raise InvalidTransition(alert_id, row["status"], "acknowledge")
    at = ms_to_dt(now_ms)
    new = store.update(conn, alert_id, {"status": "acknowledged", "acknowledged_at": at,
                                        "acknowledged_by": actor, "updated_at": at})
    return store.record_change(conn, new, "acknowledged", now_ms, actor=actor, note=note)


def resolve(conn: psycopg.Connection, alert_id: int, actor: str, outcome: str,
            note: str | None, now_ms: int, policies: Any = None) -> Resolution:
    """Close the alert with an outcome: ``violation`` (the officer's record, biên bản, counted
    per supervisee), ``justified`` (a reason, e.g. medical) or ``false_alarm``.

    Allowed from ``open`` (the resolution acknowledges it too) and ``acknowledged``. ``policies``
    is the sentence-policy table giving the court threshold (defaults of contract §3 if None).
    """
    if outcome not in OUTCOMES:
        raise InvalidOutcome(f"outcome must be one of {', '.join(OUTCOMES)}, not {outcome!r}")
    row = _locked(conn, alert_id)
    if row["status"] == "resolved":
        raise InvalidTransition(alert_id, row["status"], "resolve")
    at = ms_to_dt(now_ms)
    fields: dict[str, Any] = {"status": "resolved", "resolved_at": at, "resolved_by": actor,
                              "outcome": outcome, "outcome_note": note, "updated_at": at}
    implicit_ack = row["status"] == "open"
    if implicit_ack:
        fields.update(acknowledged_at=at, acknowledged_by=actor)
    new = store.update(conn, alert_id, fields)
    if outcome != "violation":
        change = store.record_change(conn, new, "resolved", now_ms, actor=actor, note=note,
                                     data={"outcome": outcome, "implicit_ack": implicit_ack})
        return Resolution(change)
    count, threshold = _record_violation(conn, new, actor, note, now_ms, policies)
    reached = threshold is not None and count >= threshold
    summary = {"count": count, "court_threshold": threshold, "court_threshold_reached": reached}
    change = store.record_change(
        conn, new, "resolved", now_ms, actor=actor, note=note,
        data={"outcome": outcome, "implicit_ack": implicit_ack, "violations": summary},
        extra={"violations": summary})
    return Resolution(change, count, threshold, reached)


def _record_violation(conn: psycopg.Connection, row: dict[str, Any], actor: str,
                      note: str | None, now_ms: int, policies: Any) -> tuple[int, int | None]:
    """Write the violation record; return (the supervisee's count, the court threshold)."""
    conn.execute(
        "INSERT INTO violation_records (supervisee_id, alert_id, recorded_at, recorded_by, note) "
        "VALUES (%s, %s, %s, %s, %s)",
        (row["supervisee_id"], row["id"], ms_to_dt(now_ms), actor, note))
    count, sentence_type = conn.execute(
        "SELECT (SELECT count(*) FROM violation_records WHERE supervisee_id = s.id), "
        "s.sentence_type FROM supervisees s WHERE s.id = %s", (row["supervisee_id"],)).fetchone()
    return count, court_threshold(sentence_type, ms_to_dt(now_ms).date(), policies)


def violation_summary(conn: psycopg.Connection, supervisee_id: str, now_ms: int,
                      policies: Any = None) -> dict[str, Any]:
    """The supervisee's confirmed-violation count and court-threshold flag (for the API)."""
    row = conn.execute(
        "SELECT (SELECT count(*) FROM violation_records WHERE supervisee_id = s.id), "
        "s.sentence_type FROM supervisees s WHERE s.id = %s", (supervisee_id,)).fetchone()
    if row is None:
        raise LookupError(f"supervisee {supervisee_id} does not exist")
    threshold = court_threshold(row[1], ms_to_dt(now_ms).date(), policies)
    return {"count": row[0], "court_threshold": threshold,
            "court_threshold_reached": threshold is not None and row[0] >= threshold}


def add_note(conn: psycopg.Connection, alert_id: int, actor: str, note: str,
             now_ms: int) -> Change:
    """An officer's note on an alert (any status), kept in its history and published."""
    row = _locked(conn, alert_id)
    new = store.update(conn, row["id"], {"updated_at": ms_to_dt(now_ms)})
    return store.record_change(conn, new, "note", now_ms, actor=actor, note=note)


def escalate(conn: psycopg.Connection, alert_id: int, now_ms: int) -> Change | None:
    """Unacknowledged past the unit's ``ack_within_s``: set ``escalated`` and route the alert to
    the parent unit as well. None when it no longer applies (acknowledged meanwhile)."""
    row = _locked(conn, alert_id)
    if row["status"] != "open" or row["escalated"]:
        return None
    new = store.update(conn, alert_id, {"escalated": True, "updated_at": ms_to_dt(now_ms)})
    waited_s = (now_ms - (row["opened_at"].timestamp() * 1000)) / 1000
    return store.record_change(conn, new, "escalated", now_ms, actor=SYSTEM,
                               note="not acknowledged in time",
                               data={"unacknowledged_s": round(waited_s)})


def raise_severity(conn: psycopg.Connection, alert_id: int, severity: str, now_ms: int,
                   reason: str) -> Change | None:
    """Raise an alert's severity (never lowers it). None when it is already as severe."""
    row = _locked(conn, alert_id)
    new_severity = max_severity(row["severity"], severity)
    if new_severity == row["severity"]:
        return None
    new = store.update(conn, alert_id, {"severity": new_severity, "updated_at": ms_to_dt(now_ms)})
    return store.record_change(conn, new, "severity", now_ms, actor=SYSTEM, note=reason,
                               data={"from": row["severity"], "to": new_severity})
