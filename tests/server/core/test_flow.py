"""The flow sketch: the busiest rooms' traffic, bounded whatever the number of rooms."""

from __future__ import annotations

import itertools

import pytest

from wsops.server.core.flow import MAX_PUBLISHERS, FlowSketch


def test_a_room_counts_what_its_clients_published_and_what_was_written_to_subscribers() -> None:
    clock = itertools.count(100)
    f = FlowSketch(clock=lambda: float(next(clock)))
    f.published("chat", 10, "alice")
    f.published("chat", 5, "bob")
    f.published("chat", 7, "alice")
    f.fanned_out("chat", 3, 40)
    f.fanned_out("news", 1000, 60)  # published elsewhere, delivered here
    chat, news = f.rooms["chat"], f.rooms["news"]
    assert (chat.msgs_in, chat.bytes_in, chat.msgs_out, chat.bytes_out) == (3, 22, 3, 120)
    assert chat.publishers == {"alice", "bob"} and chat.since == 100
    assert (news.msgs_in, news.msgs_out, news.bytes_out, news.since) == (0, 1000, 60_000, 101)
    assert [room for room, _ in f.top(5)] == ["news", "chat"]
    assert [room for room, _ in f.top(1)] == ["news"]


def test_distinct_publishers_are_counted_up_to_a_hundred_and_64_rooms_kept_by_default() -> None:
    f = FlowSketch()
    for i in range(150):
        f.published("busy", 1, f"u{i}")
    assert len(f.rooms["busy"].publishers) == MAX_PUBLISHERS == 100  # as documented
    assert f.rooms["busy"].msgs_in == 150
    assert f.capacity == 64


def test_past_twice_its_capacity_the_busiest_rooms_stay_and_the_rest_are_forgotten() -> None:
    f = FlowSketch(capacity=4)
    for i in range(4):
        for _ in range(100 + i):
            f.published(f"busy{i}", 1, "u")
    for i in range(4):
        f.published(f"quiet{i}", 1, "u")
    assert len(f.rooms) == 8 and f.forgotten == 0
    f.fanned_out("newcomer", 1, 1)  # the ninth room: shrink to the 4 busiest first
    assert set(f.rooms) == {"busy0", "busy1", "busy2", "busy3", "newcomer"}
    assert f.forgotten == 4
    for i in range(1000):  # a churn of one-message rooms never grows it past 2 x capacity
        f.published(f"once{i}", 1, "u")
        assert len(f.rooms) <= 8
    assert {"busy0", "busy1", "busy2", "busy3"} <= set(f.rooms)


def test_a_capacity_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        FlowSketch(capacity=0)
    assert FlowSketch(capacity=1).capacity == 1
