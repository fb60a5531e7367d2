"""A simulated fleet of ankle monitors: movement, fixes, heartbeats and events (contract §1).

The fleet is a pure generator: `Fleet.step(now_ms)` advances every device to `now_ms` (UTC epoch
ms, injected; the fleet never reads the clock) and returns the messages due by then as
`(topic, payload_bytes, qos)`, in time order. The same seed and the same start give the same
messages whatever the step size.

People walk (1.2-1.6 m/s) or ride a motorbike (8-12 m/s) from home to places inside their
residence zone and back, dwell, and stay home at night (21:30-06:00 local). Scenarios make a
share of the eligible devices misbehave from `scenario_after_s` on:

- `normal`: nothing special;
- `exit`: leave the residence zone by >= 1.5 km (by motorbike) and stay out;
- `away`: one person is >= 1.5 km out of their residence zone already when the fleet starts
  (gone overnight) and stays out, so a zone alert follows the first fixes (the demo's alert
  within a minute of `giamsat up --demo`, where `exit` takes minutes of riding);
- `enter_ban`: a cấm cư trú (residence ban) person rides >= 700 m into a banned commune and stays;
- `tamper`: the strap is opened (`strap_open` event, heartbeats say `strap: open`);
- `offline`: the device goes silent for good;
- `curfew`: during the curfew's hours the person stands 60-150 m outside the curfew circle.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from shapely.geometry import Point
from shapely.geometry.base import BaseGeometry

from simulators import messages as m
from simulators.geo import LocalFrame
from simulators.movement import (
    HOUR_MS,
    MINUTE_MS,
    MOTO_MPS,
    WALK_MPS,
    Leg,
    Path,
    destination,
    dwell,
    in_schedule,
    local_minute,
    nearest_inside,
    next_local_time,
    point_outside,
    random_in,
    segment_within,
    travel,
)
from simulators.profiles import Circle, Profile, profiles

SCENARIOS = ("normal", "exit", "away", "enter_ban", "tamper", "offline", "curfew")
ONE_DEVICE = frozenset({"away"})  # scenarios played by a single device whatever the share
Message = tuple[str, bytes, int]

ROAM_MARGIN_M = 500.0  # everyday trips stay this far inside the residence zone (noise <= 300 m)
PROTECTION_CLEARANCE_M = 500.0  # and this far outside a victim's protection circle
EXIT_DISTANCE_M = 1500.0  # `exit` goes this far out: >= 1 km even with a 300 m poor fix
BAN_DEPTH_M = 700.0  # `enter_ban` goes this far into the banned commune
CURFEW_OUTSIDE_M = (60.0, 150.0)  # `curfew` stands this far outside the circle
EVENING = 21 * 60 + 30  # local minute after which nobody starts or ends a trip
MORNING = 6 * 60  # local minute before which everybody is home
FW = "giamsat-sim/1.0"


@dataclass(frozen=True)
class FleetConfig:
    """How the fleet behaves. Intervals in seconds; `share` is the fraction of the devices
    eligible for each scenario that play it (at least one when any is eligible)."""

    fix_interval_s: float = 10.0
    hb_interval_s: float = 60.0
    batch: int = 1  # fixes per message; 1 sends single fix objects
    qos: int = 1  # fixes, events and acks
    hb_qos: int = 0
    scenarios: tuple[str, ...] = ()
    share: float = 0.2
    scenario_after_s: float = 10.0
    scenario_spread_s: float = 20.0
    gap_every_s: float = 3600.0  # mean time between coverage gaps of a device; 0 = never
    gap_s: tuple[float, float] = (60.0, 600.0)
    tamper_per_hour: float = 0.001  # spontaneous strap openings, per device
    seed: int = 1


def eligible(scenario: str, p: Profile) -> bool:
    """Whether a device can play a scenario (exit needs a residence to leave, and so on)."""
    if scenario in ("exit", "away"):
        return p.confined and p.residence is not None and not p.permits
    if scenario == "enter_ban":
        return bool(p.bans)
    if scenario == "curfew":
        return p.curfew is not None and not p.permits
    return scenario in SCENARIOS


def assign_scenarios(
    profs: Sequence[Profile], scenarios: Sequence[str], share: float, rng: random.Random
) -> dict[str, str]:
    """device_id -> scenario, each device in at most one, scenarios served in the given order."""
    taken: dict[str, str] = {}
    for s in scenarios:
        if s not in SCENARIOS:
            raise ValueError(f"unknown scenario {s!r}, expected one of {SCENARIOS}")
        if s == "normal":
            continue
        pool = [p.device_id for p in profs if p.device_id not in taken and eligible(s, p)]
        k = min(len(pool), max(1, round(share * len(pool)))) if pool else 0
        if s in ONE_DEVICE:
            k = min(k, 1)
        taken.update((d, s) for d in rng.sample(pool, k))
    return taken


class SimDevice:
    """One simulated device: its path, timers, battery, buffers and sequence counter."""

    def __init__(
        self, profile: Profile, cfg: FleetConfig, start_ms: int, scenario: str | None = None
    ) -> None:
        self.p, self.cfg, self.id = profile, cfg, profile.device_id
        self.rng = random.Random(f"dev:{cfg.seed}:{profile.device_id}")
        self.frame = LocalFrame(*profile.home)
        self.home = (0.0, 0.0)
        self._areas()
        self.path = Path(self.home, start_ms)
        self.scenario, self.active = scenario, False
        self.target: tuple[float, float] | None = None  # where a scenario takes the device
        self.seq, self.first, self.rested = 0, True, False
        self.fix_ms = cfg.fix_interval_s * 1000
        self.pending: list[dict[str, Any]] = []  # fixes waiting to fill a batch
        self.buffered: list[dict[str, Any]] = []  # fixes held during a coverage gap
        self.held: list[tuple[str, dict[str, Any]]] = []  # events held during a gap
        self.gap_until = 0
        self.batt = self.rng.uniform(20, 100)  # %
        self.drain = self.rng.uniform(2.5, 4.0)  # %/h with a fix every few seconds
        self.chg, self.strap, self.batt_t = False, "ok", start_ms
        self.last_src = "gnss"
        self._timers(start_ms)
        if scenario == "away":
            self._start_away(start_ms)

    # -- setup

    def _areas(self) -> None:
        """Local-metre copies of the zones that steer movement."""
        xy = self.frame.geom_to_xy
        res = self.p.residence
        self.residence = xy(res) if res is not None else Point(self.home).buffer(3000)
        self.protect = [
            (Point(self.frame.to_xy(*c.center)), c.radius_m) for c in self.p.protections
        ]
        roam = self.residence.buffer(-ROAM_MARGIN_M)
        for c, r in self.protect:
            roam = roam.difference(c.buffer(r + PROTECTION_CLEARANCE_M))
        self.roam = roam
        self.bans = [xy(b) for b in self.p.bans]

    def _timers(self, start: int) -> None:
        cfg, rng = self.cfg, self.rng
        inf = math.inf
        self.timers: dict[str, float] = {
            "fix": start + rng.uniform(0, self.fix_ms),
            "hb": start + rng.uniform(0, cfg.hb_interval_s * 1000),
            "activate": inf,
            "tamper": self._next_tamper(start),
            "strap_close": inf,
        }
        if self.scenario:
            spread = rng.uniform(0, cfg.scenario_spread_s * 1000)
            self.timers["activate"] = start + cfg.scenario_after_s * 1000 + spread
        self.handlers: dict[str, Callable[[int, list], None]] = {
            "fix": self._on_fix,
            "hb": self._on_hb,
            "activate": self._on_activate,
            "tamper": self._on_tamper,
            "strap_close": self._on_strap_close,
        }

    def _next_tamper(self, t: float) -> float:
        rate = self.cfg.tamper_per_hour
        return t + self.rng.expovariate(rate) * HOUR_MS if rate > 0 else math.inf

    # -- the time loop

    def advance(self, now: int) -> list[tuple[int, str, bytes, int]]:
        """Run the device up to `now` (ms): messages as (send time, topic, payload, qos)."""
        out: list[tuple[int, str, bytes, int]] = []
        while True:
            name = min(self.timers, key=self.timers.__getitem__)
            t = self.timers[name]
            if t > now:
                return out
            self.handlers[name](int(t), out)

    def position(self, t: int) -> tuple[float, float]:
        """The true (noise-free) position at t as (lon, lat); t must not go backwards."""
        self._plan_until(t)
        return self.frame.to_lonlat(*self.path.at(t))

    def _plan_until(self, t: int) -> None:
        while self.path.end_time <= t:
            self.path.extend(self._plan(self.path.end_time))

    def _next_seq(self) -> int:
        self.seq += 1
        return self.seq - 1

    def _emit(self, out: list, t: int, kind: str, obj: Any, qos: int) -> None:
        out.append((t, m.topic(self.id, kind), m.encode(obj), qos))

    # -- fixes

    def _on_fix(self, t: int, out: list) -> None:
        self.timers["fix"] = t + self.fix_ms * self.rng.uniform(0.98, 1.02)  # clocks drift a little
        f = self.make_fix(t)
        if t < self.gap_until:
            self.buffered.append(f)
            return
        if self.buffered:
            self._flush_gap(t, f, out)
        else:
            self.pending.append(f)
            if len(self.pending) >= self.cfg.batch:
                self._send_fixes(t, self.pending, self.cfg.batch, out)
                self.pending = []
        self._maybe_start_gap(t)

    def make_fix(self, t: int) -> dict[str, Any]:
        """A fix at t: the true position plus noise matching its `acc`."""
        self._plan_until(t)
        leg = self.path.leg_at(t)
        x, y = leg.at(t)
        src, acc = self._accuracy(leg)
        ex, ey = self._noise(acc)
        lon, lat = self.frame.to_lonlat(x + ex, y + ey)
        self.last_src = src if acc <= 100 else "poor"
        extra = self._gnss_extra(leg, acc) if src == "gnss" else {"src": src}
        return m.fix(self._next_seq(), t, round(lat, 6), round(lon, 6), round(acc, 1), **extra)

    def _accuracy(self, leg: Leg) -> tuple[str, float]:
        """(src, acc m): mostly a good GNSS fix; indoors (dwelling) more Wi-Fi; rarely poor or cell."""
        r = self.rng.random()
        wifi = 0.15 if leg.mode == "dwell" else 0.03
        if r < 0.02:
            return "cell", self.rng.uniform(300, 1500)
        if r < 0.02 + wifi:
            return "wifi", self.rng.uniform(20, 80)
        if r < 0.05 + wifi:
            return "gnss", self.rng.uniform(100, 300)  # urban canyon, under a roof
        return "gnss", 5 + 25 * self.rng.random() ** 2

    def _noise(self, acc: float) -> tuple[float, float]:
        """A 2-D normal error whose 95 % radius is `acc` (sigma = acc / 2.45), cut at `acc` so
        the reported accuracy bounds the error, as geofence decisions assume."""
        sigma = acc / 2.45
        ex, ey = self.rng.gauss(0, sigma), self.rng.gauss(0, sigma)
        r = math.hypot(ex, ey)
        k = acc / r if r > acc else 1.0
        return ex * k, ey * k

    def _gnss_extra(self, leg: Leg, acc: float) -> dict[str, Any]:
        spd = max(0.0, leg.speed + self.rng.gauss(0, 0.2))
        extra: dict[str, Any] = {
            "spd": round(spd, 1),
            "alt": round(self.rng.uniform(4, 14), 1),
            "sats": self.rng.randint(4, 7) if acc > 50 else self.rng.randint(7, 14),
        }
        if leg.speed > 0.5:  # no meaningful course when standing
            extra["hdg"] = round((leg.heading + self.rng.gauss(0, 3)) % 360, 1)
        return extra

    def _send_fixes(self, t: int, fixes: list[dict[str, Any]], per_msg: int, out: list) -> None:
        """Fixes as single objects (per_msg 1) or batches of <= per_msg and <= 64 KiB."""
        if per_msg <= 1 and len(fixes) == 1:
            self._emit(out, t, "fix", fixes[0], self.cfg.qos)
            return
        for payload in batch_payloads(fixes, per_msg):
            out.append((t, m.topic(self.id, "fix"), payload, self.cfg.qos))

    def _flush_gap(self, t: int, f: dict[str, Any], out: list) -> None:
        """Back in coverage: the held fixes (and any batch in progress) in batches of <= 500,
        then the events held meanwhile."""
        fixes = self.pending + self.buffered + [f]
        self.pending, self.buffered = [], []
        self._send_fixes(t, fixes, m.MAX_BATCH, out)
        for kind, obj in self.held:
            self._emit(out, t, kind, obj, self.cfg.qos)
        self.held = []

    def _maybe_start_gap(self, t: int) -> None:
        every = self.cfg.gap_every_s
        if every > 0 and self.rng.random() < self.fix_ms / (every * 1000):
            self.gap_until = t + int(self.rng.uniform(*self.cfg.gap_s) * 1000)

    # -- heartbeats and events

    def _on_hb(self, t: int, out: list) -> None:
        self.timers["hb"] = t + self.cfg.hb_interval_s * 1000
        self._battery(t, out)
        if t < self.gap_until:
            return  # no coverage: a heartbeat is not worth keeping
        hb = m.heartbeat(
            self._next_seq(),
            t,
            int(round(self.batt)),
            chg=self.chg,
            strap=self.strap,
            case="ok",
            rssi=self.rng.randint(-105, -60),
            gnss="fix" if self.last_src == "gnss" else "nofix",
            fw=FW,
        )
        self._emit(out, t, "hb", hb, self.cfg.hb_qos)

    def _event(self, t: int, out: list, type_: str, **detail: Any) -> None:
        """An event now, or held until coverage returns."""
        evt = m.event(type_, self._next_seq(), t, **({"detail": detail} if detail else {}))
        if t < self.gap_until:
            self.held.append(("evt", evt))
        else:
            self._emit(out, t, "evt", evt, self.cfg.qos)

    def _battery(self, t: int, out: list) -> None:
        """Drain or charge since the last update; events on crossing 20 % and 5 %, and on plugging."""
        hours = (t - self.batt_t) / HOUR_MS
        self.batt_t = t
        if self.chg:
            self.batt = min(100.0, self.batt + 40 * hours)  # a full charge in 2.5 h
            if self.batt >= 100:
                self.chg = False
                self._event(t, out, "charger_off")
            return
        before, self.batt = self.batt, max(0.5, self.batt - self.drain * hours)
        for level, kind in ((20, "battery_low"), (5, "battery_critical")):
            if before > level >= self.batt:
                self._event(t, out, kind, batt=int(self.batt))
        if self.batt < 8 or (self.batt < 30 and self.rng.random() < 2 * hours):
            self.chg = True  # people plug in when it gets low: 2 chances an hour below 30 %
            self._event(t, out, "charger_on")

    def _on_tamper(self, t: int, out: list) -> None:
        """A spontaneous strap opening, closed again 10-60 s later."""
        self.timers["tamper"] = self._next_tamper(t)
        self._open_strap(t, out)
        self.timers["strap_close"] = t + self.rng.uniform(10_000, 60_000)

    def _open_strap(self, t: int, out: list) -> None:
        if self.strap == "ok":
            self.strap = "open"
            self._event(t, out, "strap_open")

    def _on_strap_close(self, t: int, out: list) -> None:
        self.timers["strap_close"] = math.inf
        if self.strap == "open" and not (self.active and self.scenario == "tamper"):
            self.strap = "ok"
            self._event(t, out, "strap_closed")

    # -- scenarios

    def _on_activate(self, t: int, out: list) -> None:
        self.timers["activate"] = math.inf
        self.active = True
        self._plan_until(t)
        self.path.cut(t)
        here = self.path.end
        if self.scenario == "exit":
            circles = [(c, r + 200) for c, r in self.protect]
            self.target = point_outside(self.residence, here, EXIT_DISTANCE_M, self.rng, circles)
        elif self.scenario == "enter_ban":
            self.target = self._ban_target(here)
        elif self.scenario == "curfew" and self.p.curfew is not None:
            self.target = self._curfew_edge(self.p.curfew)
        elif self.scenario == "tamper":
            self._open_strap(t, out)
        elif self.scenario == "offline":
            # silent for good: nothing more, not even the fixes buffered in a gap
            self.timers = dict.fromkeys(self.timers, math.inf)

    def _start_away(self, t: int) -> None:
        """Begin out of the residence, where an `exit` would have taken the person."""
        circles = [(c, r + 200) for c, r in self.protect]
        target = point_outside(self.residence, self.home, EXIT_DISTANCE_M, self.rng, circles)
        if target is None:
            return
        self.timers["activate"] = math.inf
        self.active, self.target = True, target
        self.path = Path(target, t)

    def _ban_target(self, here: tuple[float, float]) -> tuple[float, float] | None:
        found = [nearest_inside(b, here, BAN_DEPTH_M) for b in self.bans]
        points = [p for p in found if p is not None]
        return min(points, key=lambda p: math.dist(p, here)) if points else None

    def _curfew_edge(self, curfew: Circle) -> tuple[float, float]:
        cx, cy = self.frame.to_xy(*curfew.center)
        d = curfew.radius_m + self.rng.uniform(*CURFEW_OUTSIDE_M)
        a = self.rng.uniform(0, 2 * math.pi)
        return (cx + d * math.sin(a), cy + d * math.cos(a))

    # -- planning

    def _plan(self, t: int) -> list[Leg]:
        """The next legs from the end of the current plan at t."""
        target, curfew = self.target, self.p.curfew
        if self.active and target is not None:
            if self.scenario in ("exit", "away", "enter_ban"):
                return self._plan_away(t, target)
            if self.scenario == "curfew" and curfew and in_schedule(curfew.schedule or [], t):
                return self._plan_curfew(t, target)
        return self._plan_normal(t)

    def _plan_normal(self, t: int) -> list[Leg]:
        """Go home if away; at night stay home; by day alternate a rest at home and a trip."""
        here = self.path.end
        if math.dist(here, self.home) > 1:
            return [self._go(t, here, self.home)]
        if _quiet(t):
            self.rested = True
            until = next_local_time(t, MORNING) + int(self.rng.uniform(0, 90) * MINUTE_MS)
            if self.scenario == "curfew":
                until = min(until, t + 15 * MINUTE_MS)  # look again soon: the curfew may start
            return [dwell(t, here, until)]
        # after a rest, go out; at the very start, half the fleet is already on the move
        want_trip = self.rested or (self.first and self.rng.random() < 0.5)
        self.first = False
        if want_trip:
            self.rested = False
            trip = self._trip(t)
            if trip:
                return trip
        self.rested = True
        return [dwell(t, here, t + int(self.rng.uniform(2, 30) * MINUTE_MS))]

    def _trip(self, t: int) -> list[Leg] | None:
        """Home -> a place in the roaming area -> home, walking or riding, back by the evening."""
        walk = self.rng.random() < 0.6
        speed = self.rng.uniform(*(WALK_MPS if walk else MOTO_MPS))
        dist = (200.0, 1500.0) if walk else (1000.0, 6000.0)
        dest = destination(self.roam, self.home, self.rng, dist)
        if dest is None:
            return None
        mode = "walk" if walk else "moto"
        go = travel(t, self.home, dest, speed, mode)
        stay = dwell(go.t1, dest, go.t1 + int(self.rng.uniform(5, 45) * MINUTE_MS))
        back = travel(stay.t1, dest, self.home, speed, mode)
        if back.t1 > next_local_time(t, EVENING):
            return None
        return [go, stay, back]

    def _go(self, t: int, a: tuple[float, float], b: tuple[float, float]) -> Leg:
        """Walk under 1.5 km, ride further."""
        if math.dist(a, b) < 1500:
            return travel(t, a, b, self.rng.uniform(*WALK_MPS), "walk")
        return travel(t, a, b, self.rng.uniform(*MOTO_MPS), "moto")

    def _plan_away(self, t: int, target: tuple[float, float]) -> list[Leg]:
        """Ride to the target, then loiter around it (walks within 300 m, staying out / in)."""
        here = self.path.end
        if math.dist(here, target) > 1:
            return [travel(t, here, target, self.rng.uniform(*MOTO_MPS), "moto")]
        area = self._loiter_area(target)
        p = random_in(area, self.rng, 50) if area is not None else None
        legs = []
        if area is not None and p is not None and segment_within(area, here, p):
            legs.append(travel(t, here, p, self.rng.uniform(*WALK_MPS), "walk"))
            self.target = target = p
        start = legs[-1].t1 if legs else t
        return legs + [dwell(start, target, start + int(self.rng.uniform(5, 20) * MINUTE_MS))]

    def _loiter_area(self, target: tuple[float, float]) -> BaseGeometry | None:
        """Where to wander near the target: >= 1.3 km out of the residence, or >= 600 m into a ban."""
        near = Point(target).buffer(300)
        if self.scenario in ("exit", "away"):
            area = near.difference(self.residence.buffer(EXIT_DISTANCE_M - 200))
        else:
            area = near.intersection(_union(self.bans).buffer(-(BAN_DEPTH_M - 100)))
        return None if area.is_empty else area

    def _plan_curfew(self, t: int, target: tuple[float, float]) -> list[Leg]:
        """Out to the edge of the curfew circle and stay there while the curfew lasts."""
        here = self.path.end
        if math.dist(here, target) > 1:
            return [travel(t, here, target, self.rng.uniform(*WALK_MPS), "walk")]
        return [dwell(t, here, t + 15 * MINUTE_MS)]

    # -- downlink

    def command(self, cmd: dict[str, Any], now: int) -> list[tuple[int, str, bytes, int]]:
        """Answer a downlink command (contract §1): `locate` sends a fix now, `set_interval`
        changes the fix interval (`fix_s`, 1..3600 s), `notify_wearer` is acknowledged."""
        out: list[tuple[int, str, bytes, int]] = []
        kind, ok = cmd.get("type"), True
        if kind == "locate":
            self._emit(out, now, "fix", self.make_fix(now), self.cfg.qos)
        elif kind == "set_interval" and _valid_interval(cmd.get("fix_s")):
            self.fix_ms = float(cmd["fix_s"]) * 1000
            self.timers["fix"] = now + self.fix_ms
        elif kind != "notify_wearer":
            ok = False
        self._emit(out, now, "ack", m.ack(str(cmd.get("id", "")), now, ok), self.cfg.qos)
        return out


def _valid_interval(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and 1 <= v <= 3600


def _union(geoms: list[BaseGeometry]) -> BaseGeometry:
    out = geoms[0]
    for g in geoms[1:]:
        out = out.union(g)
    return out


def _quiet(t: int) -> bool:
    """Night at home: from 21:30 to 06:00 local."""
    minute = local_minute(t)
    return minute >= EVENING or minute < MORNING


def batch_payloads(fixes: list[dict[str, Any]], per_msg: int = m.MAX_BATCH) -> list[bytes]:
    """`{"fixes": [...]}` payloads of at most `per_msg` (<= 500) fixes and at most 64 KiB each."""
    per_msg = max(1, min(per_msg, m.MAX_BATCH))
    out = []
    for i in range(0, len(fixes), per_msg):
        out.extend(_fit(fixes[i : i + per_msg]))
    return out


def _fit(chunk: list[dict[str, Any]]) -> list[bytes]:
    """One batch payload, or halves of it until each is under the size limit."""
    payload = m.encode(m.fix_batch(chunk))
    if len(payload) <= m.MAX_PAYLOAD_BYTES or len(chunk) == 1:
        return [payload]
    half = len(chunk) // 2
    return _fit(chunk[:half]) + _fit(chunk[half:])


class Fleet:
    """The simulated devices of a registry, stepped by injected time (UTC ms)."""

    def __init__(
        self, profs: Sequence[Profile], start_ms: int, config: FleetConfig | None = None
    ) -> None:
        self.config = config or FleetConfig()
        self.start_ms = start_ms
        rng = random.Random(f"fleet:{self.config.seed}")
        self.assignments = assign_scenarios(profs, self.config.scenarios, self.config.share, rng)
        self.devices = {
            p.device_id: SimDevice(p, self.config, start_ms, self.assignments.get(p.device_id))
            for p in profs
        }

    @classmethod
    def from_registry(
        cls,
        doc: dict[str, Any],
        start_ms: int,
        config: FleetConfig | None = None,
        limit: int | None = None,
    ) -> Fleet:
        """A fleet of the first `limit` devices (all by default) of an import document."""
        profs = profiles(doc)
        return cls(profs[:limit] if limit else profs, start_ms, config)

    def step(self, now_ms: int) -> list[Message]:
        """Advance every device to `now_ms`; the messages due, in time order."""
        out: list[tuple[int, str, bytes, int]] = []
        for dev in self.devices.values():
            out.extend(dev.advance(now_ms))
        out.sort(key=lambda msg: msg[0])
        return [(t, p, q) for _, t, p, q in out]

    def command(self, device_id: str, payload: bytes, now_ms: int) -> list[Message]:
        """A downlink command for one device (raw payload): the device's answer messages."""
        dev = self.devices.get(device_id)
        try:
            cmd = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return []
        if dev is None or not isinstance(cmd, dict):
            return []
        return [(t, p, q) for _, t, p, q in dev.command(cmd, now_ms)]
