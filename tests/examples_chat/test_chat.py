"""examples/chat: the page and token endpoint, then the page itself in headless Chromium.

The server runs in the test's event loop (``chat.serving``); the browser tests drive the page
through its element ids (#name, #join, #text, #send, #messages, #presence, #state) like a user.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import jwt
import pytest

from tests.support.artifacts import artifact
from tests.support.chromium import CHROMIUM, Chromium, Page
from tests.support.examples import EXAMPLES, load_example
from tests.support.waits import until
from wsops.client import Client, ServerError

CHAT_DIR = EXAMPLES / "chat"
chat = load_example(CHAT_DIR / "chat.py")

needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")

TEXTS = "[...document.querySelectorAll('#messages li.msg .text')].map(e => e.textContent)"
USERS = "[...document.querySelectorAll('#presence li')].map(e => e.dataset.user)"
GAPS = "document.querySelectorAll('#messages li.gap').length"
SECRET = "chat-example-test-secret-of-32-bytes+"
STATE = "document.getElementById('state').dataset.state"


@contextlib.asynccontextmanager
async def chat_server(port: int = 0, secret: str = SECRET,
                      token_ttl: float = chat.TOKEN_TTL) -> AsyncIterator[str]:
    async with chat.serving(chat.chat_settings(port=port, secret=secret), token_ttl) as url:
        yield url


@pytest.fixture
async def browser() -> AsyncIterator[Chromium]:
    b = Chromium()
    try:
        await b.start()
        yield b
    finally:
        await b.stop()


async def page_until(page: Page, expression: str, expected: Any, timeout: float = 5.0) -> None:
    """Until ``expression`` in ``page`` equals ``expected`` (failing with what it was last and
    the page's console)."""
    last: list[Any] = []

    async def equal() -> bool:
        last[:] = [await page.evaluate(expression)]
        return bool(last[0] == expected)

    await until(equal, timeout, step=0.05,
                what=lambda: f"{expression} = {expected!r} (it was {last[0]!r}); "
                             f"console: {page.console[-20:]}")


async def open_chat(browser: Chromium, url: str, name: str) -> Page:
    """A new tab on the chat, joined as ``name`` (the default room, chat:lobby)."""
    page = await browser.new_page()
    await page.goto(url)
    await page.evaluate(f"document.getElementById('name').value = {json.dumps(name)};"
                        "document.getElementById('join').click()")
    await page_until(page, f"{USERS}.includes({json.dumps(name)}) && {STATE}", "open")
    return page


async def say(page: Page, text: str) -> None:
    await page.evaluate(f"document.getElementById('text').value = {json.dumps(text)};"
                        "document.getElementById('send').click()")


def no_errors(page: Page) -> None:
    bad = [line for line in page.console if line.startswith(("exception", "error"))]
    assert not bad, bad


async def test_pages_and_demo_tokens() -> None:
    async with chat_server() as url, aiohttp.ClientSession() as http:
        async with http.get(url) as resp:
            assert resp.status == 200
            assert '<script type="module" src="/chat.js">' in await resp.text()
        async with http.get(url + "chat.js") as resp:
            assert resp.status == 200
            source = await resp.text()
        assert 'from "/static/wsops-client.js"' in source
        # User text goes through textContent only: no HTML parsing anywhere in the page.
        assert not re.search(r"\.(innerHTML|outerHTML)\s*=|insertAdjacentHTML|document\.write",
                             source)
        async with http.get(url + "chat.css") as resp:
            assert resp.status == 200
        for bad in ("", "a b", "x" * 33, "<script>"):
            async with http.get(url + "token", params={"user": bad}) as resp:
                assert resp.status == 400, bad
        async with http.get(url + "token", params={"user": "alice"}) as resp:
            assert resp.status == 200
            assert resp.headers["Cache-Control"] == "no-store"
            token = (await resp.json())["token"]
        claims = jwt.decode(token, SECRET, algorithms=["HS256"])
        assert claims["sub"] == "alice" and claims["rooms"] == ["chat:*"]
        assert 0 < claims["exp"] - time.time() <= chat.TOKEN_TTL

        # The token opens the chat rooms on the same port's /ws, and nothing else.
        ws_url = url.replace("http", "ws", 1) + "ws"
        async with Client(ws_url, token=token) as client:
            await client.subscribe("chat:lobby")
            with pytest.raises(ServerError) as refused:
                await client.subscribe("ops:secrets")
            assert refused.value.code == "forbidden"


def test_script_prints_its_url_and_stops_on_ctrl_c() -> None:
    proc = subprocess.Popen([sys.executable, str(CHAT_DIR / "chat.py"), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        found = re.search(r"open (http://127\.0\.0\.1:\d+/)", first)
        assert found, first
        with urllib.request.urlopen(found[1], timeout=5) as resp:
            assert b"wsops chat" in resp.read()
        with urllib.request.urlopen(found[1] + "static/wsops-client.js", timeout=5) as resp:
            assert b"export class WsopsClient" in resp.read()
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
        assert proc.returncode == 0, out
        assert out.rstrip().endswith("stopped"), out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@needs_chromium
async def test_two_users_see_presence_messages_and_history(browser: Chromium) -> None:
    async with chat_server() as url:
        alice = await open_chat(browser, url, "alice")
        bob = await open_chat(browser, url, "bob")
        for page in (alice, bob):
            await page_until(page, USERS, ["alice", "bob"])
            await page_until(page, "window.chat.room", "chat:lobby")

        await say(alice, "hello from alice")
        await page_until(bob, TEXTS, ["hello from alice"])
        await page_until(bob, "document.querySelector('#messages li.msg').dataset.from", "alice")
        await page_until(alice, TEXTS, ["hello from alice"])  # one's own message comes back once

        # Mallory claims to be alice, in the frame and in the data: the page shows who sent it.
        async with aiohttp.ClientSession() as http, http.get(
                url + "token", params={"user": "mallory"}) as resp:
            mallory = (await resp.json())["token"]
        async with aiohttp.ClientSession() as http, http.ws_connect(
                url.replace("http", "ws", 1) + "ws", params={"token": mallory}) as ws:
            await ws.send_json({"op": "publish", "id": 1, "room": "chat:lobby", "from": "alice",
                                "data": {"from": "alice", "text": "it is me, alice"}})
            reply = await ws.receive_json(timeout=5)
            assert reply["ok"] is True, reply
        await page_until(bob, "[...document.querySelectorAll('#messages li.msg')]"
                              ".map(e => e.dataset.from)", ["alice", "mallory"])
        await page_until(alice, TEXTS, ["hello from alice", "it is me, alice"])

        # Markup in a message is text, not HTML.
        sneaky = '<img src=x onerror="window.pwned = 1"><b>bold?</b>'
        await say(bob, sneaky)
        await page_until(alice, TEXTS, ["hello from alice", "it is me, alice", sneaky])
        assert await alice.evaluate(
            "document.querySelector('#messages img, #messages b') === null && !window.pwned")

        # Bob closes his tab: his connection ends, alice's presence list drops him.
        with contextlib.suppress(TimeoutError, ConnectionError, RuntimeError):
            await bob.send("Page.close", timeout=5)
        await bob.close()
        await page_until(alice, USERS, ["alice"])
        await page_until(alice, "[...document.querySelectorAll('#messages li.event')]"
                                ".map(e => e.textContent)", ["bob joined", "bob left"])

        # Carol joins later: the earlier messages come from history, in order.
        carol = await open_chat(browser, url, "carol")
        await page_until(carol, TEXTS, ["hello from alice", "it is me, alice", sneaky])
        # History keeps the attested senders.
        await page_until(carol, "[...document.querySelectorAll('#messages li.msg')]"
                                ".map(e => e.dataset.from)", ["alice", "mallory", "bob"])
        await page_until(carol, USERS, ["alice", "carol"])
        await page_until(alice, USERS, ["alice", "carol"])
        await say(carol, "hi both, I just read the backlog")
        await page_until(alice, f"{TEXTS}.length", 4)
        await alice.screenshot(artifact("chat-example.png"))

        # Another room: its own (empty) history and presence; the lobby's events stop.
        await carol.evaluate("document.getElementById('room').value = 'random';"
                             "document.getElementById('switch').click()")
        await page_until(carol, "window.chat.room", "chat:random")
        await page_until(carol, USERS, ["carol"])
        await page_until(carol, TEXTS, [])
        await page_until(alice, USERS, ["alice"])  # carol left the lobby
        await say(alice, "anyone?")
        await say(carol, "over here")
        await page_until(carol, TEXTS, ["over here"])
        await page_until(alice, f"{TEXTS}.length", 5)  # "anyone?", not carol's
        await alice.evaluate("document.querySelector('#rooms [data-room=\"chat:random\"]')"
                             ".click()")
        await page_until(alice, TEXTS, ["over here"])
        await page_until(alice, USERS, ["alice", "carol"])
        for page in (alice, carol):
            assert await page.evaluate(GAPS) == 0
            no_errors(page)


@needs_chromium
async def test_server_restart_shows_a_gap_and_presence_recovers(
        browser: Chromium) -> None:
    async with chat_server() as url:
        port = int(re.findall(r":(\d+)/", url)[0])
        alice = await open_chat(browser, url, "alice")
        await say(alice, "before the restart")
        await page_until(alice, TEXTS, ["before the restart"])
    # The server is gone with its memory broker (history, epochs, presence); same port again.
    async with chat_server(port) as url:
        # Up to the backoff's cap (10 s) if the old server took a while to go away.
        await page_until(alice, f"window.chat.client.reconnects >= 1 && {STATE}", "open",
                         timeout=15)
        await page_until(alice, GAPS, 1)
        gap = await alice.evaluate("document.querySelector('#messages li.gap').textContent")
        assert gap.startswith("Some messages were missed"), gap
        await page_until(alice, "document.querySelector('#messages li.gap').textContent"
                                ".endsWith('reloaded the latest history.')", True)
        await page_until(alice, USERS, ["alice"])
        bob = await open_chat(browser, url, "bob")
        await page_until(alice, USERS, ["alice", "bob"])
        await say(bob, "after the restart")
        await page_until(alice, TEXTS, ["before the restart", "after the restart"])
        await page_until(bob, TEXTS, ["after the restart"])  # the new epoch's history only
        assert await alice.evaluate("window.chat.client.reconnects") >= 1
        await alice.screenshot(artifact("chat-example-gap.png"))
        no_errors(bob)



@needs_chromium
async def test_an_expired_token_is_refreshed_without_a_gap(browser: Chromium) -> None:
    # The server closes a connection when its token expires (1008); the page's token
    # function fetches a fresh one for the reconnect, and the room resumes where it was.
    async with chat_server(token_ttl=2) as url:
        alice = await open_chat(browser, url, "alice")
        await say(alice, "first token")
        await page_until(alice, TEXTS, ["first token"])
        await page_until(alice, "window.chat.client.reconnects >= 1", True, timeout=5)
        await page_until(alice, STATE, "open")
        await say(alice, "second token")
        await page_until(alice, TEXTS, ["first token", "second token"])
        assert await alice.evaluate("window.chat.client.closeCodes[0]") == 1008
        assert await alice.evaluate(GAPS) == 0
        await page_until(alice, USERS, ["alice"])
        no_errors(alice)
