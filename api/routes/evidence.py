"""``GET /api/v1/supervisees/{sid}/evidence?from=&to=``: the evidence pack (``api.evidence``)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from fastapi import APIRouter, Response
from psycopg.rows import dict_row

from api import evidence, track
from api.deps import Caller, Conn, Ctx, audit
from api.registry import SuperviseeId, supervisee
from api.routes.permits import list_permits
from api.routes.supervisees import get_zones
from api.routes.track import FromMs, ToMs, _history, _load, _range
from api.wire import to_ms

router = APIRouter(prefix="/api/v1", tags=["supervisees"])


def _ms_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: (to_ms(v) if isinstance(v, datetime) else v) for k, v in r.items()} for r in rows]


def _audit_rows(conn: psycopg.Connection, subjects: list[str]) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute("SELECT id, at, actor, action, subject, params FROM audit_log "
                           "WHERE subject = ANY(%s) OR params->>'supervisee_id' = ANY(%s) "
                           "ORDER BY id", (subjects, subjects)).fetchall()
    return _ms_rows(rows)


def _devices(conn: psycopg.Connection, sid: str) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT device_id FROM device_assignments WHERE supervisee_id = %s UNION "
        "SELECT id FROM devices WHERE supervisee_id = %s", (sid, sid))]


def _report(sup: dict, t: track.Track, zones: list[dict], permits: list[dict],
            start: int, end: int, who: str, now_ms: int, tz: str) -> list[tuple[str, str]]:
    zone = ZoneInfo(tz)

    def local(ms: int | None) -> str:
        return "—" if ms is None else datetime.fromtimestamp(ms / 1000, zone).strftime(
            "%d/%m/%Y %H:%M:%S")

    counts: dict[str, int] = {}
    for d in t.decisions:
        counts[d["decision"]] = counts.get(d["decision"], 0) + 1
    lines = [("h1", "Hồ sơ chứng cứ giám sát điện tử / Electronic-monitoring evidence pack"),
             ("p", f"Đối tượng / supervisee: {sup['name']} ({sup['id']})"),
             ("p", f"Hình phạt / sentence: {sup['sentence_type']}, "
                   f"{sup['sentence_start']} – {sup['sentence_end']}; đơn vị / unit: {sup['unit']}"),
             ("p", f"Thời kỳ / period: {local(start)} – {local(end)} ({tz})"),
             ("p", f"Lập lúc / generated: {local(now_ms)} bởi / by {who}"),
             ("h2", "Điểm định vị / fixes"),
             ("p", f"{len(t.fixes)} điểm; kết luận / decisions: "
                   + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))),
             ("h2", "Vùng / zones")]
    lines += [("p", f"{z['properties'].get('id')}: {z['properties'].get('kind')}, "
                    f"{z['properties'].get('purpose')}, phiên bản / version "
                    f"{z['properties'].get('version')}") for z in zones] or [("p", "—")]
    lines.append(("h2", "Giấy phép / permits"))
    lines += [("p", f"#{p['id']} {local(p['valid_from'])} – {local(p['valid_to'])}: "
                    f"{p['category']}, {p['reason']}") for p in permits] or [("p", "—")]
    lines.append(("h2", "Cảnh báo / alerts"))
    lines += [("p", f"#{a['id']} {a['type']} {a['severity']} {a['status']} "
                    f"{local(a['opened_at'])}: {a['message_vi']}"
                    + (f" — kết quả / outcome {a['outcome']}" if a.get("outcome") else ""))
              for a in t.alerts] or [("p", "—")]
    lines.append(("p", "Tệp kèm theo và mã SHA-256 của chúng: manifest.json (có chữ ký). "
                       "Kiểm tra: giamsat verify-evidence FILE."))
    return lines


@router.get("/supervisees/{sid}/evidence",
            responses={200: {"content": {"application/zip": {}},
                             "description": "the evidence pack (zip)"},
                       400: {"description": "invalid range"},
                       404: {"description": "not in your scope"}},
            response_class=Response)
def evidence_pack(sid: SuperviseeId, ctx: Ctx, caller: Caller, conn: Conn, start: FromMs,
                  end: ToMs) -> Response:
    """One supervisee, one period, as a zip: printable report (PDF), raw fixes (CSV,
    GeoJSON), per-fix decisions with the zones in force, alerts with their full history, the
    audit of who read or changed what, and a manifest of SHA-256 digests signed with the
    service's key (HMAC-SHA256). ``giamsat verify-evidence FILE`` checks it offline. Audited."""
    sup = supervisee(conn, caller, sid)
    a, b = _range(start, end)
    t = _load(ctx, conn, sid, a, b)
    zones = get_zones(sid, caller, conn)["features"]
    permits = list_permits(sid, caller, conn)
    history = _history(conn, [x["id"] for x in t.alerts])
    now_ms = to_ms(ctx.now()) or 0
    audit(conn, ctx, caller, "evidence.read", sid,
          {"from": start, "to": end, "count": len(t.fixes), "alerts": len(t.alerts)})
    subjects = [sid, *_devices(conn, sid), *[str(x["id"]) for x in t.alerts]]
    case = {"supervisee": {**sup, "sentence_start": str(sup["sentence_start"]),
                           "sentence_end": str(sup["sentence_end"])},
            "zones": zones, "permits": permits}
    files = {
        "report.pdf": evidence.report_pdf(_report(sup, t, zones, permits, start, end,
                                                  caller.username, now_ms, ctx.settings.timezone)),
        "fixes.csv": evidence.fixes_csv(t.fixes),
        "fixes.geojson": evidence.fixes_geojson(t.fixes, sid),
        "decisions.json": evidence.json_bytes({
            "note": "recomputed by the geofence engine against the zones and permits below",
            "zones_in_force": [{"id": z["properties"].get("id"),
                                "version": z["properties"].get("version")} for z in zones],
            "decisions": [{"device_id": r["device_id"], "ts": to_ms(r["ts"]), "seq": r["seq"],
                           **d} for r, d in zip(t.fixes, t.decisions, strict=True)]}),
        "alerts.json": evidence.json_bytes([{**al, "history": _ms_rows(history[al["id"]])}
                                            for al in t.alerts]),
        "audit.json": evidence.json_bytes(_audit_rows(conn, subjects)),
        "case.json": evidence.json_bytes(case),
    }
    meta = {"supervisee_id": sid, "from": start, "to": end, "generated_at": now_ms,
            "generated_by": caller.username, "fixes": len(t.fixes),
            "truncated": t.truncated}
    data = evidence.pack(files, meta, ctx.evidence_key)
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", f"evidence-{sid}-{start}-{end}.zip")
    return Response(data, media_type="application/zip", headers={
        "Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})
