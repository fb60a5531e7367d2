"""The runner and its command line: URL parsing, options, and short runs against a real broker."""

from __future__ import annotations

import argparse
import threading
import time
from collections import defaultdict

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from config.mqtt import MqttTarget, parse_mqtt_url
from simulators import cli
from simulators import messages as m
from simulators.demo import build_demo_document
from simulators.runner import RunConfig, fleet_for, simulate
from tests.simulators.protocol import payload_errors


def test_parse_mqtt_url():
    assert parse_mqtt_url("mqtt://127.0.0.1:1883") == MqttTarget("127.0.0.1", 1883)
    assert parse_mqtt_url("mqtt://localhost") == MqttTarget("localhost", 1883)
    assert parse_mqtt_url("mqtt://u%40x:p%3Aw@h:1999") == MqttTarget("h", 1999, "u@x", "p:w")
    assert parse_mqtt_url("mqtts://h") == MqttTarget("h", 8883, tls=True)
    with pytest.raises(ValueError):
        parse_mqtt_url("http://h")


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    cli.add_arguments(p)
    return p.parse_args(argv)


def test_options_and_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("GIAMSAT_MQTT_URL", "mqtt://10.0.0.9:1884")
    cfg = cli.config_from_args(_parse([]))
    assert cfg.url == "mqtt://10.0.0.9:1884" and cfg.duration_s == 60 and cfg.qos == 1
    assert cfg.scenarios == () and not cfg.single_connection and cfg.registry is None
    doc = build_demo_document(per_commune=1)
    path = tmp_path / "reg.json"
    path.write_bytes(orjson.dumps(doc))
    args = _parse(
        [
            "--scenario",
            "exit,tamper",
            "--scenario",
            "offline",
            "--share",
            "0.5",
            "--rate",
            "40",
            "--devices",
            "4",
            "--batch",
            "10",
            "--registry",
            str(path),
            "--single-connection",
        ]
    )
    cfg = cli.config_from_args(args)
    assert cfg.scenarios == ("exit", "tamper", "offline") and cfg.registry == doc and cfg.rate == 40
    fleet = fleet_for(cfg, 1_795_000_000_000)
    assert len(fleet.devices) == 4 and fleet.config.fix_interval_s == pytest.approx(
        4 / (10 * 40)
    )  # 40 msg/s
    with pytest.raises(SystemExit):
        _parse(["--batch", "501"])
    with pytest.raises(SystemExit):
        _parse(["--duration", "0"])
    with pytest.raises(ValueError):
        cli.config_from_args(_parse(["--scenario", "teleport"]))


def test_demo_registry_grows_to_the_device_count():
    fleet = fleet_for(RunConfig(devices=45), 1_795_000_000_000)
    assert len(fleet.devices) == 45
    with pytest.raises(ValueError):
        fleet_for(RunConfig(devices=5, registry=build_demo_document(per_commune=0)), 0)


def test_bad_broker_is_a_clear_error(capsys):
    # nothing listens on port 9 (discard) of loopback: refused at once
    rc = cli.main(["--mqtt-url", "mqtt://127.0.0.1:9", "--devices", "1", "--duration", "1"])
    assert rc == 2 and "error" in capsys.readouterr().err


# --- against a broker -----------------------------------------------------------------------


def _registry(prefix: str, n: int) -> dict:
    """The demo registry with device ids of this test's own (the broker may be shared)."""
    doc = build_demo_document(per_commune=1)
    doc["devices"] = [dict(d, id=f"{prefix}-{i:02d}") for i, d in enumerate(doc["devices"][:n])]
    return doc


