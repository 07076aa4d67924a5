"""A session's decisions without sockets: the hub writes into recording sinks, the broker is the
in-memory one, and each end of an event-loop tick is run by hand.

Publish, subscribe, resume (recovered true/false), presence, history, the per-connection
limits (rooms, rate, strikes), authorization, a broker that is away, and the observer's part;
replays in pages (a broker that pages by budget) and under backpressure (a peer that reads
nothing until the test lets it, on the real event loop), and ``wait_drained``'s patience.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from tests.server.core.fakes import Closes, Sink, Ticks, connect
from tests.support.waits import until
from wsops.server.broker.memory import MemoryBroker
from wsops.server.core import session as session_module
from wsops.server.core.broker import BrokerUnavailable, HistoryPage, Published, Recovery
from wsops.server.core.debugtargets import DebugTargets
from wsops.server.core.hub import Conn, Hub
from wsops.server.core.identity import Identity
from wsops.server.core.observer import Publish
from wsops.server.core.protocol import Close, Position, Request, reply_ok, text_frame
from wsops.server.core.session import Session, wait_drained


class World:
    """One node's core: a hub, a memory broker, and sessions on recording sinks."""

    def __init__(self, broker: MemoryBroker | None = None) -> None:
        self.ticks, self.closes = Ticks(), Closes()
        self.hub = Hub(schedule=self.ticks)
        self.broker = broker or MemoryBroker()
        self.broker.listener = self.hub

    def session(self, user: str = "u", rooms: tuple[str, ...] = ("*",), *, max_rooms: int = 8,
                rate: float = 1000.0, burst: int = 1000, strikes: int = 3,
                limit: int = 1 << 20, sink: Sink | None = None,
                **kw: Any) -> tuple[Session, Sink]:
        conn, sink = connect(self.hub, self.closes, user=user, limit=limit, sink=sink)
        return Session(conn, Identity(user, rooms), self.hub, self.broker, max_rooms=max_rooms,
                       rate=rate, burst=burst, strikes=strikes, **kw), sink

    async def ask(self, session: Session, sink: Sink, **frame: Any) -> list[dict[str, Any]]:
        """Send one frame; what the connection got by the end of the tick."""
        await session.handle(json.dumps(frame))
        self.ticks.run()
        return sink.take()


async def test_a_publish_is_acknowledged_with_its_offset_and_reaches_the_rooms_subscribers(
) -> None:
    w = World()
    alice, a_sink = w.session("alice")
    bob, b_sink = w.session("bob")
    [sub] = await w.ask(bob, b_sink, op="subscribe", id=1, room="r")
    assert sub == {"op": "reply", "id": 1, "ok": True, "room": "r", "offset": 0,
                   "epoch": sub["epoch"]}
    [ack] = await w.ask(alice, a_sink, op="publish", id=2, room="r", data={"text": "hi"})
    assert ack == {"op": "reply", "id": 2, "ok": True, "room": "r", "offset": 1,
                   "epoch": sub["epoch"]}
    [got] = b_sink.take()
    assert (got["op"], got["room"], got["offset"], got["data"], got["from"]) == (
        "message", "r", 1, {"text": "hi"}, "alice")
    assert a_sink.frames == []  # not subscribed: the publisher gets its ack only
    flow = w.hub.flow.rooms["r"]  # the flow view: alice's publish in, one delivery out
    assert (flow.msgs_in, flow.bytes_in, flow.publishers) == (1, len(b'{"text":"hi"}'), {"alice"})
    assert flow.msgs_out == 1


async def test_subscribing_twice_answers_the_position_and_delivers_once() -> None:
    w = World()
    s, sink = w.session()
    await w.ask(s, sink, op="subscribe", id=1, room="r")
    [again] = await w.ask(s, sink, op="subscribe", id=2, room="r")
    assert again["ok"] and again["offset"] == 0
    await w.broker.publish("r", b"1")
    w.ticks.run()
    assert [m["offset"] for m in sink.take()] == [1]


async def test_a_resume_replays_what_was_missed_then_goes_live_without_a_gap() -> None:
    w = World()
    s, sink = w.session()
    [first] = await w.ask(s, sink, op="subscribe", id=1, room="r")
    for n in range(3):
        await w.broker.publish("r", b"%d" % n)
    w.ticks.run()
    sink.take()
    again, sink2 = w.session()
    frames = await w.ask(again, sink2, op="subscribe", id=1, room="r",
                         since={"offset": 1, "epoch": first["epoch"]})
    assert frames[0] == {"op": "reply", "id": 1, "ok": True, "room": "r", "offset": 3,
                         "epoch": first["epoch"], "recovered": True}
    assert [(m["op"], m["offset"]) for m in frames[1:]] == [("message", 2), ("message", 3)]
    await w.broker.publish("r", b"4")
    w.ticks.run()
    assert [m["offset"] for m in sink2.take()] == [4]


async def test_a_resume_from_another_epoch_says_recovered_false_and_replays_nothing() -> None:
    w = World()
    await w.broker.publish("r", b"1")
    s, sink = w.session()
    frames = await w.ask(s, sink, op="subscribe", id=1, room="r",
                         since={"offset": 1, "epoch": "not-this-one"})
    assert len(frames) == 1
    assert frames[0]["recovered"] is False and frames[0]["offset"] == 1


