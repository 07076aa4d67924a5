"""Issue #14, finding 7, against a real ``wsops serve``: 50 unauthenticated half-sent requests
to the admin port (they stayed open 95 s before the fix). Now each is cut at
``--handshake-timeout``, at most ``--admin-max-connections`` are held (the rest get 503 at
once), and ``/healthz`` answers again as soon as slots free up. Figures go to
tests/artifacts/hostile-admin-flood*.json."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from tests.support.artifacts import record
from tests.support.procs import ServeProcess, start_serve

HALF_SENT = b"GET /admin/stats HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
FLOOD = 50


async def flood(port: int, n: int) -> list[tuple[float, bytes]]:
    """``n`` half-sent requests at once; per connection (seconds until the server hung up, what
    it answered)."""

    async def one() -> tuple[float, bytes]:
        # The clock starts before the connection: late as this coroutine may run on a loaded
        # machine, the time measured is never shorter than the node's.
        began = time.monotonic()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(HALF_SENT)
        try:
            answer = await asyncio.wait_for(reader.read(), 30)
        finally:
            writer.close()
        return time.monotonic() - began, answer

    return list(await asyncio.gather(*(one() for _ in range(n))))


async def healthz(node: ServeProcess) -> int:
    async with aiohttp.ClientSession() as s, s.get(node.admin_url + "/healthz") as r:
        return r.status


async def test_a_flood_of_half_sent_admin_requests_is_capped_and_cut() -> None:
    cap, timeout = 10, 1.0
    node = await asyncio.to_thread(
        start_serve, "--allow-anonymous", "--handshake-timeout", str(timeout),
        env={"WSOPS_ADMIN_TOKEN": "hostile-admin-token",
             "WSOPS_ADMIN_MAX_CONNECTIONS": str(cap)})
    try:
        results = await flood(node.admin_port, FLOOD)
        refused = [(t, a) for t, a in results if a]
        cut = [t for t, a in results if not a]
        assert len(refused) == FLOOD - cap and len(cut) == cap, [a[:12] for _, a in results]
        assert all(a.startswith(b"HTTP/1.1 503 ") for _, a in refused)
        assert max(t for t, _ in refused) < timeout  # at once, not at the timeout
        # Up to 3x the timeout for a loaded machine: uncut, they would stay 30 s (or 10).
        assert all(timeout * 0.9 <= t <= 3 * timeout for t in cut), cut
        assert await healthz(node) == 200  # the slots are free again
        record("hostile-admin-flood.json", {
            "half_sent_requests": FLOOD, "admin_max_connections": cap,
            "handshake_timeout_s": timeout, "refused_503": len(refused),
            "refused_after_s_max": round(max(t for t, _ in refused), 3),
            "cut_after_s_min": round(min(cut), 2), "cut_after_s_max": round(max(cut), 2)})
    finally:
        node.stop()


@pytest.mark.slow
async def test_with_the_defaults_half_sent_admin_requests_are_cut_after_ten_seconds() -> None:
    node = await asyncio.to_thread(start_serve, "--allow-anonymous")
    try:
        results = await flood(node.admin_port, FLOOD)  # under the default cap of 64
        took = [t for t, a in results if not a]
        assert len(took) == FLOOD and all(9.5 <= t <= 14.0 for t in took), took
        assert await healthz(node) == 200
        record("hostile-admin-flood-default.json", {"half_sent_requests": FLOOD,
                                              "cut_after_s_max": round(max(took), 2)})
    finally:
        node.stop()
