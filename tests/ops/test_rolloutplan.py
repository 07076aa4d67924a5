"""``wsops rollout``'s decisions without a fleet: gates, figures over a bake, headroom,
restart commands and the saved state."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from wsops.ops.rolloutplan import (
    DEFAULT_GATES,
    RolloutState,
    drain_spread,
    failed_gates,
    figures,
    headroom_problem,
    parse_gate,
    restart_command,
)


@pytest.mark.parametrize(("text", "metric", "limit", "inclusive"), [
    ("delivery_p99 < 50ms", "delivery_p99", 0.05, False),
    ("delivery_p99<=0.2s", "delivery_p99", 0.2, True),
    (" loop_lag_p99 < 100ms ", "loop_lag_p99", 0.1, False),
    ("error_rate < 1%", "error_rate", 0.01, False),
    ("error_rate < 0.02", "error_rate", 0.02, False),
    ("abnormal_closes <= 5%", "abnormal_closes", 0.05, True),
    ("resume_failures < 1", "resume_failures", 1.0, False),
    ("reconnect_rate < 50/s", "reconnect_rate", 50.0, False),
    ("reconnect_rate <= 2.5", "reconnect_rate", 2.5, True),
])
def test_gates_parse_into_base_units(text: str, metric: str, limit: float,
                                     inclusive: bool) -> None:
    gate = parse_gate(text)
    assert (gate.metric, gate.inclusive, gate.text) == (metric, inclusive, text.strip())
    assert gate.limit == pytest.approx(limit)


@pytest.mark.parametrize(("text", "said"), [
    ("delivery_p99 > 50ms", "NAME < VALUE"),
    ("latency < 5ms", "unknown figure 'latency'"),
    ("delivery_p99 < 50", "is a time"),
    ("delivery_p99 < 5%", "is a time"),
    ("error_rate < 5ms", "is a share"),
    ("resume_failures < 1%", "is a count"),
    ("reconnect_rate < 5%", "is a rate"),
    ("delivery_p99 < 5/s", "is a time"),
    ("", "NAME < VALUE"),
])
def test_bad_gates_say_what_is_accepted(text: str, said: str) -> None:
    with pytest.raises(ValueError, match=said):
        parse_gate(text)


def test_a_gate_holds_strictly_or_inclusively_and_the_defaults_parse() -> None:
    assert parse_gate("resume_failures < 1").holds(0) and not parse_gate(
        "resume_failures < 1").holds(1)
    assert parse_gate("resume_failures <= 1").holds(1)
    assert [parse_gate(g).metric for g in DEFAULT_GATES] == [
        "delivery_p99", "loop_lag_p99", "error_rate", "abnormal_closes", "resume_failures",
        "reconnect_rate"]


def stats(served: int = 0, errors: int = 0, codes: dict[str, int] | None = None,
          p99: float | None = None, lag: float | None = 0.0, failed: int = 0,
          recovered: int = 0, at: float = 0.0) -> dict[str, Any]:
    return {"operations": {"served": served, "errors": errors},
            "hub": {"close_codes": codes or {}}, "delivery_p99_seconds": p99,
            "loop_lag_p99_seconds": lag, "resumes": {"recovered": recovered, "failed": failed},
            "sampled_at": at}


def test_figures_are_deltas_over_the_bake_and_worst_samples() -> None:
    samples = [stats(100, 1, {"1000": 5, "1006": 1}, 0.002, 0.001, 2, 10, at=100.0),
               stats(150, 1, {"1000": 5, "1006": 1}, None, 0.050, 2, 12, at=101.0),
               stats(300, 5, {"1000": 11, "1006": 2, "1011": 1}, 0.004, 0.002, 3, 29, at=104.0)]
    got = figures(samples)
    assert got["error_rate"] == pytest.approx(4 / 200)
    assert got["abnormal_closes"] == pytest.approx(2 / 8)  # 1006 +1, 1011 +1 of 8 closes
    assert got["delivery_p99"] == 0.004 and got["loop_lag_p99"] == 0.050
    assert got["resume_failures"] == 1
    assert got["reconnect_rate"] == pytest.approx((19 + 1) / 4.0)  # resumes per second
    quiet = figures([stats(), stats()])  # nothing served, closed or timed: no division
    assert quiet == {"delivery_p99": 0.0, "loop_lag_p99": 0.0, "error_rate": 0.0,
                     "abnormal_closes": 0.0, "resume_failures": 0.0, "reconnect_rate": 0.0}
    assert figures([{}, {"hub": None}])["abnormal_closes"] == 0.0  # a node without a hub


def test_failed_gates_name_the_gate_and_the_value_seen() -> None:
    gates = [parse_gate("delivery_p99 < 50ms"), parse_gate("error_rate < 1%"),
             parse_gate("resume_failures < 1")]
    values = {"delivery_p99": 0.212, "error_rate": 0.001, "resume_failures": 2.0}
    assert failed_gates(gates, values) == ["delivery_p99 < 50ms: 212.0 ms",
                                           "resume_failures < 1: 2"]
    assert failed_gates(gates, {**values, "delivery_p99": 0.01, "resume_failures": 0}) == []


def test_headroom_counts_the_free_places_of_ready_nodes_only() -> None:
    node = {"connections": 100}
    assert headroom_problem(node, [{"ready": True, "connections_max": 150,
                                    "connections": 50}]) is None
    problem = headroom_problem(node, [
        {"ready": True, "connections_max": 150, "connections": 60},
        {"ready": False, "connections_max": 1000, "connections": 0},
        {"ready": True, "connections_max": 10, "connections": 20}])  # over its max: 0 free
    assert problem is not None and "90 free connection places" in problem
    assert "100 connections" in problem
    assert headroom_problem({"connections": 0}, []) is None


def test_restart_commands_fill_quoted_placeholders_and_refuse_unknown_ones() -> None:
    assert restart_command("restart {host} {node_id} {admin_url}", "http://h:9765", "n-1",
                           "h") == "restart h n-1 http://h:9765"
    assert restart_command("x {host}", "http://a", "", "a b; rm -rf /") == \
        "x 'a b; rm -rf /'"
    for bad in ("x {port}", "x {0}", "x {host"):
        with pytest.raises(ValueError, match="placeholders are"):
            restart_command(bad, "http://h:1", "n", "h")


def test_state_saves_loads_and_lists_what_is_left(tmp_path: Path) -> None:
    path = tmp_path / "rollout.json"
    state = RolloutState(["a", "b", "c"])
    state.done.append("a")
    state.failed, state.reason = "b", "gate failed: x"
    state.save(path)
    back = RolloutState.load(path)
    assert back == state and back.todo() == ["b", "c"]
    path.write_text("{not json")
    with pytest.raises(ValueError, match="cannot resume from"):
        RolloutState.load(path)
    with pytest.raises(ValueError, match="cannot resume from"):
        RolloutState.load(tmp_path / "missing.json")


def test_a_drain_window_is_widened_only_past_the_nodes_own_and_capped() -> None:
    # 6,000 connections, 3 ready nodes at 1,000 accepts/s each: 2 s are needed.
    assert drain_spread(6000, 3, 1000.0, 5.0) is None  # the node's own 5 s is enough
    assert drain_spread(6000, 3, 1000.0, 0.5) == 2.0
    assert drain_spread(50_000, 1, 100.0, 5.0) == 60.0  # the clients' hint cap
    assert drain_spread(10, 0, 1.0, 0.0) == 10.0  # no ready node: counted as one
