"""Room history: offsets, epochs, count/byte/TTL bounds per room and node-wide, resume answers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsops.server.core.history import (
    COMPACT_AFTER,
    ENTRY_OVERHEAD,
    ROOM_OVERHEAD,
    HistoryStore,
    new_epoch,
)
from wsops.server.core.protocol import Position


def _enc(offset: int, epoch: str) -> bytes:
    return f"{epoch}:{offset}".encode()


def _sized(n: int):  # type: ignore[no-untyped-def]
    """A builder of frames of exactly ``n`` bytes."""
    return lambda offset, epoch: b"x" * n


def _offsets(store: HistoryStore, room: str) -> list[int]:
    hist = store.get(room)
    return [] if hist is None else [e.offset for e in hist.entries]


def test_offsets_grow_from_one_and_the_frame_is_built_once() -> None:
    s = HistoryStore(10, 60.0)
    calls = []

    def build(offset: int, epoch: str) -> bytes:
        calls.append((offset, epoch))
        return _enc(offset, epoch)

    got = [s.append("r", 0.0, build) for _ in range(3)]
    epoch = got[0][0].epoch
    assert [offset for _, offset, _ in got] == [1, 2, 3]
    assert calls == [(1, epoch), (2, epoch), (3, epoch)]
    assert got[2][2] == f"{epoch}:3".encode()
    assert got[0][0].position == Position(3, epoch)


def test_a_frame_that_cannot_be_built_takes_no_offset() -> None:
    s = HistoryStore(10, 60.0)
    s.append("r", 0.0, _enc)

    def fail(offset: int, epoch: str) -> bytes:
        raise RecursionError

    with pytest.raises(RecursionError):
        s.append("r", 0.0, fail)
    assert s.append("r", 0.0, _enc)[1] == 2


def test_since_returns_exactly_the_missing_messages() -> None:
    s = HistoryStore(10, 60.0)
    for _ in range(5):
        hist, _, _ = s.append("r", 0.0, _enc)
    e = hist.epoch
    got = hist.since(Position(2, e))
    assert got is not None and [x.offset for x in got] == [3, 4, 5]
    assert hist.since(Position(5, e)) == []
    assert [x.offset for x in hist.since(Position(0, e)) or []] == [1, 2, 3, 4, 5]


def test_since_refuses_gaps_other_epochs_and_future_offsets() -> None:
    s = HistoryStore(3, 60.0)
    for _ in range(6):
        hist, _, _ = s.append("r", 0.0, _enc)
    e = hist.epoch
    assert hist.since(Position(2, e)) is None  # offset 3 was dropped by the count bound
    assert [x.offset for x in hist.since(Position(3, e)) or []] == [4, 5, 6]
    assert hist.since(Position(4, "other")) is None
    assert hist.since(Position(7, e)) is None


def test_ttl_drops_entries_even_while_the_room_is_watched() -> None:
    s = HistoryStore(10, 5.0)
    s.watch("r", 0.0)
    s.append("r", 0.0, _enc)
    s.append("r", 4.0, _enc)
    s.prune(5.0)  # exactly the TTL old: kept
    assert _offsets(s, "r") == [1, 2]
    s.prune(6.0)
    assert _offsets(s, "r") == [2]
    s.prune(9.5)
    assert _offsets(s, "r") == []
    hist = s.get("r")
    assert hist is not None and hist.position.offset == 2  # watched: kept, same epoch
    assert s.bytes == 0 and s.entries == 0


def test_an_idle_room_is_forgotten_a_ttl_after_it_became_idle() -> None:
    s = HistoryStore(10, 5.0)
    hist, _, _ = s.append("r", 0.0, _enc)
    s.prune(4.0)
    assert s.get("r") is hist
    s.prune(5.5)  # its entry expired: now idle since 0.0 (the entry's time)
    assert s.get("r") is None
    assert s.bytes == 0
    again, offset, _ = s.append("r", 6.0, _enc)
    assert offset == 1 and again.epoch != hist.epoch  # a resume learns recovered: false


def test_unwatched_empty_rooms_are_idle_and_cost_their_overhead() -> None:
    s = HistoryStore(0, 60.0)  # nothing retained
    s.watch("w", 0.0)
    assert s.bytes == 0  # watched rooms are counted with their connections
    s.append("a", 0.0, _enc)
    assert s.bytes == ROOM_OVERHEAD and s.entries == 0
    s.unwatch("w", 1.0)
    assert s.bytes == 2 * ROOM_OVERHEAD


def test_latest_is_oldest_first_bounded_by_count_and_budget() -> None:
    s = HistoryStore(100, 60.0)
    for i in range(10):
        hist, _, _ = s.append("r", 0.0, _sized(10 + i))
    entries, truncated = hist.latest(3, 10_000, lambda e: len(e.frame))
    assert [e.offset for e in entries] == [8, 9, 10] and not truncated
    entries, truncated = hist.latest(10, 19 + 18, lambda e: len(e.frame))
    assert [e.offset for e in entries] == [9, 10] and truncated
    entries, truncated = hist.latest(10, 19 + 18 - 1, lambda e: len(e.frame))
    assert [e.offset for e in entries] == [10] and truncated
    entries, truncated = hist.latest(10, 10_000, lambda e: len(e.frame))
    assert len(entries) == 10 and not truncated


def test_room_byte_bound_drops_the_oldest() -> None:
    size = 100 + ENTRY_OVERHEAD
    s = HistoryStore(1000, 60.0, room_bytes=3 * size)
    for _ in range(5):
        s.append("r", 0.0, _sized(100))
    assert _offsets(s, "r") == [3, 4, 5]
    hist = s.get("r")
    assert hist is not None and hist.bytes == 3 * size == s.bytes
    s.append("r", 0.0, _sized(3 * size))  # bigger than the room bound: not retained at all
    assert _offsets(s, "r") == [3, 4, 5] and hist.top == 6


def test_node_budget_evicts_the_oldest_entries_of_any_room() -> None:
    size = 1000 + ENTRY_OVERHEAD
    s = HistoryStore(1000, 60.0, room_bytes=1 << 20, max_bytes=4 * size)
    s.watch("quiet", 0.0)
    s.watch("busy", 0.0)
    s.append("quiet", 0.0, _sized(1000))
    for _ in range(3):
        s.append("busy", 1.0, _sized(1000))
    assert s.bytes == 4 * size and s.evicted == 0
    s.append("busy", 2.0, _sized(1000))
    assert _offsets(s, "quiet") == [] and _offsets(s, "busy") == [1, 2, 3, 4]
    assert s.evicted == 1 and s.bytes == 4 * size
    for _ in range(100):
        s.append("busy", 3.0, _sized(1000))
    assert _offsets(s, "busy") == [101, 102, 103, 104] and s.bytes <= s.max_bytes


def test_node_budget_forgets_idle_rooms_before_any_message() -> None:
    size = 1000 + ENTRY_OVERHEAD
    s = HistoryStore(1000, 60.0, max_bytes=2 * size + ROOM_OVERHEAD)
    s.watch("live", 0.0)
    s.append("live", 0.0, _sized(1000))
    s.watch("gone", 0.0)
    s.unwatch("gone", 0.0)  # idle now
    s.append("live", 1.0, _sized(1000))
    assert s.get("gone") is not None
    s.watch("gone2", 0.0)
    s.unwatch("gone2", 0.0)  # a second idle room passes the budget: the oldest idle goes
    assert s.get("gone") is None and s.get("gone2") is not None
    assert _offsets(s, "live") == [1, 2]


def test_entries_dropped_by_their_room_are_compacted_past_the_threshold() -> None:
    assert COMPACT_AFTER == 1024
    s = HistoryStore(1, 600.0, max_bytes=1 << 30)
    s.append("pin", 0.0, _enc)  # the oldest entry stays: dead ones pile up behind it
    for i in range(1 + COMPACT_AFTER):  # each append drops the previous entry: one dead more
        s.append("r", i / 1000, _enc)
    assert (s.entries, len(s._order)) == (2, 2 + COMPACT_AFTER)  # at the threshold: kept
    s.append("r", 2.0, _enc)
    assert (s.entries, len(s._order)) == (2, 2)  # past it: compacted
    assert _offsets(s, "r") == [COMPACT_AFTER + 2] and _offsets(s, "pin") == [1]


def test_compaction_waits_until_dead_entries_outnumber_the_live_ones() -> None:
    big = 600_000
    s = HistoryStore(10**6, 600.0, room_bytes=big + ENTRY_OVERHEAD, max_bytes=1 << 40)
    live = 2000
    for _ in range(live):  # first: the order's head stays live
        s.append("many", 0.0, _sized(0))
    for _ in range(live + 1):  # "one" keeps one entry: each append drops one
        s.append("one", 0.0, _sized(big))
    assert s.entries == live + 1 and len(s._order) == 2 * live + 1  # live+1 live, live dead
    s.append("one", 0.0, _sized(big))  # live+1 dead, as many as the live: not more yet
    assert len(s._order) == 2 * live + 2
    s.append("one", 0.0, _sized(big))  # live+2 dead: compacted
    assert len(s._order) == live + 1 and s.entries == live + 1


def test_a_dropped_entry_releases_its_frame_at_once() -> None:
    s = HistoryStore(1, 600.0)
    s.append("r", 0.0, _sized(1000))
    hist = s.get("r")
    assert hist is not None
    first = hist.entries[0]
    s.append("r", 0.0, _sized(10))
    assert first.frame == b"" and first.size == 0  # still in the order, costing no frame


def test_costs_are_the_documented_figures() -> None:
    assert (ENTRY_OVERHEAD, ROOM_OVERHEAD) == (200, 1100)
    s = HistoryStore(10, 60.0)
    s.watch("r", 0.0)
    s.append("r", 0.0, _sized(100))
    assert s.bytes == 300
    s.room("idle", 0.0)  # a room nobody watches, holding nothing
    assert s.bytes == 300 + 1100


def test_defaults_and_bounds_of_the_store() -> None:
    s = HistoryStore()
    assert (s.max_entries, s.ttl, s.room_bytes, s.max_bytes) == (1000, 300.0, 8 << 20, 256 << 20)
    HistoryStore(0, 0.001, 0, 0)  # zero bounds are allowed (nothing retained)
    for bad in ({"max_entries": -1}, {"ttl": 0.0}, {"ttl": -1.0}, {"room_bytes": -1},
                {"max_bytes": -1}):
        with pytest.raises(ValueError, match=r"^history bounds must be >= 0 and the ttl > 0$"):
            HistoryStore(**bad)


def test_epochs_are_8_hex_characters_and_differ() -> None:
    epochs = {new_epoch() for _ in range(50)}
    assert len(epochs) == 50
    assert all(len(e) == 8 and int(e, 16) >= 0 for e in epochs)


def test_an_entry_exactly_the_room_bound_is_retained() -> None:
    s = HistoryStore(10, 60.0, room_bytes=100 + ENTRY_OVERHEAD)
    s.append("r", 0.0, _sized(100))
    assert _offsets(s, "r") == [1]
    s.append("r", 0.0, _sized(101))
    assert _offsets(s, "r") == [1]  # one byte more: not retained, but offset 2 was given
    assert s.get("r").top == 2  # type: ignore[union-attr]


def test_an_idle_room_is_kept_exactly_the_ttl_after_it_became_idle() -> None:
    s = HistoryStore(10, 5.0)
    s.watch("r", 0.0)
    s.append("r", 0.0, _enc)
    s.unwatch("r", 3.0)  # still holds its entry: not idle yet
    s.prune(5.0)
    s.prune(5.5)  # the entry expired at 5.0+: the room is idle since then (its entry's time 0.0)
    assert s.get("r") is None
    s.watch("q", 10.0)
    s.unwatch("q", 10.0)  # idle from 10.0 on
    s.prune(15.0)
    assert s.get("q") is not None
    s.prune(15.01)
    assert s.get("q") is None


def test_a_new_room_is_idle_until_watched_or_written() -> None:
    s = HistoryStore(10, 5.0)
    s.room("x", 0.0)
    assert s.bytes == ROOM_OVERHEAD
    s.prune(5.01)
    assert s.get("x") is None and s.bytes == 0


def test_append_drops_what_expired_in_other_rooms() -> None:
    s = HistoryStore(10, 5.0)
    s.watch("old", 0.0)
    s.append("old", 0.0, _enc)
    s.append("new", 6.0, _enc)  # no explicit prune
    assert _offsets(s, "old") == [] and _offsets(s, "new") == [1]


def test_only_retained_entries_count_as_evicted_by_the_budget() -> None:
    size = 1000 + ENTRY_OVERHEAD
    s = HistoryStore(1, 600.0, max_bytes=2 * size)
    s.watch("a", 0.0)
    s.watch("b", 0.0)
    for _ in range(3):
        s.append("a", 0.0, _sized(1000))  # room bound: 2 dead entries at the order's head
    s.append("b", 0.0, _sized(1000))
    assert s.evicted == 0
    s.append("b", 0.0, _sized(10))  # b keeps one: its first is dead too; budget holds
    s.watch("c", 0.0)
    s.append("c", 0.0, _sized(1000))  # over the budget: the dead go without counting, then a
    assert s.evicted == 1 and _offsets(s, "a") == []


def test_latest_takes_at_most_what_there_is() -> None:
    s = HistoryStore(100, 60.0)
    for _ in range(3):
        hist, _, _ = s.append("r", 0.0, _enc)
    entries, truncated = hist.latest(10, 10**9, lambda e: len(e.frame))
    assert [e.offset for e in entries] == [1, 2, 3] and not truncated
    assert hist.latest(0, 10**9, lambda e: 1) == ([], False)


@given(st.integers(0, 20), st.integers(0, 40), st.integers(0, 45))
def test_since_is_complete_or_refused(size: int, published: int, since: int) -> None:
    s = HistoryStore(size, 60.0)
    hist = s.watch("r", 0.0)
    for _ in range(published):
        s.append("r", 0.0, _enc)
    got = hist.since(Position(since, hist.epoch))
    if got is not None:
        assert [e.offset for e in got] == list(range(since + 1, published + 1))
    else:
        assert since > published or published - since > size


@given(st.lists(st.tuples(st.sampled_from("abcd"), st.integers(0, 3000), st.booleans()),
                max_size=200),
       st.integers(0, 20_000))
def test_bytes_are_accounted_and_bounded(
    ops: list[tuple[str, int, bool]], max_bytes: int
) -> None:
    s = HistoryStore(5, 1000.0, room_bytes=8000, max_bytes=max_bytes)
    now = 0.0
    for room, n, watch in ops:
        now += 0.5
        if watch:
            s.watch(room, now)
        else:
            s.unwatch(room, now)
        s.append(room, now, _sized(n))
        entries = sum(h.bytes for h in s.rooms.values())
        idle = sum(ROOM_OVERHEAD for h in s.rooms.values() if not h.watched and not h.entries)
        assert s.bytes == entries + idle
        assert s.bytes <= max(max_bytes, 0) or s.entries == 0
        assert s.entries == sum(len(h.entries) for h in s.rooms.values())
        for h in s.rooms.values():
            assert len(h.entries) <= 5 and h.bytes <= 8000


def test_budget_eviction_passes_dead_entries_without_counting_them() -> None:
    size = 1000 + ENTRY_OVERHEAD
    s = HistoryStore(1, 600.0, max_bytes=2 * size)
    for room in ("p", "a", "c"):
        s.watch(room, 0.0)
    s.append("p", 0.0, _sized(1000))  # the order's live head
    for _ in range(3):
        s.append("a", 0.0, _sized(1000))  # a1, a2 dead behind p1; a3 live
    assert (s.entries, len(s._order), s.evicted) == (2, 4, 0)
    s.append("c", 0.0, _sized(2000))  # p1 (live), a1, a2 (dead), a3 (live) must go
    assert s.evicted == 2
    assert (_offsets(s, "p"), _offsets(s, "a"), _offsets(s, "c")) == ([], [], [1])
    assert (s.entries, len(s._order)) == (1, 1)


def test_dead_entries_at_the_head_leave_the_count_too() -> None:
    s = HistoryStore(1, 600.0)
    for _ in range(3):
        s.append("r", 0.0, _enc)
    assert (s.entries, len(s._order)) == (1, 1)
