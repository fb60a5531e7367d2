"""Weekly schedules in local time (Asia/Ho_Chi_Minh), windows crossing midnight."""

from datetime import datetime, timedelta, timezone

import numpy as np

from geofence.schedule import in_force, minute_of_week, next_change_ms, parse_schedule, week_mask

ICT = timezone(timedelta(hours=7))  # Vietnam, no DST


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=ICT).timestamp() * 1000)


FRIDAY_NIGHT = week_mask(parse_schedule([{"days": [5], "start": "22:00", "end": "06:00"}], "$"))


def test_minute_of_week_is_local_monday_based():
    # 2026-11-23 is a Monday
    assert minute_of_week(np.array([ms("2026-11-23T00:00:00")]))[0] == 0
    assert minute_of_week(np.array([ms("2026-11-29T23:59:00")]))[0] == 7 * 1440 - 1


def test_window_crossing_midnight_starts_on_its_day_and_ends_next_morning():
    assert not in_force(FRIDAY_NIGHT, ms("2026-11-27T21:59:59.999"))
    assert in_force(FRIDAY_NIGHT, ms("2026-11-27T22:00:00"))
    assert in_force(FRIDAY_NIGHT, ms("2026-11-28T05:59:59.999"))  # Saturday morning
    assert not in_force(FRIDAY_NIGHT, ms("2026-11-28T06:00:00"))
    assert not in_force(FRIDAY_NIGHT, ms("2026-11-28T22:30:00"))  # Saturday night: not listed
    assert not in_force(FRIDAY_NIGHT, ms("2026-11-27T02:00:00"))  # Friday early: Thursday's


def test_sunday_window_wraps_into_monday():
    mask = week_mask(parse_schedule([{"days": [7], "start": "23:00", "end": "01:00"}], "$"))
    assert in_force(mask, ms("2026-11-29T23:30:00"))
    assert in_force(mask, ms("2026-11-30T00:30:00"))  # Monday 00:30
    assert mask.sum() == 120


def test_equal_start_and_end_is_a_full_day():
    mask = week_mask(parse_schedule([{"days": [1], "start": "08:00", "end": "08:00"}], "$"))
    assert mask.sum() == 1440


def test_next_change_finds_both_edges():
    assert next_change_ms(FRIDAY_NIGHT, ms("2026-11-27T12:00:00")) == ms("2026-11-27T22:00:00")
    assert next_change_ms(FRIDAY_NIGHT, ms("2026-11-27T22:00:00")) == ms("2026-11-28T06:00:00")
    assert next_change_ms(FRIDAY_NIGHT, ms("2026-11-28T06:00:00")) == ms("2026-12-04T22:00:00")
    always = week_mask(
        parse_schedule([{"days": [1, 2, 3, 4, 5, 6, 7], "start": "00:00", "end": "00:00"}], "$")
    )
    assert next_change_ms(always, ms("2026-11-27T12:00:00")) is None
