"""Runs a simulated fleet against an MQTT broker in real time, bounded in time and count.

Each device connects with its own client id (= its device id, a persistent session, subscribed
to its own `cmd` topic), as the contract asks of a device; `single_connection` publishes
everything through one client instead, which is cheaper for load runs but is not what a real
device does (the service may see one client id for many devices).
"""

from __future__ import annotations

import math
import queue
import socket
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, TextIO

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from config.mqtt import PUBLISH_WINDOW, MqttTarget, parse_mqtt_url
from simulators import messages as m
from simulators.demo import build_demo_document
from simulators.fleet import Fleet, FleetConfig
from simulators.profiles import profiles

DEFAULT_URL = "mqtt://127.0.0.1:1883"
MAX_STEP_MS = 250  # fleet time stepped per round at most (ms)
# Unconfirmed publishes at most. paho's message ids are 16-bit, and paho walks a client's whole
# table of outgoing messages on every PUBACK, so a long queue makes each acknowledgement cost
# more: with 20,000 outstanding one client managed ~12,000 msgs/s here, with 1,000 ~23,000.
MAX_OUTSTANDING = 1000


@dataclass
class RunConfig:
    """One simulation run. Durations in seconds; `registry` is an import document (default: the
    demo's); `devices` None means all of the registry's devices."""

    url: str = DEFAULT_URL
    devices: int | None = None
    rate: float | None = (
        None  # fix messages per second for the whole fleet; overrides fix_interval_s
    )
    fix_interval_s: float = 10.0
    hb_interval_s: float = 60.0
    duration_s: float = 60.0
    max_messages: int | None = None
    scenarios: tuple[str, ...] = ()
    share: float = 0.2
    batch: int = 1
    registry: dict[str, Any] | None = None
    seed: int = 1
    qos: int = 1
    hb_qos: int = 0
    single_connection: bool = False
    clean_session: bool = False
    quiet: bool = False
    connect_timeout_s: float = 15.0
    drain_timeout_s: float = 15.0
    tick_s: float = 0.05  # how often the fleet is stepped (s)


@dataclass
class Summary:
    """What a run did: messages published (`sent`), confirmed by the broker (`acked`: PUBACK for
    QoS 1, written to the socket for QoS 0), by kind (`fix`, `hb`, `evt`, `ack`) and fixes."""

    devices: int = 0
    sent: int = 0
    acked: int = 0
    failed: int = 0
    fixes: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    commands: int = 0
    elapsed_s: float = 0.0
    interrupted: bool = False
    lag_s: float = 0.0  # how far the fleet's clock was behind the wall clock at the end
    assignments: dict[str, str] = field(default_factory=dict)

    def line(self) -> str:
        """A one-line human summary."""
        rate = self.sent / self.elapsed_s if self.elapsed_s else 0.0
        kinds = " ".join(f"{k}={v}" for k, v in sorted(self.by_kind.items()))
        return (
            f"simulated {self.devices} devices for {self.elapsed_s:.1f} s: sent {self.sent} "
            f"messages ({kinds}; {self.fixes} fixes), acked {self.acked}, failed {self.failed}, "
            f"{rate:.0f} msg/s"
        )


