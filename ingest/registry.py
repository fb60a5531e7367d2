"""The device registry as the ingest stage sees it: which devices exist, and whose they are.

Loaded whole into memory and refreshed between batches, never queried per message: the cache
compares a cheap fingerprint (`registry_version`, the number of devices, the newest
registration) at most every `check_every_s` and reloads when it changed, and in any case every
`reload_every_s` (a reassignment made without bumping `registry_version`).
"""

from __future__ import annotations

import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg

FINGERPRINT_SQL = ("SELECT (SELECT version FROM registry_version), count(*), max(registered_at) "
                   "FROM devices")
DEVICES_SQL = "SELECT id, supervisee_id FROM devices ORDER BY id"


@dataclass(frozen=True, eq=False)
class RegistrySnapshot:
    """Registered devices at one moment: id -> row index, the supervisee of each, and each
    device's ready-made binary COPY fields (see `copy_chunks`)."""

    index: dict[str, int]
    device_ids: np.ndarray        # object array of str
    supervisee_ids: np.ndarray    # object array of str | None
    chunks: np.ndarray            # one fixed-width void per device
    fingerprint: tuple[Any, ...] = ()

    def __contains__(self, device_id: object) -> bool:
        return device_id in self.index

    def __len__(self) -> int:
        return len(self.index)

    def supervisee(self, device_id: str) -> str | None:
        return self.supervisee_ids[self.index[device_id]]

    @classmethod
    def build(cls, rows: Iterable[tuple[str, str | None]],
              fingerprint: tuple[Any, ...] = ()) -> RegistrySnapshot:
        rows = list(rows)
        devices = np.array([r[0] for r in rows], dtype=object)
        supervisees = np.array([r[1] for r in rows], dtype=object)
        return cls({d: i for i, d in enumerate(devices)}, devices, supervisees,
                   copy_chunks(rows), fingerprint)


def copy_chunks(rows: list[tuple[str, str | None]]) -> np.ndarray:
    """Per device, the trailing fields of a binary COPY row of fixes staging: `device_id text`,
    `supervisee_id text`, and a `pad bytea` that tops every chunk up to the same width, so that a
    whole staging row is fixed-width and can be built by numpy (see `ingest.store`)."""
    cores = [_text(d) + _text(s) for d, s in rows]
    width = max((len(c) for c in cores), default=0) + 4
    padded = b"".join(c + struct.pack(">i", width - len(c) - 4) + bytes(width - len(c) - 4)
                      for c in cores)
    return np.frombuffer(padded, dtype=f"V{width}").copy() if rows else np.empty(0, f"V{width}")


def _text(value: str | None) -> bytes:
    """A binary COPY text field: int32 length then UTF-8, or length -1 for NULL."""
    if value is None:
        return struct.pack(">i", -1)
    data = value.encode()
    return struct.pack(">i", len(data)) + data


def load_registry(conn: psycopg.Connection, fingerprint: tuple[Any, ...] = ()) -> RegistrySnapshot:
    """Read every device and its supervisee (one query)."""
    rows = conn.execute(DEVICES_SQL).fetchall()
    conn.commit()
    return RegistrySnapshot.build(rows, fingerprint)


class RegistryCache:
    """The current `RegistrySnapshot`, refreshed between batches on the connection of the
    writer that asks (several writers may share one cache)."""

    def __init__(self, check_every_s: float = 1.0, reload_every_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.check_every_s = check_every_s
        self.reload_every_s = reload_every_s
        self._clock = clock
        self._snapshot: RegistrySnapshot | None = None
        self._checked_at = self._loaded_at = -1e18
        self._lock = threading.Lock()

    @property
    def snapshot(self) -> RegistrySnapshot | None:
        return self._snapshot

    def get(self, conn: psycopg.Connection) -> RegistrySnapshot:
        """The snapshot, reloaded first when the registry changed or it is old."""
        snapshot = self._snapshot
        if snapshot is not None and self._clock() - self._checked_at < self.check_every_s:
            return snapshot
        with self._lock:
            return self._refresh(conn)

    def _refresh(self, conn: psycopg.Connection) -> RegistrySnapshot:
        now = self._clock()
        if self._snapshot is not None and now - self._checked_at < self.check_every_s:
            return self._snapshot  # another writer just did it
        fingerprint = tuple(conn.execute(FINGERPRINT_SQL).fetchone() or ())
        conn.commit()
        self._checked_at = now
        stale = now - self._loaded_at >= self.reload_every_s
        if self._snapshot is None or stale or fingerprint != self._snapshot.fingerprint:
            self._snapshot = load_registry(conn, fingerprint)
            self._loaded_at = now
        return self._snapshot

    def recheck(self, conn: psycopg.Connection) -> RegistrySnapshot:
        """The snapshot after a fingerprint check made now, whenever the last one was: a message
        from a device the snapshot does not know may come from one registered since (its
        registration committed before it published), and must not be dead-lettered for that."""
        with self._lock:
            self._checked_at = -1e18
            return self._refresh(conn)

    def invalidate(self) -> None:
        """Force a fingerprint check on the next `get` (e.g. after a reconnect)."""
        self._checked_at = -1e18
