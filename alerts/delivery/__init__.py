"""Delivery of alert changes from the outbox (``deliveries``), one module per channel.

- ``base``: the tiny channel interface (``Channel.send(items) -> outcomes``);
- ``mqtt``: QoS 1 to ``em/v1/alerts/{unit}``, delivered when the broker's PUBACK arrives;
- ``webhook``: HMAC-signed POSTs with an idempotency key;
- ``memory``: an in-memory channel for tests;
- ``stream``: the API's live stream (LISTEN ``alert_changes``; no outbox rows needed);
- ``deliverer``: claims due rows, sends, records every attempt, retries with backoff, never
  drops; one worker per channel so a failing channel never delays another.
"""

from alerts.delivery.base import Channel, Outcome, Outgoing
from alerts.delivery.deliverer import Deliverer

__all__ = ["Channel", "Deliverer", "Outcome", "Outgoing"]
