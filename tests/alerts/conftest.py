import pytest

from tests.alerts.helpers import Clock, seed_registry


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def registry(db):
    """One supervisee (án treo) SV1 wearing DEV1, of commune CAX-BN-001 under PC10-BN."""
    return seed_registry(db)
