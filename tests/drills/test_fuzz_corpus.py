"""The fuzz drill's corpus, checked without services: every case is invalid by an independent
reading of contract §1 with exactly the dead letters the drill expects, and the service's
decoder agrees (every record a rejection, one per expected row, with a fitting reason)."""

from __future__ import annotations

from collections import Counter

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.decode import decode
from ingest.records import REASONS, Rejected
from simulators import messages as sim
from tests.drills.fuzz import Case, contract_verdict, fuzz_corpus

DEVICES = [f"drill-{i:03d}" for i in range(5)]


def _check(case: Case, now: int) -> None:
    verdict = contract_verdict(case.topic, case.payload, set(DEVICES), now)
    assert verdict == (0, case.rows), (case, verdict)
    records = decode(case.topic, case.payload, now_ms=now, registered=set(DEVICES))
    assert all(isinstance(r, Rejected) for r in records), (case, records)
    assert len(records) == case.rows, (case, records)
    for r in records:
        row = 0 if r.element is None else r.element
        assert r.reason in REASONS and r.detail, r
        assert r.reason in case.reasons[row], (case.category, r.reason, r.detail, case.payload[:300])


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), ahead_ms=st.integers(0, sim.MAX_FUTURE_MS))
def test_every_fuzzed_case_is_invalid_and_counted_exactly(seed: int, ahead_ms: int):
    """Any seed; the service may receive a case up to 5 minutes after it was made."""
    made = sim.now_ms()
    for case in fuzz_corpus(300, seed, DEVICES, made):
        _check(case, made + ahead_ms)


def test_the_drill_corpus_covers_every_category():
    made = sim.now_ms()
    corpus = fuzz_corpus(20_000, 6, DEVICES, made)
    for case in corpus:
        _check(case, made)
    categories = Counter(c.category for c in corpus)
    assert len(categories) == 18, categories


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16", "utf-32"])
def test_a_batch_not_in_utf8_is_rejected_whole(encoding: str):
    now = sim.now_ms()
    batch = sim.fix_batch([sim.fix(seq=1, ts=now - 1000), sim.fix(seq=2, ts=now - 1000, lat=91.0)])
    payload = orjson.dumps(batch).decode().encode(encoding)
    topic = sim.topic(DEVICES[0], "fix")
    assert contract_verdict(topic, payload, set(DEVICES), now) == (0, 1)
    records = decode(topic, payload, now_ms=now, registered=set(DEVICES))
    assert [(type(r).__name__, getattr(r, "reason", None)) for r in records] == \
        [("Rejected", "not_json")]
