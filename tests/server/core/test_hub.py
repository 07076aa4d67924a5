"""The hub without sockets or an event loop: fan-out, coalesced writes, resume holds,
slow consumers (and the exact send-queue bounds), resyncs, presence events, the counters the
metrics layer reads, and the observer's calls."""

from __future__ import annotations

import asyncio
import dataclasses

from tests.server.core.fakes import Closes, Sink, Ticks, connect
from wsops.server.core.broker import Published
from wsops.server.core.hub import Conn, Hub, HubStats
from wsops.server.core.protocol import Close, message_payload, text_frame


def msg(room: str, offset: int, epoch: str = "e1", data: bytes = b'"x"',
        accepted_at: float = 0.0, traceparent: str | None = None) -> Published:
    frame = text_frame(message_payload(room, offset, epoch, data, 0))
    return Published(room, offset, epoch, frame, traceparent, accepted_at)


def live(hub: Hub, conn: Conn, room: str, offset: int = 0, epoch: str = "e1") -> None:
    """``conn`` joins ``room`` and its (empty) replay is done: it gets what comes next."""
    hub.join_room(conn, room)
    hub.finish_sync(conn, room, offset, epoch)


def test_a_publish_reaches_every_subscriber_once_and_a_tick_is_one_write_each() -> None:
    ticks, closes = Ticks(), Closes()
    hub = Hub(schedule=ticks)
    (a, sink_a), (b, sink_b), (c, sink_c) = (connect(hub, closes) for _ in range(3))
    live(hub, a, "r")
    live(hub, b, "r")
    live(hub, c, "other")
    for offset in (1, 2, 3):
        hub.on_message(msg("r", offset))
    assert sink_a.frames == [] and ticks.pending  # nothing written before the tick ends
    ticks.run()
    assert [m["offset"] for m in sink_a.messages()] == [1, 2, 3]
    assert [m["offset"] for m in sink_b.messages()] == [1, 2, 3]
    assert sink_a.writes == 1 and sink_b.writes == 1  # three frames, one system call
    assert sink_c.frames == []
    assert hub.stats.published == 3 and hub.stats.deliveries == 6
    assert hub.stats.writes == 2 and hub.stats.frames == 6 and hub.stats.flushes == 1


def test_a_message_for_a_room_nobody_here_is_in_is_not_counted() -> None:
    ticks, closes = Ticks(), Closes()
    hub = Hub(schedule=ticks)
    connect(hub, closes)
    hub.on_message(msg("nobody", 1))
    assert hub.stats.published == 0 and not ticks.pending


def test_a_resuming_subscriber_gets_what_arrived_during_its_replay_after_it_without_repeats(
) -> None:
    ticks, closes = Ticks(), Closes()
    hub = Hub(schedule=ticks)
    conn, sink = connect(hub, closes)
    assert hub.join_room(conn, "r") is True
    hub.on_message(msg("r", 5))  # also in the replay the broker sends
    hub.on_message(msg("r", 6))  # published after the replay was read
    ticks.run()
    assert sink.frames == []  # held until the replay is sent
    assert conn.held_bytes == sum(len(msg("r", o).frame) for o in (5, 6))
    hub.finish_sync(conn, "r", 5, "e1")
    ticks.run()
    assert [m["offset"] for m in sink.messages()] == [6]
    assert conn.held_bytes == 0
    hub.on_message(msg("r", 7))
    ticks.run()
    assert [m["offset"] for m in sink.take()] == [6, 7]


def test_a_held_message_of_a_new_epoch_is_delivered_whatever_its_offset() -> None:
    ticks, closes = Ticks(), Closes()
    hub = Hub(schedule=ticks)
    conn, sink = connect(hub, closes)
    hub.join_room(conn, "r")
    hub.on_message(msg("r", 1, epoch="e2"))
    hub.finish_sync(conn, "r", 9, "e1")
    ticks.run()
    assert [(m["offset"], m["epoch"]) for m in sink.messages()] == [(1, "e2")]


