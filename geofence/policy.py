"""Sentence policies (data, versioned by effective date), permits and the permit checks.

Contract §2: the policy table below comes from the 2019 Law on Criminal Judgment Execution and
lives in `geofence/policies/*.json`; each version has an `effective_from` date and the version in
force on a date applies. A permit that breaks the policy is refused with `PermitRefused`, whose
`rule` names the rule broken and whose `citation` names its source.

Every rule of a policy cites its law (`Citation`: law, article, clause, effective date, verified
or not). The version in force from 2026-07-01 (the implementing decree on community sentences,
an unofficial copy: its citations are unverified) adds the roll-call schedule per sentence
(`RollCall`: monthly in the first 5 days) and the casework deadlines (`Casework`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from fractions import Fraction
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

from shapely.geometry.base import BaseGeometry

from geofence.schedule import DEFAULT_TZ
from geofence.zones import Zone

SENTENCE_TYPES = (
    "an_treo", "cai_tao_khong_giam_giu", "tha_tu_truoc_thoi_han",
    "hoan_tam_dinh_chi", "quan_che", "cam_cu_tru",
)  # fmt: skip
CATEGORIES = ("medical", "visit", "work", "family", "other")
MS_PER_DAY = 86_400_000


@dataclass(frozen=True)
class Citation:
    """The source of a rule: law, article, clause, the date it took effect, and whether the
    citation was checked against the official text (``verified``)."""

    law: str
    article: str
    clause: str
    effective_from: date
    verified: bool
    note: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"law": self.law, "article": self.article, "clause": self.clause,
                "effective_from": self.effective_from.isoformat(), "verified": self.verified,
                "note": self.note}


@dataclass(frozen=True)
class RollCall:
    """A scheduled roll-call (điểm danh): every month, in its first ``first_days`` local days;
    ``ad_hoc`` when officers may also call one on demand."""

    every: str
    first_days: int
    ad_hoc: bool


@dataclass(frozen=True)
class Casework:
    """Casework deadlines of a policy version: the monthly assessment is due by day
    ``assessment_due_day`` of the next month; ``deadlines_working_days`` per case step."""

    effective_from: date
    assessment_due_day: int
    deadlines_working_days: dict[str, int]
    citations: dict[str, Citation]


# Permit-refusal rules -> the policy rule whose citation explains them.
RULE_SOURCES = {
    "visit_not_allowed": "visit_permit", "visit_needs_destination": "visit_permit",
    "visit_destination": "visit_permit", "visit_max_days": "visit_permit",
    "outside_sentence": "zones",
}  # fmt: skip


@dataclass(frozen=True)
class SentencePolicy:
    """What a sentence type implies for zones, escalation and permits (one policy version)."""

    sentence_type: str
    effective_from: date
    gloss: str
    zone_kinds: tuple[str, ...]
    zone_purpose: str
    escalate_after_s: int
    max_trip_days: int | None  # None: no per-trip limit
    total_trips_fraction: Fraction | None  # all trips together <= this share of the term
    medical_exempt: bool  # medical treatment exempt from the trip limits, not counted in the total
    visit_permit_allowed: bool  # a visit permit to a banned locality
    visit_max_days: int | None
    court_proposal_threshold: int | None  # confirmed violations before a court proposal is possible
    permit_granted_by: str
    citations: dict[str, Citation] = field(default_factory=dict)
    roll_call: RollCall | None = None  # None: no scheduled roll-call in this version

    def citation(self, rule: str) -> Citation | None:
        """The source of ``rule`` (a policy field or a permit-refusal rule), if cited."""
        return self.citations.get(RULE_SOURCES.get(rule, rule))


class PolicyTable:
    """All versions of the sentence-policy table."""

    def __init__(self, versions: list[tuple[date, dict[str, SentencePolicy]]],
                 casework: list[Casework] | None = None) -> None:
        self._versions = sorted(versions, key=lambda v: v[0])
        self._casework = sorted(casework or [], key=lambda c: c.effective_from)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> PolicyTable:
        """Build from the JSON document form (see policies/sentence_policies.json)."""
        versions, casework = [], []
        for v in obj["versions"]:
            eff = date.fromisoformat(v["effective_from"])
            versions.append((eff, {k: _policy(k, eff, p) for k, p in v["sentences"].items()}))
            if "casework" in v:
                casework.append(_casework(eff, v["casework"]))
        return cls(versions, casework)

    def versions(self) -> list[tuple[date, dict[str, SentencePolicy]]]:
        """Every version, oldest first: (effective date, sentence type -> policy)."""
        return list(self._versions)

    def casework_on(self, on: date) -> Casework | None:
        """The casework deadlines in force on ``on`` (None before any version has them)."""
        found = None
        for c in self._casework:
            if c.effective_from <= on:
                found = c
        return found

    @classmethod
    def default(cls) -> PolicyTable:
        """The table shipped with the package."""
        text = (
            resources.files("geofence.policies")
            .joinpath("sentence_policies.json")
            .read_text("utf-8")
        )
        return cls.from_json(json.loads(text))

    def for_sentence(self, sentence_type: str, on: date) -> SentencePolicy:
        """The policy of `sentence_type` in force on `on`; LookupError if none."""
        found = None
        for eff, table in self._versions:
            if eff <= on and sentence_type in table:
                found = table[sentence_type]
        if found is None:
            raise LookupError(f"no policy for sentence type {sentence_type!r} on {on.isoformat()}")
        return found


def _policy(kind: str, eff: date, p: dict[str, Any]) -> SentencePolicy:
    frac = p.get("total_trips_fraction")
    return SentencePolicy(
        sentence_type=kind,
        effective_from=eff,
        gloss=p["gloss"],
        zone_kinds=tuple(p["zone_kinds"]),
        zone_purpose=p["zone_purpose"],
        escalate_after_s=int(p["escalate_after_s"]),
        max_trip_days=p.get("max_trip_days"),
        total_trips_fraction=Fraction(frac) if frac else None,
        medical_exempt=bool(p.get("medical_exempt", True)),
        visit_permit_allowed=bool(p.get("visit_permit_allowed", False)),
        visit_max_days=p.get("visit_max_days"),
        court_proposal_threshold=p.get("court_proposal_threshold"),
        permit_granted_by=p["permit_granted_by"],
        citations={r: _citation(c) for r, c in p.get("citations", {}).items()},
        roll_call=_roll_call(p.get("roll_call")),
    )


def _citation(c: dict[str, Any]) -> Citation:
    return Citation(law=c["law"], article=c["article"], clause=c["clause"],
                    effective_from=date.fromisoformat(c["effective_from"]),
                    verified=bool(c["verified"]), note=c.get("note", ""))


def _roll_call(r: dict[str, Any] | None) -> RollCall | None:
    if r is None:
        return None
    if r.get("every") != "month" or not 1 <= int(r["first_days"]) <= 28:
        raise ValueError(f"unsupported roll-call schedule {r!r}: monthly, first 1-28 days")
    return RollCall("month", int(r["first_days"]), bool(r.get("ad_hoc", True)))


def _casework(eff: date, c: dict[str, Any]) -> Casework:
    return Casework(effective_from=eff, assessment_due_day=int(c["assessment_due_day"]),
                    deadlines_working_days={k: int(v) for k, v in
                                            c["deadlines_working_days"].items()},
                    citations={r: _citation(x) for r, x in c.get("citations", {}).items()})


@dataclass(frozen=True)
class Supervisee:
    """A supervised person as the geofence sees them: id and sentence."""

    id: str
    sentence_type: str
    sentence_start: date
    sentence_end: date


def to_ms(value: int | datetime) -> int:
    """Epoch ms from an int (ms) or an aware datetime."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime: permits need an offset")
        return int(value.timestamp() * 1000)
    return int(value)


