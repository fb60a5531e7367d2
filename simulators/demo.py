"""The demo registry: a real province cut into synthetic communes, with fictional people.

`build_demo_document()` returns an import document (contract section 4: `units`, `supervisees`,
`devices`, `permits`) for `giamsat up --demo` and the simulator. The province outline is Natural
Earth's Bắc Ninh (see `data/README.md`); the communes are a seeded Voronoi tessellation of it,
and every name is made up. `demo_homes()` places each device's home inside its residence zone.

Every `giamsat up --demo` start loads the demo again, and a restart must not change what users
did since: `missing_part()` keeps only the records that do not exist yet. An existing unit,
supervisee (with its zones and permits) or device is left as it is, whatever users changed in
it (a zone added, a name corrected).

Run `python -m simulators.demo [--seed N] [--per-commune K]` to print the document as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import shapely
from shapely.geometry import MultiPoint, MultiPolygon, Point, Polygon
from shapely.geometry.base import BaseGeometry

from simulators.geo import frame_for, from_geojson, round_point, to_geojson

if TYPE_CHECKING:
    import psycopg

PROVINCE_FILE = Path(__file__).parent / "data" / "bac_ninh_vn56_ne10m.geojson"
LOCAL_TZ = ZoneInfo("Asia/Ho_Chi_Minh")
OFFSET_07 = timezone(timedelta(hours=7))  # Vietnam has had no DST since 1975

SENTENCE_TYPES = (
    "an_treo",  # án treo: suspended sentence
    "cai_tao_khong_giam_giu",  # cải tạo không giam giữ: non-custodial reform
    "tha_tu_truoc_thoi_han",  # tha tù trước thời hạn có điều kiện: conditional early release
    "hoan_tam_dinh_chi",  # hoãn / tạm đình chỉ chấp hành án phạt tù: postponed or suspended prison term
    "quan_che",  # quản chế: probationary supervision
    "cam_cu_tru",  # cấm cư trú: residence ban
)
INCLUSION_TYPES = frozenset(SENTENCE_TYPES) - {"cam_cu_tru"}

# Sentence length ranges in days, per type (the Penal Code's ranges, roughly).
TERM_DAYS = {
    "an_treo": (365, 5 * 365),
    "cai_tao_khong_giam_giu": (180, 3 * 365),
    "tha_tu_truoc_thoi_han": (365, 3 * 365),
    "hoan_tam_dinh_chi": (90, 365),
    "quan_che": (365, 5 * 365),
    "cam_cu_tru": (365, 5 * 365),
}

HOME_MARGIN_M = 1000.0  # homes this far inside the commune: GPS noise (<= 300 m) never crosses out
CURFEW_RADIUS_M = 300.0
PROTECTION_RADIUS_M = 500.0
PROTECTION_DISTANCE_M = (2000.0, 3000.0)  # victim's home this far from the supervisee's
PROTECTION_CLEARANCE_M = 1000.0  # homes and trips keep this far outside a protection circle
CURFEW_SCHEDULE = [{"days": [1, 2, 3, 4, 5, 6, 7], "start": "22:00", "end": "05:00"}]

COMMUNE_NAMES = (
    ("phường", "Đông Hòa"),
    ("phường", "Tân Thịnh"),
    ("phường", "Hòa Phong"),
    ("xã", "An Lạc"),
    ("xã", "Phú Xuân"),
    ("xã", "Minh Tân"),
    ("xã", "Hưng Đạo"),
    ("xã", "Yên Thịnh"),
    ("xã", "Thanh Bình"),
    ("xã", "Quang Trung"),
    ("xã", "Trung Hòa"),
    ("xã", "Ngọc Lâm"),
    ("xã", "Đức Thắng"),
    ("xã", "Vĩnh An"),
    ("xã", "Bảo Long"),
    ("xã", "Kim Sơn"),
)  # fictional commune names; `phường` is urban, `xã` rural

FAMILY = (
    "Nguyễn",
    "Trần",
    "Lê",
    "Phạm",
    "Hoàng",
    "Vũ",
    "Đặng",
    "Bùi",
    "Đỗ",
    "Ngô",
    "Dương",
    "Đinh",
)
MALE = (
    ("Văn", "Đức", "Minh", "Hữu", "Quốc", "Thành"),
    ("Hùng", "Dũng", "Tuấn", "Nam", "Hải", "Sơn", "Long", "Cường", "Phúc", "Khánh", "Tùng"),
)
FEMALE = (
    ("Thị", "Ngọc", "Thu", "Thanh"),
    ("Lan", "Hương", "Mai", "Hoa", "Hằng", "Linh", "Trang", "Yến", "Nga"),
)


# --- province and communes ----------------------------------------------------------------


def load_province() -> tuple[dict[str, Any], BaseGeometry]:
    """The packaged province: its GeoJSON properties and its geometry (lon/lat)."""
    doc = json.loads(PROVINCE_FILE.read_text(encoding="utf-8"))
    feature = doc["features"][0]
    return feature["properties"], from_geojson(feature["geometry"])


def _polygonal(geom: BaseGeometry) -> Polygon | MultiPolygon:
    """The polygon parts of an intersection result, as one Polygon or MultiPolygon."""
    parts = [p for p in shapely.get_parts(geom) if p.geom_type == "Polygon" and p.area > 0]
    return parts[0] if len(parts) == 1 else MultiPolygon(parts)


def _random_point_in(area: BaseGeometry, rng: random.Random) -> Point:
    """A uniform random point inside `area` (rejection sampling in its bounding box)."""
    minx, miny, maxx, maxy = area.bounds
    for _ in range(10_000):
        p = Point(rng.uniform(minx, maxx), rng.uniform(miny, maxy))
        if area.contains(p):
            return p
    return area.representative_point()


def _voronoi_cells(area: BaseGeometry, seeds: list[Point]) -> list[Polygon | MultiPolygon]:
    """The Voronoi cells of `seeds` clipped to `area`, in the order of `seeds`."""
    cells = shapely.get_parts(shapely.voronoi_polygons(MultiPoint(seeds), extend_to=area))
    ordered = []
    for s in seeds:
        cell = next(c for c in cells if c.covers(s))
        ordered.append(_polygonal(cell.intersection(area)))
    return ordered


def cut_communes(province: BaseGeometry, n: int, seed: int) -> list[Polygon | MultiPolygon]:
    """Cut a lon/lat province into `n` synthetic communes of similar size (lon/lat, rounded).

    Seeded points, relaxed by three Lloyd iterations, then Voronoi cells clipped to the
    province, all in local metres; sorted north to south, then west to east.
    """
    frame = frame_for(province)
    area = frame.geom_to_xy(province)
    rng = random.Random(f"communes:{seed}")
    seeds = [_random_point_in(area, rng) for _ in range(n)]
    for _ in range(3):  # Lloyd relaxation: evens out the cell sizes
        cells = _voronoi_cells(area, seeds)
        seeds = [
            c.centroid if area.contains(c.centroid) else c.representative_point() for c in cells
        ]
    cells = _voronoi_cells(area, seeds)
    cells.sort(key=lambda c: (-round(c.centroid.y, -3), c.centroid.x))
    return [from_geojson(to_geojson(frame.geom_to_lonlat(c))) for c in cells]


def neighbours(communes: list[BaseGeometry]) -> dict[int, list[int]]:
    """Index -> indexes of the communes sharing a border with it."""
    tree = shapely.STRtree(communes)
    out = {}
    for i, c in enumerate(communes):
        near = tree.query(c, predicate="dwithin", distance=1e-6)  # about 0.1 m
        out[i] = sorted(int(j) for j in near if j != i)
    return out


# --- homes --------------------------------------------------------------------------------


def home_point(
    area: BaseGeometry, key: str, avoid: Sequence[tuple[tuple[float, float], float]] = ()
) -> tuple[float, float]:
    """A deterministic home (lon, lat) inside a lon/lat `area`, `HOME_MARGIN_M` from its edge if
    it can be, and clear of each `avoid` circle ((lon, lat), radius m) by `PROTECTION_CLEARANCE_M`.

    `key` (the supervisee id) seeds the choice, so the same registry always gives the same homes.
    """
    frame = frame_for(area)
    local = frame.geom_to_xy(area)
    inner = _largest(local.buffer(-HOME_MARGIN_M)) or _largest(local.buffer(-HOME_MARGIN_M / 4))
    inner = inner or _largest(local) or local
    circles = [(Point(frame.to_xy(*c)), r + PROTECTION_CLEARANCE_M) for c, r in avoid]
    rng = random.Random(f"home:{key}")
    for _ in range(200):
        p = _random_point_in(inner, rng)
        if all(p.distance(c) >= r for c, r in circles):
            return frame.to_lonlat(p.x, p.y)
    p = inner.representative_point()
    return frame.to_lonlat(p.x, p.y)


def _largest(geom: BaseGeometry) -> Polygon | None:
    parts = [p for p in shapely.get_parts(geom) if p.geom_type == "Polygon" and not p.is_empty]
    return max(parts, key=lambda p: p.area) if parts else None


def _circle_zones(zones: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [z for z in zones if z["kind"] == kind and "center" in z]


def residence_area(sup: dict[str, Any], units: dict[str, dict[str, Any]]) -> BaseGeometry | None:
    """The area a supervisee lives in: their unscheduled inclusion polygon, else their unit's
    boundary (a cấm cư trú person has no inclusion zone), else None."""
    for z in sup.get("zones", []):
        if z["kind"] == "inclusion" and "geometry" in z and not z.get("schedule"):
            return from_geojson(z["geometry"])
    boundary = units.get(str(sup.get("unit")), {}).get("boundary")
    return from_geojson(boundary) if boundary else None


def supervisee_home(
    sup: dict[str, Any], units: dict[str, dict[str, Any]]
) -> tuple[float, float] | None:
    """A supervisee's home: the centre of their curfew circle, else a point chosen by `home_point`
    in their residence area away from protection circles; None with neither."""
    for z in _circle_zones(sup.get("zones", []), "inclusion"):
        return (float(z["center"][0]), float(z["center"][1]))
    area = residence_area(sup, units)
    if area is None:
        return None
    avoid = [
        (tuple(z["center"]), float(z["radius_m"])) for z in _circle_zones(sup["zones"], "exclusion")
    ]
    return home_point(area, sup["id"], avoid)


def demo_homes(doc: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """Each device's home (lon, lat), from an import document (the demo's or another one).

    Devices whose supervisee has neither a circle, an inclusion polygon nor a unit boundary are
    left out.
    """
    units = {u["code"]: u for u in doc.get("units", [])}
    sups = {s["id"]: s for s in doc.get("supervisees", [])}
    homes = {}
    for dev in doc.get("devices", []):
        sup = sups.get(dev.get("supervisee"))
        home = supervisee_home(sup, units) if sup else None
        if home is not None:
            homes[dev["id"]] = home
    return homes


# --- the document -------------------------------------------------------------------------


def build_demo_document(
    seed: int = 7, per_commune: int = 3, communes: int = 10, today: date | None = None
) -> dict[str, Any]:
    """The demo import document: a PC10 unit, `communes` commune police units, `per_commune`
    supervisees in each (every sentence type, in turn), one device each, and two permits.

    Deterministic for (`seed`, `per_commune`, `communes`, `today`); `today` (local date, default
    the current one in Asia/Ho_Chi_Minh) anchors sentence dates and permits so they are current.
    """
    today = today or datetime.now(LOCAL_TZ).date()
    props, province = load_province()
    cells = cut_communes(province, communes, seed)
    units = _units(props, province, cells)
    near = neighbours(cells)
    rng = random.Random(f"people:{seed}")
    sups: list[dict[str, Any]] = []
    for i, cell in enumerate(cells):
        for _ in range(per_commune):
            k = len(sups)
            sups.append(
                _supervisee(k, units[i + 1]["code"], cell, [cells[j] for j in near[i]], rng, today)
            )
    devices = [{"id": f"dev-{k + 1:04d}", "supervisee": s["id"]} for k, s in enumerate(sups)]
    permits = _permits(sups, cells, near, units, today)
    return {"units": units, "supervisees": sups, "devices": devices, "permits": permits}


def _units(
    props: dict[str, Any], province: BaseGeometry, cells: list[BaseGeometry]
) -> list[dict[str, Any]]:
    """The province's PC10 unit, then one commune police unit per cell, `CAX-<gso><nn>`."""
    gso, pname = props["gso_code"], props["name"]
    top = {
        "code": f"PC10-{gso}",
        "name": f"Phòng Cảnh sát QLHC về TTXH (PC10), Công an tỉnh {pname}",
        "parent": None,
        "boundary": to_geojson(province),
        "ack_within_s": 900,
    }
    out = [top]
    for i, cell in enumerate(cells):
        kind, name = COMMUNE_NAMES[i % len(COMMUNE_NAMES)]
        suffix = "" if i < len(COMMUNE_NAMES) else f" {i // len(COMMUNE_NAMES) + 1}"
        out.append(
            {
                "code": f"CAX-{gso}{i + 1:02d}",
                "name": f"Công an {kind} {name}{suffix}",
                "parent": top["code"],
                "boundary": to_geojson(cell),
                "ack_within_s": 300,
                # the commune police station, where roll-call check-ins count (issue 13)
                "station": {"center": round_point(*_station_point(cell)), "radius_m": 150},
            }
        )
    return out


