"""Court thresholds of the sentence policies (contract §3): how many confirmed violations make a
proposal to the court possible. The software flags it; it never decides it.

The geofence package owns the versioned policy table (``geofence.policy.PolicyTable``,
``court_proposal_threshold``: 2 for ``an_treo`` and ``tha_tu_truoc_thoi_han``).
"""

from __future__ import annotations

from datetime import date
from functools import lru_cache
from typing import Any

from geofence.policy import PolicyTable


@lru_cache(maxsize=1)
def _default_table() -> PolicyTable:
    return PolicyTable.default()


def court_threshold(sentence_type: str, on: date, policies: Any = None) -> int | None:
    """The number of confirmed violations that allows a proposal to the court, or None.

    ``policies``: a ``PolicyTable`` (the shipped one when None); the version in force ``on``
    that date applies.
    """
    table = policies if policies is not None else _default_table()
    try:
        return table.for_sentence(sentence_type, on).court_proposal_threshold
    except LookupError:
        return None
