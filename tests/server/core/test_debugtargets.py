"""The debug switch's bookkeeping: targets named by what they watch, bounded in number and
time, expiring on their own."""

from __future__ import annotations

import pytest

from wsops.server.core.debugtargets import (
    MAX_SECONDS,
    MAX_TARGETS,
    DebugTargets,
    TargetRefused,
)


def test_a_target_watches_its_user_room_or_connection_and_nothing_else() -> None:
    t = DebugTargets()
    assert not t.active and not t.watches("alice", 1, "r")
    t.add("user", "alice", 60, now=0, wall=1000)
    assert t.active
    assert t.watches("alice", 7) and t.watches("alice", 7, "any")
    assert not t.watches("bob", 7, "r")
    t.add("room", "news", 60, now=0, wall=1000)
    assert t.watches("bob", 7, "news") and not t.watches("bob", 7) and not t.watches("bob", 7, "r")
    t.add("connection", "42", 60, now=0, wall=1000)
    assert t.watches("carol", 42) and not t.watches("carol", 43)


def test_asking_again_extends_the_same_target_and_ids_name_what_is_watched() -> None:
    t = DebugTargets()
    first = t.add("user", "alice", 10, now=0, wall=1000)
    again = t.add("user", "alice", 30, now=5, wall=1005)
    assert first.id == again.id == "user:alice" and list(t.targets) == ["user:alice"]
    assert again.until == 35 and t.next_expiry() == 35


def test_targets_expire_on_their_own_and_removing_one_keeps_the_others() -> None:
    t = DebugTargets()
    t.add("user", "alice", 10, now=0, wall=0)
    t.add("room", "r", 20, now=0, wall=0)
    assert t.expire(9.9) == [] and t.next_expiry() == 10
    assert [x.id for x in t.expire(10)] == ["user:alice"]
    assert not t.watches("alice", 1) and t.watches("bob", 1, "r") and t.active
    assert t.remove("nope") is None
    assert t.remove("room:r") is not None
    assert not t.active and t.next_expiry() is None and not t.watches("bob", 1, "r")


@pytest.mark.parametrize(("kind", "value", "seconds", "says"), [
    ("group", "x", 10, "one of user, room, connection"),
    ("user", "", 10, "1 to 256 characters"),
    ("user", "x" * 257, 10, "1 to 256 characters"),
    ("user", "x", 0, "more than 0"),
    ("user", "x", MAX_SECONDS + 1, "at most 3600"),
])
def test_a_bad_target_is_refused_saying_why(kind: str, value: str, seconds: float,
                                            says: str) -> None:
    t = DebugTargets()
    with pytest.raises(TargetRefused, match=says) as refused:
        t.add(kind, value, seconds, now=0, wall=0)
    assert not refused.value.full and not t.active
    t.add("user", "x" * 256, MAX_SECONDS, now=0, wall=0)  # the bounds themselves are fine
    t.add("user", "y", 0.5, now=0, wall=0)  # and less than a second


def test_at_most_max_targets_but_an_existing_one_can_still_be_extended() -> None:
    t = DebugTargets()
    for i in range(MAX_TARGETS):
        t.add("user", f"u{i}", 10, now=0, wall=0)
    with pytest.raises(TargetRefused, match="stop one first") as refused:
        t.add("user", "one-more", 10, now=0, wall=0)
    assert refused.value.full
    t.add("user", "u0", 99, now=0, wall=0)
    assert len(t.targets) == MAX_TARGETS and t.targets["user:u0"].until == 99


def test_the_admin_contract_states_the_same_bounds_and_kinds() -> None:
    from wsops.admin import contract
    from wsops.server.core import debugtargets

    assert contract.DEBUG_KINDS == debugtargets.KINDS
    assert (contract.DEBUG_MAX_SECONDS, contract.DEBUG_MAX_TARGETS) == (MAX_SECONDS, MAX_TARGETS)


def test_taps_are_watched_but_not_debugged_and_counted_until_the_last_one_closes() -> None:
    t = DebugTargets()
    t.tap("room", "news")
    t.tap("room", "news")
    t.tap("user", "alice")
    t.tap("connection", "7")
    assert t.active and t.taps == {"room:news": 2, "user:alice": 1, "connection:7": 1}
    assert t.watches("bob", 1, "news") and t.watches("alice", 1) and t.watches("bob", 7)
    assert not t.debugs("bob", 1, "news") and not t.debugs("alice", 1)
    assert not t.debugs("bob", 7)
    t.add("user", "alice", 60, now=0, wall=0)
    assert t.debugs("alice", 1) and not t.debugs("bob", 1, "news")
    t.add("room", "sports", 60, now=0, wall=0)
    t.add("connection", "9", 60, now=0, wall=0)
    assert t.debugs("bob", 1, "sports") and t.debugs("bob", 9) and not t.debugs("bob", 1)
    t.untap("room", "news")
    assert t.watches("bob", 1, "news")  # one tap still open on it
    t.untap("room", "news")
    t.untap("room", "news")  # one close too many: nothing breaks
    assert not t.watches("bob", 1, "news") and "room:news" not in t.taps
    t.untap("user", "alice")
    t.untap("connection", "7")
    assert t.watches("alice", 1)  # still a debug target
    for target in list(t.targets):
        t.remove(target)
    assert not t.active and t.taps == {}
    with pytest.raises(TargetRefused, match="one of user, room, connection"):
        t.tap("group", "x")
