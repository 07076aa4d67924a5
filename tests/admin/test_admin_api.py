"""Issue #14, finding 9: ``/admin/connections?top=N`` takes N in [1, 100] only (``top=-1`` used
to list every room), on a node and on the supervisor of ``--workers``."""

from __future__ import annotations

import aiohttp
import pytest

from tests.conftest import Connect, ServerFactory
from wsops.admin.aggregate import WorkersAdmin
from wsops.admin.contract import MAX_TOP_ROOMS

BAD_TOPS = ("-1", "0", str(MAX_TOP_ROOMS + 1), "abc", "1.5", "", "9" * 400, " 5", "1_0",
            "\u0665")


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        return r.status, await r.text()


async def test_top_is_bounded_and_out_of_range_is_a_clear_400(
    server_factory: ServerFactory, connect: Connect,
) -> None:
    server = await server_factory()
    c = await connect(server.url)
    for room in ("a", "b", "c", "d"):
        assert (await c.call("subscribe", room))["ok"]
    base = server.admin_url + "/admin/connections"
    for top in BAD_TOPS:
        status, text = await get(f"{base}?top={top}")
        assert (status, text) == (400, "'top' must be an integer in [1, 100]\n"), top
    status, text = await get(f"{base}?top=2")
    assert status == 200 and text.count('"room"') == 2
    status, text = await get(base)  # default 20: every one of the 4 rooms
    assert status == 200 and text.count('"room"') == 4


async def test_the_workers_supervisor_bounds_top_the_same_way() -> None:
    admin = WorkersAdmin("127.0.0.1", 0, None, lambda: [], lambda: [])
    await admin.start()
    try:
        for top in BAD_TOPS:
            status, _ = await get(f"{admin.url}/admin/connections?top={top}")
            assert status == 400, top
        status, _ = await get(f"{admin.url}/admin/connections?top={MAX_TOP_ROOMS}")
        assert status == 200
    finally:
        await admin.stop()


@pytest.mark.parametrize("top", ["1", str(MAX_TOP_ROOMS)])
async def test_the_bounds_themselves_are_accepted(server_factory: ServerFactory,
                                                  top: str) -> None:
    server = await server_factory()
    status, _ = await get(f"{server.admin_url}/admin/connections?top={top}")
    assert status == 200
