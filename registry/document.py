"""``giamsat import FILE``: load registry data (units, supervisees with zones, devices, permits).

All or nothing: the whole document is validated first, every error naming the JSON path of the
bad record, then written in one transaction through the registry package (the same writers as
the API). Importing the same document twice changes nothing (rows are compared before they are
written, so not even ``updated_at`` moves).

Versions (issue 11): a changed zone becomes a new version, and a zone that a supervisee listed in
the document no longer has is ended by a version, both in force from the import and recorded
with ``changed_by = 'import'``; the earlier versions stay, so the track and the case export of
an earlier period still show what was decided then. A permit is known by its supervisee, start,
end and reason as first granted: the same permit with another category or destination becomes
a new version; one the officers have revoked or shortened since stays so (an import never undoes
a revocation).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import orjson
import psycopg

import registry
import registry.devices
import registry.permits
import registry.supervisees
import registry.units
import registry.zones
from geofence.policy import Permit, PermitRefused, PolicyTable, Supervisee, check_permit
from geofence.zones import (
    ZoneError,
    check_kind_fits_purpose,
    parse_geometry,
    parse_station,
    parse_zone,
    zone_columns,
)
from protocol import DEVICE_ID_PATTERN, is_device_id

SENTENCE_TYPES = ("an_treo", "cai_tao_khong_giam_giu", "tha_tu_truoc_thoi_han",
                  "hoan_tam_dinh_chi", "quan_che", "cam_cu_tru")
PERMIT_CATEGORIES = ("medical", "visit", "work", "family", "other")


class ImportError_(Exception):
    """A document that cannot be imported; ``errors`` lists (json path, message)."""

    def __init__(self, errors: list[tuple[str, str]]):
        self.errors = errors
        lines = "\n".join(f"  {p}: {m}" for p, m in errors[:50])
        more = f"\n  ... and {len(errors) - 50} more" if len(errors) > 50 else ""
        super().__init__(f"{len(errors)} error(s), nothing imported:\n{lines}{more}")


@dataclass
class ImportSummary:
    """How many rows of each kind were created, changed or already as in the document."""

    counts: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, kind: str, outcome: str) -> None:
        self.counts.setdefault(kind, {"created": 0, "updated": 0, "unchanged": 0})[outcome] += 1

    @property
    def changed(self) -> bool:
        return any(c["created"] or c["updated"] for c in self.counts.values())

    def __str__(self) -> str:
        return ", ".join(f"{k}: {v['created']} created, {v['updated']} updated, "
                         f"{v['unchanged']} unchanged" for k, v in self.counts.items())


class _Checker:
    """Collects (path, message) errors while reading a document."""

    def __init__(self) -> None:
        self.errors: list[tuple[str, str]] = []

    def fail(self, path: str, msg: str) -> None:
        self.errors.append((path, msg))

    def obj(self, value: Any, path: str) -> dict | None:
        if not isinstance(value, dict):
            self.fail(path, f"must be an object, got {type(value).__name__}")
            return None
        return value

    def string(self, rec: dict, key: str, path: str, required: bool = True) -> str | None:
        value = rec.get(key)
        if value is None:
            if required:
                self.fail(f"{path}.{key}", "is required")
            return None
        if not isinstance(value, str) or not value.strip():
            self.fail(f"{path}.{key}", "must be a non-empty string")
            return None
        return value

    def positive_int(self, rec: dict, key: str, path: str, default: int) -> int:
        value = rec.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            self.fail(f"{path}.{key}", "must be a positive integer")
            return default
        return value

    def iso_date(self, rec: dict, key: str, path: str) -> date | None:
        raw = self.string(rec, key, path)
        if raw is None:
            return None
        try:
            return date.fromisoformat(raw)
        except ValueError:
            self.fail(f"{path}.{key}", f"must be an ISO date YYYY-MM-DD, got {raw!r}")
            return None

    def iso_datetime(self, rec: dict, key: str, path: str) -> datetime | None:
        raw = self.string(rec, key, path)
        if raw is None:
            return None
        try:
            value = datetime.fromisoformat(raw)
        except ValueError:
            self.fail(f"{path}.{key}", f"must be an ISO date-time, got {raw!r}")
            return None
        if value.tzinfo is None:
            self.fail(f"{path}.{key}", "must carry a UTC offset, e.g. 2026-01-02T08:00:00+07:00")
            return None
        return value

    def items(self, doc: dict, key: str) -> list[tuple[str, dict]]:
        value = doc.get(key, [])
        if not isinstance(value, list):
            self.fail(f"$.{key}", "must be an array")
            return []
        out = []
        for i, rec in enumerate(value):
            path = f"$.{key}[{i}]"
            if self.obj(rec, path) is not None:
                out.append((path, rec))
        return out


def load_document(raw: bytes) -> dict:
    """Parse the import file; a syntax error becomes an ImportError_ at ``$``."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ImportError_([("$", f"not valid JSON: {exc}")]) from exc
    if not isinstance(doc, dict):
        raise ImportError_([("$", "must be a JSON object with units, supervisees, devices, permits")])
    return doc


