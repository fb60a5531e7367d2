"""The load test's CPU per process group: differences per process, not of group totals."""

from simulators.loadtest import cpu_used


def test_cpu_is_counted_per_process_whoever_comes_and_goes():
    before = {10: ("giamsat worker", 5.0), 11: ("giamsat worker", 40.0),  # 11 exits meanwhile
              20: ("postgresql", 1.0)}
    after = {10: ("giamsat worker", 7.5), 12: ("giamsat worker", 0.5),  # 12 started meanwhile
             20: ("postgresql", 1.25), 30: ("mosquitto", 0.0)}
    assert cpu_used(before, after) == {"giamsat worker": 3.0, "postgresql": 0.25,
                                       "mosquitto": 0.0}


def test_a_reused_pid_of_another_group_counts_from_zero():
    assert cpu_used({7: ("postgresql", 9.0)}, {7: ("giamsat api", 2.0)}) == {"giamsat api": 2.0}
