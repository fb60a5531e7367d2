"""Property-based: schemathesis generates requests from /openapi.json; none may get a 5xx.

Runs as an admin (every operation reachable) and as a commune officer (scope checks on the
way), on this module's own seeded database. The live stream is left out: it never ends.

The schema is loaded at import (schemathesis' lazy ``from_fixture`` does not work with pytest 9)
from an app whose database is not needed for ``/openapi.json``; the requests go through
``LateApp`` to the real app, built on the seeded database by the ``target`` fixture.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from tests.api.conftest import MutableClock, make_app

pytestmark = pytest.mark.services


class LateApp:
    """An ASGI app that forwards to ``app``, which a fixture sets once the database exists."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        await self.app(scope, receive, send)


late = LateApp(make_app("postgresql://unused.invalid/none", MutableClock(0)))
schema = schemathesis.openapi.from_asgi("/openapi.json", late).exclude(
    path="/api/v1/alerts/stream")
FEW = settings(max_examples=6, deadline=None, derandomize=True, database=None,
               suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def target(api, mqtt_broker):
    from api.downlink import Downlink

    late.app = api.app
    # commands go to a real broker here (without one they are a deliberate 503)
    api.app.state.ctx.downlink = Downlink(mqtt_broker.url)
    yield api
    api.app.state.ctx.downlink.close()


@schema.parametrize()
@FEW
def test_as_admin(case, target):
    case.call_and_validate(headers=target.auth("admin"), checks=[not_a_server_error])


@schema.parametrize()
@FEW
def test_as_commune_officer(case, target):
    case.call_and_validate(headers=target.auth("xa.a"), checks=[not_a_server_error])
