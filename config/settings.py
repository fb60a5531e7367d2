"""giamsat settings (pydantic-settings, prefix ``GIAMSAT_``).

Every key is documented in ``config/giamsat.env.example``; a test keeps the two in step.
Read once by the entrypoint (``giamsat ...``) and passed down: no module reads the
environment on import.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """All of giamsat's configuration, with the embedded defaults of contract §4."""

    model_config = SettingsConfigDict(env_prefix="GIAMSAT_", env_file=None, extra="ignore",
                                      populate_by_name=True)

    # --- services -------------------------------------------------------------------------
    database_url: str | None = Field(
        None, description="PostgreSQL URL; unset = run an embedded PostgreSQL in data_dir"
    )
    mqtt_url: str | None = Field(
        None, description="MQTT broker URL mqtt://user:pass@host:port; unset = embedded "
                          "durable broker (RabbitMQ)"
    )
    amqp_url: str | None = Field(
        None, description="AMQP URL amqp://user:pass@host:port/ of a RabbitMQ whose MQTT "
                          "plugin the devices use: ingest reads its quorum queues (set by up)"
    )
    data_dir: Path = Field(
        Path(".giamsat"),
        description="state of the embedded services (run by root with this default, PostgreSQL's "
        "cluster goes to /var/tmp/giamsat-<hash> when its account cannot reach the directory)",
    )
    embedded_mqtt_port: int = Field(
        1883, description="port of the embedded broker; unset and taken = a free port, printed; "
        "set and taken = an error"
    )
    embedded_amqp_port: int = Field(
        5673, description="AMQP port of the embedded broker; unset and taken = a free port, "
        "printed; set and taken = an error"
    )
    embedded_broker: str = Field(
        "rabbitmq", description="embedded broker: rabbitmq (durable) or mosquitto")
    embedded_pg_port: int = Field(
        55432, description="port of the embedded PostgreSQL; unset and taken = a free port, "
        "printed; set and taken = an error"
    )
    pg_bindir: Path | None = Field(
        None, description="PostgreSQL binaries of the embedded server (e.g. a private build with "
        "TimescaleDB); unset = the system's newest"
    )
    http: str = Field("127.0.0.1:8000", description="host:port of the HTTP API and dashboard")
    admin_password: str | None = Field(
        None, description="password of the user 'admin', set at first start (random if unset)"
    )
    secret_key: str | None = Field(
        None, description="signing key for API tokens; unset = generated once into data_dir"
    )
    timezone: str = Field("Asia/Ho_Chi_Minh", description="local time zone for schedules, reports")
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR")
    log_json: bool = Field(False, description="log one JSON object per line instead of text")

    # --- ingest ---------------------------------------------------------------------------
    mqtt_client_id: str = Field("giamsat-ingest", description="the service's MQTT client id")
    mqtt_username: str | None = Field(None, description="MQTT user of the service")
    mqtt_password: str | None = Field(None, description="MQTT password of the service")
    ingest_queue_max: int = Field(200_000, description="bound of the MQTT-callback queue, messages")
    ingest_batch_max: int = Field(5000, description="most messages per storage transaction")
    ingest_batch_wait_ms: int = Field(20, description="longest wait to fill a batch, ms")
    amqp_prefetch: int = Field(20_000, description="unacked AMQP deliveries per worker")
    workers: int = Field(1, description="ingest shards (AMQP): quorum queues, one active "
                                        "worker each")
    worker_index: int = Field(0, description="this worker's own shard (0..workers-1); it "
                                             "stands by for the others")
    max_payload_bytes: int = Field(65536, description="largest accepted payload, bytes")
    max_future_ms: int = Field(300_000, description="how far a ts may lie in the future, ms")
    max_fix_age_days: float = Field(
        30.0, gt=0, description="how far before its receipt a message's ts may lie (older: "
        "dead letter stale_ts), days"
    )
    max_batch_fixes: int = Field(500, description="most fixes in one batch message")
    worker_metrics_port: int = Field(
        9108, description="127.0.0.1 port where the worker serves its metrics to the API's /metrics"
    )

    # --- decisions (contract §2) ------------------------------------------------------------
    max_accuracy_m: float = Field(100.0, description="fixes with a worse acc are not decided, m")
    margin_m: float = Field(10.0, description="margin beyond acc for a definite violation, m")
    confirm_fixes: int = Field(2, description="consecutive definite fixes to open or end")

    # --- alerts (contract §3) ---------------------------------------------------------------
    offline_after_s: int = Field(600, description="no message for this long = device_offline, s")
    gnss_lost_after_s: int = Field(900, description="no usable fix for this long = gnss_lost, s")
    battery_low_pct: int = Field(20, description="battery_low at or below, %")
    battery_critical_pct: int = Field(5, description="battery_critical at or below, %")
    late_alert_after_s: int = Field(
        60, description="an alert from fixes older than this is marked retrospective, s"
    )
    sweep_interval_s: float = Field(5.0, description="how often offline/escalation sweeps run, s")
    webhook_timeout_s: float = Field(5.0, description="timeout of one webhook attempt, s")
    webhook_max_backoff_s: float = Field(300.0, description="longest wait between retries, s")
    alert_fix_interval_s: int = Field(
        10, gt=0, description="fix interval asked of a device while a zone alert is open, s"
    )
    normal_fix_interval_s: int = Field(
        60, gt=0, description="fix interval asked again once its zone alerts are resolved, s"
    )

    # --- API --------------------------------------------------------------------------------
    token_ttl_s: int = Field(900, description="lifetime of an API bearer token, s")
    session_max_s: int = Field(
        43200, description="longest a sign-in lasts, token refreshes included (a shift), s"
    )
    map_tiles_url: str | None = Field(
        None, validation_alias=AliasChoices("GIAMSAT_MAP_TILES_URL", "GIAMSAT_TILE_URL"),
        description="XYZ tile URL template of the deployment's tile server "
                    "({z}/{x}/{y}); unset = offline map of unit boundaries",
    )
    map_tiles_attribution: str | None = Field(
        None, description="attribution shown under the map for those tiles (their licence)"
    )
    login_max_failures: int = Field(
        10, description="wrong passwords for one username within the window before its sign-ins "
        "are refused (429) until the window has passed; 0 = no limit"
    )
    login_max_failures_per_address: int = Field(
        30, description="failed sign-ins from one client address within the window before "
        "that address is refused (429); 0 = no limit (behind a proxy all share one address)"
    )
    login_failure_window_s: int = Field(900, description="window of the sign-in limits, s")
    max_body_bytes: int = Field(
        2_097_152, description="largest request body the API accepts (413 above), bytes"
    )
    max_zone_vertices: int = Field(
        10_000, description="most vertices of one zone or permit area (422 above)"
    )

    def http_host_port(self) -> tuple[str, int]:
        """Split ``http`` into (host, port)."""
        host, _, port = self.http.rpartition(":")
        return host or "127.0.0.1", int(port)