@dataclass
class _Plan:
    units: list[dict] = field(default_factory=list)
    supervisees: list[dict] = field(default_factory=list)
    zones: list[dict] = field(default_factory=list)
    devices: list[dict] = field(default_factory=list)
    permits: list[dict] = field(default_factory=list)


def _existing(conn: psycopg.Connection, sql: str) -> set[str]:
    return {r[0] for r in conn.execute(sql)}


def validate(doc: dict, conn: psycopg.Connection, policies: PolicyTable) -> _Plan:
    """Check the whole document against itself and the database; raise ImportError_."""
    ck = _Checker()
    plan = _Plan()
    known_units = _existing(conn, "SELECT code FROM units")
    doc_units = {rec.get("code") for _, rec in ck.items(doc, "units")}
    _validate_units(ck, doc, plan, known_units | doc_units)
    unit_codes = known_units | {u["code"] for u in plan.units}
    sups = _validate_supervisees(ck, doc, plan, unit_codes)
    known_sups = _existing(conn, "SELECT id FROM supervisees") | set(sups)
    _validate_devices(ck, doc, plan, known_sups)
    _validate_wearers(ck, plan, conn)
    _validate_permits(ck, doc, plan, conn, sups, known_sups, policies)
    if ck.errors:
        raise ImportError_(ck.errors)
    return plan


def _validate_units(ck: _Checker, doc: dict, plan: _Plan, all_codes: set) -> None:
    seen: set[str] = set()
    for path, rec in ck.items(doc, "units"):
        code = ck.string(rec, "code", path)
        name = ck.string(rec, "name", path)
        parent = rec.get("parent")
        if parent is not None and (not isinstance(parent, str) or parent not in all_codes):
            ck.fail(f"{path}.parent", f"names no unit in the document or registry: {parent!r}")
        if code in seen:
            ck.fail(f"{path}.code", f"duplicate unit code {code!r}")
        if code is not None and parent == code:
            ck.fail(f"{path}.parent", "a unit cannot be its own parent")
        seen.add(code or "")
        boundary = None
        if rec.get("boundary") is not None:
            try:
                parse_geometry(rec["boundary"], f"{path}.boundary")
                boundary = rec["boundary"]
            except ZoneError as exc:
                ck.fail(exc.path, str(exc.message))
        ack = ck.positive_int(rec, "ack_within_s", path, 300)
        station = None
        if rec.get("station") is not None:  # where roll-call check-ins count (issue 13)
            try:
                parse_station(rec["station"], f"{path}.station")
                station = rec["station"]
            except ZoneError as exc:
                ck.fail(exc.path, str(exc.message))
        if code and name:
            plan.units.append({"code": code, "name": name, "parent": parent,
                               "boundary": boundary, "ack_within_s": ack,
                               "station": station})


