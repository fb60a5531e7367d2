"""Append-only growable numpy arrays: the packed storage of the zone index.

Changing one zone appends its new arrays and leaves the old ones as garbage, so an update costs
what the zone costs, not what the whole index costs; `ZoneIndex` compacts when garbage dominates.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray


class Slab:
    """A 1-D (or (n, width)) array with amortised O(1) append and a garbage counter."""

    def __init__(self, dtype: DTypeLike, width: int | None = None, capacity: int = 1024) -> None:
        shape: tuple[int, ...] = (capacity,) if width is None else (capacity, width)
        self._a: NDArray[Any] = np.zeros(shape, dtype=dtype)
        self.size = 0
        self.garbage = 0

    def append(self, values: NDArray[Any]) -> int:
        """Copy `values` to the end; return their offset."""
        n = len(values)
        if self.size + n > len(self._a):
            cap = max(2 * len(self._a), self.size + n)
            grown = np.zeros((cap,) + self._a.shape[1:], dtype=self._a.dtype)
            grown[: self.size] = self._a[: self.size]
            self._a = grown
        off = self.size
        self._a[off : off + n] = values
        self.size += n
        return off

    def release(self, n: int) -> None:
        """Count `n` elements as garbage (their owner was replaced or removed)."""
        self.garbage += n

    @property
    def data(self) -> NDArray[Any]:
        """The live prefix (a view: do not keep it across appends)."""
        return self._a[: self.size]

    def needs_compaction(self) -> bool:
        """True when garbage is over half of a non-trivial slab."""
        return self.garbage > 4096 and self.garbage * 2 > self.size