def _station_point(cell: BaseGeometry) -> tuple[float, float]:
    p = cell.representative_point()
    return p.x, p.y


def _person_name(rng: random.Random) -> str:
    middles, givens = MALE if rng.random() < 0.8 else FEMALE  # most supervisees are men
    return f"{rng.choice(FAMILY)} {rng.choice(middles)} {rng.choice(givens)}"


def _sentence_dates(stype: str, rng: random.Random, today: date) -> tuple[str, str]:
    """A start in the past and an end at least 60 days ahead, ISO dates."""
    lo, hi = TERM_DAYS[stype]
    start = today - timedelta(days=rng.randint(20, lo))
    end = max(start + timedelta(days=rng.randint(lo, hi)), today + timedelta(days=60))
    return start.isoformat(), end.isoformat()


def _supervisee(
    k: int, unit: str, cell: BaseGeometry, near: list[BaseGeometry], rng: random.Random, today: date
) -> dict[str, Any]:
    """Supervisee number `k` (0-based) of commune `cell`, with zones for their sentence type."""
    sid = f"sv-{k + 1:04d}"
    stype = SENTENCE_TYPES[k % len(SENTENCE_TYPES)]
    start, end = _sentence_dates(stype, rng, today)
    sup: dict[str, Any] = {
        "id": sid,
        "name": _person_name(rng),
        "sentence_type": stype,
        "sentence_start": start,
        "sentence_end": end,
        "unit": unit,
    }
    zones: list[dict[str, Any]] = []
    sup["zones"] = zones
    if stype in INCLUSION_TYPES:
        zones.append(
            {
                "id": "z-residence",
                "kind": "inclusion",
                "purpose": "residence",
                "geometry": to_geojson(cell),
            }
        )
    else:
        for n, ban in enumerate(rng.sample(near, min(len(near), rng.randint(1, 2))), start=1):
            zones.append(
                {
                    "id": f"z-ban-{n}",
                    "kind": "exclusion",
                    "purpose": "ban",
                    "geometry": to_geojson(ban),
                }
            )
    home = home_point(cell, sid)
    if stype == "quan_che":
        zones.append(_curfew_zone(home))
    if k % 5 == 1:
        zones.append(_protection_zone(cell, home, rng))
    return sup


