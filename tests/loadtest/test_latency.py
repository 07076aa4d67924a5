"""The merged latency histogram reports percentiles of all samples to within a bucket (2%)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from wsops.loadtest.latency import Latencies

samples = st.lists(st.floats(min_value=2e-6, max_value=100.0), min_size=1, max_size=300)


def exact(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, -(-int(q * 1000) * len(ordered) // 1000) - 1)]


@given(parts=st.lists(samples, min_size=1, max_size=4), q=st.sampled_from([0.5, 0.99, 0.999]))
def test_percentiles_of_merged_parts_match_all_samples_within_a_bucket(
    parts: list[list[float]], q: float
) -> None:
    hists = []
    for part in parts:
        h = Latencies()
        for v in part:
            h.add(v)
        hists.append(Latencies.from_wire(h.to_wire()))  # as shipped from a worker
    merged = Latencies.merged(hists)
    everything = [v for part in parts for v in part]
    assert merged.total == len(everything)
    assert merged.max == max(everything)
    got, want = merged.percentile(q), exact(everything, q)
    assert got is not None and want / 1.0201 <= got <= want * 1.0201


def test_summary_is_in_milliseconds_and_empty_is_none() -> None:
    h = Latencies()
    assert h.summary()["p99_ms"] is None
    for _ in range(99):
        h.add(0.001)
    h.add(0.050)
    s = h.summary()
    assert s["count"] == 100 and 0.98 <= (s["p50_ms"] or 0) <= 1.02
    assert 0.98 <= (s["p99_ms"] or 0) <= 1.02 and s["max_ms"] == 50.0
    assert 49 <= (s["p999_ms"] or 0) <= 50.0
