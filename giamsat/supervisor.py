"""The tie between ``giamsat up`` and its children (worker, API, simulator).

``up`` names itself in the children's environment; each child, once started, asks Linux to
send it SIGTERM when ``up`` dies, even by kill -9, so that no worker outlives its supervisor
holding the broker session. Done by the child itself rather than between fork and exec
(``preexec_fn``), which is unsafe in a process with threads.
"""

from __future__ import annotations

import os
import signal
import sys

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
