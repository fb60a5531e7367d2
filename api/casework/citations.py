"""The law behind an alert: the rule of the sentence policy in force when it opened."""

from __future__ import annotations

from datetime import date
from typing import Any

from geofence.policy import PolicyTable

# Alert type -> the sentence-policy rule it enforces (device alerts enforce none).
ALERT_RULES = {
    "zone_exit": "zones", "zone_enter": "zones", "curfew": "zones",
    "permit_overrun": "max_trip_days", "checkin_missed": "roll_call",
}  # fmt: skip


def alert_citation(policies: PolicyTable, alert_type: str, sentence_type: str | None,
                   on: date) -> dict[str, Any] | None:
    """``{"rule", "citation"}`` for an alert of ``alert_type`` opened on ``on`` (local), or
    None for an alert that enforces no rule of the policy."""
    rule = ALERT_RULES.get(alert_type)
    if rule is None or sentence_type is None:
        return None
    try:
        cite = policies.for_sentence(sentence_type, on).citation(rule)
    except LookupError:
        return None
    return None if cite is None else {"rule": rule, **cite.as_json()}
