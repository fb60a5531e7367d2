"""Drills (issue 6, item 2): the service under faults, run as a user runs it.

Each drill starts its own PostgreSQL and Mosquitto (free ports, a temp dir) so it can stop or
kill them, runs `python -m giamsat worker` (and `api`) as child processes, drives them with a
QoS 1 publisher that tracks which publishes the broker acknowledged, and asserts exact numbers
(contract §1: nothing acknowledged is lost; a message is stored once; every rejection is
dead-lettered with its reason). Figures are printed (`pytest -s` shows them).
"""

from __future__ import annotations

import time
from collections import Counter

import pytest

from ingest.records import REASONS
from simulators import messages as sim
from tests.drills.fuzz import contract_verdict, fuzz_corpus
from tests.drills.harness import (
    PacketPublisher,
    Publisher,
    Stack,
    assert_exactly_once,
    fix_stream,
    ledger,
    report_on_failure,
    wait_drained,
    wait_for,
    worker_connections,
)

pytestmark = [pytest.mark.services, pytest.mark.slow]


def test_kill_9_of_the_worker_under_load_loses_nothing_acknowledged():
    """20,000 single-fix messages at 2,000/s; SIGKILL the worker 4 s in; restart it 1 s later."""
    total, rate = 20_000, 2_000.0
    with Stack("kill9") as stack, report_on_failure(stack):
        stack.start_worker()
        pub = Publisher("127.0.0.1", stack.mqtt.port, "drill-pub-kill9",
                        fix_stream(stack.devices, total, rate), rate)
        pub.start()
        time.sleep(4.0)
        stack.worker.kill9()
        killed_at, acked_at_kill = pub.published, len(pub.sent.acked())
        stored_at_kill = sum(stack.stored_fixes().values())
        time.sleep(1.0)
        t0 = time.monotonic()
        stack.start_worker()
        restart_s = time.monotonic() - t0
        pub.join(60)
        assert pub.wait_all_acked(30), "the broker did not acknowledge every publish"
        drain_s = wait_drained(stack, pub.sent, 60)
        pub.close()
        led = ledger(stack, pub.sent)
        again = stack.worker_metric("giamsat_ingest_duplicate_records_total", kind="fix")
        print(f"\n[kill9] published {led.published} at {rate:.0f}/s; worker SIGKILLed after "
              f"{killed_at} published, {acked_at_kill} acknowledged, {stored_at_kill} stored; "
              f"restarted 1 s later (healthy in {restart_s:.1f} s); redelivered and found "
              f"already stored after the restart: {again:.0f}; drained {drain_s:.1f} s after "
              f"the publisher finished")
        print(f"[kill9] {led.line()}")
        print(f"[kill9] {stack.log_summary()}")
        assert stack.worker.alive
        assert "Traceback" not in stack.worker.output()
        assert_exactly_once(led)
        assert led.acked == total


def test_broker_restart_loses_nothing_acknowledged():
    """10,000 fixes at 1,000/s. 2.5 s in the worker is paused (SIGSTOP) so that the broker holds
    acknowledged messages for its session; 1.5 s later Mosquitto is stopped gracefully, started
    again on the same port and store 2 s later, and the worker resumed: it and the publisher
    reconnect by themselves."""
    total, rate = 10_000, 1_000.0
    with Stack("broker") as stack, report_on_failure(stack):
        worker = stack.start_worker()
        pub = Publisher("127.0.0.1", stack.mqtt.port, "drill-pub-broker",
                        fix_stream(stack.devices, total, rate), rate)
        pub.start()
        time.sleep(2.5)
        worker.pause()
        try:
            time.sleep(1.5)
            stored_at_stop = sum(stack.stored_fixes().values())
            acked_at_stop = len(pub.sent.acked())
            stack.mqtt.stop()
            stopped_at = pub.published
            time.sleep(2.0)
            stack.mqtt.start()
        finally:
            worker.resume()
        pub.join(60)
        assert pub.wait_all_acked(30), "the broker did not acknowledge every publish"
        drain_s = wait_drained(stack, pub.sent, 60)
        pub.close()
        led = ledger(stack, pub.sent)
        print(f"\n[broker] published {led.published} at {rate:.0f}/s; broker stopped after "
              f"{stopped_at} published, {acked_at_stop} acknowledged, {stored_at_stop} stored "
              f"(so {acked_at_stop - stored_at_stop} acknowledged ones held by the broker across "
              f"its restart), down 2 s; drained {drain_s:.1f} s after the publisher finished")
        print(f"[broker] {led.line()}")
        print(f"[broker] {stack.log_summary()}")
        assert worker.alive and worker.starts == 1, "the worker must not need a restart"
        assert acked_at_stop - stored_at_stop > 0
        assert "Traceback" not in worker.output()
        assert_exactly_once(led)
        assert led.acked == total