class Listener:
    """A subscriber that records what arrives on our devices' topics."""

    def __init__(self, broker, prefix: str) -> None:
        self.prefix, self.got = prefix, defaultdict(list)
        self.lock = threading.Lock()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"listen-{prefix}",
            clean_session=True,
        )
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        for kind in ("fix", "hb", "evt", "ack"):
            self.client.subscribe(f"{m.TOPIC_PREFIX}/+/{kind}", qos=1)
        self.client.loop_start()
        time.sleep(0.3)  # let the subscriptions settle

    def _on_message(self, client, userdata, msg) -> None:
        _, _, _, device_id, kind = msg.topic.split("/")
        if device_id.startswith(self.prefix):
            with self.lock:
                self.got[kind].append((device_id, msg.payload))

    def wait_for(self, kind: str, n: int, timeout: float = 10.0) -> list:
        deadline = time.monotonic() + timeout
        while len(self.got[kind]) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.got[kind])

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.services
def test_run_delivers_what_it_says_it_sent(mqtt_broker, unique_id):
    prefix = f"simt{unique_id}"
    listener = Listener(mqtt_broker, prefix)
    cfg = RunConfig(
        url=mqtt_broker.url,
        registry=_registry(prefix, 4),
        fix_interval_s=0.25,
        hb_interval_s=0.5,
        duration_s=2.5,
        clean_session=True,
        quiet=True,
        seed=11,
    )
    result: dict = {}
    runner = threading.Thread(target=lambda: result.update(s=simulate(cfg)))
    try:
        runner.start()
        time.sleep(1.0)
        locate = m.encode(m.command(f"c-{unique_id}", "locate"))
        listener.client.publish(m.topic(f"{prefix}-00", "cmd"), locate, qos=1)
        runner.join(timeout=30)
        s = result["s"]
        fixes = listener.wait_for("fix", s.by_kind["fix"])
        acks = listener.wait_for("ack", 1)
    finally:
        listener.close()
    assert s.devices == 4 and s.failed == 0 and s.acked == s.sent
    assert s.by_kind["fix"] >= 4 * 8 and s.by_kind["hb"] >= 4 and s.commands == 1
    assert len(fixes) == s.by_kind["fix"]
    assert len(listener.got["hb"]) == s.by_kind["hb"]
    now = m.now_ms()
    seqs = defaultdict(list)
    for device_id, payload in fixes:
        assert payload_errors("fix", payload, now) == []
        seqs[device_id].append(orjson.loads(payload)["seq"])
    assert set(seqs) == {f"{prefix}-{i:02d}" for i in range(4)}
    assert orjson.loads(acks[0][1])["id"] == f"c-{unique_id}"


@pytest.mark.services
def test_single_connection_stops_at_max_messages(mqtt_broker, unique_id, tmp_path, capsys):
    prefix = f"sims{unique_id}"
    path = tmp_path / "reg.json"
    path.write_bytes(orjson.dumps(_registry(prefix, 6)))
    listener = Listener(mqtt_broker, prefix)
    try:
        rc = cli.main(
            [
                "--mqtt-url",
                mqtt_broker.url,
                "--registry",
                str(path),
                "--rate",
                "200",
                "--batch",
                "5",
                "--max-messages",
                "150",
                "--duration",
                "10",
                "--single-connection",
                "--clean-session",
            ]
        )
        out = capsys.readouterr().out
        got = listener.wait_for("fix", 150)
    finally:
        listener.close()
    assert rc == 0, out
    assert "sent 150 messages" in out and "acked 150" in out
    assert len(got) + len(listener.got["hb"]) + len(listener.got["evt"]) == 150
    assert all(len(orjson.loads(p)["fixes"]) == 5 for _, p in got)


def test_an_interrupted_run_reports_how_long_it_ran(mqtt_broker, unique_id, tmp_path):
    """SIGTERM (how `giamsat up` stops its simulator) ends the run cleanly with a true summary:
    its duration and rate, not zero."""
    import signal
    import subprocess
    import sys

    path = tmp_path / "reg.json"
    path.write_bytes(orjson.dumps(_registry(f"simi{unique_id}", 4)))
    proc = subprocess.Popen(
        [sys.executable, "-m", "simulators", "--mqtt-url", mqtt_broker.url, "--registry",
         str(path), "--rate", "50", "--duration", "120", "--single-connection",
         "--clean-session", "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(4)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130, out
    line = next(ln for ln in out.splitlines() if ln.startswith("simulated 4 devices for"))
    seconds = float(line.split(" for ")[1].split(" s:")[0])
    rate = int(line.rsplit(", ", 1)[1].split()[0])
    assert 1.0 <= seconds < 20.0 and rate > 0, line