def test_a_subscriber_past_its_send_queue_is_closed_4000_and_the_others_still_get_theirs(
) -> None:
    ticks, closes = Ticks(), Closes()
    hub = Hub(schedule=ticks)
    frame_len = len(msg("r", 1).frame)
    slow, slow_sink = connect(hub, closes, limit=2 * frame_len)
    fast, fast_sink = connect(hub, closes)
    live(hub, slow, "r")
    live(hub, fast, "r")
    for offset in (1, 2, 3):
        hub.on_message(msg("r", offset))
    assert closes.calls == [(slow.id, Close.SLOW_CONSUMER, "slow consumer")]
    assert slow.closing and hub.stats.slow_consumers == 1
    assert slow.queued_bytes == 0  # its queue is dropped...
    ticks.run()
    assert slow_sink.frames == []  # ...not written
    assert [m["offset"] for m in fast_sink.messages()] == [1, 2, 3]


def test_bytes_the_kernel_will_not_take_count_as_a_slow_consumer() -> None:
    ticks, closes = Ticks(), Closes()
    hub = Hub(schedule=ticks)
    conn, _ = connect(hub, closes, limit=100, sink=Sink(buffered=101))
    live(hub, conn, "r")
    hub.on_message(msg("r", 1))
    ticks.run()
    assert closes.codes() == [Close.SLOW_CONSUMER]


def test_a_resume_that_falls_behind_its_room_is_a_slow_consumer() -> None:
    ticks, closes = Ticks(), Closes()
    hub = Hub(schedule=ticks)
    frame_len = len(msg("r", 1).frame)
    conn, _ = connect(hub, closes, limit=3 * frame_len)
    hub.join_room(conn, "r")
    for offset in range(1, 4):
        hub.on_message(msg("r", offset))
    assert closes.calls == []
    hub.on_message(msg("r", 4))
    assert closes.calls == [(conn.id, Close.SLOW_CONSUMER,
                             "slow consumer (resume behind its room)")]
    assert conn.held_bytes == 0  # released: a closing connection holds nothing


def test_a_close_while_a_request_is_served_waits_for_its_reply_but_a_slow_consumer_does_not(
) -> None:
    ticks, closes = Ticks(), Closes()
    hub = Hub(schedule=ticks)
    conn, sink = connect(hub, closes)
    conn.busy = True
    conn.close(Close.SERVICE_RESTART, "draining")
    assert closes.calls == [] and conn.deferred_close == (Close.SERVICE_RESTART, "draining")
    conn.send_text('{"op":"reply","id":1,"ok":true}')
    ticks.run()
    assert not conn.closing and [m["id"] for m in sink.messages()] == [1]
    conn.close(Close.SLOW_CONSUMER, "slow consumer")
    assert closes.codes() == [Close.SLOW_CONSUMER]


def test_a_close_flushes_what_is_queued_first_and_happens_once() -> None:
    ticks, closes = Ticks(), Closes()
    hub = Hub(schedule=ticks)
    conn, sink = connect(hub, closes)
    conn.send_text('{"op":"reply","id":1,"ok":true}')
    conn.close(Close.GOING_AWAY, "bye")
    conn.close(Close.POLICY, "again")
    assert [m["id"] for m in sink.messages()] == [1]
    assert closes.calls == [(conn.id, Close.GOING_AWAY, "bye")]
    conn.push(b"late")  # a closing connection queues nothing more
    ticks.run()
    assert len(sink.frames) == 1


