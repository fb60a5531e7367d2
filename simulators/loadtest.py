"""``giamsat loadtest``: drive a running giamsat with a simulated fleet and measure it.

It registers its own fleet (units ``LT-*``, supervisees ``lt-s-*``, devices ``lt-d-*``, imported
idempotently), publishes fixes at the offered rate from several publisher processes, moves a
share of the devices out of their residence zone to time fix-to-alert latency on the alerts
topic, and prints sustained fixes/s stored and decided, latency percentiles, dead letters and
lag. Loopback or the configured broker only; bounded by ``--duration`` and ``--max-messages``.
Exit status 1 when the service fell behind the offered rate.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import queue
import random
import sys
import time
import urllib.request
from dataclasses import dataclass, field

import orjson
import psycopg

from config import Settings
from config.mqtt import PUBLISH_WINDOW, parse_mqtt_url
from embedded.brokerconfig import embedded_login_url
from embedded.services import embedded_port
from protocol import ALERT_TOPICS_ALL, device_topic

# A load-test supervisee's home is scattered over this box (the demo province, Bắc Ninh),
# its residence zone a 64-gon of RESIDENCE_RADIUS_M around it; violators move VIOLATION_M out.
BOX = (105.95, 21.00, 106.25, 21.25)  # lon_min, lat_min, lon_max, lat_max
RESIDENCE_RADIUS_M = 1500.0
VIOLATION_M = 3000.0
M_PER_DEG_LAT = 111_320.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``giamsat loadtest``."""
    p.add_argument("--rate", type=float, default=5000.0,
                   help="offered fixes per second, all devices together (default 5000)")
    p.add_argument("--duration", type=float, default=30.0,
                   help="seconds of publishing (default 30, at most 600)")
    p.add_argument("--devices", type=int, default=1000, help="fleet size (default 1000)")
    p.add_argument("--batch", type=int, default=1,
                   help="fixes per message: 1 = single-fix messages, up to 500 (default 1)")
    p.add_argument("--violators", type=float, default=0.02,
                   help="share of devices that leave their zone, for latency (default 0.02)")
    p.add_argument("--publishers", type=int, default=2,
                   help="publisher processes (default 2)")
    p.add_argument("--connections", type=int, default=1,
                   help="MQTT connections per publisher process, the devices spread over them "
                        "(default 1; a broker that confirms after a disk write needs many)")
    p.add_argument("--max-messages", type=int, default=2_000_000,
                   help="stop publishing after this many messages (default 2,000,000)")
    p.add_argument("--settle", type=float, default=60.0,
                   help="longest wait for the service to store what was published (default 60 s)")
    p.add_argument("--mqtt-url", default=None, help="broker (default GIAMSAT_MQTT_URL or the "
                   "embedded one); several comma-separated (a cluster's nodes): the publishers' "
                   "connections spread over them")
    p.add_argument("--database-url", default=None,
                   help="the service's database (default GIAMSAT_DATABASE_URL or the embedded one)")
    p.add_argument("--metrics-url", default=None,
                   help="the service's /metrics (default http://GIAMSAT_HTTP/metrics)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--no-register", action="store_true",
                   help="do not (re-)import the load-test fleet: an earlier run registered it")


# --- the fleet ---------------------------------------------------------------------------------


def _circle(lon: float, lat: float, radius_m: float, n: int = 64) -> list[list[float]]:
    k = M_PER_DEG_LAT * math.cos(math.radians(lat))
    ring = [[round(lon + radius_m * math.cos(2 * math.pi * i / n) / k, 6),
             round(lat + radius_m * math.sin(2 * math.pi * i / n) / M_PER_DEG_LAT, 6)]
            for i in range(n)]
    return [*ring, ring[0]]


def fleet_homes(devices: int, seed: int) -> list[tuple[float, float]]:
    """Deterministic home points of the load-test fleet."""
    rng = random.Random(seed)
    return [(rng.uniform(BOX[0], BOX[2]), rng.uniform(BOX[1], BOX[3])) for _ in range(devices)]


