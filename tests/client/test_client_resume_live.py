"""Reconnects against a real server: resume without loss or duplicates, Gaps, the offline queue."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.client.conftest import (
    MakeClient,
    Peer,
    collect,
    position,
    server_conn,
)
from tests.conftest import LiveServer, ServerFactory
from tests.support.ports import free_port
from tests.support.waits import until
from wsops.client import (
    Client,
    ClientClosed,
    ClientState,
    Gap,
    Message,
    QueueFull,
    RequestTimeout,
)
from wsops.config import Settings
from wsops.server.app import running

# -- reconnect and resume ----------------------------------------------------------------------


async def test_server_close_1012_reconnects_and_resumes_without_loss_or_duplicates(
    server: LiveServer, make_client: MakeClient
) -> None:
    states: list[ClientState] = []
    sub = await make_client(server.url, on_state=states.append)
    stream = sub.events()
    await sub.subscribe("res")
    pub = await make_client(server.url)
    for i in range(1, 6):
        await pub.publish("res", i)
    await collect(stream, 5)
    server_conn(server, sub).close(1012, "restart")
    await sub.wait_for_state(ClientState.RECONNECTING, 5.0)
    for i in range(6, 11):  # published while the subscriber is away
        await pub.publish("res", i)
    events = await collect(stream, 5)
    assert [e.offset for e in events if isinstance(e, Message)] == [6, 7, 8, 9, 10]
    assert sub.close_codes == [1012]
    assert sub.reconnects == 1
    assert states[-2:] == [ClientState.RECONNECTING, ClientState.OPEN]


async def test_abrupt_drops_during_a_publish_stream_lose_and_repeat_nothing(
    server_factory: ServerFactory, make_client: MakeClient
) -> None:
    server = await server_factory(rate_limit=10_000.0, rate_burst=10_000)
    got: list[Message] = []
    gaps: list[Gap] = []
    sub = await make_client(server.url, on_message=got.append, on_gap=gaps.append)
    await sub.subscribe("stream")
    pub = await make_client(server.url)
    total = 300

    async def publish_all() -> None:
        for i in range(1, total + 1):
            await pub.publish("stream", i)
            if i % 10 == 0:
                await asyncio.sleep(0.005)

    publisher = asyncio.create_task(publish_all())
    for _ in range(3):  # cut the TCP connection (no close frame) while messages are in flight
        await asyncio.sleep(0.05)
        await sub.wait_for_state(ClientState.OPEN, 5.0)
        server_conn(server, sub).transport.abort()
    await publisher
    # A marker behind the stream: whatever came before it (a repeat too) is all that came.
    await pub.publish("stream", "end")
    await until(lambda: got and got[-1].data == "end", 10.0, what="the marker behind the stream")
    assert [m.data for m in got] == [*range(1, total + 1), "end"]
    assert [m.offset for m in got] == list(range(1, total + 2))
    assert gaps == []
    assert sub.reconnects == 3
    assert sub.close_codes == [1006, 1006, 1006]


async def test_unrecoverable_resume_emits_a_gap_then_continues(
    server_factory: ServerFactory, make_client: MakeClient
) -> None:
    server = await server_factory(history_size=2)
    delay = [0.0]
    sub = await make_client(server.url, uniform=lambda lo, hi: delay[0])
    stream = sub.events()
    await sub.subscribe("g")
    pub = await make_client(server.url)
    await pub.publish("g", 1)
    [first] = await collect(stream, 1)
    assert isinstance(first, Message)
    delay[0] = 0.3  # keep the subscriber away while history moves past its position
    server_conn(server, sub).close(4000, "slow consumer")
    await sub.wait_for_state(ClientState.RECONNECTING, 5.0)
    acks = [await pub.publish("g", i) for i in range(2, 7)]
    events = await collect(stream, 1)
    await pub.publish("g", 7)
    events += await collect(stream, 1)
    assert events == [
        Gap("g", 1, first.epoch, 6, acks[-1].epoch),
        Message("g", 7, first.epoch, 7, events[1].ts,  # type: ignore[union-attr]
                first.sender),
    ]
    assert first.sender is not None and first.sender.startswith("anon-")  # one publisher
    assert sub.close_codes == [4000]


async def test_expired_room_history_gives_a_gap_into_the_new_epoch(
    server_factory: ServerFactory, make_client: MakeClient
) -> None:
    server = await server_factory(history_ttl=0.1)
    delay = [0.0]
    sub = await make_client(server.url, uniform=lambda lo, hi: delay[0])
    stream = sub.events()
    await sub.subscribe("ttl")
    pub = await make_client(server.url)
    old = await pub.publish("ttl", "old")
    await collect(stream, 1)
    delay[0] = 0.5
    server_conn(server, sub).close(1012, "restart")
    await sub.wait_for_state(ClientState.RECONNECTING, 5.0)
    await asyncio.sleep(0.2)  # the room's TTL (0.1 s) passes: time itself is under test
    server.node.broker.sweep()  # if the node's sweeper has not
    new = await pub.publish("ttl", "new")  # the first message of a new epoch
    assert (new.offset, new.epoch != old.epoch) == (1, True)
    [gap] = await collect(stream, 1)
    # The node keeps sweeping idle rooms every 0.1 s, so the epoch the subscriber resumes into
    # may be newer still; what matters is the explicit Gap out of the old one.
    assert isinstance(gap, Gap)
    assert (gap.room, gap.last_offset, gap.last_epoch) == ("ttl", 1, old.epoch)
    assert gap.new_epoch != old.epoch
    after = await pub.publish("ttl", "after")
    [msg] = await collect(stream, 1)
    assert isinstance(msg, Message) and (msg.offset, msg.epoch) == (after.offset, after.epoch)


async def test_server_restart_with_a_new_epoch_is_a_gap(make_client: MakeClient) -> None:
    port = free_port()
    settings = Settings(host="127.0.0.1", port=port, admin_port=None, allow_anonymous=True)
    url = f"ws://127.0.0.1:{port}/ws"
    gaps: list[Gap] = []
    async with running(settings):
        sub = await make_client(url, on_gap=gaps.append)
        await sub.subscribe("r")
        pub = await make_client(url)
        before = await pub.publish("r", "old")
        await until(lambda: position(sub, "r") == (1, before.epoch))
    await until(lambda: sub.close_codes)
    # A shutdown without a drain closes with 1001 (going away); the client reconnects.
    assert sub.close_codes == [1001]
    async with running(settings):
        await sub.wait_for_state(ClientState.OPEN, 5.0)
        await until(lambda: len(gaps) == 1)
        assert gaps[0].last_offset == 1 and gaps[0].last_epoch == before.epoch
        assert gaps[0].new_epoch != before.epoch
        ack = await sub.publish("r", "new")
        assert ack.epoch == gaps[0].new_epoch


# -- the queue while disconnected --------------------------------------------------------------


async def test_requests_made_while_disconnected_are_sent_in_order_on_reconnect(
    server: LiveServer, make_client: MakeClient
) -> None:
    delay = [0.0]
    c = await make_client(server.url, max_queue=3, uniform=lambda lo, hi: delay[0])
    delay[0] = 0.3
    server_conn(server, c).close(1012, "restart")
    await c.wait_for_state(ClientState.RECONNECTING, 5.0)
    pending = [asyncio.create_task(c.publish("q", i)) for i in range(3)]
    await asyncio.sleep(0)  # one turn of the loop: the three are in the queue
    with pytest.raises(QueueFull):
        await c.publish("q", "overflow")
    acks = await asyncio.gather(*pending)
    assert [a.offset for a in acks] == [1, 2, 3]
    assert [m.data for m in await c.history("q")] == [0, 1, 2]


async def test_a_timed_out_queued_request_is_withdrawn(
    server: LiveServer, make_client: MakeClient
) -> None:
    delay = [0.0]
    c = await make_client(server.url, uniform=lambda lo, hi: delay[0])
    delay[0] = 0.3
    server_conn(server, c).close(1012, "restart")
    await c.wait_for_state(ClientState.RECONNECTING, 5.0)
    with pytest.raises(RequestTimeout):
        await c.publish("t", "late", timeout=0.05)
    await c.wait_for_state(ClientState.OPEN, 5.0)
    assert await c.history("t") == []


async def test_closing_fails_pending_requests_and_ends_streams(peer: Peer) -> None:
    # The peer never answers: both requests are sent and still pending when close() comes.
    c = Client(peer.url, request_timeout=None)
    await c.connect(timeout=5.0)
    stream = c.events()
    publish = asyncio.create_task(c.publish("x", 1))
    subscribe = asyncio.create_task(c.subscribe("y"))
    await until(lambda: len(peer.frames) == 2)
    assert [json.loads(f)["op"] for f in peer.frames] == ["publish", "subscribe"]
    assert not publish.done() and not subscribe.done()
    await c.close()
    done, _ = await asyncio.wait({publish, subscribe}, timeout=5.0)
    assert done == {publish, subscribe}, "close() left requests pending"
    for task in (publish, subscribe):
        error = task.exception()
        assert isinstance(error, ClientClosed) and str(error) == "client closed", repr(error)
    assert c.state is ClientState.CLOSED and c.rooms == []
    with pytest.raises(ClientClosed, match="client is closed"):
        await c.publish("x", 2)
    with pytest.raises(StopAsyncIteration):  # the stream ends, it does not hang
        await asyncio.wait_for(stream.__anext__(), 5.0)
