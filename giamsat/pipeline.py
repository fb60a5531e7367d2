"""The composition root of the pipeline process: ingest -> decide -> deliver, wired for one
process (what ``giamsat up`` and ``giamsat worker`` run). The stages live in their packages:
``ingest`` (decode, store, acknowledge), ``alerts.decide`` (geofence and rules), and
``alerts.delivery`` (MQTT, webhooks, downlink commands).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from alerts.decide import DecideStage
from alerts.delivery.commands import send_command
from alerts.delivery.deliverer import Deliverer, wall_ms
from alerts.delivery.fixrate import FixRateJob
from alerts.delivery.mqtt import MqttChannel
from alerts.delivery.webhook import WebhookChannel
from alerts.metrics import AlertMetrics
from ingest.service import IngestService


class AlertPipeline:
    """ingest -> decide -> deliver, wired for one process (what ``giamsat up`` runs).

    ``start()`` starts the deliverer, then the decide stage (loads zones, recovers), then ingest
    (so nothing stored is handed to a stage that is not ready); ``stop()`` in reverse.
    """

    def __init__(self, settings: Any, db_url: str, mqtt_url: str, *, registry: Any = None,
                 clock_ms: Callable[[], int] = wall_ms, client_id: str | None = None,
                 amqp_url: str | None = None, **stage_kwargs: Any) -> None:
        self.metrics = AlertMetrics(registry)
        cid = client_id or settings.mqtt_client_id
        self.mqtt = MqttChannel.from_url(mqtt_url, f"{cid}-alerts")
        self.webhooks = WebhookChannel(timeout_s=settings.webhook_timeout_s)
        self.deliverer = Deliverer(db_url, [self.mqtt, self.webhooks], clock_ms=clock_ms,
                                   metrics=self.metrics,
                                   max_backoff_s=settings.webhook_max_backoff_s)
        self.stage = DecideStage(db_url, settings, clock_ms=clock_ms, metrics=self.metrics,
                                 deliverer=self.deliverer, **stage_kwargs)
        self.fix_rate = FixRateJob(db_url, self.mqtt, fast_s=settings.alert_fix_interval_s,
                                   normal_s=settings.normal_fix_interval_s,
                                   poll_s=settings.sweep_interval_s, clock_ms=clock_ms)
        self.ingest = IngestService(settings, db_url, mqtt_url, registry=registry,
                                    on_stored=self.stage.on_stored, amqp_url=amqp_url,
                                    on_activate=self.stage.take_over)

    def start(self) -> None:
        self.deliverer.start()
        self.stage.start()
        self.ingest.start()
        self.fix_rate.start()

    def stop(self) -> None:
        self.fix_rate.stop()
        self.ingest.stop()
        self.stage.stop()
        self.deliverer.stop()

    def send_command(self, device_id: str, type: str, **fields: Any) -> str:
        """Downlink through the alerts MQTT connection (see ``send_command``)."""
        return send_command(self.mqtt, device_id, type, **fields)
