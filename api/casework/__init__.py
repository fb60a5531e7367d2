"""Casework of the provincial plans (issue 13), one module per concept: roll-call check-ins,
monthly assessments, case deadlines (working days, holidays as data), judgments and the
reconciliation with the court and the procuracy, violation-rate reports. Every endpoint is
scoped by unit (``api.scope``) and audited (``api.deps.audit``)."""

from api.casework import assessments, checkins, deadlines, judgments, reports

ROUTERS = (checkins, assessments, deadlines, judgments, reports)
