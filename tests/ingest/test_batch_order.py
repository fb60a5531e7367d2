"""Batches reach the next stage in queue order, whichever writer commits first."""

from ingest.consumer import BatchOrder


def test_batches_are_handed_on_in_ticket_order():
    order = BatchOrder()
    with order.drain_lock:
        tickets = [order.ticket() for _ in range(4)]
    seen = []
    order.finish(tickets[1], "b1", seen.append)
    order.finish(tickets[3], "b3", seen.append)
    assert seen == []  # batch 0 is still being written
    order.finish(tickets[0], "b0", seen.append)
    assert seen == ["b0", "b1"]
    order.finish(tickets[2], None, seen.append)  # abandoned: later ones still flow
    assert seen == ["b0", "b1", "b3"]
