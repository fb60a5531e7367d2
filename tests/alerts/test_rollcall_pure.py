"""The pure parts of the roll-call (alerts.rollcall): monthly windows cut to the sentence, the
station zone, which windows a check-in answers."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from alerts.rollcall import Window, at_station, missed, monthly_windows, parse_station
from geofence.policy import PolicyTable
from geofence.zones import ZoneError

TZ = "Asia/Ho_Chi_Minh"
POLICIES = PolicyTable.default()


def test_monthly_window_is_the_first_five_local_days_from_the_decree_on() -> None:
    months = [date(2026, 6, 1), date(2026, 7, 1), date(2026, 8, 1)]
    [july, aug] = monthly_windows(POLICIES, "an_treo", date(2025, 1, 1), date(2027, 1, 1),
                                  months, TZ, "S1")
    assert (july.first_day, july.last_day) == (date(2026, 7, 1), date(2026, 7, 5))
    assert july.opens == datetime(2026, 6, 30, 17, tzinfo=UTC)  # 00:00 in Hà Nội
    assert july.closes == datetime(2026, 7, 5, 17, tzinfo=UTC)
    assert aug.first_day == date(2026, 8, 1)


def test_windows_are_cut_to_the_sentence() -> None:
    [w] = monthly_windows(POLICIES, "quan_che", date(2026, 8, 3), date(2027, 1, 1),
                          [date(2026, 8, 1)], TZ)
    assert (w.first_day, w.last_day) == (date(2026, 8, 3), date(2026, 8, 5))
    assert monthly_windows(POLICIES, "quan_che", date(2026, 8, 6), date(2027, 1, 1),
                           [date(2026, 8, 1)], TZ) == []


def test_a_checkin_answers_the_window_it_falls_in() -> None:
    w = Window("S1", "monthly", datetime(2026, 7, 1, tzinfo=UTC), datetime(2026, 7, 5, tzinfo=UTC),
               date(2026, 7, 1), date(2026, 7, 5))
    assert missed([w], {"S1": [datetime(2026, 7, 5, tzinfo=UTC)]}) == [w]  # closes: excluded
    assert missed([w], {"S1": [datetime(2026, 7, 4, 23, tzinfo=UTC)]}) == []
    assert missed([w], {"S2": [datetime(2026, 7, 2, tzinfo=UTC)]}) == [w]


def test_station_zone_circle_and_polygon() -> None:
    circle = parse_station({"center": [106.0, 21.0], "radius_m": 100})
    assert at_station(circle, 21.0 + 80 / 111_000, 106.0)
    assert not at_station(circle, 21.0 + 120 / 111_000, 106.0)
    assert not at_station(circle, None, None)
    square = parse_station({"geometry": {"type": "Polygon", "coordinates": [[
        [106.0, 21.0], [106.01, 21.0], [106.01, 21.01], [106.0, 21.01], [106.0, 21.0]]]}})
    assert at_station(square, 21.005, 106.005) and not at_station(square, 21.02, 106.005)
    assert not at_station(None, 21.0, 106.0)


@pytest.mark.parametrize("bad", [[1, 2], {"center": [106, 21]}, {"radius_m": 5},
                                 {"center": [106, 21], "radius_m": 5, "name": "x"}])
def test_a_malformed_station_is_refused_with_its_path(bad) -> None:
    with pytest.raises(ZoneError) as err:
        parse_station(bad)
    assert err.value.path.startswith("$.station")
