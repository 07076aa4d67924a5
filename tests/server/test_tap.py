"""Taps on a live node: a room's or a user's events streamed as they happen, rate-capped and
queue-bounded (drops counted), payloads only with an admin token, refusals that say why."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web

import wsops
from tests.conftest import Connect, LiveServer, ServerFactory
from tests.support.ports import serving
from tests.support.runcli import cli, flat, plain
from tests.support.tokens import SECRET, hs
from tests.support.waits import until
from wsops.server.tap import MAX_PAYLOAD, MAX_TAPS


class Stream:
    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self.resp = resp

    async def next(self, timeout: float = 5.0) -> dict[str, Any]:
        line = await asyncio.wait_for(self.resp.content.readline(), timeout)
        assert line, "the stream ended"
        event: dict[str, Any] = json.loads(line)
        return event

    async def events(self, n: int, kind: str | None = None,
                     timeout: float = 5.0) -> list[dict[str, Any]]:
        """The next ``n`` events (of ``kind`` if given; stats lines skipped)."""
        out: list[dict[str, Any]] = []
        while len(out) < n:
            e = await self.next(timeout)
            if e["event"] == kind or (kind is None and e["event"] != "stats"):
                out.append(e)
        return out


@asynccontextmanager
async def tap(admin_url: str, headers: dict[str, str] | None = None,
              **query: str) -> AsyncIterator[Stream]:
    async with aiohttp.ClientSession() as s, s.get(admin_url + "/admin/tap", params=query,
                                                   headers=headers) as r:
        assert r.status == 200, await r.text()
        assert r.content_type == "application/x-ndjson"
        stream = Stream(r)
        yield stream


async def refused(admin_url: str, status: int, **query: str) -> str:
    async with aiohttp.ClientSession() as s, s.get(admin_url + "/admin/tap",
                                                   params=query) as r:
        assert r.status == status, await r.text()
        return await r.text()


async def test_a_room_tap_streams_its_requests_and_messages_without_payloads(
    server: LiveServer, connect: Connect,
) -> None:
    sub = await connect(server.url)
    await sub.call("subscribe", "news")
    pub = await connect(server.url)
    async with tap(server.admin_url, room="news", rate="200") as stream:
        first = await stream.next()
        assert first == {"event": "tap", "watching": "room:news", "payloads": False,
                         "rate": 200.0, "seconds": 3600.0}
        for n in range(3):
            await pub.call("publish", "news", data={"secret": n})
        await pub.call("publish", "sports", data="elsewhere")
        got = await stream.events(6)
    requests = [e for e in got if e["event"] == "request"]
    messages = [e for e in got if e["event"] == "message"]
    assert [(e["op"], e["room"]) for e in requests] == [("publish", "news")] * 3
    assert [(m["offset"], m["subscribers"]) for m in messages] == [(1, 1), (2, 1), (3, 1)]
    assert all(e["bytes"] > 0 and "frame" not in e for e in requests + messages)
    await until(lambda: not server.node.debug.taps, 5.0, what="the tap closed with its stream")
    assert server.node.hub.tap is None and not server.node.debug.targets.active


async def test_a_user_tap_streams_connects_requests_frames_out_and_disconnects(
    server_factory: ServerFactory, connect: Connect,
) -> None:
    server = await server_factory(allow_anonymous=False, jwt_secret=SECRET)
    bob = await connect(f"{server.url}?token={hs(sub='bob')}")
    await bob.call("subscribe", "chat:1")
    async with tap(server.admin_url, user="alice", rate="200") as stream:
        await stream.next()
        alice = await connect(f"{server.url}?token={hs(sub='alice')}")
        [opened] = await stream.events(1)
        assert opened["event"] == "connect" and opened["user"] == "alice"
        await alice.call("subscribe", "chat:1")
        await bob.call("publish", "chat:1", data="to alice")
        await alice.messages(1)
        await alice.call("publish", "chat:1", data="from alice")
        got = await stream.events(6)
        await alice.close()
        [closed] = await stream.events(1, "disconnect")
    assert [(e["event"], e.get("op")) for e in got[:4]] == [
        ("request", "subscribe"), ("out", "reply"), ("out", "message"), ("request", "publish")]
    # Her own message comes back to her too (she is subscribed), with the ack, in either order.
    assert sorted((e["event"], e["op"]) for e in got[4:]) == [("out", "message"),
                                                              ("out", "reply")]
    assert got[2]["room"] == "chat:1" and got[2]["offset"] == 1 and got[1]["ok"] is True
    assert {e["conn"] for e in got} == {opened["conn"]} and closed["code"] == 1000


async def test_a_busy_room_is_capped_by_rate_and_the_drops_are_counted(
    server: LiveServer, connect: Connect,
) -> None:
    pub = await connect(server.url)
    await pub.call("subscribe", "busy")
    async with tap(server.admin_url, room="busy", rate="2") as stream:
        await stream.next()
        for n in range(40):
            await pub.call("publish", "busy", data=n)
        stats = await stream.events(1, "stats", timeout=5)
    [s] = stats
    assert s["dropped"] >= 70 and s["sent"] <= 10  # 80 events in, about 2 per second out


async def test_payloads_need_an_admin_token_and_are_cut(
    server_factory: ServerFactory, connect: Connect, monkeypatch: pytest.MonkeyPatch,
) -> None:
    open_node = await server_factory()
    says = await refused(open_node.admin_url, 403, room="r", payloads="true")
    assert "needs an admin token" in says
    monkeypatch.setenv("WSOPS_ADMIN_TOKEN", "t0ken-for-tests")
    node = await server_factory()
    pub = await connect(node.url)
    await pub.call("subscribe", "r")
    async with tap(node.admin_url, {"Authorization": "Bearer t0ken-for-tests"},
                   room="r", payloads="true") as stream:
        await stream.next()
        await pub.call("publish", "r", data="x" * 5000)
        [request, message] = await stream.events(2)
    assert request["frame"].startswith('{"op": "publish"')  # the client's own text
    assert len(request["frame"]) == MAX_PAYLOAD + 3 and request["frame"].endswith("...")
    assert message["frame"].startswith('{"op":"message"') and len(message["frame"]) <= 1027


async def test_bad_taps_are_refused_saying_why_and_taps_are_bounded(
    server: LiveServer,
) -> None:
    for query, says in (({}, "exactly one of"), ({"user": "a", "room": "b"}, "exactly one of"),
                        ({"room": "r", "rate": "0"}, "'rate' must be a number"),
                        ({"room": "r", "rate": "nan"}, "'rate' must be a number"),
                        ({"room": "r", "seconds": "3601"}, "'seconds' must be a number"),
                        ({"room": "r", "payloads": "yes"}, "'payloads' must be true or false")):
        assert says in await refused(server.admin_url, 400, **query)
    async with aiohttp.ClientSession() as s:
        streams = [await s.get(server.admin_url + "/admin/tap", params={"room": f"r{i}"})
                   for i in range(MAX_TAPS)]
        assert all(r.status == 200 for r in streams)
        assert "close one first" in await refused(server.admin_url, 409, room="one-more")
        for r in streams:
            r.close()
    await until(lambda: not server.node.debug.taps, 5.0, what="every tap closed")


async def test_a_tap_ends_when_its_time_is_up(server: LiveServer) -> None:
    async with tap(server.admin_url, room="r", seconds="1") as stream:
        await stream.next()
        end = await stream.events(1, "end", timeout=5)
    assert end == [{"event": "end", "reason": "1 s are up"}]


async def test_a_plain_instrumented_app_has_no_taps() -> None:
    app = web.Application()
    inst = wsops.instrument(app, admin_port=0, runtime=False, tracing=False)
    async with serving(app):
        assert inst.admin is not None
        assert "no debug switch" in await refused(inst.admin.url, 404, room="r")


# -- wsops tap (the CLI) ---------------------------------------------------------------------


async def test_wsops_tap_prints_a_rooms_events_until_its_time_is_up(
    server: LiveServer, connect: Connect,
) -> None:
    sub = await connect(server.url)
    await sub.call("subscribe", "news")
    pub = await connect(server.url)
    running = asyncio.create_task(cli("tap", server.admin_url, "--room", "news", "--for", "2s"))
    await until(lambda: bool(server.node.debug.taps), 5.0, what="the tap open")
    for n in range(3):
        await pub.call("publish", "news", data=n)
    result = await running
    assert result.exit_code == 0, result.output
    lines = plain(result.stdout).splitlines()
    assert sum(" -> publish news (" in ln for ln in lines) == 3
    assert [ln.split("message news ")[1].split(" ")[0] for ln in lines
            if "message news #" in ln] == ["#1", "#2", "#3"]
    assert "1 subscribers here" in result.stdout
    said = flat(result.stderr)
    assert "tapping room:news on" in said and "payloads hidden" in said
    assert "tap ended: 2 s are up" in said


async def test_wsops_tap_json_and_refusals(server: LiveServer, connect: Connect) -> None:
    pub = await connect(server.url)
    running = asyncio.create_task(cli("tap", server.admin_url, "--user", "nobody", "--json",
                                      "--for", "1s"))
    await until(lambda: bool(server.node.debug.taps), 5.0, what="the tap open")
    await pub.call("publish", "r", data=1)
    result = await running
    events = [json.loads(ln) for ln in result.stdout.splitlines()]
    assert events[0]["event"] == "tap" and events[-1]["event"] == "end"
    refused_payloads = await cli("tap", server.admin_url, "--room", "r", "--payloads")
    assert refused_payloads.exit_code == 1
    assert "needs an admin token" in flat(refused_payloads.stderr)
    for args, says in ((["--room", "a", "--user", "b"], "give one of"),
                       (["--room", "a", "--rate", "500"], "within [1, 200]"),
                       (["--room", "a", "--for", "2h"], "from 1s to 1h")):
        bad = await cli("tap", server.admin_url, *args)
        assert bad.exit_code == 2 and says in flat(bad.stderr)
    down = await cli("tap", "127.0.0.1:9", "--room", "a")
    assert down.exit_code == 1 and "cannot connect" in flat(down.stderr)