async def test_presence_counts_a_user_once_and_forgets_them_when_their_last_connection_goes(
) -> None:
    w = World()
    a1, a1_sink = w.session("alice")
    a2, a2_sink = w.session("alice")
    watcher, w_sink = w.session("bob")
    await w.ask(watcher, w_sink, op="subscribe", id=1, room="r", presence=True)
    await w.ask(a1, a1_sink, op="subscribe", id=1, room="r")
    await w.ask(a2, a2_sink, op="subscribe", id=1, room="r")
    joins = [m for m in w_sink.take() if m["op"] == "join"]
    assert joins == [{"op": "join", "room": "r", "user": "alice"}]  # the first connection only
    [who] = await w.ask(watcher, w_sink, op="presence", id=2, room="r")
    assert who["users"] == ["alice", "bob"]
    await a1.close()
    w.ticks.run()
    assert w_sink.take() == []  # alice is still there on another connection
    await a2.close()
    w.ticks.run()
    assert w_sink.take() == [{"op": "leave", "room": "r", "user": "alice"}]
    [who] = await w.ask(watcher, w_sink, op="presence", id=3, room="r")
    assert who["users"] == ["bob"]


async def test_unsubscribe_stops_deliveries_and_an_unknown_room_is_refused() -> None:
    w = World()
    s, sink = w.session()
    await w.ask(s, sink, op="subscribe", id=1, room="r")
    [ok] = await w.ask(s, sink, op="unsubscribe", id=2, room="r")
    assert ok == {"op": "reply", "id": 2, "ok": True, "room": "r"}
    await w.broker.publish("r", b"1")
    w.ticks.run()
    assert sink.take() == [] and w.hub.rooms == {}
    [err] = await w.ask(s, sink, op="unsubscribe", id=3, room="r")
    assert err["error"] == {"code": "not_subscribed", "message": "not subscribed to 'r'"}


async def test_history_answers_the_newest_messages_oldest_first() -> None:
    w = World()
    for n in range(5):
        await w.broker.publish("r", b"%d" % n)
    s, sink = w.session()
    [reply] = await w.ask(s, sink, op="history", id=1, room="r", limit=2)
    assert reply["ok"] and [m["data"] for m in reply["messages"]] == [3, 4]


async def test_a_connection_past_its_room_limit_is_refused_the_next_room() -> None:
    w = World()
    s, sink = w.session(max_rooms=2)
    for n, room in enumerate(("a", "b"), 1):
        [ok] = await w.ask(s, sink, op="subscribe", id=n, room=room)
        assert ok["ok"]
    [err] = await w.ask(s, sink, op="subscribe", id=3, room="c")
    assert err["error"] == {"code": "too_many_rooms", "message": "at most 2 rooms per connection"}
    assert "c" not in w.hub.rooms


async def test_a_room_the_token_does_not_grant_is_forbidden() -> None:
    w = World()
    s, sink = w.session(rooms=("team-*",))
    [ok] = await w.ask(s, sink, op="subscribe", id=1, room="team-a")
    [err] = await w.ask(s, sink, op="publish", id=2, room="other", data=1)
    assert ok["ok"]
    assert err == {"op": "reply", "id": 2, "ok": False,
                   "error": {"code": "forbidden", "message": "token does not grant room 'other'"}}


async def test_past_the_rate_limit_a_frame_is_refused_and_repeated_refusals_close_1008() -> None:
    w = World()
    limited: list[int] = []

    served: list[tuple[str, str | None]] = []

    class Obs:
        quiet = 1 << 62  # no publish is traced: publish_started is never needed

        def rate_limited(self) -> None:
            limited.append(1)

        def served(self, op: str, started: float, code: str | None) -> None:
            served.append((op, code))

        def resumed(self, recovered: bool) -> None:
            raise AssertionError("no resume here")

        def publish_started(self, req: Request) -> object:
            raise AssertionError("skipped while quiet")

        def publish_stored(self, handle: object, msg: Published, started: float,
                           client: bool) -> None:
            pass

        def publish_failed(self, handle: object, error: Exception) -> None:
            raise AssertionError("no failed publish here")

    s, sink = w.session(rate=0.001, burst=2, strikes=2, observer=Obs())
    for n in (1, 2):
        [ok] = await w.ask(s, sink, op="publish", id=n, room="r", data=n)
        assert ok["ok"]
    [err] = await w.ask(s, sink, op="publish", id=3, room="r", data=3)
    assert err == {"op": "reply", "id": 3, "ok": False,
                   "error": {"code": "rate_limited", "message": "rate limit exceeded"}}
    assert await w.ask(s, sink, op="publish", id=4, room="r", data=4) == []
    assert w.closes.calls == [(s.conn.id, Close.POLICY, "rate limit exceeded")]
    assert limited == [1, 1]
    assert served == [("publish", None), ("publish", None)]  # refused frames are not ops


async def test_a_bad_frame_gets_an_error_reply_and_the_session_goes_on() -> None:
    w = World()
    s, sink = w.session()
    await s.handle("{not json")
    await s.handle('{"op":"dance","id":7,"room":"r"}')
    w.ticks.run()
    codes = [m["error"]["code"] for m in sink.take()]
    assert codes == ["bad_json", "unknown_op"]
    [ok] = await w.ask(s, sink, op="subscribe", id=8, room="r")
    assert ok["ok"] and w.closes.calls == []


async def test_the_sender_is_the_connections_user_whatever_the_frame_says() -> None:
    w = World()
    alice, a_sink = w.session("alice")
    bob, b_sink = w.session("bob")
    await w.ask(bob, b_sink, op="subscribe", id=1, room="r")
    await w.ask(alice, a_sink, op="publish", id=2, room="r", data={"from": "bob"},
                **{"from": "bob"})
    [forged] = b_sink.take()
    assert (forged["from"], forged["data"]) == ("alice", {"from": "bob"})
    [item] = (await w.ask(bob, b_sink, op="history", id=3, room="r"))[0]["messages"]
    assert item == {"offset": 1, "epoch": forged["epoch"], "data": {"from": "bob"},
                    "from": "alice", "ts": forged["ts"]}


