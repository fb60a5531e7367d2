"""giamsat import and the commune police station's zone (issue 13): imported, kept when a later
file leaves it out, a malformed one refused naming its JSON path."""

import copy

import pytest

from registry.document import ImportError_, import_document
from simulators.demo import build_demo_document

pytestmark = pytest.mark.services

STATION = {"center": [106.07, 21.18], "radius_m": 120}


@pytest.fixture(scope="module")
def demo_doc():
    return build_demo_document(seed=5, per_commune=1, communes=2)


def _commune(doc: dict) -> dict:
    return next(u for u in doc["units"] if u.get("parent"))


def _station(db, code: str):
    return db.execute("SELECT station FROM units WHERE code = %s", (code,)).fetchone()[0]


def test_a_station_is_imported_and_kept_by_a_file_without_it(db, demo_doc):
    doc = copy.deepcopy(demo_doc)
    unit = _commune(doc)
    unit["station"] = STATION
    import_document(db, doc)
    assert _station(db, unit["code"]) == STATION
    assert not import_document(db, doc).changed  # twice changes nothing
    older = copy.deepcopy(doc)  # a file of before issue 13: no stations
    for u in older["units"]:
        u.pop("station", None)
    assert not import_document(db, older).changed  # keeps the stations
    assert _station(db, unit["code"]) == STATION


def test_a_malformed_station_is_refused_naming_its_path(db, demo_doc):
    doc = copy.deepcopy(demo_doc)
    unit = _commune(doc)
    unit["station"] = {"center": [106.07, 21.18], "radius_m": -5}
    with pytest.raises(ImportError_) as err:
        import_document(db, doc)
    index = doc["units"].index(unit)
    assert any(p == f"$.units[{index}].station.radius_m" for p, _ in err.value.errors), \
        err.value.errors
    assert db.execute("SELECT count(*) FROM units").fetchone()[0] == 0