def fleet_document(homes: list[tuple[float, float]]) -> dict:
    """The import document registering the load-test fleet."""
    sups, devs = [], []
    for i, (lon, lat) in enumerate(homes):
        sid = f"lt-s-{i:05d}"
        zone = {"id": "residence", "kind": "inclusion", "purpose": "residence",
                "geometry": {"type": "Polygon", "coordinates": [_circle(lon, lat,
                                                                        RESIDENCE_RADIUS_M)]}}
        sups.append({"id": sid, "name": f"Load test {i}", "sentence_type": "an_treo",
                     "sentence_start": "2026-01-01", "sentence_end": "2030-12-31",
                     "unit": "LT-CAX01", "zones": [zone]})
        devs.append({"id": f"lt-d-{i:05d}", "supervisee": sid})
    units = [{"code": "LT-PC10", "name": "PC10 (load test)", "parent": None},
             {"code": "LT-CAX01", "name": "Công an xã (load test)", "parent": "LT-PC10",
              "ack_within_s": 86400}]
    return {"units": units, "supervisees": sups, "devices": devs, "permits": []}


# --- publishing --------------------------------------------------------------------------------


@dataclass
class PublisherPlan:
    """What one publisher process sends."""

    index: int
    mqtt_url: str
    homes: dict[str, tuple[float, float]]     # device id -> home (lon, lat)
    violators: set[str]
    rate: float                               # messages per second for this publisher
    batch: int
    duration: float
    max_messages: int
    violate_after: float                      # seconds from start when violators leave
    seed: int
    connections: int = 1                      # MQTT connections the devices are spread over


def _mqtt_client(url: str, client_id: str):
    import paho.mqtt.client as mqtt

    target = parse_mqtt_url(url)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                         clean_session=True)
    if target.username:
        client.username_pw_set(target.username, target.password)
    client.max_inflight_messages_set(PUBLISH_WINDOW)
    client.max_queued_messages_set(0)
    client.connect(target.host, target.port, keepalive=30)
    return client


def _fix(seq: int, ts: int, lon: float, lat: float, rng: random.Random) -> dict:
    # a fix a few metres from where the device is, with a matching accuracy
    acc = rng.uniform(5.0, 25.0)
    jitter = acc / M_PER_DEG_LAT
    return {"seq": seq, "ts": ts, "lat": round(lat + rng.gauss(0, jitter / 2), 7),
            "lon": round(lon + rng.gauss(0, jitter / 2), 7), "acc": round(acc, 1)}


def _fix_payload(seq: int, ts: int, lon: float, lat: float, rng: random.Random) -> bytes:
    """`_fix` as JSON bytes, formatted directly (the load generator must cost the machine
    little next to the service it measures)."""
    acc = rng.uniform(5.0, 25.0)
    jitter = acc / M_PER_DEG_LAT / 2
    return b'{"seq":%d,"ts":%d,"lat":%.7f,"lon":%.7f,"acc":%.1f}' % (
        seq, ts, lat + rng.gauss(0, jitter), lon + rng.gauss(0, jitter), acc)


def _position(home: tuple[float, float], violating: bool) -> tuple[float, float]:
    lon, lat = home
    if violating:
        return lon, lat + (RESIDENCE_RADIUS_M + VIOLATION_M) / M_PER_DEG_LAT
    return lon, lat


def _varint(n: int) -> bytes:
    """MQTT's variable-length integer (the remaining length of a packet)."""
    out = bytearray()
    while True:
        n, digit = n >> 7, n & 0x7F
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def mqtt_string(text: str) -> bytes:
    """An MQTT UTF-8 string: its length in two bytes, then its bytes."""
    raw = text.encode()
    return len(raw).to_bytes(2, "big") + raw


