"""wsops-client.js against real ``wsops serve`` processes, in headless Chromium and in Node.

Every scenario runs in both hosts (see hosts.py): connect, subscribe, receive, publish,
presence, history, traceparent; a restart of a node without history (an explicit gap, and the
requests queued meanwhile go out once, the queue bounded); tokens fetched again per attempt;
and a fleet behind HAProxy whose nodes are drained, restarted and killed under a steady publish
(one client through HAProxy, one on the restarted node itself), checked by message numbers:
every acknowledged message delivered once, in order.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from tests.client_js.hosts import NODE, PAGE_TRACEPARENT, ChromiumHost, JsError, NodeHost, js_host
from tests.client_js.servers import Server, fleet_example
from tests.support.artifacts import record
from tests.support.chromium import CHROMIUM
from tests.support.examples import BROKER_OPTIONS, need_binaries
from tests.support.waits import until
from wsops.client import Client, Message

KINDS = ["node", "chromium"]
JS_WAIT = 20.0  # seconds: the JS hosts take their time
Host = NodeHost | ChromiumHost


def need(kind: str) -> None:
    if kind == "node" and NODE is None:
        pytest.skip("node is not installed")
    if kind == "chromium" and CHROMIUM is None:
        pytest.skip("chromium is not installed (scripts/test.sh installs it)")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path, "--allow-anonymous")
    s.start()
    yield s
    s.stop(signal.SIGKILL)


async def received(js: Host, name: str, room: str, count: int, timeout: float = JS_WAIT) -> Any:
    async def enough() -> Any:
        got = await js.call("received", name, room)
        return got if len(got) >= count else None

    try:
        return await until(enough, timeout)
    except AssertionError:
        summary = await js.call("summary", name)
        raise AssertionError(f"{name} did not receive {count} messages: {summary}; "
                             f"log: {js.stderr[-20:]}") from None


@pytest.mark.parametrize("kind", KINDS)
async def test_subscribe_receive_publish_presence_history(kind: str, server: Server) -> None:
    need(kind)
    async with js_host(kind, server.client_url) as js:
        assert await js.call("open", "a", server.url, js.client_options()) == "open"
        sub = await js.call("subscribe", "a", "room1", {"presence": True})
        assert sub == {"room": "room1", "offset": 0, "epoch": sub["epoch"], "recovered": None}
        seen: list[Message] = []
        async with Client(server.url, on_message=seen.append) as py:
            await py.subscribe("room1")
            for i in range(1, 21):
                await py.publish("room1", {"n": i})
            assert await received(js, "a", "room1", 20) == [{"n": i} for i in range(1, 21)]
            assert [p[0] for p in await js.call("positions", "a", "room1")] == list(range(1, 21))

            ack = await js.call("publish", "a", "room1", {"n": 21, "text": "hé \u2603"})
            assert ack == {"room": "room1", "offset": 21, "epoch": sub["epoch"], "local": False}
            await until(lambda: len(seen) == 21, JS_WAIT)
            assert seen[-1].data == {"n": 21, "text": "hé \u2603"}
            assert len(await js.call("presence", "a", "room1")) == 2

        # The page's traceparent went out with the publish and came back on the message.
        trace_id = PAGE_TRACEPARENT.split("-")[1]
        summary = await js.call("summary", "a")
        assert any(tp.split("-")[1] == trace_id for tp in summary["traceparents"])
        history = await js.call("history", "a", "room1", 5)
        assert [m["data"]["n"] for m in history] == [17, 18, 19, 20, 21]
        assert [m["offset"] for m in history] == [17, 18, 19, 20, 21]

        # A second client joining with presence: the first gets its join event. Each
        # subscriber's first event is its own join: that is how the test learns the user ids.
        await js.call("open", "b", server.url)
        await js.call("subscribe", "b", "room1", {"presence": True})
        me = (await _presence(js, "a"))[0]["user"]
        b_user = (await until(lambda: _presence(js, "b"), JS_WAIT))[0]["user"]
        assert await js.call("presence", "b", "room1") == sorted([me, b_user])
        joined = {"kind": "join", "room": "room1", "user": b_user}
        await until(lambda: _has(js, "a", joined), JS_WAIT)

        # Errors come back typed; a closed client refuses requests.
        with pytest.raises(JsError) as refused:
            await js.call("subscribe", "b", "bad room!")
        assert (refused.value.name, refused.value.code) == ("ServerError", "invalid_room")
        assert await js.call("close", "b") == "closed"
        with pytest.raises(JsError) as closed:
            await js.call("publish", "b", "room1", 1)
        assert closed.value.name == "ClientClosedError"
        # Closing b is b leaving: a is told exactly that, once.
        left = {"kind": "leave", "room": "room1", "user": b_user}
        await until(lambda: _has(js, "a", left), JS_WAIT)
        # a's whole presence log: itself, the Python client (joined and left), then b.
        joins, leaves = await _presence(js, "a"), await _presence(js, "a", "leave")
        py_user = joins[1]["user"]
        assert [p["user"] for p in joins] == [me, py_user, b_user]
        assert leaves == [{"kind": "leave", "room": "room1", "user": py_user}, left]
        assert len({me, py_user, b_user}) == 3


async def _presence(js: Host, name: str, kind: str = "join") -> list[dict[str, Any]]:
    return [p for p in (await js.call("summary", name))["presence"] if p["kind"] == kind]


async def _has(js: Host, name: str, event: dict[str, Any]) -> bool:
    return event in (await js.call("summary", name))["presence"]


@pytest.mark.parametrize("kind", KINDS)
async def test_restart_without_history_gap_and_bounded_queue(kind: str, server: Server) -> None:
    """The memory broker forgets rooms on restart: the client reports a gap, never a silent
    one; requests made while the node is down wait (up to maxQueue) and go out once."""
    need(kind)
    async with js_host(kind, server.client_url) as js:
        await js.call("open", "a", server.url, {"maxQueue": 2, "requestTimeoutMs": 30000})
        await js.call("subscribe", "a", "r")
        async with Client(server.url) as py:
            for i in range(1, 4):
                await py.publish("r", {"n": i})
        await received(js, "a", "r", 3)

        server.stop(signal.SIGTERM)  # drains: the client is told 1012
        await until(lambda: _state(js, "a", "reconnecting"), JS_WAIT)
        queued = asyncio.create_task(
            js.call("publishMany", "a", "r", [{"n": "q1"}, {"n": "q2"}, {"n": "q3"}]))
        await until(lambda: _pending(js, "a", 2), JS_WAIT)
        await asyncio.sleep(0.3)  # a few failed attempts against the stopped node
        server.start()
        outcomes = await asyncio.wait_for(queued, 20)
        assert outcomes[2] == {"error": "QueueFullError"}
        assert [o["offset"] for o in outcomes[:2]] == [1, 2]

        got = await received(js, "a", "r", 5)
        assert got == [{"n": 1}, {"n": 2}, {"n": 3}, {"n": "q1"}, {"n": "q2"}]
        summary = await js.call("summary", "a")
        [gap] = summary["gaps"]
        assert (gap["lastOffset"], gap["newOffset"]) == (3, 0)
        assert gap["newEpoch"] != gap["lastEpoch"]
        assert summary["reconnects"] == 1 and summary["closeCodes"][0] == 1012
        assert summary["pending"] == 0
        assert summary["states"][:3] == ["connecting", "open", "reconnecting"]
        assert [s["recovered"] for s in summary["subscribed"]] == [None, False]


async def _state(js: Host, name: str, state: str) -> bool:
    return bool((await js.call("summary", name))["state"] == state)


async def _pending(js: Host, name: str, n: int) -> bool:
    return bool((await js.call("summary", name))["pending"] == n)


@pytest.mark.parametrize("kind", KINDS)
async def test_token_fetched_again_for_each_attempt(kind: str, tmp_path: Path) -> None:
    need(kind)
    secret = "s3cret-for-tests-only-32-bytes-long!"
    server = Server(tmp_path, "--jwt-secret", secret)
    server.start()
    try:
        claims = {"sub": "alice", "exp": int(time.time()) + 600, "rooms": ["chat:*"]}
        good = jwt.encode(claims, secret, algorithm="HS256")
        bad = jwt.encode(claims, "not-the-secret-but-as-long-as-it", algorithm="HS256")
        async with js_host(kind, server.client_url) as js:
            # The first attempt is refused (401: a browser sees only a failed connection) and
            # the next one asks the token function again.
            await js.call("open", "a", server.url, {"tokens": [bad, good]})
            await js.call("subscribe", "a", "chat:lobby")
            assert await js.call("presence", "a", "chat:lobby") == ["alice"]
            with pytest.raises(JsError) as forbidden:
                await js.call("subscribe", "a", "admin")
            assert forbidden.value.code == "forbidden"
            summary = await js.call("summary", "a")
            assert summary["tokenCalls"] == 2 and summary["closeCodes"] == [1006]
    finally:
        server.stop(signal.SIGKILL)


@pytest.fixture
async def fleet() -> AsyncIterator[Any]:
    need_binaries()
    f = fleet_example.Fleet(broker_options=BROKER_OPTIONS)
    try:
        await asyncio.to_thread(f.start)
        yield f
    finally:
        await asyncio.to_thread(f.close)


def _connections(admin_url: str) -> int:
    with urllib.request.urlopen(admin_url + "/admin/stats", timeout=2) as r:
        return int(json.load(r)["connections"])


def _post(url: str) -> None:
    with urllib.request.urlopen(urllib.request.Request(url, data=b"{}", method="POST"), timeout=5):
        pass


@pytest.mark.parametrize("kind", KINDS)
async def test_no_loss_across_drain_and_kill_behind_haproxy(kind: str, fleet: Any) -> None:
    """Three nodes behind HAProxy; node2 only takes the publisher. Client a's node is drained
    (1012) and restarted, then the node a moved to is killed (-9); client b is connected to the
    drained node itself (no HAProxy), so it waits for that node's restart and resumes there. A
    publish every 10 ms (under the default rate limit of 100/s) never stops; both must get every
    message once, in order."""
    need(kind)
    fleet.haproxy_command("disable server nodes/node2")
    await asyncio.to_thread(fleet.wait_backends, {0, 1})
    node0 = fleet.nodes[0]
    async with js_host(kind, f"http://127.0.0.1:{node0.port}/static/wsops-client.js") as js:
        await js.call("open", "a", fleet.url)
        await js.call("subscribe", "a", "orders")
        [first] = [n for n in fleet.nodes[:2] if _connections(n.admin_url) == 1]
        [second] = [n for n in fleet.nodes[:2] if n is not first]
        await js.call("open", "b", first.url)
        await js.call("subscribe", "b", "orders")

        acked: list[int] = []
        stop = asyncio.Event()

        async def publish() -> None:
            async with Client(fleet.nodes[2].url) as py:
                n = 0
                while not stop.is_set():
                    n += 1
                    await py.publish("orders", {"n": n})
                    acked.append(n)
                    await asyncio.sleep(0.01)

        publisher = asyncio.create_task(publish())
        await until(lambda: len(acked) > 100, JS_WAIT)
        figures: dict[str, Any] = {"host": kind}

        # Drain the client's node: it is told 1012 and resumes through HAProxy on the other.
        t0 = time.monotonic()
        await asyncio.to_thread(_post, first.admin_url + "/admin/drain")
        await until(lambda: _reconnected(js, "a", 1), JS_WAIT)
        figures["drain_reconnect_s"] = round(time.monotonic() - t0, 3)
        await asyncio.to_thread(first.proc.stop, signal.SIGTERM)
        first.proc.start()
        await asyncio.to_thread(fleet.wait_ready, first)
        await until(lambda: _reconnected(js, "b", 1), JS_WAIT)
        figures["restart_reconnect_s"] = round(time.monotonic() - t0, 3)
        await asyncio.to_thread(fleet.wait_backends, {0, 1})
        await asyncio.sleep(0.5)  # traffic goes on a while after the move

        # Kill the node it moved to: no close frame, HAProxy sends the retry to the other.
        t0 = time.monotonic()
        await asyncio.to_thread(fleet.kill_node, second.index)
        await until(lambda: _reconnected(js, "a", 2), JS_WAIT)
        figures["kill_reconnect_s"] = round(time.monotonic() - t0, 3)
        await asyncio.sleep(0.5)  # traffic goes on a while after the move
        stop.set()
        await publisher

        summaries = {}
        for name in ("a", "b"):
            got = await received(js, name, "orders", len(acked))
            numbers = [d["n"] for d in got]
            positions = await js.call("positions", name, "orders")
            summary = summaries[name] = await js.call("summary", name)
            figures[name] = {"delivered": len(numbers), "close_codes": summary["closeCodes"],
                             "reconnects": summary["reconnects"]}
            assert numbers == list(range(1, len(acked) + 1)), name  # once each, in order
            assert [p[0] for p in positions] == list(range(1, len(acked) + 1))
            assert len({p[1] for p in positions}) == 1
            assert summary["gaps"] == [] and summary["lost"] == []
        figures["published"] = len(acked)
        record(f"client-js-fleet-{kind}.json", figures)
        a, b = summaries["a"], summaries["b"]
        assert a["closeCodes"][:2] == [1012, 1006]
        assert [s["recovered"] for s in a["subscribed"]] == [None, True, True]
        # b was told 1012 with the drain's reconnect hint (a delay drawn over 5 s), so it may
        # have been refused (503 while draining, then nothing listening) before the node came
        # back, or come back to the restarted node at its first attempt.
        assert b["closeCodes"][0] == 1012
        assert [s["recovered"] for s in b["subscribed"]] == [None, True]


async def _reconnected(js: Host, name: str, n: int) -> bool:
    summary = await js.call("summary", name)
    return bool(summary["reconnects"] >= n and summary["state"] == "open")
