"""`giamsat up --demo` as a user runs it: embedded services, demo data, fleet, API; clean stop."""

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from embedded.services import free_port, port_is_free, shared_pg_base

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


def _up_env(data: Path, http: int, default_ports: bool = False) -> dict[str, str]:
    """Embedded services on free ports (or, with ``default_ports``, on their defaults unless
    taken), state under ``data``."""
    if not default_ports:
        data.chmod(0o755)  # the embedded PostgreSQL runs unprivileged when we are root
    env = {**os.environ, "GIAMSAT_DATA_DIR": str(data / "state"),
           "GIAMSAT_EMBEDDED_MQTT_PORT": str(free_port()),
           "GIAMSAT_EMBEDDED_AMQP_PORT": str(free_port()),
           "GIAMSAT_EMBEDDED_PG_PORT": str(free_port()), "GIAMSAT_HTTP": f"127.0.0.1:{http}",
           "GIAMSAT_WORKER_METRICS_PORT": str(free_port()), "GIAMSAT_ADMIN_PASSWORD": "s3cret-admin"}
    drop = ["GIAMSAT_DATABASE_URL", "GIAMSAT_MQTT_URL", "GIAMSAT_AMQP_URL"]
    if default_ports:
        drop += ["GIAMSAT_EMBEDDED_MQTT_PORT", "GIAMSAT_EMBEDDED_AMQP_PORT", "GIAMSAT_EMBEDDED_PG_PORT"]
    for key in drop:
        env.pop(key, None)
    return env


@contextlib.contextmanager
def _taken(*ports: int):
    """Hold those of ``ports`` that are free, so that every one of them is taken."""
    held = []
    try:
        for port in ports:
            if port_is_free(port):
                s = socket.socket()
                s.bind(("127.0.0.1", port))
                s.listen()
                held.append(s)
        yield
    finally:
        for s in held:
            s.close()


def _alerts(base: str, auth: dict[str, str], kind: str) -> list[dict]:
    body = httpx.get(f"{base}/api/v1/alerts", params={"type": kind}, headers=auth).json()
    return body["alerts"]


def _stored_fixes(base: str) -> float:
    metrics = httpx.get(f"{base}/metrics").text
    m = re.search(r'giamsat_ingest_stored_records_total\{kind="fix"\} (\S+)', metrics)
    return float(m[1]) if m else 0.0