class Link:
    """One device connection of a publisher process, MQTT 3.1.1 over a plain socket.

    The load generator must not be what limits the measurement: paho costs ~40 us of CPU per
    QoS 1 publish (its message objects, locks and PUBACK bookkeeping), so the publishers here
    encode PUBLISH packets themselves, write each connection's due packets with one send and
    count PUBACKs (4 bytes each) by reading the socket. A connection keeps at most
    ``PUBLISH_WINDOW`` publishes unacknowledged, as a device with a buffer would.
    """

    def __init__(self, url: str, client_id: str, keepalive: int = 60) -> None:
        import socket

        target = parse_mqtt_url(url)
        sock = socket.create_connection((target.host, target.port), timeout=30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if target.tls:
            import ssl

            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=target.host)
        flags = 0x02  # clean session
        body = mqtt_string("MQTT") + bytes([4])
        tail = mqtt_string(client_id)
        if target.username:
            flags |= 0x80
            tail += mqtt_string(target.username)
            if target.password is not None:
                flags |= 0x40
                tail += mqtt_string(target.password)
        body += bytes([flags]) + keepalive.to_bytes(2, "big") + tail
        sock.sendall(b"\x10" + _varint(len(body)) + body)
        connack = b""
        while len(connack) < 4:
            chunk = sock.recv(4 - len(connack))
            if not chunk:
                raise ConnectionError(f"{target.host}:{target.port} closed the connection "
                                      "instead of CONNACK (login refused?)")
            connack += chunk
        if connack[0] != 0x20 or connack[3] != 0:
            raise ConnectionError(f"MQTT connection refused by {target.host}:{target.port}: "
                                  f"CONNACK return code {connack[3]}")
        sock.setblocking(False)
        self.sock = sock
        self.sent = 0
        self.acked = 0
        self._mid = 0
        self._rest = 0  # bytes of a PUBACK split over two reads
        self._out: list[bytes] = []

    def publish(self, topic: bytes, payload: bytes) -> None:
        """Queue one QoS 1 PUBLISH; ``topic`` is the length-prefixed topic name."""
        self._mid = self._mid % 0xFFFF + 1
        self._out.append(b"\x32" + _varint(len(topic) + 2 + len(payload)) + topic
                         + self._mid.to_bytes(2, "big") + payload)
        self.sent += 1

    def flush(self) -> None:
        """Write the queued packets (waiting while the socket buffer is full)."""
        if not self._out:
            return
        data = memoryview(b"".join(self._out))
        self._out.clear()
        while data:
            try:
                data = data[self.sock.send(data):]
            except (BlockingIOError, InterruptedError):
                self.read(wait=0.01)
            except OSError as exc:
                if type(exc).__name__ not in ("SSLWantWriteError", "SSLWantReadError"):
                    raise
                self.read(wait=0.01)

    def read(self, wait: float = 0.0) -> None:
        """Count the PUBACKs that arrived (waiting up to ``wait`` s for the first)."""
        import select

        if wait > 0:  # poll, not select: a publisher may hold more than 1,024 sockets
            poller = select.poll()
            poller.register(self.sock, select.POLLIN)
            poller.poll(wait * 1000)
        while True:
            try:
                data = self.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if type(exc).__name__ == "SSLWantReadError":
                    return
                raise
            if not data:
                raise ConnectionError("the broker closed a publisher connection")
            total = self._rest + len(data)  # the broker sends nothing but 4-byte PUBACKs
            self.acked += total // 4
            self._rest = total % 4

    def close(self) -> None:
        try:
            self.sock.setblocking(True)
            self.sock.sendall(b"\xe0\x00")  # DISCONNECT
        except OSError:
            pass
        self.sock.close()


def _connect(url: str, client_id: str, attempts: int = 10) -> Link:
    """A connection, retried as a device would: a RabbitMQ cluster node answers "server
    unavailable" while its client-id registry (a Raft cluster) is busy."""
    for attempt in range(attempts):
        try:
            return Link(url, client_id)
        except (ConnectionError, OSError):
            if attempt == attempts - 1:
                raise
            time.sleep(min(5.0, 0.5 * 2 ** attempt))
    raise AssertionError("unreachable")


