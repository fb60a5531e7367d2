"""What the simulated fleet knows of each device, read from an import document (contract §4)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shapely.geometry import Point
from shapely.geometry.base import BaseGeometry

from simulators import messages as m
from simulators.demo import demo_homes, home_point, residence_area
from simulators.geo import from_geojson

Schedule = list[dict[str, Any]]


@dataclass(frozen=True)
class Circle:
    """A circular zone: centre (lon, lat) and radius in metres, with its schedule if any."""

    center: tuple[float, float]
    radius_m: float
    schedule: Schedule | None = None


@dataclass(frozen=True)
class Profile:
    """One device and the zones of the person wearing it (lon/lat geometries).

    `residence` is the area the person lives in (their inclusion polygon, or their unit's
    boundary); `confined` says whether they must stay inside it (an inclusion zone exists);
    `permits` are (valid_from, valid_to) in UTC ms.
    """

    device_id: str
    supervisee_id: str
    sentence_type: str
    home: tuple[float, float]
    residence: BaseGeometry | None
    confined: bool
    bans: tuple[BaseGeometry, ...] = ()
    protections: tuple[Circle, ...] = ()
    curfew: Circle | None = None
    permits: tuple[tuple[int, int], ...] = field(default=())


def _iso_ms(value: str) -> int:
    """An ISO date-time with offset to UTC epoch ms."""
    return int(datetime.fromisoformat(value).timestamp() * 1000)


def _circle(zone: dict[str, Any]) -> Circle:
    lon, lat = zone["center"]
    return Circle((float(lon), float(lat)), float(zone["radius_m"]), zone.get("schedule"))


def _profile(
    dev: dict[str, Any],
    sup: dict[str, Any],
    home: tuple[float, float],
    units: dict[str, dict[str, Any]],
    permits: list[tuple[int, int]],
) -> Profile:
    zones = sup.get("zones", [])
    circles_in = [_circle(z) for z in zones if z["kind"] == "inclusion" and "center" in z]
    return Profile(
        device_id=dev["id"],
        supervisee_id=sup["id"],
        sentence_type=sup.get("sentence_type", ""),
        home=home,
        residence=residence_area(sup, units),
        confined=any(z["kind"] == "inclusion" and "geometry" in z for z in zones),
        bans=tuple(
            from_geojson(z["geometry"])
            for z in zones
            if z["kind"] == "exclusion" and "geometry" in z
        ),
        protections=tuple(_circle(z) for z in zones if z["kind"] == "exclusion" and "center" in z),
        curfew=next((c for c in circles_in if c.schedule), None),
        permits=tuple(permits),
    )


def fallback_home(doc: dict[str, Any], device_id: str) -> tuple[float, float]:
    """A home for a device whose registry gives no place: within ~3 km of the centre of the
    document's first unit boundary (or of the demo province), chosen by the device id."""
    bounds = [u["boundary"] for u in doc.get("units", []) if u.get("boundary")]
    centre = from_geojson(bounds[0]).centroid if bounds else Point(m.DEFAULT_LON, m.DEFAULT_LAT)
    return home_point(centre.buffer(0.03), device_id)  # 0.03 deg: about 3 km


def profiles(doc: dict[str, Any]) -> list[Profile]:
    """A profile for each device of the document, in order. A device with no supervisee, or
    whose supervisee has no place to live by, gets `fallback_home` and roams around it."""
    units = {u["code"]: u for u in doc.get("units", [])}
    sups = {s["id"]: s for s in doc.get("supervisees", [])}
    homes = demo_homes(doc)
    permits: dict[str, list[tuple[int, int]]] = {}
    for p in doc.get("permits", []):
        span = (_iso_ms(p["valid_from"]), _iso_ms(p["valid_to"]))
        permits.setdefault(p["supervisee"], []).append(span)
    out = []
    for dev in doc.get("devices", []):
        sup = sups.get(dev.get("supervisee")) or {"id": "", "zones": []}
        home = homes.get(dev["id"]) or fallback_home(doc, dev["id"])
        out.append(_profile(dev, sup, home, units, permits.get(sup["id"], [])))
    return out
