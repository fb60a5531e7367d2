"""Movement primitives: timed legs on a local plane (metres), local time and zone schedules.

Positions are (x, y) metres east/north of a device's home; time is UTC epoch ms. A device's path
is a queue of legs, each a straight line walked at constant speed (a dwell is a leg of length
zero), so its position at any time is exact whatever the step at which it is sampled.
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from shapely.geometry import LineString, Point
from shapely.geometry.base import BaseGeometry
from shapely.ops import nearest_points

LOCAL = timezone(timedelta(hours=7))  # Asia/Ho_Chi_Minh, no DST
MINUTE_MS = 60_000
HOUR_MS = 3_600_000

WALK_MPS = (1.2, 1.6)  # walking speed, m/s
MOTO_MPS = (8.0, 12.0)  # motorbike speed in a commune, m/s (29-43 km/h)


@dataclass(frozen=True)
class Leg:
    """From (x0, y0) at t0 to (x1, y1) at t1 (ms), by `mode`: `dwell`, `walk` or `moto`."""

    t0: int
    t1: int
    x0: float
    y0: float
    x1: float
    y1: float
    mode: str

    def at(self, t: int) -> tuple[float, float]:
        """Position at time t, clamped to the leg's ends."""
        if self.t1 <= self.t0 or t >= self.t1:
            return (self.x1, self.y1)
        f = max(0.0, (t - self.t0) / (self.t1 - self.t0))
        return (self.x0 + f * (self.x1 - self.x0), self.y0 + f * (self.y1 - self.y0))

    @property
    def speed(self) -> float:
        """Ground speed, m/s."""
        d = math.hypot(self.x1 - self.x0, self.y1 - self.y0)
        return d * 1000 / (self.t1 - self.t0) if self.t1 > self.t0 else 0.0

    @property
    def heading(self) -> float:
        """Course over ground, degrees clockwise from north."""
        return math.degrees(math.atan2(self.x1 - self.x0, self.y1 - self.y0)) % 360


def travel(t: int, a: tuple[float, float], b: tuple[float, float], speed: float, mode: str) -> Leg:
    """A leg from a to b starting at t at `speed` m/s."""
    dur = math.hypot(b[0] - a[0], b[1] - a[1]) / speed
    return Leg(t, t + int(dur * 1000), a[0], a[1], b[0], b[1], mode)


def dwell(t: int, p: tuple[float, float], until: int) -> Leg:
    """Staying at p from t to `until` (ms)."""
    return Leg(t, max(until, t + 1000), p[0], p[1], p[0], p[1], "dwell")


class Path:
    """A device's planned legs; `at(t)` for non-decreasing t drops the legs already past."""

    def __init__(self, start: tuple[float, float], t: int) -> None:
        self.legs: deque[Leg] = deque([Leg(t, t, start[0], start[1], start[0], start[1], "dwell")])

    @property
    def end_time(self) -> int:
        """When the last planned leg ends (ms)."""
        return self.legs[-1].t1

    @property
    def end(self) -> tuple[float, float]:
        """Where the last planned leg ends."""
        last = self.legs[-1]
        return (last.x1, last.y1)

    def leg_at(self, t: int) -> Leg:
        """The leg in progress at t (the last one if t is past the plan)."""
        while len(self.legs) > 1 and self.legs[0].t1 <= t:
            self.legs.popleft()
        return self.legs[0]

    def at(self, t: int) -> tuple[float, float]:
        """Position at t."""
        return self.leg_at(t).at(t)

    def extend(self, legs: list[Leg]) -> None:
        """Append legs after the current plan."""
        self.legs.extend(legs)

    def cut(self, t: int) -> None:
        """Drop the plan after t: the device stands where it is at t, ready for new legs."""
        p = self.at(t)
        self.legs = deque([Leg(t, t, p[0], p[1], p[0], p[1], "dwell")])


# --- local time and schedules ---------------------------------------------------------------


def local_dt(t: int) -> datetime:
    """A UTC ms timestamp as local (UTC+7) datetime."""
    return datetime.fromtimestamp(t / 1000, LOCAL)


