"""Metric primitives and the collector, without a server."""

from __future__ import annotations

import time
from bisect import bisect_left

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from wsops.instrumentation.metrics import (
    OTHER,
    SIZE_BUCKETS,
    Histogram,
    LabelGuard,
    RouteStats,
    SizeHistogram,
    WsMetrics,
    latency_buckets,
)


def test_latency_buckets_have_a_boundary_at_the_slo() -> None:
    assert 0.01 in latency_buckets(0.01)
    assert 0.0123 in latency_buckets(0.0123)
    assert list(latency_buckets(0.0123)) == sorted(latency_buckets(0.0123))


def test_histogram_buckets_are_cumulative_with_le_semantics() -> None:
    h = Histogram([0.1, 1.0])
    for v in (0.05, 0.1, 0.5, 2.0):
        h.observe(v)
    h.observe_n(0.2, 3)
    assert [(le, n) for le, n, *_ in h.cumulative()] == [("0.1", 2.0), ("1.0", 6.0), ("+Inf", 7.0)]
    assert h.count == 7 and abs(h.sum - (2.65 + 0.6)) < 1e-9
    assert h.quantile(0.5) == 1.0 and h.quantile(0.2) == 0.1 and h.quantile(1.0) == float("inf")


def test_size_histogram_puts_every_size_where_bisect_would() -> None:
    h = SizeHistogram()
    edges = {0, 1, 2, *(b + d for b in SIZE_BUCKETS for d in (-1, 0, 1)), 1 << 40}
    for n in sorted(edges):
        assert h.index(n) == bisect_left(SIZE_BUCKETS, n), n
    for n in (63, 64, 65, 5000):
        h.observe(n)
    assert [c for c in h.counts if c] == [2, 1, 1] and h.sum == 63 + 64 + 65 + 5000
    with pytest.raises(ValueError, match="powers of two"):
        SizeHistogram((64, 100))


def test_route_totals_are_derived_from_the_size_histograms() -> None:
    st = RouteStats([0.01])
    for n in (10, 300):
        st.size_in.observe(n)
    st.messages_in["binary"] = 1  # counted in the histogram too
    st.size_out.observe(7)
    st.derive_in()
    st.derive_out()
    assert st.messages_in == {"text": 1, "binary": 1} and st.bytes_in == 310
    assert st.messages_out == {"text": 1, "binary": 0} and st.bytes_out == 7


def test_label_guard_caps_distinct_values() -> None:
    g = LabelGuard(2)
    assert [g(v) for v in ("a", "b", "c", "a", "d")] == ["a", "b", OTHER, "a", OTHER]


def test_collector_output_parses_and_routes_beyond_the_cap_fold_into_other() -> None:
    registry = CollectorRegistry()
    m = WsMetrics(max_label_values=3, open_connections=lambda: {"/r0": 2})
    registry.register(m)
    for i in range(10):  # a cardinality attack through route names
        m.route(f"/r{i}").opened += 1
    m.route("/r1").messages_in["text"] += 5
    m.route("/late").messages_in["text"] += 1
    m.delivery_latency.observe_traced(0.002, "ab" * 16)
    text = generate_latest(registry).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    opened = {s.labels["route"]: s.value for s in families["wsops_connections_opened"].samples}
    assert opened == {"/r0": 1, "/r1": 1, "/r2": 1, OTHER: 7}
    assert registry.get_sample_value("wsops_connections_open", {"route": "/r0"}) == 2
    assert registry.get_sample_value(
        "wsops_messages_total", {"route": "/r1", "direction": "in", "type": "text"}) == 5
    assert registry.get_sample_value(
        "wsops_messages_total", {"route": OTHER, "direction": "in", "type": "text"}) == 1
    assert registry.get_sample_value("wsops_delivery_latency_seconds_count") == 1
    assert registry.get_sample_value("wsops_delivery_latency_seconds_bucket", {"le": "0.0025"}) == 1


def test_an_exemplar_is_stamped_when_observed_or_at_the_time_given() -> None:
    hist = Histogram([0.001, 0.01])
    before = time.time()
    hist.observe_traced(0.0005, "ab" * 16)
    hist.observe_traced(0.005, "cd" * 16, 1234.5)  # a flush's clock reading, passed on
    (_, _, first), (_, _, second) = hist.exemplars[0], hist.exemplars[1]
    assert before <= first <= time.time() and second == 1234.5
    hist.observe_traced(0.001, "ef" * 16)  # a bound is its bucket's (``le``)
    hist.observe_traced(0.02, "01" * 16)
    assert hist.counts == [2, 1, 1] and hist.exemplars[0][0] == "ef" * 16
