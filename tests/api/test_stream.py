"""The live alert stream over real HTTP (uvicorn in a thread): a change committed by the alerts
engine reaches the officers whose scope covers it, and only them; Last-Event-ID replays."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

from alerts import lifecycle
from embedded.services import free_port
from schema import connect
from tests.api.conftest import SV_A

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def server(api) -> Iterator[str]:
    api.app.state.ctx.keepalive_s = 0.5
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(api.app, host="127.0.0.1", port=port, log_config=None,
                                        lifespan="off", timeout_graceful_shutdown=1))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


class Listener:
    """Reads one SSE stream in a thread; events (and comments) land on a queue."""

    def __init__(self, url: str, token: str, **params):
        self.events: queue.Queue = queue.Queue()
        self.lines: list[str] = []
        self.status: int | None = None
        self.opened = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, args=(url, token, params),
                                        daemon=True)
        self._thread.start()
        assert self.opened.wait(10), "the stream did not open"

    def _run(self, url: str, token: str, params: dict) -> None:
        headers = params.pop("headers", {})
        with httpx.stream("GET", url + "/api/v1/alerts/stream", timeout=10, headers=headers,
                          params={"access_token": token, **params}) as r:
            self.status = r.status_code
            event: dict = {}
            for line in r.iter_lines():
                self.lines.append(line)
                if line.startswith(": connected"):
                    self.opened.set()
                if line.startswith("id: "):
                    event["id"] = int(line[4:])
                elif line.startswith("data: "):
                    event["data"] = json.loads(line[6:])
                elif line == "" and event:
                    self.events.put(event)
                    event = {}
                if self._stop:
                    return
        self.opened.set()

    def next(self, timeout: float = 10) -> dict:
        return self.events.get(timeout=timeout)

    def close(self) -> None:
        self._stop = True


def test_a_change_reaches_the_right_officers_live(api, server):
    alert_id = api.world.alerts["a_battery"]
    mine = Listener(server, api.token("xa.a"))
    province = Listener(server, api.token("tinh.t"))
    other = Listener(server, api.token("xa.b"))
    with connect(api.db_url) as conn:
        with conn.transaction():
            change = lifecycle.add_note(conn, alert_id, "xa.a", "đang xác minh",
                                        api.world.now_ms)
    for listener in (mine, province):
        ev = listener.next()
        assert ev["id"] == change.history_id
        assert ev["data"]["id"] == alert_id and ev["data"]["supervisee_id"] == SV_A
        assert ev["data"]["message_vi"]
    time.sleep(1.2)  # keepalives arrive, the alert does not
    assert other.events.empty()
    assert ": keepalive" in other.lines
    # reconnecting with Last-Event-ID replays what was missed
    replay = Listener(server, api.token("xa.a"), headers={"Last-Event-ID": str(change.history_id - 1)})
    assert replay.next()["id"] == change.history_id
    for listener in (mine, province, other, replay):
        listener.close()


def test_stream_needs_a_token(server):
    r = httpx.get(server + "/api/v1/alerts/stream", timeout=5)
    assert r.status_code == 401
    r = httpx.get(server + "/api/v1/alerts/stream", params={"access_token": "nonsense"},
                  timeout=5)
    assert r.status_code == 401


def test_a_stream_ends_when_its_token_runs_out(api, server):
    listener = Listener(server, api.token("xa.a"))
    start = api.clock.ms
    try:
        api.clock.ms = start + 901_000  # past the 900 s token lifetime
        listener._thread.join(10)
        assert not listener._thread.is_alive(), "the stream outlived its token"
        assert "event: expired" in listener.lines
    finally:
        api.clock.ms = start
