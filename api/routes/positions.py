"""Last known positions of the supervisees of a unit, for the map."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from psycopg.rows import dict_row

from api.deps import Caller, Conn
from api.wire import collection, feature, point, to_ms

router = APIRouter(prefix="/api/v1", tags=["positions"])

_POSITIONS = """
SELECT s.id AS supervisee_id, s.name, s.unit, s.sentence_type, st.*,
       (SELECT count(*) FROM alerts a WHERE a.supervisee_id = s.id
                                       AND a.status <> 'resolved') AS unresolved_alerts
  FROM supervisees s
  JOIN devices d ON d.supervisee_id = s.id
  JOIN device_state st ON st.device_id = d.id
 WHERE st.last_fix_lat IS NOT NULL
   AND (%(u)s::text[] IS NULL OR s.unit = ANY(%(u)s))
 ORDER BY s.unit, s.id, d.id
"""


@router.get("/positions")
def positions(caller: Caller, conn: Conn,
              unit: Annotated[str | None, Query(max_length=64)] = None) -> dict:
    """A GeoJSON FeatureCollection: one Point per worn device with a fix (from device_state),
    ``properties`` with the supervisee, unit, fix time (``ts``), accuracy, battery, strap and
    the number of unresolved alerts."""
    units = caller.unit_filter(conn, unit)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(_POSITIONS, {"u": units}).fetchall()
    feats = [feature(point(r["last_fix_lon"], r["last_fix_lat"]), {
        "supervisee_id": r["supervisee_id"], "name": r["name"], "unit": r["unit"],
        "sentence_type": r["sentence_type"], "device_id": r["device_id"],
        "ts": to_ms(r["last_fix_ts"]), "acc": r["last_fix_acc"],
        "last_seen_at": to_ms(r["last_seen_at"]), "battery": r["battery"],
        "charging": r["charging"], "strap": r["strap"], "case": r["case"], "gnss": r["gnss"],
        "unresolved_alerts": r["unresolved_alerts"]}, id=r["device_id"]) for r in rows]
    return collection(feats)
