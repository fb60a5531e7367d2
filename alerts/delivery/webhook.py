"""Webhook channel: one signed HTTP POST of the alert JSON per delivery row.

Headers (receivers verify with ``verify``):
- ``X-Giamsat-Timestamp``: UTC epoch ms of this attempt;
- ``X-Giamsat-Signature``: ``sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" keyed with the
  webhook's secret>``; a receiver should also refuse timestamps far from its clock (replay);
- ``Idempotency-Key``: fixed per delivery row, the same on every retry: a receiver that has
  seen the key answers 2xx and does nothing more.
Any 2xx is delivered; anything else (status, timeout, refused connection) is retried.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Sequence

import httpx

from alerts.delivery.base import Outcome, Outgoing

SIGNATURE_HEADER = "X-Giamsat-Signature"
TIMESTAMP_HEADER = "X-Giamsat-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"


def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256(secret, "<timestamp>.<body>")."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: int | str, body: bytes, signature: str) -> bool:
    """True when ``signature`` is the one ``sign`` gives (constant-time comparison)."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


class WebhookChannel:
    """httpx POSTs; ``transport`` lets tests plug in ``httpx.MockTransport``."""

    name = "webhook"
    batched = False

    def __init__(self, timeout_s: float = 5.0, transport: httpx.BaseTransport | None = None,
                 clock_ms: Callable[[], int] | None = None) -> None:
        self._clock = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._http = httpx.Client(timeout=timeout_s, transport=transport, follow_redirects=False,
                                  headers={"User-Agent": "giamsat-webhook/1"})

    def send(self, items: Sequence[Outgoing]) -> list[Outcome]:
        return [self._post(i) for i in items]

    def _post(self, item: Outgoing) -> Outcome:
        if not item.url or item.secret is None:
            return Outcome(False, error=f"webhook {item.target} disabled or deleted")
        ts = self._clock()
        headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: str(ts),
                   SIGNATURE_HEADER: sign(item.secret, ts, item.body),
                   IDEMPOTENCY_HEADER: item.idempotency_key}
        t0 = time.monotonic()
        try:
            resp = self._http.post(item.url, content=item.body, headers=headers)
        except httpx.HTTPError as exc:
            return Outcome(False, error=f"{type(exc).__name__}: {exc}"[:500],
                           duration_ms=(time.monotonic() - t0) * 1000)
        ms = (time.monotonic() - t0) * 1000
        if 200 <= resp.status_code < 300:
            return Outcome(True, resp.status_code, duration_ms=ms)
        return Outcome(False, resp.status_code, f"HTTP {resp.status_code}", ms)

    def close(self) -> None:
        self._http.close()
