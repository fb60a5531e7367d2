"""Registry seeding, a settable clock and small builders shared by the alert and pipeline tests."""

from __future__ import annotations

import http.server
import json
import threading
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
import psycopg

from protocol.publisher import Publisher as QoS1Publisher

PROVINCE = "PC10-BN"
COMMUNE = "CAX-BN-001"
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z, ms


class Clock:
    """An injected clock (UTC epoch ms) that tests move by hand."""

    def __init__(self, now_ms: int = T0) -> None:
        self.now = now_ms

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> int:
        self.now += int(seconds * 1000)
        return self.now


def seed_registry(conn: psycopg.Connection, supervisees: int = 1, ack_within_s: int = 300,
                  sentence_type: str = "an_treo", prefix: str = "") -> list[tuple[str, str]]:
    """A province unit, a commune unit under it, supervisees SV1.. with devices DEV1..;
    returns [(supervisee id, device id)]."""
    conn.execute("INSERT INTO units (code, name, parent, ack_within_s) VALUES "
                 "(%s, 'PC10 Bắc Ninh', NULL, 600), (%s, 'Công an xã Một', %s, %s) "
                 "ON CONFLICT DO NOTHING", (PROVINCE, COMMUNE, PROVINCE, ack_within_s))
    out = []
    for i in range(1, supervisees + 1):
        sid, dev = f"{prefix}SV{i}", f"{prefix}DEV{i}"
        conn.execute("INSERT INTO supervisees (id, name, sentence_type, sentence_start, "
                     "sentence_end, unit) VALUES (%s, %s, %s, '2025-01-01', '2027-12-31', %s)",
                     (sid, f"Người {i}", sentence_type, COMMUNE))
        conn.execute("INSERT INTO devices (id, supervisee_id) VALUES (%s, %s)", (dev, sid))
        out.append((sid, dev))
    conn.commit()
    return out


@dataclass(frozen=True)
class FakeTransition:
    """Stands in for geofence.transitions.Transition (same fields) in rule-level tests."""

    supervisee_id: str
    zone_id: str
    alert_type: str
    active: bool
    ts_ms: int
    lon: float = 106.08
    lat: float = 21.19
    distance_m: float = 250.0
    acc_m: float = 10.0
    margin_m: float = 10.0
    count: int = 2
    since_ms: int | None = None
    escalate_after_s: int | None = 86_400
    purpose: str = "residence"


def history(conn: psycopg.Connection, alert_id: int) -> list[tuple[str, str]]:
    """[(actor, action)] of an alert, oldest first."""
    return [(r[0], r[1]) for r in conn.execute(
        "SELECT actor, action FROM alert_history WHERE alert_id = %s ORDER BY id", (alert_id,))]


def alert_rows(conn: psycopg.Connection, **where) -> list[dict]:
    from psycopg.rows import dict_row

    cond = " AND ".join(f"{k} = %({k})s" for k in where) or "true"
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(f"SELECT * FROM alerts WHERE {cond} ORDER BY id", where).fetchall()


class AlertSubscriber:
    """A paho test client subscribed to em/v1/alerts/#, collecting the JSON it receives."""

    def __init__(self, host: str, port: int, client_id: str, topic: str = "em/v1/alerts/#",
                 username: str | None = None, password: str | None = None):
        self.messages: list[tuple[str, dict]] = []
        self._cond = threading.Condition()
        self._ready = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        if username:
            c.username_pw_set(username, password)
        c.on_connect = lambda cl, u, f, rc, p: cl.subscribe(topic, qos=1)
        c.on_subscribe = lambda *a: self._ready.set()
        c.on_message = self._on_message
        c.connect(host, port)
        c.loop_start()
        if not self._ready.wait(10):
            raise TimeoutError("test subscriber not subscribed")
        self.client = c

    def _on_message(self, client, userdata, msg) -> None:
        with self._cond:
            self.messages.append((msg.topic, json.loads(msg.payload)))
            self._cond.notify_all()

    def wait_for(self, pred, timeout_s: float = 15.0) -> tuple[str, dict]:
        """The first message (topic, json) satisfying ``pred(topic, json)``."""
        import time

        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for t, m in self.messages:
                    if pred(t, m):
                        return t, m
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no matching alert message; got {self.messages!r}"[:2000])
                self._cond.wait(left)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1 that fails the first ``fail_first`` requests (HTTP 503),
    optionally sleeps, and honours Idempotency-Key (a key it processed is not processed again)."""

    fail_first: int = 0
    delay_s: float = 0.0
    requests: list[dict] = field(default_factory=list)
    processed: dict[str, int] = field(default_factory=dict)  # key -> times processed

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = receiver._handle(dict(self.headers), body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _handle(self, headers: dict, body: bytes) -> int:
        import time

        if self.delay_s:
            time.sleep(self.delay_s)
        with self._lock:
            self.requests.append({"headers": headers, "body": body})
            if len(self.requests) <= self.fail_first:
                return 503
            key = headers.get("Idempotency-Key")
            if key not in self.processed:
                self.processed[key] = 0
            else:
                return 200  # seen: acknowledge, do nothing
            self.processed[key] += 1
            return 200

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Publisher:
    """The shared QoS 1 publisher (a device or a fleet of them) for the pipeline tests."""

    def __init__(self, host: str, port: int, client_id: str, username: str | None = None,
                 password: str | None = None) -> None:
        self.mqtt = QoS1Publisher.to(host, port, client_id, username, password)

    def send(self, topic: str, payload: bytes, wait: bool = True) -> None:
        info = self.mqtt.publish(topic, payload)
        if wait:
            info.wait_for_publish(10)

    def close(self) -> None:
        self.mqtt.close()


def offset(lon: float, lat: float, east_m: float, north_m: float) -> tuple[float, float]:
    """(lon, lat) moved by metres east and north (local flat approximation, fine for km)."""
    import math

    return (lon + east_m / (111_320.0 * math.cos(math.radians(lat))), lat + north_m / 110_574.0)
