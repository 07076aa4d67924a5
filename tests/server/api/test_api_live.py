"""The server API on a live node (``--api-port``): each method against real connections, the
refusals (keys, signatures, sizes, rates) applying nothing, and the API's absence from the
WebSocket and admin ports."""

from __future__ import annotations

import json
import time
from typing import Any

import aiohttp
import pytest

from tests.conftest import Connect, LiveServer, ServerFactory
from tests.support.scrape import scrape
from tests.support.tokens import SECRET, hs
from wsops.server.api.keys import sign

KEY, OLD_KEY = "k" * 32, "o" * 32


@pytest.fixture
def api_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WSOPS_API_KEYS", f"{KEY},{OLD_KEY}")


def api_url(server: LiveServer) -> str:
    assert server.node.api is not None
    return server.node.api.url


async def post(server: LiveServer, method: str, body: Any = None, *, key: str | None = KEY,
               raw: bytes | None = None, headers: dict[str, str] | None = None
               ) -> tuple[int, Any]:
    sent = {"Authorization": f"Bearer {key}"} if key else {}
    data = raw if raw is not None else json.dumps(body if body is not None else {}).encode()
    async with aiohttp.ClientSession() as s, s.post(
            f"{api_url(server)}/api/{method}", data=data,
            headers={**sent, "Content-Type": "application/json", **(headers or {})}) as r:
        return r.status, await r.json(content_type=None)


async def test_every_method_on_one_node(api_keys: None, server_factory: ServerFactory,
                                        connect: Connect) -> None:
    server = await server_factory(api_port=0, allow_anonymous=False, jwt_secret=SECRET)
    alice = await connect(server.url, headers={"Authorization": f"Bearer {hs(sub='alice')}"})
    bob = await connect(server.url, headers={"Authorization": f"Bearer {hs(sub='bob')}"})
    for c in (alice, bob):
        assert (await c.call("subscribe", "chat:1", presence=True))["ok"]
    assert (await bob.call("subscribe", "news"))["ok"]
    # publish: stored with an offset, delivered like any publish (without a sender)
    status, got = await post(server, "publish", {"room": "chat:1", "data": {"text": "hi"}})
    assert status == 200 and got == {"room": "chat:1", "offset": 1, "epoch": got["epoch"]}
    msg = (await alice.messages(1))[0]
    assert (msg["room"], msg["offset"], msg["data"]) == ("chat:1", 1, {"text": "hi"})
    assert "from" not in msg
    status, got = await post(server, "broadcast", {"rooms": ["chat:1", "news"], "data": 2})
    assert status == 200 and [(r["room"], r["offset"]) for r in got["results"]] == [
        ("chat:1", 2), ("news", 1)]
    assert [(m["room"], m["data"]) for m in await bob.messages(3)] == [
        ("chat:1", {"text": "hi"}), ("chat:1", 2), ("news", 2)]
    # history: what was published, resumable by offset
    status, got = await post(server, "history", {"room": "chat:1", "limit": 10})
    assert status == 200 and [(m["offset"], m["data"]) for m in got["messages"]] == [
        (1, {"text": "hi"}), (2, 2)]
    assert got["offset"] == 2 and got["room"] == "chat:1"
    status, got = await post(server, "presence", {"room": "chat:1"})
    assert status == 200 and got == {"room": "chat:1", "users": ["alice", "bob"]}
    assert (await post(server, "presence_stats", {"room": "chat:1"}))[1] == {
        "room": "chat:1", "users": 2}
    status, got = await post(server, "rooms", {"pattern": "chat:*"})
    assert got == {"scope": "node", "rooms": [{"room": "chat:1", "connections": 2}],
                   "truncated": False}
    assert (await post(server, "rooms", {"limit": 1}))[1]["truncated"] is True
    status, got = await post(server, "info")
    assert status == 200 and len(got["nodes"]) == 1 and got["nodes"][0]["started_at"] > 0
    # batch: each call answered, in order, a bad one among them
    status, got = await post(server, "batch", {"calls": [
        {"method": "publish", "params": {"room": "news", "data": 3}},
        {"method": "presence", "params": {"room": "bad room"}},
        {"method": "presence_stats", "params": {"room": "news"}}]})
    assert status == 200 and got["replies"][0]["result"]["offset"] == 2
    assert got["replies"][1]["error"]["code"] == "invalid_room"
    assert got["replies"][2] == {"result": {"room": "news", "users": 1}}  # bob
    # disconnect: every connection of the user, with 4002 by default
    status, got = await post(server, "disconnect", {"user": "bob"})
    assert status == 200 and got == {"disconnected": 1}
    assert await bob.wait_closed() == 4002
    assert (await post(server, "disconnect", {"user": "bob"}))[1] == {"disconnected": 0}
    assert (await post(server, "presence", {"room": "chat:1"}))[1]["users"] == ["alice"]
    # unsubscribe: alice out of chat:1, told so; nothing more of it after that
    assert (await alice.call("publish", "chat:1", data="alice's"))["ok"]
    status, got = await post(server, "unsubscribe", {"user": "alice", "room": "chat:1"})
    assert status == 200 and got == {"unsubscribed": 1}
    seen = await alice.events_until(lambda e: e["op"] == "unsubscribed")
    assert seen[-1] == {"op": "unsubscribed", "room": "chat:1",
                        "reason": "unsubscribed by the server API"}
    assert (await post(server, "presence", {"room": "chat:1"}))[1]["users"] == []
    assert (await alice.call("unsubscribe", "chat:1"))["error"]["code"] == "not_subscribed"
    metrics = await scrape(server.admin_url)
    assert metrics.get("wsops_api_calls_total", method="publish", outcome="ok") == 1
    assert metrics.get("wsops_api_calls_total", method="batch", outcome="ok") == 1
    assert metrics.get("wsops_api_calls_total", method="unsubscribe", outcome="ok") == 1
    # stored publishes by source: publish 1, broadcast 2, batch 1; alice's own
    assert metrics.get("wsops_publishes_total", source="api") == 4
    assert metrics.get("wsops_publishes_total", source="client") == 1


