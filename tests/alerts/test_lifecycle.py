"""Lifecycle: acknowledge, resolve with outcomes, violation counts, errors, history."""

from __future__ import annotations

import psycopg
import pytest

from alerts import (
    AlertNotFound,
    InvalidOutcome,
    InvalidTransition,
    Occurrence,
    acknowledge,
    add_note,
    apply,
    resolve,
    violation_summary,
)
from tests.alerts.helpers import history, seed_registry

pytestmark = pytest.mark.services


def _open(db, clock, type_="zone_exit", sid="SV1", zone="home"):
    occ = Occurrence(type_, sid, True, clock.now, zone_id=zone if type_ == "zone_exit" else None,
                     edge=True)
    with db.transaction():
        [c] = apply(db, occ, clock.now)
    return c.alert_id


def test_acknowledge_then_resolve(db, registry, clock):
    aid = _open(db, clock)
    with db.transaction():
        ack = acknowledge(db, aid, "officer1", "on my way", clock.advance(60))
    assert ack.payload["status"] == "acknowledged" and ack.payload["acknowledged_by"] == "officer1"
    assert ack.payload["acknowledged_at"] == clock.now
    with db.transaction():
        res = resolve(db, aid, "officer1", "false_alarm", "was at the market stall", clock.advance(60))
    p = res.change.payload
    assert (p["status"], p["outcome"], p["resolved_by"]) == ("resolved", "false_alarm", "officer1")
    assert res.violation_count is None
    assert history(db, aid) == [("system", "opened"), ("officer1", "acknowledged"),
                                ("officer1", "resolved")]
    notes = [r[0] for r in db.execute("SELECT note FROM alert_history WHERE alert_id = %s "
                                      "ORDER BY id", (aid,))]
    assert notes == [None, "on my way", "was at the market stall"]


def test_invalid_transitions_raise_clear_errors(db, registry, clock):
    aid = _open(db, clock)
    with db.transaction():
        acknowledge(db, aid, "officer1", None, clock.now)
    with pytest.raises(InvalidTransition) as e, db.transaction():
        acknowledge(db, aid, "officer1", None, clock.now)
    assert e.value.http_status == 409 and "acknowledged" in str(e.value)
    with db.transaction():
        resolve(db, aid, "officer1", "justified", "hospital visit", clock.now)
    with pytest.raises(InvalidTransition, match="cannot resolve"), db.transaction():
        resolve(db, aid, "officer1", "justified", None, clock.now)
    with pytest.raises(InvalidTransition), db.transaction():
        acknowledge(db, aid, "officer2", None, clock.now)
    with pytest.raises(AlertNotFound) as nf, db.transaction():
        acknowledge(db, 999_999, "officer1", None, clock.now)
    assert nf.value.http_status == 404
    aid2 = _open(db, clock, "strap_tamper")
    with pytest.raises(InvalidOutcome) as bad, db.transaction():
        resolve(db, aid2, "officer1", "guilty", None, clock.now)
    assert bad.value.http_status == 422
    assert history(db, aid)[-1] == ("officer1", "resolved")  # failed calls wrote nothing


def test_resolve_from_open_acknowledges_too(db, registry, clock):
    aid = _open(db, clock)
    with db.transaction():
        res = resolve(db, aid, "officer1", "justified", "medical", clock.advance(5))
    assert res.change.payload["acknowledged_by"] == "officer1"


def test_violations_counted_with_court_threshold(db, registry, clock):
    first = _open(db, clock)
    with db.transaction():
        r1 = resolve(db, first, "officer1", "violation", "biên bản số 12/BB", clock.advance(10))
    assert (r1.violation_count, r1.court_threshold, r1.court_threshold_reached) == (1, 2, False)
    assert r1.change.payload["violations"]["count"] == 1
    second = _open(db, clock, "strap_tamper")
    with db.transaction():
        r2 = resolve(db, second, "officer1", "violation", "biên bản số 13/BB", clock.advance(10))
    assert (r2.violation_count, r2.court_threshold_reached) == (2, True)
    assert r2.change.payload["violations"] == {
        "count": 2, "court_threshold": 2, "court_threshold_reached": True}
    rows = db.execute("SELECT alert_id, recorded_by, note FROM violation_records "
                      "ORDER BY id").fetchall()
    assert rows == [(first, "officer1", "biên bản số 12/BB"),
                    (second, "officer1", "biên bản số 13/BB")]
    assert violation_summary(db, "SV1", clock.now)["court_threshold_reached"] is True


def test_no_court_threshold_for_quan_che(db, clock):
    seed_registry(db, sentence_type="quan_che")
    aid = _open(db, clock)
    with db.transaction():
        r = resolve(db, aid, "officer1", "violation", None, clock.now)
    assert (r.violation_count, r.court_threshold, r.court_threshold_reached) == (1, None, False)


def test_history_is_append_only(db, registry, clock):
    aid = _open(db, clock)
    with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
        db.execute("UPDATE alert_history SET note = 'rewritten' WHERE alert_id = %s", (aid,))
    db.rollback()
    with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
        db.execute("DELETE FROM alert_history WHERE alert_id = %s", (aid,))
    db.rollback()
    assert history(db, aid) == [("system", "opened")]


def test_note_is_kept_and_published(db, registry, clock):
    aid = _open(db, clock)
    with db.transaction():
        c = add_note(db, aid, "officer2", "called the family", clock.advance(30))
    assert c.action == "note" and c.payload["updated_at"] == clock.now
    assert history(db, aid)[-1] == ("officer2", "note")


def test_every_change_goes_to_the_outbox(db, registry, clock):
    db.execute("INSERT INTO unit_webhooks (unit, url, secret) VALUES "
               "('CAX-BN-001', 'http://127.0.0.1:9/x', 's')")
    aid = _open(db, clock)
    with db.transaction():
        acknowledge(db, aid, "officer1", None, clock.now)
    rows = db.execute("SELECT h.action, d.channel FROM deliveries d JOIN alert_history h "
                      "ON h.id = d.history_id WHERE d.alert_id = %s ORDER BY d.id",
                      (aid,)).fetchall()
    assert rows == [("opened", "mqtt"), ("opened", "webhook"),
                    ("acknowledged", "mqtt"), ("acknowledged", "webhook")]
