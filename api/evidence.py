"""Evidence packs (hồ sơ chứng cứ): one supervisee, one period, as one zip archive that can be
checked offline.

The archive holds ``report.pdf`` (the printable case report), ``fixes.csv`` and
``fixes.geojson`` (the stored fixes, raw), ``decisions.json`` (the geofence decision on each fix,
recomputed by ``api.track``, with the zones and versions in force when the pack was made),
``alerts.json`` (the alerts of the period with their full append-only history), ``audit.json``
(who read or changed what about this person, their devices and alerts), ``case.json`` (the
sentence, the unit, zones and permits), and ``manifest.json``: the SHA-256 digest and size of
every other file, signed with HMAC-SHA256 under the service's key (the API token signing key;
a symmetric signature: whoever holds the key can check, and forge, it, so the key stays with
the service; ``key_id`` names which key without revealing it).

``verify`` checks an archive offline and says what, if anything, changed.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

FORMAT = "giamsat-evidence/1"
MANIFEST = "manifest.json"
FONT_CANDIDATES = (Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
                   Path("/usr/share/fonts/dejavu/DejaVuSans.ttf"))


def key_id(key: str) -> str:
    """A short public name of the signing key (its SHA-256, first 16 hex digits)."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _canonical(obj: Any) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)


def sign(manifest: Mapping[str, Any], key: str) -> str:
    """Hex HMAC-SHA256 of the manifest (without its ``signature``), canonical JSON."""
    body = {k: v for k, v in manifest.items() if k != "signature"}
    return hmac.new(key.encode(), _canonical(body), hashlib.sha256).hexdigest()


def pack(files: Mapping[str, bytes], meta: Mapping[str, Any], key: str) -> bytes:
    """The zip archive of ``files`` plus a signed manifest (``meta`` rides in the manifest)."""
    manifest: dict[str, Any] = {
        "format": FORMAT, **meta,
        "files": {name: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
                  for name, data in sorted(files.items())}}
    manifest["signature"] = {"alg": "HMAC-SHA256", "key_id": key_id(key),
                             "value": sign(manifest, key)}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in sorted(files.items()):
            zf.writestr(name, data)
        zf.writestr(MANIFEST, orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    return out.getvalue()


@dataclass
class Verdict:
    """What ``verify`` found: ``problems`` empty means the archive is as it was signed."""

    problems: list[str]
    files: int = 0
    meta: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(data: bytes, key: str) -> Verdict:
    """Check an archive: the manifest's signature, then each file's digest and size, and no
    file missing or added."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        return Verdict(["not a zip archive"])
    with zf:
        names = set(zf.namelist())
        if MANIFEST not in names:
            return Verdict(["no manifest.json: not an evidence pack"])
        try:
            manifest = orjson.loads(zf.read(MANIFEST))
            listed = manifest["files"]
            signature = manifest["signature"]["value"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return Verdict(["manifest.json is not a valid manifest (changed or damaged)"])
        problems = []
        if not hmac.compare_digest(sign(manifest, key), str(signature)):
            problems.append("manifest.json changed, or signed with another key "
                            f"(key_id {manifest['signature'].get('key_id')!r}, this key "
                            f"{key_id(key)!r}): its signature does not match")
        for name, want in sorted(listed.items()):
            if name not in names:
                problems.append(f"{name}: missing")
                continue
            got = zf.read(name)
            if hashlib.sha256(got).hexdigest() != want.get("sha256"):
                problems.append(f"{name}: changed (SHA-256 differs from the manifest; "
                                f"{len(got)} bytes, manifest says {want.get('bytes')})")
        for name in sorted(names - set(listed) - {MANIFEST}):
            problems.append(f"{name}: added, not in the manifest")
        meta = {k: v for k, v in manifest.items() if k not in ("files", "signature")}
        return Verdict(problems, len(listed), meta)


# --- the files ----------------------------------------------------------------------------

FIX_COLUMNS = ("device_id", "ts_ms", "ts_utc", "seq", "lat", "lon", "acc", "spd", "hdg", "src")


def fixes_csv(rows: list[dict[str, Any]]) -> bytes:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(FIX_COLUMNS)
    for r in rows:
        ts: datetime = r["ts"]
        w.writerow([r["device_id"], int(ts.timestamp() * 1000), ts.isoformat(), r["seq"],
                    repr(r["lat"]), repr(r["lon"]), r["acc"], r["spd"], r["hdg"], r["src"]])
    return out.getvalue().encode()


def fixes_geojson(rows: list[dict[str, Any]], sid: str) -> bytes:
    feats = [{"type": "Feature", "geometry": {"type": "Point", "coordinates": [r["lon"], r["lat"]]},
              "properties": {"device_id": r["device_id"], "ts": int(r["ts"].timestamp() * 1000),
                             "seq": r["seq"], "acc": r["acc"], "spd": r["spd"], "hdg": r["hdg"],
                             "src": r["src"]}} for r in rows]
    return orjson.dumps({"type": "FeatureCollection", "supervisee_id": sid, "features": feats})


def json_bytes(obj: Any) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)


def report_pdf(lines: list[tuple[str, str]]) -> bytes:
    """A printable report of (style, text) lines: ``h1``, ``h2`` or ``p`` (fpdf2, DejaVu Sans
    for Vietnamese; without the font, text is reduced to Latin-1 letters)."""
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    font = next((p for p in FONT_CANDIDATES if p.exists()), None)
    if font is not None:
        pdf.add_font("DejaVu", "", str(font))
        family = "DejaVu"
    else:
        family = "Helvetica"
    sizes = {"h1": 15, "h2": 12, "p": 9}
    for style, text in lines:
        pdf.set_font(family, size=sizes.get(style, 9))
        if style != "p":
            pdf.ln(2)
        shown = text if font is not None else _latin1(text)
        pdf.multi_cell(0, 5 if style == "p" else 7, shown, new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def _latin1(text: str) -> str:
    import unicodedata

    plain = unicodedata.normalize("NFKD", text.replace("đ", "d").replace("Đ", "D"))
    return plain.encode("latin-1", "ignore").decode("latin-1")