@dataclass(frozen=True)
class Permit:
    """Permission to be away from the place of residence, valid on [valid_from, valid_to).

    `destination` None means `anywhere` (inclusion zones are not in force during the window);
    otherwise the permitted area is residence plus destination. A `visit` permit whose
    destination meets a `ban` exclusion zone lifts that zone during the window.
    """

    supervisee_id: str
    valid_from: int | datetime
    valid_to: int | datetime
    reason: str
    category: str = "other"
    destination: BaseGeometry | None = None
    id: int | None = None

    @property
    def from_ms(self) -> int:
        """Start, UTC epoch ms (inclusive)."""
        return to_ms(self.valid_from)

    @property
    def to_ms(self) -> int:
        """End, UTC epoch ms (exclusive)."""
        return to_ms(self.valid_to)

    @property
    def anywhere(self) -> bool:
        """True when the permit has no destination area."""
        return self.destination is None

    def lifts(self, zone: Zone) -> bool:
        """Whether this permit takes `zone` out of force (anywhere: inclusion zones; a visit:
        the ban zones its destination meets)."""
        if zone.kind == "inclusion":
            return self.anywhere
        return (
            self.category == "visit"
            and zone.purpose == "ban"
            and self.destination is not None
            and bool(self.destination.intersects(zone.geometry))
        )


class PermitRefused(Exception):
    """A permit breaks the sentence policy; `rule` names the rule, `citation` its source (None
    for a malformed permit, which breaks no rule of law)."""

    def __init__(self, rule: str, message: str, citation: Citation | None = None) -> None:
        super().__init__(f"{rule}: {message}")
        self.rule = rule
        self.message = message
        self.citation = citation


