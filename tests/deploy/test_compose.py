"""deploy/: the compose file, Prometheus and Grafana provisioning parse and agree with each
other and with the code. Docker is not run here (deploy/README.md says so)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
REPO = DEPLOY.parent


def load(rel: str) -> dict:
    return yaml.safe_load((DEPLOY / rel).read_text())


@pytest.fixture(scope="module")
def compose() -> dict:
    return load("compose.yaml")


def test_compose_has_the_five_services(compose):
    services = compose["services"]
    assert {"mosquitto", "timescaledb", "giamsat", "prometheus", "grafana"} <= set(services)
    assert re.fullmatch(r"timescale/timescaledb:[\d.]+-pg1[56]", services["timescaledb"]["image"])
    assert services["mosquitto"]["image"].startswith("eclipse-mosquitto:2")
    for name in ("giamsat", "broker-config"):
        assert services[name]["build"]["dockerfile"] == "deploy/Dockerfile"
        assert (DEPLOY / services[name]["build"]["context"] / "deploy/Dockerfile").exists()
    assert services["giamsat"]["command"] == ["up"]
    assert services["broker-config"]["command"][0] == "broker-config"
    assert services["mosquitto"]["depends_on"]["broker-config"]["condition"] == \
        "service_completed_successfully"


def test_bind_mounts_exist(compose):
    for name, svc in compose["services"].items():
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith("."):
                assert (DEPLOY / src).exists(), f"{name}: {src} is missing"


def test_only_mqtt_for_devices_is_published_beyond_loopback(compose):
    for name, svc in compose["services"].items():
        for port in svc.get("ports", []):
            if name == "mosquitto":
                assert port == "1883:1883"  # the device listener; 1884 (service) unpublished
            else:
                assert port.startswith("127.0.0.1:"), f"{name} publishes {port} on all addresses"


def test_every_variable_is_in_env_example(compose):
    text = (DEPLOY / "compose.yaml").read_text()
    text += (DEPLOY / "compose.cluster.yaml").read_text()  # one .env for both files
    used = set(re.findall(r"\$\{([A-Z_]+)", text))
    example = {line.split("=", 1)[0] for line in (DEPLOY / ".env.example").read_text().splitlines()
               if line and not line.startswith("#")}
    assert used == example


def test_giamsat_environment_uses_known_settings(compose):
    from config.settings import Settings

    env = compose["x-giamsat-env"]
    known = {f"GIAMSAT_{name.upper()}" for name in Settings.model_fields}
    assert set(env) <= known, set(env) - known
    assert env["GIAMSAT_MQTT_URL"].endswith("@mosquitto:1884")  # the service's listener
    assert compose["services"]["giamsat"]["environment"] == env


def test_prometheus_scrapes_giamsat(compose):
    prom = load("prometheus/prometheus.yml")
    job = next(j for j in prom["scrape_configs"] if j["job_name"] == "giamsat")
    assert job["metrics_path"] == "/metrics"
    host, port = job["static_configs"][0]["targets"][0].split(":")
    assert host in compose["services"]
    assert compose["x-giamsat-env"]["GIAMSAT_HTTP"].endswith(f":{port}")


def test_grafana_provisioning_points_at_the_mounted_dashboards(compose):
    mounts = dict(v.split(":")[:2] for v in compose["services"]["grafana"]["volumes"]
                  if v.startswith("."))
    provider = load("grafana/provisioning/dashboards/giamsat.yaml")["providers"][0]
    container_dir = provider["options"]["path"]
    host_dir = next(h for h, c in mounts.items() if c == container_dir)
    assert (DEPLOY / host_dir / "giamsat.json").exists()
    ds = load("grafana/provisioning/datasources/prometheus.yaml")["datasources"][0]
    assert ds["uid"] == "prometheus" and ds["url"] == "http://prometheus:9090"


def test_dockerfile_copies_every_package():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = [p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]]
    copied = set(re.findall(r"^COPY (\w+) \1$", (DEPLOY / "Dockerfile").read_text(), re.M))
    assert set(packages) == copied
