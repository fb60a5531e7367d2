"""Zones: parsing and validation of the contract's zone JSON (§2, §4) into `Zone` values.

A zone is a GeoJSON Polygon / MultiPolygon (holes allowed) or a circle (`center` [lon, lat] +
`radius_m`), `inclusion` (must be inside) or `exclusion` (must be outside), with an optional
weekly schedule and per-zone overrides. Every invalid input raises `ZoneError(path, message)`
naming the JSON path of the offending value.
"""

from __future__ import annotations

import json
import math
import zlib
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

from geofence.errors import ZoneError
from geofence.geodesy import metres_per_degree
from geofence.schedule import Window, parse_schedule

__all__ = [
    "KINDS",
    "PURPOSES",
    "VIETNAM_BOUNDS",
    "Circle",
    "Zone",
    "ZoneError",
    "check_kind_fits_purpose",
    "check_vertices",
    "count_positions",
    "parse_geometry",
    "parse_zone",
]

KINDS = ("inclusion", "exclusion")
PURPOSES = ("residence", "ban", "curfew", "protection", "other")
# (min_lon, min_lat, max_lon, max_lat): Vietnam's mainland is lon 102.1..109.5, lat 8.4..23.4;
# the margin takes in the coastal islands and Trường Sa (Spratlys, down to lat ~6.5, lon ~117.8).
# Coordinates outside are refused: that is how lat/lon swaps are caught.
VIETNAM_BOUNDS = (101.5, 6.0, 118.0, 24.5)
MAX_RADIUS_M = 150_000.0  # circles up to 300 km across, the accuracy bound of contract §2
# The kind each purpose implies (contract §2): the commune of residence and a curfew are places
# the person must be in; a banned locality (cấm cư trú) and a victim's home (protection) are
# places they must stay out of. `other` may be either. Checked where zones are written (API,
# import), not when stored zones are loaded: an older stored zone stays enforced as it is.
PURPOSE_KIND = {
    "residence": "inclusion",
    "curfew": "inclusion",
    "ban": "exclusion",
    "protection": "exclusion",
}
_ZONE_KEYS = {
    "id", "kind", "purpose", "geometry", "center", "radius_m", "schedule",
    "margin_m", "confirm_fixes", "escalate_after_s", "tz", "name", "description",
}  # fmt: skip


@dataclass(frozen=True)
class Circle:
    """A circle zone: centre (degrees) and radius (metres on the ellipsoid)."""

    lon: float
    lat: float
    radius_m: float


