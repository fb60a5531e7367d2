"""The consumers' bounded queue: a full queue waits (never drops), a waiting writer wakes."""

from __future__ import annotations

import threading
import time

from ingest.consumer import MessageQueue, put_waiting
from ingest.records import Received


def _item(n: int) -> Received:
    return Received("em/v1/dev/q-1/fix", b"{}", n, n, 1, 0)


def test_offer_refuses_when_full_and_put_waiting_waits_for_room():
    q = MessageQueue(maxsize=2)
    assert q.offer(_item(1)) and q.offer(_item(2))
    assert not q.offer(_item(3)) and q.qsize() == 2
    overflows: list[int] = []
    putter = threading.Thread(target=put_waiting,
                              args=(q, _item(3), lambda: True, lambda: overflows.append(1)))
    putter.start()
    time.sleep(0.2)
    assert putter.is_alive() and overflows == [1]  # counted once, waiting, nothing dropped
    assert q.get(timeout=1).received_ms == 1
    putter.join(5)
    assert not putter.is_alive()
    assert [q.get_nowait().received_ms for _ in range(2)] == [2, 3]


def test_a_message_wakes_a_writer_waiting_in_get():
    q = MessageQueue(maxsize=10)
    got: list[Received] = []
    writer = threading.Thread(target=lambda: got.append(q.get(timeout=10)))
    writer.start()
    time.sleep(0.2)  # the writer now waits in get()
    started = time.monotonic()
    assert q.offer(_item(7))
    writer.join(5)
    assert got == [_item(7)] and time.monotonic() - started < 2
