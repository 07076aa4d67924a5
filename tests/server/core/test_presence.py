"""Presence counting: first join and last leave per user and room."""

from __future__ import annotations

from wsops.server.core.presence import PresenceCounts


def test_first_join_and_last_leave_are_reported_once() -> None:
    p = PresenceCounts()
    assert p.join("r", "ann") is True
    assert p.join("r", "ann") is False  # a second connection of the same user
    assert p.join("r", "bob") is True
    assert p.leave("r", "ann") is False
    assert p.leave("r", "ann") is True
    assert p.leave("r", "ann") is False  # unknown now: no event
    assert sorted(p["r"]) == ["bob"]
    assert p.leave("r", "bob") is True
    assert "r" not in p  # empty rooms are dropped
    assert p.leave("nowhere", "x") is False
