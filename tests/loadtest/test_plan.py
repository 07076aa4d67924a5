"""Plans are checked before anything connects, and split over processes and source addresses."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.runcli import cli, flat
from wsops.loadtest.plan import (
    PACING_GAP,
    Plan,
    PlanError,
    Target,
    next_publish,
    shards,
    source_range,
)

URL = "ws://127.0.0.1:8765/ws"


@pytest.mark.parametrize(("plan", "message"), [
    (Plan("fanout", "ws://10.0.0.1:80/ws"), "not a loopback address"),
    (Plan("storm", URL), "unknown scenario"),
    (Plan("idle", URL, connections=0), "--connections must be"),
    (Plan("idle", URL, connections=300_000), "--connections must be"),
    (Plan("idle", URL, duration=0), "--duration"),
    (Plan("idle", URL, duration=7200), "--duration"),
    (Plan("idle", URL, connections=40_000, processes=2), "need --processes >= 3"),
    (Plan("idle", URL, connections=40_000, processes=3), "need at least 2 source addresses"),
    (Plan("fanout", URL, connections=3, rooms=2), "at least 2 connections per room"),
    (Plan("idle", "wss://127.0.0.1/ws"), "ws:// URL"),
    (Plan("idle", URL, sources=("10.0.0.5",)), "source 10.0.0.5 is not a loopback"),
    (Plan("idle", URL, connect_timeout=0), "--connect-timeout"),
])
def test_unbounded_remote_or_malformed_plans_are_refused(plan: Plan, message: str) -> None:
    with pytest.raises(PlanError, match=message):
        plan.check()


def test_remote_targets_need_an_explicit_allow() -> None:
    remote, sources = "ws://10.0.0.1:81/ws", ("10.0.0.5",)
    with pytest.raises(PlanError) as refused:
        Plan("idle", remote).check()
    assert str(refused.value) == ("10.0.0.1 (10.0.0.1) is not a loopback address: load tests "
                                  "go to 127.0.0.0/8 unless --allow-remote")
    with pytest.raises(PlanError) as source_refused:
        Plan("idle", URL, sources=sources).check()
    assert str(source_refused.value) == "source 10.0.0.5 is not a loopback address"
    # Allowed: the plan checks out (resolved, nothing connects), remote sources too.
    allowed = Plan("idle", remote, sources=sources, allow_remote=True).check()
    assert allowed == Target("10.0.0.1", 81, "/ws", "10.0.0.1")


def test_shards_divide_connections_rate_and_sources() -> None:
    plan = Plan("echo", URL, connections=10, processes=3, rate=100.0,
                sources=tuple(source_range("127.0.0.2-127.0.0.7")))
    parts = shards(plan)
    assert [(s.first, s.connections) for s in parts] == [(0, 4), (4, 3), (7, 3)]
    assert sum(s.rate for s in parts) == pytest.approx(100.0)
    assert [s.sources for s in parts] == [("127.0.0.2", "127.0.0.5"), ("127.0.0.3", "127.0.0.6"),
                                          ("127.0.0.4", "127.0.0.7")]
    assert source_range("127.0.0.9,127.0.0.2-127.0.0.3") == ["127.0.0.9", "127.0.0.2",
                                                             "127.0.0.3"]
    with pytest.raises(PlanError, match="reversed"):
        source_range("127.0.0.9-127.0.0.2")


async def test_the_cli_refuses_before_connecting_with_exit_2() -> None:
    result = await cli("loadtest", "fanout", "ws://192.0.2.7:80/ws")
    assert result.exit_code == 2
    assert "not a loopback address" in flat(result.stderr)
    helped = await cli("loadtest", "--help")
    assert helped.exit_code == 0
    for word in ("connect", "idle", "fanout", "echo", "Exit codes"):
        assert word in flat(helped.stdout)



def paced(rate: float, seconds: float, seed: int, start: float = 1000.0
          ) -> list[tuple[float, list[float]]]:
    """The shard's sending loop (``ShardRun._publish_for``) on a clock that sleeps exactly as
    asked: for each wake, its time and the moments of the publishes it sent."""
    rng = random.Random(seed)
    now, wakes = start, []
    moment = next_publish(start, rate, rng)
    while now - start < seconds:
        sent = []
        while moment <= now:
            sent.append(moment)
            moment = next_publish(moment, rate, rng)
        if sent:
            wakes.append((now, sent))
        now += max(PACING_GAP, min(moment, start + seconds) - now)
    return wakes


@given(rate=st.floats(0.5, 20_000), seconds=st.floats(0.5, 5), seed=st.integers(0, 2**32))
def test_each_publish_leaves_within_a_millisecond_of_its_moment(rate: float, seconds: float,
                                                                seed: int) -> None:
    for now, moments in paced(rate, seconds, seed):
        assert all(now - PACING_GAP - 1e-9 <= m <= now for m in moments)


def test_publishes_arrive_as_from_independent_clients_poisson_at_the_rate() -> None:
    # 100,000 publishes at 10,000/s: their count per 5 ms window is Poisson with mean 50
    # (a fixed 5 ms tick would put exactly 50 in each; even spacing 50 +- 1).
    rng, rate = random.Random(7), 10_000.0
    moments, t = [], 0.0
    for _ in range(100_000):
        t = next_publish(t, rate, rng)
        moments.append(t)
    gaps = [b - a for a, b in zip([0.0, *moments], moments, strict=False)]
    mean = sum(gaps) / len(gaps)
    assert abs(mean * rate - 1) < 5 / math.sqrt(len(gaps))  # exponential: sd = mean
    longer = sum(g > 1 / rate for g in gaps) / len(gaps)  # P(gap > mean) = 1/e
    assert abs(longer - math.exp(-1)) < 5 * math.sqrt(math.exp(-1) * (1 - math.exp(-1)) / len(gaps))
    windows = [0] * (int(moments[-1] / 0.005) + 1)
    for m in moments:
        windows[int(m / 0.005)] += 1
    windows.pop()  # the last window is cut short
    w_mean = sum(windows) / len(windows)
    w_var = sum((w - w_mean) ** 2 for w in windows) / len(windows)
    assert abs(w_mean - 50) < 1 and 40 < w_var < 60  # Poisson: variance = mean


def test_a_slow_process_sleeps_until_its_next_publish_and_rate_zero_never_sends() -> None:
    wakes = paced(2.0, 30.0, seed=1)
    assert 30 <= sum(len(m) for _, m in wakes) <= 90  # Poisson(60): within ~4 sd
    assert all(len(m) == 1 for _, m in wakes)  # each woken for by its own moment
    assert next_publish(5.0, 0, random.Random()) == math.inf and paced(0, 1.0, seed=1) == []
    assert PACING_GAP == 0.001  # the loop's timer resolution: "within a millisecond"
    assert Plan("fanout", "ws://127.0.0.1:1/ws").to_dict()["arrivals"] == "poisson"
