"""Monitoring never goes blind (issue 11), run as a user runs the service.

A supervisee sends fixes at home; the worker is killed (SIGKILL) or stopped cleanly; the
device goes on publishing from 800 m outside the commune while the service is down (the broker
keeps them for the service's persistent session); the worker starts again. The backlog's fixes
must be decided in their own order: one zone_exit, raised after the restart, saying when the
excursion began by the fixes' times (``occurred_at``) and that it was raised late. A further
restart fires nothing again.
"""

from __future__ import annotations

import time

import pytest

from alerts.model import dt_to_ms
from simulators import messages as sim
from tests.alerts.helpers import offset
from tests.drills.harness import Stack, mqtt_client, report_on_failure, wait_connected, wait_for

pytestmark = [pytest.mark.services, pytest.mark.slow]

DEVICE, SUPERVISEE = "drill-000", "sv-drill-000"
HOME = (sim.DEFAULT_LON, sim.DEFAULT_LAT)
OUTSIDE = offset(HOME[0], HOME[1], 0, 3800)  # the residence is a 3 km circle: 800 m out


def _publish(stack: Stack, fixes: list[tuple[int, int, tuple[float, float]]]) -> None:
    """QoS 1 fixes (seq, ts, (lon, lat)) from the device; return once the broker has them."""
    client = mqtt_client("127.0.0.1", stack.mqtt.port, f"{DEVICE}-pub")
    try:
        wait_connected(client)
        infos = [client.publish(sim.topic(DEVICE, "fix"),
                                sim.encode(sim.fix(seq=seq, ts=ts, lon=p[0], lat=p[1], acc=8.0)),
                                qos=1) for seq, ts, p in fixes]
        for info in infos:
            info.wait_for_publish(10)
            assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


def _stored(stack: Stack) -> int:
    return stack.query("SELECT count(*) FROM fixes WHERE device_id = %s", DEVICE)[0][0]


def _exits(stack: Stack) -> list[tuple]:
    return stack.query("SELECT id, opened_at, occurred_at, condition_since, active FROM alerts "
                       "WHERE supervisee_id = %s AND type = 'zone_exit'", SUPERVISEE)


@pytest.mark.parametrize("how", ["kill9", "clean_stop"])
def test_an_excursion_while_the_service_is_down_alerts_after_the_restart(how):
    with Stack(f"blind-{how}", devices=2) as stack, report_on_failure(stack):
        worker = stack.start_worker()
        now = sim.now_ms()
        minute = 60_000
        _publish(stack, [(i, now - (10 - i) * minute, HOME) for i in range(3)])
        wait_for(lambda: _stored(stack) == 3, 20, "the home fixes to be stored")
        time.sleep(1.0)
        if how == "kill9":
            worker.kill9()
        else:
            assert worker.stop(30) == 0
        first_out = now - 5 * minute
        _publish(stack, [(3 + i, first_out + i * minute, OUTSIDE) for i in range(4)])
        stack.start_worker()
        ready_at = sim.now_ms()
        [alert] = wait_for(lambda: _exits(stack), 30, "a zone_exit after the restart")
        _, opened_at, occurred_at, since, active = alert
        assert _stored(stack) == 7
        assert active
        assert dt_to_ms(since) == first_out, "the condition began with the first fix outside"
        assert dt_to_ms(occurred_at) == first_out, "marked retrospective, by the fixes' time"
        assert dt_to_ms(opened_at) >= ready_at - 5000, "raised after the restart"
        history = stack.query("SELECT action FROM alert_history WHERE alert_id = %s", alert[0])
        assert [h[0] for h in history] == ["opened"]
        # once: a further restart re-reads nothing into a second alert or history row
        stack.worker.stop(30)
        stack.start_worker()
        time.sleep(3.0)
        assert len(_exits(stack)) == 1
        assert stack.query("SELECT count(*) FROM alert_history WHERE alert_id = %s",
                           alert[0])[0][0] == 1
        assert "Traceback" not in stack.worker.output()


def test_an_excursion_during_a_database_outage_alerts_once_it_is_back():
    """The device leaves while PostgreSQL is down: ingest cannot store (nothing is
    acknowledged, the broker keeps it), the decide stage waits; once the database is back the
    fixes are stored, decided in order, and the exit alerts once."""
    with Stack("blind-pg", devices=2) as stack, report_on_failure(stack):
        stack.start_worker()
        now = sim.now_ms()
        _publish(stack, [(i, now - (60 - i) * 1000, HOME) for i in range(3)])
        wait_for(lambda: _stored(stack) == 3, 20, "the home fixes to be stored")
        stack.pg.stop()
        try:
            out_at = sim.now_ms()
            _publish(stack, [(3 + i, out_at + i * 1000, OUTSIDE) for i in range(4)])
            time.sleep(5.0)
        finally:
            stack.pg.start()
        [alert] = wait_for(lambda: _exits(stack), 60, "a zone_exit once the database is back")
        assert dt_to_ms(alert[3]) == out_at
        assert _stored(stack) == 7
        time.sleep(2.0)
        assert len(_exits(stack)) == 1
        assert stack.worker.alive and stack.worker.starts == 1
