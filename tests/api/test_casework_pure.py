"""The pure parts of the casework: working days over the holiday data, the proposed monthly
classification, reading a court list and its differences both ways."""

from __future__ import annotations

from datetime import date

import pytest
from fastapi import HTTPException

from api.casework.assessments import propose
from api.casework.calendar import vietnam
from api.casework.common import period_days
from api.casework.judgments import differences, read_list
from api.errors import Problem

CAL = vietnam()


def test_holidays_cover_2026_and_2027() -> None:
    assert CAL.covers(date(2026, 9, 2)) and CAL.covers(date(2027, 12, 31))
    assert not CAL.covers(date(2028, 1, 1))
    assert not CAL.is_working_day(date(2026, 9, 2))  # National Day
    assert not CAL.is_working_day(date(2026, 9, 5))  # Saturday
    assert CAL.is_working_day(date(2026, 9, 3))


def test_working_days_skip_weekends_and_holidays() -> None:
    assert CAL.add_working_days(date(2026, 8, 28), 3) == date(2026, 9, 4)  # over 1-2 Sept
    assert CAL.add_working_days(date(2026, 8, 20), 3) == date(2026, 8, 25)  # a weekend only
    assert CAL.add_working_days(date(2026, 2, 13), 1) == date(2026, 2, 23)  # over Tết
    assert CAL.working_days_between(date(2026, 9, 4), date(2026, 9, 7)) == 1
    assert CAL.working_days_between(date(2026, 9, 7), date(2026, 9, 4)) == -1


@pytest.mark.parametrize("basis,expected", [
    ({"violation_records": 1, "missed_checkins": 1, "unresolved_alerts": 3}, "kem"),
    ({"violation_records": 0, "missed_checkins": 1, "unresolved_alerts": 3}, "trung_binh"),
    ({"violation_records": 0, "missed_checkins": 0, "unresolved_alerts": 1}, "kha"),
    ({"violation_records": 0, "missed_checkins": 0, "unresolved_alerts": 0}, "tot"),
])
def test_proposed_classification(basis, expected) -> None:
    assert propose(basis) == expected


def test_periods() -> None:
    assert period_days("2027") == (date(2027, 1, 1), date(2027, 12, 31))
    assert period_days("2027-Q1") == (date(2027, 1, 1), date(2027, 3, 31))
    assert period_days("2026-Q4") == (date(2026, 10, 1), date(2026, 12, 31))
    with pytest.raises(HTTPException):
        period_days("2027-Q5")


OURS = [{"supervisee_id": "S1", "name": "Nguyễn Văn A", "unit": "U", "number": "1/2025/HS-ST"},
        {"supervisee_id": "S2", "name": "Trần Thị B", "unit": "U", "number": "2/2025/HS-ST"},
        {"supervisee_id": "S3", "name": "Lê C", "unit": "U", "number": None}]


def test_differences_both_ways_by_number_and_name() -> None:
    theirs = read_list("\ufeffSo_ban_an,Ho_ten\n1/2025/hs-st , nguyễn văn  a\n"
                       "3/2025/HS-ST,Phạm D\n2/2025/HS-ST,Trần Thị Khác\n")
    diff = differences(OURS, theirs)
    assert sorted(m["number"] for m in diff["missing"]) == ["2/2025/HS-ST", "3/2025/HS-ST"]
    assert [(e["supervisee_id"], e["why"]) for e in diff["extra"]] == [
        ("S2", "not on their list"), ("S3", "no judgment recorded")]


def test_a_list_without_names_matches_on_the_number() -> None:
    diff = differences(OURS, read_list("number\n1/2025/HS-ST\n2/2025/HS-ST\n"))
    assert diff["missing"] == [] and [e["supervisee_id"] for e in diff["extra"]] == ["S3"]


def test_a_list_without_the_number_column_is_refused() -> None:
    with pytest.raises(Problem):
        read_list("ho_ten\nA\n")