def _validate_supervisees(ck: _Checker, doc: dict, plan: _Plan, units: set) -> dict[str, dict]:
    sups: dict[str, dict] = {}
    for path, rec in ck.items(doc, "supervisees"):
        sid = ck.string(rec, "id", path)
        name = ck.string(rec, "name", path)
        stype = rec.get("sentence_type")
        if stype not in SENTENCE_TYPES:
            ck.fail(f"{path}.sentence_type", f"must be one of {', '.join(SENTENCE_TYPES)}")
        start = ck.iso_date(rec, "sentence_start", path)
        end = ck.iso_date(rec, "sentence_end", path)
        if start and end and end < start:
            ck.fail(f"{path}.sentence_end", "is before sentence_start")
        unit = ck.string(rec, "unit", path)
        if unit is not None and unit not in units:
            ck.fail(f"{path}.unit", f"names no unit: {unit!r}")
        residence = rec.get("residence_unit")
        if residence is not None and residence not in units:
            ck.fail(f"{path}.residence_unit", f"names no unit: {residence!r}")
        if sid in sups:
            ck.fail(f"{path}.id", f"duplicate supervisee id {sid!r}")
        if sid is None:
            continue
        zones = _validate_zones(ck, rec, path, sid, plan)
        row = {"id": sid, "name": name, "sentence_type": stype, "sentence_start": start,
               "sentence_end": end, "unit": unit, "residence_unit": residence or unit,
               "zones": zones}
        sups[sid] = row
        plan.supervisees.append(row)
    return sups


def _validate_zones(ck: _Checker, rec: dict, path: str, sid: str, plan: _Plan) -> list:
    raw = rec.get("zones", [])
    if not isinstance(raw, list):
        ck.fail(f"{path}.zones", "must be an array")
        return []
    parsed, ids = [], set()
    for j, z in enumerate(raw):
        zpath = f"{path}.zones[{j}]"
        try:
            zone = parse_zone(z, sid, zpath)
            check_kind_fits_purpose(zone, zpath)
        except ZoneError as exc:
            ck.fail(exc.path, str(exc.message))
            continue
        if zone.id in ids:
            ck.fail(f"{zpath}.id", f"duplicate zone id {zone.id!r} for this supervisee")
        ids.add(zone.id)
        parsed.append(zone)
        plan.zones.append({"supervisee_id": sid, "id": zone.id, **zone_columns(z, zone)})
    return parsed


def _validate_devices(ck: _Checker, doc: dict, plan: _Plan, sups: set) -> None:
    seen: set[str] = set()
    for path, rec in ck.items(doc, "devices"):
        did = ck.string(rec, "id", path)
        if did is not None and not is_device_id(did):
            ck.fail(f"{path}.id", f"must match {DEVICE_ID_PATTERN}")
            continue
        if did in seen:
            ck.fail(f"{path}.id", f"duplicate device id {did!r}")
        seen.add(did or "")
        sup = rec.get("supervisee")
        if sup is not None and sup not in sups:
            ck.fail(f"{path}.supervisee", f"names no supervisee: {sup!r}")
        if did:
            plan.devices.append({"id": did, "supervisee": sup, "path": path})


def _validate_wearers(ck: _Checker, plan: _Plan, conn: psycopg.Connection) -> None:
    """A supervisee wears one device at a time: counting the devices the database has on
    them, except those the document moves, no supervisee may end up with two."""
    listed = {d["id"] for d in plan.devices}
    wearing = {sid: did for did, sid in conn.execute(
        "SELECT device_id, supervisee_id FROM device_assignments WHERE unassigned_at IS NULL")
        if did not in listed}
    for d in plan.devices:
        sid, other = d["supervisee"], wearing.get(d["supervisee"])
        if sid is not None and other is not None and other != d["id"]:
            ck.fail(f"{d['path']}.supervisee",
                    f"supervisee {sid!r} would wear two devices, {other!r} and {d['id']!r}")
        if sid is not None:
            wearing[sid] = d["id"]


