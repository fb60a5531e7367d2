"""deploy/systemd: the units verify with systemd-analyze (when it is installed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "deploy" / "systemd"


def test_unit_runs_giamsat_up_hardened():
    text = (UNITS / "giamsat.service").read_text()
    for line in ("ExecStart=/opt/giamsat/venv/bin/giamsat up", "Restart=on-failure",
                 "EnvironmentFile=/etc/giamsat/giamsat.env", "DynamicUser=yes",
                 "NoNewPrivileges=yes", "ProtectSystem=strict", "CapabilityBoundingSet="):
        assert line + "\n" in text


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
@pytest.mark.parametrize("unit", ["giamsat.service", "giamsat-broker-config.service"])
def test_systemd_analyze_verify(unit, tmp_path):
    # verify also checks that ExecStart's program exists: point it at one that does
    text = (UNITS / unit).read_text().replace("/opt/giamsat/venv/bin/giamsat", "/bin/true")
    (tmp_path / unit).write_text(text)
    res = subprocess.run(["systemd-analyze", "verify", unit], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout + res.stderr == "", res.stdout + res.stderr