def test_a_resync_closes_the_rooms_subscribers_4001_and_delivers_them_nothing_more() -> None:
    ticks, closes = Ticks(), Closes()
    hub = Hub(schedule=ticks)
    a, sink_a = connect(hub, closes)
    b, _ = connect(hub, closes)
    live(hub, a, "r")
    hub.join_room(b, "r")  # still syncing
    a.busy = True  # its close waits for the reply being served...
    hub.on_resync("r")
    hub.on_message(msg("r", 1))  # ...but it gets nothing more from the room meanwhile
    ticks.run()
    assert sink_a.frames == []
    assert closes.calls == [(b.id, Close.RESYNC, "resync: resume with since")]
    assert a.deferred_close == (Close.RESYNC, "resync: resume with since")
    assert hub.stats.resyncs == 1


def test_presence_events_go_to_the_members_who_asked_for_them_only() -> None:
    ticks, closes = Ticks(), Closes()
    hub = Hub(schedule=ticks)
    watcher, w_sink = connect(hub, closes)
    quiet, q_sink = connect(hub, closes)
    hub.join_room(watcher, "r", presence_events=True)
    hub.join_room(quiet, "r")
    hub.on_presence("r", "join", "alice")
    ticks.run()
    assert w_sink.messages() == [{"op": "join", "room": "r", "user": "alice"}]
    assert q_sink.frames == []


def test_the_last_local_subscriber_leaving_empties_the_room_and_says_so() -> None:
    closes = Closes()
    hub = Hub(schedule=Ticks())
    a, _ = connect(hub, closes)
    b, _ = connect(hub, closes)
    live(hub, a, "r")
    assert hub.join_room(b, "r") is False  # not new on this node
    assert hub.leave_room(a, "r") is False
    assert hub.remove(b) == ["r"]  # the syncing one was the last
    assert hub.rooms == {} and b.id not in hub.conns and b.closing


def test_room_sizes_lists_the_biggest_rooms_first_within_top() -> None:
    closes = Closes()
    hub = Hub(schedule=Ticks())
    for room, n in (("small", 1), ("big", 3), ("mid", 2)):
        for _ in range(n):
            conn, _ = connect(hub, closes)
            live(hub, conn, room)
    assert hub.room_sizes(2) == [("big", 3), ("mid", 2)]


class Recorder:
    def __init__(self, wants_flush: bool) -> None:
        self.wants_flush = wants_flush
        self.fanouts: list[tuple[int, int]] = []
        self.flushes = 0

    def fanout(self, msg: Published, subscribers: int) -> bool:
        self.fanouts.append((msg.offset, subscribers))
        return self.wants_flush

    def flushed(self) -> None:
        self.flushes += 1


def test_the_observer_hears_once_per_publish_with_the_subscriber_count_and_once_per_flush(
) -> None:
    ticks, closes = Ticks(), Closes()
    obs = Recorder(wants_flush=True)
    hub = Hub(schedule=ticks, observer=obs)
    for _ in range(3):
        conn, _ = connect(hub, closes)
        live(hub, conn, "r")
    hub.on_message(msg("r", 1, accepted_at=1.0))
    hub.on_message(msg("r", 2, accepted_at=1.0))
    assert obs.fanouts == [(1, 3), (2, 3)]
    assert ticks.run() == 1 and obs.flushes == 1


def test_an_observer_that_asks_for_a_flush_gets_one_even_with_nothing_to_write() -> None:
    ticks, closes = Ticks(), Closes()
    obs = Recorder(wants_flush=True)
    hub = Hub(schedule=ticks, observer=obs)
    conn, _ = connect(hub, closes)
    hub.join_room(conn, "r")  # syncing: nothing is written this tick
    hub.on_message(msg("r", 1, accepted_at=1.0))
    assert ticks.run() == 1 and obs.flushes == 1
    quiet = Recorder(wants_flush=False)
    hub2 = Hub(schedule=ticks, observer=quiet)
    conn2, _ = connect(hub2, closes)
    hub2.join_room(conn2, "r")
    hub2.on_message(msg("r", 1))
    assert ticks.run() == 0 and quiet.flushes == 0


# -- connections and counters ----------------------------------------------------------------


