"""Prometheus metrics of the ingest stage, created on a registry the caller passes (tests use
their own). Labels are bounded: `kind` (`ingest.records.KINDS` + `other`), `reason`
(`ingest.records.REASONS`); never a device or person id. Counted per batch, not per message.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ingest.records import KINDS, REASONS

RECEIVED_KINDS = (*KINDS, "other")
STORED_KINDS = ("fix", "hb", "evt", "ack")


class IngestMetrics:
    """The counters, gauges and histograms of one ingest service."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.received = Counter(
            "giamsat_ingest_received_messages_total",
            "MQTT messages taken from the broker, by topic kind", ["kind"], registry=registry)
        self.stored = Counter(
            "giamsat_ingest_stored_records_total",
            "records newly stored (a batch message counts each fix)", ["kind"], registry=registry)
        self.duplicates = Counter(
            "giamsat_ingest_duplicate_records_total",
            "records already stored (redeliveries, repeats), not stored again", ["kind"],
            registry=registry)
        self.rejected = Counter(
            "giamsat_ingest_rejected_total",
            "messages or batch elements dead-lettered, by reason", ["reason"], registry=registry)
        self.queue_depth = Gauge(
            "giamsat_ingest_queue_depth", "messages waiting between the MQTT callback and the "
            "writer", registry=registry)
        self.queue_overflow = Counter(
            "giamsat_ingest_queue_overflow_total",
            "messages that found the queue full (the MQTT thread waited)", registry=registry)
        self.batch_size = Histogram(
            "giamsat_ingest_batch_messages", "messages per storage transaction",
            buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000), registry=registry)
        self.commit_seconds = Histogram(
            "giamsat_ingest_batch_commit_seconds", "time to store and commit one batch",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=registry)
        self.db_errors = Counter(
            "giamsat_ingest_db_errors_total", "failed storage attempts (the batch is retried)",
            registry=registry)
        self.healthy = Gauge(
            "giamsat_ingest_healthy", "1 when connected to the broker and storing", registry=registry)
        for kind in RECEIVED_KINDS:
            self.received.labels(kind)
        for kind in STORED_KINDS:
            self.stored.labels(kind)
            self.duplicates.labels(kind)
        for reason in REASONS:
            self.rejected.labels(reason)

    def watch_queue(self, depth: Callable[[], int]) -> None:
        """Report the queue's depth when scraped."""
        self.queue_depth.set_function(depth)
