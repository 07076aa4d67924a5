"""``wsops rollout --prometheus``'s queries: instances, windows, values (the queries against
a real Prometheus are in tests/ops/test_rollout.py)."""

from __future__ import annotations

import math

from wsops.ops.promgates import expressions, instance_of, values_by_instance
from wsops.ops.rolloutplan import METRICS


def test_a_node_is_the_instance_of_its_admin_listener() -> None:
    assert instance_of("http://10.0.0.5:9100") == "10.0.0.5:9100"
    assert instance_of("https://node-1.example:9100/") == "node-1.example:9100"


def test_every_gate_figure_has_a_query_over_the_bake_with_the_selector() -> None:
    got = expressions('job="wsops",cluster="eu"', 29.2)
    assert set(got) == set(METRICS)
    for expr in got.values():
        assert "[30s]" in expr and '{job="wsops",cluster="eu"' in expr
        assert expr.count("(") == expr.count(")")
    assert "[2s]" in expressions('job="wsops"', 0.5)["delivery_p99"]  # two scrapes at least
    # an error count never seen yet reads zero instead of making the whole ratio vanish
    assert 'or sum by (instance) (0 * up{job="wsops",cluster="eu"})' in got["error_rate"]


def test_values_are_by_instance_and_nothing_happened_reads_zero() -> None:
    result = [{"metric": {"instance": "a:1"}, "value": [0, "0.25"]},
              {"metric": {"instance": "b:1"}, "value": [0, "NaN"]}]
    got = values_by_instance(result)
    assert got == {"a:1": 0.25, "b:1": 0.0} and not math.isnan(got["b:1"])