def _curfew_zone(home: tuple[float, float]) -> dict[str, Any]:
    """A curfew: be within CURFEW_RADIUS_M of home from 22:00 to 05:00 local, every day."""
    return {
        "id": "z-curfew",
        "kind": "inclusion",
        "purpose": "curfew",
        "center": round_point(*home),
        "radius_m": CURFEW_RADIUS_M,
        "schedule": CURFEW_SCHEDULE,
    }


def _protection_zone(
    cell: BaseGeometry, home: tuple[float, float], rng: random.Random
) -> dict[str, Any]:
    """A circle around a victim's home 2-3 km from the supervisee's, inside the commune if it fits."""
    frame = frame_for(cell)
    hx, hy = frame.to_xy(*home)
    local = frame.geom_to_xy(cell)
    for _ in range(100):
        d, a = rng.uniform(*PROTECTION_DISTANCE_M), rng.uniform(0, 2 * math.pi)
        p = Point(hx + d * math.cos(a), hy + d * math.sin(a))
        if local.contains(p):
            break
    return {
        "id": "z-protect",
        "kind": "exclusion",
        "purpose": "protection",
        "center": round_point(*frame.to_lonlat(p.x, p.y)),
        "radius_m": PROTECTION_RADIUS_M,
    }


def _at(day: date, hh: int, mm: int = 0) -> str:
    """An ISO date-time at local time hh:mm on `day`, with the +07:00 offset."""
    return datetime.combine(day, time(hh, mm), OFFSET_07).isoformat()