async def test_refusals_apply_nothing(api_keys: None, server_factory: ServerFactory) -> None:
    server = await server_factory(api_port=0, api_max_body=8192, api_rate=0.01)

    async def offset() -> int:
        got = await post(server, "history", {"room": "r", "limit": 1}, key=OLD_KEY)
        return int(got[1]["offset"])

    publish = {"room": "r", "data": 1}
    for key, said in ((None, "no API key"), ("w" * 32, "unknown API key")):
        status, got = await post(server, "publish", publish, key=key)
        assert status == 401 and said in got["error"]["message"]
    assert (await post(server, "publish", publish, key=OLD_KEY))[0] == 200  # rotation
    status, got = await post(server, "publish", raw=b'{"room":"r","data":"' + b"x" * 9000
                             + b'"}')
    assert status == 413 and "at most 8192" in got["error"]["message"]
    status, got = await post(server, "batch", {"calls": [
        {"method": "publish", "params": publish}] * 101})
    assert status == 400 and "1-100 calls" in got["error"]["message"]
    status, got = await post(server, "nope")
    assert status == 404 and got["error"]["code"] == "unknown_op"
    assert await offset() == 1  # only the rotated key's publish was stored
    # the rate: 0.01/s with a burst of 100 (a batch's size): past it, 429, nothing applied
    status, got = await post(server, "batch", {"calls": [
        {"method": "publish", "params": publish}] * 100})
    assert status == 200 and len(got["replies"]) == 100, got
    status, got = await post(server, "publish", publish)
    assert status == 429 and got["error"]["code"] == "rate_limited"
    assert await offset() == 101


async def test_signed_requests(api_keys: None, server_factory: ServerFactory) -> None:
    server = await server_factory(api_port=0, api_signatures=True)
    body = json.dumps({"room": "r", "data": 1}).encode()

    def headers(at: float, key: str = KEY, path: str = "/api/publish") -> dict[str, str]:
        ts = f"{at:.0f}"
        return {"X-Wsops-Timestamp": ts, "X-Wsops-Signature": sign(key, ts, "POST", path,
                                                                    body)}

    status, got = await post(server, "publish", raw=body)
    assert status == 401 and "requires signed requests" in got["error"]["message"]
    now = time.time()
    good = headers(now)
    assert (await post(server, "publish", raw=body, headers=good))[0] == 200
    status, got = await post(server, "publish", raw=body, headers=good)
    assert status == 401 and "replay" in got["error"]["message"]
    status, got = await post(server, "publish", raw=body, headers=headers(now - 400))
    assert status == 401 and "from this node's clock" in got["error"]["message"]
    status, got = await post(server, "publish", raw=body, headers=headers(now + 1, OLD_KEY))
    assert status == 401 and "bad signature" in got["error"]["message"]  # sent with KEY
    status, got = await post(server, "history", {"room": "r"}, headers=headers(now + 2))
    assert status == 401  # a signature of another body and path
    signed_history = json.dumps({"room": "r"}).encode()
    ts = f"{now + 3:.0f}"
    status, got = await post(server, "history", raw=signed_history, headers={
        "X-Wsops-Timestamp": ts,
        "X-Wsops-Signature": sign(KEY, ts, "POST", "/api/history", signed_history)})
    assert status == 200 and got["offset"] == 1  # one publish stored


async def test_the_api_is_only_on_its_own_listener(api_keys: None,
                                                   server_factory: ServerFactory) -> None:
    server = await server_factory(api_port=0)
    async with aiohttp.ClientSession() as s:
        for base in (f"http://127.0.0.1:{server.port}", server.admin_url):
            async with s.post(base + "/api/publish", json={"room": "r", "data": 1},
                              headers={"Authorization": f"Bearer {KEY}"}) as r:
                assert r.status in (404, 405), (base, r.status)
        async with s.get(api_url(server) + "/api/openapi.json") as r:
            assert r.status == 200 and (await r.json())["openapi"] == "3.1.0"
        async with s.get(api_url(server) + "/admin/stats") as r:
            assert r.status in (404, 405)


