"""Zones as GeoJSON at the API's edge.

Out: each zone is a Feature whose ``id`` is the zone id; a polygon zone carries its geometry, a
circle zone a ``Point`` at its centre with ``properties.radius_m``; the other properties are the
zone's fields of contract §4 (``kind``, ``purpose``, ``schedule``, overrides) and its version:
``version``, ``effective_from`` / ``effective_to`` (epoch ms, null for an open end: in force
since always / until further notice), ``changed_by``, ``updated_at`` (when it was recorded).

In: the same Feature, or the contract's zone object (``geometry`` or ``center`` + ``radius_m``).
Both are validated by ``geofence.zones.parse_zone``; its error path is mapped back onto the
document that was sent (``$.properties.kind`` for a Feature, ``$.kind`` for a zone object).
"""

from __future__ import annotations

from typing import Any

from api.errors import Problem
from api.wire import feature, point, to_ms
from geofence.zones import Zone, ZoneError, check_kind_fits_purpose, check_vertices, parse_zone

_OVERRIDES = ("margin_m", "confirm_fixes", "escalate_after_s")
_TOP_LEVEL_OF_FEATURE = ("geometry", "id", "type")
_VERSION_PROPERTIES = ("version", "updated_at", "effective_from", "effective_to", "changed_by",
                       "change_reason", "ended")


def zone_feature(row: dict[str, Any]) -> dict:
    """A zone version row (``registry.zones``) as a GeoJSON Feature; an ended version (in a
    zone's history) has no geometry and ``ended: true``."""
    props: dict[str, Any] = {"kind": row["kind"], "purpose": row["purpose"],
                             "schedule": row["schedule"], "version": row["version"],
                             "effective_from": row["effective_from_ms"],
                             "effective_to": row["effective_to_ms"],
                             "changed_by": row["changed_by"],
                             "change_reason": row["change_reason"],
                             "updated_at": to_ms(row["recorded_at"])}
    if row["ended"]:
        props["ended"] = True
        return feature(None, props, id=row["id"])
    for key in _OVERRIDES:
        props[key] = row[key]
    if row["radius_m"] is not None:
        props["radius_m"] = row["radius_m"]
        geometry = point(row["center_lon"], row["center_lat"])
    else:
        geometry = row["geometry"]
    return feature(geometry, props, id=row["id"])


def _from_feature(doc: dict[str, Any], zone_id: str) -> dict[str, Any]:
    """A Feature -> the contract's zone object (Point + radius_m -> circle)."""
    props = doc.get("properties") or {}
    if not isinstance(props, dict):
        raise Problem(422, "properties must be an object", path="$.properties")
    geometry = doc.get("geometry")
    obj = {k: v for k, v in props.items() if k not in _VERSION_PROPERTIES}
    obj["id"] = zone_id
    if isinstance(geometry, dict) and geometry.get("type") == "Point":
        obj["center"] = geometry.get("coordinates")
    else:
        obj["geometry"] = geometry
    return obj


def _feature_path(path: str) -> str:
    """Map a zone-object error path onto the Feature that was sent."""
    rest = path[1:] if path.startswith("$") else path
    key = rest.lstrip(".").split(".")[0].split("[")[0]
    if key == "center":
        return "$.geometry.coordinates" + rest[len(".center"):]
    if key and key not in _TOP_LEVEL_OF_FEATURE:
        return "$.properties" + rest
    return "$" + rest


def parse_zone_document(doc: Any, supervisee_id: str, zone_id: str,
                        max_vertices: int | None = None) -> tuple[dict, Zone]:
    """Validate a zone sent to the API; return (the contract's zone object, the Zone).

    Beyond ``parse_zone``: the kind must fit the purpose, and a polygon may have at most
    ``max_vertices`` positions (counted before parsing). Raises Problem(422) naming the JSON
    path of the bad part of ``doc``.
    """
    if not isinstance(doc, dict):
        raise Problem(422, "expected a GeoJSON Feature or a zone object", path="$")
    is_feature = doc.get("type") == "Feature"
    if not is_feature and doc.get("id", zone_id) != zone_id:
        raise Problem(422, f"id {doc.get('id')!r} differs from the zone id in the URL",
                      path="$.id")
    obj = _from_feature(doc, zone_id) if is_feature else {**doc, "id": zone_id}
    try:
        if max_vertices is not None:
            check_vertices(obj.get("geometry"), max_vertices, "$.geometry")
        zone = parse_zone(obj, supervisee_id, "$")
        check_kind_fits_purpose(zone, "$")
    except ZoneError as exc:
        path = _feature_path(exc.path) if is_feature else exc.path
        raise Problem(422, f"invalid zone: {exc.message}", path=path) from exc
    return obj, zone
