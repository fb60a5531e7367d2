"""What an officer may send is bounded: body size, vertices per area, and zone purposes that
say what the zone is for."""

from __future__ import annotations

import math

import orjson
import pytest

from registry.document import ImportError_, import_document
from schema import connect
from tests.api.conftest import LAT0, LON0, SV_A

pytestmark = pytest.mark.services

ZONE_URL = f"/api/v1/supervisees/{SV_A}/zones"


def ring(n: int, r: float = 0.005) -> list[list[float]]:
    """A closed ring of n positions (n - 1 distinct) on a circle around commune A."""
    pts = [[round(LON0 - 0.1 + r * math.cos(2 * math.pi * k / (n - 1)), 7),
            round(LAT0 + r * math.sin(2 * math.pi * k / (n - 1)), 7)] for k in range(n - 1)]
    return [*pts, pts[0]]


def zone(n: int, kind: str = "exclusion", purpose: str = "other") -> dict:
    return {"kind": kind, "purpose": purpose,
            "geometry": {"type": "Polygon", "coordinates": [ring(n)]}}


def test_a_huge_zone_is_refused_for_its_size(api):
    """The probe of issue 16: 800,001 vertices, ~21 MB, from a commune officer."""
    body = orjson.dumps(zone(800_001))
    assert len(body) > 2_097_152
    r = api.client.put(f"{ZONE_URL}/huge", content=body, headers={
        **api.auth("xa.a"), "Content-Type": "application/json"})
    assert r.status_code == 413 and "at most 2097152 bytes" in r.json()["detail"]


def test_a_body_without_a_length_is_counted_as_it_comes(api):
    chunk = b" " * 65_536

    def chunks():
        yield b'{"kind": "exclusion", "pad": "'
        for _ in range(40):  # 2.6 MB
            yield chunk
        yield b'"}'

    r = api.client.put(f"{ZONE_URL}/streamed", content=chunks(), headers={
        **api.auth("xa.a"), "Content-Type": "application/json"})
    assert r.status_code == 413, r.text[:200]


def test_vertices_per_zone_are_bounded(api):
    h = api.auth("xa.a")
    over = api.client.put(f"{ZONE_URL}/many", json=zone(10_001), headers=h)
    assert over.status_code == 422, over.text[:300]
    assert "10001 positions: at most 10000" in over.json()["detail"]
    assert over.json()["path"] == "$.geometry.coordinates"
    at_limit = api.client.put(f"{ZONE_URL}/many", json=zone(10_000), headers=h)
    assert at_limit.status_code == 201, at_limit.text[:300]
    assert api.client.delete(f"{ZONE_URL}/many", headers=h).status_code == 204


def test_a_permit_destination_is_bounded_too(api):
    r = api.client.post(f"/api/v1/supervisees/{SV_A}/permits", headers=api.auth("xa.a"), json={
        "valid_from": 1_772_000_000_000, "valid_to": 1_772_100_000_000, "reason": "khám bệnh",
        "category": "medical",
        "destination": {"type": "MultiPolygon", "coordinates": [[ring(6_000)], [ring(5_000)]]}})
    assert r.status_code == 422 and "11000 positions" in r.json()["detail"], r.text[:300]
    assert r.json()["path"] == "$.destination.coordinates"


@pytest.mark.parametrize("kind, purpose, ok", [
    ("exclusion", "residence", False),
    ("exclusion", "curfew", False),
    ("inclusion", "ban", False),
    ("inclusion", "protection", False),
    ("inclusion", "residence", True),
    ("exclusion", "protection", True),
    ("inclusion", "other", True),
    ("exclusion", "other", True),
])
def test_the_kind_must_fit_the_purpose(api, kind, purpose, ok):
    h = api.auth("xa.a")
    feature = {"type": "Feature", "properties": {"kind": kind, "purpose": purpose},
               "geometry": {"type": "Polygon", "coordinates": [ring(16)]}}
    r = api.client.put(f"{ZONE_URL}/fit-{kind}-{purpose}", json=feature, headers=h)
    if ok:
        assert r.status_code == 201, r.text
        api.client.delete(f"{ZONE_URL}/fit-{kind}-{purpose}", headers=h)
    else:
        assert r.status_code == 422 and r.json()["path"] == "$.properties.kind", r.text
        assert f"a {purpose} zone is an" in r.json()["detail"]
    # the contract's zone object form: the path is its own
    r = api.client.put(f"{ZONE_URL}/fit-obj", json=zone(16, kind, purpose), headers=h)
    assert r.status_code == (201 if ok else 422), r.text
    if not ok:
        assert r.json()["path"] == "$.kind"
    api.client.delete(f"{ZONE_URL}/fit-obj", headers=h)


def test_the_importer_checks_the_purpose_too(api):
    doc = {"supervisees": [{
        "id": "SV-IMP", "name": "n", "sentence_type": "an_treo", "sentence_start": "2025-01-01",
        "sentence_end": "2027-01-01", "unit": "CAX-T01",
        "zones": [{"id": "home", **zone(16, "exclusion", "residence")}]}]}
    with connect(api.db_url) as conn, pytest.raises(ImportError_) as info:
        import_document(conn, doc)
    assert [p for p, _ in info.value.errors] == ["$.supervisees[0].zones[0].kind"]
