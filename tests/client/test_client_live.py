"""The client against a real in-process server: requests, events, connecting, tokens.

Reconnects, resume and the offline queue are in ``test_client_resume_live.py``.
"""

from __future__ import annotations

import asyncio

import aiohttp
import jwt
import pytest
from aiohttp import web

from tests.client.conftest import (
    SECRET,
    MakeClient,
    Peer,
    collect,
    server_conn,
    token,
)
from tests.conftest import LiveServer, ServerFactory
from tests.support.ports import free_port, serving
from tests.support.tokens import SECRET as TOKEN_SECRET
from tests.support.tokens import claims, hs
from tests.support.waits import until
from wsops.client import (
    AuthError,
    Client,
    ClientState,
    CloseInfo,
    ConnectTimeout,
    Message,
    PresenceEvent,
    RequestTimeout,
    ServerError,
    SubscriptionLost,
)

# -- requests ----------------------------------------------------------------------------------


async def test_publish_is_acked_and_delivered_to_subscribers_in_order(
    server: LiveServer, make_client: MakeClient
) -> None:
    got: list[Message] = []
    sub = await make_client(server.url, on_message=got.append)
    stream = sub.events()
    res = await sub.subscribe("chat")
    assert (res.room, res.offset, res.recovered) == ("chat", 0, None)
    pub = await make_client(server.url)
    acks = [await pub.publish("chat", {"n": i}) for i in range(5)]
    assert [a.offset for a in acks] == [1, 2, 3, 4, 5]
    assert {a.epoch for a in acks} == {res.epoch}
    events = await collect(stream, 5)
    assert [(e.offset, e.data) for e in events if isinstance(e, Message)] == [
        (i + 1, {"n": i}) for i in range(5)
    ]
    assert [m.offset for m in got] == [1, 2, 3, 4, 5]


async def test_concurrent_publishes_keep_call_order(
    server: LiveServer, make_client: MakeClient
) -> None:
    pub = await make_client(server.url)
    acks = await asyncio.gather(*(pub.publish("burst", i) for i in range(50)))
    assert [a.offset for a in acks] == list(range(1, 51))
    assert [m.data for m in await pub.history("burst", limit=50)] == list(range(50))


async def test_error_reply_raises_server_error(server: LiveServer, make_client: MakeClient) -> None:
    c = await make_client(server.url)
    with pytest.raises(ServerError) as info:
        await c.publish("bad room!", 1)
    assert info.value.code == "invalid_room"
    with pytest.raises(ServerError):
        await c.subscribe("bad room!")
    assert c.rooms == []


async def test_history_returns_the_latest_messages(
    server: LiveServer, make_client: MakeClient
) -> None:
    c = await make_client(server.url)
    for i in range(6):
        await c.publish("h", i)
    msgs = await c.history("h", limit=3)
    assert [(m.room, m.offset, m.data) for m in msgs] == [("h", 4, 3), ("h", 5, 4), ("h", 6, 5)]


async def test_presence_lists_users_and_emits_join_and_leave(
    server_factory: ServerFactory, make_client: MakeClient
) -> None:
    server = await server_factory(jwt_secret=SECRET, allow_anonymous=False)
    seen: list[PresenceEvent] = []
    alice = await make_client(server.url, token("alice", ["*"]), on_presence=seen.append)
    await alice.subscribe("lobby", presence=True)
    bob = await make_client(server.url, token("bob", ["lobby"]))
    await bob.subscribe("lobby")
    assert await alice.presence("lobby") == ["alice", "bob"]
    await bob.unsubscribe("lobby")
    await until(lambda: len(seen) >= 3)
    assert seen == [  # a subscriber sees its own join too
        PresenceEvent("join", "lobby", "alice"),
        PresenceEvent("join", "lobby", "bob"),
        PresenceEvent("leave", "lobby", "bob"),
    ]
    with pytest.raises(ServerError) as info:
        await bob.publish("elsewhere", 1)
    assert info.value.code == "forbidden"


async def test_unsubscribe_stops_delivery(server: LiveServer, make_client: MakeClient) -> None:
    got: list[Message] = []
    c = await make_client(server.url, on_message=got.append)
    await c.subscribe("u")
    await c.publish("u", 1)
    await until(lambda: len(got) == 1)
    await c.unsubscribe("u")
    await c.unsubscribe("u")  # twice is fine
    await c.subscribe("u-marker")
    await c.publish("u", 2)
    # One publisher's messages are delivered in order: a delivery of "u" would come first.
    await c.publish("u-marker", "end")
    await until(lambda: got and got[-1].room == "u-marker")
    assert [(m.room, m.data) for m in got] == [("u", 1), ("u-marker", "end")]


# -- connecting --------------------------------------------------------------------------------


async def test_refused_token_raises_auth_error_and_closes(server_factory: ServerFactory) -> None:
    server = await server_factory(jwt_secret=SECRET, allow_anonymous=False)
    client = Client(server.url, "not-a-jwt", backoff_base=0.01, backoff_cap=0.05)
    with pytest.raises(AuthError) as info:
        await client.connect(timeout=5.0)
    assert info.value.status == 401
    assert client.state is ClientState.CLOSED


