"""Per-room sequencing: exactly once, in order, and every loss reported as a Gap."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from wsops.client.events import Gap, Message
from wsops.client.tracker import RoomTracker, TrackerEvent


def msg(offset: int, epoch: str = "e1", room: str = "r") -> Message:
    return Message(room, offset, epoch, {"n": offset}, 0)


def offsets(events: list[TrackerEvent]) -> list[int]:
    return [e.offset for e in events if isinstance(e, Message)]


def subscribed(offset: int = 0, epoch: str = "e1") -> RoomTracker:
    t = RoomTracker("r")
    assert t.on_reply(offset, epoch, None) == []
    return t


def test_first_reply_positions_the_room() -> None:
    t = RoomTracker("r")
    assert t.since() is None and not t.positioned
    t.on_reply(7, "e1", None)
    assert t.since() == (7, "e1")


def test_messages_after_the_position_are_delivered_in_order() -> None:
    t = subscribed(0)
    out = [e for n in (1, 2, 3) for e in t.on_message(msg(n))]
    assert offsets(out) == [1, 2, 3]
    assert t.since() == (3, "e1")


def test_duplicates_and_replays_at_or_below_the_position_are_dropped() -> None:
    t = subscribed(5)
    assert t.on_message(msg(5)) == []
    assert t.on_message(msg(3)) == []
    assert offsets(t.on_message(msg(6))) == [6]
    assert t.on_message(msg(6)) == []


def test_messages_before_the_reply_are_held_then_filtered() -> None:
    t = RoomTracker("r")
    assert t.on_message(msg(4)) == []
    assert t.on_message(msg(5)) == []
    assert offsets(t.on_reply(4, "e1", None)) == [5]


def test_recovered_resume_continues_without_a_gap() -> None:
    t = subscribed(0)
    t.on_message(msg(1))
    t.disconnected()
    assert t.on_message(msg(2)) == []  # held until the reply
    events = t.on_reply(9, "e1", True)
    assert offsets(events) == [2]
    assert not any(isinstance(e, Gap) for e in events)
    assert offsets(t.on_message(msg(2)) + t.on_message(msg(3))) == [3]


def test_unrecovered_resume_emits_a_gap_then_continues_from_the_new_position() -> None:
    t = subscribed(0)
    t.on_message(msg(1))
    t.disconnected()
    events = t.on_reply(3, "e2", False)
    assert events == [Gap("r", 1, "e1", 3, "e2")]
    assert t.since() == (3, "e2")
    assert t.on_message(msg(3, "e2")) == []
    assert offsets(t.on_message(msg(4, "e2"))) == [4]


def test_unrecovered_resume_in_the_same_epoch_is_still_a_gap() -> None:
    t = subscribed(10)
    t.disconnected()
    assert t.on_reply(2000, "e1", False) == [Gap("r", 10, "e1", 2000, "e1")]


def test_late_messages_of_a_retired_epoch_are_dropped() -> None:
    t = subscribed(4)
    t.disconnected()
    t.on_reply(0, "e2", False)
    assert t.on_message(msg(5, "e1")) == []
    assert offsets(t.on_message(msg(1, "e2"))) == [1]


def test_a_jump_within_an_epoch_is_reported_before_the_message() -> None:
    t = subscribed(2)
    events = t.on_message(msg(5))
    assert events == [Gap("r", 2, "e1", 4, "e1"), msg(5)]


def test_a_new_epoch_from_offset_one_continues_without_a_gap() -> None:
    t = subscribed(7)
    assert t.on_message(msg(1, "e2")) == [msg(1, "e2")]
    assert t.since() == (1, "e2")


def test_a_new_epoch_starting_later_is_a_gap() -> None:
    t = subscribed(7)
    assert t.on_message(msg(4, "e2")) == [Gap("r", 7, "e1", 3, "e2"), msg(4, "e2")]


def test_a_fresh_reply_that_does_not_match_the_position_is_a_gap() -> None:
    t = subscribed(3)
    t.disconnected()
    assert t.on_reply(8, "e1", None) == [Gap("r", 3, "e1", 8, "e1")]


def test_returning_to_a_retired_epoch_does_not_drop_its_messages() -> None:
    t = subscribed(3)
    t.disconnected()
    t.on_reply(0, "e2", False)
    t.disconnected()
    t.on_reply(3, "e1", False)
    assert offsets(t.on_message(msg(4))) == [4]


# -- property: a resuming client over a lossy, repetitive transport ------------------------------


@dataclass
class Step:
    """One thing the transport does next."""

    kind: str  # "next", "dup", "stale", "reconnect", "lost_reconnect"
    pick: int


steps = st.lists(
    st.builds(
        Step,
        st.sampled_from(["next", "next", "next", "dup", "stale", "reconnect", "lost_reconnect"]),
        st.integers(0, 10_000),
    ),
    max_size=120,
)


@settings(max_examples=300, deadline=None)
@given(start=st.integers(0, 50), script=steps)
def test_any_interleaving_delivers_each_offset_once_in_order(
    start: int, script: list[Step]
) -> None:
    """The server's room holds offsets start+1, start+2, ...; the transport interleaves fresh
    messages with duplicates, stale replays, reconnects that recover (replay from ``since``) and
    reconnects that do not (the server skips ahead). Whatever the order, the app sees strictly
    increasing offsets, each at most once, and every offset is either delivered or inside a Gap.
    """
    t = RoomTracker("r")
    sent: list[int] = []  # offsets the transport has already carried, for duplicates
    nxt = start + 1  # next fresh offset the server will send on this connection
    delivered: list[TrackerEvent] = list(t.on_reply(start, "e1", None))
    gaps_allowed = 0
    for step in script:
        if step.kind == "next":
            delivered += t.on_message(msg(nxt))
            sent.append(nxt)
            nxt += 1
        elif step.kind == "dup" and sent:
            delivered += t.on_message(msg(sent[step.pick % len(sent)]))
        elif step.kind == "stale":
            delivered += t.on_message(msg(step.pick % (start + 1) if start else 0))
        elif step.kind == "reconnect":
            # The connection drops with some published messages still in transit (lost); the
            # resubscribe recovers and the server replays everything after ``since``.
            top = nxt - 1 + step.pick % 4
            t.disconnected()
            pos = t.since()
            assert pos is not None
            if sent:  # a stale frame racing the reply: held, then filtered
                delivered += t.on_message(msg(sent[step.pick % len(sent)]))
            delivered += t.on_reply(top, "e1", True)
            nxt = pos[0] + 1
        else:  # lost_reconnect: history no longer covers since; the server jumps ahead
            t.disconnected()
            top = nxt - 1 + step.pick % 5
            delivered += t.on_reply(top, "e1", False)
            gaps_allowed += 1
            nxt = top + 1
    seen = offsets(delivered)
    assert seen == sorted(set(seen)), "duplicates or disorder"
    covered: list[int] = []
    for event in delivered:
        if isinstance(event, Gap):
            covered.extend(range(event.last_offset + 1, event.new_offset + 1))
        else:
            covered.append(event.offset)
    last = t.since()
    assert last is not None
    assert covered == list(range(start + 1, last[0] + 1)), "an offset was lost without a Gap"
    assert sum(isinstance(e, Gap) for e in delivered) <= gaps_allowed, "a Gap for a recovery"


def test_positioned_is_true_once_a_reply_came() -> None:
    t = RoomTracker("r")
    assert t.positioned is False
    t.on_reply(0, "e1", None)
    assert t.positioned is True


def test_messages_held_on_a_connection_that_ended_are_dropped() -> None:
    t = RoomTracker("r")
    assert t.on_message(msg(11)) == [] and t.on_message(msg(12)) == []
    t.disconnected()  # that connection never got its reply: the next one replays for itself
    assert t.on_reply(10, "e1", None) == []
    assert offsets(t.on_message(msg(11))) == [11]


def test_a_new_epoch_from_offset_one_goes_on_in_that_epoch() -> None:
    t = subscribed(3)
    out = t.on_message(msg(1, "e2")) + t.on_message(msg(2, "e2")) + t.on_message(msg(3, "e2"))
    assert out == [msg(1, "e2"), msg(2, "e2"), msg(3, "e2")]
    assert t.since() == (3, "e2")
    assert t.on_message(msg(4, "e1")) == []  # the epoch it left


def test_a_resubscribe_without_recovery_at_the_same_position_is_no_gap() -> None:
    t = subscribed(5)
    t.disconnected()
    assert t.on_reply(5, "e1", None) == []
    assert offsets(t.on_message(msg(6))) == [6]


def test_going_back_to_a_left_epoch_delivers_it_again() -> None:
    t = subscribed(2, "e1")
    t.disconnected()
    assert t.on_reply(4, "e2", False) == [Gap("r", 2, "e1", 4, "e2")]
    t.disconnected()
    assert t.on_reply(7, "e1", False) == [Gap("r", 4, "e2", 7, "e1")]
    assert offsets(t.on_message(msg(8, "e1"))) == [8]
    assert t.on_message(msg(5, "e2")) == []  # now e2 is the one left


def test_sixteen_left_epochs_are_remembered_the_seventeenth_is_not() -> None:
    t = subscribed(1, "e0")
    for n in range(1, 17):  # e0..e15 left: 16 epochs
        t.disconnected()
        t.on_reply(1, f"e{n}", False)
    assert t.on_message(msg(2, "e0")) == []  # still known as left
    t.disconnected()
    t.on_reply(1, "e17", False)  # e16 left too: e0 is forgotten
    assert offsets(t.on_message(msg(2, "e0"))) == [2]  # taken for a new epoch (after a Gap)


def test_after_a_gap_the_position_is_the_message_that_revealed_it() -> None:
    t = subscribed(3)
    assert t.on_message(msg(6)) == [Gap("r", 3, "e1", 5, "e1"), msg(6)]
    assert t.since() == (6, "e1")
    assert t.on_message(msg(7)) == [msg(7)]
