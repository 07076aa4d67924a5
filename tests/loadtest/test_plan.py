"""Plans are checked before anything connects, and split over processes and source addresses."""

from __future__ import annotations

import pytest

from tests.support.runcli import cli, flat
from wsops.loadtest.plan import Plan, PlanError, Target, shards, source_range

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
