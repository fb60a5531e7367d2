"""An in-memory channel for tests: records what it is given, fails on request."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import orjson

from alerts.delivery.base import Outcome, Outgoing


class MemoryChannel:
    """Keeps every attempt. ``fail`` decides per item whether an attempt fails (return an error
    text) or succeeds (None); by default everything succeeds."""

    def __init__(self, name: str = "mqtt", batched: bool = True,
                 fail: Callable[[Outgoing], str | None] | None = None) -> None:
        self.name = name
        self.batched = batched
        self.fail = fail
        self.attempts: list[tuple[Outgoing, Outcome]] = []
        self._cond = threading.Condition()

    def send(self, items: Sequence[Outgoing]) -> list[Outcome]:
        out = []
        for item in items:
            error = self.fail(item) if self.fail else None
            outcome = Outcome(ok=error is None, error=error)
            with self._cond:
                self.attempts.append((item, outcome))
                self._cond.notify_all()
            out.append(outcome)
        return out

    @property
    def delivered(self) -> list[Outgoing]:
        """Items whose attempt succeeded, in order."""
        with self._cond:
            return [i for i, o in self.attempts if o.ok]

    def messages(self) -> list[dict]:
        """The delivered alert JSON objects, in order."""
        return [orjson.loads(i.body) for i in self.delivered]

    def wait_for(self, n: int, timeout_s: float = 10.0) -> list[Outgoing]:
        """Wait until ``n`` items were delivered (raises TimeoutError otherwise)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while sum(o.ok for _, o in self.attempts) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self.name}: fewer than {n} deliveries")
                self._cond.wait(left)
        return self.delivered

    def close(self) -> None:
        pass