def _validate_permits(ck: _Checker, doc: dict, plan: _Plan, conn: psycopg.Connection,
                      sups: dict, known: set, policies: PolicyTable) -> None:
    accepted: dict[str, list[Permit]] = {}
    for path, rec in ck.items(doc, "permits"):
        sid = ck.string(rec, "supervisee", path)
        if sid is not None and sid not in known:
            ck.fail(f"{path}.supervisee", f"names no supervisee: {sid!r}")
            continue
        vfrom = ck.iso_datetime(rec, "valid_from", path)
        vto = ck.iso_datetime(rec, "valid_to", path)
        reason = ck.string(rec, "reason", path)
        category = rec.get("category", "other")
        if category not in PERMIT_CATEGORIES:
            ck.fail(f"{path}.category", f"must be one of {', '.join(PERMIT_CATEGORIES)}")
        dest = rec.get("destination")
        if dest != "anywhere":
            try:
                parse_geometry(dest, f"{path}.destination")
            except ZoneError as exc:
                ck.fail(exc.path, f"{exc.message} (or the string \"anywhere\")")
                continue
        if vfrom and vto and vto <= vfrom:
            ck.fail(f"{path}.valid_to", "must be after valid_from")
            continue
        if None in (sid, vfrom, vto, reason):
            continue
        row = {"supervisee_id": sid, "valid_from": vfrom, "valid_to": vto, "reason": reason,
               "category": category, "destination": None if dest == "anywhere" else dest,
               "anywhere": dest == "anywhere"}
        refusal = _policy_refusal(conn, row, sups, accepted, policies)
        if refusal:
            ck.fail(path, refusal)
            continue
        plan.permits.append(row)


def _policy_refusal(conn: psycopg.Connection, row: dict, sups: dict, accepted: dict,
                    policies: PolicyTable) -> str | None:
    """Check a permit against the sentence policy, with the supervisee's other permits (stored
    and earlier in this document); a refusal message, or None when it is accepted."""
    sid = row["supervisee_id"]
    if sid in sups:
        s = sups[sid]
        if s["sentence_type"] not in SENTENCE_TYPES or None in (s["sentence_start"],
                                                                s["sentence_end"]):
            return None  # the supervisee's own errors are reported already
        supervisee = Supervisee(sid, s["sentence_type"], s["sentence_start"], s["sentence_end"])
        zones = s["zones"]
    else:
        supervisee = registry.load_supervisees(conn, [sid])[0]
        zones = registry.load_zones(conn, [sid])
    dest = None if row["anywhere"] else parse_geometry(row["destination"])
    permit = Permit(sid, row["valid_from"], row["valid_to"], row["reason"], row["category"], dest)
    if sid not in accepted:
        accepted[sid] = registry.load_permits(conn, [sid])
    same = registry.permits.find(conn, sid, row["valid_from"], row["valid_to"], row["reason"])
    others = [p for p in accepted[sid] if p.id is None or p.id != same]  # a re-import
    try:
        check_permit(permit, supervisee, others, zones, policies)
    except PermitRefused as exc:
        return f"refused by the sentence policy, rule {exc.rule}: {exc.message}"
    except LookupError as exc:  # no policy version in force on that date
        return f"refused: {exc}"
    accepted[sid].append(permit)
    return None


def _unit_order(units: list[dict]) -> list[dict]:
    """Parents before children, so the parent foreign key holds at every insert."""
    by_code = {u["code"]: u for u in units}
    out: list[dict] = []
    placed: set[str] = set()

    def place(u: dict, chain: tuple[str, ...]) -> None:
        if u["code"] in placed or u["code"] in chain:
            return
        parent = by_code.get(u["parent"] or "")
        if parent is not None:
            place(parent, (*chain, u["code"]))
        placed.add(u["code"])
        out.append(u)

    for u in units:
        place(u, ())
    return out