def test_up_demo_runs_ctrl_c_stops_it_cleanly_and_kill_9_leaves_no_child():
    """As a user runs the README's first command: from a clone in a private (0700) directory,
    as root or not, on a machine whose broker and database ports are taken already. The
    embedded services move to free ports and say so, the fleet follows them, and a violation
    shows as an alert soon after the start.

    Ctrl-C in a terminal signals the whole foreground group: ``up`` alone acts on it and stops
    its children in order, so the worker stores every message the simulator saw acknowledged,
    and every child and embedded service is gone. Started again and killed -9, ``up`` takes its
    children with it. (One start-up serves both: a cold start costs seconds of CPU.)"""
    data = Path(tempfile.mkdtemp(prefix="giamsat-up-"))  # 0700, as mktemp -d makes it
    http = free_port()
    env = _up_env(data, http, default_ports=True)
    env.pop("GIAMSAT_DATA_DIR")  # the default, ./.giamsat in the clone
    clone = data / "clone"
    clone.mkdir()
    base = f"http://127.0.0.1:{http}"
    shared = shared_pg_base(clone / ".giamsat")
    children: list[str] = []
    proc: subprocess.Popen | None = None
    try:
        with _taken(1883, 55432):
            with open(data / "up.log", "wb") as log:
                proc = subprocess.Popen([sys.executable, "-m", "giamsat", "up", "--demo"],
                                        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=clone,
                                        start_new_session=True)
                try:
                    try:
                        _check_demo(data, base, proc)
                    except AssertionError as exc:  # say what up said
                        raise AssertionError(f"{exc}\n--- up.log:\n"
                                             + (data / "up.log").read_text()[-4000:]) from None
                    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
                    code = proc.wait(60)
                finally:
                    if proc.poll() is None:
                        os.killpg(proc.pid, signal.SIGKILL)
            out = (data / "up.log").read_text()
            assert code == 0, out[-3000:]
            assert "Traceback" not in out, out[-3000:]
            acked = re.search(r"^simulated \d+ devices for [\d.]+ s: sent \d+ messages .*, "
                              r"acked (\d+),", out, re.M)
            stored = re.search(r"ingest stopped: \{'messages': (\d+),", out)
            assert acked and stored, out[-3000:]
            assert int(stored[1]) == int(acked[1]), out[-3000:]
            # every child and embedded service is gone
            for path in (data, shared):
                leftovers = subprocess.run(["pgrep", "-f", str(path)], capture_output=True,
                                           text=True)
                assert leftovers.stdout.strip() == "", leftovers.stdout

            # killed -9: the worker, the API and the simulator go too (the embedded servers run
            # in sessions of their own and are found again by the next start)
            with open(data / "up2.log", "wb") as log:
                proc = subprocess.Popen([sys.executable, "-m", "giamsat", "up", "--demo"],
                                        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=clone,
                                        start_new_session=True)
                _wait(lambda: _ready(base), 120, "/readyz after a restart")

                def supervised() -> list[str] | None:  # worker, api, simulator (not the servers)
                    assert proc is not None
                    pids = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                          text=True).stdout.split()
                    found = []
                    for pid in pids:
                        with contextlib.suppress(OSError):  # gone meanwhile
                            if b"-m\0giamsat\0" in Path(f"/proc/{pid}/cmdline").read_bytes():
                                found.append(pid)
                    return found if len(found) == 3 else None

                children = _wait(supervised, 60, "up's three children")
                proc.kill()
                proc.wait(10)
                _wait(lambda: all(not Path(f"/proc/{pid}").exists() for pid in children), 30,
                      "the children to exit after up was killed")
    finally:
        if proc is not None and proc.poll() is None:  # the test failed before killing it
            os.killpg(proc.pid, signal.SIGKILL)
        for pid in children:  # had they outlived up, they must not outlive the test
            with contextlib.suppress(OSError):
                os.kill(int(pid), signal.SIGKILL)
        for path in (data, shared):
            subprocess.run(["pkill", "-f", str(path)])
            _wait(lambda p=path: subprocess.run(["pgrep", "-f", str(p)], capture_output=True,
                                                text=True).stdout.strip() == "", 30,
                  "the servers to stop")
        shutil.rmtree(shared, ignore_errors=True)


def _check_demo(data: Path, base: str, proc: subprocess.Popen) -> None:
    """Ready, ports announced, officers sign in in scope, fixes stored, a zone alert."""
    _wait(lambda: _ready(base) or proc.poll() is not None, 120, "/readyz")
    assert proc.poll() is None, (data / "up.log").read_text()[-3000:]
    text = (data / "up.log").read_text()
    for default in (1883, 55432):
        assert re.search(rf"listens on 127\.0\.0\.1:\d+ \({default} is taken\)", text), text
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

    _wait(lambda: _stored_fixes(base) > 0, 90, "the simulated fleet's fixes to be stored")
    assert httpx.get(f"{base}/", timeout=5).status_code == 200
    # the demo's `away` person is out of their residence from the fleet's first fixes
    admin_auth = {"Authorization": f"Bearer {admin.json()['access_token']}"}
    _wait(lambda: _alerts(base, admin_auth, "zone_exit"), 90, "the demo's first zone alert")


def test_a_taken_port_the_user_set_stops_up_with_the_setting_named(db_url):
    data = Path(tempfile.mkdtemp(prefix="giamsat-up-"))
    env = _up_env(data, free_port())
    env["GIAMSAT_DATABASE_URL"] = db_url
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = s.getsockname()[1]
        env["GIAMSAT_EMBEDDED_MQTT_PORT"] = str(taken)
        res = subprocess.run([sys.executable, "-m", "giamsat", "up"], env=env,
                             capture_output=True, text=True, timeout=60)
    assert res.returncode == 2, res.stderr[-2000:]
    assert f"GIAMSAT_EMBEDDED_MQTT_PORT={taken} is set" in res.stderr, res.stderr[-2000:]