@pytest.mark.parametrize(("token", "reason"), [
    (None, "HTTP 401: missing token"),
    ("not-a-jwt", "HTTP 401: malformed token: Not enough segments"),
    (hs(exp=1), "HTTP 401: token expired"),
    (jwt.encode(claims(), TOKEN_SECRET, algorithm="HS384"),
     "HTTP 401: algorithm 'HS384' is not accepted"),
])
async def test_a_refused_token_says_what_the_server_said(
        server_factory: ServerFactory, token: str | None, reason: str) -> None:
    server = await server_factory(jwt_secret=TOKEN_SECRET, allow_anonymous=False)
    client = Client(server.url, token, backoff_base=0.01, backoff_cap=0.05)
    with pytest.raises(AuthError) as info:
        await client.connect(timeout=5.0)
    assert str(info.value) == reason


async def test_full_node_503_is_retried_until_a_slot_frees(
    server_factory: ServerFactory, make_client: MakeClient
) -> None:
    server = await server_factory(max_connections=1)
    first = await make_client(server.url)
    states: list[ClientState] = []
    second = Client(server.url, backoff_base=0.01, backoff_cap=0.05, on_state=states.append)
    try:
        second.start()
        await until(lambda: server.node.handshake_failures.get("full", 0) >= 3)
        assert second.state is ClientState.CONNECTING  # refused (503) and retrying
        await first.close()
        await second.wait_for_state(ClientState.OPEN, 5.0)
        assert (await second.publish("x", 1)).offset == 1
    finally:
        await second.close()
    assert states == [ClientState.CONNECTING, ClientState.OPEN, ClientState.CLOSED]
    assert second.close_codes == [1000]


async def test_connect_timeout_closes_the_client_and_says_why_attempts_failed() -> None:
    client = Client(f"ws://127.0.0.1:{free_port()}/ws", backoff_base=0.01, backoff_cap=0.05)
    with pytest.raises(ConnectTimeout) as info:
        await client.connect(timeout=0.2)
    assert isinstance(info.value, TimeoutError)
    assert str(info.value).startswith("no connection within 0.2 s; the last connection attempt "
                                      "failed: ClientConnectorError: Cannot connect to host")
    assert client.state is ClientState.CLOSED


@pytest.mark.parametrize(("full", "reason"), [(True, "node is full"),
                                              (False, "node is draining")])
async def test_a_refused_upgrade_says_what_the_server_said(
        server_factory: ServerFactory, make_client: MakeClient, full: bool, reason: str) -> None:
    # aiohttp's ws_connect closes a refused upgrade's body unread: the client reads it first.
    server = await server_factory(max_connections=1)
    if full:
        await make_client(server.url)
    else:
        server.node.drain(deadline=0.1)
    client = Client(server.url, backoff_base=0.01, backoff_cap=0.05)
    with pytest.raises(ConnectTimeout) as info:
        await client.connect(timeout=0.5)
    assert info.value.refused == f"HTTP 503: {reason}"
    assert str(info.value) == f"no connection within 0.5 s; the last connection attempt " \
                              f"failed: HTTP 503: {reason}"


async def test_a_session_passed_in_names_the_status_of_a_refusal(
        server_factory: ServerFactory, make_client: MakeClient) -> None:
    server = await server_factory(max_connections=1)
    await make_client(server.url)
    async with aiohttp.ClientSession() as session:  # no hook of ours: the body is not read
        client = Client(server.url, session=session, backoff_base=0.01, backoff_cap=0.05)
        with pytest.raises(ConnectTimeout, match=r"HTTP 503: Service Unavailable$"):
            await client.connect(timeout=0.5)


async def test_a_403_without_a_challenge_gives_the_body_as_the_reason() -> None:
    async def refuse(request: web.Request) -> web.Response:
        raise web.HTTPForbidden(text="this service is closed to you")

    app = web.Application()
    app.router.add_get("/ws", refuse)
    async with serving(app) as port:
        client = Client(f"ws://127.0.0.1:{port}/ws", backoff_base=0.01, backoff_cap=0.05)
        with pytest.raises(AuthError) as info:
            await client.connect(timeout=5.0)
    assert (info.value.status, info.value.reason) == (403, "this service is closed to you")
    assert str(info.value) == "HTTP 403: this service is closed to you"


async def test_a_request_the_server_closes_on_times_out_with_the_close_code_and_reason(
        server_factory: ServerFactory, make_client: MakeClient) -> None:
    server = await server_factory(max_message_size=1024)
    client = await make_client(server.url)
    with pytest.raises(RequestTimeout) as info:
        # Closed with 1009 on every connection it is sent on, until its timeout.
        await client.publish("big", "x" * 2000, timeout=1.0)
    closed = CloseInfo(1009, "message bigger than 1024 bytes")
    assert info.value.closed == closed
    assert str(info.value).startswith(
        "no reply within 1.0 s; the server closed the connection with 1009 (message bigger "
        "than 1024 bytes)")
    assert client.closes[0] == closed and client.close_codes[0] == 1009
    await client.wait_for_state(ClientState.OPEN, 5.0)
    assert (await client.publish("small", "x")).offset == 1