@dataclass(frozen=True)
class Zone:
    """One zone of one supervisee.

    `geometry` is the lon/lat shapely (Multi)Polygon; for a circle it is a 128-gon drawn inside
    the circle, for display and intersection tests only: the engine uses `circle` exactly.
    `schedule` empty means always in force. Overrides left None take the settings / sentence
    policy defaults. `tz` None means the fence's default time zone (Asia/Ho_Chi_Minh).
    """

    supervisee_id: str
    id: str
    kind: str
    purpose: str
    geometry: BaseGeometry
    circle: Circle | None = None
    schedule: tuple[Window, ...] = ()
    margin_m: float | None = None
    confirm_fixes: int | None = None
    escalate_after_s: int | None = None
    tz: str | None = None

    @property
    def scheduled(self) -> bool:
        """True when the zone has a weekly schedule (an inclusion zone with one is a curfew)."""
        return bool(self.schedule)

    def geometry_key(self, margin_m: float) -> bytes:
        """Bytes identifying what the compiled grid depends on (shape and band margin)."""
        if self.circle is not None:
            c = self.circle
            return f"circle:{c.lon!r}:{c.lat!r}:{c.radius_m!r}:{margin_m!r}".encode()
        return self._wkb + f":{margin_m!r}".encode()

    @cached_property
    def _wkb(self) -> bytes:
        return bytes(shapely.to_wkb(self.geometry))

    def fingerprint(self) -> int:
        """32-bit hash of what decides a classification (kind, shape, margin): a change resets
        the confirmation counters of this zone in the decision state."""
        head = f"{self.kind}:{self.margin_m!r}:".encode()
        return zlib.crc32(head + self.geometry_key(self.margin_m or 0.0))

    def to_json(self) -> dict[str, Any]:
        """The contract's JSON form (inverse of `parse_zone`)."""
        out: dict[str, Any] = {"id": self.id, "kind": self.kind, "purpose": self.purpose}
        if self.circle is not None:
            out["center"] = [self.circle.lon, self.circle.lat]
            out["radius_m"] = self.circle.radius_m
        else:
            out["geometry"] = json.loads(shapely.to_geojson(self.geometry))
        if self.schedule:
            out["schedule"] = [w.to_json() for w in self.schedule]
        for key in ("margin_m", "confirm_fixes", "escalate_after_s", "tz"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


def parse_zone(
    obj: Any, supervisee_id: str, path: str = "$", bounds: tuple[float, ...] = VIETNAM_BOUNDS
) -> Zone:
    """Parse and validate one zone object of the import / API form (contract §4).

    Raises `ZoneError` with the JSON path of the first problem found.
    """
    if not isinstance(obj, dict):
        raise ZoneError(path, "expected a zone object")
    unknown = sorted(set(obj) - _ZONE_KEYS)
    if unknown:
        raise ZoneError(
            f"{path}.{unknown[0]}", f"unknown field; allowed: {', '.join(sorted(_ZONE_KEYS))}"
        )
    zone_id = _parse_id(obj.get("id"), f"{path}.id")
    kind = _parse_choice(obj.get("kind"), KINDS, f"{path}.kind", None)
    purpose = _parse_choice(obj.get("purpose"), PURPOSES, f"{path}.purpose", "other")
    geometry, circle = _parse_shape(obj, path, bounds)
    return Zone(
        supervisee_id=supervisee_id,
        id=zone_id,
        kind=kind,
        purpose=purpose,
        geometry=geometry,
        circle=circle,
        schedule=parse_schedule(obj.get("schedule"), f"{path}.schedule"),
        margin_m=_opt_number(obj.get("margin_m"), f"{path}.margin_m", 0.0, 10_000.0),
        confirm_fixes=_opt_int(obj.get("confirm_fixes"), f"{path}.confirm_fixes", 1, 1000),
        escalate_after_s=_opt_int(
            obj.get("escalate_after_s"), f"{path}.escalate_after_s", 0, 10**9
        ),
        tz=_opt_tz(obj.get("tz"), f"{path}.tz"),
    )


def check_kind_fits_purpose(zone: Zone, path: str = "$") -> None:
    """Raise `ZoneError` at `path`.kind when the zone's kind contradicts its purpose."""
    wanted = PURPOSE_KIND.get(zone.purpose)
    if wanted is not None and zone.kind != wanted:
        raise ZoneError(
            f"{path}.kind",
            f"a {zone.purpose} zone is an {wanted} zone (the person must be "
            f"{'inside' if wanted == 'inclusion' else 'outside'}), not {zone.kind!r}; "
            "use purpose 'other' for anything else",
        )


def count_positions(coords: Any, depth: int) -> int:
    """How many positions nested lists `depth` levels deep hold (GeoJSON coordinates: 2 for a
    Polygon, 3 for a MultiPolygon), without parsing them: cheap enough to run before
    `parse_geometry` on a document of any size."""
    if not isinstance(coords, list):
        return 0
    if depth <= 1:
        return len(coords)
    return sum(count_positions(c, depth - 1) for c in coords)


def check_vertices(geometry: Any, limit: int, path: str = "$") -> None:
    """Raise `ZoneError` when a GeoJSON (Multi)Polygon has more than `limit` positions."""
    if not isinstance(geometry, dict):
        return
    depth = {"Polygon": 2, "MultiPolygon": 3}.get(str(geometry.get("type")))
    n = count_positions(geometry.get("coordinates"), depth) if depth else 0
    if n > limit:
        raise ZoneError(
            f"{path}.coordinates",
            f"{n} positions: at most {limit} per area (simplify the shape)",
        )


def _parse_id(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ZoneError(path, "expected a non-empty string")
    if len(value.encode()) > 64:
        raise ZoneError(path, "zone id longer than 64 bytes")
    return value


def _parse_choice(value: Any, choices: tuple[str, ...], path: str, default: str | None) -> str:
    if value is None and default is not None:
        return default
    if value not in choices:
        raise ZoneError(path, f"expected one of {', '.join(choices)}, got {value!r}")
    return str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _opt_number(value: Any, path: str, lo: float, hi: float) -> float | None:
    if value is None:
        return None
    if not _is_number(value) or not math.isfinite(value) or not lo <= value <= hi:
        raise ZoneError(path, f"expected a number in [{lo:g}, {hi:g}], got {value!r}")
    return float(value)


def _opt_int(value: Any, path: str, lo: int, hi: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ZoneError(path, f"expected an integer in [{lo}, {hi}], got {value!r}")
    return value


def _opt_tz(value: Any, path: str) -> str | None:
    if value is None:
        return None
    from zoneinfo import ZoneInfo

    try:
        ZoneInfo(str(value))
    except Exception as exc:  # zoneinfo raises several types for bad keys
        raise ZoneError(path, f"unknown time zone {value!r}") from exc
    return str(value)


def _parse_shape(
    obj: dict[str, Any], path: str, bounds: tuple[float, ...]
) -> tuple[BaseGeometry, Circle | None]:
    has_geom = obj.get("geometry") is not None
    has_circle = obj.get("center") is not None or obj.get("radius_m") is not None
    if has_geom == has_circle:
        raise ZoneError(
            path, "give either 'geometry' or 'center' + 'radius_m', not both or neither"
        )
    if has_geom:
        return parse_geometry(obj["geometry"], f"{path}.geometry", bounds), None
    circle = _parse_circle(obj, path, bounds)
    return circle_polygon(circle), circle


def _parse_circle(obj: dict[str, Any], path: str, bounds: tuple[float, ...]) -> Circle:
    center = obj.get("center")
    if not isinstance(center, list) or len(center) != 2:
        raise ZoneError(f"{path}.center", "expected [lon, lat]")
    lon, lat = _position(center, f"{path}.center", bounds)
    radius: Any = obj.get("radius_m")
    if not _is_number(radius) or not math.isfinite(radius) or not 0 < radius <= MAX_RADIUS_M:
        raise ZoneError(
            f"{path}.radius_m", f"expected metres in (0, {MAX_RADIUS_M:g}], got {radius!r}"
        )
    return Circle(lon, lat, float(radius))


def circle_polygon(circle: Circle, n: int = 128) -> Polygon:
    """A regular n-gon inscribed in the circle (lon/lat), for display and intersections."""
    kx, ky = metres_per_degree(circle.lat)
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    lon = circle.lon + circle.radius_m * np.cos(a) / kx
    lat = circle.lat + circle.radius_m * np.sin(a) / ky
    return Polygon(np.column_stack([lon, lat]))


def parse_geometry(
    obj: Any, path: str = "$", bounds: tuple[float, ...] = VIETNAM_BOUNDS
) -> Polygon | MultiPolygon:
    """Parse and validate a GeoJSON Polygon or MultiPolygon (lon/lat, WGS 84).

    Used for zones, permit destinations and unit boundaries. Refuses: another type, empty or
    zero-area shapes, unclosed rings, rings of < 4 positions, non-numbers, coordinates out of
    range or outside `bounds` (which catches lat/lon swaps), self-intersections and other
    invalid topologies (holes outside their shell, overlapping parts).
    """
    if not isinstance(obj, dict):
        raise ZoneError(path, "expected a GeoJSON geometry object")
    gtype = obj.get("type")
    coords = obj.get("coordinates")
    cpath = f"{path}.coordinates"
    if gtype == "Polygon":
        rings = _polygon_rings(coords, cpath, bounds)
        geom: Polygon | MultiPolygon = Polygon(rings[0], rings[1:])
        polys = [(cpath, rings)]
    elif gtype == "MultiPolygon":
        if not isinstance(coords, list) or not coords:
            raise ZoneError(cpath, "empty MultiPolygon: expected a non-empty list of polygons")
        polys = [
            (f"{cpath}[{i}]", _polygon_rings(p, f"{cpath}[{i}]", bounds))
            for i, p in enumerate(coords)
        ]
        geom = MultiPolygon([Polygon(r[0], r[1:]) for _, r in polys])
    else:
        raise ZoneError(f"{path}.type", f"expected 'Polygon' or 'MultiPolygon', got {gtype!r}")
    _check_topology(geom, polys, path)
    return geom


def _polygon_rings(coords: Any, path: str, bounds: tuple[float, ...]) -> list[np.ndarray]:
    if not isinstance(coords, list) or not coords:
        raise ZoneError(path, "empty polygon: expected a non-empty list of linear rings")
    return [_ring(r, f"{path}[{i}]", bounds) for i, r in enumerate(coords)]


def _ring(ring: Any, path: str, bounds: tuple[float, ...]) -> np.ndarray:
    if not isinstance(ring, list) or not ring:
        raise ZoneError(path, "empty ring: expected a list of [lon, lat] positions")
    pts = np.array([_position(p, f"{path}[{i}]", bounds) for i, p in enumerate(ring)])
    if len(pts) < 4:
        raise ZoneError(path, f"a linear ring needs at least 4 positions (closed), got {len(pts)}")
    if not np.array_equal(pts[0], pts[-1]):
        raise ZoneError(
            f"{path}[{len(pts) - 1}]",
            "ring is not closed: the last position must repeat the first "
            f"({pts[0][0]:g}, {pts[0][1]:g})",
        )
    if len(np.unique(pts[:-1], axis=0)) < 3:
        raise ZoneError(path, "empty ring: fewer than 3 distinct positions")
    return pts


def _position(p: Any, path: str, bounds: tuple[float, ...]) -> tuple[float, float]:
    if not isinstance(p, list) or len(p) not in (2, 3):
        raise ZoneError(path, "expected a position [lon, lat]")
    for j, v in enumerate(p):
        if not _is_number(v) or not math.isfinite(v):
            raise ZoneError(f"{path}[{j}]", f"expected a finite number, got {v!r}")
    lon, lat = float(p[0]), float(p[1])
    if not -180 <= lon <= 180:
        raise ZoneError(f"{path}[0]", f"longitude {lon:g} out of range [-180, 180]")
    if not -90 <= lat <= 90:
        hint = "; lat/lon swapped? GeoJSON positions are [lon, lat]" if -90 <= lon <= 90 else ""
        raise ZoneError(f"{path}[1]", f"latitude {lat:g} out of range [-90, 90]{hint}")
    _check_bounds(lon, lat, path, bounds)
    return lon, lat


def _inside(lon: float, lat: float, b: tuple[float, ...]) -> bool:
    return b[0] <= lon <= b[2] and b[1] <= lat <= b[3]


def _check_bounds(lon: float, lat: float, path: str, b: tuple[float, ...]) -> None:
    if _inside(lon, lat, b):
        return
    box = f"lon {b[0]:g}..{b[2]:g}, lat {b[1]:g}..{b[3]:g}"
    if _inside(lat, lon, b):
        raise ZoneError(path, f"[{lon:g}, {lat:g}] is outside Vietnam ({box}) but [{lat:g}, {lon:g}] "
                        "is inside: lat/lon swapped? GeoJSON positions are [lon, lat]")  # fmt: skip
    raise ZoneError(path, f"[{lon:g}, {lat:g}] is outside Vietnam's bounds ({box})")


def _check_topology(
    geom: BaseGeometry, polys: list[tuple[str, list[np.ndarray]]], path: str
) -> None:
    for ppath, rings in polys:
        for i, ring in enumerate(rings):
            crossing = _self_crossing(ring)
            if crossing is not None:
                a, b = crossing
                raise ZoneError(
                    f"{ppath}[{i}][{a}]",
                    f"ring self-intersects: edge {a}-{a + 1} crosses edge {b}-{b + 1} near "
                    f"({ring[a][0]:.6f}, {ring[a][1]:.6f})",
                )
            if _ring_area(ring) == 0:
                raise ZoneError(f"{ppath}[{i}]", "empty ring: zero area")
    if not geom.is_valid:
        reason = shapely.is_valid_reason(geom)
        raise ZoneError(path, f"invalid geometry: {reason}")
    if geom.is_empty or geom.area == 0:
        raise ZoneError(path, "empty geometry: zero area")


def _ring_area(ring: np.ndarray) -> float:
    x, y = ring[:, 0] - ring[0, 0], ring[:, 1] - ring[0, 1]  # shifted: no cancellation
    return float(abs(np.dot(x[:-1], y[1:]) - np.dot(x[1:], y[:-1])) / 2)


def _self_crossing(ring: np.ndarray) -> tuple[int, int] | None:
    """First pair (i, j) of non-adjacent edges of a closed ring that intersect, or None.

    Repeated consecutive positions are skipped (they make zero-length edges, not crossings);
    the indices returned are those of the input positions.
    """
    keep_pt = np.r_[True, np.any(ring[1:] != ring[:-1], axis=1)]
    idx = np.flatnonzero(keep_pt)
    pts = ring[idx]
    n = len(pts) - 1
    lines = shapely.linestrings(np.stack([pts[:-1], pts[1:]], axis=1))
    tree = shapely.STRtree(lines)
    left, right = tree.query(lines, predicate="intersects")
    keep = (right > left) & (right - left != 1) & ~((left == 0) & (right == n - 1))
    if not keep.any():
        return None
    i = int(np.argmin(np.where(keep, left * (n + 1) + right, np.iinfo(np.int64).max)))
    return int(idx[left[i]]), int(idx[right[i]])


def zone_columns(obj: dict[str, Any], zone: Zone) -> dict[str, Any]:
    """The ``zones`` table's columns for a validated zone; ``obj`` is the zone object it was
    parsed from (its GeoJSON geometry is stored as given)."""
    circle = zone.circle
    return {"kind": zone.kind, "purpose": zone.purpose,
            "geometry": None if circle else obj["geometry"],
            "center_lon": circle.lon if circle else None,
            "center_lat": circle.lat if circle else None,
            "radius_m": circle.radius_m if circle else None,
            "schedule": [w.to_json() for w in zone.schedule] or None, "margin_m": zone.margin_m,
            "confirm_fixes": zone.confirm_fixes, "escalate_after_s": zone.escalate_after_s}


STATION_KEYS = ("center", "radius_m", "geometry")


def parse_station(obj: Any, path: str = "$.station") -> Zone:
    """A unit's station zone from ``{"center": [lon, lat], "radius_m": r}`` or
    ``{"geometry": Polygon | MultiPolygon}``; ZoneError with the JSON path when malformed."""
    if not isinstance(obj, dict):
        raise ZoneError(path, "expected an object with center + radius_m, or geometry")
    unknown = sorted(set(obj) - set(STATION_KEYS))
    if unknown:
        raise ZoneError(f"{path}.{unknown[0]}", "unknown field; allowed: center, radius_m, "
                                                "geometry")
    return parse_zone({"id": "station", "kind": "inclusion", **obj}, "station", path)