def test_a_new_hubs_counters_all_start_at_zero() -> None:
    assert dataclasses.asdict(HubStats()) == {
        "published": 0, "deliveries": 0, "frames": 0, "delivered_bytes": 0, "flushes": 0,
        "writes": 0, "slow_consumers": 0, "resyncs": 0, "replies": 0, "close_codes": {},
    }


def test_connection_ids_count_up_from_one_and_an_added_connection_is_known_by_its_id() -> None:
    closes = Closes()
    hub = Hub(schedule=Ticks())
    a, _ = connect(hub, closes, user="alice")
    b, _ = connect(hub, closes, user="bob")
    assert (a.id, b.id, hub.new_id()) == (1, 2, 3)
    assert hub.conns == {1: a, 2: b}
    assert (a.user, b.user) == ("alice", "bob")


def test_replies_are_counted_and_an_encoded_payload_is_sent_as_one_text_frame() -> None:
    ticks, closes = Ticks(), Closes()
    hub = Hub(schedule=ticks)
    conn, sink = connect(hub, closes)
    live(hub, conn, "r")
    conn.send_text('{"op":"reply","id":1,"ok":true}')
    conn.send_payload(b'{"op":"reply","id":2,"ok":true,"room":"caf\xc3\xa9"}')
    hub.on_message(msg("r", 1))  # a delivery, not a reply
    ticks.run()
    assert sink.messages()[:2] == [{"op": "reply", "id": 1, "ok": True},
                                   {"op": "reply", "id": 2, "ok": True, "room": "café"}]
    assert sink.frames[1] == text_frame(b'{"op":"reply","id":2,"ok":true,"room":"caf\xc3\xa9"}')
    assert hub.stats.replies == 2


def test_delivered_bytes_count_every_byte_handed_to_the_sockets() -> None:
    ticks, closes = Ticks(), Closes()
    hub = Hub(schedule=ticks)
    (a, sink_a), (b, sink_b) = connect(hub, closes), connect(hub, closes)
    live(hub, a, "r")
    live(hub, b, "r")
    hub.on_message(msg("r", 1))
    hub.on_message(msg("r", 2, data=b'"longer"'))
    ticks.run()
    a.send_text('{"op":"reply","id":1,"ok":true}')
    ticks.run()
    written = sum(len(f) for f in sink_a.frames + sink_b.frames)
    assert written == 2 * (len(msg("r", 1).frame) + len(msg("r", 2, data=b'"longer"').frame)) \
        + len(text_frame(b'{"op":"reply","id":1,"ok":true}'))
    assert hub.stats.delivered_bytes == written
    assert hub.stats.frames == 5 and hub.stats.writes == 3


def test_one_queued_frame_is_written_with_write_and_several_with_one_writelines() -> None:
    ticks, closes = Ticks(), Closes()
    hub = Hub(schedule=ticks)
    conn, sink = connect(hub, closes)
    live(hub, conn, "r")
    hub.on_message(msg("r", 1))
    ticks.run()
    assert sink.calls == ["write"] and [m["offset"] for m in sink.take()] == [1]
    hub.on_message(msg("r", 2))
    hub.on_message(msg("r", 3))
    ticks.run()
    assert sink.calls == ["write", "writelines"]
    assert [m["offset"] for m in sink.take()] == [2, 3]


async def test_the_default_schedule_writes_at_the_end_of_the_event_loop_tick() -> None:
    hub = Hub()
    conn, sink = connect(hub, Closes())
    conn.send_text('{"op":"reply","id":1,"ok":true}')
    conn.send_text('{"op":"reply","id":2,"ok":true}')
    assert sink.frames == []
    await asyncio.sleep(0)  # the loop runs the flush it was given with call_soon
    assert [m["id"] for m in sink.messages()] == [1, 2] and sink.writes == 1


# -- send queue limits -----------------------------------------------------------------------


