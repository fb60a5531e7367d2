"""`giamsat loadtest` against a running service: a small, bounded run that must keep up, store
every acknowledged fix and see every violator's alert."""

import re
import subprocess
import sys

import pytest

from tests.drills.harness import Stack

pytestmark = [pytest.mark.services, pytest.mark.slow]


def test_loadtest_reports_a_run_the_service_kept_up_with():
    with Stack("loadtest") as stack:
        stack.start_worker()
        stack.start_api()
        run = subprocess.run(
            [sys.executable, "-m", "giamsat", "loadtest", "--rate", "400", "--duration", "8",
             "--devices", "40", "--violators", "0.25", "--publishers", "1"],
            env=stack.env(), capture_output=True, text=True, timeout=180)
        out = run.stdout
        dead = stack.query("SELECT reason, left(detail, 200), topic, count(*) FROM dead_letters "
                           "GROUP BY 1, 2, 3 ORDER BY 4 DESC LIMIT 10")
        assert run.returncode == 0, f"{out}{run.stderr}\ndead letters: {dead}"
        assert "RESULT: the service kept up" in out
        published = int(re.search(r"\(([\d,]+) messages of 1 fix", out)[1].replace(",", ""))
        acked = int(re.search(r"([\d,]+) acknowledged by the broker", out)[1].replace(",", ""))
        stored = int(re.search(r"sustained \(([\d,]+) stored", out)[1].replace(",", ""))
        assert published == acked == stored > 2000
        # the fleet's own rows, counted independently of the tool
        rows = stack.query("SELECT count(*) FROM fixes WHERE device_id LIKE 'lt-d-%%'")[0][0]
        assert rows == stored
        latency = re.search(r"latency over (\d+) of (\d+) violators: p50 (\d+) ms", out)
        assert latency and latency[1] == latency[2] == "10", out
        assert "giamsat worker" in out and "postgresql" in out  # CPU per process group
