"""Every setting is documented in config/giamsat.env.example with its real default."""

from pathlib import Path

from config import Settings

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "giamsat.env.example"


def _documented() -> dict[str, str]:
    out = {}
    for line in EXAMPLE.read_text().splitlines():
        line = line.lstrip("# ").strip()
        if line.startswith("GIAMSAT_") and "=" in line:
            key, _, value = line.partition("=")
            out[key] = value
    return out


def _default_text(value) -> str:
    if value is None:
        return ""
    return str(value).lower() if isinstance(value, bool) else str(value)


def test_every_key_is_documented_with_its_default():
    documented = _documented()
    for name, field in Settings.model_fields.items():
        key = f"GIAMSAT_{name.upper()}"
        assert key in documented, f"{key} missing from {EXAMPLE.name}"
        assert documented[key] == _default_text(field.default), key


def test_no_stale_keys_in_the_example():
    known = {f"GIAMSAT_{n.upper()}" for n in Settings.model_fields}
    assert set(_documented()) <= known


def test_environment_overrides(monkeypatch):
    monkeypatch.setenv("GIAMSAT_CONFIRM_FIXES", "3")
    monkeypatch.setenv("GIAMSAT_HTTP", "0.0.0.0:9000")
    s = Settings()
    assert s.confirm_fixes == 3
    assert s.http_host_port() == ("0.0.0.0", 9000)
