"""The demo registry: complete, consistent, valid geometry, deterministic; homes where they belong."""

from __future__ import annotations

import itertools
import json
import re
from datetime import date, datetime

import pytest
from shapely.geometry import Point, shape

from simulators import demo
from simulators.geo import frame_for

TODAY = date(2026, 11, 26)


@pytest.fixture(scope="module")
def doc() -> dict:
    return demo.build_demo_document(seed=7, today=TODAY)


def _units(doc):
    return {u["code"]: u for u in doc["units"]}


def _rings(geojson):
    polys = [geojson["coordinates"]] if geojson["type"] == "Polygon" else geojson["coordinates"]
    return [ring for poly in polys for ring in poly]


def _check_geometry(geojson):
    g = shape(geojson)
    assert g.geom_type in ("Polygon", "MultiPolygon") and g.is_valid and not g.is_empty
    for ring in _rings(geojson):
        assert ring[0] == ring[-1] and len(ring) >= 4  # closed
        for lon, lat in ring:
            assert round(lon, 6) == lon and round(lat, 6) == lat
            assert 105 < lon < 107 and 20 < lat < 22


def test_contract_sections_and_json(doc):
    assert set(doc) == {"units", "supervisees", "devices", "permits"}
    assert json.loads(json.dumps(doc, ensure_ascii=False)) == doc


def test_units_have_parents_and_boundaries(doc):
    units = _units(doc)
    tops = [u for u in doc["units"] if u["parent"] is None]
    assert [u["code"] for u in tops] == ["PC10-27"]
    communes = [u for u in doc["units"] if u["parent"]]
    assert 8 <= len(communes) <= 12
    for u in doc["units"]:
        assert u["parent"] is None or u["parent"] in units
        assert u["ack_within_s"] > 0 and u["name"]
        _check_geometry(u["boundary"])
    for u in communes:
        assert re.fullmatch(r"CAX-27\d{2}", u["code"]) and u["name"].startswith("Công an ")


def test_communes_tile_the_province(doc):
    units = _units(doc)
    province = shape(units["PC10-27"]["boundary"])
    cells = [shape(u["boundary"]) for u in doc["units"] if u["parent"]]
    union_area = sum(c.area for c in cells)
    assert union_area == pytest.approx(province.area, rel=1e-4)
    for a, b in itertools.combinations(cells, 2):
        assert a.intersection(b).area < 1e-9  # borders shared, no overlap


def test_every_sentence_type_and_references(doc):
    units = _units(doc)
    sups = {s["id"]: s for s in doc["supervisees"]}
    assert len(sups) == len(doc["supervisees"]) == 30
    assert {s["sentence_type"] for s in sups.values()} == set(demo.SENTENCE_TYPES)
    for s in sups.values():
        assert units[s["unit"]]["parent"] == "PC10-27"
        assert s["name"] and date.fromisoformat(s["sentence_start"]) <= TODAY
        assert date.fromisoformat(s["sentence_end"]) > TODAY
    devices = doc["devices"]
    assert [d["id"] for d in devices] == [f"dev-{i:04d}" for i in range(1, 31)]
    assert sorted(d["supervisee"] for d in devices) == sorted(sups)
    assert all(p["supervisee"] in sups for p in doc["permits"])


def test_zones_per_sentence_type(doc):
    units = _units(doc)
    for s in doc["supervisees"]:
        zones = s["zones"]
        assert len({z["id"] for z in zones}) == len(zones)
        residence = [z for z in zones if z["purpose"] == "residence"]
        bans = [z for z in zones if z["purpose"] == "ban"]
        if s["sentence_type"] == "cam_cu_tru":
            assert not [z for z in zones if z["kind"] == "inclusion"]
            assert 1 <= len(bans) <= 2
            for z in bans:
                assert z["kind"] == "exclusion"
                assert z["geometry"] != units[s["unit"]]["boundary"]
                assert z["geometry"] in [u["boundary"] for u in units.values()]
        else:
            assert len(residence) == 1 and residence[0]["kind"] == "inclusion" and not bans
            assert residence[0]["geometry"] == units[s["unit"]]["boundary"]
        for z in zones:
            if "geometry" in z:
                _check_geometry(z["geometry"])
            else:
                assert len(z["center"]) == 2 and z["radius_m"] > 0