def test_a_send_queue_of_exactly_its_limit_is_kept_and_one_byte_more_is_a_slow_consumer(
) -> None:
    ticks, closes = Ticks(), Closes()
    hub = Hub(schedule=ticks)
    frame_len = len(msg("r", 1).frame)
    exact, exact_sink = connect(hub, closes, limit=2 * frame_len)
    over, _ = connect(hub, closes, limit=2 * frame_len - 1)
    live(hub, exact, "r")
    live(hub, over, "r")
    hub.on_message(msg("r", 1))
    assert closes.calls == []
    hub.on_message(msg("r", 2))
    assert exact.queued_bytes == 2 * frame_len
    assert closes.calls == [(over.id, Close.SLOW_CONSUMER, "slow consumer")]
    ticks.run()
    assert [m["offset"] for m in exact_sink.messages()] == [1, 2]


def test_a_kernel_buffer_of_exactly_the_limit_is_kept_and_one_byte_more_is_a_slow_consumer(
) -> None:
    ticks, closes = Ticks(), Closes()
    hub = Hub(schedule=ticks)
    exact, _ = connect(hub, closes, limit=100, sink=Sink(buffered=100))
    over, _ = connect(hub, closes, limit=100, sink=Sink(buffered=101))
    live(hub, exact, "r")
    live(hub, over, "r")
    hub.on_message(msg("r", 1))
    ticks.run()
    assert closes.calls == [(over.id, Close.SLOW_CONSUMER, "slow consumer")]
    assert not exact.closing


def test_queued_bytes_are_the_unwritten_frames_plus_what_the_kernel_still_holds() -> None:
    ticks, closes = Ticks(), Closes()
    hub = Hub(schedule=ticks)
    conn, _ = connect(hub, closes, sink=Sink(buffered=50))
    assert conn.queued_bytes == 50
    live(hub, conn, "r")
    hub.on_message(msg("r", 1))
    hub.on_message(msg("r", 2))
    assert conn.queued_bytes == 50 + 2 * len(msg("r", 1).frame)
    ticks.run()
    assert conn.queued_bytes == 50  # written: only the kernel's part is left
    hub.on_message(msg("r", 3))
    assert conn.queued_bytes == 50 + len(msg("r", 3).frame)


def test_frames_queued_for_a_transport_already_closing_are_dropped_and_the_queue_starts_empty(
) -> None:
    ticks, closes = Ticks(), Closes()
    hub = Hub(schedule=ticks)
    conn, sink = connect(hub, closes)
    live(hub, conn, "r")
    sink.closed = True  # the peer went away; the hub has not been told yet
    hub.on_message(msg("r", 1))
    hub.on_message(msg("r", 2))
    ticks.run()
    assert sink.frames == [] and conn.queued_bytes == 0
    assert hub.stats.writes == 0 and hub.stats.frames == 0 and hub.stats.delivered_bytes == 0
    hub.on_message(msg("r", 3))  # an empty queue again: this frame asks for its own flush
    assert ticks.run() == 1 and hub.stats.flushes == 2
    assert sink.frames == [] and conn.queued_bytes == 0


def test_abort_drops_the_connection_at_once_without_a_close_frame_and_queues_nothing_more(
) -> None:
    ticks, closes = Ticks(), Closes()
    hub = Hub(schedule=ticks)
    conn, sink = connect(hub, closes)
    live(hub, conn, "r")
    conn.abort()
    assert sink.aborted and conn.closing and closes.calls == []
    hub.on_message(msg("r", 1))
    conn.send_text('{"op":"reply","id":1,"ok":true}')
    assert not ticks.pending and conn.queued_bytes == 0


# -- resumes ---------------------------------------------------------------------------------


def test_held_messages_and_queued_frames_together_count_against_the_send_queue() -> None:
    ticks, closes = Ticks(), Closes()
    hub = Hub(schedule=ticks)
    frame_len = len(msg("r", 1).frame)
    conn, _ = connect(hub, closes, limit=3 * frame_len)
    hub.join_room(conn, "r")
    conn.push(msg("r", 1).frame)  # the replay sent so far, not yet written
    conn.push(msg("r", 2).frame)
    hub.on_message(msg("r", 3))  # exactly the limit, held and queued together
    assert closes.calls == [] and conn.held_bytes == frame_len
    hub.on_message(msg("r", 4))
    assert closes.calls == [(conn.id, Close.SLOW_CONSUMER,
                             "slow consumer (resume behind its room)")]


