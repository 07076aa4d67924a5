"""Room history: offsets, epochs, size and TTL bounds, resume answers."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from wsops.server.history import RoomHistory
from wsops.server.protocol import Position


def _enc(offset: int, epoch: str) -> bytes:
    return f"{epoch}:{offset}".encode()


def test_offsets_grow_from_one_and_payload_is_built_once() -> None:
    h = RoomHistory(10, 60.0, epoch="e")
    calls = []

    def enc(offset: int, epoch: str) -> bytes:
        calls.append(offset)
        return _enc(offset, epoch)

    entries = [h.append(i, 0, 0.0, enc) for i in range(3)]
    assert [e.offset for e in entries] == [1, 2, 3]
    assert calls == [1, 2, 3]
    assert h.position == Position(3, "e")


def test_since_returns_exactly_the_missing_messages() -> None:
    h = RoomHistory(10, 60.0, epoch="e")
    for i in range(5):
        h.append(i, 0, 0.0, _enc)
    got = h.since(Position(2, "e"), 0.0)
    assert got is not None and [e.offset for e in got] == [3, 4, 5]
    assert h.since(Position(5, "e"), 0.0) == []
    assert h.since(Position(0, "e"), 0.0) is not None


def test_since_refuses_gaps_other_epochs_and_future_offsets() -> None:
    h = RoomHistory(3, 60.0, epoch="e")
    for i in range(6):
        h.append(i, 0, 0.0, _enc)
    assert h.since(Position(2, "e"), 0.0) is None  # offsets 3 was evicted by size
    assert [e.offset for e in h.since(Position(3, "e"), 0.0) or []] == [4, 5, 6]
    assert h.since(Position(4, "other"), 0.0) is None
    assert h.since(Position(7, "e"), 0.0) is None


def test_ttl_prunes_old_entries() -> None:
    h = RoomHistory(10, 5.0, epoch="e")
    h.append("old", 0, 0.0, _enc)
    h.append("new", 0, 4.0, _enc)
    assert [e.data for e in h.latest(10, 6.0)] == ["new"]
    assert h.since(Position(0, "e"), 6.0) is None
    assert not h.expired(6.0)
    assert h.expired(10.0)


def test_latest_is_oldest_first_and_bounded() -> None:
    h = RoomHistory(100, 60.0)
    for i in range(10):
        h.append(i, 0, 0.0, _enc)
    assert [e.data for e in h.latest(3, 0.0)] == [7, 8, 9]


@given(st.integers(0, 20), st.integers(0, 40), st.integers(0, 45))
def test_since_is_complete_or_refused(size: int, published: int, since: int) -> None:
    h = RoomHistory(size, 60.0, epoch="e")
    for i in range(published):
        h.append(i, 0, 0.0, _enc)
    got = h.since(Position(since, "e"), 0.0)
    if got is not None:
        assert [e.offset for e in got] == list(range(since + 1, published + 1))
    else:
        assert since > published or published - since > size