async def test_a_node_without_keys_refuses_to_start_the_api(
        monkeypatch: pytest.MonkeyPatch, server_factory: ServerFactory) -> None:
    monkeypatch.delenv("WSOPS_API_KEYS", raising=False)
    with pytest.raises(ValueError, match="needs at least one key"):
        await server_factory(api_port=0)


def test_check_config_shows_the_api_and_refuses_it_without_keys_or_with_workers(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from wsops.config import Settings
    from wsops.ops.serve import check_config

    monkeypatch.setenv("WSOPS_API_KEYS", f"{KEY},{OLD_KEY}")
    lines = check_config(Settings(allow_anonymous=True, api_port=9700, api_signatures=True))
    assert "api: http://127.0.0.1:9700/api/ (2 keys, signed requests)" in lines
    assert "api: off" in check_config(Settings(allow_anonymous=True))
    with pytest.raises(ValueError, match="not served by a --workers node"):
        check_config(Settings(allow_anonymous=True, api_port=9700, workers=2))
    monkeypatch.setenv("WSOPS_API_KEYS", "short")
    with pytest.raises(ValueError, match="key 1 has 5 characters"):
        check_config(Settings(allow_anonymous=True, api_port=9700))
    with pytest.raises(ValueError, match="api_port must differ"):
        Settings(api_port=8765)


async def test_the_api_listener_holds_its_connection_cap(api_keys: None,
                                                         server_factory: ServerFactory) -> None:
    import asyncio

    server = await server_factory(api_port=0, api_max_connections=1)
    assert server.node.api is not None
    port = server.node.api.port
    first = await asyncio.open_connection("127.0.0.1", port)  # holds the one slot
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answer = await asyncio.wait_for(reader.read(), 5)
    assert answer.startswith(b"HTTP/1.1 503") and answer.endswith(
        b"api listener is at its connection cap: retry shortly\n")
    for w in (first[1], writer):
        w.close()


async def test_an_api_publish_carries_the_callers_trace(api_keys: None,
                                                        connect: Connect) -> None:
    """A backend's traceparent makes the node's publish span its child, and subscribers get
    the message with the trace's context (the same trace id, the caller's tracestate)."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from wsops.config import Settings
    from wsops.server.app import NODE_KEY, running

    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    settings = Settings(port=0, admin_port=None, api_port=0, allow_anonymous=True,
                        tracing=True, trace_sample_ratio=0.0)
    trace_id, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    async with running(settings, tracer_provider=provider) as (app, _, port):
        node = app[NODE_KEY]
        sub = await connect(f"ws://127.0.0.1:{port}/ws")
        assert (await sub.call("subscribe", "orders:1"))["ok"]
        assert node.api is not None
        async with aiohttp.ClientSession() as s, s.post(
                node.api.url + "/api/publish", headers={"Authorization": f"Bearer {KEY}"},
                json={"room": "orders:1", "data": 1, "tracestate": "rojo=00f067aa0ba902b7",
                      "traceparent": f"00-{trace_id}-{parent}-01"}) as r:
            assert r.status == 200
        [msg] = await sub.messages(1)
        assert msg["traceparent"].split("-")[1] == trace_id
        assert msg["tracestate"] == "rojo=00f067aa0ba902b7"
        async with aiohttp.ClientSession() as s, s.post(  # unsampled, ratio 0: no span
                node.api.url + "/api/publish", headers={"Authorization": f"Bearer {KEY}"},
                json={"room": "orders:1", "data": 2}) as r:
            assert r.status == 200
        await sub.messages(1)
    publishes = [sp for sp in exported.get_finished_spans() if sp.name.startswith("publish")]
    assert len(publishes) == 1
    span = publishes[0]
    assert f"{span.context.trace_id:032x}" == trace_id
    assert span.parent is not None and f"{span.parent.span_id:016x}" == parent
    assert span.context.trace_state.to_header() == "rojo=00f067aa0ba902b7"


async def test_a_node_skips_its_own_orders_when_they_come_back(server_factory: ServerFactory,
                                                               connect: Connect) -> None:
    """An order is applied where it is given, then sent to the fleet; the giver skips it when
    it comes back, so a user who is back in the meantime is not hit twice. Another node's
    order (another sender) is applied."""
    from wsops.server.core.broker import Published
    from wsops.server.core.control import CONTROL_ROOM, unsubscribe_order
    from wsops.server.core.protocol import message_payload, text_frame

    server = await server_factory(allow_anonymous=False, jwt_secret=SECRET)
    orders = server.node.orders
    alice = await connect(server.url, headers={"Authorization": f"Bearer {hs(sub='alice')}"})
    assert (await alice.call("subscribe", "chat:1"))["ok"]

    def order_from(sender: str) -> Published:
        payload = message_payload(CONTROL_ROOM, 1, "e", unsubscribe_order("alice", "chat:1", "x"),
                                  0, sender=sender)
        return Published(CONTROL_ROOM, 1, "e", text_frame(payload))

    orders.on_control(order_from(orders.origin))  # its own: skipped
    assert "chat:1" in next(iter(server.node.hub.conns.values())).rooms
    orders.on_control(order_from("$node:another"))
    assert (await alice.next_event())["op"] == "unsubscribed"
