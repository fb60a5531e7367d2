"""The channel interface: what a deliverer hands a channel, and what it gets back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Outgoing:
    """One delivery row being attempted. ``body`` is the alert JSON (the same bytes on every
    attempt); ``idempotency_key`` is fixed per row; ``url``/``secret`` are set for webhooks."""

    delivery_id: int
    alert_id: int
    target: str  # MQTT topic, or webhook id
    idempotency_key: str
    body: bytes
    attempt: int  # 1 for the first attempt
    url: str | None = None
    secret: str | None = None


@dataclass(frozen=True)
class Outcome:
    """The result of one attempt."""

    ok: bool
    status_code: int | None = None
    error: str | None = None
    duration_ms: float = 0.0


class Channel(Protocol):
    """A way to deliver alert changes.

    ``batched`` channels get every claimed row in one ``send`` call (MQTT pipelines the
    publishes and waits for the PUBACKs together); the others get one row per call, made
    concurrently, so one slow receiver does not hold up the rest.
    """

    name: str
    batched: bool

    def send(self, items: Sequence[Outgoing]) -> list[Outcome]:
        """Attempt each item; one outcome per item, in order. Never raises for a failed send."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
