"""The node observer's head sampling of root publishes (no traceparent): each traced with
probability ``ratio``, independently of the others, though only a traced one draws a random
number (a geometric gap, counted down in ``quiet``, which sessions read to skip the call)."""

from __future__ import annotations

import itertools
import math
import random
import statistics

import pytest

from wsops.instrumentation.leanspans import LeanTracerProvider, SpanQueue
from wsops.instrumentation.metrics import WsMetrics
from wsops.instrumentation.tracing import Tracing
from wsops.server.core.protocol import Request
from wsops.server.observe import NEVER, NodeObserver

N = 100_000


def observer(ratio: float, seed: int = 7) -> NodeObserver:
    provider = LeanTracerProvider(SpanQueue(lambda body: None, b"", "", delay=3600))
    metrics = WsMetrics()
    return NodeObserver(metrics, metrics.route("/ws"), Tracing(provider, ratio,
                                                                 random.Random(seed).random))


def decisions(obs: NodeObserver, n: int = N) -> list[bool]:
    return [obs.publish_started(Request("publish", 0, "r")) is not None for _ in range(n)]


@pytest.mark.parametrize("ratio", [0.0, 0.01, 0.3, 1.0])
def test_root_publishes_are_traced_at_the_ratio_each_independently(ratio: float) -> None:
    traced = decisions(observer(ratio))
    k, sd = sum(traced), math.sqrt(N * ratio * (1 - ratio))
    assert N * ratio - 4.5 * sd <= k <= N * ratio + 4.5 * sd
    if not 0.0 < ratio < 1.0:
        return
    # Not a stride (every 1/ratio-th): the gaps between traced publishes are Geometric(ratio),
    # mean (1 - p) / p and variance (1 - p) / p^2, and an outcome says nothing of the next.
    at = [i for i, t in enumerate(traced) if t]
    gaps = [b - a - 1 for a, b in itertools.pairwise(at)]
    mean, var = (1 - ratio) / ratio, (1 - ratio) / ratio ** 2
    assert abs(statistics.fmean(gaps) - mean) < 0.1 * mean
    assert 0.8 < statistics.pvariance(gaps) / var < 1.2
    after = [traced[i + 1] for i in at if i + 1 < N]
    assert abs(sum(after) / len(after) - ratio) < 4.5 * math.sqrt(ratio * (1 - ratio) / len(after))


def test_quiet_counts_the_publishes_left_untraced_before_the_next_traced_one() -> None:
    obs = observer(0.05)
    for _ in range(20):
        left = obs.quiet
        assert not any(decisions(obs, left)) and obs.quiet == 0
        assert decisions(obs, 1) == [True]  # the one after the gap, which draws the next gap
    assert observer(0.0).quiet == NEVER and observer(1.0).quiet == 0


def test_no_tracing_means_quiet_forever_and_no_handle() -> None:
    metrics = WsMetrics()
    obs = NodeObserver(metrics, metrics.route("/ws"), None)
    assert obs.quiet == NEVER
    req = Request("publish", 0, "r", traceparent=f"00-{'1' * 32}-{'2' * 16}-01")
    assert obs.publish_started(req) is None and decisions(obs, 10) == [False] * 10
    assert req.traceparent == f"00-{'1' * 32}-{'2' * 16}-01"  # the envelope keeps it
