"""POST /api/v1/supervisees/{id}/replay: province and admin roles only, in their scope; a
what-if run against proposed zones; bad input is a 4xx that says what is wrong."""

from __future__ import annotations

import pytest

from tests.api.conftest import LAT0, LON0, SV_A, SV_X, T0, square

pytestmark = pytest.mark.services

PERIOD = {"from": T0 - 60_000, "to": T0 + 3_600_000}


def test_province_replays_its_supervisee(api):
    r = api.client.post(f"/api/v1/supervisees/{SV_A}/replay", json=PERIOD,
                        headers=api.auth("tinh.t"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["fixes"] == 10
    # five fixes outside the residence square (the last too inaccurate to count)
    assert [(a["type"], a["active"]) for a in body["alerts"]] == [("zone_exit", True)]
    assert body["alerts"][0]["ts"] == T0 + 6 * 60_000  # confirmed by the second fix outside
    assert body["reproduced"] is False  # the seeded alert has no history of fixes
    assert body["differences"]


def test_what_if_a_wider_residence_opens_nothing(api):
    wide = {"id": "residence", "kind": "inclusion", "purpose": "residence",
            "geometry": square(LAT0, LON0 - 0.1, 0.05)}
    r = api.client.post(f"/api/v1/supervisees/{SV_A}/replay", json={**PERIOD, "zones": [wide]},
                        headers=api.auth("admin"))
    assert r.status_code == 200, r.text
    assert r.json()["alerts"] == [] and r.json()["reproduced"] is None


@pytest.mark.parametrize("user,sid,status", [
    ("xa.a", SV_A, 403),     # a commune officer may not replay
    ("tinh.x", SV_A, 404),   # another province's officer does not see the supervisee
    ("tinh.t", SV_X, 404),
])
def test_replay_access(api, user, sid, status):
    r = api.client.post(f"/api/v1/supervisees/{sid}/replay", json=PERIOD,
                        headers=api.auth(user))
    assert r.status_code == status, r.text


@pytest.mark.parametrize("body,needle", [
    ({"from": 5, "to": 1}, "after from"),
    ({"from": "yesterday", "to": 1}, "from: epoch ms"),
    ({"from": 0, "to": 253402300799999 + 1}, "to: epoch ms"),
    ({**PERIOD, "zones": [{"id": "z"}]}, "$.zones[0]"),
    ({**PERIOD, "permits": [{"valid_from": 1, "valid_to": "x", "destination": "anywhere"}]},
     "$.permits[0].valid_to"),
])
def test_bad_replay_requests_say_what_is_wrong(api, body, needle):
    r = api.client.post(f"/api/v1/supervisees/{SV_A}/replay", json=body,
                        headers=api.auth("admin"))
    assert r.status_code == 422, r.text
    assert needle in r.text
