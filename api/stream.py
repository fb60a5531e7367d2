"""The live alert stream behind ``GET /api/v1/alerts/stream`` (server-sent events).

One listener per API process: a dedicated async psycopg connection LISTENs on
``alert_changes`` (the alert_history trigger's NOTIFY '<alert id>:<history id>', sent on
commit), reads the change's JSON with ``alerts.delivery.stream.change_json`` and fans it out to
the connected officers whose scope covers the alert. After a lost connection it reconnects and
catches up from the last history id it saw (``changes_since``), so a database restart loses no
change. Each subscriber has a bounded queue; one that falls behind is closed and its
EventSource reconnects with ``Last-Event-ID``, replaying what it missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from alerts.delivery.stream import CHANNEL, change_json, changes_since, parse

log = logging.getLogger("giamsat.api.stream")

QUEUE_MAX = 1000  # changes buffered per subscriber before it is dropped (it reconnects)
RETRY_S = (0.5, 1, 2, 5, 10)  # reconnect backoff of the listener, seconds


@dataclass(eq=False)
class Subscriber:
    """One connected officer: which units' alerts they get, and their queue."""

    units: frozenset[str] | None  # None = all (admin)
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(QUEUE_MAX))
    closed: bool = False

    def wants(self, alert: dict[str, Any]) -> bool:
        if self.units is None:
            return True
        return alert.get("unit") in self.units or (
            bool(alert.get("escalated")) and alert.get("parent_unit") in self.units)

    def offer(self, alert: dict[str, Any]) -> None:
        if self.closed or not self.wants(alert):
            return
        try:
            self.queue.put_nowait(alert)
        except asyncio.QueueFull:
            self.close()

    def close(self) -> None:
        """End this subscriber's stream (a None sentinel; room is made for it)."""
        self.closed = True
        while True:
            try:
                self.queue.put_nowait(None)
                return
            except asyncio.QueueFull:
                self.queue.get_nowait()


class AlertStream:
    """The process's LISTEN connection and its subscribers (see the module docstring)."""

    def __init__(self, db_url: str, load: Callable[[Callable[[psycopg.Connection], Any]], Any]):
        self._db_url = db_url
        self._load = load  # runs fn(conn) on a pooled sync connection, in a worker thread
        self._subs: set[Subscriber] = set()
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listening = asyncio.Event()
        self.last_history_id: int | None = None

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    async def subscribe(self, units: frozenset[str] | None, timeout_s: float = 10) -> Subscriber:
        """A new subscriber; returns once the listener is LISTENing, so no change committed
        after this call is missed."""
        self._ensure_running()
        sub = Subscriber(units)
        self._subs.add(sub)
        try:
            await asyncio.wait_for(self._listening.wait(), timeout_s)
        except TimeoutError:
            self.unsubscribe(sub)
            raise
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subs.discard(sub)

    async def backlog(self, after_history_id: int, units: frozenset[str] | None) -> list[dict]:
        """Changes after a history id (for ``Last-Event-ID``), oldest first, at most 500."""
        unit_list = None if units is None else sorted(units)
        return await asyncio.to_thread(
            self._load, lambda conn: changes_since(conn, after_history_id, unit_list))

    def _ensure_running(self) -> None:
        loop = asyncio.get_running_loop()
        if self._task is not None and not self._task.done() and self._loop is loop:
            return
        self._loop = loop
        self._listening = asyncio.Event()
        self._task = loop.create_task(self._run(), name="giamsat-alert-stream")

    async def close(self) -> None:
        """Stop the listener and end every subscriber's stream."""
        for sub in list(self._subs):
            sub.close()
        self._subs.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, RuntimeError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        attempt = 0
        while True:
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database went away: reconnect and catch up
                attempt = 0 if self._listening.is_set() else attempt + 1
                self._listening.clear()
                delay = RETRY_S[min(attempt, len(RETRY_S) - 1)]
                log.warning("alert stream listener lost (%s); retrying in %.1f s",
                            type(exc).__name__, delay)
                await asyncio.sleep(delay)

    async def _listen(self) -> None:
        async with await psycopg.AsyncConnection.connect(self._db_url, autocommit=True) as conn:
            await conn.execute(f"LISTEN {CHANNEL}")
            if self.last_history_id is not None:
                for alert in await self.backlog(self.last_history_id, None):
                    self._publish(alert)
            self._listening.set()
            async for note in conn.notifies():
                alert_id, history_id = parse(note.payload)
                alert = await asyncio.to_thread(
                    self._load, lambda c, a=alert_id, h=history_id: change_json(c, a, h))
                if alert is not None:
                    self._publish({**alert, "history_id": alert.get("history_id") or history_id})

    def _publish(self, alert: dict[str, Any]) -> None:
        hid = alert.get("history_id")
        if isinstance(hid, int):
            self.last_history_id = max(self.last_history_id or 0, hid)
        for sub in list(self._subs):
            sub.offer(alert)
