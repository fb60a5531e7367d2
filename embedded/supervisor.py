"""The tie between ``giamsat up`` and its children (worker, API, simulator): `Child` starts
one and restarts it with backoff when it dies; `die_with_supervisor` makes it go when up goes.

``up`` names itself in the children's environment; each child, once started, asks Linux to
send it SIGTERM when ``up`` dies, even by kill -9, so that no worker outlives its supervisor
holding the broker session. Done by the child itself rather than between fork and exec
(``preexec_fn``), which is unsafe in a process with threads.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

log = logging.getLogger("giamsat.up")

SUPERVISOR_ENV = "GIAMSAT_SUPERVISOR_PID"  # set by `giamsat up` for its children; not a setting
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_supervisor() -> None:
    """In a child of ``giamsat up``: SIGTERM when ``up`` dies; exit now if it already has."""
    supervisor = os.environ.pop(SUPERVISOR_ENV, None)  # not inherited any further
    if not supervisor or sys.platform != "linux":
        return
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != int(supervisor):  # up died before the request took effect
        raise SystemExit(f"giamsat: the supervisor (pid {supervisor}) is gone; exiting")


@dataclass
class Child:
    """A supervised child process, restarted with backoff when it dies."""

    name: str
    argv: list[str]
    env: dict[str, str]
    proc: subprocess.Popen | None = None
    restarts: int = 0
    started_at: float = 0.0
    restart_at: float | None = None

    def start(self) -> None:
        # Its own process group: a terminal's Ctrl-C reaches ``up`` alone, which then stops the
        # children in order (the simulator before the worker, so that the worker stores what
        # the simulator published). It dies with ``up``, even when ``up`` is killed -9
        # (die_with_supervisor).
        env = {**self.env, SUPERVISOR_ENV: str(os.getpid())}
        self.proc = subprocess.Popen(self.argv, env=env, process_group=0)
        self.started_at = time.monotonic()
        log.info("started %s (pid %d)", self.name, self.proc.pid)

    def check(self) -> None:
        """Restart the child when it has died, after a backoff that never blocks the caller."""
        if self.proc is None or self.proc.poll() is None:
            return
        now = time.monotonic()
        if self.restart_at is None:
            if now - self.started_at > 60:
                self.restarts = 0  # it ran a while: a fresh failure, not a crash loop
            delay = min(30.0, 2.0 ** self.restarts)
            self.restarts += 1
            self.restart_at = now + delay
            log.warning("%s exited with code %s; restarting in %.0f s", self.name,
                        self.proc.returncode, delay)
        elif now >= self.restart_at:
            self.restart_at = None
            self.start()

    def stop(self, timeout_s: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %.0f s; killing it", self.name, timeout_s)
            self.proc.kill()
            self.proc.wait(5)