def _permits(
    sups: list[dict[str, Any]],
    cells: list[BaseGeometry],
    near: dict[int, list[int]],
    units: list[dict[str, Any]],
    today: date,
) -> list[dict[str, Any]]:
    """Two permits: an án treo visit to a neighbouring commune (6.5 days, in two days' time;
    the policy allows 60 per trip) and a medical `anywhere` for a quản chế person (in force now,
    3.5 days; the policy allows 10)."""
    unit_index = {u["code"]: i - 1 for i, u in enumerate(units)}
    out = []
    visit = next((s for s in sups if s["sentence_type"] == "an_treo"), None)
    if visit and near[unit_index[visit["unit"]]]:
        dest = cells[near[unit_index[visit["unit"]]][0]]
        out.append(
            {
                "supervisee": visit["id"],
                "valid_from": _at(today + timedelta(days=2), 7),
                "valid_to": _at(today + timedelta(days=8), 19),
                "reason": "Thăm bố đẻ ốm nặng ở xã bên (visit to a seriously ill father)",
                "category": "family",  # a trip to relatives; "visit" means a visit to a banned locality
                "destination": to_geojson(dest),
            }
        )
    medical = next((s for s in sups if s["sentence_type"] == "quan_che"), None)
    if medical:
        out.append(
            {
                "supervisee": medical["id"],
                "valid_from": _at(today - timedelta(days=1), 7),
                "valid_to": _at(today + timedelta(days=2), 19),
                "reason": "Điều trị tại Bệnh viện Bạch Mai, Hà Nội (hospital treatment)",
                "category": "medical",
                "destination": "anywhere",
            }
        )
    return out