class Publisher:
    """MQTT clients for the fleet: one per device, or one shared; counts confirmed publishes."""

    def __init__(self, target: MqttTarget, device_ids: list[str], cfg: RunConfig) -> None:
        self.target, self.cfg = target, cfg
        self.acked = 0  # confirmed by the broker (PUBACK; for QoS 0, written out)
        self.published = 0  # accepted by paho
        self._lock = threading.Lock()
        self.commands: queue.Queue[tuple[str, bytes]] = queue.Queue(maxsize=10_000)
        self._connected: set[str] = set()
        self.refused: str | None = None
        self._stalled = False  # a wait for confirmations ran out
        self._ready = threading.Condition(self._lock)
        if cfg.single_connection:
            cid = f"giamsat-sim-{uuid.uuid4().hex[:8]}"
            shared = self._client(cid, f"{m.TOPIC_PREFIX}/+/cmd")
            self.clients = {d: shared for d in device_ids}
            self._all = {cid: shared}
        else:
            self.clients = {d: self._client(d, m.topic(d, "cmd")) for d in device_ids}
            self._all = dict(self.clients)

    def _client(self, client_id: str, cmd_topic: str) -> mqtt.Client:
        c = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=self.cfg.clean_session,
        )
        if self.target.username:
            c.username_pw_set(self.target.username, self.target.password)
        if self.target.tls:
            c.tls_set()
        if self.cfg.single_connection:
            c.max_inflight_messages_set(PUBLISH_WINDOW)  # a load publisher keeps the pipe full
        c.on_connect = lambda cl, ud, flags, rc, props: self._on_connect(
            cl, client_id, cmd_topic, rc
        )
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        return c

    def _on_connect(self, client: mqtt.Client, client_id: str, cmd_topic: str, rc: Any) -> None:
        if rc.is_failure:  # e.g. bad credentials, or a client id the broker refuses
            with self._ready:
                self.refused = f"broker refused {client_id}: {rc}"
                self._ready.notify_all()
            return
        client.subscribe(cmd_topic, qos=1)
        with self._ready:
            self._connected.add(client_id)
            self._ready.notify_all()

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, rc: Any, props: Any
    ) -> None:
        with self._lock:
            self.acked += 1

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        """Only hand the command on: the main loop answers it."""
        device_id = msg.topic.split("/")[-2]
        try:
            self.commands.put_nowait((device_id, bytes(msg.payload)))
        except queue.Full:
            pass  # a flood of commands: drop, the service retries (QoS 1 redelivery)

    def connect(self) -> None:
        """Connect every client; ConnectionError if the broker cannot be reached or refuses one,
        TimeoutError if not all are up in time."""
        _probe(self.target, self.cfg.connect_timeout_s)
        for c in self._all.values():
            c.connect_async(self.target.host, self.target.port, keepalive=60)
            c.loop_start()
        deadline = time.monotonic() + self.cfg.connect_timeout_s
        with self._ready:
            while len(self._connected) < len(self._all):
                if self.refused:
                    raise ConnectionError(self.refused)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"{len(self._all) - len(self._connected)} of {len(self._all)} "
                        f"MQTT clients not connected to {self.target.host}:{self.target.port}"
                    )
                self._ready.wait(left)

    def publish(self, device_id: str, topic: str, payload: bytes, qos: int) -> bool:
        """Queue one message on the device's client; False if paho refused it.

        Waits while MAX_OUTSTANDING messages are unconfirmed: paho numbers messages with 16-bit
        ids, so a publisher far ahead of the broker's acknowledgements would reuse ids in flight.
        After one wait of `drain_timeout_s` in vain, refuses at once until confirmations resume
        (so a stalled broker cannot stretch the run far past its duration).
        """
        if self.published - self.acked >= MAX_OUTSTANDING:
            if self._stalled:  # the broker stopped confirming: fail fast, do not wait again
                return False
            deadline = time.monotonic() + self.cfg.drain_timeout_s
            while self.published - self.acked >= MAX_OUTSTANDING and time.monotonic() < deadline:
                time.sleep(0.001)
            self._stalled = self.published - self.acked >= MAX_OUTSTANDING
            if self._stalled:
                return False
        self._stalled = False
        info = self.clients[device_id].publish(topic, payload, qos=qos)
        ok = info.rc == mqtt.MQTT_ERR_SUCCESS
        self.published += ok
        return ok

    def close(self, sent: int) -> None:
        """Wait (bounded) until `sent` publishes are confirmed, then disconnect every client."""
        deadline = time.monotonic() + self.cfg.drain_timeout_s
        while self.acked < sent and time.monotonic() < deadline:
            time.sleep(0.02)
        for c in self._all.values():
            c.disconnect()
        for c in self._all.values():
            c.loop_stop()


def _probe(target: MqttTarget, timeout: float) -> None:
    """Fail fast with a clear message when nothing listens at the broker's address."""
    try:
        socket.create_connection((target.host, target.port), timeout=timeout).close()
    except OSError as exc:
        raise ConnectionError(
            f"cannot reach the MQTT broker at {target.host}:{target.port}: {exc}"
        ) from exc


def fleet_for(cfg: RunConfig, start_ms: int) -> Fleet:
    """The fleet a run simulates: the registry's first `devices` devices (the demo registry is
    built big enough when none is given)."""
    doc = cfg.registry
    if doc is None:
        per_commune = max(3, math.ceil((cfg.devices or 0) / 10))
        doc = build_demo_document(seed=7, per_commune=per_commune)
    profs = profiles(doc)
    n = cfg.devices or len(profs)
    if n > len(profs):
        raise ValueError(f"the registry has {len(profs)} devices, {n} asked for")
    # rate R messages/s from n devices sending one message per `batch` fixes: interval n / (batch R)
    interval = n / (cfg.batch * cfg.rate) if cfg.rate else cfg.fix_interval_s
    fc = FleetConfig(
        fix_interval_s=interval,
        hb_interval_s=cfg.hb_interval_s,
        batch=cfg.batch,
        qos=cfg.qos,
        hb_qos=cfg.hb_qos,
        scenarios=cfg.scenarios,
        share=cfg.share,
        seed=cfg.seed,
    )
    return Fleet(profs[:n], start_ms, fc)


