"""Options and exit codes of ``wsops drain`` (pure, no server)."""

from __future__ import annotations

from wsops.ops.drainview import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_TIMEOUT,
    DrainOptions,
    judge,
    sendable_close_code,
)


def test_only_given_options_are_sent_and_bad_ones_are_named() -> None:
    assert DrainOptions(batch=50, deadline=20).body() == {"batch": 50, "deadline": 20}
    assert DrainOptions().problems() == []
    bad = DrainOptions(batch=0, interval=-1, deadline=0, code=1006).problems()
    assert [name for name, _ in bad] == ["--batch", "--interval", "--deadline", "--code"]
    assert [c for c in (1000, 1005, 1006, 1012, 1015, 2000, 3000, 4999, 5000)
            if sendable_close_code(c)] == [1000, 1012, 3000, 4999]


def test_exit_codes_follow_what_the_node_reports() -> None:
    done = {"state": "drained", "total": 300, "closed": 300, "forced": 0, "batches": 6,
            "remaining": 0}
    ok = judge(done, gave_up=False, elapsed=1.25)
    assert (ok.exit_code, ok.result) == (EXIT_OK, "drained")
    assert ok.message == "drained 300 connections in 1.2 s (6 batches, 300 closed, 0 forced)"
    forced = judge({**done, "closed": 280, "forced": 20}, gave_up=False, elapsed=20)
    assert (forced.exit_code, forced.result) == (EXIT_TIMEOUT, "timeout")
    assert "20 of 300 connections were still open and were force-closed" in forced.message
    lingering = judge({**done, "remaining": 2}, gave_up=False, elapsed=3)
    assert lingering.exit_code == EXIT_TIMEOUT
    stuck = judge({**done, "state": "draining", "remaining": 7}, gave_up=True, elapsed=23)
    assert (stuck.exit_code, stuck.result) == (EXIT_TIMEOUT, "timeout")
    cancelled = judge({**done, "state": "cancelled", "remaining": 5}, gave_up=False, elapsed=2)
    assert (cancelled.exit_code, cancelled.result) == (EXIT_ERROR, "cancelled")
    assert judge({"state": "idle"}, gave_up=False, elapsed=0).exit_code == EXIT_ERROR