class AwayBroker(MemoryBroker):
    async def publish(self, room: str, data: bytes, traceparent: str | None = None,
                      sender: str | None = None, tracestate: str | None = None) -> Published:
        raise BrokerUnavailable("redis is away")

    async def watch(self, room: str) -> None:
        raise BrokerUnavailable("redis is away")


async def test_a_broker_that_is_away_is_an_unavailable_reply_and_the_room_is_not_kept() -> None:
    w = World(AwayBroker())
    s, sink = w.session()
    [pub] = await w.ask(s, sink, op="publish", id=1, room="r", data=1)
    [sub] = await w.ask(s, sink, op="subscribe", id=2, room="r")
    for reply, n in ((pub, 1), (sub, 2)):
        assert reply == {"op": "reply", "id": n, "ok": False,
                         "error": {"code": "unavailable", "message": "redis is away"}}
    assert w.hub.rooms == {} and s.conn.rooms == set()


async def test_the_publish_the_node_passes_in_is_the_one_sessions_use() -> None:
    w = World()
    seen: list[tuple[str, bytes, str | None, str | None, str | None]] = []

    async def publish(room: str, data: bytes, traceparent: str | None,
                      sender: str | None, tracestate: str | None) -> Published:
        seen.append((room, data, traceparent, sender, tracestate))
        return await w.broker.publish(room, data, traceparent, sender, tracestate)

    s, sink = w.session("carol", publish=publish)
    tp = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
    [ack] = await w.ask(s, sink, op="publish", id=1, room="r", data=[1, 2], traceparent=tp)
    [ack2] = await w.ask(s, sink, op="publish", id=2, room="r", data=3, traceparent=tp,
                         tracestate="congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
    # A tracestate without its traceparent means nothing (W3C): not carried.
    [ack3] = await w.ask(s, sink, op="publish", id=3, room="r", data=4, tracestate="k=v")
    assert ack["ok"] and ack2["ok"] and ack3["ok"]
    assert seen == [("r", b"[1,2]", tp, "carol", None),
                    ("r", b"3", tp, "carol", "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"),
                    ("r", b"4", None, "carol", None)]
    [_, second, _] = (await w.broker.history("r", 10, 1 << 20)).items
    assert json.loads(second) == {"offset": 2, "epoch": json.loads(second)["epoch"], "data": 3,
                                  "from": "carol", "ts": json.loads(second)["ts"]}


class PagingBroker(MemoryBroker):
    """The memory broker answering a resume the way a fleet broker does: in pages that fit the
    byte budget (at least one message; ``more`` while some are left). It records every call the
    session makes (``calls``); ``during_recover(n)`` runs inside the n-th ``recover`` (from 1)
    before it answers; from the ``lost_from``-th ``recover`` on, the history has moved on
    (``recovered: false``); ``fail`` maps an op to the exception it raises."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[Any, ...]] = []
        self.during_recover: Callable[[int], None] | None = None
        self.lost_from: int | None = None
        self.fail: dict[str, Exception] = {}

    def _called(self, *call: Any) -> None:
        self.calls.append(call)
        exc = self.fail.get(call[0])
        if exc is not None:
            raise exc

    def recovers(self) -> list[tuple[Any, ...]]:
        return [call for call in self.calls if call[0] == "recover"]

    async def recover(self, room: str, since: Position | None, budget: int = 0) -> Recovery:
        self._called("recover", room, since, budget)
        n = len(self.recovers())
        if self.during_recover is not None:
            self.during_recover(n)
        rec = await super().recover(room, since, budget)
        if self.lost_from is not None and n >= self.lost_from:
            return Recovery(rec.position, [], False)
        if not budget or not rec.messages:
            return rec
        page: list[Published] = []
        used = 0
        for m in rec.messages:
            used += len(m.frame)
            if page and used > budget:
                break
            page.append(m)
        return Recovery(rec.position, page, rec.recovered, more=len(page) < len(rec.messages))

    async def watch(self, room: str) -> None:
        self._called("watch", room)
        await super().watch(room)

    async def unwatch(self, room: str) -> None:
        self._called("unwatch", room)
        await super().unwatch(room)

    async def join(self, room: str, user: str) -> None:
        self._called("join", room, user)
        await super().join(room, user)

    async def leave(self, room: str, user: str) -> None:
        self._called("leave", room, user)
        await super().leave(room, user)

    async def presence(self, room: str) -> list[str]:
        self._called("presence", room)
        return await super().presence(room)

    async def history(self, room: str, limit: int, budget: int) -> HistoryPage:
        self._called("history", room, limit, budget)
        return await super().history(room, limit, budget)


async def stored(broker: MemoryBroker, room: str, count: int) -> tuple[str, list[bytes]]:
    """Publish ``count`` messages of equal size (data 0..count-1, count <= 9); the room's
    epoch and the frames as stored."""
    for n in range(count):
        await broker.publish(room, b"%d" % n)
    epoch = (await MemoryBroker.recover(broker, room, None)).position.epoch
    rec = await MemoryBroker.recover(broker, room, Position(0, epoch))
    frames = [m.frame for m in rec.messages]
    assert len({len(f) for f in frames}) == 1
    return epoch, frames


def messages_of(frames: list[dict[str, Any]]) -> list[int]:
    return [m["offset"] for m in frames if m["op"] == "message"]


# -- publish, errors -------------------------------------------------------------------------


async def test_a_publish_stored_on_this_node_only_is_acknowledged_with_local_true() -> None:
    w = World()

    async def island_publish(room: str, data: bytes, traceparent: str | None,
                             sender: str | None, tracestate: str | None) -> Published:
        msg = await w.broker.publish(room, data, traceparent, sender)
        return dataclasses.replace(msg, local=True)

    s, sink = w.session(publish=island_publish)
    [ack] = await w.ask(s, sink, op="publish", id=1, room="r", data="hi")
    epoch = (await w.broker.recover("r", None)).position.epoch
    assert ack == {"op": "reply", "id": 1, "ok": True, "room": "r", "offset": 1,
                   "epoch": epoch, "local": True}


async def test_a_frame_refused_by_the_rate_limit_echoes_only_an_integer_id() -> None:
    w = World()
    s, sink = w.session(rate=0.001, burst=1, strikes=10)
    [ok] = await w.ask(s, sink, op="publish", id=1, room="r", data=1)
    assert ok["ok"]
    for frame in ('{"op":"publish","id":true,"room":"r","data":1}',
                  '{"op":"publish","id":"7","room":"r","data":1}',
                  '{"op":"publish","id":7,"room":"r","data":1}',
                  '[7]', '{"id":'):
        await s.handle(frame)
    w.ticks.run()
    refused = {"code": "rate_limited", "message": "rate limit exceeded"}
    assert sink.take() == [{"op": "reply", "id": req_id, "ok": False, "error": refused}
                           for req_id in (None, None, 7, None, None)]


async def test_an_unexpected_fault_is_an_internal_error_reply_and_the_session_goes_on() -> None:
    broker = PagingBroker()
    broker.fail["presence"] = RuntimeError("bug")
    w = World(broker)
    rec = Recorder()
    s, sink = w.session(observer=rec)
    [err] = await w.ask(s, sink, op="presence", id=4, room="r")
    assert err == {"op": "reply", "id": 4, "ok": False,
                   "error": {"code": "internal", "message": "internal error"}}
    [ok] = await w.ask(s, sink, op="publish", id=5, room="r", data=1)
    assert ok["ok"] and w.closes.calls == []
    assert rec.calls == [("presence", "internal"), ("publish", None)]


# -- subscribe failures, unsubscribe and presence --------------------------------------------


async def test_a_subscribe_whose_watch_fails_unwatches_the_room_again_and_answers_unavailable(
) -> None:
    broker = PagingBroker()
    broker.fail["watch"] = BrokerUnavailable("redis is away")
    w = World(broker)
    s, sink = w.session()
    [err] = await w.ask(s, sink, op="subscribe", id=1, room="r")
    assert err == {"op": "reply", "id": 1, "ok": False,
                   "error": {"code": "unavailable", "message": "redis is away"}}
    assert broker.calls == [("watch", "r"), ("unwatch", "r")]
    assert w.hub.rooms == {} and s.conn.rooms == set()


async def test_a_subscribe_whose_recover_fails_answers_unavailable_and_unwatches_an_empty_room(
) -> None:
    broker = PagingBroker()
    w = World(broker)
    first, first_sink = w.session()
    s, sink = w.session()
    broker.fail["recover"] = BrokerUnavailable("redis is away")
    unavailable = {"code": "unavailable", "message": "redis is away"}
    [err] = await w.ask(s, sink, op="subscribe", id=1, room="r")
    assert err == {"op": "reply", "id": 1, "ok": False, "error": unavailable}
    assert broker.calls == [("watch", "r"), ("recover", "r", None, (1 << 20) // 2),
                            ("unwatch", "r")]
    assert w.hub.rooms == {} and s.conn.rooms == set()
    # With another local member the room stays watched.
    del broker.fail["recover"]
    await w.ask(first, first_sink, op="subscribe", id=1, room="r")
    broker.fail["recover"] = BrokerUnavailable("redis is away")
    broker.calls.clear()
    [err] = await w.ask(s, sink, op="subscribe", id=2, room="r")
    assert err == {"op": "reply", "id": 2, "ok": False, "error": unavailable}
    assert broker.calls == [("recover", "r", None, (1 << 20) // 2)]
    await w.broker.publish("r", b"1")
    w.ticks.run()
    assert messages_of(first_sink.take()) == [1] and sink.take() == []


async def test_unsubscribe_unwatches_the_room_only_when_its_last_local_member_leaves() -> None:
    broker = PagingBroker()
    w = World(broker)
    alice, a_sink = w.session("alice")
    bob, b_sink = w.session("bob")
    await w.ask(alice, a_sink, op="subscribe", id=1, room="r")
    await w.ask(bob, b_sink, op="subscribe", id=1, room="r")
    broker.calls.clear()
    [ok] = await w.ask(alice, a_sink, op="unsubscribe", id=2, room="r")
    assert ok == {"op": "reply", "id": 2, "ok": True, "room": "r"}
    assert broker.calls == [("leave", "r", "alice")]
    await w.ask(bob, b_sink, op="unsubscribe", id=2, room="r")
    assert broker.calls[1:] == [("unwatch", "r"), ("leave", "r", "bob")]


async def test_a_connection_that_left_a_room_does_not_take_its_users_presence_away_again(
) -> None:
    broker = PagingBroker()
    w = World(broker)
    a1, a1_sink = w.session("alice")
    a2, a2_sink = w.session("alice")
    bob, b_sink = w.session("bob")
    await w.ask(bob, b_sink, op="subscribe", id=1, room="r", presence=True)
    await w.ask(a1, a1_sink, op="subscribe", id=1, room="r")
    await w.ask(a2, a2_sink, op="subscribe", id=1, room="r")
    await w.ask(a1, a1_sink, op="unsubscribe", id=2, room="r")
    # a1 subscribes again but is closed before its subscribe is done: it never counted.
    broker.during_recover = lambda n: a1.conn.close(Close.GOING_AWAY, "going away")
    await w.ask(a1, a1_sink, op="subscribe", id=3, room="r")
    broker.during_recover = None
    await a1.close()
    w.ticks.run()
    assert [m for m in b_sink.take() if m["op"] != "reply"] == [
        {"op": "join", "room": "r", "user": "alice"}]  # no leave: alice is still on a2
    assert await broker.presence("r") == ["alice", "bob"]
    assert [c for c in broker.calls if c[0] == "leave"] == [("leave", "r", "alice")]


async def test_a_server_side_unsubscribe_tells_the_connection_and_leaves_like_its_own(
) -> None:
    broker = PagingBroker()
    w = World(broker)
    alice, a_sink = w.session("alice")
    bob, b_sink = w.session("bob")
    await w.ask(alice, a_sink, op="subscribe", id=1, room="r")
    await w.ask(alice, a_sink, op="subscribe", id=2, room="s")
    await w.ask(bob, b_sink, op="subscribe", id=1, room="r", presence=True)
    b_sink.take()
    broker.calls.clear()
    left = alice.unsubscribed("r", "muted")
    assert left is not None
    w.ticks.run()
    assert a_sink.take() == [{"op": "unsubscribed", "room": "r", "reason": "muted"}]
    assert w.hub.rooms["r"].conns.keys() == {bob.conn} and "r" not in alice.conn.rooms
    await left  # the broker's side: bob is still here, so no unwatch; alice's presence goes
    assert broker.calls == [("leave", "r", "alice")]
    w.ticks.run()
    assert b_sink.take() == [{"op": "leave", "room": "r", "user": "alice"}]
    await broker.publish("r", b"1")
    await broker.publish("s", b"2")
    w.ticks.run()
    assert [(m["room"], m["data"]) for m in a_sink.take()] == [("s", 2)]  # not r's any more
    assert alice.unsubscribed("r", "again") is None  # not in it: nothing, said nothing
    w.ticks.run()
    assert a_sink.take() == []
    [err] = await w.ask(alice, a_sink, op="unsubscribe", id=3, room="r")
    assert err["error"]["code"] == "not_subscribed"
    # the last local member taken out: the room is unwatched too
    broker.calls.clear()
    left = bob.unsubscribed("r", "bye")
    assert left is not None
    await left
    assert broker.calls == [("unwatch", "r"), ("leave", "r", "bob")] and "r" not in w.hub.rooms


async def test_a_server_side_unsubscribe_spares_a_closing_connection(
) -> None:
    w = World(PagingBroker())
    alice, a_sink = w.session("alice")
    await w.ask(alice, a_sink, op="subscribe", id=1, room="r")
    alice.conn.close(Close.GOING_AWAY, "going away")
    assert alice.unsubscribed("r", "muted") is None
    assert alice.unsubscribe_pending("r", "muted") is False


async def test_a_server_side_unsubscribe_during_a_subscribe_applies_once_it_is_done() -> None:
    """A connection still joining the room (its replay under way) is taken out right after
    its subscribe: the reply, then the event; it never stays in the room."""
    broker = PagingBroker()
    w = World(broker)
    bob, b_sink = w.session("bob")
    pending: list[Any] = []
    broker.during_recover = lambda n: pending.append(
        (bob.unsubscribed("s", "muted"), bob.unsubscribe_pending("s", "muted")))
    frames = await w.ask(bob, b_sink, op="subscribe", id=1, room="s")
    assert pending == [(None, True)]
    assert [f["op"] for f in frames] == ["reply", "unsubscribed"]
    assert frames[1] == {"op": "unsubscribed", "room": "s", "reason": "muted"}
    assert "s" not in bob.conn.rooms and "s" not in w.hub.rooms and not bob.kicked
    assert [c for c in broker.calls if c[0] in ("join", "leave", "unwatch")] == [
        ("join", "s", "bob"), ("unwatch", "s"), ("leave", "s", "bob")]
    assert bob.unsubscribe_pending("t", "not joining it") is False


async def test_a_pending_server_side_unsubscribe_ends_with_its_subscribe() -> None:
    """Its subscribe failed: the next subscribe of the room is not taken out for it."""
    broker = PagingBroker()
    w = World(broker)
    bob, b_sink = w.session("bob")

    def kicked_then_down(n: int) -> None:
        assert bob.unsubscribe_pending("s", "muted")
        raise BrokerUnavailable("broker down")

    broker.during_recover = kicked_then_down
    [err] = await w.ask(bob, b_sink, op="subscribe", id=1, room="s")
    assert err["error"]["code"] == "unavailable"
    broker.during_recover = None
    frames = await w.ask(bob, b_sink, op="subscribe", id=2, room="s")
    assert [f["op"] for f in frames] == ["reply"] and "s" in bob.present


async def test_the_broker_side_of_a_server_side_unsubscribe_leaves_a_room_joined_meanwhile(
) -> None:
    """Its unwatch is decided when it runs: another connection that joined the room in
    between keeps the room's feed."""
    broker = PagingBroker()
    w = World(broker)
    alice, a_sink = w.session("alice")
    bob, b_sink = w.session("bob")
    await w.ask(alice, a_sink, op="subscribe", id=1, room="r")
    left = alice.unsubscribed("r", "muted")  # the room is empty here now...
    assert left is not None and "r" not in w.hub.rooms
    await w.ask(bob, b_sink, op="subscribe", id=1, room="r")  # ...and joined again
    broker.calls.clear()
    await left
    assert broker.calls == [("leave", "r", "alice")]  # no unwatch: bob needs the feed


# -- history ---------------------------------------------------------------------------------


async def test_history_answers_the_newest_messages_that_fit_half_the_send_queue_truncated(
) -> None:
    w = World()
    epoch, frames = await stored(w.broker, "r", 5)
    frame_len = len(frames[0])
    s, sink = w.session(limit=6 * frame_len + 1)  # half of it: exactly three frames
    [reply] = await w.ask(s, sink, op="history", id=1, room="r", limit=5)
    assert {k: v for k, v in reply.items() if k != "messages"} == {
        "op": "reply", "id": 1, "ok": True, "room": "r", "offset": 5, "epoch": epoch,
        "truncated": True}
    assert [(m["offset"], m["data"]) for m in reply["messages"]] == [(3, 2), (4, 3), (5, 4)]


# -- resumes in pages ------------------------------------------------------------------------


async def test_a_replay_comes_in_pages_of_half_the_send_queue_each_asked_from_the_last_sent(
) -> None:
    broker = PagingBroker()
    w = World(broker)
    epoch, frames = await stored(broker, "r", 5)
    limit = 4 * len(frames[0]) + 2  # a budget of two frames and one byte: pages 2, 2, 1
    s, sink = w.session(limit=limit)
    got = await w.ask(s, sink, op="subscribe", id=1, room="r",
                      since={"offset": 0, "epoch": epoch})
    assert got[0] == {"op": "reply", "id": 1, "ok": True, "room": "r", "offset": 5,
                      "epoch": epoch, "recovered": True}
    assert messages_of(got) == [1, 2, 3, 4, 5]  # each once, in order
    assert broker.recovers() == [("recover", "r", Position(offset, epoch), limit // 2)
                                 for offset in (0, 2, 4)]
    assert ("join", "r", "u") in broker.calls
    await broker.publish("r", b"5")
    w.ticks.run()
    assert messages_of(sink.take()) == [6]  # live, after the replay, without a gap


async def test_a_replay_whose_history_moved_on_between_pages_closes_4001() -> None:
    broker = PagingBroker()
    broker.lost_from = 2
    w = World(broker)
    epoch, frames = await stored(broker, "r", 5)
    s, sink = w.session(limit=4 * len(frames[0]) + 2)
    got = await w.ask(s, sink, op="subscribe", id=1, room="r",
                      since={"offset": 0, "epoch": epoch})
    assert got[0]["recovered"] is True and messages_of(got) == [1, 2]
    assert w.closes.calls == [(s.conn.id, Close.RESYNC,
                               "resync: history moved on during the replay")]
    assert await broker.presence("r") == []


async def test_a_connection_closed_while_the_next_page_is_read_ends_its_replay_there() -> None:
    broker = PagingBroker()
    w = World(broker)
    epoch, frames = await stored(broker, "r", 5)
    s, sink = w.session(limit=4 * len(frames[0]) + 2)

    def draining(n: int) -> None:
        if n == 2:
            s.conn.close(Close.GOING_AWAY, "going away")

    broker.during_recover = draining
    got = await w.ask(s, sink, op="subscribe", id=1, room="r",
                      since={"offset": 0, "epoch": epoch})
    assert messages_of(got) == [1, 2]
    assert w.closes.calls == [(s.conn.id, Close.GOING_AWAY, "going away")]
    assert len(broker.recovers()) == 2 and await broker.presence("r") == []


# -- backpressure ----------------------------------------------------------------------------


async def replay_stalled(w: World) -> tuple[Session, Sink, asyncio.Task[None], int]:
    """A resume of six messages by a peer that reads nothing, on a send queue whose half is
    exactly the reply and two messages; returns once the replay waits for the peer."""
    epoch, frames = await stored(w.broker, "r", 6)
    reply = text_frame(reply_ok(1, room="r", offset=6, epoch=epoch, recovered=True).encode())
    high = len(reply) + 2 * len(frames[0])
    s, sink = w.session(limit=2 * high, sink=Sink(keep=True))
    task = asyncio.create_task(s.handle(json.dumps(
        {"op": "subscribe", "id": 1, "room": "r", "since": {"offset": 0, "epoch": epoch}})))
    await until(lambda: sink.frames or task.done(), timeout=1.0, step=0.001)
    # Up to half the send queue is queued; the next message finds it past half: all of it
    # is written, and the replay waits.
    assert not task.done()
    assert sink.frames == [reply, *frames[:3]] and sink.calls == ["writelines"]
    assert sink.buffered == high + len(frames[0])
    return s, sink, task, high


async def test_a_replay_past_half_the_send_queue_waits_until_the_peer_read_down_to_a_quarter(
) -> None:
    w = World()
    _, sink, task, high = await replay_stalled(w)
    sink.buffered = high // 2 + 1
    await asyncio.sleep(0.012)  # a couple of looks at the queue
    assert not task.done() and len(sink.frames) == 4 and w.closes.calls == []
    sink.keep, sink.buffered = False, high // 2  # down to a quarter: go on
    await until(task.done, timeout=1.0, step=0.001)
    await task
    w.ticks.run()
    assert messages_of(sink.messages()) == [1, 2, 3, 4, 5, 6] and w.closes.calls == []
    assert await w.broker.presence("r") == ["u"]


async def test_a_connection_closed_while_its_replay_waits_stops_the_replay_and_never_joins(
) -> None:
    w = World()
    s, sink, task, _ = await replay_stalled(w)
    s.conn.close(Close.GOING_AWAY, "going away")
    await until(task.done, timeout=1.0, step=0.001)
    await task
    w.ticks.run()
    assert messages_of(sink.messages()) == [1, 2, 3]
    assert w.closes.calls == [(s.conn.id, Close.GOING_AWAY, "going away")]
    assert await w.broker.presence("r") == []


def a_conn(buffered: int) -> tuple[Hub, Closes, Conn, Sink]:
    hub, closes = Hub(schedule=Ticks()), Closes()
    conn, sink = connect(hub, closes, sink=Sink(buffered=buffered))
    return hub, closes, conn, sink


async def test_wait_drained_returns_at_once_when_no_more_than_the_target_is_queued() -> None:
    _, closes, conn, _ = a_conn(buffered=100)
    assert await wait_drained(conn, 100, patience=0.01) is True
    assert closes.calls == []


async def test_wait_drained_returns_true_once_the_peer_has_read_down_to_the_target() -> None:
    _, closes, conn, sink = a_conn(buffered=1000)
    read: list[int] = []

    def peer_reads() -> None:
        read.append(sink.buffered)
        sink.buffered = 200

    asyncio.get_running_loop().call_soon(peer_reads)
    assert await wait_drained(conn, 200, patience=0.5) is True
    assert read == [1000] and closes.calls == []


async def test_wait_drained_closes_a_peer_that_reads_nothing_for_its_patience_4000() -> None:
    hub, closes, conn, _ = a_conn(buffered=1000)
    assert await wait_drained(conn, 999, patience=0.01) is False
    assert closes.calls == [(conn.id, Close.SLOW_CONSUMER, "slow consumer")]
    assert hub.stats.slow_consumers == 1


async def test_wait_drained_answers_false_when_the_connection_closes_meanwhile() -> None:
    _, closes, conn, _ = a_conn(buffered=1000)
    asyncio.get_running_loop().call_soon(conn.close, Close.GOING_AWAY, "going away")
    assert await wait_drained(conn, 0, patience=0.5) is False
    assert closes.calls == [(conn.id, Close.GOING_AWAY, "going away")]


async def test_wait_drained_still_waits_at_exactly_its_patience(
        monkeypatch: pytest.MonkeyPatch) -> None:
    _, closes, conn, sink = a_conn(buffered=1000)
    readings = iter([100.0])  # when it starts; every later reading is the deadline itself
    monkeypatch.setattr(session_module, "time",
                        SimpleNamespace(monotonic=lambda: next(readings, 101.0)))
    asyncio.get_running_loop().call_soon(setattr, sink, "buffered", 0)
    assert await wait_drained(conn, 0, patience=1.0) is True
    assert closes.calls == []



class Recorder:
    """A session observer that records what it is told."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None]] = []  # (op, error code) per served frame
        self.started: list[float] = []
        self.resumes: list[bool] = []
        self.publishes: list[tuple[object, ...]] = []  # the publish hooks' calls, in order
        self.quiet = 0  # every publish goes through publish_started

    def rate_limited(self) -> None:
        raise AssertionError("no rate limit here")

    def served(self, op: str, started: float, code: str | None) -> None:
        self.calls.append((op, code))
        self.started.append(started)

    def resumed(self, recovered: bool) -> None:
        self.resumes.append(recovered)

    def publish_started(self, req: Request) -> object:
        handle = ("handle", req.room)
        self.publishes.append(handle)
        return handle

    def publish_stored(self, handle: object, msg: Published, started: float,
                       client: bool) -> None:
        assert started <= time.perf_counter()
        self.publishes.append(("stored", handle, msg.room, msg.offset, client))

    def publish_failed(self, handle: object, error: Exception) -> None:
        self.publishes.append(("failed", handle, type(error).__name__))


async def test_the_observer_hears_every_served_frame_with_its_op_and_error_code() -> None:
    w = World()
    rec = Recorder()
    s, sink = w.session(rooms=("r", "q"), observer=rec)
    before = time.perf_counter()
    await w.ask(s, sink, op="subscribe", id=1, room="r")
    await w.ask(s, sink, op="publish", id=2, room="r", data=1)
    await w.ask(s, sink, op="publish", id=3, room="elsewhere", data=1)
    await w.ask(s, sink, op="unsubscribe", id=4, room="q")
    await w.ask(s, sink, op="presence", id=5, room="r")
    await w.ask(s, sink, op="history", id=6, room="r")
    await s.handle("{not json")
    await s.handle('{"op":"dance","id":7,"room":"r"}')
    assert rec.calls == [("subscribe", None), ("publish", None), ("publish", "forbidden"),
                         ("unsubscribe", "not_subscribed"), ("presence", None),
                         ("history", None), ("invalid", "bad_json"), ("invalid", "unknown_op")]
    assert before <= rec.started[0] <= rec.started[-1] <= time.perf_counter()
    assert rec.resumes == []
    # The one publish the broker took, told around it (the forbidden one never reached it).
    assert rec.publishes == [("handle", "r"), ("stored", ("handle", "r"), "r", 1, True)]


async def test_the_observer_hears_resume_outcomes_and_broker_faults_as_unavailable() -> None:
    w = World()
    rec = Recorder()
    s, sink = w.session(observer=rec)
    [first] = await w.ask(s, sink, op="subscribe", id=1, room="r")
    await w.broker.publish("r", b"1")
    again, sink2 = w.session(observer=rec)
    await w.ask(again, sink2, op="subscribe", id=1, room="r",
                since={"offset": 0, "epoch": first["epoch"]})
    third, sink3 = w.session(observer=rec)
    await w.ask(third, sink3, op="subscribe", id=1, room="r",
                since={"offset": 0, "epoch": "gone"})
    assert rec.resumes == [True, False]
    away = World(AwayBroker())
    s, sink = away.session(observer=rec)
    await away.ask(s, sink, op="publish", id=1, room="r", data=1)
    await s.handle(json.dumps({"op": "history", "id": 2, "room": 5}))
    assert rec.calls[-2:] == [("publish", "unavailable"), ("invalid", "invalid_room")]
    assert rec.publishes == [("handle", "r"), ("failed", ("handle", "r"), "BrokerUnavailable")]


class Tap:
    """A debug switch that records what it is told, with a publish that marks what it saw."""

    def __init__(self, w: World) -> None:
        self.targets = DebugTargets()
        self.logged: list[tuple[int, str, str]] = []
        self.about: list[tuple[str | None, str]] = []
        self.forced: list[str] = []

        async def forced(room: str, data: bytes, traceparent: str | None,
                         sender: str | None, tracestate: str | None = None) -> Published:
            self.forced.append(room)
            return await w.broker.publish(room, data, traceparent, sender)

        self.publish: Publish | None = forced

    def received(self, conn_id: int, user: str, text: str, room: str | None, op: str) -> None:
        self.logged.append((conn_id, user, text))
        self.about.append((room, op))


async def test_a_watched_users_requests_are_logged_and_its_publishes_go_the_forced_way() -> None:
    w = World()
    tap = Tap(w)
    alice, a_sink = w.session("alice", rooms=("r", "q"), debug=tap)
    bob, b_sink = w.session("bob", debug=tap)
    await w.ask(alice, a_sink, op="publish", id=1, room="r", data=1)
    assert tap.logged == [] and tap.forced == []  # off: nothing
    tap.targets.add("user", "alice", 60, now=0, wall=0)
    [ack] = await w.ask(alice, a_sink, op="publish", id=2, room="r", data=2)
    assert ack["ok"] and ack["offset"] == 2 and tap.forced == ["r"]
    await w.ask(alice, a_sink, op="subscribe", id=3, room="q")
    await w.ask(alice, a_sink, op="publish", id=4, room="nope", data=3)  # forbidden: logged
    await alice.handle("{not json")
    await w.ask(bob, b_sink, op="publish", id=5, room="r", data=4)  # not watched
    await bob.handle("{not json")
    assert [(user, json.loads(text)["id"] if text.startswith("{\"") else text)
            for _, user, text in tap.logged] == [
        ("alice", 2), ("alice", 3), ("alice", 4), ("alice", "{not json")]
    assert tap.forced == ["r"] and all(cid == alice.conn.id for cid, _, _ in tap.logged)
    assert tap.about == [("r", "publish"), ("q", "subscribe"), ("nope", "publish"),
                         (None, "invalid")]


async def test_a_tapped_users_requests_are_handed_over_but_not_traced() -> None:
    w = World()
    tap = Tap(w)
    s, sink = w.session("alice", debug=tap)
    tap.targets.tap("user", "alice")
    [ack] = await w.ask(s, sink, op="publish", id=1, room="r", data=1)
    assert ack["ok"] and tap.about == [("r", "publish")] and tap.forced == []
    tap.targets.add("user", "alice", 60, now=0, wall=0)  # and now a debug target too
    await w.ask(s, sink, op="publish", id=2, room="r", data=2)
    assert tap.forced == ["r"]
    tap.targets.untap("user", "alice")
    tap.targets.remove("user:alice")
    await w.ask(s, sink, op="publish", id=3, room="r", data=3)
    assert len(tap.about) == 2 and not tap.targets.active


async def test_a_watched_room_is_logged_whoever_publishes_and_a_connection_by_its_id() -> None:
    w = World()
    tap = Tap(w)
    s, sink = w.session("carol", debug=tap)
    other, o_sink = w.session("dave", debug=tap)
    tap.targets.add("room", "news", 60, now=0, wall=0)
    await w.ask(s, sink, op="publish", id=1, room="news", data=1)
    await w.ask(s, sink, op="publish", id=2, room="sports", data=1)
    await s.handle("{not json")  # no room to match: not logged for a room target
    assert [json.loads(t)["id"] for _, _, t in tap.logged] == [1] and tap.forced == ["news"]
    tap.targets.add("connection", str(other.conn.id), 60, now=0, wall=0)
    await w.ask(other, o_sink, op="history", id=3, room="sports")
    assert tap.logged[-1][:2] == (other.conn.id, "dave") and tap.forced == ["news"]


async def test_without_a_traced_publish_a_watched_publish_is_logged_and_published_as_usual(
) -> None:
    w = World()
    tap = Tap(w)
    tap.publish = None  # the node does not trace
    s, sink = w.session("alice", debug=tap)
    tap.targets.add("user", "alice", 60, now=0, wall=0)
    [ack] = await w.ask(s, sink, op="publish", id=1, room="r", data=1)
    assert ack["ok"] and tap.forced == [] and len(tap.logged) == 1


async def test_a_quiet_observer_is_not_asked_about_root_publishes_until_quiet_runs_out() -> None:
    w = World()
    rec = Recorder()
    rec.quiet = 2  # the next two root publishes are not traced: no call needed
    s, sink = w.session(observer=rec)
    for i in (1, 2, 3):
        [ok] = await w.ask(s, sink, op="publish", id=i, room="r", data=i)
        assert ok["ok"]
        assert rec.quiet == max(0, 2 - i)
    parented = {"traceparent": f"00-{'1' * 32}-{'2' * 16}-01"}
    rec.quiet = 5  # a publish with a traceparent: its parent decides, so it is always asked
    await w.ask(s, sink, op="publish", id=4, room="r", data=4, **parented)
    assert rec.quiet == 5
    started = [p for p in rec.publishes if p[0] == "handle"]
    assert len(started) == 2  # the third publish, and the one with a traceparent
    stored = [p[3] for p in rec.publishes if p[0] == "stored"]
    assert stored == [1, 2, 3, 4]  # every publish is timed, asked or not
