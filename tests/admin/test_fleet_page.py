"""The fleet page in headless Chromium against real ``wsops serve`` processes: the token login,
numbers that match ``/metrics`` and follow traffic, a two-node Redis fleet with a drain, and a
screenshot of the page (``tests/artifacts/fleet-page.png``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from tests.support.artifacts import artifact, record
from tests.support.chromium import CHROMIUM, Chromium, Page
from tests.support.cluster import ClusterSet
from tests.support.procs import ServeProcess, start_serve
from tests.support.redisproc import RedisProc
from tests.support.scrape import Scrape
from tests.support.waits import until
from tests.support.wsclient import RawClient
from wsops.memory_per_connection import MIN_CONNECTIONS, NOT_SHOWN

TOKEN = "page-token-for-tests"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
ROOM = "lobby"

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")


@contextlib.contextmanager
def serving(*args: str) -> Iterator[ServeProcess]:
    node = start_serve("--allow-anonymous", *args, env={"WSOPS_ADMIN_TOKEN": TOKEN})
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
async def browser() -> AsyncIterator[Chromium]:
    chromium = Chromium()
    await chromium.start()
    try:
        yield chromium
    finally:
        await chromium.stop()


async def admin_get(url: str, path: str) -> Any:
    async with aiohttp.ClientSession() as s, s.get(url + path, headers=BEARER) as r:
        assert r.status == 200, (path, r.status)
        return await (r.json() if r.content_type == "application/json" else r.text())


async def metrics(node: ServeProcess) -> dict[str, float]:
    """The figures the page shows, read from ``/metrics`` with prometheus-client's parser."""
    m = Scrape(await admin_get(node.admin_url, "/metrics"))
    return {"connections": m.sum("wsops_connections_open"),
            "messages_in_total": m.sum("wsops_messages_total", direction="in"),
            "messages_out_total": m.sum("wsops_messages_total", direction="out")}


async def shown(page: Page, node: str, *fields: str) -> dict[str, float | None]:
    """Raw values (``data-value``) of the page's number elements for ``node``."""
    return dict(await page.evaluate(f"""(() => {{
        const out = {{}};
        for (const f of {list(fields)!r}) {{
            const el = document.querySelector(`[data-node="{node}"][data-field="${{f}}"]`);
            out[f] = !el || el.dataset.value === undefined || el.dataset.value === ""
                ? null : Number(el.dataset.value);
        }}
        return out;
    }})()"""))


async def until_page_matches(page: Page, node: ServeProcess, node_id: str,
                             within: float = 15.0) -> dict[str, float]:
    """Wait until the fleet totals and this node's row equal ``/metrics``; returns them."""
    last: list[Any] = [None, None, None]

    async def matches() -> dict[str, float] | None:
        want = await metrics(node)
        last[:] = [want, await shown(page, "fleet", *want), await shown(page, node_id, *want)]
        return want if last[1] == want and last[2] == want else None

    found: dict[str, float] = await until(
        matches, within, step=0.2,
        what=lambda: f"page {last[1]} / row {last[2]} == /metrics {last[0]}; "
                     f"console: {page.console[-10:]}")
    return found


async def login(page: Page, admin_url: str, query: str = "interval=0.5") -> None:
    await page.goto(f"{admin_url}/?token={TOKEN}&{query}")
    assert await page.evaluate("location.href") == f"{admin_url}/?{query}"  # token gone
    await page.wait_for("Number(document.body.dataset.updates || 0) >= 1", timeout=15)


async def clients(url: str, n: int) -> list[RawClient]:
    out = await asyncio.gather(*(RawClient.connect(url) for _ in range(n)))
    await asyncio.gather(*(c.call("subscribe", ROOM) for c in out))
    return list(out)


async def publish(c: RawClient, n: int) -> None:
    for i in range(n):
        await c.call("publish", ROOM, data={"i": i})


async def test_the_page_needs_the_token_then_a_read_only_cookie(browser: Chromium) -> None:
    with serving() as node:
        page = await browser.new_page()
        await page.goto(node.admin_url + "/")
        assert await page.evaluate(
            "!!document.querySelector('form[method=get][action=\"/\"] input[name=token]')")
        await page.goto(node.admin_url + "/?token=wrong")
        assert "refused" in await page.evaluate("document.body.innerText")
        assert await page.evaluate("document.cookie") == ""
        await login(page, node.admin_url)
        assert await page.evaluate("document.cookie") == ""  # HttpOnly
        statuses = await page.evaluate("""Promise.all([
            fetch('/admin/stats').then(r => r.status),
            fetch('/admin/drain', {method: 'POST'}).then(r => r.status),
            fetch('/admin/drain/cancel', {method: 'POST'}).then(r => r.status)])""")
        assert statuses == [200, 401, 401]  # reads with the cookie; changes need the bearer
        assert not (await admin_get(node.admin_url, "/admin/stats"))["draining"]

        # A hidden tab stops asking; it asks again as soon as it is visible.
        updates = "Number(document.body.dataset.updates)"
        await page.evaluate("""Object.defineProperty(document, 'visibilityState',
            {configurable: true, get: () => 'hidden'});
            document.dispatchEvent(new Event('visibilitychange'))""")
        await asyncio.sleep(0.6)  # one fetch may have been in flight
        paused = await page.evaluate(updates)
        await asyncio.sleep(1.5)  # three intervals pass on purpose: no fetch in any of them
        assert await page.evaluate(updates) == paused
        await page.evaluate("""delete document.visibilityState;
            document.dispatchEvent(new Event('visibilitychange'))""")
        await page.wait_for(f"{updates} > {paused}", timeout=5)

        # The node goes away: the page says since when its numbers are stale, and keeps them.
        node.stop()
        await page.wait_for("document.querySelector('#status').textContent"
                            ".startsWith('stale since')", timeout=5)
        assert await page.evaluate("document.querySelector('[data-node=fleet]"
                                   "[data-field=connections]').dataset.value") == "0"
        assert not [line for line in page.console if line.startswith("exception")]


