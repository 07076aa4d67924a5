"""What ``wsops leaks`` profiles behind an admin URL (``leaktargets``, pure): the node itself, or
the workers of a ``--workers`` node, or nothing with the commands to run instead."""

from __future__ import annotations

from typing import Any

import pytest

from wsops.ops.leaktargets import NoTarget, Target, on_this_host, profile_targets

SUPERVISOR = "http://127.0.0.1:9765"


def stats(*workers: dict[str, Any]) -> dict[str, Any]:
    return {"connections": 3, "workers": list(workers)}


W0: dict[str, Any] = {"worker": 0, "pid": 11, "admin_url": "http://127.0.0.1:40001", "up": True}
W1: dict[str, Any] = {"worker": 1, "pid": 12, "admin_url": "http://127.0.0.1:40002", "up": True}


def test_a_node_of_one_process_is_its_own_target() -> None:
    found = profile_targets("http://10.0.0.1:9765", {"connections": 3})
    assert found.targets == [Target("http://10.0.0.1:9765")] and found.skipped == []
    with pytest.raises(NoTarget, match="is not a --workers node: it has no worker 1"):
        profile_targets("http://10.0.0.1:9765", {"connections": 3}, worker=1)


def test_the_workers_of_a_local_supervisor_are_profiled_or_the_one_asked_for() -> None:
    found = profile_targets(SUPERVISOR, stats(W0, W1))
    assert found.targets == [Target(W0["admin_url"], 0), Target(W1["admin_url"], 1)]
    assert found.targets[1].label == "worker 1 (http://127.0.0.1:40002)"
    assert profile_targets(SUPERVISOR, stats(W0, W1), worker=1).targets == [
        Target(W1["admin_url"], 1)]
    with pytest.raises(NoTarget, match=r"has no worker 2 \(its workers: 0, 1\)"):
        profile_targets(SUPERVISOR, stats(W0, W1), worker=2)


def test_a_worker_that_is_down_is_skipped_with_why() -> None:
    down = {"worker": 1, "pid": None, "admin_url": None, "up": False, "error": "down"}
    found = profile_targets(SUPERVISOR, stats(W0, down))
    assert found.targets == [Target(W0["admin_url"], 0)]
    assert found.skipped == ["worker 1 is down: down"]
    with pytest.raises(NoTarget, match="no worker is up to profile"):
        profile_targets(SUPERVISOR, stats(down))


def test_a_remote_supervisor_gets_the_exact_commands_to_run_on_its_host() -> None:
    with pytest.raises(NoTarget) as info:
        profile_targets("http://10.0.0.1:9765", stats(W0, W1))
    assert str(info.value).endswith(
        "Run there: wsops leaks http://127.0.0.1:40001 (worker 0); "
        "wsops leaks http://127.0.0.1:40002 (worker 1)")
    assert "http://10.0.0.1:9765 is the admin listener of a --workers node" in str(info.value)


def test_only_loopback_names_this_host() -> None:
    for url in ("http://127.0.0.1:1", "http://127.9.9.9:1", "http://localhost:1",
                "http://[::1]:1"):
        assert on_this_host(url), url
    for url in ("http://10.0.0.1:1", "http://node-1:1", "http://0.0.0.0:1"):
        assert not on_this_host(url), url