def publisher_main(plan: PublisherPlan, out: mp.Queue) -> None:
    """Publish this publisher's share of the fleet until duration or max_messages.

    Devices are spread over ``plan.connections`` MQTT connections (a device keeps its
    connection, so its fixes stay in order), each with its own window of unacknowledged
    publishes, as many devices would be: a broker that confirms after a disk write serves a
    single connection's window at its latency. Each round publishes what is due by the offered
    rate on connections with room in their window, writes each connection's packets with one
    send and then counts the PUBACKs that came back.
    """
    import selectors

    rng = random.Random(plan.seed * 1000 + plan.index)
    urls = plan.mqtt_url.split(",")  # a cluster: the connections spread over its nodes
    links = [_connect(urls[(plan.index + k) % len(urls)], f"giamsat-loadtest-{os.getpid()}-{k}")
             for k in range(max(1, plan.connections))]
    sel = selectors.DefaultSelector()  # epoll: a connection per device passes select's 1,024
    for x in links:
        sel.register(x.sock, selectors.EVENT_READ, x)
    devices = sorted(plan.homes)
    topics = {dev: mqtt_string(device_topic(dev, "fix")) for dev in devices}
    seqs = dict.fromkeys(devices, int(time.time()))  # restarts of the test get new seq values
    sent = fixes = 0
    start = time.monotonic()
    out.put(("started", plan.index, time.time()))  # connected: the measured time begins
    next_report = start + 1.0
    violating_times: dict[str, list[float]] = {}
    dirty: dict[int, Link] = {}
    while sent < plan.max_messages:
        now = time.monotonic()
        elapsed = now - start
        if elapsed >= plan.duration:
            break
        due = min(int(elapsed * plan.rate) + 1, plan.max_messages)
        ts = time.time_ns() // 1_000_000
        while sent < due:
            i = sent % len(devices)
            link = links[i % len(links)]
            if link.sent - link.acked >= PUBLISH_WINDOW:
                break  # this device's connection is full: wait for its PUBACKs
            dev = devices[i]
            violating = dev in plan.violators and elapsed >= plan.violate_after
            lon, lat = _position(plan.homes[dev], violating)
            if plan.batch == 1:
                seqs[dev] += 1
                payload = _fix_payload(seqs[dev], ts, lon, lat, rng)
            else:
                batch = []
                for _ in range(plan.batch):
                    seqs[dev] += 1
                    batch.append(_fix(seqs[dev], ts, lon, lat, rng))
                payload = orjson.dumps({"fixes": batch})
            link.publish(topics[dev], payload)
            dirty[id(link)] = link
            if violating:
                violating_times.setdefault(dev, []).append(time.time())
            sent += 1
            fixes += plan.batch
        for x in dirty.values():
            x.flush()
        dirty.clear()
        # full windows: wait for PUBACKs; else until the next publish is due (>= 1 ms, so
        # that a round carries several publishes rather than one)
        wait = 0.005 if sent < due else min(0.005, max(0.001, (sent + 1) / plan.rate - elapsed))
        for key, _ in sel.select(wait):
            key.data.read()
        if now >= next_report:
            out.put(("progress", plan.index, sent, fixes, sum(x.acked for x in links)))
            next_report = now + 1.0
    ended = time.time()
    deadline = time.monotonic() + 30
    while any(x.acked < x.sent for x in links) and time.monotonic() < deadline:
        for key, _ in sel.select(0.05):
            key.data.read()
    for x in links:
        x.close()
    sel.close()
    cpu = os.times()
    out.put(("done", plan.index, sent, fixes, sum(x.acked for x in links), violating_times,
             cpu.user + cpu.system, ended))


# --- measuring ---------------------------------------------------------------------------------


@dataclass
class AlertWatch:
    """Receives the alerts topic and notes when each load-test supervisee's exit alert came."""

    active_at: dict[str, list[float]] = field(default_factory=dict)

    def start(self, mqtt_url: str) -> object:
        client = _mqtt_client(mqtt_url, f"giamsat-loadtest-alerts-{os.getpid()}")

        def on_message(c, u, msg):
            try:
                alert = orjson.loads(msg.payload)
            except orjson.JSONDecodeError:
                return
            sid = alert.get("supervisee_id", "")
            if sid.startswith("lt-s-") and alert.get("type") == "zone_exit" and alert.get("active"):
                self.active_at.setdefault(sid, []).append(time.time())

        client.on_message = on_message
        client.subscribe(ALERT_TOPICS_ALL, qos=1)
        client.loop_start()
        return client


def _count_stored(conn: psycopg.Connection, since: float) -> int:
    row = conn.execute("SELECT count(*) FROM fixes WHERE received_at >= to_timestamp(%s) "
                       "AND device_id LIKE 'lt-d-%%'", (since,)).fetchone()
    assert row is not None
    return int(row[0])


def _count_dead(conn: psycopg.Connection, since: float) -> int:
    row = conn.execute("SELECT count(*) FROM dead_letters WHERE received_at >= to_timestamp(%s)",
                       (since,)).fetchone()
    assert row is not None
    return int(row[0])