async def test_the_page_shows_what_metrics_says_and_follows_traffic(browser: Chromium) -> None:
    with serving() as node:
        node_id = (await admin_get(node.admin_url, "/admin/fleet"))["node_id"]
        page = await browser.new_page()
        await login(page, node.admin_url)
        conns = await clients(node.url, 6)
        try:
            await publish(conns[0], 10)
            first = await until_page_matches(page, node, node_id)
            assert first["connections"] == 6 and first["messages_out_total"] >= 60
            assert await page.evaluate(
                f"document.querySelector('[data-node=\"{node_id}\"][data-field=state]')"
                ".dataset.value") == "ready"

            for c in conns[4:]:
                await c.close()
            burst = asyncio.create_task(publish(conns[0], 60))
            await page.wait_for(  # rates come from the last seconds: seen while it runs
                "Number(document.querySelector('[data-node=fleet]"
                "[data-field=messages_out_per_second]').dataset.value) > 0", timeout=15)
            await burst
            after = await until_page_matches(page, node, node_id)
            assert after["connections"] == 4
            assert after["messages_out_total"] >= first["messages_out_total"] + 4 * 60
            delivery = await shown(page, "fleet", "delivery_p99_seconds", "rss_bytes",
                                   "memory_per_connection_bytes", "loop_lag_p99_seconds")
            assert delivery["rss_bytes"] and delivery["loop_lag_p99_seconds"] is not None
            await expect_memory_per_connection(page, node, node_id)
            await expect_flow(page, node, conns[0])

            # Some traffic while the charts fill in, then the picture people look at.
            for _ in range(8):
                await publish(conns[1], 15)
                await asyncio.sleep(0.4)
            await until_page_matches(page, node, node_id)
            path = await page.screenshot(artifact("fleet-page.png"))
            updates = int(await page.evaluate("document.body.dataset.updates"))
            record("fleet-page.json", {"updates": updates, **after, "screenshot": path.name})
            assert not [line for line in page.console if line.startswith("exception")]
        finally:
            await asyncio.gather(*(c.close() for c in conns[:4]))


async def expect_flow(page: Page, node: ServeProcess, publisher: RawClient) -> None:
    """The flow view: the busy room's row, its rates while traffic runs, and its publishers
    and subscribers as /admin/flow says."""
    cell = f'#flow tr[data-room="{ROOM}"] [data-field=msgs_out_per_second]'
    burst = asyncio.create_task(publish(publisher, 80))
    await page.wait_for(f"Number(document.querySelector('{cell}')?.dataset.value) > 0",
                        timeout=15)
    await burst
    flow = await admin_get(node.admin_url, "/admin/flow")
    [room] = [r for r in flow["rooms"] if r["room"] == ROOM]
    assert room["subscribers"] == 4 and room["publishers"] == 1 and room["msgs_in"] >= 150
    row = f'#flow tr[data-room="{ROOM}"]'
    await page.wait_for(f"Number(document.querySelector('{row} [data-field=subscribers]')"
                        ".dataset.value) === 4", timeout=15)
    assert await page.evaluate(
        f"Number(document.querySelector('{row} [data-field=publishers]').dataset.value)") == 1


async def expect_memory_per_connection(page: Page, node: ServeProcess, node_id: str) -> None:
    """Not shown below MIN_CONNECTIONS connections (it says so), shown from there up: RSS
    above the node's at start per connection, far below RSS / connections."""
    mem = "[data-field=memory_per_connection_bytes]"
    fleet, row = f"[data-node=fleet]{mem}", f"[data-node=\"{node_id}\"]{mem}"
    assert await page.evaluate(f"document.querySelector('{fleet}').textContent") == NOT_SHOWN
    assert await page.evaluate(f"document.querySelector('{row}').textContent") == "n/a"
    assert (await shown(page, "fleet", "memory_per_connection_bytes")) == {
        "memory_per_connection_bytes": None}
    more = await asyncio.gather(*(RawClient.connect(node.url) for _ in range(MIN_CONNECTIONS)))
    try:
        await page.wait_for(f"document.querySelector('{fleet}').dataset.value !== ''"
                            f" && document.querySelector('{row}').dataset.value !== ''",
                            timeout=15)
        got = await shown(page, "fleet", "memory_per_connection_bytes", "rss_bytes",
                          "connections")
        per_conn, rss, conns = (got["memory_per_connection_bytes"], got["rss_bytes"],
                                got["connections"])
        assert per_conn is not None and rss is not None and conns is not None
        assert conns >= MIN_CONNECTIONS and 0 < per_conn < rss / conns / 2
    finally:
        await asyncio.gather(*(c.close() for c in more))