def check_permit(
    permit: Permit,
    supervisee: Supervisee,
    existing_permits: list[Permit],
    zones: list[Zone],
    policies: PolicyTable,
    tz: str = DEFAULT_TZ,
) -> None:
    """Refuse (raise `PermitRefused`) a permit that breaks the sentence policy; return if fine.

    Rules: `invalid_window`, `invalid_category`, `outside_sentence`, `visit_not_allowed`,
    `visit_needs_destination`, `visit_destination`, `visit_max_days`, `max_trip_days`,
    `total_trips_fraction`. Medical permits are exempt from the per-trip limits and, when the
    policy says so, not counted in the total.
    """
    start, end = permit.from_ms, permit.to_ms
    if end <= start:
        raise PermitRefused("invalid_window", "valid_to must be after valid_from")
    if permit.category not in CATEGORIES:
        raise PermitRefused("invalid_category", f"category must be one of {', '.join(CATEGORIES)}")
    term_start, term_end = _term_ms(supervisee, tz)
    if start < term_start or end > term_end:
        raise PermitRefused(
            "outside_sentence",
            f"the permit must lie within the sentence, {supervisee.sentence_start} to {supervisee.sentence_end}",
        )
    local_day = datetime.fromtimestamp(start / 1000, ZoneInfo(tz)).date()
    policy = policies.for_sentence(supervisee.sentence_type, local_day)
    try:
        if permit.category == "visit":
            _check_visit(permit, policy, zones, end - start)
        elif not (permit.category == "medical" and policy.medical_exempt):
            _check_trip(policy, end - start)
            _check_total(permit, policy, existing_permits, term_end - term_start)
    except PermitRefused as exc:
        raise PermitRefused(exc.rule, exc.message, policy.citation(exc.rule)) from None


def _term_ms(s: Supervisee, tz: str) -> tuple[int, int]:
    zone = ZoneInfo(tz)
    start = datetime.combine(s.sentence_start, time(0), zone)
    end = datetime.combine(s.sentence_end + timedelta(days=1), time(0), zone)
    return to_ms(start.astimezone(UTC)), to_ms(end.astimezone(UTC))


def _days(ms: int) -> float:
    return ms / MS_PER_DAY


def _check_visit(permit: Permit, policy: SentencePolicy, zones: list[Zone], length_ms: int) -> None:
    if not policy.visit_permit_allowed:
        raise PermitRefused(
            "visit_not_allowed",
            f"a visit permit to a banned locality needs a sentence with a ban; {policy.sentence_type} has none",
        )
    if permit.destination is None:
        raise PermitRefused(
            "visit_needs_destination", "a visit permit names the banned locality visited"
        )
    bans = [z for z in zones if z.kind == "exclusion" and z.purpose == "ban"]
    if not any(permit.destination.intersects(z.geometry) for z in bans):
        raise PermitRefused(
            "visit_destination", "the destination meets none of the banned localities"
        )
    if policy.visit_max_days is not None and length_ms > policy.visit_max_days * MS_PER_DAY:
        raise PermitRefused(
            "visit_max_days",
            f"a visit lasts at most {policy.visit_max_days} days; this one {_days(length_ms):.2f}",
        )


def _check_trip(policy: SentencePolicy, length_ms: int) -> None:
    if policy.max_trip_days is not None and length_ms > policy.max_trip_days * MS_PER_DAY:
        raise PermitRefused(
            "max_trip_days",
            f"{policy.sentence_type}: a trip lasts at most {policy.max_trip_days} days; "
            f"this one {_days(length_ms):.2f} (medical treatment is exempt)",
        )


def _check_total(
    permit: Permit, policy: SentencePolicy, existing: list[Permit], term_ms: int
) -> None:
    if policy.total_trips_fraction is None:
        return
    counted = [(p.from_ms, p.to_ms) for p in existing if _counts(p, permit, policy)]
    total = _union_ms(counted + [(permit.from_ms, permit.to_ms)])
    allowed = term_ms * policy.total_trips_fraction
    if total > allowed:
        raise PermitRefused(
            "total_trips_fraction",
            f"all trips together may last {policy.total_trips_fraction} of the term "
            f"({_days(int(allowed)):.1f} days); with this permit {_days(total):.1f}",
        )


def _counts(p: Permit, new: Permit, policy: SentencePolicy) -> bool:
    """Whether an existing permit counts towards the total of trips for `new`."""
    same = p is new or (p.id is not None and p.id == new.id)
    exempt = p.category == "medical" and policy.medical_exempt
    return (
        p.supervisee_id == new.supervisee_id and p.category != "visit" and not exempt and not same
    )


def _union_ms(intervals: list[tuple[int, int]]) -> int:
    """Total length of a union of [start, end) intervals (overlapping permits count once)."""
    total, cur_s, cur_e = 0, None, None
    for s, e in sorted(intervals):
        if cur_e is None or s > cur_e:
            if cur_e is not None and cur_s is not None:
                total += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None and cur_s is not None:
        total += cur_e - cur_s
    return total