def apply(conn: psycopg.Connection, plan: _Plan) -> ImportSummary:
    """Write a validated plan in the caller's transaction."""
    summary = ImportSummary()
    for u in _unit_order(plan.units):
        summary.add("units", registry.units.upsert_unit(
            conn, u["code"], u["name"], u["parent"], u["boundary"], u["ack_within_s"],
            u["station"]))
    for s in plan.supervisees:
        summary.add("supervisees", registry.supervisees.upsert_supervisee(
            conn, s["id"], s["name"], s["sentence_type"], s["sentence_start"], s["sentence_end"],
            s["unit"], s["residence_unit"]))
    _apply_zones(conn, plan, summary)
    # two passes: every device that moves comes off its wearer first, so that a device can go
    # to a supervisee whose device the same document moves away (one device at a time)
    moved = _take_off_moving(conn, plan.devices)
    for d in plan.devices:
        outcome = registry.devices.set_wearer(conn, d["id"], d["supervisee"], by=IMPORTER)
        summary.add("devices", "updated" if d["id"] in moved else outcome)
    for p in plan.permits:
        summary.add("permits", _apply_permit(conn, p))
    if summary.changed:
        registry.bump(conn)
    return summary


IMPORTER = "import"  # changed_by / granted_by of what an import writes


def _apply_zones(conn: psycopg.Connection, plan: _Plan, summary: ImportSummary) -> None:
    for z in plan.zones:
        outcome, _ = registry.zones.put_zone(conn, z["supervisee_id"], z["id"], z,
                                             changed_by=IMPORTER)
        summary.add("zones", outcome)
    # The document lists each imported supervisee's zones in full: end the ones it no longer
    # has (a version saying so; what they decided before stays on record).
    for s in plan.supervisees:
        keep = {z.id for z in s["zones"]}
        for row in registry.zones.zone_rows(conn, [s["id"]]):
            if row["id"] not in keep and registry.zones.end_zone(
                    conn, s["id"], row["id"], changed_by=IMPORTER,
                    reason="not in the imported document"):
                summary.add("zones", "updated")


def _apply_permit(conn: psycopg.Connection, p: dict) -> str:
    sid, start, end, reason = p["supervisee_id"], p["valid_from"], p["valid_to"], p["reason"]
    granted = registry.permits.grant(conn, sid, valid_from=start, valid_to=end, reason=reason,
                                     category=p["category"], destination=p["destination"],
                                     granted_by=IMPORTER)
    if granted is not None:
        return "created"
    pid = registry.permits.find(conn, sid, start, end, reason)
    assert pid is not None  # the grant conflicted with it
    changed = registry.permits.amend(conn, pid, category=p["category"],
                                     destination=p["destination"], changed_by=IMPORTER,
                                     reason="changed in the imported document")
    return "unchanged" if changed is None else "updated"


def _take_off_moving(conn: psycopg.Connection, devices: list[dict]) -> set[str]:
    """Take off their wearers the devices the document gives to someone else; their ids."""
    rows = conn.execute("SELECT id, supervisee_id FROM devices WHERE id = ANY(%s)",
                        ([d["id"] for d in devices],)).fetchall()
    worn: dict[str, str | None] = dict(rows)
    moved = {d["id"] for d in devices
             if worn.get(d["id"]) is not None and worn[d["id"]] != d["supervisee"]}
    for device_id in sorted(moved):
        registry.devices.unassign(conn, device_id)
    return moved


def import_document(conn: psycopg.Connection, doc: dict,
                    policies: PolicyTable | None = None) -> ImportSummary:
    """Validate then write ``doc`` in one transaction: all or nothing."""
    policies = policies or PolicyTable.default()
    with conn.transaction():
        plan = validate(doc, conn, policies)
        return apply(conn, plan)


def import_file(conn: psycopg.Connection, path: str) -> ImportSummary:
    """Read and import a JSON file."""
    with open(path, "rb") as fh:
        return import_document(conn, load_document(fh.read()))