async def test_one_nodes_page_lists_the_fleet_and_shows_a_drain(
    browser: Chromium, redis_proc: RedisProc,
) -> None:
    broker = f"{redis_proc.url}?heartbeat=0.5&timeout=1"
    with serving("--broker", broker) as a, serving("--broker", broker) as b:
        ids = [(await admin_get(n.admin_url, "/admin/stats"))["broker"]["node_id"]
               for n in (a, b)]
        on_a, on_b = await clients(a.url, 3), await clients(b.url, 1)
        try:
            page = await browser.new_page()
            await login(page, a.admin_url)
            await page.wait_for(f"""(() => {{
                const v = (n) => document.querySelector(
                    `[data-node="${{n}}"][data-field=connections]`)?.dataset.value;
                return v("{ids[0]}") === "3" && v("{ids[1]}") === "1"
                    && document.querySelector('[data-node=fleet][data-field=connections]')
                        .dataset.value === "4";
            }})()""", timeout=20)
            assert await page.evaluate("document.querySelectorAll('#nodes tbody tr').length") == 2

            async with aiohttp.ClientSession() as s, s.post(
                    b.admin_url + "/admin/drain", json={"deadline": 5}, headers=BEARER) as r:
                assert r.status == 202
            await page.wait_for(
                f"document.querySelector('[data-node=\"{ids[1]}\"][data-field=state]')"
                "?.dataset.value === 'draining'", timeout=15)
            assert await page.evaluate(
                f"document.querySelector('[data-node=\"{ids[0]}\"][data-field=state]')"
                ".dataset.value") == "ready"
            await page.wait_for("document.querySelector('[data-node=fleet]"
                                "[data-field=connections]').dataset.value === '3'", timeout=15)
            await page.screenshot(artifact("fleet-page-redis.png"))
        finally:
            await asyncio.gather(*(c.close() for c in on_a + on_b), return_exceptions=True)


@pytest.mark.slow
async def test_a_node_on_a_redis_cluster_shows_its_shards(browser: Chromium) -> None:
    """The broker section: one row per shard (slots, master, state, the rooms this node
    follows there), as the node's /admin/stats says."""
    cluster = ClusterSet()
    await asyncio.to_thread(cluster.start)
    try:
        with serving("--broker", f"{cluster.url}?heartbeat=0.5&timeout=1") as node:
            sub = await RawClient.connect(node.url)
            try:
                for i in range(9):
                    await sub.call("subscribe", f"room-{i}")
                page = await browser.new_page()
                await login(page, node.admin_url)
                shards = (await admin_get(node.admin_url, "/admin/stats"))["broker"]["shards"]
                # the 9 rooms, and the fleet's order room every node watches
                assert len(shards) == 3 and sum(s["rooms"] for s in shards) == 10
                want = {s["master"]: str(s["rooms"]) for s in shards}
                await page.wait_for(f"""(() => {{
                    const rows = [...document.querySelectorAll('#broker tbody tr')];
                    const got = Object.fromEntries(rows.map((r) => [r.dataset.shard,
                        r.querySelector('[data-field=rooms]').dataset.value]));
                    return JSON.stringify(got, Object.keys(got).sort())
                        === JSON.stringify({want!r}, Object.keys({want!r}).sort())
                        && rows.every((r) => r.querySelector('[data-field=state]')
                            .dataset.value === 'up');
                }})()""", timeout=20)
                what = await page.evaluate("document.querySelector('#broker-what').textContent")
                assert what.startswith("Redis Cluster · 3 shards")
                await page.screenshot(artifact("fleet-page-cluster.png"))
            finally:
                await sub.close()
    finally:
        await asyncio.to_thread(cluster.close)


async def test_the_page_of_a_node_with_workers_shows_the_node_summed(browser: Chromium) -> None:
    with serving("--workers", "2") as node:
        node_id = (await admin_get(node.admin_url, "/admin/fleet"))["node_id"]
        page = await browser.new_page()
        await login(page, node.admin_url)
        conns = await clients(node.url, 4)
        try:
            await publish(conns[0], 5)
            want = await until_page_matches(page, node, node_id)
            assert want["connections"] == 4
            assert await page.evaluate("document.querySelectorAll('#nodes tbody tr').length") == 1
            assert "(2 workers)" in await page.evaluate(
                "document.querySelector('#nodes tbody td.node').textContent")
        finally:
            await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)