def test_postgres_stopped_for_60_s_and_started_again():
    """200 fixes/s for 80 s; PostgreSQL down from 5 s to 65 s. Meanwhile /readyz says 503, the
    worker stays up on the same MQTT connections; then it catches up and nothing acknowledged
    is lost."""
    rate, seconds, outage_s = 200.0, 80, 60.0
    with Stack("pgstop") as stack, report_on_failure(stack):
        worker = stack.start_worker()
        stack.start_api()
        pub = Publisher("127.0.0.1", stack.mqtt.port, "drill-pub-pgstop",
                        fix_stream(stack.devices, int(rate * seconds), rate), rate)
        pub.start()
        time.sleep(5.0)
        connections = worker_connections(worker.pid, stack.mqtt.port)
        stored_before = sum(stack.stored_fixes().values())
        stack.pg.stop()
        stopped = time.monotonic()
        samples: list[tuple[float, int | None, bool]] = []
        while (t := time.monotonic() - stopped) < outage_s:
            samples.append((t, stack.readyz(), worker.alive))
            time.sleep(max(0.0, 1.0 - (time.monotonic() - stopped - t)))
        connections_after = worker_connections(worker.pid, stack.mqtt.port)
        acked_during = len(pub.sent.acked())
        held = stack.worker_metric("giamsat_ingest_queue_depth")
        stack.pg.start()
        restarted = time.monotonic()
        wait_for(lambda: stack.readyz() == 200, 60, "/readyz to say ready again")
        ready_after_s = time.monotonic() - restarted
        log_at_ready = len(worker.output())
        pub.join(60)
        assert pub.wait_all_acked(30), "the broker did not acknowledge every publish"
        drain_s = wait_drained(stack, pub.sent, 60)
        pub.close()
        led = ledger(stack, pub.sent)

        def decided() -> bool:
            lag = stack.query("SELECT extract(epoch FROM (SELECT max(received_at) FROM fixes) "
                              "- (SELECT received_at FROM decide_progress))")[0][0]
            return lag is not None and float(lag) <= 2.0

        wait_for(decided, 60, "the decide stage to catch up")
        codes = Counter(code for t, code, _ in samples if t >= 3.0)
        print(f"\n[pgstop] published {led.published} at {rate:.0f}/s; PostgreSQL stopped "
              f"{outage_s:.0f} s after {stored_before} stored; {acked_during} acknowledged by the "
              f"end of the outage, {held:.0f} of them held in the worker's queue; /readyz during it (after 3 s): {dict(codes)}; ready again "
              f"{ready_after_s:.1f} s after the restart; drained {drain_s:.1f} s after the "
              f"publisher finished; worker MQTT connections kept: "
              f"{len(connections & connections_after)}/{len(connections)}")
        print(f"[pgstop] {led.line()}")
        print(f"[pgstop] {stack.log_summary()}")
        assert all(alive for _, _, alive in samples) and worker.alive and worker.starts == 1
        assert codes == {503: len(samples) - sum(t < 3.0 for t, _, _ in samples)}, samples
        assert connections and connections <= connections_after, \
            f"the worker reconnected to the broker: {connections} -> {connections_after}"
        assert "Traceback" not in worker.output()[log_at_ready:], "errors after recovery"
        assert_exactly_once(led)
        assert led.acked == led.published