class Progress:
    """A progress line each second: `\\r`-rewritten on a terminal, plain lines otherwise."""

    def __init__(self, out: TextIO, quiet: bool) -> None:
        self.out, self.quiet = out, quiet
        self.tty = hasattr(out, "isatty") and out.isatty()
        self.last_t, self.last_sent = 0.0, 0

    def tick(self, elapsed: float, s: Summary, acked: int) -> None:
        """Print if a second has passed since the last line."""
        if self.quiet or elapsed - self.last_t < 1.0:
            return
        rate = (s.sent - self.last_sent) / max(elapsed - self.last_t, 1e-9)
        self.last_t, self.last_sent = elapsed, s.sent
        line = f"{elapsed:6.1f} s  sent {s.sent}  acked {acked}  fixes {s.fixes}  {rate:.0f} msg/s"
        self.out.write(f"\r{line}   " if self.tty else line + "\n")
        self.out.flush()

    def done(self) -> None:
        """End the `\\r` line."""
        if self.tty and not self.quiet:
            self.out.write("\n")


def simulate(cfg: RunConfig, out: TextIO = sys.stdout) -> Summary:
    """Run the fleet against the broker until `duration_s` or `max_messages`; the summary."""
    if cfg.duration_s <= 0:
        raise ValueError("duration must be > 0 s")
    start_ms = m.now_ms()
    fleet = fleet_for(cfg, start_ms)
    pub = Publisher(parse_mqtt_url(cfg.url), list(fleet.devices), cfg)
    summary = Summary(devices=len(fleet.devices), assignments=dict(fleet.assignments))
    pub.connect()
    try:
        _loop(cfg, fleet, pub, summary, Progress(out, cfg.quiet))
    except KeyboardInterrupt:
        summary.interrupted = True  # Ctrl-C or SIGTERM (see cli): stop cleanly, keep the counts
    finally:
        pub.close(summary.sent)
        summary.acked = pub.acked
    return summary


def _loop(
    cfg: RunConfig, fleet: Fleet, pub: Publisher, summary: Summary, progress: Progress
) -> None:
    """Step the fleet on the wall clock and publish what is due."""
    t0 = time.monotonic()
    limit = cfg.max_messages if cfg.max_messages is not None else math.inf
    try:
        sim = _rounds(cfg, fleet, pub, summary, progress, t0, limit)
        summary.lag_s = max(0.0, (m.now_ms() - sim) / 1000)
    finally:  # also when interrupted (Ctrl-C, SIGTERM): the summary says how long it ran
        summary.elapsed_s = time.monotonic() - t0
        progress.done()


def _rounds(cfg: RunConfig, fleet: Fleet, pub: Publisher, summary: Summary, progress: Progress,
            t0: float, limit: float) -> int:
    """Publish round after round until the duration or the message limit; the fleet time."""
    sim = fleet.start_ms
    while True:
        elapsed = time.monotonic() - t0
        # Follow the wall clock, but at most MAX_STEP_MS of fleet time per round: when the fleet
        # cannot generate as fast as asked it falls behind (older ts) instead of never returning.
        sim = min(m.now_ms(), sim + MAX_STEP_MS)
        batch = fleet.step(sim) + _answer_commands(fleet, pub, sim, summary)
        for i, (topic, payload, qos) in enumerate(batch):
            if summary.sent >= limit or (
                i % 1000 == 999 and _over(t0, cfg, progress, summary, pub)
            ):
                break  # a big round (a fast rate) still stops on time
            _publish(pub, topic, payload, qos, summary)
        if _over(t0, cfg, progress, summary, pub) or summary.sent >= limit:
            return sim
        time.sleep(max(0.0, cfg.tick_s - (time.monotonic() - t0 - elapsed)))


def _over(t0: float, cfg: RunConfig, progress: Progress, summary: Summary, pub: Publisher) -> bool:
    """Print progress when due; whether the run's duration is over."""
    elapsed = time.monotonic() - t0
    progress.tick(elapsed, summary, pub.acked)
    return elapsed >= cfg.duration_s


def _answer_commands(
    fleet: Fleet, pub: Publisher, now: int, summary: Summary
) -> list[tuple[str, bytes, int]]:
    out: list[tuple[str, bytes, int]] = []
    while True:
        try:
            device_id, payload = pub.commands.get_nowait()
        except queue.Empty:
            return out
        summary.commands += 1
        out.extend(fleet.command(device_id, payload, now))


def _publish(pub: Publisher, topic: str, payload: bytes, qos: int, summary: Summary) -> None:
    device_id, kind = topic.split("/")[-2:]
    if not pub.publish(device_id, topic, payload, qos):
        summary.failed += 1
        return
    summary.sent += 1
    summary.by_kind[kind] += 1
    if kind == "fix":
        # every fix has exactly one "seq" key, single or batched; cheaper than decoding
        summary.fixes += payload.count(b'"seq"')
