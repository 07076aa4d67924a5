"""examples/notify: an existing REST application publishing its writes through a node's
server API; a Python subscriber, then the page in headless Chromium, see each change at once."""

from __future__ import annotations

import time

import aiohttp
import pytest

from tests.examples_chat.test_chat import browser, no_errors, page_until  # noqa: F401
from tests.support.chromium import CHROMIUM, Chromium
from tests.support.examples import EXAMPLES, load_example
from wsops.client import Client, Message

notify = load_example(EXAMPLES / "notify" / "notify.py")


async def test_a_write_reaches_a_subscriber_of_the_order(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    monkeypatch.setenv("WSOPS_API_KEYS", "k" * 32)
    async with notify.serving(0, 0, 0) as urls, aiohttp.ClientSession() as http:
        async with http.get(urls["app"] + "config", params={"user": "ann"}) as r:
            cfg = await r.json()
        assert cfg["ws_url"] == urls["ws"]
        async with Client(cfg["ws_url"], token=cfg["token"]) as client:
            events = client.events()
            await client.subscribe("orders:7")
            async with http.post(urls["app"] + "orders/7", json={"status": "packed"}) as r:
                assert r.status == 200 and (await r.json())["notified_at_offset"] == 1
            async for event in events:
                if isinstance(event, Message):
                    assert event.room == "orders:7" and event.data["status"] == "packed"
                    assert event.sender is None  # published by the backend, not a user
                    break
        async with http.post(urls["app"] + "orders/7", json={"status": "lost"}) as r:
            assert r.status == 400  # the application's own validation: nothing published
        async with http.get(urls["app"] + "orders/7") as r:
            assert (await r.json())["status"] == "packed"


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
async def test_the_page_shows_each_change_without_reloading(
        monkeypatch: pytest.MonkeyPatch, browser: Chromium) -> None:  # noqa: F811
    monkeypatch.setenv("WSOPS_API_KEYS", "k" * 32)
    async with notify.serving(0, 0, 0) as urls, aiohttp.ClientSession() as http:
        page = await browser.new_page()
        await page.goto(urls["app"] + "?order=42")
        await page_until(page, "document.getElementById('state').dataset.subscribed", "true",
                         timeout=15)
        await page_until(page, "document.getElementById('status').textContent", "placed")
        for status in ("packed", "shipped"):
            sent = time.monotonic()
            async with http.post(urls["app"] + "orders/42", json={"status": status}) as r:
                assert r.status == 200
            await page_until(page, "document.getElementById('status').textContent", status)
            print(f"\n{status}: on the page {1000 * (time.monotonic() - sent):.0f} ms after "
                  "the write")
        shown = await page.evaluate(
            "[...document.querySelectorAll('#updates li.update')].map(e => e.dataset.status)")
        assert shown == ["packed", "shipped"]
        no_errors(page)