def test_held_duplicates_are_delivered_once_and_a_new_epoch_goes_on_from_its_own_offsets(
) -> None:
    ticks, closes = Ticks(), Closes()
    hub = Hub(schedule=ticks)
    conn, sink = connect(hub, closes)
    hub.join_room(conn, "r")
    for offset, epoch in ((5, "e1"), (6, "e1"), (6, "e1"), (1, "e2"), (1, "e2"), (2, "e2")):
        hub.on_message(msg("r", offset, epoch))
    hub.finish_sync(conn, "r", 5, "e1")  # the replay ended at 5 of e1
    ticks.run()
    assert [(m["offset"], m["epoch"]) for m in sink.messages()] == [(6, "e1"), (1, "e2"),
                                                                    (2, "e2")]
    assert conn.held_bytes == 0


def test_leaving_a_room_while_resuming_releases_what_was_held_for_it() -> None:
    ticks, closes = Ticks(), Closes()
    hub = Hub(schedule=ticks)
    conn, sink = connect(hub, closes)
    other, _ = connect(hub, closes)
    live(hub, other, "r")
    hub.join_room(conn, "r")
    hub.on_message(msg("r", 1))
    hub.on_message(msg("r", 2))
    assert conn.held_bytes == 2 * len(msg("r", 1).frame)
    assert hub.leave_room(conn, "r") is False  # other is still there
    assert conn.held_bytes == 0 and conn.rooms == set()
    ticks.run()
    assert sink.frames == []


def test_a_slow_consumer_closed_while_resuming_holds_nothing_once_it_is_removed() -> None:
    ticks, closes = Ticks(), Closes()
    hub = Hub(schedule=ticks)
    frame_len = len(msg("r", 1).frame)
    conn, sink = connect(hub, closes, limit=3 * frame_len)
    hub.join_room(conn, "r")
    for offset in range(1, 5):
        hub.on_message(msg("r", offset))
    assert closes.codes() == [Close.SLOW_CONSUMER] and conn.held_bytes == 0
    assert hub.remove(conn) == ["r"]
    assert conn.held_bytes == 0
    ticks.run()
    assert sink.frames == []


def test_room_sizes_count_members_still_resuming() -> None:
    closes = Closes()
    hub = Hub(schedule=Ticks())
    conns = [connect(hub, closes)[0] for _ in range(3)]
    live(hub, conns[0], "r")
    hub.join_room(conns[1], "r")
    hub.join_room(conns[2], "r")
    assert hub.room_sizes(5) == [("r", 3)]


# -- leaving, presence and resyncs -----------------------------------------------------------


def test_a_member_who_left_gets_no_more_presence_events_and_is_no_longer_in_the_room() -> None:
    ticks, closes = Ticks(), Closes()
    hub = Hub(schedule=ticks)
    watcher, w_sink = connect(hub, closes)
    stays, s_sink = connect(hub, closes)
    hub.join_room(watcher, "r", presence_events=True)
    hub.join_room(stays, "r", presence_events=True)
    assert hub.leave_room(watcher, "r") is False
    assert watcher.rooms == set() and stays.rooms == {"r"}
    hub.on_presence("r", "leave", "alice")
    ticks.run()
    assert w_sink.frames == []
    assert s_sink.messages() == [{"op": "leave", "room": "r", "user": "alice"}]


def test_presence_in_a_room_without_local_members_is_ignored() -> None:
    ticks = Ticks()
    hub = Hub(schedule=ticks)
    hub.on_presence("nobody-here", "join", "alice")
    assert not ticks.pending


