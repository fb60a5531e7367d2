"""The case export (hồ sơ giám sát): one supervisee, one period, as one printable HTML page.

Self-contained: inline CSS and an inline SVG sketch of the zones and the track, no script, no
external resource, so it prints and archives as it is. Times are local (settings.timezone).
Every value from the database is HTML-escaped.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from html import escape
from typing import Any
from zoneinfo import ZoneInfo

from api.track import Track
from api.wire import to_dt

MAX_TABLE_ROWS = 5000  # fixes listed in the table; the map and the summary use all of them

_CSS = """
body{font:13px/1.4 system-ui,"Segoe UI",Roboto,"Noto Sans",sans-serif;margin:24px;color:#111}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:20px 0 6px;border-bottom:1px solid #999}
table{border-collapse:collapse;width:100%;margin:4px 0 8px}th,td{border:1px solid #bbb;
padding:2px 5px;text-align:left;vertical-align:top}th{background:#eee}
.muted{color:#555}.violation{color:#b91c1c;font-weight:600}.uncertain{color:#a16207}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 12px;margin:0}dt{font-weight:600}
dd{margin:0}svg{border:1px solid #bbb;background:#fafafa;max-width:100%;height:auto}
.history{margin:0;padding-left:18px}
@media print{body{margin:10mm}h2{break-after:avoid}tr{break-inside:avoid}}
"""


def _e(value: Any) -> str:
    return "" if value is None else escape(str(value))


class _Clock:
    def __init__(self, tz: str):
        self.tz = ZoneInfo(tz)

    def fmt(self, ms: int | None) -> str:
        if ms is None:
            return ""
        return to_dt(ms).astimezone(self.tz).strftime("%Y-%m-%d %H:%M:%S")

    def dt(self, value: datetime | None) -> str:
        return "" if value is None else value.astimezone(self.tz).strftime("%Y-%m-%d %H:%M:%S")


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _rings(geometry: dict | None) -> list[list[list[float]]]:
    if not geometry:
        return []
    if geometry.get("type") == "Polygon":
        return list(geometry["coordinates"])
    if geometry.get("type") == "MultiPolygon":
        return [ring for poly in geometry["coordinates"] for ring in poly]
    return []


def _sketch(zones: list[dict], track: Track) -> str:
    """An inline SVG: zones (green inclusion, red exclusion), the track, violating fixes."""
    shapes = []
    for z in zones:
        rings = _rings(z["geometry"])
        if z["properties"].get("radius_m") is not None:
            lon, lat = z["geometry"]["coordinates"]
            shapes.append((z, ("circle", lon, lat, z["properties"]["radius_m"])))
        else:
            shapes.append((z, ("rings", rings)))
    pts = [(r["lon"], r["lat"]) for r in track.fixes]
    xs = [p[0] for p in pts] + [c[0] for _, s in shapes if s[0] == "rings"
                                 for ring in s[1] for c in ring]
    ys = [p[1] for p in pts] + [c[1] for _, s in shapes if s[0] == "rings"
                                 for ring in s[1] for c in ring]
    for _, s in shapes:
        if s[0] == "circle":
            d = s[3] / 111_320
            xs += [s[1] - d, s[1] + d]
            ys += [s[2] - d, s[2] + d]
    if not xs:
        return "<p class='muted'>Không có dữ liệu vị trí / no position data.</p>"
    w, h = 640.0, 420.0
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    span = max(x1 - x0, y1 - y0, 1e-4) * 1.05
    scale = min(w, h) / span

    def px(lon: float, lat: float) -> str:
        return f"{(lon - x0) * scale + 4:.1f},{(y1 - lat) * scale + 4:.1f}"

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0f}" height="{h:.0f}" '
           f'viewBox="0 0 {w:.0f} {h:.0f}" role="img" aria-label="zones and track">']
    for z, s in shapes:
        colour = "#15803d" if z["properties"]["kind"] == "inclusion" else "#b91c1c"
        if s[0] == "circle":
            cx, cy = px(s[1], s[2]).split(",")
            out.append(f'<circle cx="{cx}" cy="{cy}" r="{s[3] / 111_320 * scale:.1f}" '
                       f'fill="{colour}" fill-opacity="0.1" stroke="{colour}"/>')
        for ring in s[1] if s[0] == "rings" else []:
            out.append(f'<polygon points="{" ".join(px(*c[:2]) for c in ring)}" '
                       f'fill="{colour}" fill-opacity="0.1" stroke="{colour}"/>')
    if pts:
        out.append(f'<polyline points="{" ".join(px(*p) for p in pts)}" fill="none" '
                   'stroke="#1d4ed8" stroke-width="1.2"/>')
    for r, d in zip(track.fixes, track.decisions, strict=True):
        if d["decision"] == "violation":
            cx, cy = px(r["lon"], r["lat"]).split(",")
            out.append(f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="#b91c1c"/>')
    out.append("</svg>")
    return "".join(out)


def _zone_rows(zones: list[dict], clock: _Clock) -> list[list[str]]:
    rows = []
    for z in zones:
        p = z["properties"]
        span = (f"{clock.fmt(p['effective_from']) or '…'} → {clock.fmt(p['effective_to']) or '…'}"
                f" ({_e(p['changed_by'])})")
        shape = (f"circle r = {p['radius_m']:.0f} m" if p.get("radius_m") is not None
                 else _e(z["geometry"]["type"]))
        sched = "; ".join(f"{w['days']} {w['start']}-{w['end']}" for w in p["schedule"] or [])
        over = ", ".join(f"{k}={p[k]}" for k in ("margin_m", "confirm_fixes", "escalate_after_s")
                         if p.get(k) is not None)
        rows.append([_e(z["id"]), f"{_e(p['version'])}: {span}", _e(p["kind"]),
                     _e(p["purpose"]), shape, _e(sched), _e(over)])
    return rows


def _alerts(alerts: list[dict], history: dict[int, list[dict]], clock: _Clock) -> str:
    if not alerts:
        return "<p class='muted'>Không có cảnh báo / no alerts.</p>"
    parts = []
    for a in alerts:
        items = "".join(
            f"<li>{clock.dt(h['at'])} <b>{_e(h['action'])}</b> ({_e(h['actor'])})"
            f"{': ' + _e(h['note']) if h['note'] else ''}</li>" for h in history.get(a["id"], []))
        parts.append(
            _table(["#", "loại / type", "mức / severity", "trạng thái / status", "kết quả / outcome",
                    "mở lúc / opened", "vùng / zone"],
                   [[_e(a["id"]), _e(a["type"]), _e(a["severity"]), _e(a["status"]),
                     _e(a["outcome"]), clock.fmt(a["opened_at"]), _e(a["zone_id"])]])
            + f"<p>{_e(a['message_vi'])}<br><span class='muted'>{_e(a['message_en'])}</span></p>"
            + f"<ol class='history'>{items}</ol>")
    return "".join(parts)


def _summary(track: Track, clock: _Clock) -> str:
    counts = Counter(d["decision"] for d in track.decisions)
    devices = sorted({r["device_id"] for r in track.fixes})
    outside = [z["distance_m"] for d in track.decisions for z in d["zones"]
               if z["class"] == "violation" and z["distance_m"] is not None]
    first = clock.dt(track.fixes[0]["ts"]) if track.fixes else ""
    last = clock.dt(track.fixes[-1]["ts"]) if track.fixes else ""
    return (
        "<dl>"
        f"<dt>Số điểm / fixes</dt><dd>{len(track.fixes)}"
        f"{' (cắt bớt / truncated)' if track.truncated else ''}</dd>"
        f"<dt>Thiết bị / devices</dt><dd>{_e(', '.join(devices))}</dd>"
        f"<dt>Điểm đầu, cuối / first, last</dt><dd>{first} — {last}</dd>"
        f"<dt>Vi phạm / violating</dt><dd>{counts['violation']}</dd>"
        f"<dt>Không chắc / uncertain</dt><dd>{counts['uncertain']}</dd>"
        f"<dt>Tuân thủ / compliant</dt><dd>{counts['compliant']}</dd>"
        f"<dt>Không tính (độ chính xác kém) / ignored (poor accuracy)</dt>"
        f"<dd>{counts['ignored']}</dd>"
        f"<dt>Xa nhất ngoài vùng / furthest outside</dt>"
        f"<dd>{f'{max(abs(x) for x in outside):.0f} m' if outside else ''}</dd>"
        "</dl>")


def _fix_rows(track: Track, clock: _Clock) -> list[list[str]]:
    rows = []
    for r, d in list(zip(track.fixes, track.decisions, strict=True))[:MAX_TABLE_ROWS]:
        cls = d["decision"]
        rows.append([clock.dt(r["ts"]), _e(r["seq"]), f"{r['lat']:.6f}", f"{r['lon']:.6f}",
                     f"{r['acc']:.0f}", _e(r["device_id"]), f"<span class='{cls}'>{cls}</span>"])
    return rows


def render(*, sup: dict, unit: dict, zones: list[dict], permits: list[dict], track: Track,
           history: dict[int, list[dict]], start_ms: int, end_ms: int, generated_ms: int,
           officer: str, tz: str) -> str:
    """The whole page."""
    c = _Clock(tz)
    more = len(track.fixes) - MAX_TABLE_ROWS
    permit_rows = [[f"{_e(p['id'])} v{_e(p['version'])}", c.fmt(p["valid_from"]),
                    c.fmt(p["valid_to"]), c.fmt(p["revoked_at"]), _e(p["category"]),
                    _e(p["reason"]), "anywhere" if p["destination"] == "anywhere" else "area"]
                   for p in permits]
    return f"""<!DOCTYPE html>
<html lang="vi"><head><meta charset="utf-8">
<title>Hồ sơ giám sát {_e(sup['id'])}</title><style>{_CSS}</style></head><body>
<h1>Hồ sơ giám sát điện tử / Electronic-monitoring case export</h1>
<dl>
<dt>Đối tượng / supervisee</dt><dd>{_e(sup['id'])} — {_e(sup['name'])}</dd>
<dt>Loại án / sentence</dt><dd>{_e(sup['sentence_type'])}, {_e(sup['sentence_start'])} →
{_e(sup['sentence_end'])}</dd>
<dt>Đơn vị / unit</dt><dd>{_e(unit['code'])} — {_e(unit['name'])}</dd>
<dt>Thời kỳ / period</dt><dd>{c.fmt(start_ms)} → {c.fmt(end_ms)} ({_e(tz)})</dd>
<dt>Lập lúc / generated</dt><dd>{c.fmt(generated_ms)} bởi / by {_e(officer)}</dd>
</dl>
<h2>Tóm tắt hành trình / Track summary</h2>{_summary(track, c)}
{_sketch(zones, track)}
<h2>Vùng / Zones</h2>
<p class="muted">Các phiên bản có hiệu lực trong thời kỳ / the versions in force during the
period (từ → đến / from → to, người thay đổi / changed by).</p>
{_table(["id", "phiên bản / version", "loại / kind", "mục đích / purpose", "hình / shape",
         "lịch / schedule", "tham số / overrides"], _zone_rows(zones, c))}
<h2>Giấy phép / Permits</h2>
{_table(["# (phiên bản / version)", "từ / from", "đến / to", "thu hồi / revoked",
         "loại / category", "lý do / reason", "nơi đến / destination"],
        permit_rows) if permits else "<p class='muted'>Không có / none.</p>"}
<h2>Cảnh báo và lịch sử / Alerts and their history</h2>
{_alerts(track.alerts, history, c)}
<h2>Các điểm vị trí / Fixes</h2>
<p class="muted">Quyết định tính lại theo phiên bản vùng và giấy phép có hiệu lực tại thời điểm
của từng điểm / decisions recomputed against the zone and permit versions in force at each
fix's time.</p>
{_table(["thời gian / time", "seq", "lat", "lon", "acc m", "thiết bị / device",
         "quyết định / decision"], _fix_rows(track, c))}
{f"<p class='muted'>… {more} điểm nữa không liệt kê / more fixes not listed.</p>" if more > 0 else ""}
</body></html>
"""
