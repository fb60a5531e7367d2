"""Zone parsing: valid forms and every refusal of the issue, each with its JSON path."""

import pytest

from geofence.zones import ZoneError, parse_geometry, parse_zone

SQUARE = [[105.80, 21.00], [105.81, 21.00], [105.81, 21.01], [105.80, 21.01], [105.80, 21.00]]


def poly(*rings):
    return {"type": "Polygon", "coordinates": [list(r) for r in rings]}


def refuse(obj, path="$.zones[0]"):
    with pytest.raises(ZoneError) as exc:
        parse_zone(obj, "S1", path)
    return exc.value


def test_polygon_zone_with_schedule_and_overrides():
    z = parse_zone(
        {"id": "home", "kind": "inclusion", "purpose": "curfew", "geometry": poly(SQUARE),
         "schedule": [{"days": [1, 2, 3, 4, 5, 6, 7], "start": "22:00", "end": "06:00"}],
         "margin_m": 25, "confirm_fixes": 3, "escalate_after_s": 600},
        "S1",
    )  # fmt: skip
    assert (z.kind, z.purpose, z.margin_m, z.confirm_fixes, z.escalate_after_s) == (
        "inclusion", "curfew", 25.0, 3, 600)  # fmt: skip
    assert z.scheduled and z.schedule[0].start_min == 22 * 60 and z.schedule[0].end_min == 6 * 60
    assert parse_zone(z.to_json(), "S1") == z


def test_circle_zone_and_multipolygon_with_hole():
    c = parse_zone({"id": "v", "kind": "exclusion", "purpose": "protection", "center": [105.85, 21.03],
                    "radius_m": 200}, "S1")  # fmt: skip
    assert c.circle is not None and c.circle.radius_m == 200 and c.geometry.area > 0
    hole = [
        [105.803, 21.003],
        [105.806, 21.003],
        [105.806, 21.006],
        [105.803, 21.006],
        [105.803, 21.003],
    ]
    far = [[p[0] + 0.1, p[1]] for p in SQUARE]
    g = parse_geometry({"type": "MultiPolygon", "coordinates": [[SQUARE, hole], [far]]})
    assert g.geom_type == "MultiPolygon" and len(g.geoms[0].interiors) == 1


@pytest.mark.parametrize(
    ("geometry", "path", "words"),
    [
        (poly([[105.80, 21.00], [105.81, 21.01], [105.81, 21.00], [105.80, 21.01], [105.80, 21.00]]),
         "$.zones[0].geometry.coordinates[0][0]", "self-intersects"),
        (poly(SQUARE[:-1]), "$.zones[0].geometry.coordinates[0][3]", "not closed"),
        (poly([]), "$.zones[0].geometry.coordinates[0]", "empty"),
        ({"type": "Polygon", "coordinates": []}, "$.zones[0].geometry.coordinates", "empty"),
        (poly([[105.80, 21.0], [105.81, 21.0], [105.82, 21.0], [105.80, 21.0]]),
         "$.zones[0].geometry.coordinates[0]", "zero area"),
        (poly([[p[1], p[0]] for p in SQUARE]), "$.zones[0].geometry.coordinates[0][0][1]", "swapped"),
        (poly([[p[0], p[1] - 16] for p in SQUARE]), "$.zones[0].geometry.coordinates[0][0]", "outside Vietnam"),
        (poly([[105.8, 21.0], [105.81, 21.0], [105.8, 21.0], [105.8, 21.0]]),
         "$.zones[0].geometry.coordinates[0]", "fewer than 3 distinct"),
        (poly([[p[0] + 100, p[1]] for p in SQUARE]), "$.zones[0].geometry.coordinates[0][0][0]",
         "out of range"),
        (poly([[105.8, "21"], *SQUARE[1:]]), "$.zones[0].geometry.coordinates[0][0][1]", "number"),
        (poly([[105.8, float("nan")], *SQUARE[1:]]), "$.zones[0].geometry.coordinates[0][0][1]", "finite"),
        ({"type": "Point", "coordinates": [105.8, 21.0]}, "$.zones[0].geometry.type", "Polygon"),
        ({"type": "MultiPolygon", "coordinates": [[SQUARE], [[[p[0] + 0.005, p[1]] for p in SQUARE]]]},
         "$.zones[0].geometry", "Self-intersection"),
    ],
)  # fmt: skip
def test_invalid_geometry_is_refused_with_its_path(geometry, path, words):
    err = refuse({"id": "z", "kind": "inclusion", "geometry": geometry})
    assert err.path == path
    assert words.lower() in err.message.lower()


