"""`giamsat up --demo` as a user runs it: embedded services, demo data, fleet, API; clean stop."""

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from giamsat.services import free_port

pytestmark = [pytest.mark.services, pytest.mark.slow]


def _wait(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_up_demo_runs_and_stops_cleanly():
    data = Path(tempfile.mkdtemp(prefix="giamsat-up-"))
    data.chmod(0o755)  # the embedded PostgreSQL runs unprivileged when we are root
    http = free_port()
    env = {**os.environ, "GIAMSAT_DATA_DIR": str(data / "state"),
           "GIAMSAT_EMBEDDED_MQTT_PORT": str(free_port()),
           "GIAMSAT_EMBEDDED_PG_PORT": str(free_port()), "GIAMSAT_HTTP": f"127.0.0.1:{http}",
           "GIAMSAT_WORKER_METRICS_PORT": str(free_port()), "GIAMSAT_ADMIN_PASSWORD": "s3cret-admin"}
    for key in ("GIAMSAT_DATABASE_URL", "GIAMSAT_MQTT_URL"):
        env.pop(key, None)
    log = open(data / "up.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "giamsat", "up", "--demo"], env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{http}"
    try:
        _wait(lambda: _ready(base), 120, "/readyz")
        text = (data / "up.log").read_text()
        officer = re.search(r"^\s+(cax-\d+)\s+(\S+)\s+(CAX-\d+)$", text, re.M)
        assert officer, text
        token = httpx.post(f"{base}/api/v1/auth/token",
                           data={"username": officer[1], "password": officer[2]}).json()
        auth = {"Authorization": f"Bearer {token['access_token']}"}
        admin = httpx.post(f"{base}/api/v1/auth/token",
                           data={"username": "admin", "password": "s3cret-admin"})
        assert admin.status_code == 200
        sups = httpx.get(f"{base}/api/v1/supervisees", headers=auth).json()
        assert sups and all(s["unit"] == officer[3] for s in sups)

        def stored() -> bool:
            metrics = httpx.get(f"{base}/metrics").text
            m = re.search(r'giamsat_ingest_stored_records_total\{kind="fix"\} (\S+)', metrics)
            return m is not None and float(m[1]) > 0

        _wait(stored, 90, "the simulated fleet's fixes to be stored")
        assert httpx.get(f"{base}/", timeout=5).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
        log.close()
    out = (data / "up.log").read_text()
    assert code == 0, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    # every child and embedded service is gone
    leftovers = subprocess.run(["pgrep", "-f", str(data)], capture_output=True, text=True)
    assert leftovers.stdout.strip() == "", leftovers.stdout