def local_minute(t: int) -> int:
    """Minutes since local midnight."""
    return (t // MINUTE_MS + 7 * 60) % 1440


def next_local_time(t: int, minute_of_day: int) -> int:
    """The first instant at or after t whose local time is `minute_of_day` (ms)."""
    delta = (minute_of_day - local_minute(t)) % 1440
    return (t // MINUTE_MS + delta) * MINUTE_MS


def _hhmm(s: str) -> int:
    h, m = s.split(":")
    return int(h) * 60 + int(m)


def in_schedule(schedule: list[dict[str, Any]], t: int) -> bool:
    """Whether t falls in one of the weekly local-time windows (contract §2: ISO weekdays on
    which a window starts; an end not after the start crosses midnight)."""
    dt = local_dt(t)
    m, wd = dt.hour * 60 + dt.minute, dt.isoweekday()
    prev = 7 if wd == 1 else wd - 1
    for w in schedule:
        start, end, days = _hhmm(w["start"]), _hhmm(w["end"]), w["days"]
        if end > start and wd in days and start <= m < end:
            return True
        if end <= start and ((wd in days and m >= start) or (prev in days and m < end)):
            return True
    return False


def schedule_end(schedule: list[dict[str, Any]], t: int) -> int:
    """The first minute boundary after t that is outside the schedule (at most a week on)."""
    u = (t // MINUTE_MS + 1) * MINUTE_MS
    for _ in range(7 * 1440 // 5):
        if not in_schedule(schedule, u):
            return u
        u += 5 * MINUTE_MS
    return u


# --- choosing places ----------------------------------------------------------------------


def random_in(
    area: BaseGeometry, rng: random.Random, tries: int = 200
) -> tuple[float, float] | None:
    """A uniform random point of `area` (metres), or None."""
    minx, miny, maxx, maxy = area.bounds
    for _ in range(tries):
        x, y = rng.uniform(minx, maxx), rng.uniform(miny, maxy)
        if area.contains(Point(x, y)):
            return (x, y)
    return None


def segment_within(area: BaseGeometry, a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether the straight path a -> b stays inside `area`."""
    if a == b:
        return area.contains(Point(a))
    return area.contains(LineString([a, b]))


def destination(
    area: BaseGeometry, home: tuple[float, float], rng: random.Random, dist: tuple[float, float]
) -> tuple[float, float] | None:
    """A point at a distance in `dist` (m) from home whose straight path from home stays in area."""
    for _ in range(30):
        d, a = rng.uniform(*dist), rng.uniform(0, 2 * math.pi)
        p = (home[0] + d * math.sin(a), home[1] + d * math.cos(a))
        if segment_within(area, home, p):
            return p
    return None


def clear_of(
    circles: list[tuple[Point, float]], a: tuple[float, float], b: tuple[float, float]
) -> bool:
    """Whether the path a -> b keeps outside every (centre, radius m) circle."""
    line = LineString([a, b]) if a != b else Point(a)
    return all(line.distance(c) > r for c, r in circles)


def point_outside(
    area: BaseGeometry,
    start: tuple[float, float],
    distance_m: float,
    rng: random.Random,
    circles: list[tuple[Point, float]],
) -> tuple[float, float] | None:
    """A point at least `distance_m` outside `area`, reached from start on a path clear of the
    circles: first towards the nearest edge, then in other directions."""
    edge = nearest_points(area.boundary, Point(start))[0]
    first = math.atan2(edge.x - start[0], edge.y - start[1])
    bearings = [first] + [rng.uniform(0, 2 * math.pi) for _ in range(35)]
    for b in bearings:
        for reach in range(1000, 30_001, 500):  # metres from start
            p = (start[0] + reach * math.sin(b), start[1] + reach * math.cos(b))
            if area.distance(Point(p)) >= distance_m:
                if clear_of(circles, start, p):
                    return p
                break
    return None


def nearest_inside(
    area: BaseGeometry, start: tuple[float, float], depth_m: float
) -> tuple[float, float] | None:
    """The point at least `depth_m` inside `area` that is nearest to start (start itself when it
    is that deep already), or None when the area is too thin."""
    inner = area.buffer(-depth_m)
    if inner.is_empty:
        return None
    p = nearest_points(inner, Point(start))[0]
    return (p.x, p.y)
