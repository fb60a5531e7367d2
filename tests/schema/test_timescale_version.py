"""Which TimescaleDB releases giamsat refuses (issue 16), and that the deployment pins none."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from schema.db import MIN_SAFE_TIMESCALE, timescale_defect

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


@pytest.mark.parametrize("version", ["2.16.0", "2.16.1", "2.17.0", "2.17.2", "2.18.0",
                                     "2.17.2-dev"])
def test_row_losing_releases(version: str) -> None:
    why = timescale_defect(version)
    assert why is not None and "#7672" in why and "ON CONFLICT DO NOTHING" in why


@pytest.mark.parametrize("version", ["2.15.3", "2.18.1", "2.18.2", "2.28.3", "2.29.2",
                                     "3.0.0", "2.27.0-p0", "not a version"])
def test_other_releases(version: str) -> None:
    assert timescale_defect(version) is None


def test_the_deployment_pins_a_release_that_keeps_rows() -> None:
    pins = re.findall(r"timescale/timescaledb(?:-ha)?:(\d+\.\d+\.\d+)",
                      (DEPLOY / "compose.yaml").read_text())
    assert pins
    for version in pins:
        assert timescale_defect(version) is None, version
        assert tuple(map(int, version.split("."))) >= tuple(map(int, MIN_SAFE_TIMESCALE.split(".")))
