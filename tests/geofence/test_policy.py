"""Sentence policies as versioned data; every permit refusal names its rule."""

from datetime import UTC, date, datetime, timedelta, timezone
from fractions import Fraction

import pytest

from geofence.policy import Permit, PermitRefused, PolicyTable, check_permit

from .helpers import square, supervisee, zone

ICT = timezone(timedelta(hours=7))
DAY = 86_400_000
POLICIES = PolicyTable.default()


def at(d: str) -> int:
    return int(datetime.fromisoformat(d).replace(tzinfo=ICT).timestamp() * 1000)


def permit(
    days: float, category: str = "family", start: str = "2026-03-01", sid: str = "S1", **kw
) -> Permit:
    return Permit(sid, at(start), at(start) + int(days * DAY), "trip", category, **kw)


def refused(p, sentence="an_treo", existing=(), zones=()):
    with pytest.raises(PermitRefused) as exc:
        check_permit(p, supervisee(sentence_type=sentence), list(existing), list(zones), POLICIES)
    return exc.value.rule


def test_table_matches_contract_defaults():
    on = date(2026, 1, 1)
    a = POLICIES.for_sentence("an_treo", on)
    assert (a.escalate_after_s, a.max_trip_days, a.total_trips_fraction, a.court_proposal_threshold) == (
        86_400, 60, Fraction(1, 3), 2)  # fmt: skip
    assert POLICIES.for_sentence("cai_tao_khong_giam_giu", on).max_trip_days == 30
    assert POLICIES.for_sentence("tha_tu_truoc_thoi_han", on).court_proposal_threshold == 2
    assert POLICIES.for_sentence("hoan_tam_dinh_chi", on).max_trip_days is None
    assert POLICIES.for_sentence("quan_che", on).escalate_after_s == 0
    c = POLICIES.for_sentence("cam_cu_tru", on)
    assert (c.zone_kinds, c.escalate_after_s, c.visit_max_days, c.visit_permit_allowed) == (
        ("exclusion",),
        21_600,
        5,
        True,
    )
    assert all(POLICIES.for_sentence(t, on).permit_granted_by for t in ("an_treo", "quan_che"))


def test_versions_are_chosen_by_effective_date():
    doc = {"versions": [
        {"effective_from": "2020-01-01", "sentences": {"quan_che": _policy(10)}},
        {"effective_from": "2027-01-01", "sentences": {"quan_che": _policy(7)}},
    ]}  # fmt: skip
    table = PolicyTable.from_json(doc)
    assert table.for_sentence("quan_che", date(2026, 12, 31)).max_trip_days == 10
    assert table.for_sentence("quan_che", date(2027, 1, 1)).max_trip_days == 7
    with pytest.raises(LookupError):
        table.for_sentence("quan_che", date(2019, 12, 31))


def _policy(days):
    return {"gloss": "", "zone_kinds": ["inclusion"], "zone_purpose": "residence", "escalate_after_s": 0,
            "max_trip_days": days, "total_trips_fraction": None, "permit_granted_by": "x"}  # fmt: skip


def test_trip_at_the_limit_passes_one_ms_more_is_refused():
    check_permit(permit(60), supervisee(), [], [], POLICIES)
    assert (
        refused(Permit("S1", at("2026-03-01"), at("2026-03-01") + 60 * DAY + 1, "trip"))
        == "max_trip_days"
    )
    assert refused(permit(31), "cai_tao_khong_giam_giu") == "max_trip_days"
    assert refused(permit(10.5), "quan_che") == "max_trip_days"


def test_medical_is_exempt_from_the_per_trip_limit():
    check_permit(permit(90, "medical"), supervisee(), [], [], POLICIES)
    check_permit(permit(400, "medical"), supervisee(sentence_type="quan_che"), [], [], POLICIES)


def test_no_limit_for_hoan_tam_dinh_chi():
    check_permit(permit(300), supervisee(sentence_type="hoan_tam_dinh_chi"), [], [], POLICIES)


def test_trips_over_a_third_of_the_term_are_refused():
    # term 2025-01-01 .. 2027-12-31 = 1095 days: a third is 365 days
    t0 = at("2025-01-01")
    earlier = [
        Permit("S1", t0 + i * 70 * DAY, t0 + (i * 70 + 60) * DAY, "w", "work") for i in range(6)
    ]
    check_permit(permit(5), supervisee(), earlier, [], POLICIES)  # 360 + 5 = 365 days
    assert refused(permit(6), existing=earlier) == "total_trips_fraction"
    medical = [Permit("S1", p.from_ms, p.to_ms, "m", "medical") for p in earlier]
    check_permit(permit(60), supervisee(), medical, [], POLICIES)  # medical days are not counted


def test_permit_outside_the_sentence_is_refused():
    assert refused(permit(5, start="2024-12-30")) == "outside_sentence"
    assert refused(permit(5, start="2027-12-30")) == "outside_sentence"


def test_visit_needs_a_sentence_with_a_ban():
    assert refused(permit(2, "visit")) == "visit_not_allowed"


def test_visit_to_a_banned_locality_for_cam_cu_tru():
    ban = zone(square(106.7, 10.8, 2000), "ban-hcm", kind="exclusion")
    dest = square(106.7, 10.8, 300)
    check_permit(
        permit(5, "visit", destination=dest),
        supervisee(sentence_type="cam_cu_tru"),
        [],
        [ban],
        POLICIES,
    )
    assert (
        refused(permit(5.5, "visit", destination=dest), "cam_cu_tru", zones=[ban])
        == "visit_max_days"
    )
    assert refused(permit(2, "visit"), "cam_cu_tru", zones=[ban]) == "visit_needs_destination"
    elsewhere = square(105.8, 21.0, 300)
    assert (
        refused(permit(2, "visit", destination=elsewhere), "cam_cu_tru", zones=[ban])
        == "visit_destination"
    )


def test_window_and_category_checks():
    assert refused(Permit("S1", at("2026-03-02"), at("2026-03-01"), "x")) == "invalid_window"
    assert refused(permit(1, "holiday")) == "invalid_category"


def test_permit_accepts_aware_datetimes():
    p = Permit("S1", datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC), "x")
    assert p.to_ms - p.from_ms == DAY
    with pytest.raises(ValueError):
        _ = Permit("S1", datetime(2026, 3, 1), datetime(2026, 3, 2), "x").from_ms