def test_100_000_fuzzed_payloads_are_each_dead_lettered():
    """100,000 invalid messages (tests/drills/fuzz.py) over two QoS 1 connections at ~4,000/s
    (written as packets: paho would cost the drill ~8 s of CPU more):
    the worker stays up; one dead letter per message (per bad element of a batch), each with a
    reason from the bounded set; the rejected counter adds up to the same; nothing stored."""
    n, rate, seed = 100_000, 4_000.0, 20_261_126
    with Stack("fuzz") as stack, report_on_failure(stack):
        worker = stack.start_worker()
        made = sim.now_ms()
        corpus = fuzz_corpus(n, seed, stack.devices, made)
        registered = set(stack.devices)
        assert all(contract_verdict(c.topic, c.payload, registered, made) == (0, c.rows)
                   for c in corpus), "a fuzzed case is valid by contract §1"
        expected = sum(c.rows for c in corpus)
        messages = [(c.topic, c.payload, i) for i, c in enumerate(corpus)]
        pubs = [PacketPublisher("127.0.0.1", stack.mqtt.port, f"drill-pub-fuzz-{k}",
                                messages[k::2], rate / 2) for k in range(2)]
        t0 = time.monotonic()
        for p in pubs:
            p.start()
        for p in pubs:
            p.join(300)
        assert all(p.wait_all_acked(60) for p in pubs), \
            f"the broker did not acknowledge all: {[(p.acked, p.error) for p in pubs]}"
        published_s = time.monotonic() - t0

        def dead_letters() -> int:
            return stack.query("SELECT count(*) FROM dead_letters")[0][0]

        wait_for(lambda: dead_letters() >= expected, 120, f"{expected} dead letters", every_s=1)
        time.sleep(3.0)  # anything beyond the expected count would show by now
        total_s = time.monotonic() - t0
        by_reason = dict(stack.query(
            "SELECT reason, count(*) FROM dead_letters GROUP BY reason ORDER BY 2 DESC"))
        no_detail = stack.query("SELECT count(*) FROM dead_letters WHERE coalesce(detail, '') = '' "
                                "OR coalesce(reason, '') = ''")[0][0]
        stored = {t: stack.query(f"SELECT count(*) FROM {t}")[0][0]
                  for t in ("fixes", "heartbeats", "device_events")}
        rejected = {dict(labels)["reason"]: v for labels, v in
                    stack.worker_metrics()["giamsat_ingest_rejected_total"].items() if v}
        acked = sum(p.acked for p in pubs)
        low, high = Counter(), Counter()
        for case in corpus:
            for fits in case.reasons:
                high.update(fits)
                if len(fits) == 1:
                    low.update(fits)
        print(f"\n[fuzz] published {sum(p.published for p in pubs)} messages "
              f"({Counter(c.category for c in corpus).most_common()}) in {published_s:.0f} s, "
              f"acknowledged {acked}; expected dead letters {expected}; dead-lettered "
              f"{sum(by_reason.values())} in {total_s:.0f} s: {by_reason}; rejected counter "
              f"{sum(rejected.values()):.0f}; stored {stored}")
        print(f"[fuzz] {stack.log_summary()}")
        assert worker.alive and worker.starts == 1 and stack.worker_health().get("healthy")
        assert acked == n
        assert sum(by_reason.values()) == expected
        assert no_detail == 0
        assert set(by_reason) <= set(REASONS) and "unstorable" not in by_reason, by_reason
        assert rejected == {r: float(c) for r, c in by_reason.items()}, (rejected, by_reason)
        for reason, count in by_reason.items():
            assert low[reason] <= count <= high[reason], (reason, count, low[reason], high[reason])
        assert stored == {"fixes": 0, "heartbeats": 0, "device_events": 0}
        assert "Traceback" not in worker.output()
