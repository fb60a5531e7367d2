"""Shared test helpers: the real Vietnam province polygons and scalar references."""

from __future__ import annotations

import json
from datetime import date
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import shapely
from geographiclib.geodesic import Geodesic
from shapely.geometry.base import BaseGeometry

from geofence.geodesy import metres_per_degree
from geofence.policy import Supervisee
from geofence.zones import Zone, parse_geometry

VN_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "vn"
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z = 07:00 local (Asia/Ho_Chi_Minh), a Thursday
WGS84 = Geodesic.WGS84


@lru_cache(maxsize=2)
def vn_provinces(name: str = "vn_provinces_63_ne10m.geojson") -> list[tuple[str, BaseGeometry]]:
    """(name, geometry) of the real provinces; the test is skipped if the data is absent."""
    path = VN_DATA / name
    if not path.exists():
        pytest.skip(f"Vietnam province data not found at {path}")
    features = json.loads(path.read_text("utf-8"))["features"]
    return [(f["properties"]["name"], parse_geometry(f["geometry"])) for f in features]


def geodesic_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Karney's geodesic distance on WGS 84 (GeographicLib): the independent reference."""
    return float(WGS84.Inverse(lat1, lon1, lat2, lon2)["s12"])


def reference_signed(geometry: BaseGeometry, lon: float, lat: float) -> float:
    """Scalar shapely reference: metres from the point to the boundary, negative inside,
    measured in the local metric frame tangent at the point."""
    kx, ky = (float(v) for v in metres_per_degree(lat))
    local = shapely.transform(
        geometry, lambda c: np.column_stack([(c[:, 0] - lon) * kx, (c[:, 1] - lat) * ky])
    )
    origin = shapely.Point(0.0, 0.0)
    d = float(local.boundary.distance(origin))
    return -d if local.contains(origin) else d


def offset(lon: float, lat: float, east_m: float, north_m: float) -> tuple[float, float]:
    """The point `east_m`, `north_m` metres from (lon, lat) (local frame)."""
    kx, ky = (float(v) for v in metres_per_degree(lat))
    return lon + east_m / kx, lat + north_m / ky


def supervisee(sid: str = "S1", sentence_type: str = "an_treo") -> Supervisee:
    """A supervisee serving 2025-01-01 .. 2027-12-31."""
    return Supervisee(sid, sentence_type, date(2025, 1, 1), date(2027, 12, 31))


def square(lon: float, lat: float, half_m: float) -> shapely.Polygon:
    """An axis-aligned square of half-side `half_m` metres around (lon, lat)."""
    (x0, y0), (x1, y1) = offset(lon, lat, -half_m, -half_m), offset(lon, lat, half_m, half_m)
    return shapely.box(x0, y0, x1, y1)


def zone(
    geometry: BaseGeometry,
    zid: str = "home",
    kind: str = "inclusion",
    sid: str = "S1",
    **kw: object,
) -> Zone:
    """A zone with defaults plus overrides."""
    purpose = kw.pop("purpose", "residence" if kind == "inclusion" else "ban")
    return Zone(sid, zid, kind, str(purpose), geometry, **kw)  # type: ignore[arg-type]