def test_leaving_a_room_this_node_does_not_have_does_not_report_it_emptied() -> None:
    closes = Closes()
    hub = Hub(schedule=Ticks())
    a, _ = connect(hub, closes)
    b, _ = connect(hub, closes)
    assert hub.leave_room(a, "never-joined") is False
    live(hub, a, "r")
    live(hub, b, "r")
    hub.on_resync("r")
    assert closes.codes() == [Close.RESYNC, Close.RESYNC]
    # Both closed connections are removed: the room is reported emptied (unwatched) once.
    assert hub.remove(a) == ["r"]
    assert hub.remove(b) == []
    assert hub.rooms == {}


def test_a_resync_cuts_off_a_resuming_watcher_whose_close_waits_for_its_reply() -> None:
    ticks, closes = Ticks(), Closes()
    hub = Hub(schedule=ticks)
    conn, sink = connect(hub, closes)
    hub.join_room(conn, "r", presence_events=True)  # resuming, and watching presence
    conn.busy = True
    hub.on_resync("r")
    assert conn.deferred_close == (Close.RESYNC, "resync: resume with since")
    hub.on_message(msg("r", 1))  # not held for it...
    hub.on_presence("r", "join", "alice")  # ...no presence event...
    hub.finish_sync(conn, "r", 0, "e1")  # ...and its replay ending delivers nothing
    ticks.run()
    assert sink.frames == [] and conn.held_bytes == 0
    assert hub.room_sizes(5) == [("r", 0)]


def test_distinct_users_and_subscriptions_follow_joins_leaves_and_closes() -> None:
    """What the node's wsops_users and wsops_subscriptions gauges read: kept as connections
    come and go, never recounted at a scrape."""
    ticks, closes = Ticks(), Closes()
    hub = Hub(schedule=ticks)
    a1, _ = connect(hub, closes, user="alice")
    a2, _ = connect(hub, closes, user="alice")
    b, _ = connect(hub, closes, user="bob")
    assert hub.users == {"alice": 2, "bob": 1} and hub.subscriptions == 0
    live(hub, a1, "r")
    live(hub, a1, "q")
    hub.join_room(a2, "r")  # still syncing: counted
    hub.join_room(a2, "r")  # twice: once
    live(hub, b, "r")
    assert hub.subscriptions == 4
    hub.leave_room(a2, "r")  # left while still syncing
    assert hub.subscriptions == 3
    hub.leave_room(a2, "r")  # not in it any more: nothing to take away
    hub.leave_room(b, "nowhere")
    assert hub.subscriptions == 3
    hub.remove(a1)
    assert hub.users == {"alice": 1, "bob": 1} and hub.subscriptions == 1
    hub.remove(a1)  # removed twice: counted once
    hub.remove(a2)
    assert hub.users == {"bob": 1} and hub.subscriptions == 1
    hub.remove(b)
    assert hub.users == {} and hub.subscriptions == 0 and hub.rooms == {}


def test_every_fan_out_is_counted_in_the_flow_sketch_and_told_to_a_tap_while_one_is_set() -> None:
    ticks, closes = Ticks(), Closes()
    hub = Hub(schedule=ticks)
    a, _ = connect(hub, closes)
    b, _ = connect(hub, closes)
    live(hub, a, "r")
    live(hub, b, "r")
    first = msg("r", 1)
    hub.on_message(first)
    hub.on_message(msg("nobody-here", 1))
    flow = hub.flow.rooms["r"]
    assert (flow.msgs_out, flow.bytes_out) == (2, 2 * len(first.frame))
    assert "nobody-here" not in hub.flow.rooms
    tapped: list[tuple[int, int]] = []
    hub.tap = lambda m, n: tapped.append((m.offset, n))
    hub.on_message(msg("r", 2))
    hub.tap = None
    hub.on_message(msg("r", 3))
    assert tapped == [(2, 2)] and hub.flow.rooms["r"].msgs_out == 6
