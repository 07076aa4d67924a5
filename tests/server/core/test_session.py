"""A session's decisions without sockets: the hub writes into recording sinks, the broker is the
in-memory one, and each end of an event-loop tick is run by hand.

Publish, subscribe, resume (recovered true/false), presence, history, the per-connection
limits (rooms, rate, strikes), authorization, a broker that is away, and the observer's part.
"""

from __future__ import annotations

import json
from typing import Any

from tests.server.core.fakes import Closes, Sink, Ticks, connect
from wsops.server.broker.memory import MemoryBroker
from wsops.server.core.broker import BrokerUnavailable, Published
from wsops.server.core.hub import Hub
from wsops.server.core.identity import Identity
from wsops.server.core.observer import Publish
from wsops.server.core.protocol import Close
from wsops.server.core.session import Session


class World:
    """One node's core: a hub, a memory broker, and sessions on recording sinks."""

    def __init__(self, broker: MemoryBroker | None = None) -> None:
        self.ticks, self.closes = Ticks(), Closes()
        self.hub = Hub(schedule=self.ticks)
        self.broker = broker or MemoryBroker()
        self.broker.listener = self.hub

    def session(self, user: str = "u", rooms: tuple[str, ...] = ("*",), *, max_rooms: int = 8,
                rate: float = 1000.0, burst: int = 1000, strikes: int = 3,
                **kw: Any) -> tuple[Session, Sink]:
        conn, sink = connect(self.hub, self.closes, user=user)
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
    assert (got["op"], got["room"], got["offset"], got["data"]) == ("message", "r", 1,
                                                                    {"text": "hi"})
    assert a_sink.frames == []  # not subscribed: the publisher gets its ack only


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

    class Obs:
        def rate_limited(self) -> None:
            limited.append(1)

        def wrap_publish(self, publish: Publish) -> Publish:
            return publish

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


class AwayBroker(MemoryBroker):
    async def publish(self, room: str, data: bytes,
                      traceparent: str | None = None) -> Published:
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
    seen: list[tuple[str, bytes, str | None]] = []

    async def publish(room: str, data: bytes, traceparent: str | None) -> Published:
        seen.append((room, data, traceparent))
        return await w.broker.publish(room, data, traceparent)

    s, sink = w.session(publish=publish)
    tp = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
    [ack] = await w.ask(s, sink, op="publish", id=1, room="r", data=[1, 2], traceparent=tp)
    assert ack["ok"] and seen == [("r", b"[1,2]", tp)]
