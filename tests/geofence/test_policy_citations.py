"""Every rule of the sentence policies cites its law (issue 13), and the version in force from
2026-07-01 carries the roll-call and casework rules, flagged unverified."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from geofence.policy import (
    SENTENCE_TYPES,
    Permit,
    PermitRefused,
    PolicyTable,
    Supervisee,
    check_permit,
)

POLICIES = PolicyTable.default()
RULES = ("zones", "escalate_after_s", "max_trip_days", "total_trips_fraction", "visit_permit",
         "court_proposal_threshold", "permit_granted_by")


@pytest.mark.parametrize("on", [date(2020, 1, 1), date(2026, 7, 1)])
@pytest.mark.parametrize("stype", SENTENCE_TYPES)
def test_every_rule_names_its_source(stype: str, on: date) -> None:
    policy = POLICIES.for_sentence(stype, on)
    for rule in RULES:
        cite = policy.citation(rule)
        assert cite is not None, (stype, rule)
        assert cite.law and cite.article.startswith(("Điều", "(")) and cite.clause
        assert cite.effective_from <= on


def test_the_2026_decree_adds_a_monthly_roll_call_unverified() -> None:
    before = POLICIES.for_sentence("an_treo", date(2026, 6, 30))
    after = POLICIES.for_sentence("an_treo", date(2026, 7, 1))
    assert before.roll_call is None and before.citation("roll_call") is None
    assert after.roll_call is not None
    assert (after.roll_call.every, after.roll_call.first_days) == ("month", 5)
    cite = after.citation("roll_call")
    assert cite is not None and cite.verified is False
    assert cite.effective_from == date(2026, 7, 1)
    rules = POLICIES.casework_on(date(2026, 7, 1))
    assert POLICIES.casework_on(date(2026, 6, 30)) is None
    assert rules is not None and rules.assessment_due_day == 5
    assert rules.deadlines_working_days == {"officer_assigned": 3, "plan_issued": 5,
                                            "review_meeting": 5}
    assert all(not c.verified for c in rules.citations.values())


def test_a_refused_permit_carries_the_citation_of_its_rule() -> None:
    who = Supervisee("S1", "an_treo", date(2025, 1, 1), date(2027, 12, 31))
    permit = Permit("S1", datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 4, 15, tzinfo=UTC),
                    "work", "work")
    with pytest.raises(PermitRefused) as err:
        check_permit(permit, who, [], [], POLICIES)
    assert err.value.rule == "max_trip_days"
    assert err.value.citation is not None and err.value.citation.article == "Điều 92"
    bad = Permit("S1", datetime(2026, 2, 2, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC), "x")
    with pytest.raises(PermitRefused) as err2:
        check_permit(bad, who, [], [], POLICIES)
    assert err2.value.citation is None  # a malformed permit breaks no rule of law


def test_an_unsupported_roll_call_schedule_is_refused() -> None:
    doc = {"versions": [{"effective_from": "2026-07-01", "sentences": {"an_treo": {
        "gloss": "x", "zone_kinds": ["inclusion"], "zone_purpose": "residence",
        "escalate_after_s": 1, "permit_granted_by": "x",
        "roll_call": {"every": "week", "first_days": 2}}}}]}
    with pytest.raises(ValueError, match="roll-call"):
        PolicyTable.from_json(doc)