build_demo = build_demo_document  # short alias


def _ids(conn: psycopg.Connection, table: str, column: str) -> set[str]:
    return {r[0] for r in conn.execute(f"SELECT {column} FROM {table}")}  # noqa: S608 (names)


def missing_part(conn: psycopg.Connection, doc: dict) -> dict:
    """The records of the demo document ``doc`` that the database does not hold yet: units,
    supervisees (with their zones and permits) and devices, as an import document."""
    units = _ids(conn, "units", "code")
    sups = _ids(conn, "supervisees", "id")
    devices = _ids(conn, "devices", "id")
    new_sups = {s["id"] for s in doc["supervisees"] if s["id"] not in sups}
    return {
        "units": [u for u in doc["units"] if u["code"] not in units],
        "supervisees": [s for s in doc["supervisees"] if s["id"] in new_sups],
        "devices": [d for d in doc["devices"] if d["id"] not in devices],
        "permits": [p for p in doc.get("permits", []) if p["supervisee"] in new_sups],
    }


def main(argv: list[str] | None = None) -> int:
    """Print the demo document as JSON."""
    ap = argparse.ArgumentParser(prog="python -m simulators.demo", description=main.__doc__)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--per-commune", type=int, default=3)
    ap.add_argument("--communes", type=int, default=10)
    ap.add_argument("--today", type=date.fromisoformat, default=None, help="local date, YYYY-MM-DD")
    args = ap.parse_args(argv)
    doc = build_demo_document(args.seed, args.per_commune, args.communes, args.today)
    json.dump(doc, sys.stdout, ensure_ascii=False, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