async def test_a_request_on_a_healthy_connection_times_out_without_a_cause(
        peer: Peer, make_client: MakeClient) -> None:
    client = await make_client(peer.url)  # a peer that never answers
    with pytest.raises(RequestTimeout) as info:
        await client.publish("r", 1, timeout=0.2)
    assert str(info.value) == "no reply within 0.2 s"
    assert (info.value.closed, info.value.refused) == (None, None)


async def test_context_manager_closes_with_1000(server: LiveServer) -> None:
    async with Client(server.url) as client:
        assert client.state is ClientState.OPEN
        stream = client.events()
    assert client.state.value == "closed"
    assert client.close_codes == [1000]
    assert [e async for e in stream] == []  # the iterator ends when the client closes


# -- tokens, callbacks ---------------------------------------------------------------------------


async def test_token_callable_is_asked_on_every_connection_and_a_lost_grant_is_reported(
    server_factory: ServerFactory, make_client: MakeClient
) -> None:
    server = await server_factory(jwt_secret=SECRET, allow_anonymous=False)
    grants = [["news", "chat:*"]]
    calls: list[int] = []

    def fresh_token() -> str:
        calls.append(1)
        return token("carol", grants[0])

    lost: list[SubscriptionLost] = []
    c = await make_client(server.url, fresh_token, on_lost=lost.append)
    stream = c.events()
    await c.subscribe("news")
    await c.subscribe("chat:1")
    grants[0] = ["chat:*"]  # the next token no longer grants "news"
    server_conn(server, c).close(1008, "token expired")
    await until(lambda: len(lost) == 1)
    assert len(calls) == 2
    assert lost == [SubscriptionLost("news", "forbidden", lost[0].message)]
    assert c.rooms == ["chat:1"]
    events = await collect(stream, 1)
    assert events == lost
    assert c.closes == [CloseInfo(1008, "token expired")]


async def test_a_server_side_unsubscribe_drops_the_room_for_good(
    server_factory: ServerFactory, make_client: MakeClient
) -> None:
    """The server API's ``unsubscribe``: the client hears SubscriptionLost("unsubscribed"),
    gets none of the room's messages, and does not resubscribe it after a reconnect."""
    server = await server_factory(jwt_secret=SECRET, allow_anonymous=False)
    lost: list[SubscriptionLost] = []
    got: list[Message] = []
    c = await make_client(server.url, token("dave", ["*"]), on_lost=lost.append,
                          on_message=got.append)
    await c.subscribe("news")
    await c.subscribe("chat:1")
    taken = await server.node.orders.unsubscribe("dave", "news", "muted for an hour")
    assert taken == 1
    await until(lambda: len(lost) == 1)
    assert lost == [SubscriptionLost("news", "unsubscribed", "muted for an hour")]
    assert c.rooms == ["chat:1"]
    server_conn(server, c).close(1012, "restart")  # a reconnect resubscribes chat:1 alone
    await until(lambda: len(c.closes) == 1 and c.state.value == "open")
    await c.publish("news", "after")
    await c.publish("chat:1", "marker")
    await until(lambda: bool(got) and got[-1].data == "marker")
    assert [(m.room, m.data) for m in got] == [("chat:1", "marker")]
    assert await c.subscribe("news")  # the app may subscribe again
    assert c.rooms == ["chat:1", "news"]


async def test_async_callbacks_are_run(server: LiveServer, make_client: MakeClient) -> None:
    got: list[int] = []

    async def on_message(msg: Message) -> None:
        await asyncio.sleep(0)
        got.append(msg.offset)

    c = await make_client(server.url, on_message=on_message)
    await c.subscribe("cb")
    for i in range(3):
        await c.publish("cb", i)
    await until(lambda: len(got) == 3)
    assert sorted(got) == [1, 2, 3]


async def test_heartbeat_pings_the_server_and_answered_pings_keep_the_connection(
    peer: Peer, make_client: MakeClient
) -> None:
    # A pong may take up to heartbeat / 2: 0.5 s, ample on a loaded machine.
    c = await make_client(peer.url, heartbeat=1.0)
    await until(lambda: peer.pings >= 2, 10.0)
    assert c.state is ClientState.OPEN and c.close_codes == []


async def test_heartbeat_notices_a_peer_that_stopped_answering_and_reconnects(
    peer: Peer, make_client: MakeClient
) -> None:
    peer.pong = False  # the TCP connection stays up, the peer is dead: only pings tell
    c = await make_client(peer.url, heartbeat=0.2)
    await until(lambda: c.close_codes, 5.0)
    assert c.close_codes[0] == 1006 and peer.pings >= 1
    await c.wait_for_state(ClientState.OPEN, 5.0)  # and it connects again
