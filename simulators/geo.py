"""Small geometry helpers for the simulator: a local metric frame and GeoJSON in and out.

The simulator moves devices in metres on a local tangent plane around a reference point (an
equirectangular frame with the WGS 84 metres-per-degree at the reference latitude). Over a
province some 50 km across its distortion stays well under 0.1 %, which is plenty for synthetic
movement; the service's own distances are the geofence package's business.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import shapely
from shapely.geometry import MultiPolygon, mapping, shape
from shapely.geometry.base import BaseGeometry
from shapely.geometry.polygon import orient

COORD_DECIMALS = 6  # GeoJSON coordinates rounded to 1e-6 degree (about 0.1 m)


@dataclass(frozen=True)
class LocalFrame:
    """A local east/north plane in metres around (`lon0`, `lat0`)."""

    lon0: float
    lat0: float

    @property
    def m_per_deg_lat(self) -> float:
        """Metres per degree of latitude at `lat0` (WGS 84 series)."""
        phi = math.radians(self.lat0)
        return 111132.92 - 559.82 * math.cos(2 * phi) + 1.175 * math.cos(4 * phi)

    @property
    def m_per_deg_lon(self) -> float:
        """Metres per degree of longitude at `lat0` (WGS 84 series)."""
        phi = math.radians(self.lat0)
        return 111412.84 * math.cos(phi) - 93.5 * math.cos(3 * phi)

    def to_xy(self, lon: float, lat: float) -> tuple[float, float]:
        """Degrees to metres east and north of the reference point."""
        return ((lon - self.lon0) * self.m_per_deg_lon, (lat - self.lat0) * self.m_per_deg_lat)

    def to_lonlat(self, x: float, y: float) -> tuple[float, float]:
        """Metres east and north of the reference point to (lon, lat) degrees."""
        return (self.lon0 + x / self.m_per_deg_lon, self.lat0 + y / self.m_per_deg_lat)

    def geom_to_xy(self, geom: BaseGeometry) -> BaseGeometry:
        """A lon/lat geometry in this frame's metres."""
        kx, ky = self.m_per_deg_lon, self.m_per_deg_lat
        return shapely.transform(geom, lambda c: (c - (self.lon0, self.lat0)) * (kx, ky))

    def geom_to_lonlat(self, geom: BaseGeometry) -> BaseGeometry:
        """A geometry in this frame's metres back to lon/lat degrees."""
        kx, ky = self.m_per_deg_lon, self.m_per_deg_lat
        return shapely.transform(geom, lambda c: c / (kx, ky) + (self.lon0, self.lat0))


def frame_for(geom: BaseGeometry) -> LocalFrame:
    """A local frame centred on a geometry's bounding-box centre."""
    minx, miny, maxx, maxy = geom.bounds
    return LocalFrame((minx + maxx) / 2, (miny + maxy) / 2)


def to_geojson(geom: BaseGeometry) -> dict[str, Any]:
    """A valid (Multi)Polygon as a GeoJSON geometry: 6 decimals, exterior rings counter-clockwise.

    Rounding is done by shapely's precision model, which keeps the result valid (a plain round()
    of each coordinate can make a ring touch itself).
    """
    snapped = shapely.set_precision(geom, 10**-COORD_DECIMALS)
    oriented = _orient(snapped)
    out = mapping(oriented)
    return {"type": out["type"], "coordinates": _round_coords(out["coordinates"])}


def _orient(geom: BaseGeometry) -> BaseGeometry:
    """Exterior rings counter-clockwise, holes clockwise (RFC 7946 section 3.1.6)."""
    if hasattr(shapely, "orient_polygons"):  # shapely >= 2.1
        return shapely.orient_polygons(geom)
    parts = [orient(p) for p in shapely.get_parts(geom)]
    return parts[0] if geom.geom_type == "Polygon" else MultiPolygon(parts)


def _round_coords(coords: Any) -> Any:
    """Nested tuples of floats to nested lists rounded to COORD_DECIMALS (drops float noise)."""
    if coords and isinstance(coords[0], int | float):
        return [round(float(c), COORD_DECIMALS) for c in coords]
    return [_round_coords(c) for c in coords]


def from_geojson(obj: dict[str, Any]) -> BaseGeometry:
    """A GeoJSON geometry object to a shapely geometry."""
    return shape(obj)


def round_point(lon: float, lat: float) -> list[float]:
    """A [lon, lat] pair rounded to GeoJSON precision."""
    return [round(lon, COORD_DECIMALS), round(lat, COORD_DECIMALS)]
