"""deploy/compose.cluster.yaml and deploy/rabbitmq/: the three-node durable broker and two
workers parse and agree with the code (the drill tests/drills/test_cluster.py runs the same
shape on loopback). Docker is not run here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from config import Settings

yaml = pytest.importorskip("yaml")

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.cluster.yaml").read_text())


def test_three_rabbitmq_nodes_form_one_cluster(compose):
    nodes = [f"rabbit{i}" for i in (1, 2, 3)]
    conf = (DEPLOY / "rabbitmq" / "rabbitmq.conf").read_text()
    for i, node in enumerate(nodes, 1):
        svc = compose["services"][node]
        assert svc["hostname"] == node
        assert svc["image"].startswith("rabbitmq:3.10")
        assert svc["environment"]["RABBITMQ_ERLANG_COOKIE"].startswith("${RABBITMQ_ERLANG_COOKIE")
        assert f"cluster_formation.classic_config.nodes.{i} = rabbit@{node}" in conf
        mounts = {v.split(":")[1] for v in svc["volumes"]}
        assert {"/etc/rabbitmq/rabbitmq.conf", "/etc/rabbitmq/enabled_plugins"} <= mounts
    plugins = (DEPLOY / "rabbitmq" / "enabled_plugins").read_text()
    assert "rabbitmq_mqtt" in plugins and "rabbitmq_consistent_hash_exchange" in plugins
    assert "mqtt.subscription_ttl = undefined" in conf  # device sessions never expire
    assert "mqtt.allow_anonymous = false" in conf


def test_two_workers_share_the_shards_and_reach_every_node(compose):
    services = compose["services"]
    indexes = set()
    for name in ("worker0", "worker1"):
        env = services[name]["environment"]
        assert services[name]["command"] == ["worker"]
        assert env["GIAMSAT_WORKERS"] == "2"
        indexes.add(env["GIAMSAT_WORKER_INDEX"])
        urls = env["GIAMSAT_AMQP_URL"].split(",")
        assert [re.search(r"@(rabbit\d):5672/", u)[1] for u in urls] == \
            ["rabbit1", "rabbit2", "rabbit3"]
        assert set(env) - {"GIAMSAT_WORKER_INDEX"} <= {f"GIAMSAT_{k.upper()}"
                                                       for k in Settings.model_fields} | set(env)
    assert indexes == {"0", "1"}
    assert services["broker-config"]["command"][-2:] == ["--shards", "2"]
    init = services["rabbitmq-init"]
    assert "import_definitions /broker/definitions.json" in init["entrypoint"][-1]
    assert all(init["depends_on"][f"rabbit{i}"]["condition"] == "service_healthy"
               for i in (1, 2, 3))


def test_every_setting_used_exists_and_every_variable_is_in_env_example(compose):
    text = (DEPLOY / "compose.cluster.yaml").read_text()
    known = {f"GIAMSAT_{k.upper()}" for k in Settings.model_fields}
    used = set(re.findall(r"\b(GIAMSAT_[A-Z_]+):", text))
    assert used <= known, used - known
    example = (DEPLOY / ".env.example").read_text()
    for var in set(re.findall(r"\$\{([A-Z_]+)", text)):
        assert re.search(rf"^{var}=", example, re.M), var