def test_swapped_position_that_lands_in_vietnam_when_swapped_says_so():
    # [8.9, 105.0] read as lon 8.9: swapped back, (105.0, 8.9) is in Vietnam
    ring = [[8.9, 105.0], [8.9, 105.01], [8.91, 105.01], [8.9, 105.0]]
    err = refuse({"id": "z", "kind": "inclusion", "geometry": poly(ring)})
    assert "swapped" in err.message


@pytest.mark.parametrize(
    ("obj", "path"),
    [
        ({"kind": "inclusion", "geometry": poly(SQUARE)}, "$.zones[0].id"),
        ({"id": "z", "kind": "inside", "geometry": poly(SQUARE)}, "$.zones[0].kind"),
        ({"id": "z", "kind": "inclusion", "purpose": "home", "geometry": poly(SQUARE)}, "$.zones[0].purpose"),
        ({"id": "z", "kind": "inclusion"}, "$.zones[0]"),
        ({"id": "z", "kind": "inclusion", "geometry": poly(SQUARE), "radius_m": 5}, "$.zones[0]"),
        ({"id": "z", "kind": "inclusion", "center": [105.8, 21.0], "radius_m": -5}, "$.zones[0].radius_m"),
        ({"id": "z", "kind": "inclusion", "center": [21.0, 105.8], "radius_m": 50}, "$.zones[0].center[1]"),
        ({"id": "z", "kind": "inclusion", "geometry": poly(SQUARE), "margin": 5}, "$.zones[0].margin"),
        ({"id": "z", "kind": "inclusion", "geometry": poly(SQUARE), "confirm_fixes": 0},
         "$.zones[0].confirm_fixes"),
        ({"id": "z", "kind": "inclusion", "geometry": poly(SQUARE), "margin_m": True}, "$.zones[0].margin_m"),
    ],
)  # fmt: skip
def test_invalid_zone_fields_are_refused_with_their_path(obj, path):
    assert refuse(obj).path == path


@pytest.mark.parametrize(
    ("schedule", "path"),
    [
        ([{"days": [1], "start": "25:00", "end": "06:00"}], "$.zones[0].schedule[0].start"),
        ([{"days": [1], "start": "22:00", "end": "6:00"}], "$.zones[0].schedule[0].end"),
        ([{"days": [0], "start": "22:00", "end": "06:00"}], "$.zones[0].schedule[0].days[0]"),
        ([{"days": [], "start": "22:00", "end": "06:00"}], "$.zones[0].schedule[0].days"),
        ([{"days": [1, 1], "start": "22:00", "end": "06:00"}], "$.zones[0].schedule[0].days"),
        ([{"days": [1], "start": "22:00"}], "$.zones[0].schedule[0].end"),
        ([{"days": [1], "start": "22:00", "end": "06:00", "tz": "UTC"}], "$.zones[0].schedule[0].tz"),
        ([], "$.zones[0].schedule"),
        ({"days": [1]}, "$.zones[0].schedule"),
    ],
)  # fmt: skip
def test_bad_schedule_format_is_refused_with_its_path(schedule, path):
    assert (
        refuse(
            {"id": "z", "kind": "inclusion", "geometry": poly(SQUARE), "schedule": schedule}
        ).path
        == path
    )


def test_real_provinces_are_valid_zones():
    from .helpers import vn_provinces

    assert len(vn_provinces()) == 63
