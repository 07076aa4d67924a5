"""``/admin/profile/*`` on a live admin listener: state, leases, sample shape, validation."""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import psutil  # type: ignore[import-untyped]
import pytest
from aiohttp import WSMsgType, web

import wsops
from tests.conftest import ServerFactory
from tests.support.ports import serving
from tests.support.waits import until
from wsops.admin import profiling
from wsops.instrumentation.middleware import Instrumentation
from wsops.server.core.hub import Room


async def echo(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for msg in ws:
        if msg.type is WSMsgType.TEXT:
            await ws.send_str(msg.data)
    return ws


@pytest.fixture
async def node() -> AsyncIterator[tuple[str, str, Instrumentation]]:
    """A plain app with one WebSocket route, instrumented: (ws url, admin url, inst)."""
    assert not tracemalloc.is_tracing()
    app = web.Application()
    app.router.add_get("/ws", echo)
    inst = wsops.instrument(app, admin_port=0, runtime=False, tracing=False)
    try:
        async with serving(app) as port:
            assert inst.admin is not None
            yield f"ws://127.0.0.1:{port}/ws", inst.admin.url, inst
    finally:
        was_on = tracemalloc.is_tracing()
        tracemalloc.stop()
        assert not was_on, "the node left tracemalloc on"


async def call(method: str, url: str, body: dict[str, Any] | None = None,
               status: int = 200) -> Any:
    async with aiohttp.ClientSession() as s, s.request(method, url, json=body) as r:
        assert r.status == status, await r.text()
        return await r.json() if status == 200 else None


async def test_start_sample_stop_restores_tracemalloc(
        node: tuple[str, str, Instrumentation]) -> None:
    ws_url, admin, inst = node
    inst.leak_checks.append(lambda: {"things_without_owner": 2.0})
    state = await call("GET", admin + "/admin/profile")
    assert state["tracing"] is False and state["owned"] is False
    started = await call("POST", admin + "/admin/profile/start", {"frames": 3})
    assert started["started"] and started["owned"] and started["frames"] == 3
    assert tracemalloc.is_tracing() and tracemalloc.get_traceback_limit() == 3
    async with aiohttp.ClientSession() as s, s.ws_connect(ws_url) as ws:
        await ws.send_str("x")
        await ws.receive()
        sample = await call("GET", admin + f"/admin/profile/sample?top=5&group=traceback"
                                           f"&types=7&session={started['session']}")
    for key in ("time", "monotonic", "rss_bytes", "traced_bytes", "peak_traced_bytes",
                "tracemalloc_overhead_bytes", "sites_total", "objects_total", "cost_seconds"):
        assert isinstance(sample[key], int | float), key
    assert sample["group"] == "traceback" and sample["frames"] == 3
    assert 0 < len(sample["sites"]) <= 10  # 5 biggest + 5 fastest growing, at most
    site = sample["sites"][0]
    assert set(site) == {"key", "file", "line", "size", "count", "traceback"}
    assert site["traceback"][0] == [site["file"], site["line"]] and "#" in site["key"]
    assert 7 <= len(sample["types"]) <= 14 and sample["types"]["dict"] > 0
    assert sample["websockets"] == {"objects": 1, "closed_objects": 0, "open_connections": 1,
                                    "excess": 0}
    assert sample["checks"] == {"things_without_owner": 2.0}
    stopped = await call("POST", admin + "/admin/profile/stop", {"session": started["session"]})
    assert stopped["stopped"] and not stopped["tracing"] and not tracemalloc.is_tracing()


async def test_tracing_that_was_on_stays_on(node: tuple[str, str, Instrumentation]) -> None:
    _, admin, _ = node
    tracemalloc.start(2)
    try:
        started = await call("POST", admin + "/admin/profile/start", {"frames": 9})
        assert started["started"] is False and started["frames"] == 2
        sample = await call("GET", admin + "/admin/profile/sample")
        assert sample["group"] == "lineno" and sample["sites"]
        assert all("#" not in s["key"] for s in sample["sites"])
        stopped = await call("POST", admin + "/admin/profile/stop",
                             {"session": started["session"]})
        assert stopped["stopped"] is False and tracemalloc.is_tracing()
    finally:
        tracemalloc.stop()


async def test_a_lapsed_lease_stops_tracing_wsops_started(
        node: tuple[str, str, Instrumentation]) -> None:
    _, admin, _ = node
    began = time.monotonic()
    first = await call("POST", admin + "/admin/profile/start", {"lease_seconds": 1})
    second = await call("POST", admin + "/admin/profile/start", {"lease_seconds": 60})
    assert first["started"] and not second["started"]
    await call("POST", admin + "/admin/profile/stop", {"session": second["session"]})
    assert tracemalloc.is_tracing()  # the first session is still open
    # The client went away without stopping: tracing ends when its lease does, not before.
    await until(lambda: not tracemalloc.is_tracing(), 10.0, "the lapsed lease to stop tracing")
    assert time.monotonic() - began >= 1.0
    assert (await call("GET", admin + "/admin/profile"))["sessions"] == 0


async def test_bad_requests_are_refused(node: tuple[str, str, Instrumentation]) -> None:
    _, admin, _ = node
    for body in ({"frames": 0}, {"frames": 51}, {"frames": 2.5}, {"frames": "ten"},
                 {"lease_seconds": 0}):
        await call("POST", admin + "/admin/profile/start", body, status=400)
    for query in ("top=0", "top=201", "top=x", "group=module", "types=0"):
        await call("GET", admin + f"/admin/profile/sample?{query}", status=400)
    await call("POST", admin + "/admin/profile/stop", {"session": 5}, status=400)
    assert not tracemalloc.is_tracing()


async def test_the_bundled_server_checks_its_rooms(server_factory: ServerFactory) -> None:
    server = await server_factory()
    sample = await call("GET", server.admin_url + "/admin/profile/sample?top=1&types=1")
    assert sample["checks"] == {"hub_rooms_without_subscribers": 0.0,
                                "broker_presence_rooms_without_subscribers": 0.0,
                                "broker_watched_rooms_without_subscribers": 0.0}
    assert sample["tracing"] is False and sample["sites"] == []
    server.node.hub.rooms["ghost"] = Room()  # as if a leave had forgotten to delete it
    sample = await call("GET", server.admin_url + "/admin/profile/sample?top=1&types=1")
    assert sample["checks"]["hub_rooms_without_subscribers"] == 1.0


# -- issue #14, finding 9: profiling sessions and leases are bounded ------------------------


async def test_sessions_are_capped_with_a_409_that_says_how_to_end_one(
        node: tuple[str, str, Instrumentation]) -> None:
    _, admin, _ = node
    sessions = [(await call("POST", admin + "/admin/profile/start"))["session"]
                for _ in range(profiling.MAX_SESSIONS)]
    async with aiohttp.ClientSession() as s, s.post(admin + "/admin/profile/start") as r:
        assert r.status == 409
        text = await r.text()
    assert text.startswith(f"{profiling.MAX_SESSIONS} profiling sessions are open, the most "
                           "this node allows: end one with POST /admin/profile/stop")
    assert (await call("GET", admin + "/admin/profile"))["sessions"] == profiling.MAX_SESSIONS
    await call("POST", admin + "/admin/profile/stop", {"session": sessions[0]})
    again = await call("POST", admin + "/admin/profile/start")
    assert again["session"] not in sessions
    stopped = await call("POST", admin + "/admin/profile/stop", {})  # every session
    assert stopped["stopped"] and stopped["sessions"] == 0 and not tracemalloc.is_tracing()


async def test_a_lease_longer_than_the_maximum_is_granted_the_maximum(
        node: tuple[str, str, Instrumentation]) -> None:
    _, admin, inst = node
    asked = await call("POST", admin + "/admin/profile/start", {"lease_seconds": 86400})
    assert asked["lease_seconds"] == profiling.MAX_LEASE == 3600
    assert inst.admin is not None
    profiler = inst.admin.app[profiling.PROFILER_KEY]
    lease, expiry = profiler.sessions[asked["session"]]
    assert lease == profiling.MAX_LEASE and expiry - time.monotonic() <= profiling.MAX_LEASE
    await call("POST", admin + "/admin/profile/stop", {"session": asked["session"]})


async def test_a_sample_reads_rss_once_free_heap_memory_went_back_to_the_system(
        node: tuple[str, str, Instrumentation]) -> None:
    """~48 MiB freed in the middle of the heap (a live chunk above it): glibc keeps it, and RSS
    still counts it. The sample's RSS is read after malloc_trim, so the freed memory is not
    there: a leak check never reads memory the allocator merely kept as growth."""
    _, admin, _ = node
    if profiling._malloc_trim() is None:
        pytest.skip("the C library has no malloc_trim (not glibc)")
    proc = psutil.Process()
    chunks = [bytes(1000) for _ in range(50_000)]  # over pymalloc's 512 B: glibc malloc
    pin = bytes(1000)  # keeps the top of the heap in use, so free() cannot shrink it
    del chunks
    kept = proc.memory_info().rss
    await call("POST", admin + "/admin/profile/start", {})
    sample = await call("GET", admin + "/admin/profile/sample")
    await call("POST", admin + "/admin/profile/stop", {})
    assert sample["rss_bytes"] < kept - 30 * 2**20, (kept, sample["rss_bytes"])
    del pin