def _metric(metrics_url: str | None, name: str) -> float | None:
    """Sum of a counter's samples on the service's /metrics, or None when unreachable."""
    if not metrics_url:
        return None
    try:
        with urllib.request.urlopen(metrics_url, timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    total, found = 0.0, False
    for line in text.splitlines():
        if line.startswith(name) and (line[len(name)] in " {"):
            total += float(line.rsplit(" ", 1)[1])
            found = True
    return total if found else None


def _process_group(cmdline: str) -> str | None:
    """Which part of the system a process is, from its command line (None: not ours)."""
    if "giamsat" in cmdline and " worker" in cmdline:
        return "giamsat worker"
    if "giamsat" in cmdline and " api" in cmdline:
        return "giamsat api"
    if "postgres" in cmdline.split(" ", 1)[0] or cmdline.startswith("postgres:"):
        return "postgresql"
    if "mosquitto" in cmdline.split(" ", 1)[0]:
        return "mosquitto"
    if "beam.smp" in cmdline.split(" ", 1)[0] and "giamsat-" in cmdline:
        return "rabbitmq"  # an embedded node (giamsat-{port}@localhost)
    if "loadtest" in cmdline or "multiprocessing" in cmdline:
        return "loadtest (publishers)"
    return None


def _proc_table() -> dict[int, tuple[int, str, float]]:
    """pid -> (parent pid, command line, CPU-seconds user + system) of every process."""
    tick = os.sysconf("SC_CLK_TCK")
    table: dict[int, tuple[int, str, float]] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        table[int(pid)] = (int(fields[1]), cmd, (int(fields[11]) + int(fields[12])) / tick)
    return table


def _descendants(table: dict[int, tuple[int, str, float]], roots: set[int]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = set(), [r for r in roots if r in table]
    while todo:
        pid = todo.pop()
        if pid not in out:
            out.add(pid)
            todo.extend(children.get(pid, ()))
    return out


def cpu_by_process(roots: set[int] | None = None) -> dict[int, tuple[str, float]]:
    """pid -> (group, CPU-seconds user + system so far) of our processes: those under
    ``roots`` (this load test and the ``giamsat up`` it drives), else every process on this
    machine that looks like ours (other work on a shared machine would then be counted)."""
    table = _proc_table()
    pids = _descendants(table, roots) if roots else set(table)
    out: dict[int, tuple[str, float]] = {}
    for pid in pids:
        _, cmd, cpu = table[pid]
        group = _process_group(cmd)
        if group:
            out[pid] = (group, cpu)
    return out


def cpu_used(before: dict[int, tuple[str, float]],
             after: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU-seconds used between two ``cpu_by_process`` readings, by group: per process, so a
    process that started meanwhile counts from zero and one that exited counts nothing (a
    difference of group totals would go negative when another test's worker exits)."""
    out: dict[str, float] = {}
    for pid, (group, cpu) in after.items():
        was = before.get(pid)
        used = cpu - (was[1] if was is not None and was[0] == group else 0.0)
        out[group] = out.get(group, 0.0) + max(0.0, used)
    return out


def cpu_roots(settings: Settings) -> set[int] | None:
    """This process and the ``giamsat up`` of the data directory (its up.pid), or None when
    that is not known (a service run some other way: count by command line)."""
    try:
        up = int((settings.data_dir / "up.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    return {os.getpid(), up} if os.path.exists(f"/proc/{up}") else None


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), nearest-rank."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[k]


def _latencies(watch: AlertWatch, violating: dict[str, list[float]], confirm: int) -> list[float]:
    out = []
    for dev, times in violating.items():
        sid = "lt-s-" + dev[len("lt-d-"):]
        if len(times) < confirm:
            continue
        confirmed = times[confirm - 1]
        seen = [t for t in watch.active_at.get(sid, []) if t >= confirmed]
        if seen:
            out.append(seen[0] - confirmed)
    return out


# --- the command -------------------------------------------------------------------------------


def _progress(line: str) -> None:
    if sys.stdout.isatty():
        sys.stdout.write("\r" + line.ljust(100))
    else:
        sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _register(conn: psycopg.Connection, homes: list[tuple[float, float]]) -> None:
    from registry.document import import_document

    summary = import_document(conn, fleet_document(homes))
    print(f"load-test fleet registered: {summary}")


def _plans(args: argparse.Namespace, mqtt_url: str,
           homes: list[tuple[float, float]]) -> list[PublisherPlan]:
    ids = [f"lt-d-{i:05d}" for i in range(len(homes))]
    n_viol = int(round(args.violators * len(ids)))
    violators = set(ids[:n_viol])
    plans = []
    for p in range(args.publishers):
        mine = ids[p::args.publishers]
        plans.append(PublisherPlan(
            index=p, mqtt_url=mqtt_url, homes={d: homes[int(d[5:])] for d in mine},
            violators=violators & set(mine), rate=args.rate / args.batch / args.publishers,
            batch=args.batch, duration=args.duration,
            max_messages=args.max_messages // args.publishers,
            violate_after=min(5.0, args.duration / 3), seed=args.seed,
            connections=args.connections))
    return plans


def _pg_port(settings: Settings) -> int:
    return embedded_port(settings, "postgres", "embedded_pg_port")


def _urls(args: argparse.Namespace, settings: Settings) -> tuple[str, str, str | None]:
    mqtt_url = args.mqtt_url or settings.mqtt_url or embedded_login_url(settings, "simulator")
    db_url = args.database_url or settings.database_url or \
        f"postgresql://postgres@127.0.0.1:{_pg_port(settings)}/giamsat"
    host, port = settings.http_host_port()
    metrics = args.metrics_url or f"http://{host}:{port}/metrics"
    return mqtt_url, db_url, metrics


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run the load test; 0 when the service kept up with the offered rate."""
    if args.duration > 600 or args.duration <= 0:
        print("giamsat loadtest: --duration must be in (0, 600] seconds", file=sys.stderr)
        return 2
    if not 1 <= args.batch <= 500:
        print("giamsat loadtest: --batch must be 1..500", file=sys.stderr)
        return 2
    mqtt_url, db_url, metrics_url = _urls(args, settings)
    homes = fleet_homes(args.devices, args.seed)
    with psycopg.connect(db_url, autocommit=True) as conn:
        if not args.no_register:
            _register(conn, homes)
            time.sleep(3.0)  # let the worker reload the registry
        return _drive(args, settings, conn, mqtt_url, metrics_url, homes)


def _drive(args, settings, conn, mqtt_url, metrics_url, homes) -> int:
    watch = AlertWatch()
    watcher = watch.start(mqtt_url.split(",")[0])
    decided0 = _metric(metrics_url, "giamsat_decide_fixes_total")
    out: mp.Queue = mp.get_context("spawn").Queue()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=publisher_main, args=(plan, out), daemon=True)
             for plan in _plans(args, mqtt_url, homes)]
    roots = cpu_roots(settings)
    cpu0 = cpu_by_process(roots)
    t0 = time.time()
    for proc in procs:
        proc.start()
    results, progress, started = _collect(out, procs, conn, t0, args)
    # the publishers' own start (connected) and end (last publish, before waiting for the
    # last PUBACKs): process start-up is not publishing time
    t_start = min(started, default=t0)
    t_pub_end = max((r[7] for r in results), default=time.time())
    sent = sum(r[2] for r in results)
    fixes = sum(r[3] for r in results)
    acked = sum(r[4] for r in results)
    violating: dict[str, list[float]] = {}
    for r in results:
        violating.update(r[5])
    stored_at_end = _count_stored(conn, t0 - 1)
    stored, t_caught_up = _settle(conn, t0, acked * args.batch, args.settle)
    cpu1 = cpu_by_process(roots)
    decided1 = _metric(metrics_url, "giamsat_decide_fixes_total")
    time.sleep(1.0)
    watcher.loop_stop()  # type: ignore[attr-defined]
    lat = _latencies(watch, violating, settings.confirm_fixes)
    _report_cpu(cpu0, cpu1, t_caught_up - t0, stored, sum(r[6] for r in results))
    return _report(args, sent, fixes, acked, stored, stored_at_end, t_start, t_pub_end,
                   t_caught_up,
                   lat, len(violating), _count_dead(conn, t0 - 1), decided0, decided1, progress)


def _collect(out: mp.Queue, procs: list, conn: psycopg.Connection, t0: float,
             args: argparse.Namespace) -> tuple[list, list, list[float]]:
    latest: dict[int, tuple] = {}
    started: list[float] = []
    results: list = []
    samples: list[tuple[float, int]] = []
    next_count = time.time() + 2.0
    while len(results) < len(procs):
        try:
            msg = out.get(timeout=0.5)
        except queue.Empty:
            if not any(p.is_alive() for p in procs):
                break
            msg = None
        if msg and msg[0] == "started":
            started.append(msg[2])
        elif msg and msg[0] == "progress":
            latest[msg[1]] = msg
        elif msg and msg[0] == "done":
            results.append(msg)
            latest[msg[1]] = msg
        if time.time() >= next_count:
            stored = _count_stored(conn, t0 - 1)
            samples.append((time.time() - t0, stored))
            sent = sum(m[3] for m in latest.values())
            elapsed = time.time() - t0
            done = min(1.0, elapsed / args.duration)
            bar = "#" * int(done * 20) + "." * (20 - int(done * 20))
            _progress(f"[{bar}] {elapsed:5.1f}/{args.duration:.0f} s  offered {sent:,} fixes, "
                      f"stored {stored:,} ({stored / max(0.1, elapsed):,.0f}/s)")
            next_count = time.time() + 2.0
    if sys.stdout.isatty():
        print()
    for p in procs:
        p.join(5)
    return results, samples, started


def _settle(conn: psycopg.Connection, t0: float, expected: int, limit_s: float) -> tuple[int, float]:
    deadline = time.time() + limit_s
    stored = _count_stored(conn, t0 - 1)
    while stored < expected and time.time() < deadline:
        time.sleep(0.5)
        stored = _count_stored(conn, t0 - 1)
    return stored, time.time()


def _report_cpu(cpu0: dict[int, tuple[str, float]], cpu1: dict[int, tuple[str, float]],
                wall_s: float, stored: int, publishers_cpu: float) -> None:
    used = cpu_used(cpu0, cpu1)
    # the publishers have exited by now: they reported their own CPU
    used["loadtest (publishers)"] = used.get("loadtest (publishers)", 0.0) + publishers_cpu
    print(f"\nCPU over {wall_s:.1f} s (seconds, and share of one core):")
    for group in sorted(used):
        if used[group] > 0.001:  # an efficient worker spends ~0.05 s on a short run: show it
            print(f"  {group:<24} {used[group]:7.1f} s  {used[group] / wall_s * 100:5.0f} %"
                  f"  ({used[group] / max(1, stored) * 1000:.3f} s per 1,000 fixes)")


def _report(args, sent, fixes, acked, stored, stored_at_end, t0, t_pub_end, t_caught_up, lat,
            n_violators, dead, decided0, decided1, progress) -> int:
    pub_s = max(0.001, t_pub_end - t0)
    offered = fixes / pub_s
    sustained = stored / max(0.001, t_caught_up - t0)
    backlog = acked * args.batch - stored_at_end
    print(f"\noffered   {offered:12,.0f} fixes/s  ({sent:,} messages of {args.batch} fix(es), "
          f"{acked:,} acknowledged by the broker, over {pub_s:.1f} s)")
    print(f"stored    {sustained:12,.0f} fixes/s  sustained ({stored:,} stored; "
          f"{stored_at_end:,} when publishing ended)")
    if decided0 is not None and decided1 is not None:
        print(f"decided   {(decided1 - decided0) / max(0.001, t_caught_up - t0):12,.0f} fixes/s  "
              f"({decided1 - decided0:,.0f} decided)")
    else:
        print("decided   (the service's /metrics was not reachable)")
    print(f"lag       {backlog:12,} fixes behind when publishing ended "
          f"(broker + database), {max(0.0, t_caught_up - t_pub_end):.1f} s to catch up")
    print(f"dead letters during the run: {dead:,}")
    if lat:
        print(f"fix-to-alert latency over {len(lat)} of {n_violators} violators: "
              f"p50 {percentile(lat, 50) * 1000:.0f} ms, p95 {percentile(lat, 95) * 1000:.0f} ms, "
              f"p99 {percentile(lat, 99) * 1000:.0f} ms")
    else:
        print(f"fix-to-alert latency: no exit alert seen for {n_violators} violators")
    if offered < 0.95 * args.rate:
        print(f"note: the load generator offered only {offered:,.0f} of the {args.rate:,.0f} "
              "fixes/s asked for (its own CPU or the machine's was the limit, not the service)")
    fell_behind = stored < acked * args.batch or sustained < 0.95 * offered
    if fell_behind:
        print("RESULT: the service fell behind the offered rate")
        return 1
    print("RESULT: the service kept up with the offered rate")
    return 0