def test_curfews_and_protection_circles(doc):
    zones = [z for s in doc["supervisees"] for z in s["zones"]]
    curfews = [z for z in zones if z["purpose"] == "curfew"]
    protections = [z for z in zones if z["purpose"] == "protection"]
    assert 2 <= len(curfews) and 2 <= len(protections)
    for z in curfews:
        assert z["kind"] == "inclusion" and z["radius_m"] == 300
        assert z["schedule"] == [{"days": [1, 2, 3, 4, 5, 6, 7], "start": "22:00", "end": "05:00"}]
    for z in protections:
        assert z["kind"] == "exclusion" and z["radius_m"] == 500


def test_permits_within_policy(doc):
    sups = {s["id"]: s for s in doc["supervisees"]}
    limits = {"an_treo": 60, "quan_che": 10}
    kinds = set()
    for p in doc["permits"]:
        start, end = datetime.fromisoformat(p["valid_from"]), datetime.fromisoformat(p["valid_to"])
        assert p["valid_from"].endswith("+07:00") and p["valid_to"].endswith("+07:00")
        assert start < end and p["reason"]
        stype = sups[p["supervisee"]]["sentence_type"]
        assert (end - start).days <= limits[stype]
        if p["destination"] == "anywhere":
            kinds.add("anywhere")
        else:
            _check_geometry(p["destination"])
            home = shape(
                next(
                    z["geometry"]
                    for z in sups[p["supervisee"]]["zones"]
                    if z["purpose"] == "residence"
                )
            )
            assert home.intersection(shape(p["destination"])).area < 1e-9  # another commune
            kinds.add("destination")
    assert kinds == {"anywhere", "destination"}


def test_deterministic_for_a_seed(doc):
    assert demo.build_demo_document(seed=7, today=TODAY) == doc
    other = demo.build_demo_document(seed=8, today=TODAY)
    assert other["units"][1]["boundary"] != doc["units"][1]["boundary"]


def test_size_parameters():
    big = demo.build_demo_document(seed=3, per_commune=7, communes=12, today=TODAY)
    assert len(big["units"]) == 13 and len(big["devices"]) == 84
    assert len(set(d["id"] for d in big["devices"])) == 84


def test_homes_inside_residence_and_away_from_circles(doc):
    homes = demo.demo_homes(doc)
    units = _units(doc)
    sups = {s["id"]: s for s in doc["supervisees"]}
    assert set(homes) == {d["id"] for d in doc["devices"]}
    for d in doc["devices"]:
        s = sups[d["supervisee"]]
        area = shape(
            units[s["unit"]]["boundary"]
        )  # = the residence zone, or the cấm cư trú's commune
        frame = frame_for(area)
        home = Point(frame.to_xy(*homes[d["id"]]))
        local = frame.geom_to_xy(area)
        assert local.contains(home)
        assert local.exterior.distance(home) >= demo.HOME_MARGIN_M  # GPS noise never crosses
        for z in s["zones"]:
            if z["purpose"] == "curfew":
                assert list(homes[d["id"]]) == z["center"]
            if z["purpose"] == "protection":
                assert home.distance(Point(frame.to_xy(*z["center"]))) >= z["radius_m"] + 1000
            if z["purpose"] == "ban":
                assert not shape(z["geometry"]).contains(Point(homes[d["id"]]))


def test_homes_are_stable(doc):
    assert demo.demo_homes(doc) == demo.demo_homes(json.loads(json.dumps(doc)))


def test_cli_prints_the_document(capsys):
    assert demo.main(["--seed", "7", "--today", "2026-11-26"]) == 0
    assert json.loads(capsys.readouterr().out) == demo.build_demo_document(seed=7, today=TODAY)
