"""``instrument(app)``'s per-message hooks (``counted.py``) on real aiohttp apps: what each way
of receiving and sending counts, byte sizes of non-ASCII and undecoded text, an app's own
``WebSocketResponse`` subclass, and aiohttp's own errors left as they were."""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry

import wsops
from tests.support.ports import serving
from tests.support.waits import until


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


class Shouting(web.WebSocketResponse):
    """An app's own response class: its overrides must keep working when instrumented."""

    async def send_str(self, data: str, compress: int | None = None) -> None:
        await super().send_str(data.upper(), compress)


def make_app(errors: list[str]) -> web.Application:
    async def iterate(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                await ws.send_str(msg.data)
            elif msg.type is aiohttp.WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
        return ws

    async def receive_calls(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        while True:
            msg = await ws.receive()
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
            try:
                await ws.send_str(b"not text")  # type: ignore[arg-type]
            except TypeError as exc:
                errors.append(str(exc))
            await ws.send_json({"echo": msg.data})
        return ws

    async def raw(request: web.Request) -> web.WebSocketResponse:
        ws: web.WebSocketResponse = web.WebSocketResponse(decode_text=False)
        await ws.prepare(request)
        async for msg in ws:
            await ws.send_bytes(msg.data)
        return ws

    async def shouting(request: web.Request) -> web.WebSocketResponse:
        ws = Shouting()
        await ws.prepare(request)
        async for msg in ws:
            await ws.send_str(msg.data)
        return ws

    app = web.Application()
    app.router.add_get("/iterate", iterate)
    app.router.add_get("/receive", receive_calls)
    app.router.add_get("/raw", raw)
    app.router.add_get("/shout", shouting)
    return app


async def test_every_way_of_receiving_and_sending_is_counted_in_messages_and_utf8_bytes() -> None:
    errors: list[str] = []
    app = make_app(errors)
    registry = CollectorRegistry()
    inst = wsops.instrument(app, registry=registry, admin_port=None, runtime=False)
    word = "héllo wörld"  # 11 characters, 13 bytes in UTF-8
    assert len(word.encode()) == 13
    async with serving(app) as port, aiohttp.ClientSession() as s:
        base = f"ws://127.0.0.1:{port}"
        ws = await s.ws_connect(base + "/iterate")
        await ws.send_str(word)
        assert await ws.receive_str() == word
        await ws.send_bytes(b"\x00\xff")
        assert await ws.receive_bytes() == b"\x00\xff"
        await ws.close()

        ws = await s.ws_connect(base + "/receive")
        await ws.send_str("x" * 100)  # past the first size bucket (64)
        assert await ws.receive_json() == {"echo": "x" * 100}
        await ws.close()

        ws = await s.ws_connect(base + "/raw")
        await ws.send_str(word)  # a TEXT frame the app reads as bytes
        assert await ws.receive_bytes() == word.encode()
        await ws.close()

        ws = await s.ws_connect(base + "/shout")
        await ws.send_str("quiet")
        assert await ws.receive_str() == "QUIET"
        await ws.close()
        await until(lambda: inst.live.total() == 0, what="every connection closed")

    # aiohttp's own TypeError reached the handler, and the refused send counted nothing.
    assert errors == ["data argument must be str (<class 'bytes'>)"]

    def sample(name: str, route: str, **labels: str) -> float:
        return _value(registry, name, route=route, **labels)

    assert sample("wsops_messages_total", "/iterate", direction="in", type="text") == 1
    assert sample("wsops_messages_total", "/iterate", direction="in", type="binary") == 1
    assert sample("wsops_messages_total", "/iterate", direction="out", type="text") == 1
    assert sample("wsops_messages_total", "/iterate", direction="out", type="binary") == 1
    assert sample("wsops_message_bytes_total", "/iterate", direction="in") == 13 + 2
    assert sample("wsops_message_bytes_total", "/iterate", direction="out") == 13 + 2

    echoed = len(b'{"echo": "' + b"x" * 100 + b'"}')
    assert sample("wsops_messages_total", "/receive", direction="in", type="text") == 1
    assert sample("wsops_messages_total", "/receive", direction="out", type="text") == 1
    assert sample("wsops_message_bytes_total", "/receive", direction="out") == echoed
    assert sample("wsops_message_size_bytes_bucket", "/receive", direction="in", le="64.0") == 0
    assert sample("wsops_message_size_bytes_bucket", "/receive", direction="in",
                  le="256.0") == 1

    assert sample("wsops_message_bytes_total", "/raw", direction="in") == 13
    assert sample("wsops_messages_total", "/raw", direction="out", type="binary") == 1

    assert sample("wsops_messages_total", "/shout", direction="out", type="text") == 1
    for route in ("/iterate", "/receive", "/raw", "/shout"):
        # one handler latency per handled data message, ended by the next receive
        handled = sample("wsops_handler_latency_seconds_count", route)
        received = sum(sample("wsops_messages_total", route, direction="in", type=t)
                       for t in ("text", "binary"))
        assert handled == received, route
        assert sample("wsops_connections_closed_total", route, code="1000") == 1, route


async def test_a_handler_that_closes_first_is_counted_with_its_own_code() -> None:
    async def closer(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        msg: Any = await ws.receive()
        await ws.close(code=4002, message=msg.data.encode())
        return ws

    app = web.Application()
    app.router.add_get("/closer", closer)
    registry = CollectorRegistry()
    inst = wsops.instrument(app, registry=registry, admin_port=None, runtime=False)
    async with serving(app) as port, aiohttp.ClientSession() as s:
        ws = await s.ws_connect(f"ws://127.0.0.1:{port}/closer")
        await ws.send_str("bye")
        assert (await ws.receive()).type is aiohttp.WSMsgType.CLOSE
        assert ws.close_code == 4002
        await until(lambda: inst.live.total() == 0, what="the connection closed")
    assert _value(registry, "wsops_connections_closed_total", route="/closer", code="4002") == 1
