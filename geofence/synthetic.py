"""Synthetic communes, zones and fix streams for tests, benchmarks and demos (deterministic).

A commune is a star-shaped polygon (radius a sum of harmonics, so it is always simple) of ~1,000
vertices and a few km across, like a Vietnamese xã; exclusion zones are ~64-vertex blobs nearby.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from shapely.geometry import Polygon

from geofence.geodesy import metres_per_degree
from geofence.zones import Zone


def blob(
    rng: np.random.Generator, lon: float, lat: float, radius_m: float, vertices: int,
    roughness: float = 0.25,
) -> Polygon:  # fmt: skip
    """A simple star-shaped polygon around (lon, lat) with mean radius `radius_m`."""
    theta = np.linspace(0, 2 * np.pi, vertices, endpoint=False)
    r = np.ones(vertices)
    for k in range(2, 9):
        r += roughness / k * rng.uniform(-1, 1) * np.sin(k * theta + rng.uniform(0, 2 * np.pi))
    r += 0.01 * rng.standard_normal(vertices)  # small-scale wiggle of a surveyed border
    r = np.clip(r, 0.3, None) * radius_m
    kx, ky = metres_per_degree(lat)
    return Polygon(np.column_stack([lon + r * np.cos(theta) / kx, lat + r * np.sin(theta) / ky]))


@dataclass(frozen=True)
class Population:
    """Supervisees with one commune inclusion zone and 0..3 exclusion zones each."""

    ids: list[str]
    zones: list[list[Zone]]
    homes: NDArray[np.float64]  # (S, 2) lon/lat of each supervisee's home


def population(
    n: int, seed: int = 0, commune_vertices: int = 1000, exclusion_vertices: int = 64,
    max_exclusions: int = 3,
) -> Population:  # fmt: skip
    """`n` supervisees spread over Vietnam's latitude range."""
    rng = np.random.default_rng(seed)
    ids, zones, homes = [], [], []
    for i in range(n):
        lon, lat = rng.uniform(103.5, 108.5), rng.uniform(9.0, 22.5)
        sid = f"S{i:06d}"
        commune = blob(rng, lon, lat, rng.uniform(1500, 4000), commune_vertices)
        zs = [Zone(sid, "commune", "inclusion", "residence", commune)]
        kx, ky = metres_per_degree(lat)
        for j in range(int(rng.integers(0, max_exclusions + 1))):
            ex, ey = rng.uniform(-4000, 4000, 2)
            poly = blob(
                rng, lon + ex / kx, lat + ey / ky, rng.uniform(150, 600), exclusion_vertices
            )
            zs.append(Zone(sid, f"ex{j}", "exclusion", "protection" if j == 0 else "ban", poly))
        ids.append(sid)
        zones.append(zs)
        hx, hy = rng.uniform(-800, 800, 2)
        homes.append((lon + hx / kx, lat + hy / ky))
    return Population(ids, zones, np.array(homes))


def fixes(
    pop: Population,
    per_supervisee: int,
    seed: int = 1,
    start_ms: int = 1_767_225_600_000,
    interval_ms: int = 30_000,
    shuffle: bool = True,
    mean_stay: float = 20.0,
) -> dict[str, NDArray]:
    """A day-like fix stream: each supervisee moves between stays of ~`mean_stay` fixes: 70 % at
    home, 25 % somewhere within 3 km (in or out of the commune), 5 % on a trip 5-20 km away;
    each fix is its stay plus GPS noise of about its `acc` (log-normal around 12 m, 2 % over
    100 m). `shuffle` interleaves the supervisees as a live stream does."""
    rng = np.random.default_rng(seed)
    s = len(pop.ids)
    n = s * per_supervisee
    sidx = np.repeat(np.arange(s), per_supervisee)
    new = rng.random(n) < 1 / mean_stay
    new[::per_supervisee] = True
    stay = np.cumsum(new) - 1
    kind = rng.random(int(stay[-1]) + 1)
    radius = np.where(
        kind < 0.70, 30.0, np.where(kind < 0.95, 3000.0, rng.uniform(5000, 20000, len(kind)))
    )
    r, a = radius * np.sqrt(rng.random(len(kind))), rng.uniform(0, 2 * np.pi, len(kind))
    acc = np.exp(rng.normal(np.log(12), 0.6, n))
    acc[rng.random(n) < 0.02] = 150.0
    noise = rng.standard_normal((2, n)) * acc / 2
    kx, ky = metres_per_degree(pop.homes[sidx, 1])
    lon = pop.homes[sidx, 0] + ((r * np.cos(a))[stay] + noise[0]) / kx
    lat = pop.homes[sidx, 1] + ((r * np.sin(a))[stay] + noise[1]) / ky
    ts = start_ms + np.tile(np.arange(per_supervisee), s) * interval_ms
    order = rng.permutation(n) if shuffle else np.arange(n)
    return {
        "sidx": sidx[order].astype(np.int32),
        "ts": ts[order].astype(np.int64),
        "lon": lon[order],
        "lat": lat[order],
        "acc": acc[order].astype(np.float32),
    }
